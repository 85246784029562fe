"""The search reward, MnasNet / KD-NAS style: quality x (latency / target)^w.

``w`` is ``weight_under`` when the candidate meets the target and ``weight_over`` when it does not, so one can
choose MnasNet's soft constraint (both -0.07) or a steeper penalty above the target. Latency is always the
profile's prediction, never a timing taken during the search.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from latlab.errors import LatlabError


@dataclass(frozen=True)
class RewardConfig:
    target_ms: float  # a budget in ms, or target_ratio x the teacher's predicted latency
    weight_under: float = -0.07  # exponent at or below the target: a small bonus for being faster still
    weight_over: float = -1.0  # exponent above the target: reward falls in proportion to the overshoot
    budget_ms: float | None = None  # hard limit: candidates predicted above it are never trained

    def __post_init__(self) -> None:
        if not (self.target_ms > 0 and math.isfinite(self.target_ms)):  # inf: 0 ** w divides by zero in reward()
            raise LatlabError(f"reward target must be a positive, finite number of ms, got {self.target_ms}")

    def describe(self) -> str:
        budget = f", hard budget {self.budget_ms:.3f} ms" if self.budget_ms is not None else ""
        return (f"reward = quality x (predicted_ms / {self.target_ms:.3f} ms)^w, w = {self.weight_under} at or "
                f"under the target, {self.weight_over} over it{budget}")


def quality_from_loss(normalised_loss: float) -> float:
    """1 - loss, where the loss is MSE over the teacher's variance (1 - R^2): 0 = no better than the mean."""
    return min(1.0, max(0.0, 1.0 - normalised_loss))


def reward(quality: float, predicted_ms: float, config: RewardConfig) -> float:
    """quality x (predicted / target)^w: the one number the controller maximises."""
    ratio = predicted_ms / config.target_ms
    weight = config.weight_under if ratio <= 1.0 else config.weight_over
    return quality * ratio ** weight


def within_budget(predicted_ms: float, config: RewardConfig) -> bool:
    return config.budget_ms is None or predicted_ms <= config.budget_ms
