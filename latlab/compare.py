"""Two profiles side by side: where machines, runtimes, versions or precisions differ, and by how much.

Between two setups, latencies of one kind of block follow one pattern: a faster core speeds every layer up
alike, while bf16 or another runtime gains more on large blocks than on small ones. So a comparison fits, per
kind, B = c * A^k on a log-log scale (k = 1: one factor for all sizes) and names the blocks that break it: those
are where the two setups differ in kind, not just in speed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from latlab.profile import Profile

# A block breaks its kind's pattern when its ratio is off the kind's factor by more than this, or than three
# robust standard deviations of the kind's ratios, whichever is larger: a few percent is measurement noise.
OUTLIER_MIN_PCT = 10.0


@dataclass(frozen=True)
class BlockRatio:
    key: str
    kind: str
    a_ms: float
    b_ms: float

    @property
    def ratio(self) -> float:
        """B / A: above 1 when the block runs slower in B."""
        return self.b_ms / self.a_ms


@dataclass(frozen=True)
class Scaling:
    """One kind's pattern from A to B: B = factor * A^exponent (ms), fitted on log-log; ``ratio`` is the geometric
    mean of B/A, the one-number summary."""

    kind: str
    blocks: int
    ratio: float
    factor: float
    exponent: float
    spread_pct: float  # robust standard deviation of the blocks around the fit, in percent

    def expected_ms(self, a_ms: float) -> float:
        return self.factor * a_ms ** self.exponent

    def off_pct(self, block: BlockRatio) -> float:
        return (block.b_ms / self.expected_ms(block.a_ms) - 1) * 100


@dataclass(frozen=True)
class Comparison:
    differences: list[str]  # fingerprint, runtime, settings and protocol: what differs between the two setups
    rows: list[BlockRatio]  # blocks measured in both, in A's order
    scaling: dict[str, Scaling]  # per kind, and "all"
    outliers: list[BlockRatio]  # blocks whose ratio breaks their kind's factor
    only_in_a: int
    only_in_b: int

    def to_json(self) -> dict:
        return {
            "differences": self.differences,
            "scaling": {k: {"blocks": s.blocks, "ratio": round(s.ratio, 4), "factor": round(s.factor, 4),
                            "exponent": round(s.exponent, 4), "spread_pct": round(s.spread_pct, 2)}
                        for k, s in self.scaling.items()},
            "outliers": [r.key for r in self.outliers],
            "only_in_a": self.only_in_a,
            "only_in_b": self.only_in_b,
            "blocks": [{"block": r.key, "kind": r.kind, "a_ms": round(r.a_ms, 4), "b_ms": round(r.b_ms, 4),
                        "ratio": round(r.ratio, 4)} for r in self.rows],
        }


def setup_differences(a: Profile, b: Profile) -> list[str]:
    """Everything recorded that moves latency, worded "B vs A", the machine first."""
    found = a.fingerprint.differences(b.fingerprint, include_gpus="cuda" in (a.settings.device, b.settings.device),
                                      names=("in A", "in B"))
    pairs = {"backend": (a.backend, b.backend), "runtime_version": (a.runtime_version, b.runtime_version),
             "precision": (a.settings.numerics, b.settings.numerics), "threads": (a.settings.threads,
                                                                                   b.settings.threads),
             "device": (a.settings.device, b.settings.device), "model_depth": (a.protocol.model_depth,
                                                                              b.protocol.model_depth)}
    found += [f"{name}: {theirs} in B vs {mine} in A" for name, (mine, theirs) in pairs.items() if mine != theirs]
    return found


def robust_spread_pct(log_residuals: np.ndarray) -> float:
    """How far points sit from a fit on a log scale, in percent: the median absolute deviation scaled to a
    standard deviation, so one odd block does not inflate it (that block is what a comparison wants to name)."""
    robust_sd = 1.4826 * float(np.median(np.abs(log_residuals - np.median(log_residuals))))
    return (math.exp(robust_sd) - 1) * 100


def scaling_of(kind: str, rows: list[BlockRatio]) -> Scaling:
    """The log-log fit; with fewer than 3 blocks, or sizes too alike to fit a slope, one factor (exponent 1)."""
    log_a, log_b = np.log([r.a_ms for r in rows]), np.log([r.b_ms for r in rows])
    if len(rows) >= 3 and np.ptp(log_a) > math.log(1.5):
        exponent, intercept = (float(v) for v in np.polyfit(log_a, log_b, 1))
    else:
        exponent, intercept = 1.0, float(np.mean(log_b - log_a))
    return Scaling(kind, len(rows), math.exp(float(np.mean(log_b - log_a))), math.exp(intercept), exponent,
                   robust_spread_pct(log_b - (intercept + exponent * log_a)))


def compare_profiles(a: Profile, b: Profile) -> Comparison:
    """Blocks both profiles measured, by key; A is the reference (ratios are B / A)."""
    shared = [key for key in a.entries if key in b.entries]
    rows = [BlockRatio(key, a.entries[key].block.kind, a.entries[key].stats.median_ms, b.entries[key].stats.median_ms)
            for key in shared]
    by_kind: dict[str, list[BlockRatio]] = {}
    for row in rows:
        by_kind.setdefault(row.kind, []).append(row)
    scaling = {kind: scaling_of(kind, kind_rows) for kind, kind_rows in by_kind.items()}
    if rows:
        scaling["all"] = scaling_of("all", rows)
    outliers = [r for r in rows if abs(scaling[r.kind].off_pct(r)) > max(OUTLIER_MIN_PCT,
                                                                         3 * scaling[r.kind].spread_pct)]
    return Comparison(setup_differences(a, b), rows, scaling, outliers, len(a.entries) - len(shared),
                      len(b.entries) - len(shared))


def render_plot(comparison: Comparison, a_name: str, b_name: str) -> bytes:
    """Each block's latency in A against B, log-log, one colour per kind; the diagonal is "no change"."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    for kind, scaling in comparison.scaling.items():
        if kind == "all":
            continue
        rows = [r for r in comparison.rows if r.kind == kind]
        points = ax.scatter([r.a_ms for r in rows], [r.b_ms for r in rows], s=14,
                            label=f"{kind}: B = {scaling.factor:.2f}·A^{scaling.exponent:.2f}")
        ends = np.array([min(r.a_ms for r in rows), max(r.a_ms for r in rows)])
        ax.plot(ends, [scaling.expected_ms(v) for v in ends], color=points.get_facecolor()[0], lw=1)
    for r in comparison.outliers:
        ax.annotate(r.key, (r.a_ms, r.b_ms), fontsize=6)
    values = [v for r in comparison.rows for v in (r.a_ms, r.b_ms)]
    low, high = min(values) * 0.8, max(values) * 1.25
    ax.plot([low, high], [low, high], color="grey", lw=1)
    ax.set(xscale="log", yscale="log", xlim=(low, high), ylim=(low, high), xlabel=f"A: {a_name} (ms)",
           ylabel=f"B: {b_name} (ms)")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()
