"""The labelled task: train a sequence classifier on the labels, then count correct answers.

Two ways to train: ``finetune`` runs a fixed number of steps (the proxy's labelled objective, where every
candidate must cost the same), and ``train_task`` runs epochs until the validation accuracy stops improving and
keeps the best epoch's weights (the final step, where the student should converge). ``train_task`` can also pull
the student's logits toward a teacher's soft labels (Hinton et al.'s distillation loss).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from kdnas.data import TextData, tokenize
from latlab.errors import LatlabError

LabelledBatch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (input_ids, attention_mask, labels)


@dataclass(frozen=True)
class FinetuneConfig:
    steps: int = 60
    lr: float = 1e-4
    seed: int = 0


def batches(tokenizer: PreTrainedTokenizerBase, data: TextData, seq_len: int, batch_size: int) -> list[LabelledBatch]:
    if data.labels is None:
        raise LatlabError("the labelled task needs a 'label' column in the data file")
    ids, mask = tokenize(tokenizer, data.texts, seq_len)
    labels = torch.tensor(data.labels)
    return [(ids[i:i + batch_size], mask[i:i + batch_size], labels[i:i + batch_size])
            for i in range(0, len(labels), batch_size)]


@dataclass(frozen=True)
class TaskConfig:
    max_epochs: float = 6.0  # passes over the training split at most; below 1, that share of one pass
    patience: int = 1  # stop after this many epochs (at least 1) without a better validation accuracy
    lr: float = 1e-4
    soft_weight: float = 0.0  # share of the loss taken by the teacher's soft labels (0: the labels alone)
    temperature: float = 2.0  # softens both sides' logits in the soft-label term
    seed: int = 0


@dataclass(frozen=True)
class TaskOutcome:
    steps: int
    validation: tuple[float, ...]  # accuracy after each epoch
    best_epoch: int  # 1-based: whose weights the model keeps

    @property
    def validation_accuracy(self) -> float:
        return self.validation[self.best_epoch - 1]


def task_loss(logits: torch.Tensor, labels: torch.Tensor, soft: torch.Tensor | None, config: TaskConfig) -> torch.Tensor:
    """Cross-entropy on the labels, mixed with KL to the teacher's tempered logits (scaled by T^2 so the two
    terms' gradients stay comparable whatever the temperature)."""
    hard = nn.functional.cross_entropy(logits, labels)
    if soft is None or config.soft_weight == 0:
        return hard
    t = config.temperature
    kl = nn.functional.kl_div(nn.functional.log_softmax(logits / t, dim=-1), nn.functional.softmax(soft / t, dim=-1),
                              reduction="batchmean") * t * t
    return (1 - config.soft_weight) * hard + config.soft_weight * kl


def step(model: nn.Module, optimizer: torch.optim.Optimizer, batch: LabelledBatch,
         loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], device: str) -> None:
    ids, mask, labels = (t.to(device) for t in batch)
    value = loss(model(input_ids=ids, attention_mask=mask).logits, labels)
    optimizer.zero_grad(set_to_none=True)
    value.backward()
    optimizer.step()


def optimizer_for(model: nn.Module, lr: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)


def finetune(model: nn.Module, train: list[LabelledBatch], config: FinetuneConfig, device: str = "cpu") -> None:
    """Cross-entropy on the labels, AdamW, constant learning rate, cycling over ``train`` for ``config.steps``."""
    torch.manual_seed(config.seed)
    model.to(device).train()
    optimizer = optimizer_for(model, config.lr)
    for i in range(config.steps):
        step(model, optimizer, train[i % len(train)], nn.functional.cross_entropy, device)


def train_task(model: nn.Module, train: list[LabelledBatch], validation: list[LabelledBatch], config: TaskConfig,
               soft: list[torch.Tensor] | None = None, device: str = "cpu",
               on_epoch: Callable[[int, float], None] = lambda epoch, score: None) -> TaskOutcome:
    """Shuffled epochs (seeded) until ``config.patience`` epochs bring no better validation accuracy; the model
    ends with its best epoch's weights. ``soft[i]`` holds the teacher's logits for ``train[i]``; ``on_epoch``
    hears each epoch's validation accuracy."""
    torch.manual_seed(config.seed)
    order = torch.Generator().manual_seed(config.seed)
    model.to(device).train()
    optimizer = optimizer_for(model, config.lr)
    total = max(1, math.ceil(config.max_epochs * len(train)))
    epoch_steps = min(len(train), total)
    scores: list[float] = []
    best_state, best_epoch, done = None, 0, 0
    while done < total and len(scores) - best_epoch < config.patience:
        for i in torch.randperm(len(train), generator=order)[:min(epoch_steps, total - done)].tolist():
            target = None if soft is None else soft[i].to(device)
            step(model, optimizer, train[i], lambda logits, labels: task_loss(logits, labels, target, config), device)
        done += min(epoch_steps, total - done)
        scores.append(accuracy(model, validation, device))
        on_epoch(len(scores), scores[-1])
        model.train()
        if best_state is None or scores[-1] > scores[best_epoch - 1]:
            best_state, best_epoch = copy.deepcopy(model.state_dict()), len(scores)
    model.load_state_dict(best_state)
    model.eval()
    return TaskOutcome(done, tuple(scores), best_epoch)


@torch.no_grad()
def accuracy(model: nn.Module, test: list[LabelledBatch], device: str = "cpu") -> float:
    model.to(device).eval()
    correct = total = 0
    for ids, mask, labels in test:
        predicted = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.argmax(dim=-1)
        correct += int((predicted.cpu() == labels).sum())
        total += len(labels)
    return correct / total
