"""Every mistake a user can make reaches them as one ``Error:`` line and exit code 2, never as a traceback, and
never costs them a file: whatever was on disk before a refused command is byte for byte what is there after."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from latlab.profile import SCHEMA_VERSION

from conftest import FAKE_PROTOCOL_ARGS, LATLAB_EXE, ROOT, TINY_SPACE

FAKE = ("--backend", "fake", "--space", str(TINY_SPACE), *FAKE_PROTOCOL_ARGS)


@pytest.fixture
def workspace(tmp_path: Path, fake_profile: Path) -> Path:
    """A folder of good and bad inputs. ``fake_profile`` (good.json) is a complete profile of the tiny space."""
    text = fake_profile.read_text()
    data = json.loads(text)
    files = {
        "good.json": text,
        "malformed.json": '{"schema_version": 1,, "entries": {}}',
        "truncated.json": text[: len(text) // 2],
        "newer.json": json.dumps({**data, "schema_version": SCHEMA_VERSION + 1}),
        "existing.json": text,
        "old-result.json": '{"mape_pct": 1.0}\n',
        "file.txt": "a regular file, not a folder\n",
        "arch.json": json.dumps({"hidden": 64, "layers": 2, "heads": 2, "ffn": 256, "seq_len": 32}),
        "arch-heads.json": json.dumps({"hidden": 64, "layers": [{"heads": 2, "ffn": 256}, {"heads": 3, "ffn": 256}],
                                       "seq_len": 32}),
        "arch-outside.json": json.dumps({"hidden": 96, "layers": 1, "heads": 2, "ffn": 256, "seq_len": 32}),
        "arch-broken.json": '{"hidden": 64, "layers": 2',
        "space-broken.json": TINY_SPACE.read_text()[:50],
        "space.json": TINY_SPACE.read_text(),
        "deep.json": "[" * 100_000,
        "space-vocab-true.json": json.dumps({**json.loads(TINY_SPACE.read_text()), "vocab": True}),
        "space-wide.json": json.dumps({**json.loads(TINY_SPACE.read_text()), "hidden": [1_000_000]}),
        "space-long.json": json.dumps({**json.loads(TINY_SPACE.read_text()), "seq_len": [1_000_000]}),
        "arch-billion-layers.json": json.dumps({"hidden": 64, "layers": 1_000_000_000, "heads": 2, "ffn": 256,
                                                "seq_len": 32}),
        "negative-sample.json": with_sample(data, -5.0),
        "nan-sample.json": with_sample(data, float("nan")),
        "incomplete.json": json.dumps({**data, "complete": False}),
    }
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    (tmp_path / "results").mkdir()
    return tmp_path


def with_sample(profile: dict, sample: float) -> str:
    """The profile with every sample of its first entry replaced (json writes NaN as NaN, as Python reads it)."""
    data = json.loads(json.dumps(profile))
    entry = next(iter(data["entries"].values()))
    entry["rounds_ms"] = [[sample] * len(r) for r in entry["rounds_ms"]]
    return json.dumps(data)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def expand(items: tuple[str, ...], folder: Path) -> list[str]:
    return [str(folder / item[1:]) if item.startswith("@") else item for item in items]


CASES = {
    "malformed-profile": (("predict", "--profile", "@malformed.json", "--arch", "@arch.json"),
                          ("@malformed.json", "not valid JSON")),
    "truncated-profile-validate": (("validate", "--profile", "@truncated.json", "--json", "@old-result.json"),
                                   ("@truncated.json", "truncated")),
    "truncated-profile-resume": (("profile", *FAKE, "--out", "@truncated.json", "--resume"),
                                 ("@truncated.json", "truncated")),
    "newer-schema-predict": (("predict", "--profile", "@newer.json", "--arch", "@arch.json"),
                             ("@newer.json", f"schema_version {SCHEMA_VERSION + 1}", "upgrade latlab")),
    "newer-schema-resume": (("profile", *FAKE, "--out", "@newer.json", "--resume"), ("@newer.json", "newer")),
    "unknown-backend": (("profile", "--backend", "nope", "--space", str(TINY_SPACE), "--out", "@new.json"),
                        ("unknown backend 'nope'", "registered backends", "fake")),
    "runtime-not-installed": (("profile", "--backend", "fakemissing", "--out", "@new.json"),
                              ("'fakemissing' is not available", "pip install 'latlab[fakert]'")),
    "unsupported-precision": (("profile", *FAKE, "--precision", "fp16", "--out", "@new.json"),
                              ("precision 'fp16'", "supported: f32, bf16")),
    "zero-threads": (("profile", *FAKE, "--threads", "0", "--out", "@new.json"), ("threads must be at least 1",)),
    "heads-do-not-divide-hidden": (("predict", "--profile", "@good.json", "--arch", "@arch-heads.json"),
                                   ("@arch-heads.json", "layer 1", "hidden 64 is not divisible by heads 3")),
    "arch-outside-space": (("predict", "--profile", "@good.json", "--arch", "@arch-outside.json"),
                           ("hidden = 96", "outside space 'tiny'", "[64, 128]")),
    "arch-not-json": (("predict", "--profile", "@good.json", "--arch", "@arch-broken.json"),
                      ("@arch-broken.json", "not valid JSON")),
    "missing-profile": (("predict", "--profile", "@absent.json", "--arch", "@arch.json"),
                        ("@absent.json", "profile not found")),
    "missing-profile-validate": (("validate", "--profile", "@absent.json"), ("@absent.json", "profile not found")),
    "missing-arch": (("predict", "--profile", "@good.json", "--arch", "@absent-arch.json"),
                     ("@absent-arch.json", "not found")),
    "missing-space": (("profile", "--backend", "fake", "--space", "@absent-space.json", "--out", "@new.json"),
                      ("@absent-space.json", "space file not found")),
    "space-not-json": (("profile", "--backend", "fake", "--space", "@space-broken.json", "--out", "@new.json"),
                       ("@space-broken.json", "not valid JSON")),
    "out-in-missing-folder": (("profile", *FAKE, "--out", "@no/such/folder/p.json"),
                              ("@no/such/folder/p.json", "does not exist")),
    "out-under-a-file": (("profile", *FAKE, "--out", "@file.txt/p.json"), ("@file.txt/p.json", "does not exist")),
    "out-is-a-folder-resume": (("profile", *FAKE, "--out", "@", "--resume"), ("--out", "is a folder")),
    "existing-out-without-resume": (("profile", *FAKE, "--out", "@existing.json"),
                                    ("@existing.json", "already exists", "--resume")),
    "validate-json-in-missing-folder": (("validate", "--profile", "@good.json", "--json", "@no/result.json"),
                                        ("@no/result.json", "does not exist")),
    "validate-plot-under-a-file": (("validate", "--profile", "@good.json", "--plot", "@file.txt/plot.png"),
                                   ("@file.txt/plot.png", "does not exist")),
    "validate-one-arch": (("validate", "--profile", "@good.json", "--archs", "1"), ("--archs",)),
    # issue 14: an output equal to an input, to another output, or a folder is refused before anything is measured
    "validate-json-is-the-profile": (("validate", "--profile", "@good.json", "--json", "@good.json"),
                                     ("--json", "@good.json", "would overwrite --profile")),
    "validate-plot-is-the-profile": (("validate", "--profile", "@good.json", "--plot", "@results/../good.json"),
                                     ("--plot", "would overwrite --profile")),
    "validate-json-and-plot-one-file": (("validate", "--profile", "@good.json", "--json", "@r.out", "--plot", "@r.out"),
                                        ("--plot and --json are the same path",)),
    "validate-json-is-a-folder": (("validate", "--profile", "@good.json", "--json", "@results"),
                                  ("--json", "@results", "is a folder")),
    "profile-out-is-the-space": (("profile", "--backend", "fake", "--space", "@space.json", "--out", "@space.json"),
                                 ("--out", "@space.json", "would overwrite --space")),
    # issue 14: nesting that would overflow the parser's stack, in every reader
    "deep-profile": (("predict", "--profile", "@deep.json", "--arch", "@arch.json"),
                     ("@deep.json", "nested more than 32 levels deep at line 1", "deeper than any profile")),
    "deep-arch": (("predict", "--profile", "@good.json", "--arch", "@deep.json"),
                  ("@deep.json", "nested more than 32 levels", "deeper than any architecture file")),
    "deep-space": (("profile", "--backend", "fake", "--space", "@deep.json", "--out", "@new.json"),
                   ("@deep.json", "nested more than 32 levels", "space file")),
    # issue 14: sizes refused before anything is built
    "arch-billion-layers": (("predict", "--profile", "@good.json", "--arch", "@arch-billion-layers.json"),
                            ("@arch-billion-layers.json", "'layers' is 1000000000", "at most 1000 layers")),
    "space-hidden-million": (("profile", *FAKE[:2], "--space", "@space-wide.json", "--out", "@new.json"),
                             ("GiB of memory", "h1000000", "--force")),
    "space-seq-len-million": (("profile", *FAKE[:2], "--space", "@space-long.json", "--out", "@new.json"),
                              ("GiB of memory", "s1000000", "--force")),
    "threads-beyond-the-cpus": (("profile", *FAKE, "--threads", "10000", "--out", "@new.json"),
                                ("10000 threads are more than the", "--force")),
    # issue 14: impossible values are refused, naming the file that holds them
    "space-vocab-true": (("profile", "--backend", "fake", "--space", "@space-vocab-true.json", "--out", "@new.json"),
                         ("@space-vocab-true.json", "field 'vocab' must be a whole number")),
    "negative-sample-predict": (("predict", "--profile", "@negative-sample.json", "--arch", "@arch.json"),
                                ("@negative-sample.json", "rounds_ms' must be a finite number >= 0, got -5.0")),
    "nan-sample-validate": (("validate", "--profile", "@nan-sample.json"),
                            ("@nan-sample.json", "rounds_ms' must be a finite number >= 0, got nan")),
    # issue 14: an interrupted profile is not priced silently
    "predict-incomplete-profile": (("predict", "--profile", "@incomplete.json", "--arch", "@arch.json"),
                                   ("@incomplete.json", "incomplete", "--resume", "--force")),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_error_line_and_touches_no_file(cli, user_error, workspace: Path, case: str) -> None:
    args, needles = CASES[case]
    before = snapshot(workspace)
    user_error(cli(*expand(args, workspace)), *expand(needles, workspace))
    assert snapshot(workspace) == before


@pytest.mark.parametrize(("backend", "module"), [("onnxruntime", "onnxruntime"), ("openvino", "openvino")])
def test_built_in_runtime_not_installed_names_the_pip_extra(cli, user_error, monkeypatch, tmp_path, backend,
                                                            module) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # find_spec now reports the package as absent
    out = tmp_path / "p.json"
    user_error(cli("profile", "--backend", backend, "--space", TINY_SPACE, "--out", out),
               f"backend '{backend}' is not available", f"pip install 'latlab[{backend}]'")
    assert not out.exists()


@pytest.mark.parametrize("rounds", ["0", "-1"])
def test_rounds_below_one_are_refused(cli, user_error, fake_plugin, tmp_path, rounds) -> None:
    out = tmp_path / "p.json"
    user_error(cli("profile", "--backend", "fake", "--space", TINY_SPACE, "--rounds", rounds, "--out", out),
               "--rounds")
    assert not out.exists()


def test_refused_profile_prints_nothing_but_the_error(cli, workspace: Path) -> None:
    result = cli("profile", *FAKE, "--out", workspace / "existing.json")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [line for line in result.stderr.splitlines() if "Error:" in line]


# --- a profile from another machine ------------------------------------------------------------------------

def from_elsewhere(path: Path, **changes: object) -> None:
    data = json.loads(path.read_text())
    if "cpu_model" in changes:
        data["fingerprint"]["cpu_model"] = changes["cpu_model"]
    if "runtime_version" in changes:
        data["backend"]["runtime_version"] = changes["runtime_version"]
    if "backend" in changes:
        data["backend"]["name"] = changes["backend"]
    if "pages" in changes:  # the process state the fake backend reads back, as torch's huge pages
        data["applied"]["pages"] = changes["pages"]
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(("change", "needle"), [({"cpu_model": "Imaginary CPU 9000"}, "Imaginary CPU 9000"),
                                                ({"runtime_version": "0.9"}, "1.0 here vs 0.9 in profile"),
                                                ({"pages": "huge"}, "fake pages: small here vs huge in profile")])
def test_validate_refuses_a_foreign_profile_unless_forced(cli, user_error, fake_profile, tmp_path, change, needle):
    from_elsewhere(fake_profile, **change)
    result_path = tmp_path / "result.json"
    user_error(cli("validate", "--profile", fake_profile, "--archs", "2", "--json", result_path),
               str(fake_profile), "other hardware or runtime", needle, "--force")
    assert not result_path.exists()

    forced = cli("validate", "--profile", fake_profile, "--archs", "2", "--json", result_path, "--force")
    assert forced.exit_code == 0, forced.output
    assert "Warning:" in forced.stderr and needle in " ".join(forced.stderr.split())
    assert json.loads(result_path.read_text())["n_archs"] == 2


def test_a_profile_older_than_its_process_state_is_read_as_measured_in_the_unrecorded_one(cli, fake_plugin,
                                                                                         fake_profile) -> None:
    data = json.loads(fake_profile.read_text())
    del data["applied"]["pages"]
    fake_profile.write_text(json.dumps(data))
    assert cli("validate", "--profile", fake_profile, "--archs", "2").exit_code == 0
    fake_plugin.State.pages = "huge"
    refused = cli("validate", "--profile", fake_profile, "--archs", "2")
    assert refused.exit_code == 2  # a console narrower than the line wraps it, hence the whitespace folded below
    assert "fake pages: huge here vs small in profile (set the fake pages" in " ".join(refused.stderr.split())


def test_predict_warns_about_a_foreign_profile_and_still_predicts(cli, fake_profile, workspace) -> None:
    from_elsewhere(fake_profile, cpu_model="Imaginary CPU 9000")
    result = cli("predict", "--profile", fake_profile, "--arch", workspace / "arch.json", "--json")
    assert result.exit_code == 0, result.output
    assert "Warning:" in result.stderr and "Imaginary CPU 9000" in " ".join(result.stderr.split())
    assert json.loads(result.stdout)["total_ms"] > 0


def test_predict_on_this_machine_has_no_warning(cli, fake_profile, workspace) -> None:
    result = cli("predict", "--profile", fake_profile, "--arch", workspace / "arch.json")
    assert result.exit_code == 0 and result.stderr == ""
    assert " ms per call (batch 1, seq_len 32)" in result.stdout


def test_predict_does_not_need_the_profiles_backend_installed(cli, fake_profile, workspace) -> None:
    from_elsewhere(fake_profile, backend="tensorrt-on-another-box")
    result = cli("predict", "--profile", fake_profile, "--arch", workspace / "arch.json")
    assert result.exit_code == 0, result.output


# --- the same through a real process: nothing but the error line reaches stderr ---------------------------

def run_latlab(*args: str | Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), env.get("PYTHONPATH")]))
    return subprocess.run([str(LATLAB_EXE), *map(str, args)], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=120)


def test_process_reports_a_truncated_profile_in_one_line(workspace: Path) -> None:
    before = snapshot(workspace)
    done = run_latlab("validate", "--profile", workspace / "truncated.json", "--json", workspace / "old-result.json")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [done.stderr.strip()] and done.stderr.startswith("Error: ")
    assert str(workspace / "truncated.json") in done.stderr and "truncated" in done.stderr
    assert done.stdout == "" and snapshot(workspace) == before


def test_process_finds_a_plugin_and_names_its_missing_runtime(plugin_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    done = run_latlab("profile", "--backend", "fakemissing", "--out", out, pythonpath=plugin_root)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == ("Error: backend 'fakemissing' is not available: fakert is not installed; "
                                   "pip install 'latlab[fakert]'")
    assert not out.exists()
