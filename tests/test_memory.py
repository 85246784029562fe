"""Resident memory next to latency (latlab.memory, ``latlab memory``, ``latlab predict``)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from latlab.architecture import Architecture, load_architecture
from latlab.calibration import Calibration, CalibrationModel
from latlab.memory import memory_table, predict_resident_mib
from latlab.predict import LatencyTable, predict_ms
from latlab.profile import load_profile, save_profile

MIB = 2 ** 20
BYTES_PER_PARAM = 8


def test_memory_is_priced_by_the_latency_arithmetic_without_the_calibration(make_profile) -> None:
    """The same figures as milliseconds and as MiB give the same price, except that the calibration (fitted on
    milliseconds) is not applied to memory."""
    from test_predict import model_medians  # the synthetic table of model blocks the arithmetic tests use

    profile = make_profile(model_medians({(2, 128): (1.0, 3.4), (4, 128): (1.2, 4.0)}, depth=4))
    profile.resident_mib = {key: entry.stats.median_ms for key, entry in profile.entries.items()}
    archs = [Architecture(64, (2,), (128,), 16, 1, 2, 100), Architecture(64, (2, 4), (128, 128), 16, 1, 2, 100)]
    for arch in archs:
        assert predict_resident_mib(arch, memory_table(profile)) == pytest.approx(
            predict_ms(arch, LatencyTable.from_profile(profile)))
    mixed = archs[1]
    model = CalibrationModel(mixed, [[2.0]], table_ms=1.0, changes_ms=1.0, deep_ms=0.0)
    calibrated = replace(profile, calibration=Calibration((model, model), "profile"))
    assert calibrated.calibration.fractions[0] > 0
    plain_ms = predict_ms(mixed, LatencyTable.from_profile(profile))
    assert predict_ms(mixed, LatencyTable.from_profile(calibrated)) > plain_ms
    assert predict_resident_mib(mixed, memory_table(calibrated)) == pytest.approx(
        predict_resident_mib(mixed, memory_table(profile)))


def test_latlab_memory_measures_what_runners_hold_and_predicts_whole_models(cli, fake_profile: Path, fake_plugin,
                                                                          tmp_path: Path) -> None:
    """The fake runner holds 8 bytes per parameter of its block: each block's figure is that, read off this
    process's resident set, and the whole models' measured memory is what their blocks predict."""
    from latlab.modules import build_block

    fake_plugin.State.bytes_per_param = BYTES_PER_PARAM
    result = cli("memory", "--profile", fake_profile, "--archs", "4", "--seed", "5", "--json", tmp_path / "m.json")
    assert result.exit_code == 0, result.output
    profile = load_profile(fake_profile)
    assert set(profile.resident_mib) == set(profile.entries)
    for key, entry in profile.entries.items():
        module, _ = build_block(entry.block)
        held = BYTES_PER_PARAM * sum(p.numel() for p in module.parameters()) / MIB
        assert profile.resident_mib[key] == pytest.approx(held, abs=0.3 + 0.03 * held), key
    check = json.loads((tmp_path / "m.json").read_text())
    assert len(check["archs"]) == 4 and check["mape_pct"] < 5, check
    assert "resident memory MAPE" in result.output


def test_predict_reports_resident_memory_once_measured(cli, fake_profile: Path, fake_plugin, tmp_path: Path) -> None:
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps({"hidden": 64, "layers": 2, "heads": 2, "ffn": 256}))
    before = cli("predict", "--profile", fake_profile, "--arch", arch, "--json")
    assert json.loads(before.output)["resident_mib"] is None
    assert "not measured for this profile ('latlab memory" in cli("predict", "--profile", fake_profile,
                                                                    "--arch", arch).output
    profile = load_profile(fake_profile)
    # each block holds 1 MiB per 1000 parameters: the fake's net milliseconds scaled, so additive like its latency
    profile.resident_mib = {key: (entry.stats.median_ms - fake_plugin.BASE_MS) / fake_plugin.MS_PER_PARAM / 1000
                            for key, entry in profile.entries.items()}
    save_profile(profile, fake_profile)
    expected = load_architecture(arch, profile.space.arch_defaults()).parameters / 1000
    after = cli("predict", "--profile", fake_profile, "--arch", arch, "--json")
    assert json.loads(after.output)["resident_mib"] == pytest.approx(expected, rel=1e-3)
    assert f"resident memory: {expected:.1f} MiB" in cli("predict", "--profile", fake_profile, "--arch", arch).output


def test_a_profile_written_before_memory_reads_with_no_memory(fake_profile: Path) -> None:
    data = json.loads(fake_profile.read_text())
    data.pop("resident_mib", None)
    fake_profile.write_text(json.dumps(data))
    assert load_profile(fake_profile).resident_mib == {}


def test_latlab_memory_refuses_a_foreign_profile_and_writes_nothing(cli, fake_profile: Path, fake_plugin,
                                                                  user_error) -> None:
    fake_plugin.State.runtime_version = "2.0"
    before = fake_profile.read_bytes()
    user_error(cli("memory", "--profile", fake_profile), "fake 2.0 here vs 1.0 in profile", "--force")
    assert fake_profile.read_bytes() == before
