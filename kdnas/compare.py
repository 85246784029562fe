"""``kdnas compare``: is the controller worth it? Best reward per controller over run folders (seeds).

Also the mean reward of the candidates proposed after the first episode, once the controller has rewards to
learn from: a controller can propose better candidates on average without finding a better best one.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from kdnas.run_folder import read_run
from latlab.errors import LatlabError


@dataclass(frozen=True)
class RunSummary:
    folder: Path
    controller: str
    candidates: int
    best_reward: float
    later_mean: float  # mean reward after episode 1; nan when the run has none yet


def summarise(folder: Path) -> RunSummary:
    run = read_run(folder)
    if not run.records:
        raise LatlabError(f"{folder}: no candidate has finished yet; compare runs that have distilled some")
    later = [r.reward for r in run.records if r.episode > 1] or [float("nan")]
    return RunSummary(folder, run.controller, len(run.records), max(r.reward for r in run.records),
                      statistics.mean(later))


def by_controller(summaries: Iterable[RunSummary]) -> dict[str, list[RunSummary]]:
    """Summaries grouped by controller, controllers in name order."""
    groups: dict[str, list[RunSummary]] = {}
    for summary in summaries:
        groups.setdefault(summary.controller, []).append(summary)
    return dict(sorted(groups.items()))
