"""Multi-layer hidden-state distillation (KD-NAS): each mapped student hidden state goes through its own learned
linear projection to the teacher's width and is pulled toward the teacher's hidden state by MSE.

Each pair's MSE is divided by the variance of that teacher hidden state, so every pair weighs the same and the
loss reads as 1 - R^2: 0 is a perfect copy, 1 is no better than predicting the teacher's mean vector. Padding
tokens do not count.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from kdnas.mapping import layer_map

Batch = tuple[torch.Tensor, torch.Tensor]  # (input_ids, attention_mask)
States = tuple[torch.Tensor, ...]  # hidden states, embeddings first: (batch, seq, width) each


@dataclass(frozen=True)
class DistillConfig:
    mapping: str = "uniform+last"
    steps: int = 30
    lr: float = 2e-3  # measured against 5e-4 on the proxy set, see README.kdnas.md
    freeze_word_embeddings: bool = True  # the (sliced) vocabulary table is most of a small student; see README
    seed: int = 0


@torch.no_grad()
def teacher_states(teacher: nn.Module, batch: Batch) -> States:
    """On the teacher's device; the hidden states come back on the CPU."""
    device = next(teacher.parameters()).device
    ids, mask = (t.to(device) for t in batch)
    teacher.eval()
    return tuple(h.cpu() for h in teacher(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states)


def masked_variance(states: list[torch.Tensor], masks: list[torch.Tensor]) -> float:
    """Per-dimension variance over real tokens, averaged over dimensions: the loss normaliser of one layer."""
    tokens = torch.cat([s[m.bool()] for s, m in zip(states, masks)]).double()
    return float(tokens.var(dim=0).mean())


@dataclass
class TeacherTargets:
    """The teacher's hidden states for fixed batches (kept in fp16), and each hidden state's variance."""

    batches: list[Batch]
    states: list[States]
    variances: tuple[float, ...]

    @classmethod
    def compute(cls, teacher: nn.Module, batches: list[Batch], variance_from: TeacherTargets | None = None) -> TeacherTargets:
        """``variance_from`` reuses the training batches' normalisers, so held-out losses are on the same scale."""
        states = [teacher_states(teacher, b) for b in batches]
        if variance_from is not None:
            variances = variance_from.variances
        else:
            masks = [m for _, m in batches]
            variances = tuple(masked_variance([s[i] for s in states], masks) for i in range(len(states[0])))
        return cls(batches, [tuple(h.half() for h in s) for s in states], variances)

    def __iter__(self) -> Iterator[tuple[Batch, States]]:
        """Stored (fp16) states: ``hidden_loss`` converts only the layers its pairs read."""
        return zip(self.batches, self.states)


class Projections(nn.Module):
    """One linear map to the teacher's width per (student, teacher) pair.

    They start at zero, i.e. at the teacher's-mean baseline (loss ~1): a random projection would start far
    above it and spend the short proxy budget undoing its own noise. A student sliced from the teacher holds
    the teacher's leading dimensions, so its projections start as the identity on those dimensions instead.
    """

    def __init__(self, pairs: tuple[tuple[int, int], ...], student_width: int, teacher_width: int,
                 sliced: bool = False) -> None:
        super().__init__()
        self.pairs = pairs
        self.maps = nn.ModuleList(nn.Linear(student_width, teacher_width) for _ in pairs)
        with torch.no_grad():
            for linear in self.maps:
                linear.weight.zero_()
                linear.bias.zero_()
                if sliced:
                    shared = min(student_width, teacher_width)
                    linear.weight[:shared, :shared] = torch.eye(shared)


SCORES = ("all", "layers", "last")  # which pairs a held-out score averages: every one, all but the embeddings, the last


def scored(pairs: tuple[tuple[int, int], ...], score: str) -> list[int]:
    """Positions in ``pairs`` that a held-out ``score`` averages."""
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r}; choose one of {', '.join(SCORES)}")
    if score == "last":
        return [len(pairs) - 1]
    return [i for i, (s, _) in enumerate(pairs) if score == "all" or s > 0]


def pair_losses(student: States, teacher: States, mask: torch.Tensor, projections: Projections,
                variances: tuple[float, ...]) -> torch.Tensor:
    """Per pair, masked MSE(projected student, teacher) / teacher variance.

    Teacher states may be stored in another precision or device: only the mapped ones are converted.
    """
    weight = mask.unsqueeze(-1).to(student[0].dtype)
    tokens = weight.sum()
    losses = []
    for (s, t), project in zip(projections.pairs, projections.maps):
        target = teacher[t].to(student[s].device, student[s].dtype)
        error = (project(student[s]) - target).pow(2).mean(dim=-1, keepdim=True)
        losses.append((error * weight).sum() / tokens / variances[t])
    return torch.stack(losses)


def hidden_loss(student: States, teacher: States, mask: torch.Tensor, projections: Projections,
                variances: tuple[float, ...]) -> torch.Tensor:
    """What distillation minimises: the mean over pairs."""
    return pair_losses(student, teacher, mask, projections, variances).mean()


def student_states(student: nn.Module, batch: Batch) -> States:
    ids, mask = batch
    return student(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states


def distill(student: nn.Module, teacher_layers: int, teacher_width: int, train: Callable[[], Iterable[tuple[Batch, States]]],
            variances: tuple[float, ...], config: DistillConfig, device: str = "cpu", sliced: bool = False) -> Projections:
    """Train ``student`` (a ``BertModel``) and its projections for ``config.steps`` steps.

    ``train()`` returns an iterable of (batch, teacher states); it is cycled when shorter than the steps.
    """
    torch.manual_seed(config.seed)
    pairs = layer_map(student.config.num_hidden_layers, teacher_layers, config.mapping)
    projections = Projections(pairs, student.config.hidden_size, teacher_width, sliced).to(device)
    student.to(device).train()
    student.embeddings.word_embeddings.weight.requires_grad_(not config.freeze_word_embeddings)
    parameters = [p for p in itertools.chain(student.parameters(), projections.parameters()) if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=0.01)
    step = 0
    while step < config.steps:
        for (ids, mask), targets in train():
            batch = (ids.to(device), mask.to(device))
            loss = hidden_loss(student_states(student, batch), targets, batch[1], projections, variances)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step >= config.steps:
                break
    student.embeddings.word_embeddings.weight.requires_grad_(True)
    return projections


@torch.no_grad()
def held_out_loss(student: nn.Module, projections: Projections, targets: TeacherTargets, device: str = "cpu",
                  score: str = "all") -> float:
    """The normalised distillation loss on data the student never trained on, token-weighted over batches,
    averaged over the pairs ``score`` names."""
    student.eval()
    keep = scored(projections.pairs, score)
    total, tokens = 0.0, 0.0
    for (ids, mask), states in targets:
        batch = (ids.to(device), mask.to(device))
        count = float(mask.sum())
        losses = pair_losses(student_states(student, batch), states, batch[1], projections, targets.variances)
        total += float(losses[keep].mean()) * count
        tokens += count
    return total / tokens
