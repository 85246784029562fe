"""How close predictions are to measurements: the figures every validation and report quotes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def error_pct(predicted_ms: float, measured_ms: float) -> float:
    """Signed prediction error: + when the profile predicts slower than measured."""
    return (predicted_ms - measured_ms) / measured_ms * 100


@dataclass(frozen=True)
class Accuracy:
    """nn-Meter's "share within ±10%" next to MAPE and rank agreement (what a search cares about)."""

    mape_pct: float
    within_5pct: float
    within_10pct: float
    spearman: float
    mean_error_pct: float = 0.0  # signed: a bias (every model too fast or too slow) shows here, not in MAPE

    @classmethod
    def of(cls, predicted: list[float], measured: list[float]) -> Accuracy:
        from scipy.stats import spearmanr  # scipy loads in 0.15 s: only where accuracy is computed

        p, m = np.asarray(predicted), np.asarray(measured)
        signed = (p - m) / m * 100
        errors = np.abs(signed)
        rho = float(spearmanr(p, m).statistic) if len(p) > 1 else float("nan")
        return cls(float(errors.mean()), float((errors <= 5).mean()), float((errors <= 10).mean()), rho,
                   float(signed.mean()))

    def to_json(self) -> dict[str, float]:
        return {"mape_pct": round(self.mape_pct, 3), "mean_error_pct": round(self.mean_error_pct, 3),
                "within_5pct": round(self.within_5pct, 3), "within_10pct": round(self.within_10pct, 3),
                "spearman": round(self.spearman, 4)}
