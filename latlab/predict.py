"""Whole-model latency from a profile. Pure lookups.

Every block timed alone paid the runtime's per-call overhead once; a whole model pays it once. So a model costs
the overhead plus, for each block, its median minus that overhead.

Layers are priced as they run inside a model. A layer timed alone keeps its weights and buffers warm and runs
4-12% faster than inside a model, where the other layers have just evicted them; the embeddings and head lose
their warm caches too (``../shared/FINDINGS.md``). So a profile times each layer configuration inside uniform
whole models of 1 and D layers (``protocol.model_depth``), and prices:

- the model's first layer at ``model(1 layer) - embeddings - head - overhead``: it carries whatever the ends cost
  more in a model than alone, so a one-layer model is priced at exactly what it measured;
- each further layer at the growth per layer, ``(model(D layers) - model(1 layer)) / (D - 1)``.

A uniform model of 1 or D layers is therefore priced at its own measurement; other depths and mixed stacks are
read off the same entries, layer by layer. Profiles with ``model_depth == 0`` price every layer alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from latlab.architecture import Architecture
from latlab.blocks import EMBEDDINGS, HEAD, LAYER, MODEL, OVERHEAD, Block, embeddings_block, head_block, in_models
from latlab.errors import LatlabError
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

    @classmethod
    def from_profile(cls, profile: Profile) -> LatencyTable:
        medians = {entry.block: entry.stats.median_ms for entry in profile.entries.values()}
        overhead = {(b.batch, b.seq_len): ms for b, ms in medians.items() if b.kind == OVERHEAD}
        net = {b: ms - overhead.get((b.batch, b.seq_len), 0.0) for b, ms in medians.items() if b.kind != OVERHEAD}
        ends = {b: ms for b, ms in net.items() if b.kind in (EMBEDDINGS, HEAD)}
        depth = profile.protocol.model_depth
        if not depth:
            layers = {b: ms for b, ms in net.items() if b.kind == LAYER}
            return cls(ends, layers, layers, overhead, profile.space.name)
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
        return cls(ends, first, following, overhead, profile.space.name)

    def missing(self, block: Block) -> LatlabError:
        return LatlabError(f"the profile has no entry for block {block.key}: it lies outside the measured grid of "
                           f"space {self.space_name!r}; profile a space that contains it")


@dataclass(frozen=True)
class Prediction:
    total_ms: float
    overhead_ms: float
    parts: tuple[tuple[str, float], ...]  # (block key, net ms) in model order


def priced_blocks(arch: Architecture, model_depth: int) -> list[Block]:
    """The profile entries a prediction of ``arch`` reads (overhead excluded), each once."""
    blocks = arch.blocks()
    found = dict.fromkeys([blocks[0], blocks[-1]])
    for layer in blocks[1:-1]:
        found.update(dict.fromkeys(in_models(layer, model_depth, arch.vocab, arch.labels)))
    return list(found)


def _costs(arch: Architecture, table: LatencyTable) -> list[tuple[Block, float]]:
    """(block, net ms) in model order; raises the table's one-line error for a block it lacks."""
    embeddings, first, *further, head = arch.blocks()
    try:
        return ([(embeddings, table.ends_ms[embeddings]), (first, table.first_ms[first])]
                + [(b, table.next_ms[b]) for b in further]
                + [(head, table.ends_ms[head])])
    except KeyError as exc:
        raise table.missing(exc.args[0]) from None


def _overhead(arch: Architecture, table: LatencyTable) -> float:
    overhead = table.overhead_ms.get((arch.batch, arch.seq_len))
    if overhead is None:
        raise table.missing(Block(OVERHEAD, arch.batch, arch.seq_len))
    return overhead


def predict_ms(arch: Architecture, table: LatencyTable) -> float:
    """The hot path for searches: total predicted milliseconds per call (``_costs`` without the list)."""
    embeddings, first, *further, head = arch.blocks()
    try:
        total = table.ends_ms[embeddings] + table.first_ms[first] + table.ends_ms[head]
        for block in further:
            total += table.next_ms[block]
    except KeyError as exc:
        raise table.missing(exc.args[0]) from None
    return _overhead(arch, table) + total


def predict(arch: Architecture, table: LatencyTable) -> Prediction:
    """Total and per-block breakdown, for reports."""
    overhead, costs = _overhead(arch, table), _costs(arch, table)
    return Prediction(overhead + sum(ms for _, ms in costs), overhead, tuple((b.key, ms) for b, ms in costs))
