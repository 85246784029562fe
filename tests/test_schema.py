"""The profile file: round trip, the documented layout, and a clear refusal of anything damaged or too new."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import latlab.profile
from latlab.backend import Settings
from latlab.errors import LatlabError
from latlab.profile import SCHEMA_VERSION, Entry, Profile, default_name, load_profile, save_profile
from latlab.protocol import Protocol
from latlab.space import load_space
from latlab.stats import LatencyStats

from conftest import TINY_SPACE


def measured_profile(fingerprint, samples) -> Profile:
    """Every block of the tiny space with rounds drawn by ``samples(rng, n)``, a GPU fingerprint and odd settings."""
    rng = np.random.default_rng(3)
    space = load_space(TINY_SPACE)
    profile = Profile(backend="fake", runtime_version="1.2.3", settings=Settings(threads=2, precision="bf16"),
                      applied={"threads": 2, "precision": "bf16", "providers": ["A", "B"], "nested": {"x": 1.5}},
                      software={"python": "3.11.7", "torch": "2.13.0"}, fingerprint=fingerprint,
                      protocol=Protocol(rounds=3, min_samples=9, min_seconds=0.3, max_round_cv_pct=4.0, seed=11),
                      space=space, complete=False, created_utc="2026-05-09T10:00:00+00:00")
    for index, block in enumerate(space.blocks(profile.protocol.model_depth)):
        rounds = [samples(rng, int(rng.integers(1, 6))).tolist() for _ in range(3)]
        profile.entries[block.key] = Entry(block, rounds, unstable=index % 4 == 0)
        profile.resident_mib[block.key] = round(float(rng.uniform(-0.5, 60.0)), 3)
    return profile


def on_file_grid(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.round(rng.uniform(0.005, 20.0, n), 4)


def at_clock_resolution(rng: np.random.Generator, n: int) -> np.ndarray:
    """What Runner.time_ms produces: whole nanoseconds expressed in milliseconds."""
    return rng.integers(5_000, 20_000_000, n) / 1e6


def test_round_trip_is_equal_field_by_field(tmp_path: Path, gpu_fingerprint) -> None:
    original = measured_profile(gpu_fingerprint, on_file_grid)
    save_profile(original, tmp_path / "p.json")
    loaded = load_profile(tmp_path / "p.json")
    assert loaded.settings == original.settings
    assert loaded.fingerprint == original.fingerprint
    assert loaded.fingerprint.gpus[0].clocks_mhz == {"sm": 1980, "memory": 2619}
    assert loaded.protocol == original.protocol
    assert loaded.space == original.space
    assert list(loaded.entries) == list(original.entries)
    for key, entry in original.entries.items():
        assert loaded.entries[key].block == entry.block
        assert loaded.entries[key].rounds_ms == entry.rounds_ms
        assert loaded.entries[key].unstable == entry.unstable
        assert loaded.entries[key].stats == entry.stats
    assert loaded == original  # and every remaining field: backend, versions, applied, software, complete, created


def test_round_trip_keeps_samples_at_clock_resolution(tmp_path: Path, gpu_fingerprint) -> None:
    original = measured_profile(gpu_fingerprint, at_clock_resolution)
    save_profile(original, tmp_path / "p.json")
    raw = json.loads((tmp_path / "p.json").read_text())
    loaded = load_profile(tmp_path / "p.json")
    for key, entry in original.entries.items():
        assert loaded.entries[key].rounds_ms == entry.rounds_ms
        assert raw["entries"][key]["stats"] == LatencyStats.from_rounds(raw["entries"][key]["rounds_ms"]).to_json()


def test_saved_stats_describe_the_saved_rounds(tmp_path: Path, gpu_fingerprint) -> None:
    save_profile(measured_profile(gpu_fingerprint, on_file_grid), tmp_path / "p.json")
    for key, entry in json.loads((tmp_path / "p.json").read_text())["entries"].items():
        assert entry["stats"] == LatencyStats.from_rounds(entry["rounds_ms"]).to_json(), key


def test_the_documented_layout_is_the_written_layout(tmp_path: Path, gpu_fingerprint) -> None:
    """The module docstring is the format's documentation: it must list exactly the fields a file has."""
    documented = re.findall(r"^    (\w+)\s{2,}", latlab.profile.__doc__, flags=re.MULTILINE)
    written = measured_profile(gpu_fingerprint, on_file_grid).to_json()
    assert sorted(documented) == sorted(written)
    assert written["schema_version"] == SCHEMA_VERSION


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path: Path, gpu_fingerprint) -> None:
    path = tmp_path / "p.json"
    path.write_text("old")
    save_profile(measured_profile(gpu_fingerprint, on_file_grid), path)
    assert [p.name for p in tmp_path.iterdir()] == ["p.json"]
    assert load_profile(path).backend == "fake"


# --- damaged, foreign and future files ---------------------------------------------------------------------

@pytest.fixture
def valid(gpu_fingerprint) -> dict[str, Any]:
    return measured_profile(gpu_fingerprint, on_file_grid).to_json()


def first_key(data: dict[str, Any]) -> str:
    return next(iter(data["entries"]))


def damage(data: dict[str, Any], how: str) -> Any:
    data = copy.deepcopy(data)
    key = first_key(data)
    if how == "array":
        return [data]
    if how == "no_version":
        del data["schema_version"]
    elif how == "version_text":
        data["schema_version"] = "1"
    elif how == "no_entries":
        del data["entries"]
    elif how == "no_settings":
        del data["settings"]
    elif how == "no_backend_name":
        del data["backend"]["name"]
    elif how == "entries_list":
        data["entries"] = []
    elif how == "renamed_entry":
        data["entries"]["layer/b9/s9"] = data["entries"].pop(key)
    elif how == "unknown_kind":
        data["entries"][key]["block"]["kind"] = "mystery"
    elif how == "empty_rounds":
        data["entries"][key]["rounds_ms"] = [[], []]
    elif how == "text_sample":
        data["entries"][key]["rounds_ms"][0][0] = "fast"
    elif how == "unknown_setting":
        data["settings"]["turbo"] = True
    elif how == "unknown_block_field":
        data["entries"][key]["block"]["colour"] = 1
    elif how == "bad_space":
        data["space"]["hidden"] = []
    elif how == "bad_fingerprint":
        del data["fingerprint"]["cpu_model"]
    elif how == "model_depth_one":
        data["protocol"]["model_depth"] = 1
    elif how == "resident_text":
        data["resident_mib"][key] = "big"
    elif how == "resident_list":
        data["resident_mib"] = [1.0]
    return data


@pytest.mark.parametrize(("how", "needle"), [
    ("array", "not a latlab profile"),
    ("no_version", "'schema_version' missing"),
    ("version_text", "schema_version"),
    ("no_entries", "field 'entries' missing"),
    ("no_settings", "field 'settings' missing"),
    ("no_backend_name", "field 'name' missing"),
    ("entries_list", "field 'entries' must be a JSON object"),
    ("renamed_entry", "does not match its block"),
    ("unknown_kind", "does not match its block"),
    ("empty_rounds", "has no samples"),
    ("text_sample", "must be a finite number >= 0, got 'fast'"),
    ("unknown_setting", "field 'settings.turbo' is not a field of settings"),
    ("unknown_block_field", "does not match its block"),
    ("bad_space", "field 'space'"),
    ("bad_fingerprint", "field 'fingerprint.cpu_model' missing"),
    ("model_depth_one", "field 'protocol.model_depth' must be 0 or from 2 to 24, got 1"),
    ("resident_text", "must be a finite number, got 'big'"),
    ("resident_list", "field 'resident_mib' must be a JSON object"),
])
def test_damaged_profile_is_refused_with_the_file_and_the_field(tmp_path: Path, valid, how, needle) -> None:
    path = tmp_path / "damaged.json"
    path.write_text(json.dumps(damage(valid, how)))
    with pytest.raises(LatlabError, match=re.escape(needle)) as info:
        load_profile(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_other_schemas_are_refused_and_the_current_is_read(tmp_path: Path, valid) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps({**valid, "schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(LatlabError, match=f"schema_version {SCHEMA_VERSION + 1} is newer .*upgrade latlab"):
        load_profile(path)
    path.write_text(json.dumps({**valid, "schema_version": 1}))
    with pytest.raises(LatlabError, match="schema_version 1 is older .* priced layer blocks without the attention "
                                          "mask .*re-measure it with 'latlab profile'"):
        load_profile(path)
    path.write_text(json.dumps({**valid, "schema_version": SCHEMA_VERSION}))
    assert load_profile(path).schema_version == SCHEMA_VERSION


def test_a_version_2_profile_is_read_with_its_layers_priced_alone() -> None:
    """The shipped AVX2-kind profiles predate model blocks: they stay usable, priced as they were measured."""
    shipped = sorted(Path(latlab.profile.__file__).resolve().parent.parent.glob("profiles/*avx2*-f32.json"))
    assert shipped, "the AVX2-kind profiles ship in profiles/"
    for path in shipped:
        profile = load_profile(path)
        assert profile.schema_version == 2 and profile.protocol.model_depth == 0
        assert {e.block.kind for e in profile.entries.values()} == {"overhead", "embeddings", "layer", "head"}


def test_truncated_and_missing_files(tmp_path: Path, valid) -> None:
    text = json.dumps(valid, indent=1)
    path = tmp_path / "cut.json"
    path.write_text(text[: len(text) // 2])
    with pytest.raises(LatlabError, match="not valid JSON .*truncated"):
        load_profile(path)
    with pytest.raises(LatlabError, match="profile not found"):
        load_profile(tmp_path / "absent.json")
    with pytest.raises(LatlabError, match="cannot read profile"):
        load_profile(tmp_path)


def test_default_name_says_what_the_profile_is(gpu_fingerprint) -> None:
    profile = measured_profile(gpu_fingerprint, on_file_grid)
    cpu_name = default_name(profile)
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", cpu_name)
    assert cpu_name == "amd-epyc-9r14-avx512-2t-fake-bf16-tiny", "a profile of another space than the default says which"
    profile.settings = Settings(threads=1, precision="fp16", device="cuda")
    assert default_name(profile) == "nvidia-h100-80gb-hbm3-1t-fake-fp16-tiny"
    profile.space = load_space()
    assert default_name(profile) == "nvidia-h100-80gb-hbm3-1t-fake-fp16"


def test_an_int8_profile_keeps_its_method_in_name_label_and_file(tmp_path: Path, gpu_fingerprint) -> None:
    profile = measured_profile(replace(gpu_fingerprint, gpus=()), on_file_grid)
    profile.settings = Settings(threads=1, precision="int8", quantization="static")
    assert default_name(profile).endswith("-1t-fake-int8-static-tiny") and "int8-static" in profile.label
    save_profile(profile, tmp_path / "p.json")
    assert json.loads((tmp_path / "p.json").read_text())["settings"]["quantization"] == "static"
    assert load_profile(tmp_path / "p.json").settings == profile.settings
    profile.settings = Settings(threads=1, precision="f32")
    save_profile(profile, tmp_path / "f.json")
    assert "quantization" not in json.loads((tmp_path / "f.json").read_text())["settings"], "float files unchanged"


@pytest.mark.parametrize(("settings", "needle"), [
    ({"precision": "int8", "quantization": "sometimes"}, "settings.quantization' must be one of dynamic, static"),
    ({"precision": "int8"}, "settings.quantization' must be one of dynamic, static, got ''"),
    ({"precision": "f32", "quantization": "static"}, "settings.quantization' applies to int8 only"),
])
def test_a_quantization_that_does_not_fit_the_precision_is_refused(tmp_path: Path, valid, settings, needle) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps({**valid, "settings": {"threads": 1, "device": "cpu", **settings}}))
    with pytest.raises(LatlabError, match=re.escape(needle)):
        load_profile(path)


@pytest.mark.parametrize(("model", "flags", "name"), [
    ("AMD EPYC", ("avx2", "fma"), "amd-epyc-avx2"),
    ("AMD EPYC", ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16"), "amd-epyc-avx512bf16"),
    ("Intel(R) Xeon(R) Processor", ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"), "intel-xeon-amx"),
    ("Some CPU", ("sse4_2",), "some-baseline"),
])
def test_profiles_of_two_machine_kinds_get_different_names(gpu_fingerprint, model, flags, name) -> None:
    """Both machine kinds report "AMD EPYC": only the instruction-set level keeps their profiles apart."""
    profile = measured_profile(replace(gpu_fingerprint, cpu_model=model, cpu_flags=flags, gpus=()), on_file_grid)
    profile.settings = Settings(threads=1, precision="f32")
    assert default_name(profile) == f"{name}-1t-fake-f32-tiny"


def test_a_different_machine_kind_is_named_first(gpu_fingerprint) -> None:
    avx2 = replace(gpu_fingerprint, cpu_flags=("avx2", "fma"))
    problems = avx2.differences(replace(gpu_fingerprint, cpu_flags=("avx2", "fma", "avx512f", "avx512_bf16")))
    assert problems[0] == "instruction set avx512bf16 here vs avx2 in profile"
    assert avx2.differences(avx2) == []
