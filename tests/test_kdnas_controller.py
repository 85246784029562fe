"""The controller: the LSTM predictor learns to rank a toy reward; proposals are fresh, distinct and repeatable."""

import random

from scipy.stats import spearmanr

from kdnas.candidate import Candidate, all_candidates, mutate, neighbours
from kdnas.controller import ControllerConfig, fit, propose
from latlab.space import SearchSpace

SPACE = SearchSpace("toy", layers=(1, 2, 3, 4, 5, 6), hidden=(128, 192, 256, 384), heads=(2, 4, 8, 12),
                    ffn=(256, 512, 1024, 1536), seq_len=(128,), batch=(1,), labels=5)


def toy_reward(c: Candidate) -> float:
    """Quality grows with width and depth, latency cost with everything: an interior optimum."""
    quality = 1 - 1 / (1 + c.hidden / 128 + c.layers / 2 + c.ffn / 1024)
    cost = c.layers * c.hidden * (c.hidden + c.ffn) / 1e6
    return quality - 0.5 * cost


def test_lstm_predictor_learns_to_rank_unseen_candidates() -> None:
    candidates = all_candidates(SPACE)
    rng = random.Random(0)
    rng.shuffle(candidates)
    seen, unseen = candidates[:60], candidates[60:]
    predictor = fit(SPACE, [(c, toy_reward(c)) for c in seen], ControllerConfig(), seed=0)
    rho = spearmanr(predictor.score(unseen), [toy_reward(c) for c in unseen]).statistic
    assert rho > 0.8
    untrained = fit(SPACE, [(c, toy_reward(c)) for c in seen], ControllerConfig(fit_steps=0), seed=0)
    assert abs(spearmanr(untrained.score(unseen), [toy_reward(c) for c in unseen]).statistic) < rho


def run(kind: str, episodes: int = 3, count: int = 6, seed: int = 0) -> list[tuple[Candidate, float]]:
    config = ControllerConfig(kind=kind, seed=seed)
    history: list[tuple[Candidate, float]] = []
    allowed = all_candidates(SPACE)
    for episode in range(1, episodes + 1):
        history += [(c, toy_reward(c)) for c in propose(SPACE, allowed, history, count, episode, config)]
    return history


def test_proposals_are_new_distinct_allowed_and_repeatable() -> None:
    for kind in ("lstm", "random", "evolution"):
        history = run(kind)
        names = [c for c, _ in history]
        assert len(names) == len(set(names)) == 18
        assert run(kind) == history  # a pure function of (history, episode, seed): what --resume relies on
    allowed = all_candidates(SPACE)[:4]
    assert propose(SPACE, allowed, [(allowed[0], 1.0)], 6, 2, ControllerConfig()) == allowed[1:]


def test_lstm_proposes_better_candidates_than_random_once_it_has_data() -> None:
    """Episode 1 is random for both; afterwards the LSTM's picks must score higher on average, seed by seed."""
    for seed in range(3):
        later = {kind: [r for _, r in run(kind, seed=seed)[6:]] for kind in ("lstm", "random")}
        assert sum(later["lstm"]) > sum(later["random"])


def test_mutation_changes_one_field_and_keeps_heads_valid() -> None:
    rng = random.Random(1)
    parent = Candidate(3, 192, 12, 512)
    for _ in range(50):
        child = mutate(parent, SPACE, rng)
        assert child in neighbours(parent, SPACE)
        assert sum(getattr(child, f) != getattr(parent, f) for f in ("layers", "hidden", "heads", "ffn")) == 1
        assert child.hidden % child.heads == 0
