"""Real latency of finished Hugging Face models on a profile's backend and settings, next to its prediction.

This machine drifts by 10% and more within minutes, so the profile's own layer blocks are re-timed in the same
interleaved rounds (the measured models' own layer blocks): how much slower or faster they run now than when
profiled says how much of a gap between prediction and measurement is the machine's state, not the profile's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, PretrainedConfig, PreTrainedModel

from kdnas.candidate import Candidate
from kdnas.data import check_encoder, load_classifier
from kdnas.run_folder import STUDENT_DIR
from latlab.accuracy import error_pct
from latlab.architecture import Architecture
from latlab.drift import drift_corrected_ms, time_with_references
from latlab.errors import LatlabError
from latlab.machine import process_problems, profile_problems
from latlab.modules import example_ids
from latlab.predict import LatencyTable, predict_ms
from latlab.profile import Profile
from latlab.protocol import Protocol, Report, quiet
from latlab.registry import load_backend
from latlab.space import SearchSpace
from latlab.stats import LatencyStats


class LogitsOnly(nn.Module):
    """``input_ids -> logits``: the call a profile prices (no mask input; the model builds its own, as exported)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids).logits


@dataclass(frozen=True)
class Timed:
    predicted_ms: float | None  # None when the profile does not price this model
    measured: LatencyStats
    unstable: bool


@dataclass(frozen=True)
class Timing:
    """One interleaved measurement of several models on one profile's backend and settings."""

    rows: dict[str, Timed]
    drift_pct: float | None  # reference blocks now vs when profiled (+: slower now); None when none was timed
    foreign: tuple[str, ...] = ()  # how this machine differs from the profile's: then a gap is hardware, not drift

    def error_pct(self, name: str, drift_corrected: bool = False) -> float | None:
        """(predicted - measured) / measured; corrected, the measurement is first scaled back by the drift."""
        row = self.rows[name]
        if row.predicted_ms is None or (drift_corrected and (self.drift_pct is None or self.foreign)):
            return None
        measured = row.measured.median_ms
        if drift_corrected:
            measured = drift_corrected_ms(measured, self.drift_pct)
        return error_pct(row.predicted_ms, measured)


def priced_architecture(config: PretrainedConfig, space: SearchSpace, name: str) -> Architecture:
    """The model as ``space`` prices it (deployment shape, labels); refused when it cannot run at that shape or the
    profile priced other embeddings."""
    arch = Candidate(config.num_hidden_layers, config.hidden_size, config.num_attention_heads,
                     config.intermediate_size).architecture(space)
    if config.vocab_size != space.vocab:
        raise LatlabError(f"{name}: vocabulary {config.vocab_size} differs from space {space.name!r} vocab "
                          f"{space.vocab}: the profile priced other embeddings; use a space made for this model")
    if config.max_position_embeddings < arch.seq_len:
        raise LatlabError(f"{name}: {config.max_position_embeddings} positions, but space {space.name!r} prices "
                          f"seq_len {arch.seq_len}; use a space within the model's positions")
    return arch


def teacher_architecture(teacher_dir: str, space: SearchSpace) -> Architecture:
    return priced_architecture(AutoConfig.from_pretrained(teacher_dir, local_files_only=True), space,
                               f"teacher {teacher_dir}")


def model_folders(models: Iterable[str], teacher_dir: str | None) -> dict[str, Path]:
    """Each model named as given (unique, and the reader knows them): a kdnas run folder (its ``student/``) or a
    Hugging Face BERT model folder; the teacher, when given, as "teacher"."""
    folders = {}
    for model in models:
        folder = Path(model)
        student = folder / STUDENT_DIR
        folders[model] = check_encoder(student if student.is_dir() else folder, "model",
                                       "pass a kdnas run folder or a Hugging Face model folder")
    if teacher_dir is not None:
        folders["teacher"] = check_encoder(teacher_dir)
    return folders


def load_priceable(folders: dict[str, Path], profiles: Iterable[Profile]) -> dict[str, PreTrainedModel]:
    """The models, loaded; one that a profile cannot price is refused before any measuring starts."""
    loaded = {name: load_classifier(folder, "model") for name, folder in folders.items()}
    for profile in profiles:
        for name, model in loaded.items():
            priced_architecture(model.config, profile.space, name)
    return loaded


def predicted_or_none(arch: Architecture, table: LatencyTable) -> float | None:
    try:
        return predict_ms(arch, table)
    except LatlabError:
        return None


def time_models(profile: Profile, models: dict[str, PreTrainedModel], space: SearchSpace,
                protocol: Protocol | None = None, report: Report = quiet) -> Timing:
    """Each model at ``space``'s deployment shape. Raises ``LatlabError`` with the reason when the profile's
    backend or settings cannot run here."""
    backend = load_backend(profile.backend)
    backend.check(profile.settings)
    table = LatencyTable.from_profile(profile)
    archs = {name: priced_architecture(model.config, space, name) for name, model in models.items()}
    torch.manual_seed(0)
    items = {name: (LogitsOnly(model.cpu()).eval(), (example_ids(archs[name]),)) for name, model in models.items()}
    timed = time_with_references(profile, backend, items, list(archs.values()), protocol or profile.protocol, report)
    rows = {name: Timed(predicted_or_none(archs[name], table), timed.stats[name], name in timed.unstable)
            for name in models}
    return Timing(rows, timed.drift_pct, tuple(profile_problems(profile) + process_problems(profile, backend)))


def figure_rows(profile_path: str, profile: Profile, timing: Timing) -> list[dict[str, Any]]:
    """One row per model of a measurement, as ``kdnas measure --json`` writes it."""
    rows = []
    for name, row in timing.rows.items():
        error, corrected = timing.error_pct(name), timing.error_pct(name, drift_corrected=True)
        rows.append({"profile": profile_path, "backend": profile.backend, "model": name,
                     "predicted_ms": row.predicted_ms, "measured_median_ms": round(row.measured.median_ms, 4),
                     "measured_p90_ms": round(row.measured.p90_ms, 4), "unstable": row.unstable,
                     "reference_drift_pct": None if timing.drift_pct is None else round(timing.drift_pct, 2),
                     "error_pct": None if error is None else round(error, 2),
                     "drift_corrected_error_pct": None if corrected is None else round(corrected, 2)})
    return rows
