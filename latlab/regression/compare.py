"""One measurement judged against another under a gate: the point change the verdict prints, and the bootstrap
interval that decides (``gates`` states the rule). Shared by the fixture (A/B and ``--latlab-fail``) and the
report, so that a saved run gives the same verdict in pytest and in ``latlab report``."""

from __future__ import annotations

from latlab.regression.confidence import Series, ratio_interval
from latlab.regression.gates import CONFIDENCE, Gate, Verdict, judge
from latlab.regression.runs import BenchRecord

NO_SAMPLES = "point comparison: {} was saved without raw samples (by an older latlab), so no interval"


def _interval(gate: Gate, current: Series, baseline: Series | None) -> tuple[float, float]:
    found = ratio_interval(current, baseline, gate.stat, CONFIDENCE)
    return found.low, found.high


def judge_saved(gate: Gate, baseline: BenchRecord, current: BenchRecord) -> Verdict:
    """``current`` against a saved run's record of the same test: relative to the anchor when both timed the same
    one (both runs resampled, each block within itself), raw otherwise."""
    corrected = current.corrected(baseline, gate.stat)
    values = gate.value(baseline.stats), gate.value(current.stats)
    missing = [name for name, record in (("the baseline", baseline), ("the current run", current))
               if not record.samples_ms or (corrected and not record.anchor_samples_ms)]
    if missing:
        return judge(gate, "baseline", *values, corrected, note=NO_SAMPLES.format(" and ".join(missing)))
    if corrected:
        now = Series.anchored(current.samples_ms, current.anchor_samples_ms)
        then = Series.anchored(baseline.samples_ms, baseline.anchor_samples_ms)
    else:
        now, then = Series.plain(current.samples_ms), Series.plain(baseline.samples_ms)
    return judge(gate, "baseline", *values, corrected, interval=_interval(gate, now, then))


def judge_ab(gate: Gate, record: BenchRecord) -> Verdict:
    """The candidate (``record.stats``) against the reference timed in the same rounds, pairs resampled together:
    drift during the run moves both sides of a pair and cannot widen the interval or move it."""
    assert record.reference is not None, "an A/B record has a reference"
    interval = _interval(gate, Series.paired(record.samples_ms, record.reference_samples_ms), None)
    return judge(gate, "reference", gate.value(record.reference), gate.value(record.stats), interval=interval)
