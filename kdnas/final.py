"""The last step of a search, and of every student compared with it (``kdnas baselines``): a recipe good enough
to ship, run the same way for any candidate.

1. The teacher is fine-tuned on the labelled task once (early stopping on the validation split) and kept in the
   run folder's ``teacher/``; its test accuracy is the reference, its logits the soft labels.
2. Per seed, the student is sliced from that fine-tuned teacher, distilled on the whole training split through
   its hidden states (``distill.py``), then trained on the labels and the teacher's soft labels until the
   validation accuracy stops improving.
3. Everything trains at the sequence length the latency was priced at. Test accuracy is reported per seed; the
   seed with the best validation accuracy is the one saved, exported and timed.
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from transformers import BertForSequenceClassification, PreTrainedTokenizerBase

from backends.onnx_export import export_onnx
from kdnas.candidate import Candidate
from kdnas.data import held_out_test, load_classifier, load_data, load_teacher, split
from kdnas.distill import DistillConfig, TeacherTargets, distill, held_out_loss
from kdnas.evaluate import EvalSettings, text_batches
from kdnas.finetune import LabelledBatch, TaskConfig, TaskOutcome, accuracy, batches, train_task
from kdnas.measure import LogitsOnly, Timing, time_models
from kdnas.run_folder import ONNX_FILE, STUDENT_DIR, TEACHER_DIR, TRAINED_DIR, Invalid, Record, count, field, real
from kdnas.student import build_student, count_parameters, slice_from
from latlab.atomic import write_bytes, write_json
from latlab.errors import LatlabError
from latlab.modules import example_ids
from latlab.profile import Profile
from latlab.protocol import Protocol
from latlab.space import SearchSpace
from latlab.stats import LatencyStats

Say = Callable[[str], None]  # one progress line


@dataclass(frozen=True)
class FinalConfig:
    epochs: float = 1.0  # passes over the training split for the hidden-state distillation
    distill: DistillConfig = DistillConfig(lr=1e-3, freeze_word_embeddings=False)
    student: TaskConfig = TaskConfig(max_epochs=6, patience=1, soft_weight=0.5)
    teacher: TaskConfig = TaskConfig(max_epochs=3, patience=1)
    seeds: int = 3  # students trained from seeds seed, seed + 1, ...: accuracy is reported as mean ± sd
    seq_len: int | None = None  # None: the length the space prices
    protocol: Protocol | None = None  # None: the profile's own protocol


@dataclass(frozen=True)
class SeedResult:
    seed: int
    held_out_loss: float  # normalised hidden-state loss on the validation split
    task: TaskOutcome | None  # None without labels
    test_accuracy: float | None


@dataclass(frozen=True)
class Trained:
    """One candidate through the final recipe: a result per seed, the best-validated seed's model kept."""

    candidate: Candidate
    seeds: tuple[SeedResult, ...]
    model: BertForSequenceClassification
    distill_steps: int
    parameters: int

    @property
    def accuracies(self) -> list[float]:
        return [s.test_accuracy for s in self.seeds if s.test_accuracy is not None]

    @property
    def accuracy(self) -> float | None:
        return statistics.mean(self.accuracies) if self.accuracies else None

    @property
    def accuracy_sd(self) -> float | None:
        return statistics.stdev(self.accuracies) if len(self.accuracies) > 1 else None


@dataclass(frozen=True)
class Teacher:
    """The teacher fine-tuned on the task, with what every student's training reads from it."""

    model: BertForSequenceClassification
    tokenizer: PreTrainedTokenizerBase
    train: list[LabelledBatch] | None
    validation: list[LabelledBatch] | None
    test: list[LabelledBatch] | None
    soft: list[torch.Tensor] | None  # its logits on each training batch
    hidden_train: TeacherTargets
    hidden_validation: TeacherTargets
    test_accuracy: float | None
    test_path: str | None  # the labelled file tested on (``--test``); None: the data's test split

    @property
    def test_source(self) -> str:
        texts = sum(len(batch[2]) for batch in self.test) if self.test else 0
        return (f"{self.test_path} ({texts} texts not in the training data)" if self.test_path
                else f"the data's test split ({texts} texts)")


@dataclass(frozen=True)
class FinalResult:
    trained: Trained
    baselines: dict[str, Trained]  # hand-designed students at the winner's latency, by family (``--baselines``)
    rivals: dict[str, Trained]  # per family whose baseline is faster than the winner: the searched student facing it
    teacher_parameters: int
    teacher_accuracy: float | None
    test_source: str  # what the test accuracies were measured on
    latency: Timing | None  # student, baselines and teacher; None when the profile's backend cannot run here
    not_measured: str  # why latency was not measured, else ""
    seconds: float

    @property
    def student_ms(self) -> LatencyStats | None:
        return self.latency.rows["student"].measured if self.latency else None

    @property
    def teacher_ms(self) -> LatencyStats | None:
        return self.latency.rows["teacher"].measured if self.latency else None


BASELINE_FAMILIES = {
    "fewer layers": "the teacher's width, fewer layers (DistilBERT-style)",
    "narrower": "the teacher's depth, a smaller width (TinyBERT/MiniLM-style)",
}


def baseline_candidates(winner: Candidate, teacher: Candidate, priced: dict[Candidate, float]) -> dict[str, Candidate]:
    """Per family, the member of the space whose predicted latency is closest to the winner's (on a tie, the one
    with more parameters): hand-made students of equal latency, the comparison KD-NAS claims to win."""
    families = {
        "fewer layers": [c for c in priced if (c.hidden, c.heads, c.ffn) == (teacher.hidden, teacher.heads, teacher.ffn)
                         and c.layers < teacher.layers],
        "narrower": [c for c in priced if c.layers == teacher.layers and c.hidden < teacher.hidden],
    }
    picked = {}
    for family, members in families.items():
        if not members:
            raise LatlabError(f"--baselines: the space has no {BASELINE_FAMILIES[family]} student of teacher "
                              f"{teacher.name}; search a space that holds the teacher's shape")
        picked[family] = min(members, key=lambda c: (abs(priced[c] - priced[winner]), -c.hidden * c.ffn, -c.heads))
    return picked


RIVAL_PREFIX = "searched, no slower than "  # final.json's model name of a rival (``rival_candidates``)


def rival_name(family: str) -> str:
    return RIVAL_PREFIX + family


def rival_candidates(records: list[Record], winner: Candidate, baselines: dict[str, Candidate],
                     priced: dict[Candidate, float]) -> dict[str, Candidate]:
    """Per baseline predicted faster than the winner, the searched candidate that scored best on the proxy among
    those predicted no slower than that baseline: a comparison at equal or lower latency even where a family's
    nearest member is faster than the winner (one layer is the coarsest step there is). Where no such candidate
    was searched, the family has none and the winner faces the baseline alone."""
    rivals = {}
    for family, baseline in baselines.items():
        if priced[baseline] >= priced[winner]:
            continue
        fitting = [r for r in records if r.predicted_ms <= priced[baseline]]
        if fitting:
            rivals[family] = max(fitting, key=lambda r: (r.quality, -r.predicted_ms)).candidate
    return rivals


def save_model(model: BertForSequenceClassification, tokenizer: object, folder: Path) -> None:
    """Write into a temporary sibling, then rename: a crash never leaves a half-written model folder."""
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@torch.no_grad()
def logits(model: BertForSequenceClassification, batch: LabelledBatch, device: str) -> torch.Tensor:
    ids, mask, _ = batch
    return model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.cpu()


def prepare_teacher(settings: EvalSettings, config: FinalConfig, seq_len: int, folder: Path, say: Say,
                    tuned: Path | None = None, test_path: str | None = None) -> Teacher:
    """The teacher fine-tuned on the task, read back from ``folder/teacher`` when an earlier step left it there,
    or copied from ``tuned`` (another run's ``teacher/`` with the same teacher, data and recipe). Every model is
    tested on the data's test split, or on ``test_path``'s texts that the data lacks (``held_out_test``)."""
    device = settings.device
    _, tokenizer = load_teacher(settings.teacher_dir)
    data = load_data(settings.data_path)
    splits = split(data)
    labels = max(len(splits.train.label_names), 1)
    labelled = splits.train.labels is not None
    tested = held_out_test(test_path, data) if test_path else splits.test
    train, validation, test = ((batches(tokenizer, part, seq_len, settings.batch_size)
                                for part in (splits.train, splits.validation, tested)) if labelled
                               else (None, None, None))
    saved = folder / TEACHER_DIR
    found = next((f for f in (saved, tuned) if f is not None and (f / "config.json").is_file()), None)
    if found is not None:
        model = load_classifier(found, "fine-tuned teacher", labels)
        say(f"teacher: the fine-tuned one in {found}")
        if found != saved:
            save_model(model, tokenizer, saved)
    else:
        model = load_classifier(Path(settings.teacher_dir), "teacher", labels)
        if labelled:
            say(f"teacher: fine-tuning on {len(splits.train.texts)} texts at seq_len {seq_len} "
                f"(at most {config.teacher.max_epochs:g} epochs)")
            train_task(model, train, validation, config.teacher, device=device,
                       on_epoch=lambda epoch, score: say(f"  teacher epoch {epoch}: validation {score:.1%}"))
        save_model(model.cpu(), tokenizer, saved)
    model.to(device).eval()
    text = lambda data: text_batches(tokenizer, data.texts, seq_len, settings.batch_size)  # noqa: E731
    hidden_train = TeacherTargets.compute(model.bert, text(splits.train))
    hidden_validation = TeacherTargets.compute(model.bert, text(splits.validation), variance_from=hidden_train)
    return Teacher(model, tokenizer, train, validation, test,
                   [logits(model, b, device) for b in train] if labelled else None, hidden_train, hidden_validation,
                   accuracy(model, test, device) if labelled else None, test_path)


def train_student(candidate: Candidate, teacher: Teacher, settings: EvalSettings, config: FinalConfig,
                  say: Say) -> Trained:
    """The final recipe for one candidate, once per seed; the model kept is the best-validated seed's."""
    device, base = settings.device, config.distill.seed
    steps = max(1, math.ceil(config.epochs * len(teacher.hidden_train.batches)))
    labels = teacher.model.config.num_labels
    results: list[SeedResult] = []
    kept, kept_score = None, -1.0
    for seed in range(base, base + config.seeds):
        student = build_student(candidate, teacher.model.bert, labels, settings.init, seed=seed)
        if settings.init == "sliced":
            slice_from(student.classifier, teacher.model.classifier, {})
        projections = distill(student.bert, teacher.model.config.num_hidden_layers, teacher.model.config.hidden_size,
                              lambda: teacher.hidden_train, teacher.hidden_train.variances,
                              replace(config.distill, mapping=settings.distill.mapping, steps=steps, seed=seed),
                              device, sliced=settings.init == "sliced")
        loss = held_out_loss(student.bert, projections, teacher.hidden_validation, device)
        task = test = None
        if teacher.train is not None:
            task = train_task(student, teacher.train, teacher.validation, replace(config.student, seed=seed),
                              teacher.soft, device)
            test = accuracy(student, teacher.test, device)
        results.append(SeedResult(seed, loss, task, test))
        score = task.validation_accuracy if task else -loss
        say(f"  {candidate.name} seed {seed}: hidden-state loss {loss:.3f}"
            + (f", {task.best_epoch}/{len(task.validation)} epochs kept, validation {task.validation_accuracy:.1%}, "
               f"test {test:.1%}" if task else ""))
        if kept is None or score > kept_score:
            kept, kept_score = student, score
    return Trained(candidate, tuple(results), kept.cpu().eval(), steps, count_parameters(kept.bert))


SEEDS_FILE = "seeds.json"  # beside the kept model in trained/<candidate>/; written last, so it marks a whole folder


def save_trained(trained: Trained, tokenizer: PreTrainedTokenizerBase, folder: Path, test_path: str | None) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    save_model(trained.model, tokenizer, folder)
    seeds = [{"seed": s.seed, "held_out_loss": s.held_out_loss, "test_accuracy": s.test_accuracy,
              "task": None if s.task is None else {"steps": s.task.steps, "validation": list(s.task.validation),
                                                   "best_epoch": s.task.best_epoch}} for s in trained.seeds]
    write_json(folder / SEEDS_FILE, {"candidate": trained.candidate.name, "distill_steps": trained.distill_steps,
                                     "parameters": trained.parameters, "test": test_path, "seeds": seeds})


def load_trained(candidate: Candidate, seeds: int, labels: int, folder: Path, test_path: str | None) -> Trained | None:
    """What an earlier run of this folder trained for ``candidate``, or None when it has not finished one or
    tested it on other texts (only the kept seed's model is saved, so the others cannot be tested again). The
    run folder's run.json pins the recipe, so a finished one is the same result."""
    path = folder / SEEDS_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or data.get("candidate") != candidate.name:
            raise Invalid(f"not the record of {candidate.name}")
        if data.get("test") != test_path:
            return None
        results = field(data, "seeds", (list,), "a list")
        if len(results) != seeds:
            raise Invalid(f"{len(results)} seeds, the recipe trains {seeds}")
        parsed = []
        for item in results:
            if not isinstance(item, dict):
                raise Invalid("a seed is not a JSON object")
            task = item.get("task")
            if task is not None:
                validation = field(task, "validation", (list,), "a list of accuracies", "task.")
                task = TaskOutcome(count(task, "steps", 0, "task."), tuple(float(v) for v in validation),
                                   count(task, "best_epoch", 1, "task."))
            parsed.append(SeedResult(count(item, "seed", 0), real(item, "held_out_loss", finite=True), task,
                                     real(item, "test_accuracy", optional=True)))
        steps, parameters = count(data, "distill_steps", 1), count(data, "parameters", 1)
    except (OSError, ValueError, TypeError, Invalid) as exc:
        raise LatlabError(f"{path}: cannot read it back ({exc}); delete {folder} to train {candidate.name} "
                          "again") from None
    return Trained(candidate, tuple(parsed), load_classifier(folder, f"trained {candidate.name}", labels), steps,
                   parameters)


def trained_once(candidate: Candidate, teacher: Teacher, settings: EvalSettings, config: FinalConfig, say: Say,
                 out: Path) -> Trained:
    """``train_student``, or its result read back from the run folder when an earlier run got that far."""
    folder = out / TRAINED_DIR / candidate.name
    found = load_trained(candidate, config.seeds, teacher.model.config.num_labels, folder, teacher.test_path)
    if found is not None:
        say(f"  {candidate.name}: trained by an earlier run, read back from {folder}")
        return found
    trained = train_student(candidate, teacher, settings, config, say)
    save_trained(trained, teacher.tokenizer, folder, teacher.test_path)
    return trained


def run_final(candidate: Candidate, settings: EvalSettings, config: FinalConfig, profile: Profile,
              space: SearchSpace, out: Path, baselines: dict[str, Candidate] | None = None,
              say: Say = lambda _: None, tuned_teacher: Path | None = None,
              rivals: dict[str, Candidate] | None = None, test_path: str | None = None) -> FinalResult:
    """``space`` is the one the search priced: every model trains, is exported and is timed at its deployment
    shape. ``baselines`` and ``rivals`` (see ``rival_candidates``) go through the same recipe and are timed in the
    same rounds as the student. ``test_path``: see ``prepare_teacher``."""
    started = time.perf_counter()
    teacher = prepare_teacher(settings, config, config.seq_len or space.seq_len[-1], out, say, tuned_teacher,
                              test_path)
    trained = trained_once(candidate, teacher, settings, config, say, out)
    save_model(trained.model, teacher.tokenizer, out / STUDENT_DIR)
    example = (example_ids(candidate.architecture(space)),)
    write_bytes(out / ONNX_FILE, export_onnx(LogitsOnly(trained.model).eval(), example))
    others = {}
    for family, baseline in (baselines or {}).items():
        say(f"baseline ({BASELINE_FAMILIES[family]}): {baseline.name}")
        others[family] = trained_once(baseline, teacher, settings, config, say, out)
    matched = {}
    for family, rival in (rivals or {}).items():  # two families may share a rival: the second reads it back
        say(f"{rival_name(family)} (the searched student facing it): {rival.name}")
        matched[family] = trained_once(rival, teacher, settings, config, say, out)
    classifier = teacher.model.cpu().eval()
    models = {"student": trained.model, **{family: t.model for family, t in others.items()},
              **{rival_name(family): t.model for family, t in matched.items()}, "teacher": classifier}
    try:
        latency = time_models(profile, models, space, config.protocol)
        reason = ""
    except LatlabError as exc:
        latency, reason = None, str(exc)
    return FinalResult(trained, others, matched, count_parameters(classifier.bert), teacher.test_accuracy,
                       teacher.test_source, latency, reason,
                       time.perf_counter() - started)
