"""The statistics behind the gates: bootstrap intervals on known distributions, and the rule that a gate fails
only when the whole interval is above its limit; a baseline saved by several processes (hierarchical bootstrap);
saved runs without samples fall back to the point change."""

from __future__ import annotations

import json

import numpy as np
import pytest

from latlab.regression.compare import ONE_PROCESS, judge_ab, judge_saved
from latlab.regression.confidence import Series, estimate, ratio_interval, resampled
from latlab.regression.fixture import stats_of
from latlab.regression.gates import Gate, judge
from latlab.regression.runs import STORED_SAMPLES, BenchRecord, stored

RNG = np.random.default_rng(7)


def test_interval_covers_the_true_ratio_about_as_often_as_it_claims() -> None:
    """Exponential latencies, the current run 10% slower: the true ratio of medians and of p90s is exactly 1.10.
    A 95% interval that ignored one side's noise would cover it far less often than 95% of the time."""
    covered = {"median": 0, "p90": 0}
    trials = 150
    for trial in range(trials):
        base = Series.plain(1.0 + RNG.exponential(0.2, 300))
        now = Series.plain(1.1 * (1.0 + RNG.exponential(0.2, 300)))
        for stat in covered:
            found = ratio_interval(now, [base], stat, 0.95, seed=trial)
            covered[stat] += found.low <= 1.1 <= found.high
    for stat, hits in covered.items():
        assert 0.88 <= hits / trials <= 0.995, (stat, hits)


def test_paired_rounds_cancel_drift_that_an_unpaired_comparison_cannot() -> None:
    """The machine slows down 2x during an A/B run; the candidate does 10% more work in every round."""
    machine = np.linspace(1.0, 2.0, 400)
    reference = machine * (1 + RNG.normal(0, 0.02, 400))
    candidate = 1.1 * machine * (1 + RNG.normal(0, 0.02, 400))
    paired = ratio_interval(Series.paired(candidate, reference), [], "median", 0.95)
    unpaired = ratio_interval(Series.plain(candidate), [Series.plain(reference)], "median", 0.95)
    assert paired.low <= 1.1 <= paired.high and paired.high - paired.low < 0.05
    assert unpaired.high - unpaired.low > 3 * (paired.high - paired.low)


def test_anchor_cancels_a_machine_slower_between_runs() -> None:
    model, anchor = 2.0 + RNG.exponential(0.1, 300), 0.5 + RNG.exponential(0.02, 300)
    slower_machine = Series.anchored(1.3 * (2.0 + RNG.exponential(0.1, 300)), 1.3 * (0.5 + RNG.exponential(0.02, 300)))
    found = ratio_interval(slower_machine, [Series.anchored(model, anchor)], "median", 0.95)
    assert found.low <= 1.0 <= found.high and found.high < 1.1
    assert estimate(Series.anchored(model, anchor), "median") == pytest.approx(
        np.median([np.median(m) / np.median(a) for m, a in zip(np.array_split(model, 10), np.array_split(anchor, 10))]))


def test_interval_is_seeded() -> None:
    base, now = Series.plain(RNG.exponential(1.0, 100)), Series.plain(RNG.exponential(1.0, 100))
    assert ratio_interval(now, [base], "p90", 0.95) == ratio_interval(now, [base], "p90", 0.95)


@pytest.mark.parametrize(("interval", "failed"), [
    ((1.08, 1.16), False),  # +12% measured, but a change of +8% is as plausible: not shown to exceed +10%
    ((1.105, 1.14), True),
    ((float("nan"), float("nan")), True),  # never pass what was not measured
])
def test_the_interval_decides(interval: tuple[float, float], failed: bool) -> None:
    verdict = judge(Gate("p90", 10.0), "baseline", 10.0, 11.2, interval=interval)
    assert verdict.change_pct == pytest.approx(12.0) and verdict.failed is failed
    if failed and interval[0] == interval[0]:
        assert verdict.describe() == "FAIL p90 11.200 ms vs baseline 10.000 ms: +12.0%, 95% CI +10.5% to +14.0% " \
                                     "(limit +10%)"


def record(samples: np.ndarray, anchor: np.ndarray | None = None, reference: np.ndarray | None = None,
           keep_samples: bool = True) -> BenchRecord:
    """A record as the fixture writes it; ``keep_samples=False``: as an older latlab saved it."""
    from latlab.regression.anchor import ANCHOR_NAME, relative_to_anchor

    return BenchRecord(
        backend="torch", runtime_version="2.13.0", threads=1, precision="f32", device="cpu", batch=1, seq_len=16,
        timer="time.process_time", model="Chain", stats=stats_of(samples),
        anchor=stats_of(anchor) if anchor is not None else None, anchor_name=ANCHOR_NAME if anchor is not None else "",
        relative=relative_to_anchor(samples, anchor) if anchor is not None else {},
        reference=stats_of(reference) if reference is not None else None,
        samples_ms=stored(samples) if keep_samples else (),
        anchor_samples_ms=stored(anchor) if anchor is not None and keep_samples else (),
        reference_samples_ms=stored(reference) if reference is not None else (),
    )


def test_saved_records_keep_their_samples_and_old_ones_fall_back_to_the_point_change() -> None:
    anchor = 0.5 + RNG.exponential(0.02, 3 * STORED_SAMPLES)
    base = record(1.0 + RNG.exponential(0.05, 3 * STORED_SAMPLES), anchor)
    assert len(base.samples_ms) == len(base.anchor_samples_ms) == STORED_SAMPLES
    again = BenchRecord.from_json(json.loads(json.dumps(base.to_json())))
    assert (again.samples_ms, again.anchor_samples_ms) == (base.samples_ms, base.anchor_samples_ms)
    now = record(1.3 + RNG.exponential(0.05, 300), 0.5 + RNG.exponential(0.02, 300))
    verdict = judge_saved(Gate("median", 10.0), [base], now)
    assert verdict.failed and verdict.drift_corrected and verdict.interval_pct[0] > 20 and verdict.note == ONE_PROCESS
    old = record(np.asarray(base.samples_ms), np.asarray(base.anchor_samples_ms), keep_samples=False)
    point = judge_saved(Gate("median", 10.0), [old], now)
    assert point.failed and point.interval_pct is None and point.change_pct == pytest.approx(verdict.change_pct, abs=1)
    assert "point comparison: the baseline was saved without raw samples" in point.describe()


def test_ab_verdict_is_paired_and_prints_its_interval() -> None:
    machine = np.linspace(1.0, 1.5, 200)
    verdict = judge_ab(Gate("median", 5.0), record(1.1 * machine, reference=machine))
    assert verdict.failed and verdict.interval_pct == pytest.approx((10.0, 10.0), abs=0.01)
    assert "+10.0%, 95% CI +10.0% to +10.0% (limit +5%)" in verdict.describe()


def processes(spread: float, count: int, slower: float = 1.0, rounds: int = 300) -> list[np.ndarray]:
    """``count`` processes of the same code: each a fixed factor off (log-normal, ``spread``), its rounds noisy
    within it (1% log-normal) around 1 ms times ``slower``."""
    return [slower * np.exp(RNG.normal(0, spread)) * np.exp(RNG.normal(0, 0.01, rounds)) for _ in range(count)]


def test_one_baseline_process_is_the_plain_two_sample_bootstrap() -> None:
    """A baseline saved once keeps the interval it always had: current and baseline resampled on their own."""
    now, base = Series.plain(processes(0.0, 1)[0]), Series.plain(processes(0.0, 1)[0])
    rng = np.random.default_rng(0)
    spread = resampled(now, "median", rng) / resampled(base, "median", rng)
    found = ratio_interval(now, [base], "median", 0.95)
    assert (found.low, found.high) == tuple(np.percentile(spread, [2.5, 97.5]))
    assert found.ratio == estimate(now, "median") / estimate(base, "median")


def test_interval_widens_with_the_spread_between_baseline_processes() -> None:
    """Five baseline processes whose own speeds differ by 4% (sd) against five that agree: the interval widens by
    about the uncertainty of their centre (1.96 x 4% / sqrt(5), each side), where one process cannot show it."""
    now = Series.plain(processes(0.0, 1)[0])
    agree = [Series.plain(p) for p in processes(0.0, 5)]
    differ = [Series.plain(p) for p in processes(0.04, 5)]
    narrow = ratio_interval(now, agree, "median", 0.95)
    wide = ratio_interval(now, differ, "median", 0.95)
    assert narrow.high - narrow.low < 0.01
    assert wide.high - wide.low > max(0.02, 3 * (narrow.high - narrow.low))
    single = ratio_interval(now, differ[:1], "median", 0.95)
    assert single.high - single.low < 0.01  # one process cannot show how much processes differ


def test_several_processes_flag_a_real_slowdown_and_pass_unchanged_code() -> None:
    """Processes 1% apart (sd), as measured here with the aligned anchor: a process of 10% slower code fails
    median:5% against five baseline processes, one of unchanged code passes, each verdict says over how many."""
    baselines = [record(p) for p in processes(0.01, 5)]
    slower = judge_saved(Gate("median", 5.0), baselines, record(processes(0.01, 1, slower=1.10)[0]))
    same = judge_saved(Gate("median", 5.0), baselines, record(processes(0.01, 1)[0]))
    assert slower.failed and slower.interval_pct[0] > 5.0 and not same.failed
    assert slower.processes == 5 and not slower.note
    assert " ms (5 processes): +" in slower.describe() and slower.to_json()["baseline_processes"] == 5
