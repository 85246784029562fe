"""latlab's pytest plugin (entry point group ``pytest11``): installing latlab enables it in every pytest run.

It provides the ``latency`` fixture (``latlab.regression.fixture``), handing it the session state and deciding what
a mismatch means; writes this machine's latlab fingerprint into every pytest-benchmark run it saves; and checks
the hardware of a run loaded by ``--benchmark-compare``. The checks return problems; this module, the edge, turns
them into ``pytest.UsageError``, a failed test or a warning. Because every pytest run in the environment loads it,
it imports only pytest and stdlib-only latlab modules at import time; torch, numpy and the runtimes load inside
the fixture and hooks when they are used. It asks for torch's huge pages as latlab's commands do
(``latlab.process``), so a latency test runs in the process state of the profiles and runs it compares with.
"""

from __future__ import annotations

import warnings
from functools import partial
from typing import TYPE_CHECKING, Any

import pytest

from latlab.errors import LatlabError
from latlab.process import prepare_process
from latlab.regression.gates import parse_gates
from latlab.regression.session import SessionState

if TYPE_CHECKING:
    from latlab.regression.fixture import Latency
    from latlab.regression.runs import SavedRun


class LatlabDeviceWarning(pytest.PytestWarning):
    """A comparison with a run or profile from other hardware, runtime version or settings."""


class LatlabGateWarning(pytest.PytestWarning):
    """A gate applied with less than it should have: a point comparison where an interval was due."""


STATE = pytest.StashKey[SessionState]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("latlab", "latency regression tests (latlab)")
    group.addoption("--latlab-fail", action="append", default=[], metavar="STAT:LIMIT%",
                    help="fail a latency test that got slower than the run loaded by --benchmark-compare, "
                         "by more than the limit with 95% confidence (bootstrap interval), "
                         "e.g. median:5% (repeatable or comma-separated; STAT: min, median, mean, p90, p95, p99); "
                         "compared relative to the calibration anchor when both runs timed it")
    group.addoption("--latlab-baseline", metavar="NAME", default=None,
                    help="gate against every run saved as NAME (--benchmark-save=NAME in separate pytest runs: each "
                         "is one process of the baseline, 5 recommended) instead of --benchmark-compare; the "
                         "interval then includes how much those processes differ")
    group.addoption("--latlab-strict-device", action="store_true",
                    help="fail instead of warn when a compared run or profile comes from other hardware, another "
                         "runtime version or other settings")
    group.addoption("--latlab-seconds", type=float, default=2.0, metavar="S",
                    help="timed seconds per latency test (default: 2.0)")
    group.addoption("--latlab-smoke", action="store_true",
                    help="three rounds per latency test: checks that the tests run, not how fast (timing gates "
                         "are recorded but not enforced)")


def pytest_configure(config: pytest.Config) -> None:
    prepare_process()  # before any test module allocates a tensor
    try:
        gates = tuple(gate for text in config.getoption("latlab_fail") for gate in parse_gates(text))
    except LatlabError as exc:
        raise pytest.UsageError(f"--latlab-fail: {exc}") from None
    if gates and config.getoption("latlab_smoke"):
        raise pytest.UsageError("--latlab-smoke times three rounds, too few to gate on: drop --latlab-fail or it")
    name, compare = config.getoption("latlab_baseline"), config.getoption("benchmark_compare", None)
    if name and compare:
        raise pytest.UsageError("--latlab-baseline and --benchmark-compare both name a baseline: keep one")
    if gates and not (name or compare):
        raise pytest.UsageError("--latlab-fail compares with a saved baseline: add --latlab-baseline=NAME (the runs "
                                "saved with --benchmark-save=NAME), --benchmark-compare (the latest run) or "
                                "--benchmark-compare=NUM")
    seconds = config.getoption("latlab_seconds")
    if not seconds > 0:
        raise pytest.UsageError(f"--latlab-seconds must be positive, got {seconds}")
    config.stash[STATE] = SessionState(gates, config.getoption("latlab_strict_device"), seconds,
                                      config.getoption("latlab_smoke"))
    if name:
        load_baseline(config, name)


def load_baseline(config: pytest.Config, name: str) -> None:
    """--latlab-baseline=NAME: every run saved as NAME under --benchmark-storage, one process each."""
    from latlab.regression.runs import find_runs, load_run, storage_folder

    try:
        storage = storage_folder(config.getoption("benchmark_storage"))
        paths = find_runs(storage, name)
        if not paths:
            raise LatlabError(f"--latlab-baseline={name}: no run saved as {name!r} under {storage}; save the baseline "
                              f"with --benchmark-save={name}, once per pytest run (5 runs recommended)")
        runs = [load_run(path) for path in paths]
    except LatlabError as exc:
        raise pytest.UsageError(str(exc)) from None
    label = f"baseline {name!r} ({len(runs)} saved run{'s' if len(runs) > 1 else ''})"
    adopt_baseline(config, runs, label, label)


def pytest_report_header(config: pytest.Config) -> list[str]:
    state = config.stash[STATE]
    lines = [f"latlab: --latlab-fail {', '.join(str(g) for g in state.gates)} against {state.baseline_source}"] \
        if state.gates else []
    if state.smoke:
        lines.append("latlab: smoke mode, 3 rounds per latency test; timing gates are recorded, not enforced")
    return lines


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    machine_info["latlab"] = {"fingerprint": config.stash[STATE].fingerprint()}


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_compare_machine_info(config: pytest.Config, benchmarksession: Any, machine_info: dict[str, Any],
                                          compared_benchmark: dict[str, Any]) -> None:
    """Keep the compared run's latlab records for the gates, and say loudly if it ran on other hardware."""
    from latlab.regression.runs import parse_run

    source = "the run loaded by --benchmark-compare"
    try:
        run = parse_run(compared_benchmark, source)
    except LatlabError as exc:
        raise pytest.UsageError(str(exc)) from None
    adopt_baseline(config, [run], source, "the compared run")


def adopt_baseline(config: pytest.Config, runs: list[SavedRun], source: str, label: str) -> None:
    """Add the runs' latlab records to the session's baseline (``label`` in verdicts), one process per run; warn
    when ``source`` was saved without samples, warn or refuse when it ran on other hardware."""
    from latlab.fingerprint import Fingerprint
    from latlab.regression.runs import by_test, hardware_problems

    state = config.stash[STATE]
    runs = [run for run in runs if run.records]
    if not runs:
        return  # not a latlab run: pytest-benchmark's own machine_info check covers it
    known = state.baseline or {}
    state.baseline = {**known, **{name: known.get(name, ()) + records for name, records in by_test(runs).items()}}
    state.baseline_source = label
    if state.gates and not all(record.samples_ms for run in runs for record in run.records.values()):
        config.issue_config_time_warning(LatlabGateWarning(
            f"{source} was saved without raw samples (by an older latlab): --latlab-fail compares point estimates, "
            "without a confidence interval; save a new baseline"), stacklevel=2)
    here = Fingerprint.from_json(state.fingerprint())
    problems = list(dict.fromkeys(line for run in runs
                                  for line in hardware_problems(run, here, include_gpus=run.uses_gpu)))
    if not problems:
        return
    message = f"{source} was measured on other hardware: {'; '.join(problems)}"
    if state.strict_device:
        raise pytest.UsageError(f"{message} (--latlab-strict-device); save a baseline on this machine")
    config.issue_config_time_warning(LatlabDeviceWarning(f"{message}; its latencies may not compare"), stacklevel=2)


def warn(message: str) -> None:
    warnings.warn(LatlabDeviceWarning(message), stacklevel=2)


def mismatch(strict: bool, message: str) -> None:
    """A measurement compared with one taken differently: a failed test under --latlab-strict-device, else a
    warning."""
    if strict:
        pytest.fail(f"{message} (--latlab-strict-device)", pytrace=False)
    warn(f"{message}; the comparison may not hold")


@pytest.fixture
def latency(benchmark: Any, request: pytest.FixtureRequest) -> Latency:
    """Times a model on a latlab backend through pytest-benchmark and applies latlab's gates.

    ``latency.measure(model, inputs, backend=...)``, ``latency.ab(candidate, reference, inputs, fail="p90:10%")``,
    ``latency.against_profile(profile_path, arch, fail="median:15%")``; see docs/regression.md.
    """
    from latlab.regression.fixture import Latency

    state = request.config.stash[STATE]
    return Latency(benchmark, state, warn=warn, mismatch=partial(mismatch, state.strict_device))
