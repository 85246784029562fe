"""Real latency of finished Hugging Face models on a profile's backend and settings, next to its prediction.

This machine drifts by 10% and more within minutes, so the profile's own layer blocks are re-timed in the same
interleaved rounds: how much slower or faster they run now than when profiled says how much of a gap between
prediction and measurement is the machine's state rather than the profile.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel

from kdnas.candidate import Candidate
from latlab.architecture import Architecture
from latlab.blocks import build_block
from latlab.errors import LatlabError
from latlab.predict import LatencyTable, predict_ms
from latlab.profile import Profile
from latlab.profiling import Report, prepare_all, quiet
from latlab.protocol import Protocol, measure
from latlab.registry import load_backend
from latlab.space import SearchSpace
from latlab.stats import LatencyStats
from latlab.validate import drift_corrected as corrected, drift_pct, reference_blocks


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
    drift_pct: float  # reference blocks now vs when profiled: + means the machine runs slower now

    def error_pct(self, name: str, drift_corrected: bool = False) -> float | None:
        """(predicted - measured) / measured; corrected, the measurement is first divided by the machine's drift."""
        row = self.rows[name]
        if row.predicted_ms is None:
            return None
        measured = corrected(row.measured.median_ms, self.drift_pct) if drift_corrected else row.measured.median_ms
        return (row.predicted_ms - measured) / measured * 100


def architecture_of(model: PreTrainedModel, space: SearchSpace) -> Architecture:
    """The model as the profile prices it: at the space's deployment shape, labels and vocabulary."""
    c = model.config
    return Candidate(c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.intermediate_size).architecture(space)


def predicted_or_none(arch: Architecture, table: LatencyTable) -> float | None:
    try:
        return predict_ms(arch, table)
    except LatlabError:
        return None


def time_models(profile: Profile, models: dict[str, PreTrainedModel], protocol: Protocol | None = None,
                report: Report = quiet) -> Timing:
    """Raises ``LatlabError`` with the reason when the profile's backend or settings cannot run here."""
    backend = load_backend(profile.backend)
    backend.check(profile.settings)
    table = LatencyTable.from_profile(profile)
    archs = {name: architecture_of(model, profile.space) for name, model in models.items()}
    references = [b for b in reference_blocks(list(archs.values())) if b.key in profile.entries]
    torch.manual_seed(0)
    items: dict[str, tuple] = {}
    for name, model in models.items():
        ids = torch.randint(0, model.config.vocab_size, (archs[name].batch, archs[name].seq_len), dtype=torch.long)
        items[name] = (LogitsOnly(model.cpu()).eval(), (ids,))
    items.update({block.key: build_block(block) for block in references})
    runners = prepare_all(backend, items, profile.settings, report)
    results, unstable = measure(runners, protocol or profile.protocol,
                                on_round=lambda done, total, _: report("measure", done, total))
    rows = {name: Timed(predicted_or_none(archs[name], table), LatencyStats.from_rounds(results[name]),
                        name in unstable) for name in models}
    return Timing(rows, drift_pct(results, profile, references))
