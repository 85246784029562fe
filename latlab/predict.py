"""Whole-model latency from a profile: overhead + embeddings + sum of layers + head. Pure lookups."""

from __future__ import annotations

from dataclasses import dataclass

from latlab.architecture import Architecture
from latlab.blocks import OVERHEAD, Block
from latlab.errors import LatlabError
from latlab.profile import Profile


@dataclass(frozen=True)
class LatencyTable:
    """Each block's median minus the per-call overhead it paid when measured alone, keyed for O(1) lookup.

    Build it once per profile (``from_profile``) and predict as many architectures as you like.
    """

    net_ms: dict[Block, float]
    overhead_ms: dict[tuple[int, int], float]  # (batch, seq_len) -> per-call overhead
    space_name: str

    @classmethod
    def from_profile(cls, profile: Profile) -> LatencyTable:
        medians = {entry.block: entry.stats.median_ms for entry in profile.entries.values()}
        overhead = {(b.batch, b.seq_len): ms for b, ms in medians.items() if b.kind == OVERHEAD}
        net = {
            b: ms - overhead.get((b.batch, b.seq_len), 0.0) for b, ms in medians.items() if b.kind != OVERHEAD
        }
        return cls(net, overhead, profile.space.name)

    def missing(self, block: Block) -> LatlabError:
        return LatlabError(f"the profile has no entry for block {block.key}: it lies outside the measured grid of "
                           f"space {self.space_name!r}; profile a space that contains it")


@dataclass(frozen=True)
class Prediction:
    total_ms: float
    overhead_ms: float
    parts: tuple[tuple[str, float], ...]  # (block key, net ms) in model order


def predict_ms(arch: Architecture, table: LatencyTable) -> float:
    """The hot path for searches: total predicted milliseconds per call."""
    try:
        total = table.overhead_ms[(arch.batch, arch.seq_len)]
        for block in arch.blocks():
            total += table.net_ms[block]
    except KeyError as exc:
        key = exc.args[0]
        raise table.missing(key if isinstance(key, Block) else Block(OVERHEAD, arch.batch, arch.seq_len)) from None
    return total


def predict(arch: Architecture, table: LatencyTable) -> Prediction:
    """Total and per-block breakdown, for reports."""
    overhead = table.overhead_ms.get((arch.batch, arch.seq_len))
    if overhead is None:
        raise table.missing(Block(OVERHEAD, arch.batch, arch.seq_len))
    parts = []
    for block in arch.blocks():
        if block not in table.net_ms:
            raise table.missing(block)
        parts.append((block.key, table.net_ms[block]))
    return Prediction(overhead + sum(ms for _, ms in parts), overhead, tuple(parts))
