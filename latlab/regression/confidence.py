"""Is a change real? The ratio of a latency statistic between two measurements, with a bootstrap interval.

Pure NumPy and seeded, so a verdict can be recomputed from a saved run and gives the same interval every time.
The resampling follows how the samples were taken: a sample and its companion timed in the same round (the
anchor, or the A/B reference) are resampled together, and the rounds of each block of consecutive rounds are
resampled within their block, so the interval describes the estimator the gates use and nothing else.

A baseline saved from several processes is compared through its processes' centre (geometric mean), and the
interval is a hierarchical bootstrap: the baseline's processes are resampled, then the rounds within each. Two
processes of unchanged code differ by more than their rounds say (memory layout, core, neighbours), so with a
single baseline process the interval leaves that out; with several it widens by as much as they disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

QUANTILES = {"median": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0}
RELATIVE_BLOCK = 30  # rounds per block at least, so that a block's p90 rests on a few samples above it
MAX_BLOCKS = 10
RESAMPLES = 1000  # enough for the 2.5th and 97.5th percentiles to move by well under a percent between seeds


def statistic(samples: np.ndarray, stat: str) -> np.ndarray:
    """``stat`` (min, median, mean, p90, p95, p99) along the last axis, as ``LatencyStats`` computes it."""
    if stat == "min":
        return samples.min(axis=-1)
    if stat == "mean":
        return samples.mean(axis=-1)
    return np.percentile(samples, QUANTILES[stat], axis=-1)


@dataclass(frozen=True)
class Series:
    """The samples of one measurement in time order, each optionally divided by a companion's sample of the same
    round, the statistic taken per block of consecutive rounds and the median over blocks."""

    samples: np.ndarray
    companion: np.ndarray | None = None
    blocks: int = 1

    @classmethod
    def plain(cls, samples: Sequence[float]) -> Series:
        return cls(np.asarray(samples, dtype=float))

    @classmethod
    def anchored(cls, samples: Sequence[float], anchor: Sequence[float]) -> Series:
        """Relative to the anchor, in up to ten blocks of at least RELATIVE_BLOCK rounds: drift during the run
        moves model and anchor alike within a block and cancels."""
        blocks = max(1, min(MAX_BLOCKS, len(samples) // RELATIVE_BLOCK))
        return cls(np.asarray(samples, dtype=float), np.asarray(anchor, dtype=float), blocks)

    @classmethod
    def paired(cls, candidate: Sequence[float], reference: Sequence[float]) -> Series:
        """A/B: the candidate over the reference timed in the same rounds, over the whole run."""
        return cls(np.asarray(candidate, dtype=float), np.asarray(reference, dtype=float))


def _estimates(series: Series, stat: str, picks: list[np.ndarray]) -> np.ndarray:
    """The estimate for each row of round indices (one array of indices per block)."""
    per_block = []
    for rows in picks:
        value = statistic(series.samples[rows], stat)
        if series.companion is not None:
            value = value / statistic(series.companion[rows], stat)
        per_block.append(value)
    return np.median(np.stack(per_block), axis=0)


def _blocks(series: Series) -> list[np.ndarray]:
    return np.array_split(np.arange(len(series.samples)), series.blocks)


def estimate(series: Series, stat: str) -> float:
    return float(_estimates(series, stat, [block[None, :] for block in _blocks(series)])[0])


def resampled(series: Series, stat: str, rng: np.random.Generator, resamples: int = RESAMPLES) -> np.ndarray:
    """The estimate on ``resamples`` bootstrap resamples, each block resampled within itself."""
    return _estimates(series, stat, [block[rng.integers(0, len(block), (resamples, len(block)))]
                                     for block in _blocks(series)])


@dataclass(frozen=True)
class Interval:
    """A ratio (1.0: no change) and its two-sided percentile bootstrap interval."""

    ratio: float
    low: float
    high: float


def process_center(values: np.ndarray) -> np.ndarray:
    """The centre of several processes' estimates (last axis): their geometric mean, as ratios are compared; one
    process's own estimate exactly, so that a baseline saved once gives the verdicts it always gave."""
    if values.shape[-1] == 1:
        return values[..., 0]
    with np.errstate(divide="ignore", invalid="ignore"):  # a zero or NaN estimate gives a NaN verdict: a failure
        return np.exp(np.mean(np.log(values), axis=-1))


def ratio_interval(current: Series, baselines: Sequence[Series], stat: str, confidence: float,
                   seed: int = 0) -> Interval:
    """``stat`` of ``current`` over the centre of the baseline processes' (``process_center``), each resample
    drawing the baseline's processes with replacement and then the rounds of each; with no baseline, ``current``
    alone, already a ratio to its companion (A/B). One baseline process: a plain two-sample bootstrap."""
    rng = np.random.default_rng(seed)
    ratio, spread = estimate(current, stat), resampled(current, stat, rng)
    if baselines:
        estimates = np.array([estimate(series, stat) for series in baselines])
        replicates = np.stack([resampled(series, stat, rng) for series in baselines], axis=-1)  # resamples x processes
        drawn = rng.integers(0, len(baselines), replicates.shape)
        ratio = ratio / float(process_center(estimates))
        spread = spread / process_center(np.take_along_axis(replicates, drawn, axis=-1))
    tail = (1 - confidence) / 2 * 100
    with np.errstate(invalid="ignore"):
        low, high = np.percentile(spread, [tail, 100 - tail])
    return Interval(ratio, float(low), float(high))
