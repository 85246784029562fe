"""The ``latency`` fixture: time a model on a latlab backend with pytest-benchmark, record who measured it where,
and apply the gates. A leaf: the plugin hands it the session state and what to do with a mismatch; it imports
nothing of the plugin. Loaded only when a test asks for the fixture (it imports torch and numpy).

Each timed round calls the model once (``runner.run``, which synchronises the device) and times its companions
with the same timer, before or after it in pytest-benchmark's untimed ``setup`` and ``teardown``: the A/B
reference, and on CPU the calibration anchor (``latlab.regression.anchor``). The rounds cycle through every order
of model and companions, because on a loaded machine the position in a round matters (whatever runs first after
the process was switched out meets cold caches): measured with the model always last, a process of unchanged
code timed it up to 6% faster than an identical reference, round for round. Gates against a saved run compare latency
relative to the anchor; the A/B ratio needs no anchor, both sides share every round.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from itertools import permutations
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from latlab.backend import Backend, Runner, Settings
from latlab.errors import LatlabError
from latlab.protocol import Protocol, warm_up
from latlab.regression.anchor import ANCHOR_NAME, Anchor, relative_to_anchor
from latlab.regression.compare import judge_ab, judge_saved
from latlab.regression.gates import Verdict, judge, parse_gates
from latlab.regression.runs import BenchRecord, stored
from latlab.regression.session import SessionState
from latlab.regression.target import Inputs, Target, as_architecture, prepare, resolve
from latlab.registry import load_backend
from latlab.stats import LatencyStats

if TYPE_CHECKING:
    from latlab.architecture import Architecture
    from latlab.regression.target import ModelLike

WALL_CLOCK = "time.perf_counter"  # pytest-benchmark's default timer; profiles are measured with it too
MIN_ROUNDS, MAX_ROUNDS, SMOKE_ROUNDS = 50, 20_000, 3  # 50 calls at least so that a p90 means something
PROBE = Protocol(warmup_calls=3, warmup_seconds=0.0)  # three calls: first-call set-up, and a cost estimate


def plan_rounds(round_ms: float, seconds: float, smoke: bool) -> tuple[int, int]:
    """(timed rounds, warm-up rounds) that fit ``seconds``; smoke mode only proves that the test runs."""
    if smoke:
        return SMOKE_ROUNDS, 1
    per_round = max(round_ms, 1e-3)
    rounds = min(MAX_ROUNDS, max(MIN_ROUNDS, math.ceil(seconds * 1000 / per_round)))
    warmup = max(Protocol.warmup_calls, math.ceil(Protocol.warmup_seconds * 1000 / per_round))
    return rounds, min(warmup, rounds)


def stats_of(samples_ms: Sequence[float]) -> LatencyStats:
    """Consecutive tenths as rounds, so that ``round_cv_pct`` shows drift during the measurement."""
    chunks = np.array_split(np.asarray(samples_ms, dtype=float), min(10, len(samples_ms)))
    return LatencyStats.from_rounds([chunk.tolist() for chunk in chunks])


MODEL = "model"


def round_orders(companions: Sequence[str]) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """Every order of the model and its companions, as (timed before the model, timed after it): cycled through,
    each companion precedes and follows the model, and each other, equally often."""
    orders = []
    for order in permutations((MODEL, *companions)):
        at = order.index(MODEL)
        orders.append((order[:at], order[at + 1:]))
    return orders


class Companions:
    """Times the companions of each round around the model: ``before`` is pytest-benchmark's ``setup``, ``after``
    its ``teardown``; round ``i`` uses ``round_orders(...)[i % len]``. ``samples``: per companion, one per round."""

    def __init__(self, runners: dict[str, Runner], timer: Callable[[], Callable[[], float]]) -> None:
        self.runners = runners
        self.timer = timer
        self.orders = round_orders(tuple(runners))
        self.samples: dict[str, list[float]] = {key: [] for key in runners}
        self.rounds = 0

    def _time(self, keys: tuple[str, ...]) -> None:
        timer = self.timer()
        for key in keys:
            start = timer()
            self.runners[key].run()
            self.samples[key].append((timer() - start) * 1000)

    def before(self) -> None:
        self._time(self.orders[self.rounds % len(self.orders)][0])

    def after(self) -> None:
        self._time(self.orders[self.rounds % len(self.orders)][1])
        self.rounds += 1


def timer_name(timer: Callable[[], float]) -> str:
    return f"{getattr(timer, '__module__', '')}.{getattr(timer, '__qualname__', repr(timer))}".lstrip(".")


@contextmanager
def user_errors() -> Iterator[None]:
    """A user's mistake fails the test with one line, not a traceback into latlab."""
    try:
        yield
    except LatlabError as exc:
        raise pytest.fail.Exception(str(exc), pytrace=False) from None


class Latency:
    """One measurement per test, like pytest-benchmark's ``benchmark``. ``warn`` reports what the user should know;
    ``mismatch`` receives a comparison with something measured differently and decides (warn, or fail the test)."""

    def __init__(self, benchmark: Any, state: SessionState, warn: Callable[[str], None],
                 mismatch: Callable[[str], None]) -> None:
        self.benchmark = benchmark
        self.state = state
        self.warn = warn
        self.mismatch = mismatch
        self.used = False

    def measure(self, model: ModelLike, inputs: Inputs = None, *, backend: str = "torch", threads: int = 1,
                precision: str = "f32", device: str = "cpu", quantization: str | None = None) -> BenchRecord | None:
        """Time ``model``; with ``--latlab-fail`` and ``--benchmark-compare``, gate it against the saved run.
        Returns None under ``--benchmark-disable`` (the model then runs once, untimed). ``precision="int8"``
        quantizes it with the backend's first method unless ``quantization`` names one."""
        with user_errors():
            chosen = self._start(backend)
            settings = chosen.settings(threads, precision, device, quantization)
            target = resolve(model, inputs)
            record = self._run(chosen, settings, target, prepare(chosen, target, settings))
            return self._finish(record, [])

    def ab(self, candidate: ModelLike, reference: ModelLike, inputs: Inputs = None, *, backend: str = "torch",
           threads: int = 1, precision: str = "f32", device: str = "cpu", quantization: str | None = None,
           fail: str = "p90:10%") -> BenchRecord | None:
        """Time ``candidate`` and ``reference`` in alternating rounds of the same run and fail when the candidate
        is slower by more than ``fail``. Drift between processes cannot fool this gate: both sides share it."""
        with user_errors():
            gates = parse_gates(fail)
            chosen = self._start(backend)
            settings = chosen.settings(threads, precision, device, quantization)
            new, old = resolve(candidate, inputs), resolve(reference, inputs)
            record = self._run(chosen, settings, new, prepare(chosen, new, settings),
                               reference=prepare(chosen, old, settings))
            return self._finish(record, [] if record is None else [judge_ab(g, record) for g in gates])

    def against_profile(self, profile: str | Path, arch: Architecture | dict | str | Path, *,
                        fail: str = "median:15%") -> BenchRecord | None:
        """Time ``arch`` with the profile's backend and settings and fail when it is slower than the profile's
        prediction by more than ``fail``. A profile predicts medians measured with the wall clock."""
        from latlab.machine import process_problems, profile_problems
        from latlab.predict import LatencyTable, predict_ms
        from latlab.profile import load_profile

        with user_errors():
            gates = parse_gates(fail)
            if any(g.stat != "median" for g in gates):
                raise LatlabError(f"gate {fail!r}: a profile predicts the median; use median:LIMIT%")
            loaded = load_profile(profile)
            target_arch = as_architecture(arch)
            loaded.space.check_contains(target_arch)
            predicted = predict_ms(target_arch, LatencyTable.from_profile(loaded))
            chosen, settings = self._start(loaded.backend), loaded.settings
            target = resolve(target_arch, None)
            record = self._run(chosen, settings, target, prepare(chosen, target, settings))
            if record is None:
                return None
            timer = [f"timer: {record.timer} here vs {WALL_CLOCK} in profile"] if record.timer != WALL_CLOCK else []
            problems = profile_problems(loaded) + process_problems(loaded, chosen) + timer
            self._compared_with(f"profile {profile}", problems)
            return self._finish(record, [judge(g, "profile", predicted, g.value(record.stats)) for g in gates])

    def _start(self, backend: str) -> Backend:
        if self.used:
            raise LatlabError("the latency fixture measures once per test; use one test per model (or parametrize)")
        self.used = True
        return load_backend(backend)

    def _timer(self) -> Callable[[], float]:
        """pytest-benchmark's timer for this test (--benchmark-timer or the benchmark marker), once it is set up."""
        stats = self.benchmark.stats
        return stats.options["timer"] if stats else time.perf_counter

    def _run(self, backend: Backend, settings: Settings, target: Target, runner: Runner,
             reference: Runner | None = None) -> BenchRecord | None:
        anchor = Anchor() if settings.device == "cpu" else None
        companions = Companions({k: r for k, r in (("reference", reference), ("anchor", anchor)) if r is not None},
                                self._timer)
        round_ms = sum(warm_up(r, PROBE) for r in (runner, *companions.runners.values()))
        rounds, warmup = plan_rounds(round_ms, self.state.seconds, self.state.smoke)
        self.benchmark.pedantic(runner.run, setup=companions.before, teardown=companions.after, rounds=rounds,
                                warmup_rounds=warmup, iterations=1)
        if not self.benchmark.stats:
            return None  # --benchmark-disable: pytest-benchmark ran the model once, untimed
        model_ms = [s * 1000 for s in self.benchmark.stats.stats.data]
        anchor_ms, reference_ms = (companions.samples.get(key, [])[warmup:] for key in ("anchor", "reference"))
        record = BenchRecord(
            backend=backend.name, runtime_version=backend.runtime_version(), threads=settings.threads,
            precision=settings.numerics, device=settings.device, batch=target.batch, seq_len=target.seq_len,
            timer=timer_name(self._timer()), model=target.label,
            stats=stats_of(model_ms),
            anchor=stats_of(anchor_ms) if anchor else None, anchor_name=ANCHOR_NAME if anchor else "",
            relative=relative_to_anchor(model_ms, anchor_ms) if anchor else {},
            reference=stats_of(reference_ms) if reference else None, applied=runner.applied,
            samples_ms=stored(model_ms), anchor_samples_ms=stored(anchor_ms), reference_samples_ms=stored(reference_ms),
        )
        self.benchmark.extra_info["latlab"] = record.to_json()  # saved even if a later check fails the test
        return record

    def _against_baseline(self, record: BenchRecord) -> list[Verdict]:
        """The --latlab-fail gates against the baseline loaded by --latlab-baseline or --benchmark-compare (settings
        checked first)."""
        baseline, source = self.state.baseline, self.state.baseline_source
        if baseline is None:
            if self.state.gates:
                raise LatlabError("--latlab-fail needs a saved baseline, but no latlab run was loaded (see "
                                  "pytest-benchmark's warning; check --benchmark-storage)")
            return []
        bases = baseline.get(self.benchmark.fullname)
        if not bases:
            if self.state.gates:
                self.warn(f"{self.benchmark.fullname}: not in {source}; no baseline, so --latlab-fail was not applied")
            return []
        differences = (line for base in bases for line in record.setting_differences(base, source))
        self._compared_with(source, list(dict.fromkeys(differences)))
        return [judge_saved(g, bases, record) for g in self.state.gates]

    def _compared_with(self, source: str, problems: list[str]) -> None:
        if problems:
            self.mismatch(f"{self.benchmark.fullname}: {source} differs from this run: {'; '.join(problems)}")

    def _finish(self, record: BenchRecord | None, verdicts: list[Verdict]) -> BenchRecord | None:
        if record is None:
            return None
        verdicts = self._against_baseline(record) + verdicts
        record = replace(record, verdicts=tuple(v.to_json() for v in verdicts))
        self.benchmark.extra_info["latlab"] = record.to_json()
        failed = [v for v in verdicts if v.failed]
        if failed and not self.state.smoke:  # three rounds say nothing about speed: recorded, not enforced
            lines = "\n  ".join(v.describe() for v in verdicts)
            raise LatlabError(f"latency gate failed for {record.model} on {record.backend}:\n  {lines}")
        return record
