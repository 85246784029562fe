"""Reward, layer-mapping and drift-correction arithmetic: small pure functions, checked by hand-computed values."""

import pytest

from kdnas.mapping import layer_map
from kdnas.measure import Timed, Timing
from kdnas.reward import RewardConfig, quality_from_loss, reward, within_budget
from latlab.errors import LatlabError
from latlab.stats import LatencyStats


def test_reward_is_quality_times_latency_ratio_power() -> None:
    config = RewardConfig(target_ms=4.0, weight_under=-0.07, weight_over=-1.0)
    assert reward(0.8, 4.0, config) == pytest.approx(0.8)  # on target: quality alone
    assert reward(0.8, 2.0, config) == pytest.approx(0.8 * 0.5 ** -0.07)  # faster: a small bonus
    assert reward(0.8, 8.0, config) == pytest.approx(0.8 * 2.0 ** -1.0)  # twice too slow: half the reward


def test_soft_constraint_prefers_quality_hard_weight_prefers_speed() -> None:
    soft = RewardConfig(target_ms=1.0, weight_under=-0.07, weight_over=-0.07)
    steep = RewardConfig(target_ms=1.0, weight_under=-0.07, weight_over=-1.0)
    slow_good, fast_poor = (0.9, 3.0), (0.75, 1.0)
    assert reward(*slow_good, soft) > reward(*fast_poor, soft)
    assert reward(*slow_good, steep) < reward(*fast_poor, steep)


def test_quality_is_clipped_one_minus_loss() -> None:
    assert quality_from_loss(0.25) == pytest.approx(0.75)
    assert quality_from_loss(1.3) == 0.0 and quality_from_loss(-0.1) == 1.0


def test_budget_and_target_validation() -> None:
    assert within_budget(5.0, RewardConfig(1.0)) and not within_budget(5.0, RewardConfig(1.0, budget_ms=4.0))
    with pytest.raises(LatlabError, match="positive"):
        RewardConfig(target_ms=0.0)


@pytest.mark.parametrize(("student", "teacher", "strategy", "expected"), [
    (2, 6, "uniform", ((0, 0), (1, 3), (2, 6))),
    (3, 6, "uniform", ((0, 0), (1, 2), (2, 4), (3, 6))),
    (4, 6, "uniform", ((0, 0), (1, 1), (2, 2), (3, 3), (4, 4))),  # stride 1: the last teacher layer is missed
    (4, 6, "uniform+last", ((0, 0), (1, 1), (2, 2), (3, 3), (4, 4), (4, 6))),
    (2, 6, "uniform+last", ((0, 0), (1, 3), (2, 6))),  # uniform already ends on the last layer
    (4, 6, "last", ((0, 0), (4, 6))),
    (6, 6, "uniform", tuple((i, i) for i in range(7))),
    (8, 6, "uniform", ((0, 0), (1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 6), (7, 6), (8, 6))),
])
def test_layer_map(student: int, teacher: int, strategy: str, expected: tuple) -> None:
    assert layer_map(student, teacher, strategy) == expected


def test_layer_map_rejects_unknown_strategy() -> None:
    with pytest.raises(ValueError, match="uniform"):
        layer_map(2, 6, "skip")


def test_drift_corrected_error_divides_the_measurement_by_the_machine_drift() -> None:
    measured = LatencyStats.from_rounds([[11.0, 11.0, 11.0]])
    timing = Timing({"student": Timed(10.0, measured, False), "unpriced": Timed(None, measured, False)}, drift_pct=10.0)
    assert timing.error_pct("student") == pytest.approx((10 - 11) / 11 * 100)  # -9.1%: the machine is 10% slow
    assert timing.error_pct("student", drift_corrected=True) == pytest.approx(0.0)  # ... which explains all of it
    assert timing.error_pct("unpriced") is None
