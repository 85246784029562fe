"""Prediction arithmetic: overhead once, plus each block's median minus the overhead it paid alone."""

import json
import random

import pytest

from latlab.architecture import Architecture
from latlab.blocks import MODEL, OVERHEAD, embeddings_block, head_block, layer_block, overhead_block
from latlab.errors import LatlabError
from latlab.predict import Architectures, LatencyTable, predict, predict_many, predict_ms
from latlab.space import SearchSpace, load_space
from latlab.stats import LatencyStats
from latlab.accuracy import Accuracy
from latlab.validate import ArchResult, Validation

from conftest import TINY_SPACE


def test_prediction_is_overhead_plus_net_blocks(make_profile) -> None:
    profile = make_profile({
        overhead_block(1, 16): 0.1,
        embeddings_block(1, 16, 64, 100): 0.3,
        layer_block(1, 16, 64, 2, 128): 1.1,
        layer_block(1, 16, 64, 4, 128): 1.6,
        head_block(1, 16, 64, 2): 0.2,
    })
    table = LatencyTable.from_profile(profile)
    arch = Architecture(hidden=64, heads=(2, 4), ffn=(128, 128), seq_len=16, batch=1, labels=2, vocab=100)
    expected = 0.1 + (0.3 - 0.1) + (1.1 - 0.1) + (1.6 - 0.1) + (0.2 - 0.1)
    assert predict_ms(arch, table) == pytest.approx(expected)
    result = predict(arch, table)
    assert result.total_ms == pytest.approx(expected)
    assert [key for key, _ in result.parts][1:3] == ["layer/b1/s16/h64/a2/f128", "layer/b1/s16/h64/a4/f128"]


def test_block_outside_grid_is_a_clear_error(make_profile) -> None:
    table = LatencyTable.from_profile(make_profile({overhead_block(1, 16): 0.1}))
    arch = Architecture(hidden=64, heads=(2,), ffn=(128,), seq_len=16, batch=1, labels=2, vocab=100)
    with pytest.raises(LatlabError, match="outside the measured grid"):
        predict_ms(arch, table)


MIXED_SPACE = SearchSpace("mixed", layers=(1, 2, 3, 4), hidden=(64,), heads=(2, 4), ffn=(128, 256), seq_len=(16, 32),
                          batch=(1, 2), labels=2, vocab=100)


def random_medians(space: SearchSpace, seed: int, model_depth: int = 0) -> dict:
    """A plausible median per block (at the 0.1 us resolution profiles keep): the overhead small, the rest larger."""
    rng = random.Random(seed)
    return {b: round(rng.uniform(0.01, 0.05) if b.kind == OVERHEAD else rng.uniform(0.1, 5.0) * max(b.layers, 1), 4)
            for b in space.blocks(model_depth)}


def test_heterogeneous_layers_are_priced_layer_by_layer(make_profile) -> None:
    medians = random_medians(MIXED_SPACE, seed=1)
    table = LatencyTable.from_profile(make_profile(medians, MIXED_SPACE))
    arch = Architecture(hidden=64, heads=(2, 4, 4, 2), ffn=(128, 256, 128, 256), seq_len=32, batch=2, labels=2,
                        vocab=100)
    overhead = medians[overhead_block(2, 32)]
    layers = [medians[layer_block(2, 32, 64, a, f)] - overhead for a, f in zip(arch.heads, arch.ffn)]
    ends = medians[embeddings_block(2, 32, 64, 100)] + medians[head_block(2, 32, 64, 2)] - 2 * overhead
    result = predict(arch, table)
    assert result.total_ms == pytest.approx(overhead + ends + sum(layers))
    assert result.overhead_ms == overhead
    assert [ms for _, ms in result.parts[1:-1]] == pytest.approx(layers)
    assert [key for key, _ in result.parts[1:-1]] == [layer_block(2, 32, 64, a, f).key
                                                      for a, f in zip(arch.heads, arch.ffn)]
    swapped = Architecture(hidden=64, heads=arch.heads[::-1], ffn=arch.ffn[::-1], seq_len=32, batch=2, labels=2,
                           vocab=100)
    assert predict_ms(swapped, table) == pytest.approx(result.total_ms)


def test_each_shape_subtracts_its_own_overhead(make_profile) -> None:
    medians = random_medians(MIXED_SPACE, seed=2)
    table = LatencyTable.from_profile(make_profile(medians, MIXED_SPACE))
    for batch, seq_len in [(1, 16), (1, 32), (2, 16), (2, 32)]:
        arch = Architecture(hidden=64, heads=(4,), ffn=(256,), seq_len=seq_len, batch=batch, labels=2, vocab=100)
        blocks = arch.blocks()
        overhead = medians[overhead_block(batch, seq_len)]
        expected = overhead + sum(medians[b] - overhead for b in blocks)
        assert predict_ms(arch, table) == pytest.approx(expected)


def test_missing_overhead_is_named(make_profile) -> None:
    medians = {b: ms for b, ms in random_medians(MIXED_SPACE, seed=3).items() if b != overhead_block(1, 16)}
    table = LatencyTable.from_profile(make_profile(medians, MIXED_SPACE))
    arch = Architecture(hidden=64, heads=(2,), ffn=(128,), seq_len=16, batch=1, labels=2, vocab=100)
    for price in (predict_ms, predict):
        with pytest.raises(LatlabError, match="no entry for block overhead/b1/s16"):
            price(arch, table)
    assert predict_ms(Architecture(64, (2,), (128,), seq_len=32, batch=1, labels=2, vocab=100), table) > 0


def test_fast_path_agrees_with_the_breakdown_on_random_architectures(make_profile) -> None:
    space = load_space(TINY_SPACE)
    for seed in range(3):
        table = LatencyTable.from_profile(make_profile(random_medians(space, seed), space))
        rng = random.Random(seed)
        for _ in range(300):
            arch = space.sample(rng)
            result = predict(arch, table)
            assert predict_ms(arch, table) == pytest.approx(result.total_ms, rel=1e-12)
            assert result.total_ms == pytest.approx(result.overhead_ms + sum(ms for _, ms in result.parts), rel=1e-12)
            assert len(result.parts) == arch.layers + 2


def test_validating_an_exactly_additive_backend_finds_no_error(cli, fake_profile, tmp_path) -> None:
    """The fake backend's whole models take exactly overhead + the blocks' net times (see its docstring), so the
    full pipeline (blocks, profile file, table, sampled whole models, measurement) must agree to the rounding."""
    report = tmp_path / "validation.json"
    result = cli("validate", "--profile", fake_profile, "--archs", "6", "--json", report, "--plot",
                 tmp_path / "plot.png")
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert data["mape_pct"] < 0.01 and data["within_5pct"] == 1.0 and data["spearman"] == pytest.approx(1.0)
    assert data["reference_drift_pct"] == pytest.approx(0.0, abs=0.01)
    assert data["drift_corrected"]["mape_pct"] < 0.01  # no drift, nothing to correct
    assert len({a["measured_ms"] for a in data["archs"]}) > 1, "distinct models, or the check above means little"
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_same_run_validation_separates_the_arithmetic_from_drift(cli, fake_profile, fake_plugin, tmp_path) -> None:
    """The machine runs 10% slower than when it was profiled: the ordinary error shows it, the same-run error
    (blocks re-timed in the same rounds as the models) does not, because the fake backend is exactly additive."""
    fake_plugin.State.slowdown = 1.1
    report = tmp_path / "validation.json"
    result = cli("validate", "--profile", fake_profile, "--archs", "5", "--json", report, "--same-run")
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert data["mean_error_pct"] == pytest.approx(100 / 1.1 - 100, abs=0.05)  # every model 9.1% under
    assert data["same_run"]["mape_pct"] < 0.01 and data["same_run"]["within_5pct"] == 1.0
    assert all(a["same_run_predicted_ms"] == pytest.approx(a["measured_ms"], rel=1e-4) for a in data["archs"])
    profiled = {k: e["stats"]["median_ms"] for k, e in json.loads(fake_profile.read_text())["entries"].items()}
    assert data["same_run_blocks_ms"]
    assert {k: ms / profiled[k] for k, ms in data["same_run_blocks_ms"].items()} == pytest.approx(
        dict.fromkeys(data["same_run_blocks_ms"], 1.1), rel=3e-3)  # files keep 0.1 us
    assert "same run (blocks re-timed with the models, no drift): MAPE 0.00%" in result.stdout
    assert data["same_run_blocks_moved_pct"] == pytest.approx(  # every kind of block 10% slower, and said so
        {"overhead": 10.0, "embeddings": 10.0, "head": 10.0, "model L1": 10.0, "model L4": 10.0}, abs=0.3)
    assert "blocks now vs the profile, median by kind: overhead +10.0%" in result.stdout
    plain = json.loads(report.read_text()) if cli("validate", "--profile", fake_profile, "--archs", "5", "--json",
                                                  report).exit_code == 0 else None
    assert plain is not None and plain["same_run"] is None and plain["archs"][0]["same_run_predicted_ms"] is None


def model_medians(uniform: dict[tuple[int, int], tuple[float, float]], depth: int) -> dict:
    """Overhead 0.1, embeddings 0.3, head 0.2, and per (heads, ffn) the medians of uniform models of 1 and
    ``depth`` layers (hidden 64, seq_len 16, vocab 100, 2 labels)."""
    medians = {overhead_block(1, 16): 0.1, embeddings_block(1, 16, 64, 100): 0.3, head_block(1, 16, 64, 2): 0.2}
    for (heads, ffn), (one, deep) in uniform.items():
        layer = layer_block(1, 16, 64, heads, ffn)
        medians[model_block(layer, 1)] = one
        medians[model_block(layer, depth)] = deep
    return medians


def model_block(layer, layers: int):  # noqa: ANN001, ANN201
    return layer._replace(kind=MODEL, vocab=100, labels=2, layers=layers)


def test_layers_are_priced_as_they_run_inside_models(make_profile) -> None:
    """A layer inside a model costs more than alone: each at the growth per layer of a uniform model, plus once
    per model the mean of its layers' premia (model(1) minus the ends minus the growth). Uniform models of the
    measured depths come out exactly."""
    table = LatencyTable.from_profile(make_profile(model_medians({(2, 128): (2.0, 6.5), (4, 128): (2.5, 8.0)}, 4)))
    def arch(*layers: tuple[int, int]) -> Architecture:
        return Architecture(hidden=64, heads=tuple(a for a, _ in layers), ffn=tuple(f for _, f in layers),
                            seq_len=16, batch=1, labels=2, vocab=100)
    assert predict_ms(arch((2, 128)), table) == pytest.approx(2.0)
    assert predict_ms(arch(*[(2, 128)] * 4), table) == pytest.approx(6.5)
    assert predict_ms(arch(*[(4, 128)] * 4), table) == pytest.approx(8.0)
    assert predict_ms(arch((2, 128), (2, 128)), table) == pytest.approx(2.0 + 1.5)  # between the measured depths
    mixed = predict(arch((4, 128), (2, 128), (4, 128)), table)
    ends, growth = {2: 1.6, 4: 2.1}, {2: 1.5, 4: 5.5 / 3}  # model(1) - overhead - ends; (model(4) - model(1)) / 3
    premium = (2 * (ends[4] - growth[4]) + ends[2] - growth[2]) / 3
    assert mixed.total_ms == pytest.approx(0.1 + 0.3 + 2 * growth[4] + growth[2] + premium)
    assert [ms for _, ms in mixed.parts] == pytest.approx(
        [0.2, growth[4] + premium / 3, growth[2] + premium / 3, growth[4] + premium / 3, 0.1])
    assert predict_ms(arch((2, 128), (4, 128), (4, 128)), table) == pytest.approx(mixed.total_ms)  # any order


def test_a_model_depth_profile_without_a_deep_model_names_what_is_missing(make_profile) -> None:
    medians = model_medians({(2, 128): (2.0, 6.5)}, 4)
    del medians[model_block(layer_block(1, 16, 64, 2, 128), 4)]
    table = LatencyTable.from_profile(make_profile(medians, model_depth=4))
    one = Architecture(hidden=64, heads=(2,), ffn=(128,), seq_len=16, batch=1, labels=2, vocab=100)
    assert predict_ms(one, table) == pytest.approx(2.0)
    with pytest.raises(LatlabError, match="no entry for block layer/b1/s16/h64/a2/f128"):
        predict_ms(Architecture(hidden=64, heads=(2, 2), ffn=(128, 128), seq_len=16, batch=1, labels=2, vocab=100),
                   table)


def test_drift_corrected_accuracy_scales_measurements_back_to_the_profiled_machine() -> None:
    arch = Architecture(hidden=32, heads=(2,), ffn=(64,))
    rows = [ArchResult(arch, predicted, LatencyStats.from_rounds([[measured] * 3]), False)
            for predicted, measured in ((10.0, 11.0), (20.0, 22.0))]
    validation = Validation(rows, Accuracy.of([10.0, 20.0], [11.0, 22.0]), drift_pct=10.0)
    assert validation.accuracy.mape_pct == pytest.approx(100 / 11)  # each 9.1% under: the machine ran 10% slow
    assert validation.drift_corrected.mape_pct == pytest.approx(0.0, abs=1e-9)
    assert validation.drift_corrected.within_5pct == 1.0


@pytest.mark.parametrize("model_depth", [0, 4])
def test_predict_many_prices_every_row_as_predict_ms_does(make_profile, model_depth: int) -> None:
    """Random heterogeneous stacks of every depth, shape and batch of the space, priced at once."""
    table = LatencyTable.from_profile(make_profile(random_medians(MIXED_SPACE, 5, model_depth), MIXED_SPACE))
    rng = random.Random(model_depth)
    archs = [MIXED_SPACE.sample(rng) for _ in range(400)]
    assert {a.layers for a in archs} == set(MIXED_SPACE.layers) and len({a.heads for a in archs}) > 4
    assert predict_many(Architectures.of(archs), table).tolist() == pytest.approx([predict_ms(a, table) for a in archs],
                                                                                 rel=1e-12)


def test_predict_many_names_the_block_a_row_lacks_as_predict_ms_does(make_profile) -> None:
    medians = random_medians(MIXED_SPACE, 6, model_depth=4)
    del medians[model_block(layer_block(2, 32, 64, 4, 256), 4)]
    table = LatencyTable.from_profile(make_profile(medians, MIXED_SPACE))
    priceable = Architecture(hidden=64, heads=(4,), ffn=(256,), seq_len=32, batch=2, labels=2, vocab=100)
    lacking = Architecture(hidden=64, heads=(2, 4), ffn=(128, 256), seq_len=32, batch=2, labels=2, vocab=100)
    with pytest.raises(LatlabError) as single:
        predict_ms(lacking, table)
    with pytest.raises(LatlabError) as many:
        predict_many(Architectures.of([priceable, lacking]), table)
    assert str(many.value) == str(single.value) and "layer/b2/s32/h64/a4/f256" in str(many.value)
    other_vocab = Architecture(hidden=64, heads=(4,), ffn=(256,), seq_len=32, batch=2, labels=2, vocab=99)
    with pytest.raises(LatlabError, match="no entry for block embeddings/b2/s32/h64/v99"):
        predict_many(Architectures.of([other_vocab]), table)


def test_predict_many_refuses_rows_deeper_than_their_columns(make_profile) -> None:
    table = LatencyTable.from_profile(make_profile(random_medians(MIXED_SPACE, 7), MIXED_SPACE))
    rows = Architectures.of([Architecture(hidden=64, heads=(2, 2), ffn=(128, 128), seq_len=16, batch=1, labels=2,
                                          vocab=100)])
    deeper = Architectures(rows.hidden, rows.heads, rows.ffn, rows.layers + 1, rows.seq_len, rows.batch, 100, 2)
    with pytest.raises(LatlabError, match="row 0: layers 3 but only 2 per-layer columns given"):
        predict_many(deeper, table)
