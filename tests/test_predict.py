"""Prediction arithmetic: overhead once, plus each block's median minus the overhead it paid alone."""

import json
import random

import pytest

from latlab.architecture import Architecture
from latlab.blocks import OVERHEAD, embeddings_block, head_block, layer_block, overhead_block
from latlab.errors import LatlabError
from latlab.predict import LatencyTable, predict, predict_ms
from latlab.space import SearchSpace, load_space
from latlab.stats import LatencyStats
from latlab.validate import Accuracy, ArchResult, Validation

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


def random_medians(space: SearchSpace, seed: int) -> dict:
    """A plausible median per block (at the 0.1 us resolution profiles keep): the overhead small, the rest larger."""
    rng = random.Random(seed)
    return {b: round(rng.uniform(0.01, 0.05) if b.kind == OVERHEAD else rng.uniform(0.1, 5.0), 4)
            for b in space.blocks()}


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


def test_drift_corrected_accuracy_scales_measurements_back_to_the_profiled_machine() -> None:
    arch = Architecture(hidden=32, heads=(2,), ffn=(64,))
    rows = [ArchResult(arch, predicted, LatencyStats.from_rounds([[measured] * 3]), False)
            for predicted, measured in ((10.0, 11.0), (20.0, 22.0))]
    validation = Validation(rows, Accuracy.of([10.0, 20.0], [11.0, 22.0]), drift_pct=10.0)
    assert validation.accuracy.mape_pct == pytest.approx(100 / 11)  # each 9.1% under: the machine ran 10% slow
    assert validation.drift_corrected.mape_pct == pytest.approx(0.0, abs=1e-9)
    assert validation.drift_corrected.within_5pct == 1.0
