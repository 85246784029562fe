"""``latlab report``'s substance: compare a saved pytest-benchmark run with a baseline saved by one run or several,
benchmark by benchmark, and render the result as a Markdown table and a PNG chart. No file is read or written
here: ``latlab.regression.cli`` does that."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from latlab.errors import LatlabError
from latlab.regression.compare import anchored, judge_saved, saved_values
from latlab.regression.confidence import process_center
from latlab.regression.gates import Gate, Verdict, change_pct
from latlab.regression.runs import BenchRecord, SavedRun, by_test, hardware_problems


@dataclass(frozen=True)
class Row:
    name: str  # pytest node id
    baselines: tuple[BenchRecord, ...]  # one per baseline run (process) that timed this test
    current: BenchRecord
    verdicts: tuple[Verdict, ...]

    @property
    def failed(self) -> bool:
        return any(v.failed for v in self.verdicts)

    def change(self, stat: str) -> float:
        """Drift-corrected percent change of ``stat`` when all runs timed the same anchor, raw otherwise; against
        the centre of the baseline's processes."""
        return change_pct(*saved_values(self.baselines, self.current, stat, anchored(self.baselines, self.current)))

    def baseline_ms(self, stat: str) -> float:
        return saved_values(self.baselines, self.current, stat, relative=False)[0]

    def machine_change(self) -> float | None:
        """How much the calibration anchor itself moved between the runs: the drift that was corrected."""
        anchors = [record.anchor for record in (*self.baselines, self.current)]
        if not anchored(self.baselines, self.current) or any(anchor is None for anchor in anchors):
            return None
        medians = np.array([anchor.median_ms for anchor in anchors if anchor])
        return change_pct(float(process_center(medians[:-1])), float(medians[-1]))


@dataclass(frozen=True)
class Comparison:
    baselines: tuple[SavedRun, ...]  # one run per process
    current: SavedRun
    gates: tuple[Gate, ...]
    rows: tuple[Row, ...]
    notes: tuple[str, ...]  # hardware/runtime differences, benchmarks that could not be compared

    @property
    def failed(self) -> tuple[Row, ...]:
        return tuple(row for row in self.rows if row.failed)


def compare_runs(baselines: Sequence[SavedRun], current: SavedRun, gates: tuple[Gate, ...],
                 strict_device: bool = False) -> Comparison:
    """``current`` against a baseline saved by one run or several (each one process), benchmark by benchmark."""
    known = by_test(baselines)
    common = [name for name in current.records if name in known]
    if not common:
        raise LatlabError(f"{_paths(baselines)} ({len(known)} latlab benchmarks) and {current.path} "
                          f"({len(current.records)}) have no latlab benchmark in common; compare runs of the "
                          "same suite")
    device = list(dict.fromkeys(line for run in baselines for line in hardware_problems(
        run, current.fingerprint, run.uses_gpu or current.uses_gpu)))
    rows = []
    for name in common:
        bases, cur = known[name], current.records[name]
        device += list(dict.fromkeys(f"{name}: {line}" for base in bases
                                     for line in cur.setting_differences(base, "baseline")))
        rows.append(Row(name, bases, cur, tuple(judge_saved(g, bases, cur) for g in gates)))
    if device and strict_device:
        raise LatlabError(f"{current.path} was measured on other hardware, runtime or settings than "
                          f"{_paths(baselines)}: {'; '.join(device)} (--strict-device)")
    notes = [f"measured differently, the comparison may not hold: {line}" for line in device]
    notes += [f"only in the baseline, not compared: {n}" for n in known if n not in current.records]
    notes += [f"only in the current run, not compared: {n}" for n in current.records if n not in known]
    notes += [f"not timed by latlab's latency fixture, not compared: {n}" for n in current.plain]
    notes += sorted({v.note for row in rows for v in row.verdicts if v.note})
    return Comparison(tuple(baselines), current, gates, tuple(rows), tuple(notes))


def _paths(runs: Sequence[SavedRun]) -> str:
    return ", ".join(run.path for run in runs)


def _ms(value: float) -> str:
    return f"{value:.3f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1f}%"


def verdict_text(row: Row) -> str:
    failed = [v for v in row.verdicts if v.failed]
    if failed:
        return "**FAIL** " + ", ".join(f"{v.gate.stat} {v.change_pct:+.1f}%{f' ({v.interval_text()})' if v.interval_pct else ''} "
                                       f"> {v.gate.limit_pct:g}%"
                                       for v in failed)
    return "ok" if row.verdicts else "-"


def _baseline_line(runs: Sequence[SavedRun]) -> str:
    if len(runs) == 1:
        return f"- baseline: `{runs[0].path}` ({runs[0].datetime})"
    return f"- baseline: {len(runs)} runs, one process each: {', '.join(f'`{run.path}`' for run in runs)}"


def render_markdown(comparison: Comparison) -> str:
    failed = comparison.failed
    gates = ", ".join(str(g) for g in comparison.gates) or "none"
    result = (f"**FAIL**: {len(failed)} of {len(comparison.rows)} benchmarks regressed" if failed
              else f"pass: {len(comparison.rows)} benchmarks within the gates")
    lines = [
        "# Latency regression report",
        "",
        _baseline_line(comparison.baselines),
        f"- current: `{comparison.current.path}` ({comparison.current.datetime})",
        f"- gates: {gates}; result: {result}",
        "",
        "Changes are drift-corrected where all runs timed latlab's calibration anchor in the same rounds: they "
        "compare each latency relative to the anchor, block by block of consecutive rounds, so the machine getting "
        "faster or slower cancels. *machine* is how much the anchor itself moved. Latencies are in ms per call, "
        "with each run's own timer. A gate fails when the whole confidence interval of the change (bootstrap over "
        "the saved rounds) lies above its limit. A baseline saved by several runs is compared through the centre "
        "of its processes (geometric mean), and its interval also resamples those processes.",
        "",
        "| benchmark | backend | median base → now | Δ median | p90 base → now | Δ p90 | machine | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in comparison.rows:
        c = row.current.stats
        cells = [f"`{row.name}`", row.current.backend,
                 f"{_ms(row.baseline_ms('median'))} → {_ms(c.median_ms)}", _pct(row.change("median")),
                 f"{_ms(row.baseline_ms('p90'))} → {_ms(c.p90_ms)}", _pct(row.change("p90")),
                 _pct(row.machine_change()), verdict_text(row)]
        lines.append(f"| {' | '.join(cells)} |")
    if comparison.notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in comparison.notes]
    return "\n".join(lines) + "\n"


def render_chart(comparison: Comparison) -> bytes:
    """Horizontal bars of the median and p90 change per benchmark, with each gate's limit as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matplotlib.patches import Patch

    rows = comparison.rows
    labels = [row.name.split("::")[-1] for row in rows]
    positions = range(len(rows))
    colors = {"median": "#8fb3d9", "p90": "#2f5f8f", "failed": "#c0392b"}
    fig, ax = plt.subplots(figsize=(9, 1.4 + 0.45 * len(rows)))
    for offset, stat in ((-0.2, "median"), (0.2, "p90")):
        failed = [any(v.failed and v.gate.stat == stat for v in row.verdicts) for row in rows]
        ax.barh([p + offset for p in positions], [row.change(stat) for row in rows], height=0.38,
                color=[colors["failed"] if f else colors[stat] for f in failed])
    for gate in comparison.gates:
        ax.axvline(gate.limit_pct, color=colors["failed"], ls="--", lw=1)
        ax.text(gate.limit_pct, 1.0, f" {gate}", color=colors["failed"], fontsize=8, va="bottom",
                transform=ax.get_xaxis_transform())
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_yticks(list(positions), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("change vs baseline (%), drift-corrected")
    ax.set_title(f"{len(comparison.failed)} of {len(rows)} benchmarks regressed", fontsize=10, pad=14)
    ax.legend(handles=[Patch(color=colors["median"], label="Δ median"), Patch(color=colors["p90"], label="Δ p90"),
                       Patch(color=colors["failed"], label="gate failed")],
              loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()
