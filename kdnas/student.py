"""Students are ordinary Hugging Face BERT models built from a ``BertConfig``: the teacher's vocabulary,
positions and tokenizer, the candidate's depth and widths. A saved student loads with ``AutoModel``.

Initialisation (``init``):
- ``sliced``: every weight is the leading block of the teacher's matching weight (rows and columns cut to the
  student's sizes); student layer i starts from the teacher layer it imitates under the ``uniform`` mapping.
- ``random``: BERT's own initialisation (normal, std 0.02).
docs/kdnas.md records the measurement behind the default.
"""

from __future__ import annotations

import torch
from transformers import BertConfig, BertForSequenceClassification, PreTrainedModel

from kdnas.candidate import Candidate
from kdnas.mapping import layer_map
from latlab.modules import ATTENTION_IMPLEMENTATION

INITS = ("sliced", "random")


def student_config(candidate: Candidate, teacher: BertConfig, labels: int) -> BertConfig:
    return BertConfig(
        vocab_size=teacher.vocab_size,
        max_position_embeddings=teacher.max_position_embeddings,
        type_vocab_size=teacher.type_vocab_size,
        pad_token_id=teacher.pad_token_id,
        hidden_size=candidate.hidden,
        num_hidden_layers=candidate.layers,
        num_attention_heads=candidate.heads,
        intermediate_size=candidate.ffn,
        num_labels=labels,
        attn_implementation=ATTENTION_IMPLEMENTATION,
    )


def teacher_key(student_key: str, layer_source: dict[int, int]) -> str:
    """``encoder.layer.{i}.x`` of the student reads ``encoder.layer.{source[i]}.x`` of the teacher."""
    parts = student_key.split(".")
    if parts[:2] == ["encoder", "layer"]:
        parts[2] = str(layer_source[int(parts[2])])
    return ".".join(parts)


def slice_from(student: torch.nn.Module, teacher: torch.nn.Module, layer_source: dict[int, int]) -> None:
    """Copy the leading block of each teacher tensor into the same-named student tensor (when the teacher has one)."""
    source = teacher.state_dict()
    with torch.no_grad():
        for key, tensor in student.state_dict().items():
            original = source.get(teacher_key(key, layer_source))
            if original is None:
                continue
            tensor.copy_(original[tuple(slice(0, n) for n in tensor.shape)])


def build_student(candidate: Candidate, teacher: PreTrainedModel, labels: int, init: str = "sliced",
                  seed: int = 0) -> BertForSequenceClassification:
    """A fresh student for ``candidate``; the classifier head is always random (the teacher has none)."""
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
    torch.manual_seed(seed)
    student = BertForSequenceClassification(student_config(candidate, teacher.config, labels))
    if init == "sliced":
        pairs = layer_map(candidate.layers, teacher.config.num_hidden_layers, "uniform")
        layer_source = {s - 1: t - 1 for s, t in pairs if s > 0}  # hidden-state indices -> 0-based layer indices
        slice_from(student.bert, teacher, layer_source)
    return student


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
