"""A student architecture: what ``predict`` prices and ``validate`` builds and measures end to end."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latlab.atomic import read_json
from latlab.blocks import Block, embeddings_block, head_block, layer_block, linear_weights, parameters
from latlab.errors import LatlabError
from latlab.fields import refuse, whole

MAX_LAYERS = 1000  # far beyond any encoder; checked before a tuple of that many layers is built


BYTES_PER_WEIGHT = {"f32": 4, "bf16": 2, "fp16": 2, "int8": 1}  # int8: the linear layers' matrices only


def layer_count(value: Any, source: str, field: str = "layers") -> int:
    """A layer count that can be built: ``{"layers": 1000000000}`` would fill the memory before any other check."""
    count = whole(value, source, field)
    if count > MAX_LAYERS:
        raise refuse(source, field, f"is {count}; latlab prices at most {MAX_LAYERS} layers")
    return count


@dataclass(frozen=True)
class Architecture:
    """One hidden width; heads and ffn per layer, so heterogeneous stacks are expressible."""

    hidden: int
    heads: tuple[int, ...]
    ffn: tuple[int, ...]
    seq_len: int = 128
    batch: int = 1
    labels: int = 2
    vocab: int = 30522

    def __post_init__(self) -> None:
        if len(self.heads) != len(self.ffn) or not self.heads:
            raise LatlabError(f"architecture: heads ({len(self.heads)}) and ffn ({len(self.ffn)}) need one value "
                              "per layer and at least one layer")
        for index, heads in enumerate(self.heads):
            if heads <= 0 or self.hidden % heads:
                raise LatlabError(f"architecture: layer {index}: hidden {self.hidden} is not divisible by heads "
                                  f"{heads}; choose heads that divide hidden")

    @property
    def layers(self) -> int:
        return len(self.heads)

    @property
    def shape_changes(self) -> int:
        """How many neighbouring layers differ in heads or ffn (each costs a little, see latlab.calibration)."""
        shapes = list(zip(self.heads, self.ffn))
        return sum(a != b for a, b in zip(shapes, shapes[1:]))

    def blocks(self) -> list[Block]:
        """Embeddings, each layer, then the classifier head, as priced by a profile (overhead excluded)."""
        return [
            embeddings_block(self.batch, self.seq_len, self.hidden, self.vocab),
            *(layer_block(self.batch, self.seq_len, self.hidden, a, f) for a, f in zip(self.heads, self.ffn)),
            head_block(self.batch, self.seq_len, self.hidden, self.labels),
        ]

    @property
    def parameters(self) -> int:
        return sum(parameters(block) for block in self.blocks())

    def weight_mb(self, precision: str) -> float:
        """Megabytes of weights stored at ``precision`` (what a deployment loads); int8 keeps all but the linear
        layers' matrices in float32."""
        if precision != "int8":
            return self.parameters * BYTES_PER_WEIGHT[precision] / 1e6
        quantized = sum(linear_weights(block) for block in self.blocks())
        return (quantized * BYTES_PER_WEIGHT["int8"] + (self.parameters - quantized) * BYTES_PER_WEIGHT["f32"]) / 1e6

    def to_json(self) -> dict[str, Any]:
        return {
            "hidden": self.hidden,
            "layers": [{"heads": a, "ffn": f} for a, f in zip(self.heads, self.ffn)],
            "seq_len": self.seq_len,
            "batch": self.batch,
            "labels": self.labels,
            "vocab": self.vocab,
        }

    @classmethod
    def from_json(cls, data: Any, source: str = "architecture") -> Architecture:
        """Accepts per-layer ``layers: [{heads, ffn}, ...]`` or the uniform ``layers: N, heads: A, ffn: F``."""
        if not isinstance(data, dict):
            raise LatlabError(f"{source}: expected a JSON object with hidden, layers, heads/ffn")
        try:
            layers = data["layers"]
            if isinstance(layers, list):
                layer_count(len(layers), source)
                if not all(isinstance(layer, dict) for layer in layers):
                    raise refuse(source, "layers", "must list objects with heads and ffn")
                heads = tuple(whole(layer["heads"], source, f"layers[{i}].heads") for i, layer in enumerate(layers))
                ffn = tuple(whole(layer["ffn"], source, f"layers[{i}].ffn") for i, layer in enumerate(layers))
            else:
                count = layer_count(layers, source)
                heads, ffn = (whole(data["heads"], source, "heads"),) * count, (whole(data["ffn"], source, "ffn"),) * count
            extra = {k: whole(data[k], source, k) for k in ("seq_len", "batch", "labels", "vocab") if k in data}
            hidden = whole(data["hidden"], source, "hidden")
        except KeyError as exc:
            raise LatlabError(f"{source}: missing field {exc.args[0]!r}") from None
        try:
            return cls(hidden=hidden, heads=heads, ffn=ffn, **extra)
        except LatlabError as exc:
            raise LatlabError(f"{source}: {str(exc).removeprefix('architecture: ')}") from None


def load_architecture(path: str | Path, defaults: dict[str, int] | None = None) -> Architecture:
    """``defaults`` fill the fields the file leaves out (e.g. labels and vocab from the profile's space)."""
    data = read_json(path, "architecture file", "write one (see README) or fix the path")
    if isinstance(data, dict) and defaults:
        data = {**defaults, **data}
    return Architecture.from_json(data, source=str(path))
