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

from transformers import BertForSequenceClassification

from backends.onnx_export import export_onnx
from kdnas.candidate import Candidate
from kdnas.data import load_classifier, load_data, load_teacher, split
from kdnas.distill import DistillConfig, TeacherTargets, distill, held_out_loss, teacher_states
from kdnas.evaluate import EvalSettings, text_batches
from kdnas.finetune import FinetuneConfig, accuracy, batches, finetune
from kdnas.measure import LogitsOnly, Timing, time_models
from kdnas.run_folder import ONNX_FILE, STUDENT_DIR
from kdnas.student import build_student, count_parameters
from latlab.atomic import write_bytes
from latlab.errors import LatlabError
from latlab.modules import example_ids
from latlab.profile import Profile
from latlab.protocol import Protocol
from latlab.space import SearchSpace
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
    latency: Timing | None  # student and teacher; None when the profile's backend cannot run here
    not_measured: str  # why latency was not measured, else ""
    seconds: float

    @property
    def student_ms(self) -> LatencyStats | None:
        return self.latency.rows["student"].measured if self.latency else None

    @property
    def teacher_ms(self) -> LatencyStats | None:
        return self.latency.rows["teacher"].measured if self.latency else None


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


def run_final(candidate: Candidate, settings: EvalSettings, config: FinalConfig, profile: Profile,
              space: SearchSpace, out: Path) -> FinalResult:
    """``space`` is the one the search priced: the student is exported and timed at its deployment shape."""
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
    classifier = load_classifier(Path(settings.teacher_dir), "teacher", labels)
    if splits.train.labels is not None:
        tune = batches(tokenizer, splits.train, settings.seq_len, settings.batch_size)
        test = batches(tokenizer, splits.test, settings.seq_len, settings.batch_size)
        for model in (student, classifier):
            finetune(model, tune, config.finetune, device)
        student_acc, teacher_acc = accuracy(student, test, device), accuracy(classifier, test, device)

    student.cpu().eval()
    save_student(student, tokenizer, out / STUDENT_DIR)
    example = (example_ids(candidate.architecture(space)),)
    write_bytes(out / ONNX_FILE, export_onnx(LogitsOnly(student).eval(), example))
    try:
        latency = time_models(profile, {"student": student, "teacher": classifier}, space, config.protocol)
        reason = ""
    except LatlabError as exc:
        latency, reason = None, str(exc)
    return FinalResult(candidate, count_parameters(student.bert), count_parameters(teacher), steps, loss, student_acc,
                       teacher_acc, latency, reason, time.perf_counter() - started)
