"""The building blocks a transformer encoder is cut into: plain data, so prediction never needs torch
(``latlab.modules`` builds the torch modules that stand for them).

A model's latency is predicted as the per-call overhead plus, for each block, (block latency - overhead):
every block measured alone pays the runtime's call overhead once, a whole model pays it once in total.
"""

from __future__ import annotations

from typing import NamedTuple

OVERHEAD, EMBEDDINGS, LAYER, HEAD, MODEL = "overhead", "embeddings", "layer", "head", "model"
KINDS = (OVERHEAD, EMBEDDINGS, LAYER, HEAD, MODEL)


class Block(NamedTuple):
    """One measurable piece; unused fields are 0. A tuple so that lookups during prediction stay cheap.

    A ``model`` block is a whole uniform model of ``layers`` copies of one layer (embeddings and head included):
    how a layer costs inside a model, rather than alone with its weights kept warm (see ``latlab.predict``)."""

    kind: str
    batch: int
    seq_len: int
    hidden: int = 0
    heads: int = 0
    ffn: int = 0
    vocab: int = 0
    labels: int = 0
    layers: int = 0

    @property
    def key(self) -> str:
        """Stable, readable id used in profile files, e.g. ``layer/b1/s128/h256/a4/f1024``."""
        parts = [self.kind, f"b{self.batch}", f"s{self.seq_len}"]
        for tag, value in (("h", self.hidden), ("a", self.heads), ("f", self.ffn), ("v", self.vocab), ("l", self.labels),
                           ("L", self.layers)):
            if value:
                parts.append(f"{tag}{value}")
        return "/".join(parts)


def overhead_block(batch: int, seq_len: int) -> Block:
    return Block(OVERHEAD, batch, seq_len)


def embeddings_block(batch: int, seq_len: int, hidden: int, vocab: int) -> Block:
    return Block(EMBEDDINGS, batch, seq_len, hidden=hidden, vocab=vocab)


def layer_block(batch: int, seq_len: int, hidden: int, heads: int, ffn: int) -> Block:
    return Block(LAYER, batch, seq_len, hidden=hidden, heads=heads, ffn=ffn)


def head_block(batch: int, seq_len: int, hidden: int, labels: int) -> Block:
    return Block(HEAD, batch, seq_len, hidden=hidden, labels=labels)


def gflops(block: Block) -> float:
    """Multiply-add work of a layer, or of a model's layers (2 FLOPs per multiply-add): the projections, the
    feed-forward and the two attention products. What a runtime does fast; the rest of a layer (softmax,
    normalisation, copies) is memory-bound."""
    if block.kind not in (LAYER, MODEL):
        return 0.0
    tokens, h = block.batch * block.seq_len, block.hidden
    per_layer = 2 * tokens * (4 * h * h + 2 * h * block.ffn) + 4 * block.batch * block.seq_len ** 2 * h
    return per_layer * max(block.layers, 1) / 1e9


def parameters(block: Block) -> int:
    """Weights of the block's modules, counted as ``latlab.modules`` builds them (a test checks it against torch):
    what a deployment stores and loads, next to what it costs in time."""
    h = block.hidden
    layer = 4 * h * h + 2 * h * block.ffn + 9 * h + block.ffn  # Q, K, V, O, two norms, the feed-forward pair
    embeddings = (block.vocab + max(512, block.seq_len) + 2 + 2) * h  # words, positions, token types, norm
    head = h * h + h + h * block.labels + block.labels  # pooler, classifier
    if block.kind == LAYER:
        return layer
    if block.kind == MODEL:
        return embeddings + layer * block.layers + head
    return {EMBEDDINGS: embeddings, HEAD: head}.get(block.kind, 0)


def linear_weights(block: Block) -> int:
    """The weight-matrix entries of the block's linear layers: what every int8 recipe here quantizes to one byte
    (biases, norms and embeddings stay float32)."""
    h = block.hidden
    layer = 4 * h * h + 2 * h * block.ffn
    head = h * h + h * block.labels
    return {LAYER: layer, MODEL: layer * block.layers + head, HEAD: head}.get(block.kind, 0)


def in_models(layer: Block, model_depth: int, vocab: int, labels: int) -> tuple[Block, ...]:
    """The blocks that price ``layer``: uniform whole models of 1 and ``model_depth`` copies of it, or the layer
    alone when ``model_depth`` is 0 (profiles written before model blocks)."""
    if not model_depth:
        return (layer,)
    return tuple(layer._replace(kind=MODEL, vocab=vocab, labels=labels, layers=d) for d in sorted({1, model_depth}))
