"""Real, small runs on each installed runtime: profile the tiny space, then validate whole models against it.

Nothing here asserts a latency or an accuracy (this machine drifts; see shared/FINDINGS.md): the tests check that
every step runs for real, that the numbers are there and sane, and that the settings were applied and read back.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from latlab.backend import Backend, Settings
from latlab.blocks import layer_block
from latlab.errors import LatlabError
from latlab.modules import build_block
from latlab.profile import load_profile
from latlab.registry import load_backend
from latlab.space import load_space
from latlab.validate import VALIDATION_SCHEMA

from conftest import TINY_SPACE

# Where each runtime reports the intra-op threads it actually uses.
THREADS_KEY = {"torch": "intra_op_threads", "onnxruntime": "intra_op_threads", "openvino": "inference_num_threads"}
QUICK = ("--rounds", "3", "--min-seconds", "0.05", "--min-samples", "3")
SMALL_LAYER = layer_block(batch=1, seq_len=8, hidden=32, heads=2, ffn=64)


def installed(name: str) -> Backend:
    backend = load_backend(name)
    available = backend.is_available()
    if not available:
        pytest.skip(f"{name} runtime not available: {available.reason}")
    return backend


@pytest.fixture(autouse=True)
def keep_torch_threads() -> Iterator[None]:
    """The torch backend sets the process-wide thread count; leave it as the next test expects it."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", list(THREADS_KEY))
def test_profile_and_validate_on_the_real_runtime(cli, tmp_path: Path, name: str) -> None:
    backend = installed(name)
    out, report = tmp_path / "profile.json", tmp_path / "validation.json"
    profiled = cli("profile", "--backend", name, "--space", TINY_SPACE, "--threads", "1", "--precision", "f32",
                   *QUICK, "--out", out)
    assert profiled.exit_code == 0, profiled.output

    profile = load_profile(out)
    assert profile.complete and profile.runtime_version == backend.runtime_version()
    assert profile.protocol.model_depth > 1, "layers are timed inside models by default"
    assert list(profile.entries) == [b.key for b in load_space(TINY_SPACE).blocks(profile.protocol.model_depth)]
    for entry in profile.entries.values():
        assert len(entry.rounds_ms) == 3 and entry.stats.n >= 3 and entry.stats.median_ms > 0
    assert profile.applied["precision"] == "f32"
    assert str(profile.applied[THREADS_KEY[name]]) == "1"
    if name == "openvino":  # OpenVINO's own default would be bf16 on a CPU that has it
        assert profile.applied["inference_precision_hint"] == "f32"

    validated = cli("validate", "--profile", out, "--archs", "4", "--json", report)
    assert validated.exit_code == 0, validated.output
    result = json.loads(report.read_text())
    assert result["schema_version"] == VALIDATION_SCHEMA
    assert result["backend"] == name and result["n_archs"] == 4 and len(result["archs"]) == 4
    assert result["mape_pct"] >= 0
    assert 0 <= result["within_5pct"] <= result["within_10pct"] <= 1
    assert math.isnan(result["spearman"]) or -1 <= result["spearman"] <= 1
    for arch in result["archs"]:
        assert arch["predicted_ms"] > 0 and arch["measured_ms"] > 0
        # both times are written to 0.0001 ms: on sub-millisecond models that rounding alone moves the error, the
        # measured time's share scaled by predicted / measured (which a loaded host can make large)
        rounding_pct = 0.005 * (1 + arch["predicted_ms"] / arch["measured_ms"]) / arch["measured_ms"]
        assert arch["error_pct"] == pytest.approx((arch["predicted_ms"] - arch["measured_ms"]) / arch["measured_ms"]
                                                  * 100, abs=0.005 + rounding_pct)
    assert "MAPE" in validated.stdout


def test_openvino_runs_the_precision_it_is_told() -> None:
    """OpenVINO picks bf16 by itself on CPUs that have it; latlab asks for f32 explicitly and reads it back.
    (The profile-level record, ``applied`` after ``latlab profile --precision f32``, is checked above.)"""
    import openvino as ov

    backend = installed("openvino")
    module, inputs = build_block(SMALL_LAYER)
    core = ov.Core()
    converted = ov.convert_model(module, example_input=inputs)
    compiled = core.compile_model(converted, "CPU", {"PERFORMANCE_HINT": "LATENCY"})  # no precision hint
    if "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        # A type object: str() reads "<Type: 'bfloat16'>", so compare types, not spellings.
        assert compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.bf16, "why precision must be explicit"
    applied = backend.prepare(module, inputs, Settings(threads=1, precision="f32")).applied
    assert applied["precision"] == "f32" and applied["inference_precision_hint"] == "f32"



def pinned_threads() -> int:
    """Threads of this process bound to fewer CPUs than the process may use (Linux /proc)."""
    allowed = len(os.sched_getaffinity(0))
    return sum(len(os.sched_getaffinity(int(task))) < allowed for task in os.listdir("/proc/self/task"))


def test_openvino_pins_no_thread_so_every_block_runs_alike() -> None:
    """OpenVINO pins a worker only while no other compiled model holds its CPU, so pinning would differ from block
    to block within one profile; latlab turns it off, reads that back, and no thread ends up bound."""
    backend = installed("openvino")
    if not Path("/proc/self/task").is_dir() or len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs Linux /proc and 2 usable CPUs to see a pinned worker thread")
    before = pinned_threads()
    runners = [backend.prepare(*build_block(SMALL_LAYER, seed=seed), Settings(threads=2)) for seed in range(3)]
    for runner in runners:
        runner.run()
        assert runner.applied["enable_cpu_pinning"] == "False"
    assert pinned_threads() == before


def test_openvino_warns_while_its_telemetry_would_fork_beside_the_timing(monkeypatch, tmp_path: Path) -> None:
    """The decision is OpenVINO's own (its consent file under $HOME, CI variables), read, not re-implemented."""
    backend = installed("openvino")
    pytest.importorskip("openvino_telemetry", reason="without openvino-telemetry OpenVINO converts with its stub")
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("CI", "TF_BUILD", "JENKINS_URL"):
        monkeypatch.delenv(name, raising=False)
    (warning,) = backend.disturbances()  # no consent file: OpenVINO's converter sends
    assert "opt_in_out --opt_out" in warning
    monkeypatch.setenv("CI", "true")
    assert backend.disturbances() == ()
    monkeypatch.delenv("CI")
    (tmp_path / "intel").mkdir()
    (tmp_path / "intel" / "openvino_telemetry").write_text("0")  # what opt_in_out --opt_out writes
    assert backend.disturbances() == ()

# f32 on every backend is covered by the profile test above.
@pytest.mark.parametrize(("name", "precision"), [("torch", "bf16"), ("openvino", "bf16"), ("openvino", "fp16")])
def test_a_precision_is_honoured_or_refused(name: str, precision: str) -> None:
    """A profile labelled bf16 must have run bf16: the runtime reads back the request, or prepare refuses."""
    backend = installed(name)
    if precision not in backend.precisions:
        pytest.skip(f"{name} does not offer {precision} here")
    module, inputs = build_block(SMALL_LAYER)
    try:
        runner = backend.prepare(module, inputs, Settings(threads=1, precision=precision))
    except LatlabError as refused:
        assert precision in str(refused)
        return
    assert runner.applied["precision"] == precision
    runner.run()


# Each runtime's int8 recipes; the blocks are those a profile times (a whole model, the head alone).
INT8 = [("onnxruntime", "dynamic"), ("onnxruntime", "static"), ("openvino", "static"), ("torch", "dynamic")]
SMALL_MODEL = SMALL_LAYER._replace(kind="model", vocab=50, labels=2, layers=2)


@pytest.mark.parametrize(("name", "method"), INT8)
def test_int8_runs_integer_matrix_products_and_records_its_recipe(name: str, method: str) -> None:
    """An int8 label must mean int8 ran: the runtime's own graph is read back for integer matrix products."""
    backend = installed(name)
    module, inputs = build_block(SMALL_MODEL)
    runner = backend.prepare(module, inputs, backend.settings(1, "int8", "cpu", method))
    applied = runner.applied
    assert applied["precision"] == "int8" and applied["quantization"]["method"] == method
    assert {"weights", "per_channel", "activations", "tool"} <= set(applied["quantization"])
    # 2 layers of 6 linear layers each, plus the pooler and classifier: all of them quantized
    assert applied["integer_ops"] >= 2 * 6
    runner.run()


@pytest.mark.parametrize(("name", "method"), INT8)
def test_an_int8_block_without_matrix_products_runs_in_float(name: str, method: str) -> None:
    """Embeddings are looked up, not multiplied: quantizing them is a no-op, not an error."""
    backend = installed(name)
    module, inputs = build_block(SMALL_MODEL._replace(kind="embeddings", heads=0, ffn=0, labels=0, layers=0))
    runner = backend.prepare(module, inputs, backend.settings(1, "int8", "cpu", method))
    assert runner.applied["integer_ops"] == 0
    runner.run()


def test_an_int8_profile_validates_whole_models_quantized_the_same_way(cli, tmp_path: Path) -> None:
    installed("onnxruntime")
    out, report = tmp_path / "int8.json", tmp_path / "validation.json"
    profiled = cli("profile", "--backend", "onnxruntime", "--space", TINY_SPACE, "--precision", "int8",
                   "--quantization", "static", *QUICK, "--out", out)
    assert profiled.exit_code == 0, profiled.output
    profile = load_profile(out)
    assert profile.settings.numerics == "int8-static" and profile.applied["quantization"]["format"] == "QDQ"
    validated = cli("validate", "--profile", out, "--archs", "3", "--json", report)
    assert validated.exit_code == 0, validated.output
    assert json.loads(report.read_text())["settings"] == {"threads": 1, "precision": "int8", "device": "cpu",
                                                         "quantization": "static"}


@pytest.mark.parametrize(("name", "method", "needle"), [
    ("openvino", "dynamic", "backend 'openvino' has no dynamic int8 quantization (it has: static)"),
    ("torch", "static", "backend 'torch' has no static int8 quantization (it has: dynamic)"),
])
def test_an_int8_method_a_backend_lacks_is_refused_in_one_line(cli, tmp_path: Path, name, method, needle) -> None:
    installed(name)
    result = cli("profile", "--backend", name, "--space", TINY_SPACE, "--precision", "int8", "--quantization",
                 method, "--out", tmp_path / "p.json")
    assert result.exit_code == 2 and needle in result.output and "Traceback" not in result.output
    assert not (tmp_path / "p.json").exists()
