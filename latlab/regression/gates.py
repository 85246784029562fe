"""Regression gates such as ``p90:10%``: one parser and one judgement, shared by the pytest plugin and
``latlab report``. Pure and stdlib-only, because the pytest plugin imports it in every pytest run.

The rule: a gate fails when the lower end of the CONFIDENCE bootstrap interval of the change is above its limit,
that is, when the statistic is worse by more than the limit with that confidence (``latlab.regression.confidence``
computes the interval). Where no interval can be had (a run saved without raw samples) the point change decides,
as it always did, and the verdict says so."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from latlab.errors import LatlabError

STATS = ("min", "median", "mean", "p90", "p95", "p99")
CONFIDENCE = 0.95
_GATE = re.compile(r"^\s*([a-z0-9]+)\s*:\s*(\d+(?:\.\d*)?|\.\d+)\s*%\s*$")


@dataclass(frozen=True)
class Gate:
    """Fail when ``stat`` got more than ``limit_pct`` percent slower."""

    stat: str
    limit_pct: float

    def __str__(self) -> str:
        return f"{self.stat}:{self.limit_pct:g}%"

    def value(self, stats: Any) -> float:
        """The gated statistic of a ``LatencyStats`` (its ``<stat>_ms`` field)."""
        return float(getattr(stats, f"{self.stat}_ms"))


def parse_gates(text: str) -> tuple[Gate, ...]:
    """``"p90:10%"`` or a comma-separated list ``"median:5%,p99:20%"``; anything else is a LatlabError."""
    gates = []
    for part in text.split(","):
        match = _GATE.match(part.lower())
        if not match or match.group(1) not in STATS:
            raise LatlabError(f"bad gate {part.strip()!r} in {text!r}: expected STAT:LIMIT% such as p90:10%, "
                              f"with STAT one of {', '.join(STATS)}")
        gates.append(Gate(match.group(1), float(match.group(2))))
    return tuple(gates)


@dataclass(frozen=True)
class Verdict:
    gate: Gate
    against: str  # what the current value is compared with: "baseline", "reference", "profile"
    baseline_ms: float
    current_ms: float
    change_pct: float
    drift_corrected: bool  # change measured relative to the calibration anchor of each run
    interval_pct: tuple[float, float] | None = None  # CONFIDENCE interval of the change; None: point comparison
    note: str = ""  # what the interval leaves out, or why a comparison that should have had one has none
    processes: int = 0  # saved baseline: how many processes saved it (their centre is ``baseline_ms``)

    @property
    def failed(self) -> bool:
        """A NaN fails: never pass what was not measured."""
        decisive = self.interval_pct[0] if self.interval_pct else self.change_pct
        return not decisive <= self.gate.limit_pct

    def interval_text(self) -> str:
        """``95% CI +3.1% to +9.8%``; empty for a point comparison."""
        if not self.interval_pct:
            return ""
        low, high = self.interval_pct
        return f"{CONFIDENCE:.0%} CI {low:+.1f}% to {high:+.1f}%"

    def describe(self) -> str:
        how = ", drift-corrected" if self.drift_corrected else ""
        state = "FAIL" if self.failed else "ok"
        note = f"; {self.note}" if self.note else ""
        over = f" ({self.processes} processes)" if self.processes > 1 else ""
        return (f"{state} {self.gate.stat} {self.current_ms:.3f} ms vs {self.against} {self.baseline_ms:.3f} ms{over}: "
                f"{self.change_pct:+.1f}%{', ' if self.interval_pct else ''}{self.interval_text()}{how} "
                f"(limit +{self.gate.limit_pct:g}%{note})")

    def to_json(self) -> dict[str, Any]:
        interval = [round(value, 3) for value in self.interval_pct] if self.interval_pct else None
        return {"gate": str(self.gate), "against": self.against, "baseline_ms": round(self.baseline_ms, 5),
                "current_ms": round(self.current_ms, 5), "change_pct": round(self.change_pct, 3),
                "interval_pct": interval, "confidence": CONFIDENCE if interval else None,
                "drift_corrected": self.drift_corrected, "failed": self.failed, "note": self.note,
                "baseline_processes": self.processes}


def change_pct(baseline: float, current: float) -> float:
    """Percent change of ``current`` over ``baseline``; NaN when there is no baseline to compare with."""
    return (current / baseline - 1) * 100 if baseline > 0 else math.nan


def judge(gate: Gate, against: str, baseline_ms: float, current_ms: float,
          corrected: tuple[float, float] | None = None, interval: tuple[float, float] | None = None,
          note: str = "", processes: int = 0) -> Verdict:
    """The change of the gated statistic: from the raw latencies, or from ``corrected`` (baseline, current) values,
    the latencies relative to a calibration anchor timed in the same rounds, which cancel the machine getting
    faster or slower between the two runs. ``interval``: the CONFIDENCE interval of the ratio current/baseline."""
    change = change_pct(*corrected) if corrected else change_pct(baseline_ms, current_ms)
    interval_pct = (change_pct(1.0, interval[0]), change_pct(1.0, interval[1])) if interval else None
    return Verdict(gate, against, baseline_ms, current_ms, change, corrected is not None, interval_pct, note,
                   processes)
