"""The pytest plugin as a user meets it: test files that use the ``latency`` fixture, run by pytester.

Quick checks run pytest in-process with ``--latlab-smoke`` (three rounds; they check behaviour, not speed). The
end-to-end check times real models in subprocesses with the CPU-time clock, like a user on a shared machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import replace
from itertools import permutations
from pathlib import Path

import pytest
import torch
# pytester drops from sys.modules what an in-process run imported. torch imports torch._dynamo lazily, on the first
# call of some functions, and it registers an operator library that cannot be registered twice: imported here, once.
import torch._dynamo  # noqa: F401

from backends.torch_eager import TorchBackend
from latlab.blocks import embeddings_block, head_block, layer_block, overhead_block
from latlab.fingerprint import Fingerprint, read_fingerprint
from latlab.regression.anchor import relative_to_anchor
from latlab.backend import Runner, Settings
from latlab.regression.fixture import MODEL, Companions, plan_rounds, stats_of
from latlab.profile import save_profile
from latlab.space import SearchSpace

pytest_plugins = ["pytester"]
# pytest-benchmark's own warnings from the inner runs (a file it cannot load, machine_info that differs) are expected.
pytestmark = pytest.mark.filterwarnings("ignore::pytest_benchmark.logger.PytestBenchmarkWarning")

ROOT = Path(__file__).resolve().parent.parent

USER_TESTS = '''
import os

import torch

WORK = float(os.environ.get("LATLAB_E2E_WORK", "1.0"))


class Chain(torch.nn.Module):
    """A user's model: ``blocks`` matrix products, so 10 blocks are 25% more work than 8."""

    def __init__(self, blocks):
        super().__init__()
        torch.manual_seed(0)
        self.w = torch.nn.Parameter(torch.randn(256, 256) / 16)
        self.blocks = blocks

    def forward(self, x):
        for _ in range(self.blocks):
            x = torch.tanh(x @ self.w)
        return x


X = torch.randn(64, 256)


def test_model(latency):
    latency.measure(Chain(round(8 * WORK)), X)


def test_model_ab(latency):
    latency.ab(Chain(round(8 * WORK)), Chain(8), X, fail="p90:10%")
'''


def test_relative_to_anchor_ignores_the_machine_slowing_down_mid_run() -> None:
    """The second half of the run is 1.5x slower for everything: the raw p90 jumps, the relative one does not."""
    model = [2.0 + 0.01 * (i % 7) for i in range(200)]
    anchor = [0.5 + 0.002 * (i % 5) for i in range(200)]
    slow_half = [m * 1.5 for m in model[100:]], [a * 1.5 for a in anchor[100:]]
    steady = relative_to_anchor(model, anchor)
    drifting = relative_to_anchor(model[:100] + slow_half[0], anchor[:100] + slow_half[1])
    assert stats_of(model[:100] + slow_half[0]).p90_ms > 1.4 * stats_of(model).p90_ms
    assert drifting["p90"] == pytest.approx(steady["p90"], rel=0.02)
    assert drifting["median"] == pytest.approx(steady["median"], rel=0.02)
    assert steady["median"] == pytest.approx(2.03 / 0.504, rel=0.02)


@pytest.mark.parametrize(("round_ms", "seconds", "smoke", "expected"), [
    (10.0, 2.0, False, (200, 20)),  # 2 s of 10 ms rounds; 0.2 s of warm-up
    (100.0, 2.0, False, (50, 5)),  # never fewer than 50 rounds, so that a p90 means something
    (0.0001, 2.0, False, (20_000, 20_000)),  # an empty model: capped; warm-up never longer than the run
    (10.0, 2.0, True, (3, 1)),
])
def test_plan_rounds(round_ms: float, seconds: float, smoke: bool, expected: tuple[int, int]) -> None:
    assert plan_rounds(round_ms, seconds, smoke) == expected


class Logged(Runner):
    def __init__(self, name: str, log: list[str]) -> None:
        super().__init__()
        self.name, self.log = name, log

    def run(self) -> None:
        self.log.append(self.name)


def test_rounds_cycle_through_every_order() -> None:
    """Six rounds time model, reference and anchor in each of their six orders, one sample per companion a round:
    no side is always first after pytest-benchmark's own work, or always last."""
    log: list[str] = []
    companions = Companions({name: Logged(name, log) for name in ("reference", "anchor")}, lambda: time.perf_counter)
    for _ in range(6):
        companions.before()
        log.append(MODEL)
        companions.after()
    rounds = [tuple(log[i:i + 3]) for i in range(0, 18, 3)]
    assert sorted(rounds) == sorted(permutations((MODEL, "reference", "anchor")))
    assert {key: len(samples) for key, samples in companions.samples.items()} == {"reference": 6, "anchor": 6}


def saved_runs(pytester: pytest.Pytester) -> list[Path]:
    return sorted(pytester.path.glob(".benchmarks/*/*.json"))


def edit_run(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.fixture
def user_project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_user=USER_TESTS)
    return pytester


def smoke(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """In-process, three rounds per test: for behaviour that does not depend on timing."""
    return pytester.runpytest("--latlab-smoke", "-p", "no:cacheprovider", *args)


def quick(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """In-process, the minimum of 50 rounds per test, with gates enforced."""
    return pytester.runpytest("--latlab-seconds=0.01", "-p", "no:cacheprovider", *args)


def test_plugin_import_is_cheap_and_registered() -> None:
    """Every pytest run of the environment loads the plugin: it must not drag in torch, numpy or the runtimes."""
    heavy = ("torch", "numpy", "transformers", "onnxruntime", "openvino")
    code = f"import sys, latlab.regression.plugin; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    from importlib.metadata import entry_points

    assert [ep.value for ep in entry_points(group="pytest11") if ep.name == "latlab"] == ["latlab.regression.plugin"]


def test_saved_run_carries_fingerprint_and_record(user_project: pytest.Pytester) -> None:
    result = smoke(user_project, "--benchmark-save=base")
    result.assert_outcomes(passed=2)
    (run,) = saved_runs(user_project)
    data = json.loads(run.read_text())
    assert Fingerprint.from_json(data["machine_info"]["latlab"]["fingerprint"]) == read_fingerprint()
    records = {b["name"]: b["extra_info"]["latlab"] for b in data["benchmarks"]}
    model = records["test_model"]
    assert (model["backend"], model["runtime_version"], model["threads"], model["precision"]) == \
        ("torch", torch.__version__, 1, "f32")
    assert (model["batch"], model["seq_len"], model["timer"], model["n"]) == (64, 256, "time.perf_counter", 3)
    assert model["min_ms"] <= model["median_ms"] <= model["p90_ms"] <= model["p95_ms"] <= model["p99_ms"]
    assert model["anchor"]["name"] and model["anchor"]["n"] == 3
    ab = records["test_model_ab"]
    assert ab["reference"]["n"] == 3
    assert [v["against"] for v in ab["verdicts"]] == ["reference"]


@pytest.mark.parametrize("expression", ["p90", "p90:10", "p42:10%", "p90:ten%", "p90:10%,"])
def test_bad_gate_expression_is_a_usage_error(user_project: pytest.Pytester, expression: str) -> None:
    result = quick(user_project, f"--latlab-fail={expression}", "--benchmark-compare")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--latlab-fail: bad gate*expected STAT:LIMIT% such as p90:10%*"])


def test_gate_without_baseline_is_a_usage_error(user_project: pytest.Pytester) -> None:
    result = quick(user_project, "--latlab-fail=p90:10%")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--latlab-fail compares with a saved baseline: add --latlab-baseline=NAME*"])


def test_baseline_saved_by_several_runs(user_project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three runs saved as 'base' (and one as 'other') are one baseline of three processes: the verdict says so,
    prints its interval and fails a model that does four times the work."""
    only = ("-k", "test_model and not ab")
    for name in ("base", "base", "other", "base"):
        quick(user_project, f"--benchmark-save={name}", *only).assert_outcomes(passed=1)
    gate = ("--latlab-baseline=base", "--benchmark-json=run.json", *only)
    same = quick(user_project, "--latlab-fail=median:1000%", *gate)
    same.assert_outcomes(passed=1)
    same.stdout.fnmatch_lines(["latlab: --latlab-fail median:1000% against baseline 'base' (3 saved runs)"])
    (bench,) = json.loads((user_project.path / "run.json").read_text())["benchmarks"]
    (verdict,) = bench["extra_info"]["latlab"]["verdicts"]
    assert verdict["baseline_processes"] == 3 and verdict["interval_pct"] and not verdict["note"]
    monkeypatch.setenv("LATLAB_E2E_WORK", "4.0")
    slower = quick(user_project, "--latlab-fail=median:50%", *gate)
    slower.assert_outcomes(failed=1)
    slower.stdout.fnmatch_lines(["*FAIL median * ms vs baseline * ms (3 processes): +*%, 95% CI +*% to +*%, "
                                 "drift-corrected (limit +50%)*"])


@pytest.mark.parametrize(("extra", "message"), [
    ((), "*--latlab-baseline=base: no run saved as 'base' under *; save the baseline with --benchmark-save=base*"),
    (("--benchmark-compare",), "*--latlab-baseline and --benchmark-compare both name a baseline: keep one*"),
])
def test_latlab_baseline_usage_errors(user_project: pytest.Pytester, extra: tuple[str, ...], message: str) -> None:
    quick(user_project, "--benchmark-save=other").assert_outcomes(passed=2)
    result = quick(user_project, "--latlab-baseline=base", "--latlab-fail=median:5%", *extra)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_gate_with_unreadable_baseline_fails_the_tests(user_project: pytest.Pytester) -> None:
    """pytest-benchmark only warns about a file it cannot load; the gate must not pass for lack of a baseline."""
    smoke(user_project, "--benchmark-save=base").assert_outcomes(passed=2)
    saved_runs(user_project)[0].write_text("{ truncated")
    result = quick(user_project, "--benchmark-compare=0001", "--latlab-fail=p90:10%")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*--latlab-fail needs a saved baseline*"])


def test_unknown_backend_fails_with_one_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import torch

        def test_it(latency):
            latency.measure(torch.nn.Linear(4, 4), torch.ones(1, 4), backend="nope")
    """)
    result = smoke(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*unknown backend 'nope'; registered backends: *"])
    assert "Traceback" not in result.stdout.str() and "regression/fixture.py" not in result.stdout.str()


def test_onnx_file_on_onnxruntime_and_openvino(pytester: pytest.Pytester) -> None:
    """In a subprocess: the runtimes' C extensions must not be imported twice, which in-process runs would do."""
    from backends.onnx_export import export_onnx

    model, inputs = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.ReLU()), (torch.randn(2, 16),)
    (pytester.path / "model.onnx").write_bytes(export_onnx(model, inputs))
    pytester.makepyfile("""
        import pytest
        import torch
        from latlab.registry import load_backend

        @pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
        def test_onnx(latency, backend):
            available = load_backend(backend).is_available()
            if not available:
                pytest.skip(available.reason)
            record = latency.measure("model.onnx", torch.randn(2, 16), backend=backend)
            assert (record.backend, record.model, record.batch, record.seq_len) == (backend, "onnx model.onnx", 2, 16)

        def test_int8(latency):
            record = latency.measure("model.onnx", torch.randn(2, 16), backend="onnxruntime", precision="int8",
                                     quantization="static")
            assert record.precision == "int8-static"

        def test_missing_inputs(latency):
            latency.measure("model.onnx", backend="onnxruntime")

        def test_int8_method_the_backend_lacks(latency):
            latency.measure("model.onnx", torch.randn(2, 16), backend="openvino", precision="int8",
                            quantization="dynamic")
    """)
    result = pytester.runpytest_subprocess("--latlab-smoke", "-p", "no:cacheprovider", "-rs")
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) + outcomes.get("skipped", 0) == 3 and outcomes["failed"] == 2, outcomes
    result.stdout.fnmatch_lines(["*model.onnx: an ONNX model needs example inputs*"])
    result.stdout.fnmatch_lines(["*backend 'openvino' has no dynamic int8 quantization (it has: static)*"])


def test_fixture_measures_once_per_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import torch

        def test_it(latency):
            latency.measure(torch.nn.Linear(4, 4), torch.ones(1, 4))
            latency.measure(torch.nn.Linear(4, 4), torch.ones(1, 4))
    """)
    result = smoke(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*the latency fixture measures once per test*"])


def test_smoke_mode_records_timing_gates_without_enforcing_them(pytester: pytest.Pytester) -> None:
    """Three rounds cannot tell speed: a 16x slower candidate passes in smoke mode (verdict recorded) and fails
    with real rounds."""
    pytester.makepyfile("""
        import torch

        def test_ab(latency):
            x = torch.randn(64, 256)
            slow = torch.nn.Sequential(*[torch.nn.Linear(256, 256) for _ in range(16)])
            latency.ab(slow, torch.nn.Linear(256, 256), x, fail="median:10%")
    """)
    result = smoke(pytester, "--benchmark-json=run.json")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["latlab: smoke mode, 3 rounds per latency test; timing gates are recorded, not "
                                 "enforced"])
    (bench,) = json.loads((pytester.path / "run.json").read_text())["benchmarks"]
    (verdict,) = bench["extra_info"]["latlab"]["verdicts"]
    assert verdict["failed"] and verdict["against"] == "reference"
    quick(pytester).assert_outcomes(failed=1)
    rejected = pytester.runpytest("--latlab-smoke", "--latlab-fail=p90:10%", "--benchmark-compare")
    assert rejected.ret == pytest.ExitCode.USAGE_ERROR


def test_benchmark_disable_runs_the_model_once_untimed(user_project: pytest.Pytester) -> None:
    smoke(user_project, "--benchmark-disable").assert_outcomes(passed=2)


def test_other_hardware_warns_or_fails_when_strict(user_project: pytest.Pytester) -> None:
    smoke(user_project, "--benchmark-save=base").assert_outcomes(passed=2)
    edit_run(saved_runs(user_project)[0],
             lambda d: d["machine_info"]["latlab"]["fingerprint"].update(cpu_model="Some Other CPU"))
    warned = smoke(user_project, "--benchmark-compare=0001")
    warned.assert_outcomes(passed=2)
    warned.stdout.fnmatch_lines(["*LatlabDeviceWarning: the run loaded by --benchmark-compare was measured on other "
                                 "hardware: cpu_model: * here vs Some Other CPU in baseline*"])
    strict = smoke(user_project, "--benchmark-compare=0001", "--latlab-strict-device")
    assert strict.ret == pytest.ExitCode.USAGE_ERROR
    strict.stderr.fnmatch_lines(["*measured on other hardware: cpu_model*(--latlab-strict-device)*"])


def test_other_runtime_version_warns_or_fails_when_strict(user_project: pytest.Pytester) -> None:
    smoke(user_project, "--benchmark-save=base").assert_outcomes(passed=2)

    def older_torch(data: dict) -> None:
        for bench in data["benchmarks"]:
            bench["extra_info"]["latlab"]["runtime_version"] = "1.0.0"

    edit_run(saved_runs(user_project)[0], older_torch)
    warned = smoke(user_project, "--benchmark-compare=0001", "-k", "test_model and not ab")
    warned.assert_outcomes(passed=1)
    warned.stdout.fnmatch_lines([f"*runtime_version: {torch.__version__} here vs 1.0.0 in the compared run*"])
    strict = smoke(user_project, "--benchmark-compare=0001", "--latlab-strict-device", "-k", "test_model and not ab")
    strict.assert_outcomes(failed=1)
    strict.stdout.fnmatch_lines(["*runtime_version: * here vs 1.0.0 in the compared run (--latlab-strict-device)*"])


SPACE = SearchSpace("t", layers=(1,), hidden=(64,), heads=(2,), ffn=(128,), seq_len=(16,), batch=(1,), labels=2,
                    vocab=100)
ARCH = {"hidden": 64, "layers": 1, "heads": 2, "ffn": 128, "seq_len": 16, "batch": 1, "labels": 2, "vocab": 100}


@pytest.mark.parametrize(("block_ms", "outcome"), [(1000.0, "passed"), (1e-6, "failed")])
def test_profile_gate(pytester: pytest.Pytester, make_profile, block_ms: float, outcome: str) -> None:
    """A prediction far above the measured latency passes; one far below it fails and says by how much."""
    medians = {overhead_block(1, 16): block_ms, embeddings_block(1, 16, 64, 100): 2 * block_ms,
               layer_block(1, 16, 64, 2, 128): 2 * block_ms, head_block(1, 16, 64, 2): 2 * block_ms}
    profile = replace(make_profile(medians, space=SPACE, fingerprint=read_fingerprint()), backend="torch",
                      runtime_version=torch.__version__, applied=TorchBackend().process_state(Settings()))
    save_profile(profile, pytester.path / "profile.json")
    pytester.makepyfile(f"""
        def test_student(latency):
            latency.against_profile("profile.json", {ARCH!r}, fail="median:15%")
    """)
    result = quick(pytester, "-W", "error::latlab.regression.plugin.LatlabDeviceWarning")
    result.assert_outcomes(**{outcome: 1})
    if outcome == "failed":
        result.stdout.fnmatch_lines(["*FAIL median * ms vs profile * ms: *% (limit +15%)*"])


def test_profile_gate_needs_a_median_gate(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        def test_student(latency):
            latency.against_profile("profile.json", {}, fail="p90:15%")
    """)
    result = smoke(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*a profile predicts the median; use median:LIMIT%*"])


def run_user_suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, work: float, seconds: float,
                   *args: str) -> pytest.RunResult:
    """One pytest process, as a user on a shared machine would start it: the CPU-time clock."""
    monkeypatch.setenv("LATLAB_E2E_WORK", str(work))
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "--benchmark-timer=time.process_time",
                                         f"--latlab-seconds={seconds}", *args, timeout=300)


GATES = ("--benchmark-compare=0001", "--latlab-fail=p90:10%")


def assert_both_gates_failed(result: pytest.RunResult) -> None:
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*FAIL p90 * ms vs baseline * ms: +*%, 95% CI +*, drift-corrected (limit +10%; one "
                                 "baseline process: the interval covers the noise within the two runs*"])
    result.stdout.fnmatch_lines(["*FAIL p90 * ms vs reference * ms: +*% (limit +10%)*"])


@pytest.mark.slow
def test_end_to_end_slower_model_fails_both_gates(user_project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                                   cli) -> None:
    """Baseline saved; 25% more work fails the p90 gate against it and the A/B gate; the same model passes both;
    ``latlab report`` on the baseline and the slower run fails too. 3 s per test: ~1.5 min on a busy machine."""
    run_user_suite(user_project, monkeypatch, 1.0, 3, "--benchmark-save=baseline").assert_outcomes(passed=2)
    assert_both_gates_failed(run_user_suite(user_project, monkeypatch, 1.25, 3, *GATES, "--benchmark-save=slower"))
    run_user_suite(user_project, monkeypatch, 1.0, 3, *GATES).assert_outcomes(passed=2)
    baseline, slower = saved_runs(user_project)
    report = cli("report", baseline, slower, "--fail", "p90:10%")
    assert report.exit_code == 1, report.output
    assert report.stdout.count("**FAIL** p90 +") == 2


def test_end_to_end_light(user_project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, cli) -> None:
    """The default run's variant of the above: 0.5 s per test and twice the work, more than drift here can hide."""
    run_user_suite(user_project, monkeypatch, 1.0, 0.5, "--benchmark-save=baseline").assert_outcomes(passed=2)
    assert_both_gates_failed(run_user_suite(user_project, monkeypatch, 2.0, 0.5, *GATES, "--benchmark-save=slower"))
    report = cli("report", *saved_runs(user_project), "--fail", "p90:10%")
    assert report.exit_code == 1, report.output
    assert report.stdout.count("**FAIL** p90 +") == 2


def test_bench_suite_smoke(tmp_path: Path) -> None:
    """latlab's own suite (tests/benchmarks) in smoke mode on the smallest student, every backend, so it cannot rot."""
    out = tmp_path / "run.json"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(ROOT / "tests" / "benchmarks"), "-m", "bench", "--latlab-smoke",
         "-k", "small", "-p", "no:cacheprovider", "-q", "-rs", f"--benchmark-json={out}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    from latlab.regression.runs import load_run
    from latlab.registry import backend_names, load_backend

    run = load_run(out)
    assert run.fingerprint == read_fingerprint()
    measured = {record.backend for record in run.records.values()}
    available = {name for name in backend_names() if load_backend(name).is_available()}
    assert measured == available and "torch" in measured
    for name in set(backend_names()) - available:
        assert f"{name}: " in result.stdout  # an absent runtime is skipped with its reason
