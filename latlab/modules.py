"""The real torch modules that stand for blocks and architectures: what backends convert and time.

Kept apart from the data modules (``latlab.blocks``, ``latlab.architecture``) so that prediction loads no torch.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import BertConfig
from transformers.masking_utils import create_bidirectional_mask
from transformers.models.bert.modeling_bert import BertEmbeddings, BertLayer, BertPooler

from latlab.architecture import Architecture
from latlab.blocks import EMBEDDINGS, HEAD, LAYER, MODEL, OVERHEAD, Block

# sdpa is transformers' default; fixed here so blocks and whole models run the same attention kernels.
ATTENTION_IMPLEMENTATION = "sdpa"


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


def example_ids(arch: Architecture) -> torch.Tensor:
    """Token ids of the architecture's exact shape: what a profile's latencies are per call of."""
    return torch.randint(0, arch.vocab, (arch.batch, arch.seq_len), dtype=torch.long)


def build_model(arch: Architecture, seed: int = 0) -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
    torch.manual_seed(seed)
    ids = example_ids(arch)
    return Encoder(arch.hidden, list(zip(arch.heads, arch.ffn)), arch.vocab, arch.labels, arch.seq_len).eval(), (ids,)
