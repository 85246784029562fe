"""The premium shared by a model's layers, the calibrated cost of shape changes, and where the calibration comes
from: fitted on mixed models timed with their blocks, stored in the profile, never validated on."""

import json
import random
from dataclasses import replace

import pytest

from latlab.architecture import Architecture
from latlab.calibration import Calibration, CalibrationModel, calibration_architectures
from latlab.errors import LatlabError
from latlab.predict import Architectures, LatencyTable, predict, predict_many, predict_ms, priced_calibration
from latlab.profile import Profile
from latlab.validate import sample_architectures

from conftest import TINY_SPACE, synthetic_profile
from test_predict import MIXED_SPACE, random_medians


def mixed_table(seed: int = 1, shape_change: float = 0.0, beyond_depth: float = 0.0, depth: int = 4) -> LatencyTable:
    profile = synthetic_profile(random_medians(MIXED_SPACE, seed, model_depth=depth), MIXED_SPACE)
    return replace(LatencyTable.from_profile(profile), shape_change=shape_change, beyond_depth=beyond_depth)


def arch(heads: tuple[int, ...], ffn: tuple[int, ...]) -> Architecture:
    return Architecture(hidden=64, heads=heads, ffn=ffn, seq_len=32, batch=2, labels=2, vocab=100)


def test_a_models_layers_in_any_order_cost_the_same() -> None:
    table = mixed_table()
    assert predict_ms(arch((2, 4), (128, 256)), table) == pytest.approx(predict_ms(arch((4, 2), (256, 128)), table))


def test_uniform_models_are_priced_at_what_they_measured() -> None:
    """The premium of a uniform model is its layer's own, so one and four layers price as their model blocks."""
    medians = random_medians(MIXED_SPACE, 3, model_depth=4)
    table = LatencyTable.from_profile(synthetic_profile(medians, MIXED_SPACE))
    for depth in (1, 4):
        model = next(b for b in medians if b.kind == "model" and b.layers == depth and b.batch == 2
                     and b.seq_len == 32 and b.heads == 4 and b.ffn == 128)
        assert predict_ms(arch((4,) * depth, (128,) * depth), table) == pytest.approx(medians[model])


def test_each_shape_change_costs_its_fraction_of_the_mean_growth() -> None:
    plain, calibrated = mixed_table(shape_change=0.0), mixed_table(shape_change=0.05)
    stack = arch((2, 4, 4, 2), (128, 256, 256, 128))  # two changes of shape
    growth = [plain.next_ms[b] for b in stack.blocks()[1:-1]]
    assert stack.shape_changes == 2
    extra = predict_ms(stack, calibrated) - predict_ms(stack, plain)
    assert extra == pytest.approx(0.05 * 2 * sum(growth) / 4)
    assert predict(stack, calibrated).calibrated_ms == pytest.approx(extra)
    uniform = arch((2, 2, 2), (128, 128, 128))
    assert predict_ms(uniform, calibrated) == pytest.approx(predict_ms(uniform, plain))


def test_each_layer_past_the_model_depth_costs_its_fraction_of_its_growth() -> None:
    plain, calibrated = mixed_table(depth=2), mixed_table(beyond_depth=0.1, depth=2)
    stack = arch((2, 2, 4, 2), (128, 128, 256, 256))  # layers 3 and 4 lie past the depth of 2
    extra = predict_ms(stack, calibrated) - predict_ms(stack, plain)
    assert extra == pytest.approx(0.1 * sum(plain.next_ms[b] for b in stack.blocks()[3:-1]))
    shallow = arch((2, 4), (128, 256))
    assert predict_ms(shallow, calibrated) == pytest.approx(predict_ms(shallow, plain))


@pytest.mark.parametrize("depth", [2, 4])
def test_predict_many_prices_the_calibration_as_predict_ms_does(depth: int) -> None:
    table = mixed_table(seed=5, shape_change=0.07, beyond_depth=0.2, depth=depth)
    rng = random.Random(5)
    archs = [MIXED_SPACE.sample(rng) for _ in range(200)]
    assert predict_many(Architectures.of(archs), table) == pytest.approx([predict_ms(a, table) for a in archs],
                                                                         rel=1e-12)


def model(measured: float, table: float, changes: float, deep: float = 0.0) -> CalibrationModel:
    return CalibrationModel(arch((2, 4), (128, 128)), [[measured] * 3], table, changes, deep)


SHAPES = [(2.0, 0.5, 0.0), (5.0, 1.2, 1.0), (9.0, 3.0, 4.0), (3.0, 0.2, 0.0), (7.0, 0.4, 2.5)]  # table, changes, deep


def test_the_fit_recovers_the_costs_that_made_the_measurements() -> None:
    models = tuple(model(t + 0.04 * c + 0.1 * d, t, c, d) for t, c, d in SHAPES)
    calibration = Calibration(models, "profile")
    assert calibration.fractions == pytest.approx((0.04, 0.1), rel=1e-6)
    assert max(map(abs, calibration.errors_pct(calibration.fractions))) < 1e-6
    assert min(calibration.errors_pct((0.0, 0.0))) < -2


def test_a_cost_that_would_have_to_be_negative_is_left_out() -> None:
    """Models faster than the table with depth: no negative cost, the other term fitted alone."""
    models = tuple(model(t + 0.04 * c - 0.01 * d, t, c, d) for t, c, d in SHAPES)
    fractions = Calibration(models, "profile").fractions
    assert fractions[1] == 0.0 and fractions[0] > 0


def test_without_priced_models_nothing_is_calibrated() -> None:
    unpriced = Calibration((CalibrationModel(arch((2, 4), (128, 128)), []),), "profile")
    assert unpriced.fractions == (0.0, 0.0) and unpriced.fitted == ()


def test_priced_reads_each_models_price_off_the_table() -> None:
    table = mixed_table(seed=7, shape_change=0.5, beyond_depth=0.5, depth=2)  # priced without them all the same
    stack = arch((2, 4, 2), (128, 128, 256))
    done = priced_calibration(Calibration((CalibrationModel(stack, [[1.0]]),), "re-timed"), table).models[0]
    assert done.table_ms == pytest.approx(predict_ms(stack, replace(table, shape_change=0.0, beyond_depth=0.0)))
    assert done.changes_ms == pytest.approx(2 * sum(table.next_ms[b] for b in stack.blocks()[1:-1]) / 3)
    assert done.deep_ms == pytest.approx(table.next_ms[stack.blocks()[3]])


def test_calibration_architectures_are_distinct_mixed_stacks() -> None:
    archs = calibration_architectures(MIXED_SPACE, 10)
    assert len(archs) == 10 and len(set(archs)) == 10
    assert all(a.shape_changes >= 1 for a in archs)
    assert calibration_architectures(MIXED_SPACE, 10) == archs  # a fixed seed: every profile fits on the same


def test_validation_never_measures_a_calibration_architecture() -> None:
    profile = synthetic_profile(random_medians(MIXED_SPACE, 1, model_depth=4), MIXED_SPACE)
    profile.calibration = Calibration(tuple(CalibrationModel(a, [[1.0]]) for a in
                                            sample_architectures(profile, 30, seed=11)), "profile")
    drawn = sample_architectures(profile, 30, seed=11)
    assert len(drawn) == 30 and not set(drawn) & {m.arch for m in profile.calibration.models}


def test_a_profile_keeps_its_calibration_through_its_file(tmp_path) -> None:
    profile = synthetic_profile(random_medians(MIXED_SPACE, 1, model_depth=4), MIXED_SPACE)
    profile.calibration = Calibration(tuple(model(t + 0.04 * c + 0.1 * d, t, c, d) for t, c, d in SHAPES), "profile")
    again = Profile.from_json(json.loads(json.dumps(profile.to_json())), "p.json")
    assert again.calibration == profile.calibration
    table = LatencyTable.from_profile(again)
    assert (table.shape_change, table.beyond_depth) == pytest.approx((0.04, 0.1), rel=1e-6)
    assert table.model_depth == 4


@pytest.mark.parametrize("calibration, needle", [
    ({"blocks": "elsewhere", "models": []}, "calibration"),
    ({"blocks": "profile", "models": {}}, "calibration.models"),
    ({"blocks": "profile", "models": [{"arch": {"hidden": 64, "layers": 1, "heads": 2, "ffn": 8},
                                       "rounds_ms": [[-1.0]]}]}, "calibration.models[0].rounds_ms"),
])
def test_a_damaged_calibration_is_named(calibration, needle) -> None:
    data = json.loads(json.dumps(synthetic_profile(random_medians(MIXED_SPACE, 1, model_depth=4), MIXED_SPACE).to_json()))
    with pytest.raises(LatlabError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        Profile.from_json({**data, "calibration": calibration}, "p.json")


def test_profiling_times_calibration_models_with_the_blocks(fake_profile) -> None:
    """The fake backend's models take exactly the sum of their blocks, so there is no shape-change cost to find."""
    profile = Profile.from_json(json.loads(fake_profile.read_text()), str(fake_profile))
    calibration = profile.calibration
    assert calibration is not None and calibration.blocks == "profile"
    assert len(calibration.fitted) == profile.protocol.calibration_models
    assert all(len(m.rounds_ms) == profile.protocol.rounds for m in calibration.models)
    assert calibration.fractions == pytest.approx((0.0, 0.0), abs=1e-3)
    assert [m.arch for m in calibration.models] == calibration_architectures(profile.space,
                                                                             profile.protocol.calibration_models)


def test_latlab_calibrate_fits_a_profile_measured_without_one(cli, fake_profile) -> None:
    data = json.loads(fake_profile.read_text())
    data["calibration"] = None
    fake_profile.write_text(json.dumps(data))
    result = cli("calibrate", "--profile", fake_profile, "--models", "3")
    assert result.exit_code == 0, result.output
    assert "each change of layer shape costs" in result.output and "past the model depth" in result.output
    calibration = Profile.from_json(json.loads(fake_profile.read_text()), "p").calibration
    assert calibration.blocks == "re-timed" and len(calibration.fitted) == 3
    assert calibration.fractions == pytest.approx((0.0, 0.0), abs=1e-3)


def test_tiny_space_gives_calibration_models() -> None:
    from latlab.space import load_space

    assert len(calibration_architectures(load_space(TINY_SPACE), 10)) == 10
