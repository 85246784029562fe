"""Prices between measured shapes: synthetic profiles built from known functions of batch and seq_len, and the
commands that read them (``latlab predict`` estimates or refuses, ``latlab validate --seq-len``)."""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path

import pytest

from latlab.architecture import Architecture
from latlab.blocks import EMBEDDINGS, HEAD, MODEL, OVERHEAD, Block, overhead_block
from latlab.errors import LatlabError
from latlab.interpolate import ATTENTION, LINEAR, interpolate
from latlab.predict import Architectures, LatencyTable, Prediction, predict, predict_many, predict_ms
from latlab.profile import save_profile
from latlab.space import SearchSpace

from conftest import FAKE_PROTOCOL_ARGS, TINY_SPACE, synthetic_profile

GRID = SearchSpace("grid", layers=(1, 2, 3, 4), hidden=(64,), heads=(2, 4), ffn=(128, 256), seq_len=(16, 32, 64, 128),
                   batch=(1, 4), labels=2, vocab=100)
DEPTH = 4


def physical_ms(block: Block) -> float:
    """Latency of the form the interpolation fits (layers: constant + per token + per pair of tokens; the rest:
    constant + per token), in whole multiples of 0.1 us, so that the profile's rounding to 0.1 us changes nothing."""
    tokens, pairs = block.batch * block.seq_len, block.batch * block.seq_len ** 2
    if block.kind == OVERHEAD:
        return 1.0 + 1e-4 * tokens
    ends = {EMBEDDINGS: 2.0 + 3e-3 * tokens, HEAD: 1.5 + 1e-4 * tokens}
    if block.kind in ends:
        return ends[block.kind]
    per_layer = 3.0 + 0.5 * block.heads + tokens * block.ffn * 1e-4 + pairs * block.heads * 1e-4
    return 4.0 + 3e-3 * tokens + block.layers * per_layer  # a model: embeddings, head and its layers


def bent_ms(block: Block) -> float:
    """Not of the fitted form: a layer's work per token grows with log(seq_len) (caches crossed as sequences grow)."""
    return physical_ms(block) * (1 + 0.1 * math.log2(block.seq_len)) if block.kind == MODEL else physical_ms(block)


def table_of(cost=physical_ms, space: SearchSpace = GRID) -> LatencyTable:  # noqa: ANN001
    return LatencyTable.from_profile(synthetic_profile({b: cost(b) for b in space.blocks(DEPTH)}, space,
                                                       model_depth=DEPTH))


def measured_at(arch: Architecture, cost=physical_ms) -> Prediction:  # noqa: ANN001
    """What the profile's arithmetic gives for ``arch`` had its shape been measured: the reference to interpolate."""
    shape = SearchSpace("one", GRID.layers, GRID.hidden, GRID.heads, GRID.ffn, (arch.seq_len,), (arch.batch,), 2, 100)
    return predict(arch, table_of(cost, shape))


def truth(arch: Architecture, cost=physical_ms) -> float:  # noqa: ANN001
    return measured_at(arch, cost).total_ms


def arch(seq_len: int, batch: int = 1, layers: tuple[tuple[int, int], ...] = ((2, 128), (4, 256), (4, 128))):
    return Architecture(hidden=64, heads=tuple(a for a, _ in layers), ffn=tuple(f for _, f in layers),
                        seq_len=seq_len, batch=batch, labels=2, vocab=100)


# --- the arithmetic ----------------------------------------------------------------------------------------

def test_a_measured_shape_is_priced_exactly_as_without_interpolation() -> None:
    table = table_of(bent_ms)
    rng = random.Random(0)
    for candidate in (GRID.sample(rng) for _ in range(200)):
        exact = predict(candidate, table)
        assert predict(candidate, table, interpolate=True) == exact
        assert not exact.estimated and exact.between == ()


@pytest.mark.parametrize(("seq_len", "batch"), [(24, 1), (48, 1), (100, 1), (16, 2), (40, 3), (127, 4)])
def test_a_cost_of_the_fitted_form_is_interpolated_exactly(seq_len: int, batch: int) -> None:
    """Heterogeneous layers included: each layer is interpolated on its own, the first from model(1 layer)."""
    candidate = arch(seq_len, batch)
    result = predict(candidate, table_of(), interpolate=True)
    assert result.total_ms == pytest.approx(truth(candidate), rel=1e-9)
    assert result.estimated == {overhead_block(batch, seq_len).key, *(key for key, _ in result.parts)}
    assert len(result.parts) == candidate.layers + 2


@pytest.mark.parametrize("layers", [((2, 128), (4, 256), (4, 128), (2, 256)), ((4, 256), (2, 128))])
def test_each_part_of_a_mixed_stack_is_what_its_shape_would_have_measured(layers) -> None:  # noqa: ANN001
    """Embeddings, the first layer (from model(1 layer)), each further layer (growth per layer) and the head, each
    interpolated on its own: part by part what a profile measured at that shape gives."""
    candidate = arch(40, 2, layers)
    estimated, reference = predict(candidate, table_of(), interpolate=True), measured_at(candidate)
    assert [key for key, _ in estimated.parts] == [key for key, _ in reference.parts]
    assert [ms for _, ms in estimated.parts] == pytest.approx([ms for _, ms in reference.parts], rel=1e-9)
    assert estimated.overhead_ms == pytest.approx(reference.overhead_ms, rel=1e-9)


def test_a_cost_off_the_fitted_form_is_interpolated_within_one_percent() -> None:
    """The bent cost is not of the fitted form; the fit plus its residuals still comes within 1% between every two
    measured lengths (a straight line between measured totals misses attention's curvature by up to 3% here)."""
    table = table_of(bent_ms)
    for seq_len in (20, 24, 40, 48, 56, 80, 96, 112):
        expected = truth(arch(seq_len), bent_ms)
        assert predict(arch(seq_len), table, interpolate=True).total_ms == pytest.approx(expected, rel=0.01), seq_len


def test_only_as_many_terms_as_the_points_can_pin_down() -> None:
    """Two measured lengths fit a line (the constant and the per-token term), not the quadratic."""
    points = {(1, 100): 3.0, (1, 300): 7.0}
    assert interpolate(points, 1, 200, ATTENTION).ms == pytest.approx(5.0)
    assert interpolate(points, 1, 150, LINEAR).corners == ((1, 100), (1, 300))


@pytest.mark.parametrize(("seq_len", "batch", "needle"), [
    (256, 1, "seq_len 256 lies outside the measured seq_len (16..128)"),
    (8, 1, "seq_len 8 lies outside the measured seq_len (16..128)"),
    (32, 8, "batch 8 lies outside the measured batch (1..4)"),
])
def test_beyond_the_measured_range_is_refused_in_one_line(seq_len: int, batch: int, needle: str) -> None:
    table = table_of()
    with pytest.raises(LatlabError, match="outside the measured grid") as refused:
        predict(arch(seq_len, batch), table, interpolate=True)
    assert "\n" not in str(refused.value) and "interpolate=True" not in str(refused.value)
    with pytest.raises(LatlabError, match=re.escape(needle)):
        table.estimate("first", arch(seq_len, batch).blocks()[1])


def test_the_grid_fast_paths_refuse_an_unmeasured_shape_with_one_line_naming_the_way_out() -> None:
    table = table_of()
    between = arch(48)
    with pytest.raises(LatlabError) as single:
        predict_ms(between, table)
    with pytest.raises(LatlabError) as many:
        predict_many(Architectures.of([arch(32), between]), table)
    with pytest.raises(LatlabError) as exact:
        predict(between, table)
    assert str(single.value) == str(many.value) == str(exact.value)
    assert "s48" in str(single.value) and "interpolate=True" in str(single.value) and "\n" not in str(single.value)


def test_a_shape_missing_from_the_grid_is_named() -> None:
    medians = {b: physical_ms(b) for b in GRID.blocks(DEPTH)}
    lacking = Block(MODEL, 1, 64, 64, 2, 128, 100, 2, 1)
    del medians[lacking]
    table = LatencyTable.from_profile(synthetic_profile(medians, GRID, model_depth=DEPTH))
    assert predict(arch(48, layers=((4, 128),)), table, interpolate=True).estimated  # other layers are unaffected
    with pytest.raises(LatlabError, match="block layer/b1/s48/h64/a2/f128: batch 1, seq_len 64 was not measured"):
        predict(arch(48, layers=((2, 128),)), table, interpolate=True)


# --- the commands ------------------------------------------------------------------------------------------

@pytest.fixture
def grid_files(tmp_path: Path) -> tuple[Path, Path]:
    """A profile of GRID (another machine's fingerprint: predict only warns) and a three-layer architecture file."""
    profile = tmp_path / "grid.json"
    save_profile(synthetic_profile({b: physical_ms(b) for b in GRID.blocks(DEPTH)}, GRID, model_depth=DEPTH), profile)
    architecture = tmp_path / "arch.json"
    architecture.write_text(json.dumps(arch(48).to_json()))
    return profile, architecture


def test_predict_marks_an_interpolated_price_as_an_estimate(cli, grid_files) -> None:
    profile, architecture = grid_files
    result = cli("predict", "--profile", profile, "--arch", architecture, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["total_ms"] == pytest.approx(truth(arch(48)), rel=1e-9)
    assert data["estimated"] and data["overhead_estimated"] and all(p["estimated"] for p in data["parts"])
    assert data["between"] == [{"batch": 1, "seq_len": 32}, {"batch": 1, "seq_len": 64}]
    text = cli("predict", "--profile", profile, "--arch", architecture).stdout
    assert "estimate: this shape was not measured" in text and "b1/s32, b1/s64" in text
    assert sum(line.endswith("ms  (estimate)") for line in text.splitlines()) == 1 + len(data["parts"])


def test_predict_at_a_measured_shape_says_nothing_of_estimates(cli, grid_files, tmp_path) -> None:
    profile, _ = grid_files
    measured = tmp_path / "measured.json"
    measured.write_text(json.dumps(arch(64).to_json()))
    data = json.loads(cli("predict", "--profile", profile, "--arch", measured, "--json").stdout)
    assert not data["estimated"] and data["between"] == [] and not any(p["estimated"] for p in data["parts"])
    assert "estimate" not in cli("predict", "--profile", profile, "--arch", measured).stdout


def test_predict_exact_and_beyond_the_range_are_refused(cli, user_error, grid_files, tmp_path) -> None:
    profile, architecture = grid_files
    user_error(cli("predict", "--profile", profile, "--arch", architecture, "--exact"),
               "seq_len = 48 is outside space 'grid'", "allowed: [16, 32, 64, 128]")
    beyond = tmp_path / "beyond.json"
    beyond.write_text(json.dumps(arch(256).to_json()))
    user_error(cli("predict", "--profile", profile, "--arch", beyond), "seq_len = 256", "measured 16..128",
               "never beyond")


TINY_GRID = {**json.loads(TINY_SPACE.read_text()), "name": "tiny-grid", "seq_len": [16, 48], "hidden": [64]}


@pytest.fixture
def grid_profile(cli, fake_plugin, tmp_path: Path) -> Path:
    """The tiny space at two lengths, profiled on the fake backend whose latency grows with the tokens."""
    fake_plugin.State.token_cost = 0.02
    space = tmp_path / "tiny-grid.json"
    space.write_text(json.dumps(TINY_GRID))
    out = tmp_path / "grid-profile.json"
    result = cli("profile", "--backend", "fake", "--space", space, *FAKE_PROTOCOL_ARGS, "--out", out)
    assert result.exit_code == 0, result.output
    return out


def test_validate_at_unmeasured_lengths_measures_the_interpolation(cli, grid_profile, tmp_path) -> None:
    """The fake latency is linear in tokens, a form the fit holds exactly: the whole pipeline (profile at 16 and
    48, interpolated prices, models built and measured at 24, 32, 40) must agree to the rounding. The drift
    references come from measured lengths, and ``--same-run`` re-times blocks at the models' own lengths."""
    report = tmp_path / "v.json"
    result = cli("validate", "--profile", grid_profile, "--archs", "6", "--seq-len", "24,32,40", "--json", report,
                 "--same-run")
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert data["same_run"]["mape_pct"] < 0.01  # same run: blocks re-timed at the models' own lengths
    assert {key.split("/")[2] for key in data["same_run_blocks_ms"]} >= {"s24", "s32", "s40"}
    # only the drift references were measured at the profile's lengths: what moved is told of those alone
    assert data["same_run_blocks_moved_pct"] == pytest.approx({"model L1": 0.0, "model L4": 0.0}, abs=0.3)
    assert [a["arch"]["seq_len"] for a in data["archs"]] == [24, 32, 40] * 2
    assert all(a["estimated"] for a in data["archs"]) and data["mape_pct"] < 0.01
    assert set(data["by_seq_len"]) == {"24", "32", "40"}
    assert len({round(a["measured_ms"], 3) for a in data["archs"]}) > 3, "latency varies, or the check means little"
    assert data["reference_drift_pct"] == pytest.approx(0.0, abs=0.01), "references come from measured lengths"
    assert "seq_len 32 (interpolated): MAPE 0.00%" in result.stdout


def test_validate_refuses_lengths_beyond_the_profile(cli, user_error, grid_profile) -> None:
    user_error(cli("validate", "--profile", grid_profile, "--seq-len", "24,64"), "--seq-len 64",
               "measured 16..48")
    user_error(cli("validate", "--profile", grid_profile, "--seq-len", "24,x"), "--seq-len", "positive whole numbers")
    user_error(cli("validate", "--profile", grid_profile, "--seq-len", "0"), "--seq-len")
