"""Whole-model latency from a profile. Pure lookups.

Every block timed alone paid the runtime's per-call overhead once; a whole model pays it once. So a model costs
the overhead plus, for each block, its median minus that overhead.

Layers are priced as they run inside a model. A layer timed alone keeps its weights and buffers warm and runs
4-12% faster than inside a model, where the other layers have just evicted them; the embeddings and head lose
their warm caches too (``../shared/FINDINGS.md``). So a profile times each layer configuration inside uniform
whole models of 1 and D layers (``protocol.model_depth``), and prices:

- each layer at its growth per layer, ``(model(D layers) - model(1 layer)) / (D - 1)``;
- once per model, the *premium*: what a one-layer model costs beyond its layer's growth,
  ``model(1 layer) - embeddings - head - overhead - growth``. It is what the ends cost more in a model than alone,
  and it is a property of the model, not of its first layer: a model's layers in any order cost the same (measured:
  two-layer stacks AB and BA within 2% of each other), so the model takes the mean premium of its layers.
- calibrated costs (``latlab.calibration``, fitted on whole models timed with the profile's blocks; 0 where a
  profile has none): each pair of neighbours that differ in heads or ffn costs ``shape_change`` x the model's mean
  growth more, and each layer past depth D ``beyond_depth`` x its own growth more.

A uniform model of 1 or D layers is therefore priced at its own measurement; other depths and mixed stacks are
read off the same entries, layer by layer. Profiles with ``model_depth == 0`` price every layer alone.

A batch and seq_len the profile did not measure are priced only on request (``predict(..., interpolate=True)``):
each of those costs is estimated between the shapes it was measured at (``latlab.interpolate``), and the
prediction says which parts are estimates. ``predict_ms`` and ``predict_many`` price measured shapes only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from latlab.architecture import Architecture
from latlab.calibration import Calibration
from latlab.blocks import (EMBEDDINGS, HEAD, LAYER, MODEL, OVERHEAD, Block, embeddings_block, head_block, in_models,
                           overhead_block)
from latlab.errors import LatlabError
from latlab.interpolate import ATTENTION, LINEAR, Estimate, Shape, interpolate
from latlab.profile import Profile


@dataclass(frozen=True)
class LatencyTable:
    """Net milliseconds per block, keyed for O(1) lookup. Build it once per profile (``from_profile``) and
    predict as many architectures as you like."""

    ends_ms: dict[Block, float]  # embeddings and head alone, minus the overhead
    first_ms: dict[Block, float]  # a layer block -> its cost as a model's first layer
    next_ms: dict[Block, float]  # a layer block -> its cost after another layer
    overhead_ms: dict[tuple[int, int], float]  # (batch, seq_len) -> per-call overhead
    space_name: str
    shape_change: float = 0.0  # each change of layer shape between neighbours, as a fraction of the mean growth
    beyond_depth: float = 0.0  # each layer past ``model_depth``, as a fraction of its growth
    model_depth: int = 0

    @classmethod
    def from_profile(cls, profile: Profile) -> LatencyTable:
        medians = {entry.block: entry.stats.median_ms for entry in profile.entries.values()}
        calibrated = profile.calibration.fractions if profile.calibration else (0.0, 0.0)
        return cls.of(medians, profile.space.name, profile.protocol.model_depth, calibrated)

    @classmethod
    def of(cls, medians: dict[Block, float], space_name: str, depth: int,
           calibrated: tuple[float, float] = (0.0, 0.0)) -> LatencyTable:
        """The table of any per-call cost measured per block, milliseconds or resident memory (latlab.memory)."""
        overhead = {(b.batch, b.seq_len): ms for b, ms in medians.items() if b.kind == OVERHEAD}
        net = {b: ms - overhead.get((b.batch, b.seq_len), 0.0) for b, ms in medians.items() if b.kind != OVERHEAD}
        ends = {b: ms for b, ms in net.items() if b.kind in (EMBEDDINGS, HEAD)}
        if not depth:
            layers = {b: ms for b, ms in net.items() if b.kind == LAYER}
            return cls(ends, layers, layers, overhead, space_name, *calibrated, depth)
        first, following = {}, {}
        for one in (b for b in net if b.kind == MODEL and b.layers == 1):
            layer = one._replace(kind=LAYER, vocab=0, labels=0, layers=0)
            around = [embeddings_block(one.batch, one.seq_len, one.hidden, one.vocab),
                      head_block(one.batch, one.seq_len, one.hidden, one.labels)]
            if all(b in ends for b in around):
                first[layer] = net[one] - sum(ends[b] for b in around)
            deep = one._replace(layers=depth)
            if deep in net:
                following[layer] = (net[deep] - net[one]) / (depth - 1)
        return cls(ends, first, following, overhead, space_name, *calibrated, depth)

    @cached_property
    def grid(self) -> Grid:
        """The same table as dense arrays, built on first use by ``predict_many``."""
        return Grid.of(self)

    def missing(self, block: Block) -> LatlabError:
        hint = ("; its batch and seq_len lie between measured ones: predict(..., interpolate=True) (latlab predict "
                "without --exact) estimates it" if self.between_shapes(block.batch, block.seq_len) else "")
        return LatlabError(f"the profile has no entry for block {block.key}: it lies outside the measured grid of "
                           f"space {self.space_name!r}; profile a space that contains it{hint}")

    def between_shapes(self, batch: int, seq_len: int) -> bool:
        """Not a measured shape (the profile times an overhead per shape), but inside the measured range."""
        batches, lengths = {b for b, _ in self.overhead_ms}, {s for _, s in self.overhead_ms}
        return ((batch, seq_len) not in self.overhead_ms and bool(batches)
                and min(batches) <= batch <= max(batches) and min(lengths) <= seq_len <= max(lengths))

    @cached_property
    def by_shape(self) -> dict[tuple[str, Block], dict[Shape, float]]:
        """Each cost apart from its shape, (which, block with batch and seq_len 0) -> {(batch, seq_len): ms}, for
        ``estimate``. ``which`` is the table the cost is read from: overhead, ends, first or next."""
        found: dict[tuple[str, Block], dict[Shape, float]] = {}
        tables = {"ends": self.ends_ms, "first": self.first_ms, "next": self.next_ms,
                  "overhead": {overhead_block(b, s): ms for (b, s), ms in self.overhead_ms.items()}}
        for which, costs in tables.items():
            for block, ms in costs.items():
                found.setdefault((which, block._replace(batch=0, seq_len=0)), {})[block.batch, block.seq_len] = ms
        return found

    def estimate(self, which: str, block: Block) -> Estimate:
        """The cost ``which`` of ``block`` at its shape, interpolated between the shapes it was measured at."""
        points = self.by_shape.get((which, block._replace(batch=0, seq_len=0)))
        if not points:
            raise self.missing(block)
        try:
            return interpolate(points, block.batch, block.seq_len, ATTENTION if block.kind == LAYER else LINEAR)
        except LatlabError as exc:
            raise LatlabError(f"block {block.key}: {exc}") from None


@dataclass(frozen=True)
class Prediction:
    total_ms: float
    overhead_ms: float
    parts: tuple[tuple[str, float], ...]  # (block key, net ms) in model order
    # The keys of the parts (and of the overhead) interpolated, not read off a measurement; empty at a measured shape.
    estimated: frozenset[str] = frozenset()
    between: tuple[Shape, ...] = ()  # the measured (batch, seq_len) the estimates stand between
    calibrated_ms: float = 0.0  # the calibrated costs of shape changes and depth (latlab.calibration), in total_ms


def priced_blocks(arch: Architecture, model_depth: int) -> list[Block]:
    """The profile entries a prediction of ``arch`` reads (overhead excluded), each once."""
    blocks = arch.blocks()
    found = dict.fromkeys([blocks[0], blocks[-1]])
    for layer in blocks[1:-1]:
        found.update(dict.fromkeys(in_models(layer, model_depth, arch.vocab, arch.labels)))
    return list(found)


def stack_ms(first: Sequence[float], growth: Sequence[float], changes: int, table: LatencyTable
             ) -> tuple[list[float], float]:
    """Each layer's net cost, its growth plus an equal share of the model's mean premium, and the stack's calibrated
    costs (see the module docstring)."""
    count = len(growth)
    premium = sum(f - g for f, g in zip(first, growth)) / count
    deep = sum(growth[table.model_depth:]) if table.model_depth else 0.0
    return ([g + premium / count for g in growth],
            table.shape_change * changes * sum(growth) / count + table.beyond_depth * deep)


def _costs(arch: Architecture, table: LatencyTable) -> tuple[list[tuple[Block, float]], float]:
    """(block, net ms) in model order and the calibrated ms; raises the table's one-line error for a block
    it lacks."""
    embeddings, *layers, head = arch.blocks()
    try:
        ends = (table.ends_ms[embeddings], table.ends_ms[head])
        first = [table.first_ms[b] for b in layers]
        growth = [table.next_ms[b] for b in layers] if len(layers) > 1 else first  # one layer: what it measured
    except KeyError as exc:
        raise table.missing(exc.args[0]) from None
    nets, calibrated_ms = stack_ms(first, growth, arch.shape_changes, table)
    return [(embeddings, ends[0]), *zip(layers, nets), (head, ends[1])], calibrated_ms


def _overhead(arch: Architecture, table: LatencyTable) -> float:
    overhead = table.overhead_ms.get((arch.batch, arch.seq_len))
    if overhead is None:
        raise table.missing(Block(OVERHEAD, arch.batch, arch.seq_len))
    return overhead


def predict_ms(arch: Architecture, table: LatencyTable) -> float:
    """Total predicted milliseconds per call."""
    costs, calibrated_ms = _costs(arch, table)
    return _overhead(arch, table) + sum(ms for _, ms in costs) + calibrated_ms


def predict(arch: Architecture, table: LatencyTable, interpolate: bool = False) -> Prediction:
    """Total and per-block breakdown, for reports. With ``interpolate``, a batch and seq_len between measured ones
    is estimated (a measured shape is priced as without it); beyond them it is refused all the same."""
    if interpolate and table.between_shapes(arch.batch, arch.seq_len):
        return _estimated(arch, table)
    costs, calibrated_ms = _costs(arch, table)  # first, so that a shape it lacks is named as in predict_ms
    overhead = _overhead(arch, table)
    return Prediction(overhead + sum(ms for _, ms in costs) + calibrated_ms, overhead,
                      tuple((b.key, ms) for b, ms in costs), calibrated_ms=calibrated_ms)


def _estimated(arch: Architecture, table: LatencyTable) -> Prediction:
    """Every cost of ``arch`` interpolated at its shape: the same arithmetic as ``_costs``, from estimates."""
    embeddings, *layers, head = arch.blocks()
    overhead = overhead_block(arch.batch, arch.seq_len)
    wanted = [("overhead", overhead), ("ends", embeddings), ("ends", head),
              *(("first", b) for b in layers), *(("next", b) for b in layers if len(layers) > 1)]
    estimates: dict[tuple[str, Block], Estimate] = {}
    for which, block in wanted:
        if (which, block) not in estimates:  # a layer repeated in the stack is fitted once
            estimates[which, block] = table.estimate(which, block)
    first = [estimates["first", b].ms for b in layers]
    growth = [estimates["next", b].ms for b in layers] if len(layers) > 1 else first
    nets, calibrated_ms = stack_ms(first, growth, arch.shape_changes, table)
    parts = ((embeddings.key, estimates["ends", embeddings].ms), *((b.key, ms) for b, ms in zip(layers, nets)),
             (head.key, estimates["ends", head].ms))
    overhead_ms = estimates["overhead", overhead].ms
    return Prediction(overhead_ms + sum(ms for _, ms in parts) + calibrated_ms, overhead_ms, parts,
                      frozenset([overhead.key, *(key for key, _ in parts)]),
                      tuple(sorted({shape for e in estimates.values() for shape in e.corners})), calibrated_ms)


@dataclass(frozen=True)
class Architectures:
    """Many architectures as arrays, one row each, for pricing a whole search space at once. Per-layer columns
    beyond a row's ``layers`` are ignored (pad them with anything)."""

    hidden: np.ndarray  # (n,)
    heads: np.ndarray  # (n, max_layers)
    ffn: np.ndarray  # (n, max_layers)
    layers: np.ndarray  # (n,)
    seq_len: np.ndarray  # (n,)
    batch: np.ndarray  # (n,)
    vocab: int = 30522
    labels: int = 2

    @classmethod
    def of(cls, archs: Sequence[Architecture]) -> Architectures:
        if len({(a.vocab, a.labels) for a in archs}) > 1:
            raise LatlabError("architectures priced together must share vocab and labels")
        width = max(a.layers for a in archs)
        padded = [(a.heads + (a.heads[0],) * (width - a.layers), a.ffn + (a.ffn[0],) * (width - a.layers))
                  for a in archs]
        return cls(np.array([a.hidden for a in archs]), np.array([p[0] for p in padded]),
                   np.array([p[1] for p in padded]), np.array([a.layers for a in archs]),
                   np.array([a.seq_len for a in archs]), np.array([a.batch for a in archs]),
                   archs[0].vocab, archs[0].labels)

    def row(self, index: int) -> Architecture:
        count = int(self.layers[index])
        return Architecture(int(self.hidden[index]), tuple(int(a) for a in self.heads[index, :count]),
                            tuple(int(f) for f in self.ffn[index, :count]), int(self.seq_len[index]),
                            int(self.batch[index]), self.labels, self.vocab)


@dataclass(frozen=True)
class Grid:
    """A ``LatencyTable`` as dense arrays over its measured values, NaN where it has no entry: pricing becomes
    array indexing, millions of architectures per second, heterogeneous stacks included."""

    axes: dict[str, np.ndarray]  # batch, seq_len, hidden, heads, ffn: the sorted values measured
    overhead: np.ndarray  # (batch, seq_len)
    ends: np.ndarray  # (batch, seq_len, hidden): embeddings + head
    first: np.ndarray  # (batch, seq_len, hidden, heads, ffn)
    next: np.ndarray  # (batch, seq_len, hidden, heads, ffn)
    vocab: int
    labels: int

    @classmethod
    def of(cls, table: LatencyTable) -> Grid:
        layers = list(table.first_ms) + list(table.next_ms)
        ends = list(table.ends_ms)
        names = ("batch", "seq_len", "hidden", "heads", "ffn")
        axes = {name: np.array(sorted({getattr(b, name) for b in layers})) for name in names}
        shape = tuple(len(axes[name]) for name in names)

        def at(block: Block, count: int) -> tuple[int, ...]:
            return tuple(int(np.searchsorted(axes[n], getattr(block, n))) for n in names[:count])

        overhead, both_ends = np.full(shape[:2], np.nan), np.zeros(shape[:3])
        for (batch, seq_len), ms in table.overhead_ms.items():
            if batch in axes["batch"] and seq_len in axes["seq_len"]:
                overhead[at(Block(OVERHEAD, batch, seq_len), 2)] = ms
        found = np.zeros(shape[:3], dtype=int)
        for block in ends:
            if block.hidden in axes["hidden"] and block.batch in axes["batch"] and block.seq_len in axes["seq_len"]:
                both_ends[at(block, 3)] += table.ends_ms[block]
                found[at(block, 3)] += 1
        both_ends[found != 2] = np.nan  # embeddings or head missing
        first, following = np.full(shape, np.nan), np.full(shape, np.nan)
        for block, ms in table.first_ms.items():
            first[at(block, 5)] = ms
        for block, ms in table.next_ms.items():
            following[at(block, 5)] = ms
        vocab = {b.vocab for b in ends if b.kind == EMBEDDINGS} or {0}
        labels = {b.labels for b in ends if b.kind == HEAD} or {0}
        return cls(axes, overhead, both_ends, first, following, min(vocab), min(labels))

    def positions(self, name: str, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Index of each value on its axis, and whether it was measured at all."""
        axis = self.axes[name]
        index = np.minimum(np.searchsorted(axis, values), len(axis) - 1)
        return index, axis[index] == values


def predict_many(archs: Architectures, table: LatencyTable) -> np.ndarray:
    """``predict_ms`` for every row at once (the same arithmetic, vectorised); one row the table cannot price
    raises the same one-line error ``predict_ms`` gives for it."""
    grid = table.grid
    b, b_ok = grid.positions("batch", archs.batch)
    s, s_ok = grid.positions("seq_len", archs.seq_len)
    h, h_ok = grid.positions("hidden", archs.hidden)
    a, a_ok = grid.positions("heads", archs.heads)
    f, f_ok = grid.positions("ffn", archs.ffn)
    used = np.arange(archs.heads.shape[1]) < archs.layers[:, None]
    b2, s2, h2 = b[:, None], s[:, None], h[:, None]
    count = np.maximum(archs.layers, 1)
    first = grid.first[b2, s2, h2, a, f]
    following = np.where((archs.layers == 1)[:, None], first, grid.next[b2, s2, h2, a, f])  # one layer: as measured
    growth = np.where(used, following, 0.0).sum(axis=1)
    premium = np.where(used, first - following, 0.0).sum(axis=1) / count
    changes = (used[:, 1:] & ((archs.heads[:, 1:] != archs.heads[:, :-1]) | (archs.ffn[:, 1:] != archs.ffn[:, :-1])))
    deep = (np.where(used & (np.arange(used.shape[1]) >= table.model_depth), following, 0.0).sum(axis=1)
            if table.model_depth else 0.0)
    calibrated = table.shape_change * changes.sum(axis=1) * growth / count + table.beyond_depth * deep
    total = grid.overhead[b, s] + grid.ends[b, s, h] + growth + premium + calibrated
    priced = (b_ok & s_ok & h_ok & (a_ok & f_ok | ~used).all(axis=1) & ~np.isnan(total)
              & (archs.layers >= 1) & (archs.layers <= archs.heads.shape[1]))
    if archs.vocab != grid.vocab or archs.labels != grid.labels:
        priced[:] = False
    if not priced.all():
        index = int(np.argmin(priced))
        predict_ms(archs.row(index), table)  # raises the precise one-line error for the block the table lacks
        raise LatlabError(f"architecture row {index}: layers {archs.layers[index]} but only "
                          f"{archs.heads.shape[1]} per-layer columns given")
    return total


def priced_calibration(calibration: Calibration, table: LatencyTable) -> Calibration:
    """The calibration with each model's uncalibrated price and its two calibrated terms read from ``table`` (a
    table of the blocks timed in the models' rounds)."""
    models = []
    for model in calibration.models:
        plain = predict(model.arch, replace(table, shape_change=0.0, beyond_depth=0.0))
        changes = predict(model.arch, replace(table, shape_change=1.0, beyond_depth=0.0)).calibrated_ms
        deep = predict(model.arch, replace(table, shape_change=0.0, beyond_depth=1.0)).calibrated_ms
        models.append(replace(model, table_ms=plain.total_ms, changes_ms=changes, deep_ms=deep))
    return replace(calibration, models=tuple(models))
