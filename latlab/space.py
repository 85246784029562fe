"""Search spaces: the values a student may take, the blocks a profile must measure, random architectures."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from latlab.architecture import Architecture, layer_count
from latlab.atomic import read_json
from latlab.blocks import Block, embeddings_block, head_block, in_models, layer_block, overhead_block
from latlab.errors import LatlabError
from latlab.fields import refuse, short, whole

SPACES_DIR = Path(__file__).resolve().parent / "spaces"  # package data: found by any install, editable or not
DEFAULT_SPACE = SPACES_DIR / "minilm-students.json"
_LIST_FIELDS = ("layers", "hidden", "heads", "ffn", "seq_len", "batch")
MAX_VALUES = 100  # per field; shipped spaces list at most 6
MAX_BLOCKS = 10_000  # a profile times each block for seconds: more would take days (minilm-students has 121)


@dataclass(frozen=True)
class SearchSpace:
    name: str
    layers: tuple[int, ...]
    hidden: tuple[int, ...]
    heads: tuple[int, ...]
    ffn: tuple[int, ...]
    seq_len: tuple[int, ...]
    batch: tuple[int, ...]
    labels: int = 2
    vocab: int = 30522

    def heads_for(self, hidden: int) -> tuple[int, ...]:
        """Head counts valid for a width; combinations with hidden % heads != 0 are left out, not errors."""
        return tuple(a for a in self.heads if hidden % a == 0)

    def blocks(self, model_depth: int = 0) -> list[Block]:
        """Every block a profile of this space measures, overhead first. With ``model_depth`` (see
        ``Protocol.model_depth``) each layer configuration is timed inside uniform models of 1 and ``model_depth``
        layers instead of alone."""
        found: list[Block] = []
        for batch in self.batch:
            for seq_len in self.seq_len:
                found.append(overhead_block(batch, seq_len))
                for hidden in self.hidden:
                    found.append(embeddings_block(batch, seq_len, hidden, self.vocab))
                    for layer in (layer_block(batch, seq_len, hidden, a, f) for a in self.heads_for(hidden)
                                  for f in self.ffn):
                        found.extend(in_models(layer, model_depth, self.vocab, self.labels))
                    found.append(head_block(batch, seq_len, hidden, self.labels))
        return found

    def sample(self, rng: random.Random) -> Architecture:
        """A random architecture; heads and ffn are drawn per layer so mixed stacks get validated too."""
        hidden = rng.choice([h for h in self.hidden if self.heads_for(h)])
        layers = rng.choice(self.layers)
        return Architecture(
            hidden=hidden,
            heads=tuple(rng.choice(self.heads_for(hidden)) for _ in range(layers)),
            ffn=tuple(rng.choice(self.ffn) for _ in range(layers)),
            seq_len=rng.choice(self.seq_len),
            batch=rng.choice(self.batch),
            labels=self.labels,
            vocab=self.vocab,
        )

    def check_contains(self, arch: Architecture, interpolate: bool = False) -> None:
        """Explain the first value of ``arch`` that lies outside this space. With ``interpolate``, seq_len and batch
        need only lie within the measured range (``predict(..., interpolate=True)`` estimates between them)."""
        checks = [("hidden", arch.hidden, self.hidden), ("layers", arch.layers, self.layers)]
        shape = [("seq_len", arch.seq_len, self.seq_len), ("batch", arch.batch, self.batch)]
        checks += [] if interpolate else shape
        checks += [(f"layer {i} heads", a, self.heads) for i, a in enumerate(arch.heads)]
        checks += [(f"layer {i} ffn", f, self.ffn) for i, f in enumerate(arch.ffn)]
        for field, value, allowed in checks:
            if value not in allowed:
                raise LatlabError(f"architecture {field} = {value} is outside space {self.name!r} "
                                  f"(allowed: {list(allowed)})")
        for field, value, allowed in shape if interpolate else []:
            if not allowed[0] <= value <= allowed[-1]:
                measured = f"{allowed[0]}..{allowed[-1]}" if len(allowed) > 1 else f"only {allowed[0]}"
                raise LatlabError(f"architecture {field} = {value} is outside space {self.name!r} (measured "
                                  f"{measured}; latlab interpolates between measured values, never beyond)")

    def arch_defaults(self) -> dict[str, int]:
        """What an architecture file may leave out: labels, vocab, and seq_len/batch when the space has one."""
        defaults = {"labels": self.labels, "vocab": self.vocab}
        for field in ("seq_len", "batch"):
            values = getattr(self, field)
            if len(values) == 1:
                defaults[field] = values[0]
        return defaults

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any, source: str) -> SearchSpace:
        if not isinstance(data, dict):
            raise LatlabError(f"{source}: expected a JSON object with fields {', '.join(_LIST_FIELDS)}")
        name = data.get("name", Path(source).stem)
        if not isinstance(name, str):
            raise refuse(source, "name", f"must be text, got {short(name)}")
        values: dict[str, Any] = {"name": name}
        for field in _LIST_FIELDS:
            raw = data.get(field)
            if (not isinstance(raw, list) or not raw or len(raw) > MAX_VALUES
                    or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in raw)):
                raise refuse(source, field, f"must be a non-empty list of positive integers (at most {MAX_VALUES}), "
                                            f"got {short(raw)}")
            values[field] = tuple(sorted(set(raw)))
        for field in ("labels", "vocab"):
            if field in data:
                values[field] = whole(data[field], source, field)
        layer_count(values["layers"][-1], source, "layers")
        space = cls(**values)
        count = space.block_count()
        if not count:
            raise LatlabError(f"{source}: no hidden size is divisible by any head count; nothing to measure")
        if count > MAX_BLOCKS:
            raise LatlabError(f"{source}: {count} blocks to measure, more than latlab profiles (at most {MAX_BLOCKS}); "
                              "use fewer values per field")
        return space

    def block_count(self, model_depth: int = 2) -> int:
        """How many blocks ``blocks(model_depth)`` lists, counted without listing them; 0 when no layer fits."""
        per_layer = len(in_models(layer_block(1, 1, 1, 1, 1), model_depth, self.vocab, self.labels))
        layers = sum(len(self.heads_for(h)) for h in self.hidden) * len(self.ffn) * per_layer
        return len(self.batch) * len(self.seq_len) * (1 + 2 * len(self.hidden) + layers) if layers else 0


def shipped_spaces() -> list[str]:
    return sorted(p.stem for p in SPACES_DIR.glob("*.json"))


def space_file(path: str | Path | None = None) -> Path:
    """The file a ``--space`` value names: a path, or the name of a space that ships with latlab (``tiny``, ...)."""
    path = Path(path) if path else DEFAULT_SPACE
    if not path.exists() and path.name == str(path) and (SPACES_DIR / f"{path}.json").exists():
        return SPACES_DIR / f"{path}.json"
    return path


def load_space(path: str | Path | None = None) -> SearchSpace:
    path = space_file(path)
    fix = f"give a file, or one of the shipped spaces: {', '.join(shipped_spaces())}"
    return SearchSpace.from_json(read_json(path, "space file", fix), str(path))
