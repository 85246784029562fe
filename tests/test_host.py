"""The host probe: its arithmetic, its record in profiles and validations, and the warning on a noisy host."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import torch

from latlab.backend import Settings
from latlab.console import probe_and_say
from latlab.errors import LatlabError
from latlab.host import HostNoise, probe_host, summarize
from latlab.profile import load_profile
from latlab.protocol import Protocol

from conftest import FAKE_PROTOCOL_ARGS, TINY_SPACE


def test_spread_and_cv_are_read_from_the_round_medians() -> None:
    noise = summarize("validate", 2, 16.0, [100.0, 110.0, 90.0])
    assert (noise.median_us, noise.rounds, noise.threads) == (100.0, 3, 2)
    assert noise.spread_pct == pytest.approx(20.0)
    assert noise.round_cv_pct == pytest.approx(statistics.stdev([100, 110, 90]) / 100 * 100)


def test_the_probe_times_at_the_threads_asked_and_leaves_torch_as_it_was() -> None:
    threads = torch.get_num_threads()
    noise = probe_host("profile start", threads=1, rounds=3, seconds=0.01)
    assert noise.rounds == 3 and noise.threads == 1 and noise.median_us > 0 and 15 <= noise.weights_mb <= 17
    assert noise.spread_pct >= 0 and noise.round_cv_pct >= 0
    assert torch.get_num_threads() == threads


def test_a_profile_records_the_host_at_start_and_end_and_a_validation_beside_it(cli, fake_plugin, tmp_path) -> None:
    out, report = tmp_path / "p.json", tmp_path / "v.json"
    profiled = cli("profile", "--backend", "fake", "--space", TINY_SPACE, *FAKE_PROTOCOL_ARGS, "--out", out)
    assert profiled.exit_code == 0, profiled.output
    assert "host at 1 thread(s), profile start" in profiled.stderr
    recorded = load_profile(out).host_noise
    assert [n.when for n in recorded] == ["profile start", "profile end"]
    assert all(n.threads == 1 and n.rounds == int(FAKE_PROTOCOL_ARGS[1]) for n in recorded)
    validated = cli("validate", "--profile", out, "--archs", "2", "--json", report)
    assert validated.exit_code == 0, validated.output
    assert "when profiled: host at 1 thread(s), profile end" in validated.stderr
    noise = json.loads(report.read_text())["host_noise"]
    assert [n["when"] for n in noise["profiled"]] == ["profile start", "profile end"]
    assert noise["now"]["when"] == "validate"


def test_a_noisy_host_is_named_before_measuring(monkeypatch, capsys) -> None:
    noisy = HostNoise("profile start", 2, 16.0, 10, 480.0, 77.1, 21.0)
    monkeypatch.setattr("latlab.console.probe_host", lambda *args: noisy)
    assert probe_and_say("profile start", Settings(threads=2), Protocol()) is noisy
    said = " ".join(capsys.readouterr().err.split())
    assert "spread 77.1% (CV 21.0%)" in said and "noisier than the 10% round CV" in said
    monkeypatch.setattr("latlab.console.probe_host", lambda *args: HostNoise("validate", 2, 16.0, 10, 480.0, 3.0, 1.0))
    probe_and_say("validate", Settings(threads=2), Protocol())
    assert "Warning" not in capsys.readouterr().err


def test_a_gpu_profile_does_not_probe_the_host(monkeypatch) -> None:
    monkeypatch.setattr("latlab.console.probe_host", lambda *args: pytest.fail("probed the host for a GPU"))
    assert probe_and_say("profile start", Settings(device="cuda"), Protocol()) is None


def test_a_damaged_host_record_is_one_line_naming_it(fake_profile: Path) -> None:
    data = json.loads(fake_profile.read_text())
    data["host_noise"] = [{"when": "profile start", "threads": "two"}]
    fake_profile.write_text(json.dumps(data))
    with pytest.raises(LatlabError, match=r"host_noise\[0\]\.threads"):
        load_profile(fake_profile)
    data.pop("host_noise")  # a profile from before the probe
    fake_profile.write_text(json.dumps(data))
    assert load_profile(fake_profile).host_noise == []
