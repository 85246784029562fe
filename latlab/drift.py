"""Machine drift: a machine runs the same block faster or slower from one minute to the next (shared/FINDINGS.md).
Reference blocks from the profile, re-timed in the same rounds as the models being measured, say by how much."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

import numpy as np

from latlab.architecture import Architecture
from latlab.backend import Backend
from latlab.blocks import LAYER, MODEL, Block, overhead_block
from latlab.modules import build_block
from latlab.predict import priced_blocks
from latlab.profile import Profile
from latlab.protocol import Protocol, Report, Rounds, measure, prepare_all, quiet
from latlab.stats import LatencyStats


def reference_blocks(archs: list[Architecture], profile: Profile, count: int = 3) -> list[Block]:
    """The profiled blocks that price the measured models' layers, those used most first (the cheaper one of
    equals first), re-timed alongside the models to expose drift. A model at a length or batch the profile did not
    measure counts at the nearest measured one."""
    usage = Counter(b for a in archs for b in priced_blocks(nearest_measured(a, profile), profile.protocol.model_depth)
                    if b.kind in (LAYER, MODEL) and b.key in profile.entries)
    ranked = sorted(usage, key=lambda b: (-usage[b], b.layers))
    return ranked[:count]


def nearest_measured(arch: Architecture, profile: Profile) -> Architecture:
    """``arch`` at the measured seq_len and batch closest to its own (the shorter of two equally close)."""
    space = profile.space
    return replace(arch, seq_len=min(space.seq_len, key=lambda n: (abs(n - arch.seq_len), n)),
                   batch=min(space.batch, key=lambda n: (abs(n - arch.batch), n)))


def drift_corrected_ms(measured_ms: float, drift_pct: float) -> float:
    """A measurement scaled back to the machine's speed when the profile was measured."""
    return measured_ms / (1 + drift_pct / 100)


def reference_drift_pct(results: dict[str, Rounds], profile: Profile, references: list[Block]) -> float | None:
    """Median over reference blocks of (now / when profiled) - 1, in percent; None without references."""
    ratios = [LatencyStats.from_rounds(results[b.key]).median_ms / profile.entries[b.key].stats.median_ms
              for b in references]
    return (float(np.median(ratios)) - 1) * 100 if ratios else None


@dataclass(frozen=True)
class Measurement:
    """Whole models measured against a profile, with the drift its reference blocks showed in the same rounds."""

    stats: dict[str, LatencyStats]
    unstable: set[str]
    drift_pct: float | None  # None when no reference block could be timed
    blocks: dict[Block, Rounds]  # every profile block timed in the same rounds
    rounds: dict[str, Rounds]  # each item's samples, by name


def time_with_references(profile: Profile, backend: Backend, items: dict[str, tuple], archs: list[Architecture],
                         protocol: Protocol, report: Report = quiet, every_block: bool = False) -> Measurement:
    """``items`` (name -> module, example inputs) and the profiled layer blocks ``archs`` use most, interleaved
    with the profile's settings: one measurement answers both "how fast" and "how far has the machine drifted".
    ``every_block`` also re-times every block the architectures are priced from (``validate --same-run``)."""
    references = reference_blocks(archs, profile)
    # references are among the used blocks, except for models at lengths the profile did not measure
    blocks = list(dict.fromkeys([*used_blocks(archs, profile.protocol.model_depth), *references])) if every_block \
        else references
    runners = prepare_all(backend, {**items, **{block.key: build_block(block)
                                                for block in blocks}}, profile.settings, report)
    results, unstable = measure(runners, protocol, on_round=lambda i, n, _: report("measure", i, n), report=report)
    return Measurement({name: LatencyStats.from_rounds(results[name]) for name in items}, unstable & set(items),
                       reference_drift_pct(results, profile, references), {b: results[b.key] for b in blocks},
                       {name: results[name] for name in items})


def used_blocks(archs: list[Architecture], model_depth: int) -> list[Block]:
    """Every block the architectures are priced from, the per-call overhead included, each once."""
    found = {overhead_block(a.batch, a.seq_len): None for a in archs}
    for arch in archs:
        found.update(dict.fromkeys(priced_blocks(arch, model_depth)))
    return list(found)
