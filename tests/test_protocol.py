"""The measurement protocol with scripted runners (no clocks involved), its statistics, and resume end to end."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import trim_mean

from latlab.backend import Runner, Settings
from latlab.errors import LatlabError
from latlab.profile import load_profile
from latlab.profiling import run_profile
from latlab.protocol import Protocol, burst_size, interleave, measure, warm_up
from latlab.space import load_space
from latlab.stats import LatencyStats

from conftest import FAKE_PROTOCOL, FAKE_PROTOCOL_ARGS, ROOT, TINY_SPACE

# One warm-up call and one call per round: the call log then maps one to one onto the protocol's steps.
ONE_CALL = dict(min_samples=1, min_seconds=0.0, warmup_calls=1, warmup_seconds=0.0)


class ScriptedRunner(Runner):
    """Returns ``script(i)`` on its i-th call (0-based) and appends its key to a shared call log."""

    def __init__(self, key: str, log: list[str], script: Callable[[int], float]) -> None:
        super().__init__({})
        self.key, self.log, self.script, self.calls = key, log, script, 0

    def run(self) -> None:
        raise AssertionError("the protocol must time through time_ms, not call run directly")

    def time_ms(self) -> float:
        value = self.script(self.calls)
        self.calls += 1
        self.log.append(self.key)
        return value


def runners_for(scripts: dict[str, Callable[[int], float]]) -> tuple[dict[str, ScriptedRunner], list[str]]:
    log: list[str] = []
    return {key: ScriptedRunner(key, log, script) for key, script in scripts.items()}, log


def constant(ms: float) -> Callable[[int], float]:
    return lambda i: ms


# --- statistics --------------------------------------------------------------------------------------------

def test_stats_match_independent_computation() -> None:
    rng = np.random.default_rng(7)
    rounds = [list(rng.lognormal(0.0, 0.3, size=int(rng.integers(5, 40)))) for _ in range(9)]
    samples = [s for r in rounds for s in r]
    stats = LatencyStats.from_rounds(rounds)
    percentiles = statistics.quantiles(samples, n=100, method="inclusive")
    medians = [statistics.median(r) for r in rounds]
    assert stats.n == len(samples)
    assert stats.median_ms == pytest.approx(statistics.median(samples))
    assert stats.mean_ms == pytest.approx(statistics.fmean(samples))
    assert stats.trimmed_mean_ms == pytest.approx(trim_mean(samples, 0.1))
    expected = (percentiles[89], percentiles[94], percentiles[98])
    assert (stats.p90_ms, stats.p95_ms, stats.p99_ms) == pytest.approx(expected)
    assert (stats.min_ms, stats.max_ms) == (min(samples), max(samples))
    assert stats.stdev_ms == pytest.approx(statistics.stdev(samples))
    assert stats.cv_pct == pytest.approx(statistics.stdev(samples) / statistics.fmean(samples) * 100)
    assert stats.round_cv_pct == pytest.approx(statistics.stdev(medians) / statistics.fmean(medians) * 100)


def test_trimmed_mean_ignores_the_odd_preempted_call() -> None:
    samples = [1.0] * 19 + [50.0]
    stats = LatencyStats.from_rounds([samples])
    assert stats.trimmed_mean_ms == pytest.approx(1.0)
    assert stats.mean_ms == pytest.approx(statistics.fmean(samples))


def test_stats_of_one_sample_and_of_none() -> None:
    one = LatencyStats.from_rounds([[2.5]])
    assert (one.n, one.median_ms, one.stdev_ms, one.cv_pct, one.round_cv_pct) == (1, 2.5, 0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        LatencyStats.from_rounds([[], []])


def test_empty_rounds_do_not_count_as_a_zero_median() -> None:
    with_gap = LatencyStats.from_rounds([[1.0, 1.0], [], [3.0, 3.0]])
    assert with_gap.round_cv_pct == pytest.approx(statistics.stdev([1.0, 3.0]) / 2.0 * 100)


def test_protocol_json_round_trip_ignores_unknown_fields() -> None:
    protocol = Protocol(rounds=7, min_samples=30, min_seconds=0.5, max_round_cv_pct=3.0, seed=4)
    assert Protocol.from_json({**protocol.to_json(), "added_in_a_later_version": 1}) == protocol


# --- warm-up and burst size --------------------------------------------------------------------------------

def test_warm_up_runs_until_both_count_and_time_are_reached() -> None:
    by_time, _ = runners_for({"a": constant(10.0)})
    assert warm_up(by_time["a"], Protocol(warmup_calls=5, warmup_seconds=0.2)) == 10.0
    assert by_time["a"].calls == math.ceil(200 / 10.0)
    by_count, _ = runners_for({"a": lambda i: float(i + 1)})
    assert warm_up(by_count["a"], Protocol(warmup_calls=7, warmup_seconds=0.001)) == statistics.median(range(1, 8))
    assert by_count["a"].calls == 7


@pytest.mark.parametrize("estimate_ms", [0.003, 0.5, 4.0, 250.0])
@pytest.mark.parametrize("protocol", [Protocol(rounds=20, min_samples=100, min_seconds=2.0, max_samples=1000),
                                      Protocol(rounds=7, min_samples=30, min_seconds=0.05, max_samples=10**6),
                                      Protocol(rounds=3, min_samples=1, min_seconds=0.0)])
def test_burst_is_the_smallest_that_meets_count_and_time(estimate_ms: float, protocol: Protocol) -> None:
    """Enough calls for min_samples, and for min_seconds unless max_samples is reached first."""
    def enough(burst: int) -> bool:
        total = burst * protocol.rounds
        return total >= protocol.min_samples and (
            total * estimate_ms >= protocol.min_seconds * 1000 * (1 - 1e-9) or total >= protocol.max_samples)

    burst = burst_size(estimate_ms, protocol)
    assert burst >= 1 and enough(burst)
    assert burst == 1 or not enough(burst - 1)


def test_tiny_items_stop_at_max_samples_but_never_below_min_samples() -> None:
    capped = burst_size(0.001, Protocol(rounds=10, min_samples=50, min_seconds=2.0, max_samples=300))
    assert capped * 10 == 300
    floor = burst_size(0.001, Protocol(rounds=10, min_samples=500, min_seconds=2.0, max_samples=300))
    assert floor * 10 == 500


# --- interleaving ------------------------------------------------------------------------------------------

def test_rounds_are_shuffled_and_interleaved() -> None:
    keys = ["a", "b", "c", "d", "e"]
    runners, log = runners_for({k: constant(1.0 + i) for i, k in enumerate(keys)})
    protocol = Protocol(rounds=12, **ONE_CALL)
    results = interleave(runners, protocol)
    warmups, timed = log[:len(keys)], log[len(keys):]
    assert warmups == keys
    chunks = [timed[i:i + len(keys)] for i in range(0, len(timed), len(keys))]
    assert len(chunks) == protocol.rounds
    assert all(sorted(chunk) == keys for chunk in chunks), "every round visits every item exactly once"
    assert len({tuple(chunk) for chunk in chunks}) > 1, "the order changes from round to round"
    assert all(results[k] == [[1.0 + i]] * protocol.rounds for i, k in enumerate(keys))


def test_each_item_meets_min_samples_and_min_seconds_in_equal_bursts() -> None:
    # "fast" is bound by min_seconds (many calls per round), "slow" by min_samples
    runners, _ = runners_for({"fast": constant(0.02), "slow": constant(3.0)})
    protocol = Protocol(rounds=5, min_samples=40, min_seconds=0.1, max_samples=10**6, warmup_calls=2,
                        warmup_seconds=0.0)
    results = interleave(runners, protocol)
    for key, rounds in results.items():
        samples = [s for r in rounds for s in r]
        assert len(rounds) == protocol.rounds
        assert len({len(r) for r in rounds}) == 1, "the same burst in every round"
        assert len(samples) >= protocol.min_samples
        assert sum(samples) >= protocol.min_seconds * 1000 * (1 - 1e-9)
        assert runners[key].calls == protocol.warmup_calls + len(samples)
    assert len(results["fast"][0]) > len(results["slow"][0])


def test_done_rounds_are_kept_and_not_measured_again() -> None:
    runners, log = runners_for({"full": constant(9.0), "half": constant(2.0), "new": constant(3.0)})
    protocol = Protocol(rounds=6, **ONE_CALL)
    done = {"full": [[1.0]] * 6, "half": [[1.5]] * 2}
    results = interleave(runners, protocol, done=done)
    assert runners["full"].calls == 0, "a finished item is neither warmed up nor timed"
    assert results["full"] == done["full"]
    assert results["half"] == [[1.5]] * 2 + [[2.0]] * 4
    assert runners["half"].calls == 1 + 4
    assert results["new"] == [[3.0]] * 6
    assert done == {"full": [[1.0]] * 6, "half": [[1.5]] * 2}, "the caller's rounds are not mutated"


def test_on_round_fires_after_every_round_with_the_results_so_far() -> None:
    runners, _ = runners_for({"a": constant(1.0), "b": constant(2.0)})
    protocol = Protocol(rounds=5, **ONE_CALL)
    seen: list[tuple[int, int, int, int]] = []
    interleave(runners, protocol, done={"b": [[2.0]] * 2},
               on_round=lambda i, n, res: seen.append((i, n, len(res["a"]), len(res["b"]))))
    assert seen == [(i, 5, i, min(2 + i, 5)) for i in range(1, 6)]


def test_measure_without_work_calls_nothing() -> None:
    runners, log = runners_for({"a": constant(1.0)})
    calls: list[int] = []
    results, unstable = measure(runners, Protocol(rounds=3, **ONE_CALL), done={"a": [[1.0]] * 3},
                                on_round=lambda i, n, r: calls.append(i))
    assert (results, unstable, log, calls) == ({"a": [[1.0]] * 3}, set(), [], [])


# --- re-measurement of unstable items ---------------------------------------------------------------------

def alternating(i: int) -> float:
    return 1.0 if i % 2 else 3.0


@pytest.mark.parametrize("anchors", [0, 1])
def test_unstable_item_is_measured_again_and_flagged_when_it_stays_unstable(anchors: int) -> None:
    runners, _ = runners_for({"steady": constant(1.0), "shaky": alternating})
    protocol = Protocol(rounds=6, max_round_cv_pct=5.0, remeasure_tries=2, remeasure_anchors=anchors, **ONE_CALL)
    results, unstable = measure(runners, protocol)
    assert unstable == {"shaky"}
    assert results["steady"] == [[1.0]] * protocol.rounds, "an anchor keeps its first-pass rounds"
    assert runners["steady"].calls == (1 + 2 * anchors) * (1 + protocol.rounds), "timed again only as an anchor"
    assert runners["shaky"].calls == 3 * (1 + protocol.rounds), "first pass plus one per try"
    assert LatencyStats.from_rounds(results["shaky"]).round_cv_pct > protocol.max_round_cv_pct


def test_item_that_settles_on_remeasurement_keeps_the_calm_rounds() -> None:
    rounds = 6
    # noisy for the whole first pass (warm-up + rounds), then perfectly steady
    settles = lambda i: alternating(i) if i < 1 + rounds else 2.0  # noqa: E731
    runners, _ = runners_for({"settles": settles})
    results, unstable = measure(runners, Protocol(rounds=rounds, max_round_cv_pct=5.0, **ONE_CALL))
    assert unstable == set()
    assert results["settles"] == [[2.0]] * rounds


def test_remeasurement_never_replaces_rounds_with_worse_ones() -> None:
    rounds = 6
    worse_later = lambda i: (1.0 if i % 2 else 1.2) if i < 1 + rounds else alternating(i)  # noqa: E731
    runners, _ = runners_for({"x": worse_later})
    results, unstable = measure(runners, Protocol(rounds=rounds, max_round_cv_pct=5.0, **ONE_CALL))
    assert unstable == {"x"}
    assert sorted({s for r in results["x"] for s in r}) == [1.0, 1.2]


def test_remeasured_rounds_are_rescaled_to_the_speed_of_the_first_pass() -> None:
    """The machine runs 1.5x slower after the first pass: the anchors measure it, and the item re-measured then
    is priced at the first pass's speed, like the stable items whose rounds are kept."""
    rounds, log = 6, []
    first_pass = 5 * (1 + rounds)
    speed = lambda: 1.0 if len(log) < first_pass else 1.5  # noqa: E731

    def steady(ms: float) -> Callable[[int], float]:
        return lambda i: ms * speed()

    scripts = {"a": steady(1.0), "b": steady(2.0), "c": steady(4.0), "d": steady(8.0),
               "x": lambda i: alternating(i) if len(log) < first_pass else 2.0 * speed()}
    runners = {key: ScriptedRunner(key, log, script) for key, script in scripts.items()}
    results, unstable = measure(runners, Protocol(rounds=rounds, max_round_cv_pct=5.0, remeasure_anchors=3, **ONE_CALL))
    assert unstable == set()
    assert [s for r in results["x"] for s in r] == pytest.approx([2.0] * rounds)
    assert [runners[k].calls for k in "abcd"] == [2 * (1 + rounds), 1 + rounds, 2 * (1 + rounds), 2 * (1 + rounds)], \
        "three anchors spread from the fastest to the slowest stable item"


def test_without_anchors_a_remeasurement_keeps_the_later_speed() -> None:
    """What profiles written before anchors did (remeasure_anchors 0): the later pass is taken as it ran."""
    rounds, log = 6, []
    first_pass = 2 * (1 + rounds)
    runners = {"a": ScriptedRunner("a", log, lambda i: 1.0),
               "x": ScriptedRunner("x", log, lambda i: alternating(i) if len(log) < first_pass else 3.0)}
    results, _ = measure(runners, Protocol(rounds=rounds, max_round_cv_pct=5.0, remeasure_anchors=0, **ONE_CALL))
    assert results["x"] == [[3.0]] * rounds
    assert Protocol.from_json({}).remeasure_anchors == 0, "a profile without the field was measured without anchors"


# --- resume of `latlab profile` ----------------------------------------------------------------------------

def rounds_of(path: Path) -> dict[str, list[list[float]]]:
    """Every item's rounds: the blocks', and the calibration models' timed with them."""
    profile = load_profile(path)
    return {**{key: entry.rounds_ms for key, entry in profile.entries.items()},
            **{f"calibration/{i}": m.rounds_ms for i, m in enumerate(profile.calibration.models)}}


def test_interrupted_profile_resumes_without_measuring_finished_rounds_again(cli, user_error, fake_plugin,
                                                                            tmp_path) -> None:
    state = fake_plugin.State
    rounds = FAKE_PROTOCOL.rounds
    args = ("profile", "--backend", "fake", "--space", TINY_SPACE, *FAKE_PROTOCOL_ARGS)

    reference = tmp_path / "reference.json"
    assert cli(*args, "--out", reference).exit_code == 0
    full_calls = state.calls
    per_round = sum(len(r[0]) for r in rounds_of(reference).values())  # timed calls in one round over all blocks
    warmups = full_calls - rounds * per_round

    # Ctrl-C half way through round 3: rounds 1 and 2 were checkpointed.
    state.reset()
    state.interrupt_at = warmups + 2 * per_round + per_round // 2
    out = tmp_path / "run.json"
    interrupted = cli(*args, "--out", out)
    assert interrupted.exit_code == 1 and "Aborted" in interrupted.stderr and "Traceback" not in interrupted.output
    partial = load_profile(out)
    assert not partial.complete
    kept = rounds_of(out)
    assert set(kept) == set(rounds_of(reference)) and {len(r) for r in kept.values()} == {2}

    user_error(cli("validate", "--profile", out), str(out), "incomplete", "--resume")

    state.reset()
    resumed = cli(*args, "--out", out, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert state.calls == full_calls - 2 * per_round, "only the missing rounds (and warm-ups) were run"
    final = load_profile(out)
    assert final.complete and final.created_utc == partial.created_utc
    for key, measured in rounds_of(out).items():
        assert len(measured) == rounds and measured[:2] == kept[key]


@pytest.mark.parametrize(("option", "field"), [(("--threads", "2"), "settings"),
                                               (("--precision", "bf16"), "settings"),
                                               (("--rounds", "9"), "protocol"),
                                               (("--space", ROOT / "latlab/spaces/minilm-students.json"), "space")])
def test_resume_with_other_settings_is_refused(cli, user_error, fake_profile, option, field) -> None:
    before = fake_profile.read_bytes()
    args = ["profile", "--backend", "fake", "--space", TINY_SPACE, *FAKE_PROTOCOL_ARGS, "--out", fake_profile]
    result = cli(*args, *option, "--resume")
    user_error(result, str(fake_profile), "cannot resume", repr(field))
    assert fake_profile.read_bytes() == before


def test_resume_with_another_runtime_version_is_refused(cli, user_error, fake_plugin, fake_profile) -> None:
    fake_plugin.State.runtime_version = "2.0"
    result = cli("profile", "--backend", "fake", "--space", TINY_SPACE, *FAKE_PROTOCOL_ARGS, "--out", fake_profile,
                 "--resume")
    user_error(result, "'runtime_version'", "2.0")


def test_resume_in_another_process_state_is_refused(cli, user_error, fake_plugin, fake_profile) -> None:
    before = fake_profile.read_bytes()
    fake_plugin.State.pages = "huge"  # as torch in a process that got huge pages, the profile's did not
    result = cli("profile", "--backend", "fake", "--space", TINY_SPACE, *FAKE_PROTOCOL_ARGS, "--out", fake_profile,
                 "--resume")
    user_error(result, str(fake_profile), "cannot resume", "fake pages: huge here vs small in profile")
    assert fake_profile.read_bytes() == before


def test_resume_on_other_hardware_is_refused(fake_plugin, fake_profile, gpu_fingerprint) -> None:
    data = json.loads(fake_profile.read_text())
    data["fingerprint"] = gpu_fingerprint.to_json()
    fake_profile.write_text(json.dumps(data))
    loaded = load_profile(fake_profile)
    with pytest.raises(LatlabError, match="different hardware"):
        run_profile(fake_plugin.FakeBackend(), loaded.settings, loaded.space, loaded.protocol, fake_profile,
                    resume=True)


def test_resume_after_the_rounds_still_flags_unstable_blocks(fake_plugin, tmp_path) -> None:
    """Interrupted while re-measuring: every round is saved, but the unstable block was never flagged."""
    plugin = fake_plugin

    class Alternating(plugin.FakeRunner):
        def time_ms(self) -> float:
            self.run()
            self.ms = 4.0 - self.ms  # 1, 3, 1, 3, ...: round medians spread far beyond max_round_cv_pct
            return self.ms

    class ShakyOverhead(plugin.FakeBackend):
        """The overhead block (the one without parameters) alternates between two speeds."""

        def _prepare(self, module, example_inputs, settings):
            if any(True for _ in module.parameters()):
                return super()._prepare(module, example_inputs, settings)
            return Alternating(3.0, {})

    space = load_space(TINY_SPACE)
    protocol = Protocol(rounds=4, min_samples=4, min_seconds=0.0, warmup_calls=1, warmup_seconds=0.0)
    out = tmp_path / "p.json"
    calls_per_pass = len(space.blocks(protocol.model_depth)) * (1 + protocol.rounds)
    plugin.State.interrupt_at = calls_per_pass + 2  # during the re-measurement of the overhead block
    with pytest.raises(KeyboardInterrupt):
        run_profile(ShakyOverhead(), Settings(), space, protocol, out)
    plugin.State.reset()
    resumed = run_profile(ShakyOverhead(), Settings(), space, protocol, out, resume=True)
    assert resumed.entries["overhead/b1/s32"].unstable


def test_run_profile_reports_progress_per_round(fake_plugin, tmp_path) -> None:
    stages: list[tuple[str, int, int]] = []
    protocol = Protocol(rounds=3, min_samples=3, min_seconds=0.0)
    run_profile(fake_plugin.FakeBackend(), Settings(), load_space(TINY_SPACE), protocol, tmp_path / "p.json",
                report=lambda *a: stages.append(a))
    assert [s for s in stages if s[0] == "measure"] == [("measure", i, 3) for i in (1, 2, 3)]
    blocks = len(load_space(TINY_SPACE).blocks(protocol.model_depth)) + protocol.calibration_models  # timed together
    assert ("prepare", blocks, blocks) in stages
