"""The search loop: price every candidate from the profile, then per episode let the controller propose, distill
each proposal on the proxy set through an executor (``kdnas.executors``: in this process, a process pool or Ray),
and log one line per candidate to the run folder's ``search.jsonl``.

Proposals are a pure function of earlier episodes, so ``--resume`` recomputes the interrupted episode's proposals
and skips the finished ones.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kdnas.candidate import Candidate, all_candidates
from kdnas.controller import ControllerConfig, propose
from kdnas.evaluate import CandidateResult, EvalSettings, evaluate
from kdnas.executors import Done, Executor
from kdnas.final import FinalConfig
from kdnas.reward import RewardConfig, reward, within_budget
from kdnas.run_folder import LOG_FILE, Record, append
from latlab.architecture import Architecture
from latlab.errors import LatlabError
from latlab.predict import LatencyTable, predict_ms
from latlab.space import SearchSpace


@dataclass(frozen=True)
class SearchPlan:
    profile_path: str
    space: SearchSpace
    episodes: int
    candidates: int  # per episode
    controller: ControllerConfig
    reward: RewardConfig
    evaluation: EvalSettings
    final: FinalConfig

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), default=str))

    def resume_key(self) -> dict[str, Any]:
        """Everything that changes results; episodes may grow on resume."""
        return {k: v for k, v in self.to_json().items() if k != "episodes"}


def price(space: SearchSpace, table: LatencyTable, source: str) -> dict[Candidate, float]:
    """Predicted ms of every candidate; a block the profile lacks means it does not cover the space."""
    priced = {}
    for candidate in all_candidates(space):
        try:
            priced[candidate] = predict_ms(candidate.architecture(space), table)
        except LatlabError as exc:
            raise LatlabError(f"profile {source} does not cover space {space.name!r} (candidate {candidate.name}: "
                              f"{exc}); profile that space or pass a --space inside the profile's") from None
    return priced


def target_ms(teacher_ms: float | None, teacher: Architecture, budget_ms: float | None, ratio: float,
              source: str) -> float:
    """The reward's latency target: the budget when given, else ``ratio`` x the teacher's predicted latency
    (``teacher_ms``, None when the profile cannot price the teacher)."""
    if budget_ms is not None:
        return budget_ms
    if teacher_ms is None:
        raise LatlabError(f"profile {source} cannot price the teacher (hidden {teacher.hidden}, {teacher.layers} "
                          "layers), so --target-ratio has no reference; pass --budget-ms instead")
    return ratio * teacher_ms


def allowed(priced: dict[Candidate, float], config: RewardConfig) -> list[Candidate]:
    """Candidates under the hard budget: the others are rejected before any training."""
    keep = [c for c, ms in priced.items() if within_budget(ms, config)]
    if not keep:
        raise LatlabError(f"--budget-ms {config.budget_ms} is below the fastest candidate's predicted "
                          f"{min(priced.values()):.3f} ms; raise the budget or use a faster profile")
    return keep


Event = Callable[[str, dict[str, Any]], None]  # ("episode" | "candidate", details) for progress display


def run_search(plan: SearchPlan, priced: dict[Candidate, float], out: Path, records: list[Record],
               executor: Executor, on_event: Event = lambda kind, details: None) -> list[Record]:
    """Episodes of propose -> evaluate -> reward; ``records`` are the finished ones of a resumed run.

    An episode's candidates are independent, so the executor may run them in parallel; each record is logged as
    soon as it finishes, in its place in proposal order, so a crash loses nothing finished and the log is the
    same whichever executor ran. A candidate that fails every attempt stops the search once the rest of its
    episode is logged.
    """
    records = list(records)
    candidates = allowed(priced, plan.reward)
    for episode in range(1, plan.episodes + 1):
        history = [(r.candidate, r.reward) for r in records if r.episode < episode]
        proposals = propose(plan.space, candidates, history, plan.candidates, episode, plan.controller)
        done = {r.candidate for r in records if r.episode == episode}
        on_event("episode", {"episode": episode, "episodes": plan.episodes, "proposals": len(proposals),
                             "done": len(done)})
        todo = [(index, candidate) for index, candidate in enumerate(proposals) if candidate not in done]
        failed: list[tuple[int, Candidate, Done[CandidateResult]]] = []
        for outcome in executor.completed(evaluate, [(candidate, plan.evaluation) for _, candidate in todo]):
            index, candidate = todo[outcome.position]
            result = outcome.result
            if result is None:
                failed.append((index, candidate, outcome))
                continue
            predicted = priced[candidate]
            record = Record(episode, index, candidate, candidate.architecture(plan.space).to_json(), result.parameters,
                            predicted, result.proxy_loss, result.quality, result.accuracy,
                            reward(result.quality, predicted, plan.reward), result.seconds)
            records = append(out, records, record)
            on_event("candidate", {"record": record, "of": len(proposals)})
        if failed:
            index, candidate, outcome = min(failed, key=lambda f: f[0])
            raise LatlabError(f"candidate {candidate.name} (episode {episode}, {index + 1}/{len(proposals)}) failed "
                              f"{outcome.attempts} time(s) (last: {outcome.error}); {len(records)} finished "
                              f"candidate(s) are in {out / LOG_FILE}: fix the cause and pass --resume")
    return records


def best(records: list[Record]) -> Record:
    return max(records, key=lambda r: (r.reward, -r.predicted_ms))
