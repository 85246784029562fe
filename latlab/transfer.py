"""A profile for a new machine or setting from a dozen measurements, instead of the whole space.

A transfer times a few reference blocks here, fits how latency changes from the source to here, and estimates
every other block from its latency in the source:

- layers and whole-model blocks: log(here / source) is fitted linearly in the block's source latency, width,
  ffn, heads and depth, and depth times head dimension, ffn and width (all on log scales), with a ridge penalty
  that shrinks the fit toward one factor when the references cannot pin a term down. bf16 gains far less on
  16-wide heads, most of all in deep models (``latlab compare``), and another runtime or machine reshapes the
  cost of width, ffn and depth: one trend in compute intensity could not follow that.
- the references are chosen for that fit: the cheapest and the dearest block, then each time the block the
  chosen ones pin down least over width, ffn, head dimension and depth (a greedy D-optimal design).
- overhead, embeddings and head: one block each, one factor per kind. A profile that prices layers inside whole
  models reads only its model blocks for a prediction (the ends and the overhead cancel, ``latlab.predict``), so
  the budget goes to those.

A source that timed layers alone (schema 2) gives each whole model the latency it would predict for it: overhead,
embeddings, L layers and head. The references are timed here as whole models, and the fit learns the difference,
that sum's bias included; the written profile prices layers inside models as profiles of this latlab do.

Chosen offline (``tests/benchmarks/transfer_offline.py``) on the 48 pairs of shipped full profiles that can be
simulated (references read from the target's full profile, scored on its 20 validation models): leaving each pair
out in turn, the feature set and penalty best on the other 47 was this one for 42 of them. Mean MAPE against the
measured models 7.34% -> 4.64% on the 30 pairs the previous fit (log ratio linear in compute intensity alone, 7
model references) could do, 4.48% on all 48 (93% within ±10%); OpenVINO f32 -> bf16 10.59% -> 3.67% (50% -> 100%
within ±10%). Measured blocks keep their measurements. The profile records where it came from, which blocks were
measured, the fit and how far each reference sat from it, so its estimates are never mistaken for measurements.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from latlab.architecture import Architecture
from latlab.backend import Backend, Settings
from latlab.blocks import EMBEDDINGS, HEAD, MODEL, OVERHEAD, Block, gflops
from latlab.compare import robust_spread_pct
from latlab.errors import LatlabError
from latlab.modules import build_block
from latlab.predict import LatencyTable, predict_ms
from latlab.profile import Entry, Profile
from latlab.profiling import new_profile
from latlab.protocol import Protocol, Report, measure, prepare_all, quiet

# A large kind needs this many references: fewer cannot tell a trend from one block's noise.
MIN_BLOCKS = 3
SMALL_KINDS = (OVERHEAD, EMBEDDINGS, HEAD)


def _log(value: float) -> float:
    return math.log(max(value, 1))


# What the fit of a layer or model block may depend on, each on a log scale: (block, source ms) -> value.
FEATURES: dict[str, Callable[[Block, float], float]] = {
    "source_ms": lambda b, ms: math.log(ms),
    "intensity": lambda b, ms: math.log(gflops(b) / ms),  # GFLOP per ms achieved in the source
    "hidden": lambda b, ms: _log(b.hidden),
    "ffn": lambda b, ms: _log(b.ffn),
    "heads": lambda b, ms: _log(b.heads),
    "head_dim": lambda b, ms: _log(b.hidden / max(b.heads, 1)),
    "layers": lambda b, ms: _log(b.layers),
    "layers*head_dim": lambda b, ms: _log(b.layers) * _log(b.hidden / max(b.heads, 1)),
    "layers*ffn": lambda b, ms: _log(b.layers) * _log(b.ffn),
    "layers*hidden": lambda b, ms: _log(b.layers) * _log(b.hidden),
}
# The references are spread over these: what a block's speed-up turned out to depend on.
DESIGN = ("hidden", "ffn", "head_dim", "layers")


@dataclass(frozen=True)
class Method:
    """The fit of layer and model blocks: log(here / source) linear in ``features`` (names in ``FEATURES``),
    standardised over the kind's blocks, with ``ridge`` times the reference count as the penalty on the weights."""

    features: tuple[str, ...] = ("source_ms", "hidden", "ffn", "heads", "layers", "layers*head_dim", "layers*ffn",
                                 "layers*hidden")
    ridge: float = 0.01


def values(block: Block, source_ms: float, names: tuple[str, ...]) -> np.ndarray:
    return np.array([FEATURES[name](block, source_ms) for name in names])


def transfer_protocol(source: Protocol) -> Protocol:
    """The source's protocol, pricing layers inside whole models even when the source timed them alone: a transfer
    writes a profile of this latlab's layout."""
    return source if source.model_depth else replace(source, model_depth=Protocol.model_depth)


def uniform_model(block: Block) -> Architecture:
    return Architecture(block.hidden, (block.heads,) * block.layers, (block.ffn,) * block.layers, block.seq_len,
                        block.batch, block.labels, block.vocab)


def source_latencies(source: Profile, model_depth: int) -> dict[Block, float]:
    """Every block of the source's space laid out at ``model_depth``, with its latency in the source: its entry, or
    for a whole model it did not time (it timed layers alone, or at another depth), its prediction of that model."""
    table = LatencyTable.from_profile(source)
    found = {}
    for block in source.space.blocks(model_depth):
        entry = source.entries.get(block.key)
        if entry is not None:
            found[block] = entry.stats.median_ms
        elif block.kind == MODEL:
            found[block] = predict_ms(uniform_model(block), table)
        else:
            raise table.missing(block)
    return found


def d_optimal(blocks: list[Block], source_ms: dict[Block, float], count: int) -> list[Block]:
    """``count`` blocks for a fit linear in ``DESIGN``: the cheapest and the dearest, then each time the block with
    the largest leverage x'(X'X)^-1 x under those chosen, i.e. the one they predict least well (greedy D-optimal)."""
    if count >= len(blocks):
        return list(blocks)
    points = np.array([values(b, source_ms[b], DESIGN) for b in blocks])
    scale = points.std(axis=0)
    points = np.hstack([np.ones((len(blocks), 1)), (points - points.mean(axis=0)) / np.where(scale > 0, scale, 1)])
    cost = np.log([source_ms[b] for b in blocks])
    chosen = [int(np.argmin(cost)), int(np.argmax(cost))][:count]
    while len(chosen) < count:
        # a small ridge keeps directions no chosen block spans yet at a very large leverage, instead of singular
        inverse = np.linalg.inv(points[chosen].T @ points[chosen] + 1e-3 * np.eye(points.shape[1]))
        leverage = np.einsum("ij,jk,ik->i", points, inverse, points)
        leverage[chosen] = -np.inf
        chosen.append(int(np.argmax(leverage)))
    return [blocks[i] for i in sorted(chosen, key=lambda i: cost[i])]


def plan_references(source_ms: dict[Block, float], budget: int) -> list[Block]:
    """One block of each small kind (overhead, embeddings, head: the middle one by latency), the rest of the budget
    for the layer or model blocks every prediction reads (``d_optimal``)."""
    kinds: dict[str, list[Block]] = {}
    for block in source_ms:
        kinds.setdefault(block.kind, []).append(block)
    main = [kind for kind in kinds if kind not in SMALL_KINDS]
    small = [kind for kind in kinds if kind in SMALL_KINDS]
    needed = len(small) + MIN_BLOCKS * len(main)
    if budget < needed:
        raise LatlabError(f"--budget {budget} is too small to fit {', '.join(sorted(kinds))}: give at least "
                          f"{needed} (one block per small kind, {MIN_BLOCKS} per large kind)")
    references = [sorted(kinds[kind], key=source_ms.__getitem__)[len(kinds[kind]) // 2] for kind in small]
    left = budget - len(references)
    for index, kind in enumerate(main):
        share = left // len(main) + (1 if index < left % len(main) else 0)
        references += d_optimal(kinds[kind], source_ms, share)
    return references


@dataclass(frozen=True)
class KindFit:
    """log(here / source) = log_ratio + coefficients . (features - center): ``log_ratio`` is the mean over the
    references, the coefficients are per unit of each (log) feature; no features: one factor for the kind."""

    features: tuple[str, ...]
    log_ratio: float
    center: tuple[float, ...]
    coefficients: tuple[float, ...]
    blocks: int
    spread_pct: float  # robust standard deviation of the references around the fit

    def estimate_ms(self, block: Block, source_ms: float) -> float:
        offset = values(block, source_ms, self.features) - np.array(self.center) if self.features else np.zeros(0)
        return source_ms * math.exp(self.log_ratio + float(offset @ np.array(self.coefficients)))

    def to_json(self) -> dict[str, Any]:
        return {"log_ratio": round(self.log_ratio, 5), "blocks": self.blocks, "spread_pct": round(self.spread_pct, 3),
                "terms": {name: {"center": round(c, 5), "coefficient": round(w, 5)}
                          for name, c, w in zip(self.features, self.center, self.coefficients)}}


def fit_kind(rows: list[tuple[Block, float, float]], scale: np.ndarray, features: tuple[str, ...],
             ridge: float) -> KindFit:
    """``rows``: (block, source ms, measured ms); ``scale``: each feature's spread over all the kind's blocks, so
    the penalty weighs every term alike. A feature that does not vary over the kind is left out."""
    kept = tuple(name for name, s in zip(features, scale) if s > 1e-9)
    scale = np.array([s for s in scale if s > 1e-9])
    y = np.log([m / s for _, s, m in rows])
    x = np.array([values(b, s, kept) for b, s, _ in rows]).reshape(len(rows), len(kept))
    center = x.mean(axis=0)
    z = (x - center) / scale
    # ridge regression as least squares on the rows stacked over sqrt(penalty) * I: no singular system, ever
    penalty = math.sqrt(ridge * len(rows)) * np.eye(len(kept))
    weights = np.linalg.lstsq(np.vstack([z, penalty]), np.concatenate([y - y.mean(), np.zeros(len(kept))]),
                              rcond=None)[0]
    result = KindFit(kept, float(y.mean()), tuple(float(c) for c in center),
                     tuple(float(w) for w in weights / scale), len(rows), 0.0)
    residuals = [math.log(m / result.estimate_ms(b, s)) for b, s, m in rows]
    return replace(result, spread_pct=robust_spread_pct(np.array(residuals)))


def fit(source_ms: dict[Block, float], measured_ms: dict[Block, float],
        method: Method = Method()) -> dict[str, KindFit]:
    """The fit per kind, from the references' source and measured latencies."""
    rows: dict[str, list[tuple[Block, float, float]]] = {}
    for block, ms in measured_ms.items():
        rows.setdefault(block.kind, []).append((block, source_ms[block], ms))
    fits = {}
    for kind, found in rows.items():
        names = () if kind in SMALL_KINDS else method.features
        every = np.array([values(b, ms, names) for b, ms in source_ms.items() if b.kind == kind])
        fits[kind] = fit_kind(found, every.std(axis=0) if names else np.zeros(0), names, method.ridge)
    return fits


def transferred(source: Profile, target: Profile, measured: dict[Block, Entry], source_path: str,
                method: Method = Method()) -> Profile:
    """``target`` (this machine's backend, settings, protocol and fingerprint, no entries yet) filled in: the
    measured references as they are, every other block of the source's space at the target's model depth estimated
    from its kind's fit."""
    source_ms = source_latencies(source, target.protocol.model_depth)
    fits = fit(source_ms, {block: entry.stats.median_ms for block, entry in measured.items()}, method)
    entries = {block.key: measured[block] if block in measured else
               Entry(block, [[fits[block.kind].estimate_ms(block, ms)]]) for block, ms in source_ms.items()}
    record: dict[str, Any] = {
        "source": source_path,
        "source_label": source.label,
        "source_cpu": source.fingerprint.cpu_model,
        "source_model_depth": source.protocol.model_depth,
        "measured": sorted(block.key for block in measured),
        "fit": {kind: f.to_json() for kind, f in fits.items()},
        "residuals_pct": {block.key: round((entry.stats.median_ms / fits[block.kind].estimate_ms(
            block, source_ms[block]) - 1) * 100, 3) for block, entry in measured.items()},
    }
    return replace(target, entries=entries, complete=True, transfer=record, space=source.space)


def run_transfer(source: Profile, source_path: str, backend: Backend, settings: Settings, references: list[Block],
                 protocol: Protocol, report: Report = quiet) -> Profile:
    """Time ``references`` (``plan_references``) here with ``protocol`` (``transfer_protocol``), interleaved as a
    profile is, then transfer."""
    runners = prepare_all(backend, {b.key: build_block(b) for b in references}, settings, report)
    results, unstable = measure(runners, protocol, on_round=lambda i, n, _: report("measure", i, n), report=report)
    measured = {b: Entry(b, results[b.key], unstable=b.key in unstable) for b in references}
    target = new_profile(backend, settings, source.space, protocol)
    target.applied = next(iter(runners.values())).applied
    return transferred(source, target, measured, source_path)
