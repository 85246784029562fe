"""Issue 14, latlab part: readers bounded before parsing, checks that --force overrules, and one writer per profile.
The one-line refusals of each quoted case are in test_cli_errors.CASES; these are the cases that need more."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

import latlab.atomic
import latlab.limits
from latlab.atomic import read_json
from latlab.errors import LatlabError
from latlab.lock import lock_path
from latlab.profile import load_profile

from conftest import FAKE_PROTOCOL_ARGS, LATLAB_EXE, ROOT, TINY_SPACE
from test_lock import HOLD

FAKE = ("profile", "--backend", "fake", "--space", str(TINY_SPACE), *FAKE_PROTOCOL_ARGS)


def latlab_process(*args: str | Path, pythonpath: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(pythonpath)}
    return subprocess.run([str(LATLAB_EXE), *map(str, args)], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=120)


# --- the reader: size and nesting bounded before parsing ---------------------------------------------------

def test_nesting_is_measured_outside_strings_only(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"text": "[" * 1000 + '\\"{', "list": [[[1]]]}))
    assert read_json(path, "profile", "")["list"] == [[[1]]]
    path.write_text("[" * 33 + "]" * 33)
    with pytest.raises(LatlabError, match="nested more than 32 levels deep at line 1"):
        read_json(path, "profile", "")
    path.write_text("[" * 32 + "]" * 32)
    assert read_json(path, "profile", "") is not None


def test_a_file_larger_than_any_profile_is_not_read(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "big.json"
    path.write_text(json.dumps(list(range(1000))))
    monkeypatch.setattr(latlab.atomic, "MAX_JSON_BYTES", 1000)
    with pytest.raises(LatlabError, match=f"{path}: 0 MiB, larger than any profile"):
        read_json(path, "profile", "")


def test_an_integer_python_will_not_convert_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "digits.json"
    path.write_text('{"hidden": [' + "9" * 5000 + "]}")
    with pytest.raises(LatlabError, match="not valid JSON .*digits") as info:
        read_json(path, "space file", "")
    assert "\n" not in str(info.value)


# --- checks that --force overrules --------------------------------------------------------------------------

def test_threads_beyond_the_usable_cpus_need_force(cli, user_error, fake_plugin, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(latlab.limits, "usable_cpus", lambda: 1)
    out = tmp_path / "p.json"
    user_error(cli(*FAKE, "--threads", "2", "--out", out), "2 threads are more than the 1 CPU(s)", "--force")
    assert not out.exists()
    forced = cli(*FAKE, "--threads", "2", "--out", out, "--force")
    assert forced.exit_code == 0, forced.output
    assert "Warning:" in forced.stderr and load_profile(out).settings.threads == 2


def test_memory_is_checked_against_what_is_available_now(cli, user_error, fake_plugin, tmp_path, monkeypatch) -> None:
    """The tiny space needs well under a GiB: refused on a machine with 1 MiB free, measured with --force."""
    monkeypatch.setattr(latlab.limits, "available_bytes", lambda: 2**20)
    out = tmp_path / "p.json"
    user_error(cli(*FAKE, "--out", out), "profiling space 'tiny' needs about", "0.0 GiB is available", "--force")
    assert not out.exists()
    assert cli(*FAKE, "--out", out, "--force").exit_code == 0 and load_profile(out).complete


def test_predict_prices_an_incomplete_profile_only_when_forced(cli, fake_profile, tmp_path) -> None:
    data = json.loads(fake_profile.read_text())
    fake_profile.write_text(json.dumps({**data, "complete": False}))
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps({"hidden": 64, "layers": 2, "heads": 2, "ffn": 256, "seq_len": 32}))
    assert cli("predict", "--profile", fake_profile, "--arch", arch).exit_code == 2
    forced = cli("predict", "--profile", fake_profile, "--arch", arch, "--force")
    assert forced.exit_code == 0 and "Warning:" in forced.stderr and "incomplete" in forced.stderr
    assert " ms per call" in forced.stdout


# --- one writer per profile: two real processes ------------------------------------------------------------

def test_a_second_profiler_of_the_same_out_is_refused_while_the_first_runs(cli, fake_plugin, plugin_root,
                                                                          tmp_path, monkeypatch) -> None:
    """While this process profiles (in-process CLI), a real ``latlab profile`` process on the same --out, fresh or
    --resume, is refused with this process's PID, and the first run still writes a complete profile."""
    out = tmp_path / "p.json"
    seconds: list[subprocess.CompletedProcess[str]] = []
    prepare = fake_plugin.FakeBackend._prepare

    def prepare_then_compete(self, module, inputs, settings):
        if not seconds:
            assert lock_path(out).read_text().strip() == str(os.getpid())
            for resume in ((), ("--resume",)):
                seconds.append(latlab_process(*FAKE, "--out", out, *resume, pythonpath=plugin_root))
        return prepare(self, module, inputs, settings)

    monkeypatch.setattr(fake_plugin.FakeBackend, "_prepare", prepare_then_compete)
    first = cli(*FAKE, "--out", out)
    assert first.exit_code == 0, first.output
    for second in seconds:
        assert second.returncode == 2 and second.stdout == ""
        assert second.stderr.strip() == (f"Error: {out}: in use by another process (PID {os.getpid()}, lock file "
                                         f"{lock_path(out)}); wait for it to finish or choose another path")
    assert len(seconds) == 2 and load_profile(out).complete and not lock_path(out).exists()


def test_a_resume_is_refused_while_another_process_holds_the_profile(cli, user_error, fake_profile) -> None:
    data = json.loads(fake_profile.read_text())
    fake_profile.write_text(json.dumps({**data, "complete": False}))
    before = fake_profile.read_bytes()
    holder = subprocess.Popen([str(LATLAB_EXE.parent / "python"), "-c", HOLD, str(fake_profile)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        user_error(cli(*FAKE, "--out", fake_profile, "--resume"), str(fake_profile), f"PID {holder.pid}")
    finally:
        holder.kill()
        holder.wait(timeout=30)
        holder.stdout.close()
    assert fake_profile.read_bytes() == before
