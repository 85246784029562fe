"""The building blocks a transformer encoder is cut into, and the real torch modules that stand for them.

A model's latency is predicted as the per-call overhead plus, for each block, (block latency - overhead):
every block measured alone pays the runtime's call overhead once, a whole model pays it once in total.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from transformers import BertConfig
from transformers.masking_utils import create_bidirectional_mask
from transformers.models.bert.modeling_bert import BertEmbeddings, BertLayer, BertPooler

OVERHEAD, EMBEDDINGS, LAYER, HEAD, MODEL = "overhead", "embeddings", "layer", "head", "model"
KINDS = (OVERHEAD, EMBEDDINGS, LAYER, HEAD, MODEL)

# sdpa is transformers' default; fixed here so blocks and whole models run the same attention kernels.
ATTENTION_IMPLEMENTATION = "sdpa"


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


def in_models(layer: Block, model_depth: int, vocab: int, labels: int) -> tuple[Block, ...]:
    """The blocks that price ``layer``: uniform whole models of 1 and ``model_depth`` copies of it, or the layer
    alone when ``model_depth`` is 0 (profiles written before model blocks)."""
    if not model_depth:
        return (layer,)
    return tuple(layer._replace(kind=MODEL, vocab=vocab, labels=labels, layers=d) for d in sorted({1, model_depth}))


def bert_config(hidden: int, heads: int, ffn: int, vocab: int, max_positions: int, labels: int = 2) -> BertConfig:
    return BertConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        num_attention_heads=heads,
        intermediate_size=ffn,
        num_hidden_layers=1,
        max_position_embeddings=max(512, max_positions),
        num_labels=labels,
        attn_implementation=ATTENTION_IMPLEMENTATION,
    )


class CallOverhead(nn.Module):
    """A near-empty model: what the runtime costs per call when there is almost no work."""

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return input_ids + 1


class EmbeddingsBlock(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.embeddings = BertEmbeddings(config)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embeddings(input_ids=input_ids)


class EncoderLayer(nn.Module):
    """A BERT layer with the attention mask Hugging Face's ``BertModel`` gives it.

    Eager torch skips an all-ones mask, but an exported model (ONNX, OpenVINO) keeps it, and the masked softmax
    costs several percent per layer: a block without it underprices every exported Hugging Face encoder.
    With static shapes the exporter folds the mask's construction into a constant, so a block does not pay
    for building it (the exported graphs of blocks and whole models hold the same operators). Eager torch
    decides per call that the mask can be skipped: about 15 us, paid by every layer block but once per whole
    model, i.e. 0.3% of a 5 ms layer (h256 f1024, seq 128), which is not worth a second code path.
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.layer = BertLayer(config)

    def build_mask(self, hidden_states: torch.Tensor) -> torch.Tensor | None:
        return create_bidirectional_mask(self.config, hidden_states, None)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = self.build_mask(hidden_states)
        return self.layer(hidden_states, attention_mask=attention_mask)


class ClassifierHead(nn.Module):
    """BERT's pooler (first token, dense, tanh) followed by the classification layer."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.pooler = BertPooler(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pooler(hidden_states))


class Encoder(nn.Module):
    """A whole model made of exactly the blocks a profile prices: embeddings, one layer per (heads, ffn), head."""

    def __init__(self, hidden: int, layers: list[tuple[int, int]], vocab: int, labels: int, max_positions: int) -> None:
        super().__init__()
        first = bert_config(hidden, layers[0][0], layers[0][1], vocab, max_positions, labels)
        self.embeddings = EmbeddingsBlock(first)
        self.layers = nn.ModuleList(EncoderLayer(bert_config(hidden, a, f, vocab, max_positions, labels))
                                    for a, f in layers)
        self.head = ClassifierHead(first)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        hidden_states = self.embeddings(input_ids)
        mask = self.layers[0].build_mask(hidden_states)  # built once per model, as BertModel does
        for layer in self.layers:
            hidden_states = layer(hidden_states, mask)
        return self.head(hidden_states)


def build_block(block: Block, seed: int = 0) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """The module for a block, in eval mode, and an example input of the block's exact shape."""
    torch.manual_seed(seed)
    ids = torch.randint(0, max(block.vocab, 2), (block.batch, block.seq_len), dtype=torch.long)
    hidden_states = torch.randn(block.batch, block.seq_len, max(block.hidden, 1))
    if block.kind == OVERHEAD:
        return CallOverhead().eval(), (ids,)
    config = bert_config(block.hidden, max(block.heads, 1), max(block.ffn, 1), max(block.vocab, 2), block.seq_len,
                         max(block.labels, 1))
    if block.kind == EMBEDDINGS:
        return EmbeddingsBlock(config).eval(), (ids,)
    if block.kind == LAYER:
        return EncoderLayer(config).eval(), (hidden_states,)
    if block.kind == MODEL:
        layers = [(block.heads, block.ffn)] * block.layers
        return Encoder(block.hidden, layers, block.vocab, block.labels, block.seq_len).eval(), (ids,)
    if block.kind == HEAD:
        return ClassifierHead(config).eval(), (hidden_states,)
    raise ValueError(f"unknown block kind {block.kind!r}")
