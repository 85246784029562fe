"""Proxy evaluation of one candidate as one pure, picklable function: ``evaluate(candidate, settings)``.

Everything it needs is named by ``settings`` (paths and numbers, no live objects), so a process pool or a
cluster executor can run candidates in parallel without touching the search. The teacher, the proxy data
and the teacher's hidden states on it are loaded once per process and reused (``proxy_context``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import torch

from kdnas.candidate import Candidate
from kdnas.data import Splits, head, load_data, load_teacher, split, tokenize
from kdnas.distill import DistillConfig, TeacherTargets, distill, held_out_loss
from kdnas.finetune import FinetuneConfig, accuracy, batches, finetune
from kdnas.reward import quality_from_loss
from kdnas.student import build_student, count_parameters

OBJECTIVES = ("distill", "labelled")


@dataclass(frozen=True)
class EvalSettings:
    teacher_dir: str
    data_path: str | None  # None: BBC News
    proxy_train: int = 256  # training-split texts the candidate distills on
    proxy_held_out: int = 64  # validation-split texts its quality is measured on
    seq_len: int = 64  # training length; latency is still priced at the space's seq_len
    batch_size: int = 16
    init: str = "sliced"
    objective: str = "distill"  # distill: quality = 1 - held-out loss; labelled: held-out accuracy after fine-tuning
    # the pairs the held-out loss averages (kdnas.distill.SCORES): all but the embeddings pair, which a student
    # sliced at the teacher's width matches almost for free (Kendall tau with final accuracy 0.64 -> 0.82, README)
    score: str = "layers"
    distill: DistillConfig = field(default_factory=DistillConfig)
    finetune: FinetuneConfig = field(default_factory=lambda: FinetuneConfig(steps=20))
    device: str = "cpu"


@dataclass(frozen=True)
class CandidateResult:
    candidate: Candidate
    parameters: int
    proxy_loss: float  # normalised held-out distillation loss (1 - R^2)
    quality: float  # what the reward multiplies: 1 - proxy_loss, or accuracy for the labelled objective
    accuracy: float | None
    seconds: float


@dataclass
class ProxyContext:
    teacher: torch.nn.Module
    labels: int
    splits: Splits
    train: TeacherTargets
    held_out: TeacherTargets
    labelled_train: list | None
    labelled_held_out: list | None


def text_batches(tokenizer: Any, texts: tuple[str, ...], seq_len: int, size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    ids, mask = tokenize(tokenizer, texts, seq_len)
    return [(ids[i:i + size], mask[i:i + size]) for i in range(0, len(ids), size)]


@lru_cache(maxsize=2)
def proxy_context(settings: EvalSettings) -> ProxyContext:
    teacher, tokenizer = load_teacher(settings.teacher_dir)
    teacher.to(settings.device)
    splits = split(load_data(settings.data_path))
    train_data, held_data = head(splits.train, settings.proxy_train), head(splits.validation, settings.proxy_held_out)
    train = TeacherTargets.compute(teacher, text_batches(tokenizer, train_data.texts, settings.seq_len, settings.batch_size))
    held_out = TeacherTargets.compute(teacher, text_batches(tokenizer, held_data.texts, settings.seq_len,
                                                            settings.batch_size), variance_from=train)
    labelled = settings.objective == "labelled"
    return ProxyContext(
        teacher=teacher,
        labels=max(len(splits.train.label_names), 1),
        splits=splits,
        train=train,
        held_out=held_out,
        labelled_train=batches(tokenizer, train_data, settings.seq_len, settings.batch_size) if labelled else None,
        labelled_held_out=batches(tokenizer, held_data, settings.seq_len, settings.batch_size) if labelled else None,
    )


def evaluate(candidate: Candidate, settings: EvalSettings) -> CandidateResult:
    """Build the student, distill it on the proxy set, score it on held-out proxy data. Deterministic."""
    started = time.perf_counter()
    context = proxy_context(settings)
    teacher = context.teacher.config
    model = build_student(candidate, context.teacher, context.labels, settings.init, seed=settings.distill.seed)
    projections = distill(model.bert, teacher.num_hidden_layers, teacher.hidden_size, lambda: context.train,
                          context.train.variances, settings.distill, settings.device,
                          sliced=settings.init == "sliced")
    loss = held_out_loss(model.bert, projections, context.held_out, settings.device, settings.score)
    correct = None
    if settings.objective == "labelled":
        finetune(model, context.labelled_train, settings.finetune, settings.device)
        correct = accuracy(model, context.labelled_held_out, settings.device)
    quality = correct if correct is not None else quality_from_loss(loss)
    return CandidateResult(candidate, count_parameters(model.bert), loss, quality, correct,
                           time.perf_counter() - started)
