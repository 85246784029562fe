"""Which candidates to distill next. ``propose`` is a pure function of the history so far, the episode and the
seed, which is what lets ``--resume`` continue a search exactly where it stopped.

- ``lstm`` (KD-NAS): an LSTM reads the candidate's encoding (one token per field) and predicts its reward.
  Each episode it is trained afresh on every reward observed so far, scores a pool of unseen candidates,
  and the top ones plus an epsilon-greedy share of random pool members are distilled. The first episode,
  with nothing observed yet, is random.
- ``random``: uniform samples, the baseline at the same candidate budget.
- ``evolution``: one-field mutations of the best candidates so far (first episode random).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from torch import nn

from kdnas.candidate import FIELDS, Candidate, choices, encode, mutate
from latlab.space import SearchSpace

CONTROLLERS = ("lstm", "random", "evolution")
History = list[tuple[Candidate, float]]  # (candidate, observed reward), in evaluation order


@dataclass(frozen=True)
class ControllerConfig:
    kind: str = "lstm"
    pool_size: int = 100  # unseen candidates the predictor scores per episode
    epsilon: float = 0.3  # share of each episode's candidates drawn at random from the pool
    fit_steps: int = 300  # Adam steps on all observed rewards, from scratch each episode
    lr: float = 1e-2
    population: int = 4  # evolution: parents are the best this many
    seed: int = 0


class RewardPredictor(nn.Module):
    """Embeddings per field -> LSTM over the fields in order -> linear -> predicted (standardised) reward."""

    def __init__(self, space: SearchSpace, width: int = 32) -> None:
        super().__init__()
        self.space = space
        self.embeddings = nn.ModuleList(nn.Embedding(len(values), width) for values in choices(space).values())
        self.lstm = nn.LSTM(width, width, batch_first=True)
        self.out = nn.Linear(width, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # (batch, fields) -> (batch,)
        steps = torch.stack([table(tokens[:, i]) for i, table in enumerate(self.embeddings)], dim=1)
        _, (last, _) = self.lstm(steps)
        return self.out(last[-1]).squeeze(-1)

    def tokens(self, candidates: list[Candidate]) -> torch.Tensor:
        return torch.tensor([encode(c, self.space) for c in candidates], dtype=torch.long).reshape(-1, len(FIELDS))

    @torch.no_grad()
    def score(self, candidates: list[Candidate]) -> list[float]:
        return self(self.tokens(candidates)).tolist()


def fit(space: SearchSpace, history: History, config: ControllerConfig, seed: int) -> RewardPredictor:
    """A predictor trained from scratch by MSE on standardised rewards (only their order matters here)."""
    torch.manual_seed(seed)
    predictor = RewardPredictor(space)
    rewards = torch.tensor([r for _, r in history], dtype=torch.float32)
    target = (rewards - rewards.mean()) / (rewards.std() if len(rewards) > 1 and rewards.std() > 0 else 1.0)
    tokens = predictor.tokens([c for c, _ in history])
    optimizer = torch.optim.Adam(predictor.parameters(), lr=config.lr)
    for _ in range(config.fit_steps):
        loss = nn.functional.mse_loss(predictor(tokens), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return predictor.eval()


def propose(space: SearchSpace, allowed: list[Candidate], history: History, count: int, episode: int,
            config: ControllerConfig) -> list[Candidate]:
    """``count`` distinct candidates from ``allowed`` (within budget) that are not in ``history`` yet."""
    rng = random.Random(f"{config.seed}/{episode}")
    seen = {c for c, _ in history}
    unseen = [c for c in allowed if c not in seen]
    if len(unseen) <= count:
        return unseen
    if config.kind == "random" or not history:
        return rng.sample(unseen, count)
    if config.kind == "lstm":
        pool = rng.sample(unseen, min(max(config.pool_size, count), len(unseen)))
        predicted = fit(space, history, config, seed=rng.randrange(2**31)).score(pool)
        ranked = [c for _, c in sorted(zip(predicted, pool), key=lambda pair: -pair[0])]
        explore = min(round(config.epsilon * count), len(ranked) - count)
        greedy = ranked[:count - explore]
        return greedy + rng.sample(ranked[count - explore:], explore)
    if config.kind == "evolution":
        parents = [c for c, _ in sorted(history, key=lambda pair: -pair[1])[:config.population]]
        allowed_set, chosen = set(unseen), []
        for _ in range(20 * count):
            child = mutate(rng.choice(parents), space, rng)
            if child in allowed_set and child not in chosen:
                chosen.append(child)
            if len(chosen) == count:
                return chosen
        return chosen + rng.sample([c for c in unseen if c not in chosen], count - len(chosen))
    raise ValueError(f"unknown controller {config.kind!r}; choose one of {', '.join(CONTROLLERS)}")
