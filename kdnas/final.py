"""The last step of a search: distill the winner on the whole training split, fine-tune student and teacher the
same way on the labelled task, compare test accuracy, export the student, and measure both on the profile's
backend and settings."""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn
from transformers import BertForSequenceClassification

from backends.onnx_export import export_onnx
from kdnas.candidate import Candidate
from kdnas.data import load_teacher, split, load_data
from kdnas.distill import DistillConfig, TeacherTargets, distill, held_out_loss, teacher_states
from kdnas.evaluate import EvalSettings, text_batches
from kdnas.finetune import FinetuneConfig, accuracy, batches, finetune
from kdnas.student import build_student, count_parameters
from latlab.atomic import write_bytes
from latlab.errors import LatlabError
from latlab.profile import Profile
from latlab.protocol import Protocol, measure
from latlab.registry import load_backend
from latlab.stats import LatencyStats


@dataclass(frozen=True)
class FinalConfig:
    epochs: float = 1.0  # passes over the training split for the full distillation
    distill: DistillConfig = DistillConfig(lr=1e-3, freeze_word_embeddings=False)
    finetune: FinetuneConfig = FinetuneConfig(steps=60)
    protocol: Protocol | None = None  # None: the profile's own protocol


@dataclass(frozen=True)
class FinalResult:
    candidate: Candidate
    student_parameters: int
    teacher_parameters: int
    distill_steps: int
    held_out_loss: float
    student_accuracy: float | None
    teacher_accuracy: float | None
    student_ms: LatencyStats | None  # None when the profile's backend cannot run here
    teacher_ms: LatencyStats | None
    not_measured: str  # why latency was not measured, else ""
    seconds: float


class LogitsOnly(nn.Module):
    """``input_ids -> logits``: the exact call a profile prices (no attention mask, as in latlab's blocks)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids).logits


def save_student(model: BertForSequenceClassification, tokenizer: object, folder: Path) -> None:
    """Write into a temporary sibling, then rename: a crash never leaves a half-written student/."""
    staging = Path(tempfile.mkdtemp(prefix=".student.", dir=folder.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def measure_latency(profile: Profile, models: dict[str, nn.Module], shape: tuple[int, int],
                    protocol: Protocol) -> tuple[dict[str, LatencyStats], str]:
    """Both models on the profile's backend and settings, interleaved; empty with a reason when it cannot run."""
    backend = load_backend(profile.backend)
    try:
        backend.check(profile.settings)
    except LatlabError as exc:
        return {}, str(exc)
    vocab = min(model.config.vocab_size for model in models.values())
    ids = torch.randint(0, vocab, shape, dtype=torch.long)
    runners = {name: backend.prepare(LogitsOnly(model).eval(), (ids,), profile.settings) for name, model in models.items()}
    rounds, _ = measure(runners, protocol)
    return {name: LatencyStats.from_rounds(r) for name, r in rounds.items()}, ""


def run_final(candidate: Candidate, settings: EvalSettings, config: FinalConfig, profile: Profile,
              shape: tuple[int, int], out: Path) -> FinalResult:
    started = time.perf_counter()
    device = settings.device
    teacher, tokenizer = load_teacher(settings.teacher_dir)
    teacher.to(device)
    splits = split(load_data(settings.data_path))
    labels = max(len(splits.train.label_names), 1)
    train = text_batches(tokenizer, splits.train.texts, settings.seq_len, settings.batch_size)
    held_out = TeacherTargets.compute(teacher, text_batches(tokenizer, splits.validation.texts, settings.seq_len,
                                                            settings.batch_size))
    student = build_student(candidate, teacher, labels, settings.init, seed=config.distill.seed)
    steps = max(1, math.ceil(config.epochs * len(train)))
    distill_config = replace(config.distill, mapping=settings.distill.mapping, steps=steps)
    projections = distill(student.bert, teacher.config.num_hidden_layers, teacher.config.hidden_size,
                          lambda: ((b, teacher_states(teacher, b)) for b in train), held_out.variances,
                          distill_config, device, sliced=settings.init == "sliced")
    loss = held_out_loss(student.bert, projections, held_out, device)

    student_acc = teacher_acc = None
    classifier = BertForSequenceClassification.from_pretrained(settings.teacher_dir, num_labels=labels,
                                                               local_files_only=True, attn_implementation="sdpa")
    if splits.train.labels is not None:
        tune = batches(tokenizer, splits.train, settings.seq_len, settings.batch_size)
        test = batches(tokenizer, splits.test, settings.seq_len, settings.batch_size)
        for model in (student, classifier):
            finetune(model, tune, config.finetune, device)
        student_acc, teacher_acc = accuracy(student, test, device), accuracy(classifier, test, device)

    student.cpu().eval()
    save_student(student, tokenizer, out / "student")
    example = (torch.zeros(shape, dtype=torch.long),)
    write_bytes(out / "student.onnx", export_onnx(LogitsOnly(student).eval(), example))
    latency, reason = measure_latency(profile, {"student": student, "teacher": classifier.cpu()}, shape,
                                      config.protocol or profile.protocol)
    return FinalResult(candidate, count_parameters(student.bert), count_parameters(teacher), steps, loss, student_acc,
                       teacher_acc, latency.get("student"), latency.get("teacher"), reason,
                       time.perf_counter() - started)
