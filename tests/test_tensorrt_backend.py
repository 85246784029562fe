"""The TensorRT backend's orchestration against a fake ``tensorrt`` module and a fake CUDA device (no GPU or
TensorRT on these machines), its absence path through the real CLI, and real-runtime checks that skip here."""

from __future__ import annotations

import enum
import json
import os
import subprocess
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import Result

import backends.tensorrt_gpu as trt_backend
from backends.tensorrt_cache import EngineCache
from backends.tensorrt_gpu import NOT_INSTALLED, WARMUP_RUNS, TensorRTBackend
from backends.torch_cuda import CudaDevice
from latlab.backend import Availability, Settings
from latlab.blocks import overhead_block
from latlab.errors import LatlabError
from latlab.modules import build_block
from latlab.profiling import run_profile
from latlab.protocol import Protocol
from latlab.space import SearchSpace
from latlab.validate import run_validation

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "latlab" / "spaces" / "tiny.json")


# ---- a fake tensorrt module: the TensorRT 10 Python API surface the backend uses, recording what it is asked ----

class DataType(enum.Enum):
    FLOAT, HALF, INT8, INT32, BOOL, UINT8, BF16, INT64 = range(8)


class TensorIOMode(enum.Enum):
    NONE, INPUT, OUTPUT = range(3)


class BuilderFlag(enum.Enum):
    FP16, INT8, TF32, BF16 = range(4)


class MemoryPoolType(enum.Enum):
    WORKSPACE = 0


ONNX_TYPES = {1: DataType.FLOAT, 7: DataType.INT64, 10: DataType.HALF, 16: DataType.BF16, 6: DataType.INT32}


@dataclass
class Record:
    builds: int = 0
    network_flags: list[int] = field(default_factory=list)
    input_shapes: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)
    addresses: dict[str, int] = field(default_factory=dict)
    executes: list[int] = field(default_factory=list)


def fake_tensorrt(version: str = "10.13.0.35") -> types.ModuleType:
    """A module object with TensorRT's names; plans are JSON so tests can read what was built."""
    record = Record()

    class Logger:
        WARNING = "WARNING"

        def __init__(self, min_severity: str) -> None:
            self.min_severity = min_severity

    class Network:
        def __init__(self) -> None:
            self.inputs: list[dict] = []
            self.outputs: list[dict] = []

        @property
        def num_inputs(self) -> int:
            return len(self.inputs)

        def get_input(self, index: int) -> Any:
            return types.SimpleNamespace(name=self.inputs[index]["name"])

    class OnnxParser:
        def __init__(self, network: Network, logger: Logger) -> None:
            self.network, self.errors = network, []

        def parse(self, model: bytes) -> bool:
            import onnx

            try:
                graph = onnx.load_from_string(bytes(model)).graph
            except Exception as exc:  # noqa: BLE001 (any decode failure is a parse error to TensorRT)
                self.errors.append(f"ModelImporter: failed to parse ({type(exc).__name__})")
                return False

            def io(value: Any) -> dict:
                kind = value.type.tensor_type
                return {"name": value.name, "dtype": ONNX_TYPES[kind.elem_type].name,
                        "shape": [d.dim_value for d in kind.shape.dim]}

            self.network.inputs = [io(v) for v in graph.input]
            self.network.outputs = [io(v) for v in graph.output]
            return True

        @property
        def num_errors(self) -> int:
            return len(self.errors)

        def get_error(self, index: int) -> Any:
            return types.SimpleNamespace(desc=lambda: self.errors[index])

    class Profile:
        def __init__(self) -> None:
            self.shapes: dict[str, list] = {}

        def set_shape(self, name: str, min: tuple, opt: tuple, max: tuple) -> None:  # noqa: A002 (TensorRT's names)
            self.shapes[name] = [list(min), list(opt), list(max)]

    class Config:
        def __init__(self) -> None:
            self.flags = {BuilderFlag.TF32}  # TensorRT's default
            self.pools: dict[MemoryPoolType, int] = {}
            self.profiles: list[Profile] = []

        def set_flag(self, flag: BuilderFlag) -> None:
            self.flags.add(flag)

        def clear_flag(self, flag: BuilderFlag) -> None:
            self.flags.discard(flag)

        def get_flag(self, flag: BuilderFlag) -> bool:
            return flag in self.flags

        def set_memory_pool_limit(self, pool: MemoryPoolType, size: int) -> None:
            self.pools[pool] = size

        def get_memory_pool_limit(self, pool: MemoryPoolType) -> int:
            return self.pools.get(pool, 80 * 2**30)

        def add_optimization_profile(self, profile: Profile) -> int:
            self.profiles.append(profile)
            return len(self.profiles) - 1

    class Builder:
        def __init__(self, logger: Logger) -> None:
            self.logger = logger

        def create_network(self, flags: int = 0) -> Network:
            record.network_flags.append(flags)
            return Network()

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: Config) -> memoryview:
            record.builds += 1
            plan = {"version": version, "inputs": network.inputs, "outputs": network.outputs,
                    "flags": sorted(f.name for f in config.flags),
                    "pools": {p.name: v for p, v in config.pools.items()},
                    "profiles": [p.shapes for p in config.profiles]}
            return memoryview(json.dumps(plan).encode())  # IHostMemory is a buffer too

    class Context:
        def __init__(self, engine: Engine) -> None:
            self.engine = engine

        def set_input_shape(self, name: str, shape: tuple) -> bool:
            record.input_shapes.append((name, tuple(shape)))
            return list(shape) == self.engine.plan["profiles"][0][name][1]

        def get_tensor_shape(self, name: str) -> tuple:
            return tuple(self.engine.tensors[name]["shape"])

        def set_tensor_address(self, name: str, address: int) -> bool:
            record.addresses[name] = address
            return True

        def execute_async_v3(self, stream_handle: int) -> bool:
            record.executes.append(stream_handle)
            return set(record.addresses) == set(self.engine.tensors)

    class Engine:
        def __init__(self, plan: dict) -> None:
            self.plan = plan
            self.tensors = {t["name"]: {**t, "mode": TensorIOMode.INPUT} for t in plan["inputs"]}
            self.tensors.update({t["name"]: {**t, "mode": TensorIOMode.OUTPUT} for t in plan["outputs"]})

        @property
        def num_io_tensors(self) -> int:
            return len(self.tensors)

        def get_tensor_name(self, index: int) -> str:
            return list(self.tensors)[index]

        def get_tensor_mode(self, name: str) -> TensorIOMode:
            return self.tensors[name]["mode"]

        def get_tensor_shape(self, name: str) -> tuple:
            return tuple(self.tensors[name]["shape"])

        def get_tensor_dtype(self, name: str) -> DataType:
            return DataType[self.tensors[name]["dtype"]]

        def create_execution_context(self) -> Context:
            return Context(self)

    class Runtime:
        def __init__(self, logger: Logger) -> None:
            self.logger = logger

        def deserialize_cuda_engine(self, plan: bytes) -> Engine | None:
            try:
                data = json.loads(bytes(plan))
            except ValueError:
                return None  # TensorRT logs and returns None for a plan it cannot read
            return Engine(data) if data["version"] == version else None

    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    for value in (Logger, Builder, OnnxParser, Runtime, DataType, TensorIOMode, BuilderFlag, MemoryPoolType):
        setattr(trt, value.__name__, value)
    trt.record = record  # not TensorRT's: what the tests inspect
    return trt


class FakeDevice:
    """CudaDevice's surface on the CPU: tensors stay on the host, the timer returns a set value."""

    def __init__(self, name: str = "NVIDIA H100 80GB HBM3", capability: str = "9.0", missing: str = "") -> None:
        self._name, self._capability, self._missing = name, capability, missing
        self.stream_object = types.SimpleNamespace(cuda_stream=0xBEEF)
        self.log: list[str] = []

    def missing(self) -> str:
        return self._missing

    def name(self) -> str:
        return self._name

    def compute_capability(self) -> str:
        return self._capability

    def upload(self, tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return tensor.to(dtype).clone()

    def empty(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        return torch.zeros(shape, dtype=dtype)

    def stream(self) -> Any:
        return self.stream_object

    def synchronize(self, stream: Any = None) -> None:
        self.log.append("sync stream" if stream is self.stream_object else "sync device")

    def time_ms(self, launch: Any, stream: Any = None) -> float:
        self.log.append("timed on stream" if stream is self.stream_object else "timed elsewhere")
        launch()
        return 1.25


def onnx_model(*example_inputs: torch.Tensor, tag: str = "") -> bytes:
    """A small real ONNX model whose inputs match ``example_inputs`` (output: the first input, unchanged)."""
    from onnx import TensorProto, helper

    types_ = {torch.float32: TensorProto.FLOAT, torch.int64: TensorProto.INT64}
    inputs = [helper.make_tensor_value_info(f"in{i}", types_[t.dtype], list(t.shape))
              for i, t in enumerate(example_inputs)]
    output = helper.make_tensor_value_info("out", types_[example_inputs[0].dtype], list(example_inputs[0].shape))
    graph = helper.make_graph([helper.make_node("Identity", ["in0"], ["out"])], f"g{tag}", inputs, [output])
    return helper.make_model(graph).SerializeToString()


@pytest.fixture
def trt() -> types.ModuleType:
    pytest.importorskip("onnx", reason="onnx is needed to read the models the fake parser gets")
    return fake_tensorrt()


def backend_with(trt: types.ModuleType, folder: Path, device: FakeDevice | None = None,
                 **kwargs: Any) -> TensorRTBackend:
    return TensorRTBackend(trt=trt, device=device or FakeDevice(), cache=EngineCache(folder), **kwargs)


CUDA_F32 = Settings(device="cuda")
X = torch.randn(2, 8, 16)


# ---- availability ----

def test_missing_tensorrt_and_cuda_are_both_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` fails even where it is installed
    backend = TensorRTBackend(device=FakeDevice(missing="no CUDA device visible to torch"))
    expected = Availability(False, f"{NOT_INSTALLED}; no CUDA device visible to torch")
    assert backend.is_available() == expected
    with pytest.raises(LatlabError, match="^backend 'tensorrt' is not available: tensorrt not installed"):
        backend.check(CUDA_F32)


def test_bindings_without_libnvinfer_say_so(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(name: str) -> None:
        raise OSError("libnvinfer.so.10: cannot open shared object file")

    monkeypatch.setattr(trt_backend.importlib, "import_module", broken)
    reason = TensorRTBackend(device=FakeDevice()).is_available().reason
    assert reason.startswith("tensorrt is installed but does not import (libnvinfer.so.10")


def test_tensorrt_11_is_refused_with_the_reason(tmp_path: Path) -> None:
    reason = backend_with(fake_tensorrt("11.0.0.1"), tmp_path).is_available().reason
    assert "needs TensorRT 10.x" in reason and "11.0.0.1" in reason


def test_available_with_tensorrt_10_and_a_device(trt: types.ModuleType, tmp_path: Path) -> None:
    backend = backend_with(trt, tmp_path)
    assert backend.is_available()
    assert backend.runtime_version() == "10.13.0.35"
    assert backend.default_settings().device == "cuda"


def test_cpu_device_and_old_gpu_bf16_are_refused(trt: types.ModuleType, tmp_path: Path) -> None:
    with pytest.raises(LatlabError, match="does not run on device 'cpu'"):
        backend_with(trt, tmp_path).check(Settings(device="cpu"))
    old = backend_with(trt, tmp_path, FakeDevice("Tesla T4", "7.5"))
    old.check(Settings(precision="fp16", device="cuda"))
    with pytest.raises(LatlabError, match="'bf16' needs a GPU of compute capability 8.0 .*Tesla T4 is 7.5"):
        old.check(Settings(precision="bf16", device="cuda"))


# ---- building ----

@pytest.mark.parametrize("precision, set_flags", [("f32", []), ("fp16", ["FP16"]), ("bf16", ["BF16"])])
def test_build_is_explicit_batch_with_a_static_profile_flags_and_workspace(
        trt: types.ModuleType, tmp_path: Path, precision: str, set_flags: list[str]) -> None:
    ids = torch.randint(0, 100, (2, 8))
    runner = backend_with(trt, tmp_path, workspace_bytes=256 << 20).prepare_onnx(
        onnx_model(X, ids), (X, ids), Settings(precision=precision, device="cuda"))
    (plan_file,) = tmp_path.glob("*.engine")
    plan = json.loads(plan_file.read_bytes())
    assert trt.record.network_flags == [0]  # TensorRT 10 networks are explicit-batch; no implicit-batch flag
    assert plan["profiles"] == [{"in0": [[2, 8, 16]] * 3, "in1": [[2, 8]] * 3}]  # min = opt = max = example
    assert plan["flags"] == set_flags  # TF32 cleared, only the precision's flag set
    assert plan["pools"] == {"WORKSPACE": 256 << 20}
    assert runner.applied == {
        "device": "cuda", "precision": precision,
        "builder_flags": {"FP16": precision == "fp16", "BF16": precision == "bf16", "TF32": False},
        "workspace_bytes": 256 << 20, "tensorrt_version": "10.13.0.35", "gpu": "NVIDIA H100 80GB HBM3",
        "compute_capability": "9.0", "input_shapes": {"in0": [2, 8, 16], "in1": [2, 8]},
    }


def test_unparsable_model_is_one_clear_error(trt: types.ModuleType, tmp_path: Path) -> None:
    with pytest.raises(LatlabError, match="TensorRT cannot parse this model's ONNX export: ModelImporter"):
        backend_with(trt, tmp_path).prepare_onnx(b"not an onnx model", (X,), CUDA_F32)


# ---- the engine cache ----

def test_cache_hits_across_backends_and_misses_when_any_key_part_changes(trt: types.ModuleType,
                                                                         tmp_path: Path) -> None:
    model = onnx_model(X)

    def prepare(trt_module: types.ModuleType = trt, device: FakeDevice | None = None, precision: str = "f32",
                onnx: bytes = model, **kwargs: Any) -> int:
        before = trt_module.record.builds
        backend_with(trt_module, tmp_path, device, **kwargs).prepare_onnx(onnx, (X,), Settings(precision=precision,
                                                                                                device="cuda"))
        return trt_module.record.builds - before

    assert prepare() == 1  # cold cache
    assert prepare() == 0  # a new backend (as in a new process) finds the engine on disk
    first_applied = backend_with(trt, tmp_path).prepare_onnx(model, (X,), CUDA_F32).applied
    assert first_applied["builder_flags"] == {"FP16": False, "BF16": False, "TF32": False}  # read back from record
    changes = {
        "precision": dict(precision="fp16"),
        "block": dict(onnx=onnx_model(X, tag="other weights")),
        "tensorrt version": dict(trt_module=fake_tensorrt("10.14.1.48")),
        "gpu name": dict(device=FakeDevice(name="NVIDIA H200")),
        "compute capability": dict(device=FakeDevice(capability="9.1")),
        "workspace": dict(workspace_bytes=1 << 28),
    }
    for what, change in changes.items():
        assert prepare(**change) == 1, f"a change of {what} reused an engine"
        assert prepare(**change) == 0, f"the engine for a changed {what} was not cached"
    assert len(list(tmp_path.glob("*.engine"))) == 1 + len(changes)


def test_plan_the_runtime_cannot_load_is_rebuilt(trt: types.ModuleType, tmp_path: Path) -> None:
    backend = backend_with(trt, tmp_path)
    backend.prepare_onnx(onnx_model(X), (X,), CUDA_F32)
    (plan_file,) = tmp_path.glob("*.engine")
    plan_file.write_bytes(b"truncated")
    backend.prepare_onnx(onnx_model(X), (X,), CUDA_F32)
    assert trt.record.builds == 2
    assert json.loads(plan_file.read_bytes())["version"] == "10.13.0.35"  # overwritten with a good plan


def test_a_plan_swapped_in_the_cache_folder_is_not_trusted(trt: types.ModuleType, tmp_path: Path) -> None:
    """A loadable plan that is not the one recorded at build time (another model's, copied over it) is rebuilt:
    the cache checks the plan's hash, not only that the runtime can deserialize it."""
    backend = backend_with(trt, tmp_path)
    backend.prepare_onnx(onnx_model(X), (X,), CUDA_F32)
    (first,) = tmp_path.glob("*.engine")
    other = torch.randn(2, 8)
    backend.prepare_onnx(onnx_model(other), (other,), CUDA_F32)
    (second,) = set(tmp_path.glob("*.engine")) - {first}
    first.write_bytes(second.read_bytes())
    backend.prepare_onnx(onnx_model(X), (X,), CUDA_F32)
    assert trt.record.builds == 3
    assert first.read_bytes() != second.read_bytes()


# ---- binding, running and timing ----

def test_buffers_are_bound_and_runs_go_to_the_stream(trt: types.ModuleType, tmp_path: Path) -> None:
    device = FakeDevice()
    ids = torch.randint(0, 100, (2, 8))
    runner = backend_with(trt, tmp_path, device).prepare_onnx(onnx_model(X, ids), (X.double(), ids), CUDA_F32)
    assert trt.record.input_shapes == [("in0", (2, 8, 16)), ("in1", (2, 8))]
    assert trt.record.addresses == {name: t.data_ptr() for name, t in runner.buffers.items()}
    assert list(runner.buffers) == ["in0", "in1", "out"]
    assert runner.buffers["in0"].dtype == torch.float32 and torch.equal(runner.buffers["in0"], X)  # engine's dtype
    assert torch.equal(runner.buffers["in1"], ids)
    assert runner.buffers["out"].shape == (2, 8, 16)
    assert trt.record.executes == [0xBEEF] * WARMUP_RUNS  # warmed up on the dedicated stream
    assert device.log == ["sync device"] + ["sync stream"] * WARMUP_RUNS  # uploads finished before any run


def test_time_ms_is_the_device_timer_not_a_host_clock(trt: types.ModuleType, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    device = FakeDevice()
    runner = backend_with(trt, tmp_path, device).prepare_onnx(onnx_model(X), (X,), CUDA_F32)
    monkeypatch.setattr(time, "perf_counter_ns", lambda: pytest.fail("a host clock was read"))
    assert [runner.time_ms() for _ in range(3)] == [1.25] * 3
    assert device.log[-3:] == ["timed on stream"] * 3
    assert len(trt.record.executes) == WARMUP_RUNS + 3


# ---- through the real export, profiling and validation ----

def test_a_block_goes_through_the_real_onnx_export(trt: types.ModuleType, tmp_path: Path) -> None:
    pytest.importorskip("onnxscript", reason="the dynamo ONNX exporter needs onnxscript")
    module, inputs = build_block(overhead_block(1, 16))
    runner = backend_with(trt, tmp_path).prepare(module, inputs, CUDA_F32)
    (name, ids), (_, out) = list(runner.buffers.items())
    assert (name, ids.dtype, tuple(out.shape)) == ("input_ids", torch.int64, (1, 16))
    assert torch.equal(ids, inputs[0])


@pytest.mark.filterwarnings("ignore:An input array is constant")  # equal fake timings: Spearman is undefined
def test_profile_and_validation_run_through_the_backend(trt: types.ModuleType, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxscript", reason="is_available() requires the ONNX exporter's onnxscript")
    exported: list[str] = []

    def export(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> bytes:
        exported.append(type(module).__name__)
        return onnx_model(*inputs, tag=str(len(exported)))

    monkeypatch.setattr(trt_backend, "export_onnx", export)  # the real export is covered above; it is slow
    space = SearchSpace("t", layers=(1, 2), hidden=(64,), heads=(2,), ffn=(128,), seq_len=(16,), batch=(1,),
                        vocab=100)
    protocol = Protocol(rounds=2, min_samples=2, min_seconds=0.0, warmup_calls=1, warmup_seconds=0.0)
    backend = backend_with(trt, tmp_path / "cache")
    profile = run_profile(backend, CUDA_F32, space, protocol, tmp_path / "p.json")
    assert profile.complete and set(profile.entries) == {b.key for b in space.blocks(protocol.model_depth)}
    assert all(e.rounds_ms == [[1.25], [1.25]] for e in profile.entries.values())
    assert profile.applied["tensorrt_version"] == "10.13.0.35" and profile.runtime_version == "10.13.0.35"
    validation = run_validation(profile, backend, count=2, seed=0, protocol=protocol)
    rows, accuracy = validation.rows, validation.accuracy
    assert "Encoder" in exported and [r.measured.median_ms for r in rows] == [1.25, 1.25]
    assert accuracy.mape_pct == pytest.approx(0.0)  # every block costs the overhead: prediction = measurement


# ---- absence through the CLI ----

def test_cli_lists_the_backend_as_missing_and_profile_exits_2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                              cli: Callable[..., Result],
                                                              user_error: Callable[..., str]) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    (line,) = [line for line in cli("backends").stdout.splitlines() if line.startswith("tensorrt ")]
    assert f"missing    {NOT_INSTALLED}" in line and "devices: cuda" in line
    result = cli("profile", "--backend", "tensorrt", "--device", "cuda", "--space", TINY, "--out", tmp_path / "p.json")
    reasons = "; ".join(r for r in (NOT_INSTALLED, CudaDevice().missing()) if r)
    assert user_error(result) == f"Error: backend 'tensorrt' is not available: {reasons}"
    assert not (tmp_path / "p.json").exists()


def test_real_cli_process_exits_2_with_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1"}  # no GPU, even on a GPU machine
    command = [str(Path(sys.executable).parent / "latlab"), "profile", "--backend", "tensorrt", "--device", "cuda",
               "--space", TINY, "--out", str(tmp_path / "p.json")]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("Error: backend 'tensorrt' is not available: ") and "CUDA" in line


# ---- the real runtime (skips where TensorRT or a GPU is missing, i.e. on every machine of this project so far) ----

REAL = TensorRTBackend()
real_runtime = pytest.mark.skipif(not REAL.is_available(), reason=f"real TensorRT: {REAL.is_available().reason}")


@real_runtime
@pytest.mark.parametrize("precision, tolerance", [("f32", 1e-3), ("fp16", 3e-2)])
def test_real_engine_matches_torch_and_is_cached(tmp_path: Path, precision: str, tolerance: float) -> None:
    from latlab.blocks import layer_block

    module, inputs = build_block(layer_block(1, 32, 128, 4, 512))
    with torch.inference_mode():
        expected = module(*inputs)
        expected = expected[0] if isinstance(expected, tuple) else expected
    settings = Settings(precision=precision, device="cuda")
    runner = TensorRTBackend(cache=EngineCache(tmp_path)).prepare(module, inputs, settings)
    runner.run()
    output = list(runner.buffers.values())[-1].float().cpu()
    assert torch.allclose(output, expected, atol=tolerance, rtol=tolerance)
    assert all(runner.time_ms() > 0 for _ in range(10))
    assert runner.applied["builder_flags"]["FP16"] == (precision == "fp16")
    (plan_file,) = tmp_path.glob("*.engine")
    built_at = plan_file.stat().st_mtime_ns
    TensorRTBackend(cache=EngineCache(tmp_path)).prepare(module, inputs, settings)
    assert plan_file.stat().st_mtime_ns == built_at  # loaded, not rebuilt
