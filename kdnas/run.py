"""``kdnas search`` from options to report: check every input, lock the run folder, search, distill the winner,
write the report.

Every input is checked before the folder is created, so a refused run leaves nothing behind. The folder stays
locked (``latlab.lock``) until the run ends: a second search on it, resumed or not, is refused instead of training
the same candidates and rewriting the log under the first.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kdnas.controller import ControllerConfig
from kdnas.data import check_encoder, check_splits, default_teacher_dir, held_out_test, load_data, load_teacher
from kdnas.distill import DistillConfig
from kdnas.evaluate import EvalSettings
from kdnas.executors import make_executor
from kdnas.candidate import Candidate
from kdnas.final import FinalConfig, FinalResult, baseline_candidates, rival_candidates, run_final
from kdnas.measure import predicted_or_none, teacher_architecture
from kdnas.report import plot_pareto, report_markdown, write_report
from kdnas.reward import RewardConfig
from kdnas.run_folder import OUTPUTS, PLOT_FILE, Record, create, prepare
from kdnas.search import Event, SearchPlan, allowed, best, price, run_search, target_ms
from latlab.atomic import check_writable
from latlab.errors import LatlabError
from latlab.lock import locked
from latlab.machine import foreign_message, profile_problems
from latlab.outputs import check_outputs
from latlab.predict import LatencyTable
from latlab.profile import load_complete_profile
from latlab.protocol import Protocol
from latlab.registry import disturbances
from latlab.space import load_space

TARGET_RATIO = 0.18  # a 5.5x predicted speedup: 5x measured even where the profile errs by 10%
# --quick: the same pipeline at CI size (about 2 minutes on 2 cores).
QUICK = dict(episodes=2, candidates=3, proxy_train=64, proxy_held_out=32, seq_len=32, steps=8, final_epochs=0.1,
             finetune_steps=8, final_task_epochs=0.1)

Say = Callable[[str], None]  # one progress line for the terminal (rich markup)


@dataclass(frozen=True)
class SearchRequest:
    """The options of ``kdnas search`` as given; None means the documented default."""

    profile_path: str
    teacher_dir: str | None = None
    data_path: str | None = None
    space_path: str | None = None
    budget_ms: float | None = None
    target_ratio: float | None = None
    weight_under: float = RewardConfig.weight_under
    weight_over: float = RewardConfig.weight_over
    episodes: int = 4
    candidates: int = 6  # per episode
    controller: str = "lstm"
    epsilon: float = ControllerConfig.epsilon
    objective: str = "distill"
    init: str = "sliced"
    mapping: str = "uniform+last"
    seed: int = 0
    threads: int | None = None  # None: usable CPUs
    out: str | None = None  # None: runs/kdnas-<profile>-<controller>-s<seed>
    resume: bool = False
    quick: bool = False
    executor: str = "local"  # where candidates are evaluated: kdnas.executors.EXECUTORS
    workers: int | None = None  # process, ray: parallel candidates [default: one per --threads]
    ray_address: str | None = None  # ray: join this cluster instead of starting a local Ray
    retries: int = 1  # attempts after a candidate's first failure
    baselines: bool = False  # also train and time the hand-designed students at the winner's latency
    final_seeds: int | None = None  # seeds of the final recipe per trained student [default: 3, or 1 with --quick]
    tuned_teacher: str | None = None  # another run's teacher/ to reuse (same teacher, data and recipe): kdnas pareto
    test_path: str | None = None  # labelled file the final models are tested on instead of the data's test split


@dataclass(frozen=True)
class SearchOutcome:
    folder: Path
    chosen: Record
    final: FinalResult
    seconds: float


def run_settings(teacher_dir: str, data_path: str | None, init: str, objective: str, mapping: str, seed: int,
                 device: str, quick: bool, final_seeds: int | None = None) -> tuple[EvalSettings, FinalConfig]:
    """The dataclass defaults, or the --quick sizes."""
    evaluation = EvalSettings(teacher_dir, str(data_path) if data_path else None, init=init, objective=objective,
                              distill=DistillConfig(mapping=mapping, seed=seed), device=device)
    final = FinalConfig(distill=replace(FinalConfig.distill, mapping=mapping, seed=seed),
                        seeds=final_seeds or (1 if quick else FinalConfig.seeds))
    if not quick:
        return evaluation, final
    evaluation = replace(evaluation, proxy_train=QUICK["proxy_train"], proxy_held_out=QUICK["proxy_held_out"],
                         seq_len=QUICK["seq_len"], distill=replace(evaluation.distill, steps=QUICK["steps"]),
                         finetune=replace(evaluation.finetune, steps=QUICK["finetune_steps"]))
    final = replace(final, epochs=QUICK["final_epochs"], seq_len=QUICK["seq_len"],
                    student=replace(final.student, max_epochs=QUICK["final_task_epochs"]),
                    teacher=replace(final.teacher, max_epochs=QUICK["final_task_epochs"]),
                    protocol=Protocol(rounds=5, min_samples=10, min_seconds=0.2, remeasure_tries=0))
    return evaluation, final


def progress(say: Say) -> Event:
    def on_event(kind: str, details: dict[str, Any]) -> None:
        if kind == "episode":
            say(f"[bold]episode {details['episode']}/{details['episodes']}[/]: {details['proposals']} proposals"
                + (f", {details['done']} already done" if details["done"] else ""))
            return
        r = details["record"]
        say(f"  {r.index + 1}/{details['of']} {r.candidate.name:<20} {r.predicted_ms:8.3f} ms  "
            f"loss {r.proxy_loss:.3f}  quality {r.quality:.3f}  reward {r.reward:.4f}  ({r.seconds:.0f} s)")

    return on_event


def search_and_distill(request: SearchRequest, say: Say) -> SearchOutcome:
    """Distill candidates on a proxy set, reward quality x latency, distill and measure the winner."""
    import torch

    started = time.monotonic()
    cores = request.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(cores)
    executor = make_executor(request.executor, request.workers, cores, request.retries, request.ray_address)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if request.budget_ms is not None and request.target_ratio is not None:
        raise LatlabError("pass either --budget-ms or --target-ratio, not both: each sets the reward target")
    teacher_dir = str(check_encoder(request.teacher_dir or default_teacher_dir()))
    data = load_data(request.data_path)
    check_splits(data, request.data_path or "BBC News")
    if request.test_path:
        held_out_test(request.test_path, data)  # a bad test file fails now, not after the search
    if request.objective == "labelled" and data.labels is None:
        raise LatlabError(f"data {request.data_path}: the labelled objective needs a 'label' column")
    profile_path = request.profile_path
    profile = load_complete_profile(profile_path)
    foreign = profile_problems(profile)
    if foreign:  # the search still runs (a profile may be meant for another machine); its latencies are that one's
        say(f"[yellow]Warning:[/] {foreign_message(profile_path, foreign)}; the search targets that machine, "
            "not this one")
    for disturbance in disturbances(profile.backend):  # the winner and the baselines are timed on it at the end
        say(f"[yellow]Warning:[/] {disturbance}")
    space = load_space(request.space_path) if request.space_path else profile.space
    table = LatencyTable.from_profile(profile)
    priced = price(space, table, profile_path)
    teacher_arch = teacher_architecture(teacher_dir, space)
    teacher_predicted = predicted_or_none(teacher_arch, table)
    reward_config = RewardConfig(target_ms(teacher_predicted, teacher_arch, request.budget_ms,
                                           request.target_ratio or TARGET_RATIO, profile_path),
                                 request.weight_under, request.weight_over, request.budget_ms)
    in_budget = allowed(priced, reward_config)
    load_teacher(teacher_dir)  # weights and tokenizer: a folder without them fails now, not after run.json exists

    episodes, candidates = request.episodes, request.candidates
    if request.quick:
        episodes, candidates = min(episodes, QUICK["episodes"]), min(candidates, QUICK["candidates"])
    evaluation, final = run_settings(teacher_dir, request.data_path, request.init, request.objective,
                                     request.mapping, request.seed, device, request.quick, request.final_seeds)
    plan = SearchPlan(str(profile_path), space, episodes, candidates,
                      ControllerConfig(kind=request.controller, epsilon=request.epsilon, seed=request.seed),
                      reward_config, evaluation, final)
    folder = Path(request.out or f"runs/kdnas-{Path(profile_path).stem}-{request.controller}-s{request.seed}")
    inputs = {"--profile": profile_path, "--teacher": teacher_dir, "--data": request.data_path,
              "--space": request.space_path}
    check_outputs({f"--out's {name}": folder / name for name in OUTPUTS}, inputs)
    check_writable(folder)

    with locked(folder):
        records = prepare(folder, plan.resume_key(), request.resume, priced)
        with executor:  # started before run.json is written: Ray missing or unreachable leaves nothing behind
            say(f"KD-NAS on {profile.label} ({profile_path}); space {space.name!r}: {len(priced)} uniform candidates, "
                f"{len(in_budget)} within budget; training on {device}, {executor.summary()}")
            say(reward_config.describe())
            if data.labels is not None and len(data.label_names) != space.labels:
                say(f"note: the profile prices a {space.labels}-label head, the data has {len(data.label_names)} "
                    "labels; the difference is one small linear layer")
            create(folder, {**plan.to_json(), "execution": executor.describe()})  # not part of the resume key
            records = run_search(plan, priced, folder, records, executor, progress(say))
        chosen = best(records)
        say(f"best: {chosen.candidate.name} reward {chosen.reward:.4f}; the final recipe on the full training split, "
            f"{final.seeds} seed(s)")
        baselines = (baseline_candidates(chosen.candidate, Candidate.of(teacher_arch), priced) if request.baselines
                     else {})
        rivals = rival_candidates(records, chosen.candidate, baselines, priced)
        result = run_final(chosen.candidate, evaluation, final, profile, space, folder, baselines, say,
                           Path(request.tuned_teacher) if request.tuned_teacher else None, rivals, request.test_path)
        plot_pareto(records, chosen, plan, f"{profile.label}: {len(records)} candidates", folder / PLOT_FILE)
        write_report(folder, report_markdown(plan, profile, records, chosen, result, teacher_predicted), result)
    return SearchOutcome(folder, chosen, result, time.monotonic() - started)
