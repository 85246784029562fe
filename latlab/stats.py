"""Latency statistics of one item's raw samples."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class LatencyStats:
    n: int
    median_ms: float
    mean_ms: float
    trimmed_mean_ms: float  # mean of the middle 80%: robust to the odd preempted call
    p90_ms: float
    p95_ms: float
    p99_ms: float
    min_ms: float
    max_ms: float
    stdev_ms: float
    cv_pct: float  # stdev / mean of all samples
    round_cv_pct: float  # spread of the per-round medians: the drift/stability signal the protocol acts on

    @classmethod
    def from_rounds(cls, rounds: list[list[float]]) -> LatencyStats:
        samples = np.asarray([s for r in rounds for s in r], dtype=float)
        if samples.size == 0:
            raise ValueError("no samples")
        ordered = np.sort(samples)
        cut = int(len(ordered) * 0.1)
        trimmed = ordered[cut:len(ordered) - cut] if len(ordered) > 2 * cut else ordered
        mean = float(samples.mean())
        stdev = float(samples.std(ddof=1)) if samples.size > 1 else 0.0
        medians = np.asarray([np.median(r) for r in rounds if r])
        round_cv = float(medians.std(ddof=1) / medians.mean() * 100) if medians.size > 1 else 0.0
        p90, p95, p99 = np.percentile(samples, [90, 95, 99])
        return cls(
            n=int(samples.size),
            median_ms=float(np.median(samples)),
            mean_ms=mean,
            trimmed_mean_ms=float(trimmed.mean()),
            p90_ms=float(p90),
            p95_ms=float(p95),
            p99_ms=float(p99),
            min_ms=float(ordered[0]),
            max_ms=float(ordered[-1]),
            stdev_ms=stdev,
            cv_pct=stdev / mean * 100 if mean else 0.0,
            round_cv_pct=round_cv,
        )

    def to_json(self) -> dict[str, Any]:
        return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in asdict(self).items()}
