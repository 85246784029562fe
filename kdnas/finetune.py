"""The labelled task: fine-tune a sequence classifier for a fixed number of steps, then count correct answers.
Teacher and student go through exactly this, with the same settings, so their accuracies compare."""

from __future__ import annotations

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


def finetune(model: nn.Module, train: list[LabelledBatch], config: FinetuneConfig, device: str = "cpu") -> None:
    """Cross-entropy on the labels, AdamW, constant learning rate, cycling over ``train`` for ``config.steps``."""
    torch.manual_seed(config.seed)
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.01)
    for step in range(config.steps):
        ids, mask, labels = (t.to(device) for t in train[step % len(train)])
        loss = nn.functional.cross_entropy(model(input_ids=ids, attention_mask=mask).logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


@torch.no_grad()
def accuracy(model: nn.Module, test: list[LabelledBatch], device: str = "cpu") -> float:
    model.to(device).eval()
    correct = total = 0
    for ids, mask, labels in test:
        predicted = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.argmax(dim=-1)
        correct += int((predicted.cpu() == labels).sum())
        total += len(labels)
    return correct / total
