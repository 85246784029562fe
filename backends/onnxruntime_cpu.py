"""ONNX Runtime with the CPU execution provider."""

from __future__ import annotations

import importlib.util
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

from latlab.backend import Availability, Backend, Runner, Settings

if TYPE_CHECKING:
    import numpy as np
    import torch


class OrtRunner(Runner):
    def __init__(self, session: Any, feeds: dict[str, np.ndarray], applied: dict[str, Any]) -> None:
        super().__init__(applied)
        self.session = session
        self.feeds = feeds

    def run(self) -> None:
        self.session.run(None, self.feeds)


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    pip_extra = "onnxruntime"
    precisions = ("f32",)  # the CPU execution provider has no general fp16/bf16 kernels

    def is_available(self) -> Availability:
        missing = [m for m in ("onnxruntime", "onnx", "onnxscript") if importlib.util.find_spec(m) is None]
        if missing:
            return Availability(False, f"{', '.join(missing)} not installed; pip install 'latlab[onnxruntime]'")
        return Availability(True)

    def runtime_version(self) -> str:
        return version("onnxruntime")  # onnxruntime.__version__, without loading the runtime

    def _prepare(self, module: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...], settings: Settings) -> Runner:
        from backends.onnx_export import export_onnx

        return self._prepare_onnx(export_onnx(module, example_inputs), example_inputs, settings)

    def _prepare_onnx(self, model: bytes, example_inputs: tuple[torch.Tensor, ...], settings: Settings) -> Runner:
        """Bind the inputs positionally."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = settings.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        session = ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        feeds = {name: t.numpy() for name, t in zip(names, example_inputs)}
        read_back = session.get_session_options()
        applied = {
            "device": "cpu",
            "precision": "f32",
            "providers": session.get_providers(),
            "intra_op_threads": read_back.intra_op_num_threads,
            "inter_op_threads": read_back.inter_op_num_threads,
            "execution_mode": str(read_back.execution_mode),
            "graph_optimization_level": str(read_back.graph_optimization_level),
        }
        return OrtRunner(session, feeds, applied)
