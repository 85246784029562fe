"""One measurement judged against another under a gate: the point change the verdict prints, and the bootstrap
interval that decides (``gates`` states the rule). Shared by the fixture (A/B and ``--latlab-fail``) and the
report, so that a saved baseline gives the same verdict in pytest and in ``latlab report``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from latlab.regression.confidence import Series, process_center, ratio_interval
from latlab.regression.gates import CONFIDENCE, Gate, Verdict, judge
from latlab.regression.runs import BenchRecord

NO_SAMPLES = "point comparison: {} was saved without raw samples (by an older latlab), so no interval"
ONE_PROCESS = ("one baseline process: the interval covers the noise within the two runs, not how much two processes "
               "of the same code differ; save the baseline from several runs (--latlab-baseline)")


def _interval(gate: Gate, current: Series, baselines: Sequence[Series]) -> tuple[float, float]:
    found = ratio_interval(current, baselines, gate.stat, CONFIDENCE)
    return found.low, found.high


def anchored(baselines: Sequence[BenchRecord], current: BenchRecord) -> bool:
    """Whether every run timed the same anchor: then changes are compared relative to it."""
    return bool(current.relative) and all(b.relative and b.anchor_name == current.anchor_name for b in baselines)


def saved_values(baselines: Sequence[BenchRecord], current: BenchRecord, stat: str,
                 relative: bool) -> tuple[float, float]:
    """(baseline, current) values of ``stat``, relative to the anchor or raw (ms); the baseline's is the centre of
    its processes' (``process_center``)."""
    def value(record: BenchRecord) -> float:
        return record.relative[stat] if relative else float(getattr(record.stats, f"{stat}_ms"))

    return float(process_center(np.array([value(b) for b in baselines]))), value(current)


def judge_saved(gate: Gate, baselines: Sequence[BenchRecord], current: BenchRecord) -> Verdict:
    """``current`` against a saved baseline's records of the same test, one per process that saved it: relative to
    the anchor when all timed the same one (each process resampled, each block within itself), raw otherwise."""
    corrected = anchored(baselines, current)
    values = saved_values(baselines, current, gate.stat, relative=False)
    point = saved_values(baselines, current, gate.stat, relative=True) if corrected else None
    note = ONE_PROCESS if len(baselines) == 1 else ""
    missing = [name for name, records in (("the baseline", baselines), ("the current run", [current]))
               if any(not r.samples_ms or (corrected and not r.anchor_samples_ms) for r in records)]
    if missing:
        return judge(gate, "baseline", *values, point, note=NO_SAMPLES.format(" and ".join(missing)),
                     processes=len(baselines))
    if corrected:
        now = Series.anchored(current.samples_ms, current.anchor_samples_ms)
        then = [Series.anchored(b.samples_ms, b.anchor_samples_ms) for b in baselines]
    else:
        now, then = Series.plain(current.samples_ms), [Series.plain(b.samples_ms) for b in baselines]
    return judge(gate, "baseline", *values, point, interval=_interval(gate, now, then), note=note,
                 processes=len(baselines))


def judge_ab(gate: Gate, record: BenchRecord) -> Verdict:
    """The candidate (``record.stats``) against the reference timed in the same rounds, pairs resampled together:
    drift during the run moves both sides of a pair and cannot widen the interval or move it."""
    assert record.reference is not None, "an A/B record has a reference"
    interval = _interval(gate, Series.paired(record.samples_ms, record.reference_samples_ms), ())
    return judge(gate, "reference", gate.value(record.reference), gate.value(record.stats), interval=interval)
