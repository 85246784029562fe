"""A profile for a new machine or setting from a dozen measurements, instead of the whole space.

A transfer times a few reference blocks here, chosen to span the source profile's blocks (a farthest-point
design over latency, width, heads, ffn and depth, not the most common ones), fits how latency changes from the
source to here per kind of block, and estimates every other block from its source latency:

- layers and models: the speed ratio here/source depends on how compute-bound the block was in the source, so
  log(ratio) is fitted linearly in log(GFLOP per source ms). A runtime, precision or core that speeds matrix
  products up gains most on the blocks that were busiest with them. Measured offline on this project's
  profiles (8 transfers between backends and precisions, references taken from the target's full profile),
  this halved the error of one power law B = c * A^k per kind (``latlab.compare``'s pattern): mean MAPE 6.3%
  against 12.5%.
- embeddings, head, overhead: one or two blocks each, one factor per kind. Measured blocks keep their measurements. The profile
records where it came from, which blocks were measured, and how far each sat from the fit, so its estimates are
never mistaken for measurements.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from latlab.backend import Backend, Settings
from latlab.blocks import EMBEDDINGS, HEAD, OVERHEAD, Block, gflops
from latlab.compare import robust_spread_pct
from latlab.errors import LatlabError
from latlab.modules import build_block
from latlab.profile import Entry, Profile
from latlab.profiling import new_profile
from latlab.protocol import Protocol, Report, measure, prepare_all, quiet

# Below this many blocks a kind gets one factor (exponent 1): two points fit any slope exactly.
SLOPE_MIN_BLOCKS = 3


def features(block: Block, source_ms: float) -> list[float]:
    """Where a block sits, on scales where equal steps are equal changes in cost."""
    return [math.log(source_ms), math.log(max(block.hidden, 1)), math.log(max(block.heads, 1)),
            math.log(max(block.ffn, 1)), math.log(max(block.layers, 1))]


def spread_out(blocks: list[Block], source_ms: dict[Block, float], count: int) -> list[Block]:
    """``count`` blocks that span ``blocks``: the cheapest and the dearest first, then each time the block
    farthest from all chosen so far (standardised features), so sizes, widths and shapes are all covered."""
    if count >= len(blocks):
        return list(blocks)
    points = np.array([features(b, source_ms[b]) for b in blocks])
    scale = points.std(axis=0)
    points = points / np.where(scale > 0, scale, 1)
    cost = points[:, 0]
    chosen = [int(np.argmin(cost)), int(np.argmax(cost))][:count]
    distance = np.min([np.linalg.norm(points - points[i], axis=1) for i in chosen], axis=0)
    while len(chosen) < count:
        following = int(np.argmax(distance))
        chosen.append(following)
        distance = np.minimum(distance, np.linalg.norm(points - points[following], axis=1))
    return [blocks[i] for i in sorted(chosen, key=lambda i: cost[i])]


def plan_references(source: Profile, budget: int) -> list[Block]:
    """One overhead block, two each of the small kinds (embeddings, head) when the space has two widths, and the
    rest of the budget for the layer or model blocks that dominate every prediction."""
    blocks = {entry.block: entry.stats.median_ms for entry in source.entries.values()}
    kinds: dict[str, list[Block]] = {}
    for block in blocks:
        kinds.setdefault(block.kind, []).append(block)
    small = {kind: min(2, len(found)) for kind, found in kinds.items() if kind in (EMBEDDINGS, HEAD)}
    main = [kind for kind in kinds if kind not in (OVERHEAD, EMBEDDINGS, HEAD)]
    needed = 1 + sum(small.values()) + SLOPE_MIN_BLOCKS * len(main)
    if budget < needed:
        raise LatlabError(f"--budget {budget} is too small to fit {', '.join(sorted(kinds))}: give at least "
                          f"{needed} (one overhead block, up to two per small kind, {SLOPE_MIN_BLOCKS} per large kind)")
    references = list(kinds.get(OVERHEAD, []))[:1]
    for kind, count in small.items():
        references += spread_out(kinds[kind], blocks, count)
    left = budget - len(references)
    for index, kind in enumerate(main):
        share = left // len(main) + (1 if index < left % len(main) else 0)
        references += spread_out(kinds[kind], blocks, share)
    return references


@dataclass(frozen=True)
class KindFit:
    """log(here / source) = log_ratio + slope * log(GFLOP per source ms); slope 0 for kinds without matrix work."""

    log_ratio: float
    slope: float
    blocks: int
    spread_pct: float  # robust standard deviation of the references around the fit

    def estimate_ms(self, block: Block, source_ms: float) -> float:
        return source_ms * math.exp(self.log_ratio + self.slope * intensity(block, source_ms))


def intensity(block: Block, source_ms: float) -> float:
    """log(GFLOP per ms) achieved in the source, 0 for blocks without matrix work."""
    work = gflops(block)
    return math.log(work / source_ms) if work else 0.0


def fit_kind(rows: list[tuple[Block, float, float]]) -> KindFit:
    """``rows``: (block, source ms, measured ms). A slope only where there are points enough and intensities
    that differ; otherwise one factor."""
    x = np.array([intensity(b, s) for b, s, _ in rows])
    y = np.log([m / s for _, s, m in rows])
    if len(rows) >= SLOPE_MIN_BLOCKS and np.ptp(x) > 0.1:
        slope, log_ratio = (float(v) for v in np.polyfit(x, y, 1))
    else:
        slope, log_ratio = 0.0, float(np.mean(y))
    return KindFit(log_ratio, slope, len(rows), robust_spread_pct(y - (log_ratio + slope * x)))


def fit(source: Profile, measured_ms: dict[Block, float]) -> dict[str, KindFit]:
    """The fit per kind, from the reference blocks' source and measured latencies."""
    rows: dict[str, list[tuple[Block, float, float]]] = {}
    for block, ms in measured_ms.items():
        rows.setdefault(block.kind, []).append((block, source.entries[block.key].stats.median_ms, ms))
    return {kind: fit_kind(found) for kind, found in rows.items()}


def transferred(source: Profile, target: Profile, measured: dict[Block, Entry], source_path: str) -> Profile:
    """``target`` (this machine's backend, settings and fingerprint, no entries yet) filled in: measured
    references as they are, every other block of the source estimated from its kind's fit."""
    fits = fit(source, {block: entry.stats.median_ms for block, entry in measured.items()})
    entries: dict[str, Entry] = {}
    for key, entry in source.entries.items():
        if entry.block in measured:
            entries[key] = measured[entry.block]
        else:
            entries[key] = Entry(entry.block, [[fits[entry.block.kind].estimate_ms(entry.block,
                                                                                     entry.stats.median_ms)]])
    record: dict[str, Any] = {
        "source": source_path,
        "source_label": source.label,
        "source_cpu": source.fingerprint.cpu_model,
        "measured": sorted(block.key for block in measured),
        "fit": {kind: {"log_ratio": round(f.log_ratio, 5), "slope": round(f.slope, 5), "blocks": f.blocks,
                       "spread_pct": round(f.spread_pct, 3)} for kind, f in fits.items()},
        "residuals_pct": {block.key: round((entry.stats.median_ms / fits[block.kind].estimate_ms(
            block, source.entries[block.key].stats.median_ms) - 1) * 100, 3) for block, entry in measured.items()},
    }
    return replace(target, entries=entries, complete=True, transfer=record, space=source.space,
                   protocol=source.protocol)


def run_transfer(source: Profile, source_path: str, backend: Backend, settings: Settings, references: list[Block],
                 protocol: Protocol, report: Report = quiet) -> Profile:
    """Time ``references`` (``plan_references``) here with ``protocol``, interleaved as a profile is, then
    transfer."""
    runners = prepare_all(backend, {b.key: build_block(b) for b in references}, settings, report)
    results, unstable = measure(runners, protocol, on_round=lambda i, n, _: report("measure", i, n), report=report)
    measured = {b: Entry(b, results[b.key], unstable=b.key in unstable) for b in references}
    target = new_profile(backend, settings, source.space, protocol)
    target.applied = next(iter(runners.values())).applied
    return transferred(source, target, measured, source_path)
