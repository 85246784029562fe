"""``latlab report``: a regression report from saved pytest-benchmark runs, a baseline (one run, or several: one
process each) and the current run; exit 1 when a gate fails."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from latlab.atomic import write_bytes, write_text
from latlab.errors import LatlabError
from latlab.outputs import check_output_files
from latlab.regression.gates import parse_gates
from latlab.regression.report import compare_runs, render_chart, render_markdown
from latlab.regression.runs import find_runs, load_run


@click.command()
@click.argument("runs", nargs=-1, type=click.Path())
@click.option("--storage", default=".benchmarks", show_default=True, type=click.Path(),
              help="pytest-benchmark's storage folder, searched when RUNS are not given.")
@click.option("--baseline", "baseline_name", default=None, metavar="NAME",
              help="The baseline is every run saved as NAME under --storage (--benchmark-save=NAME, one run per "
                   "process); RUNS is then the one current run (default: the latest run not saved as NAME).")
@click.option("--fail", "fail", multiple=True, default=("p90:10%",), show_default=True,
              help="Gate STAT:LIMIT% (repeatable or comma-separated; STAT: min, median, mean, p90, p95, p99).")
@click.option("--out", type=click.Path(), default=None, help="Write the Markdown here instead of printing it.")
@click.option("--png", type=click.Path(), default=None, help="Write a chart of the changes here.")
@click.option("--strict-device", is_flag=True, help="Refuse runs from other hardware, runtime versions or settings.")
def report(runs: tuple[str, ...], storage: str, baseline_name: str | None, fail: tuple[str, ...], out: str | None,
           png: str | None, strict_device: bool) -> None:
    """Compare saved runs BASELINE... CURRENT (the last one is CURRENT; several before it: a baseline saved by several
    runs, one process each), benchmark by benchmark; default: the last two under --storage."""
    gates = tuple(gate for text in fail for gate in parse_gates(text))
    baselines, current = pick_runs(runs, storage, baseline_name)
    named = {"BASELINE" if len(baselines) == 1 else f"BASELINE {path}": path for path in baselines}
    check_output_files({"--out": out, "--png": png}, {**named, "CURRENT": current})
    comparison = compare_runs([load_run(path) for path in baselines], load_run(current), gates, strict_device)
    markdown = render_markdown(comparison)
    if out:
        write_text(out, markdown)
    else:
        click.echo(markdown, nl=False)
    if png:
        write_bytes(png, render_chart(comparison))
    failed = comparison.failed
    written = ", ".join(str(Path(p)) for p in (out, png) if p)
    click.echo(f"{len(comparison.rows)} benchmarks compared, {len(failed)} regressed"
               + (f"; wrote {written}" if written else ""), err=True)
    if failed:
        sys.exit(1)


def pick_runs(runs: tuple[str, ...], storage: str, name: str | None) -> tuple[list[str], str]:
    """(baseline runs, current run) from the arguments: RUNS as given, the runs saved as --baseline NAME, or the
    last two runs under --storage."""
    if name:
        named = [str(path) for path in find_runs(storage, name)]
        if not named:
            raise LatlabError(f"--baseline {name}: no run saved as {name!r} under {storage}; save one with pytest "
                              f"--benchmark-save={name}, once per run")
        if len(runs) > 1:
            raise LatlabError(f"--baseline {name} names the baseline: pass at most one run, CURRENT, got {len(runs)}")
        others = [str(path) for path in find_runs(storage) if str(path) not in named]
        if not runs and not others:
            raise LatlabError(f"{storage}: no saved run besides those saved as {name!r}; pass CURRENT")
        return named, runs[0] if runs else others[-1]
    if not runs:
        found = find_runs(storage)
        if len(found) < 2:
            raise LatlabError(f"{storage}: {len(found)} saved run(s) found, need two; save runs with pytest "
                              "--benchmark-autosave, or pass BASELINE CURRENT")
        return [str(found[-2])], str(found[-1])
    if len(runs) < 2:
        raise LatlabError(f"expected saved runs BASELINE... CURRENT, got {len(runs)}")
    return list(runs[:-1]), runs[-1]
