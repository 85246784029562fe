"""``latlab report``: a regression report from two saved pytest-benchmark runs; exit 1 when a gate fails."""

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
@click.option("--fail", "fail", multiple=True, default=("p90:10%",), show_default=True,
              help="Gate STAT:LIMIT% (repeatable or comma-separated; STAT: min, median, mean, p90, p95, p99).")
@click.option("--out", type=click.Path(), default=None, help="Write the Markdown here instead of printing it.")
@click.option("--png", type=click.Path(), default=None, help="Write a chart of the changes here.")
@click.option("--strict-device", is_flag=True, help="Refuse runs from other hardware, runtime versions or settings.")
def report(runs: tuple[str, ...], storage: str, fail: tuple[str, ...], out: str | None, png: str | None,
           strict_device: bool) -> None:
    """Compare saved runs BASELINE and CURRENT (default: the last two under --storage) benchmark by benchmark."""
    gates = tuple(gate for text in fail for gate in parse_gates(text))
    if len(runs) == 0:
        found = find_runs(storage)
        if len(found) < 2:
            raise LatlabError(f"{storage}: {len(found)} saved run(s) found, need two; save runs with pytest "
                              "--benchmark-autosave, or pass BASELINE CURRENT")
        runs = (str(found[-2]), str(found[-1]))
    elif len(runs) != 2:
        raise LatlabError(f"expected two saved runs, BASELINE CURRENT, got {len(runs)}")
    check_output_files({"--out": out, "--png": png}, {"BASELINE": runs[0], "CURRENT": runs[1]})
    comparison = compare_runs(load_run(runs[0]), load_run(runs[1]), gates, strict_device)
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
