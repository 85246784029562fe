"""TensorRT on an NVIDIA GPU: ONNX export of the block -> engine (cached on disk) -> bound device buffers -> timed
with CUDA events.

Targets TensorRT 10: its networks are always explicit-batch, and it still has the FP16/BF16 builder flags that
TensorRT 11 removed. ``tensorrt`` is imported on first use, so without it (or without a GPU) the backend still
loads and says exactly what is missing.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType
from typing import Any

import torch

from backends.onnx_export import export_onnx
from backends.tensorrt_cache import EngineCache, EngineKey, onnx_sha256
from backends.torch_cuda import CudaDevice
from latlab.backend import Availability, Backend, Runner, Settings
from latlab.errors import LatlabError

WORKSPACE_BYTES = 1 << 30  # scratch memory the builder may grant a tactic; ample for encoder blocks
WARMUP_RUNS = 3  # first executions pay lazy initialisation; the protocol warms up again before timing
NOT_INSTALLED = "tensorrt not installed; pip install 'latlab[tensorrt]' (the wheels come from NVIDIA's package index)"

# Builder flags per precision, each set or cleared explicitly. TF32 is on by default in TensorRT; clearing it makes
# "f32" mean IEEE f32, as it does for torch eager (float32 matmul precision "highest").
FLAGS = {
    "f32": {"FP16": False, "BF16": False, "TF32": False},
    "fp16": {"FP16": True, "BF16": False, "TF32": False},
    "bf16": {"FP16": False, "BF16": True, "TF32": False},
}
_TORCH_DTYPES = {"FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16, "INT64": torch.int64,
                 "INT32": torch.int32, "INT8": torch.int8, "UINT8": torch.uint8, "BOOL": torch.bool}


def torch_dtype(trt_dtype: Any) -> torch.dtype:
    """The torch dtype of a buffer for a TensorRT ``DataType`` (matched by member name)."""
    try:
        return _TORCH_DTYPES[trt_dtype.name]
    except KeyError:
        raise ValueError(f"no torch dtype for TensorRT {trt_dtype.name} I/O") from None


class TensorRTRunner(Runner):
    """An engine with its context and device buffers bound once; ``run`` enqueues on the stream and waits."""

    def __init__(self, engine: Any, context: Any, buffers: dict[str, torch.Tensor], device: CudaDevice, stream: Any,
                 applied: dict[str, Any]) -> None:
        super().__init__(applied)
        self.engine = engine  # the context must not outlive it
        self.context = context
        self.buffers = buffers  # keeps the bound device memory alive; outputs can be read back from here
        self.device = device
        self.stream = stream

    def _enqueue(self) -> None:
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise RuntimeError("TensorRT execute_async_v3 failed (see TensorRT's log above)")

    def run(self) -> None:
        self._enqueue()
        self.device.synchronize(self.stream)

    def time_ms(self) -> float:
        return self.device.time_ms(self._enqueue, self.stream)

    def close(self) -> None:
        self.context = self.engine = None  # context first: it must not outlive the engine
        self.buffers.clear()


class TensorRTBackend(Backend):
    name = "tensorrt"
    pip_extra = "tensorrt"
    precisions = ("f32", "fp16", "bf16")
    devices = ("cuda",)

    def __init__(self, trt: ModuleType | None = None, device: CudaDevice | None = None,
                 cache: EngineCache | None = None, workspace_bytes: int = WORKSPACE_BYTES) -> None:
        """Defaults: the real ``tensorrt`` (imported on first use), torch's CUDA device, the user's cache folder."""
        self._trt = trt
        self.device = device or CudaDevice()
        self.cache = cache or EngineCache()
        self.workspace_bytes = workspace_bytes
        self._logger: Any = None
        self._runtime: Any = None  # one per backend: it must outlive the engines it deserialises
        self._stream: Any = None  # one for all runners: they are timed one at a time

    def _import(self) -> str:
        """Import tensorrt once; returns why that failed, or ""."""
        if self._trt is None:
            try:
                self._trt = importlib.import_module("tensorrt")
            except ModuleNotFoundError as exc:
                return NOT_INSTALLED if exc.name == "tensorrt" else f"tensorrt is installed but does not import ({exc})"
            except (ImportError, OSError) as exc:  # e.g. the bindings without libnvinfer
                return f"tensorrt is installed but does not import ({exc})"
        return ""

    @property
    def trt(self) -> ModuleType:
        problem = self._import()
        if problem:
            raise LatlabError(problem)
        return self._trt

    def is_available(self) -> Availability:
        problems = [self._import()]
        if not problems[0] and not self._trt.__version__.startswith("10."):
            problems.append(f"tensorrt {self._trt.__version__} found, but this backend needs TensorRT 10.x "
                            "(11 removed the FP16/BF16 builder flags it uses)")
        missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
        if missing:
            problems.append(f"{', '.join(missing)} not installed (needed for the ONNX export); "
                            "pip install 'latlab[tensorrt]'")
        problems.append(self.device.missing())
        problems = [p for p in problems if p]
        return Availability(not problems, "; ".join(problems))

    def runtime_version(self) -> str:
        return str(self.trt.__version__)

    def default_settings(self) -> Settings:
        return Settings(device="cuda")

    def check(self, settings: Settings) -> None:
        super().check(settings)
        if settings.precision != "bf16":
            return
        capability = self.device.compute_capability()
        if tuple(int(part) for part in capability.split(".")) < (8, 0):
            raise LatlabError(f"precision 'bf16' needs a GPU of compute capability 8.0 or later; "
                              f"{self.device.name()} is {capability}: use fp16 or f32")

    def _prepare(self, module: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...], settings: Settings) -> Runner:
        return self._prepare_onnx(export_onnx(module, example_inputs), example_inputs, settings)

    def _prepare_onnx(self, model: bytes, example_inputs: tuple[torch.Tensor, ...], settings: Settings) -> Runner:
        """An engine for an ONNX model at exactly the shapes of ``example_inputs``, its inputs bound positionally."""
        engine, built = self.load_engine(model, example_inputs, settings.precision)
        context = engine.create_execution_context()
        buffers = self.bind(engine, context, example_inputs)
        if self._stream is None:
            self._stream = self.device.stream()
        flags = built["builder_flags"]
        precision = "fp16" if flags["FP16"] else "bf16" if flags["BF16"] else "f32"
        runner = TensorRTRunner(engine, context, buffers, self.device, self._stream,
                                {"device": "cuda", "precision": precision, **built})
        for _ in range(WARMUP_RUNS):
            runner.run()
        return runner

    def load_engine(self, model: bytes, example_inputs: tuple[torch.Tensor, ...], precision: str) -> tuple[Any, dict]:
        """The deserialised engine and its build record: from the cache when a usable plan is there, else built."""
        trt = self.trt
        flags = FLAGS[precision]
        key = EngineKey(onnx_sha256(model), precision, tuple(f"{k}={'on' if v else 'off'}" for k, v in flags.items()),
                        self.workspace_bytes, trt.__version__, self.device.name(), self.device.compute_capability())
        cached = self.cache.load(key)
        if cached is not None:
            engine = self._deserialize(cached[0])
            if engine is not None:
                return engine, cached[1]
        plan, built = self.build(model, example_inputs, flags)  # not cached, or a plan this runtime cannot load
        self.cache.store(key, plan, built)
        engine = self._deserialize(plan)
        if engine is None:
            raise RuntimeError("TensorRT could not deserialise the engine it had just built")
        return engine, built

    def _trt_logger(self) -> Any:
        if self._logger is None:
            self._logger = self.trt.Logger(self.trt.Logger.WARNING)
        return self._logger

    def _deserialize(self, plan: bytes) -> Any:
        if self._runtime is None:
            self._runtime = self.trt.Runtime(self._trt_logger())
        return self._runtime.deserialize_cuda_engine(plan)

    def build(self, model: bytes, example_inputs: tuple[torch.Tensor, ...],
              flags: dict[str, bool]) -> tuple[bytes, dict]:
        """Parse, configure (flags, workspace, one static shape profile) and build; returns the plan and read-backs."""
        trt = self.trt
        builder = trt.Builder(self._trt_logger())
        network = builder.create_network(0)  # explicit batch: the only mode in TensorRT 10 (its flag is ignored)
        parser = trt.OnnxParser(network, self._trt_logger())
        if not parser.parse(model):
            errors = "; ".join(parser.get_error(i).desc() for i in range(parser.num_errors))
            raise LatlabError(f"TensorRT cannot parse this model's ONNX export: {errors}; use another backend")
        if network.num_inputs != len(example_inputs):
            raise ValueError(f"ONNX export has {network.num_inputs} inputs for {len(example_inputs)} example inputs")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, self.workspace_bytes)
        for name, on in flags.items():
            (config.set_flag if on else config.clear_flag)(getattr(trt.BuilderFlag, name))
        profile = builder.create_optimization_profile()
        shapes = {network.get_input(i).name: tuple(t.shape) for i, t in enumerate(example_inputs)}
        for name, shape in shapes.items():
            profile.set_shape(name, shape, shape, shape)  # min = opt = max: profiles are per exact shape
        config.add_optimization_profile(profile)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise RuntimeError("TensorRT failed to build an engine (see its log above)")
        built = {
            "builder_flags": {flag: bool(config.get_flag(getattr(trt.BuilderFlag, flag))) for flag in flags},
            "workspace_bytes": int(config.get_memory_pool_limit(trt.MemoryPoolType.WORKSPACE)),
            "tensorrt_version": str(trt.__version__),
            "gpu": self.device.name(),
            "compute_capability": self.device.compute_capability(),
            "input_shapes": {name: list(shape) for name, shape in shapes.items()},
        }
        return bytes(plan), built

    def bind(self, engine: Any, context: Any, example_inputs: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        """Device buffers for every I/O tensor, inputs filled with the examples, addresses set on the context."""
        trt = self.trt
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if len(inputs) != len(example_inputs):
            raise ValueError(f"engine has {len(inputs)} inputs for {len(example_inputs)} example inputs")
        buffers: dict[str, torch.Tensor] = {}
        for name, example in zip(inputs, example_inputs):
            buffers[name] = self.device.upload(example, torch_dtype(engine.get_tensor_dtype(name)))
            if not context.set_input_shape(name, tuple(example.shape)):
                raise ValueError(f"TensorRT refused shape {tuple(example.shape)} for input {name!r}")
        for name in names:
            if name not in buffers:
                shape = tuple(context.get_tensor_shape(name))
                buffers[name] = self.device.empty(shape, torch_dtype(engine.get_tensor_dtype(name)))
        for name, buffer in buffers.items():
            context.set_tensor_address(name, buffer.data_ptr())
        self.device.synchronize()  # the uploads ran on the default stream; the engine runs on its own
        return buffers
