"""ONNX Runtime with the CPU execution provider."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import tempfile
from collections import Counter
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from latlab.backend import Availability, Backend, Runner, Settings
from latlab.errors import LatlabError

if TYPE_CHECKING:
    import numpy as np
    import torch

# The int8 recipe, the same for blocks and whole models: the linear layers' matrix products, weights int8 per
# output channel, activations uint8 (the u8s8 pairing ONNX Runtime's x86 kernels are fastest at).
QUANTIZED_OPS = ("MatMul", "Gemm")
# Operators that compute in integers: what the optimized graph runs when int8 really runs.
_INTEGER_OPS = ("MatMulInteger", "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "QLinearMatMul", "QGemm",
                "QAttention")


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
    precisions = ("f32", "int8")  # the CPU execution provider has no general fp16/bf16 kernels
    quantizations = ("dynamic", "static")  # dynamic first: ONNX Runtime's advice for transformers on CPU

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
        """Bind the inputs positionally; int8 quantizes the model first and reads back the operators that ran."""
        if settings.precision != "int8":
            return self._session(model, example_inputs, settings, {"precision": "f32"})
        quantized, recipe = quantize(model, example_inputs, settings.quantization)
        with tempfile.TemporaryDirectory() as folder:
            optimized = Path(folder) / "optimized.onnx"
            runner = self._session(quantized, example_inputs, settings, {"precision": "int8", "quantization": recipe},
                                   optimized)
            ran = _op_counts(optimized.read_bytes())
        integer_ops = sum(ran[op] for op in _INTEGER_OPS)
        if recipe["quantized_nodes"] and not integer_ops:
            raise LatlabError("ONNX Runtime runs the quantized matrix products in float on this CPU; "
                              "use --precision f32")
        runner.applied["integer_ops"] = integer_ops
        return runner

    def _session(self, model: bytes, example_inputs: tuple[torch.Tensor, ...], settings: Settings,
                 applied: dict[str, Any], optimized: Path | None = None) -> Runner:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = settings.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if optimized is not None:  # the graph after ONNX Runtime's fusions: what it really runs
            options.optimized_model_filepath = str(optimized)
        session = ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        feeds = {name: t.numpy() for name, t in zip(names, example_inputs)}
        read_back = session.get_session_options()
        applied = {
            "device": "cpu",
            **applied,
            "providers": session.get_providers(),
            "intra_op_threads": read_back.intra_op_num_threads,
            "inter_op_threads": read_back.inter_op_num_threads,
            "execution_mode": str(read_back.execution_mode),
            "graph_optimization_level": str(read_back.graph_optimization_level),
        }
        return OrtRunner(session, feeds, applied)


def quantize(model: bytes, example_inputs: tuple[torch.Tensor, ...], method: str) -> tuple[bytes, dict[str, Any]]:
    """The int8 model and its recipe: ``dynamic`` quantizes activations at run time, ``static`` (QDQ) calibrates
    them ahead on token inputs shaped like the example."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    from backends.calibration import CALIBRATION_SAMPLES, calibration_inputs

    proto = onnx.load_from_string(model)
    # The exporter's intermediate shapes disagree with ONNX's own shape inference, which the quantizer reruns.
    del proto.graph.value_info[:]
    recipe: dict[str, Any] = {"method": method, "tool": f"onnxruntime.quantization {version('onnxruntime')}",
                              "ops": list(QUANTIZED_OPS), "weights": "int8", "per_channel": True,
                              "activations": "uint8"}
    with tempfile.TemporaryDirectory() as folder, _quiet_quantizer():
        out = Path(folder) / "int8.onnx"
        if method == "static":
            names = [i.name for i in proto.graph.input]
            feeds = [dict(zip(names, sample)) for sample in calibration_inputs(example_inputs)]
            quantize_static(proto, out, _Feeds(feeds), quant_format=QuantFormat.QDQ, per_channel=True,
                            weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                            op_types_to_quantize=list(QUANTIZED_OPS))
            recipe.update(format="QDQ", calibration={"samples": CALIBRATION_SAMPLES, "method": "MinMax",
                                                     "inputs": "random token ids"})
        else:
            quantize_dynamic(proto, out, weight_type=QuantType.QInt8, per_channel=True,
                             op_types_to_quantize=list(QUANTIZED_OPS))
            recipe.update(format="integer operators")
        quantized = out.read_bytes()
    counts = _op_counts(quantized)
    recipe["quantized_nodes"] = counts["QuantizeLinear"] + counts["DynamicQuantizeLinear"] + sum(
        counts[op] for op in _INTEGER_OPS)
    return quantized, recipe


class _Feeds:
    """The calibration reader ONNX Runtime's quantizer asks for: one input dict per call, then None."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self._feeds = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def _op_counts(model: bytes) -> Counter[str]:
    import onnx

    return Counter(node.op_type for node in onnx.load_from_string(model).graph.node)


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """The quantizer advises pre-processing through the root logger on every call; the advice concerns accuracy,
    not latency, and would interleave with the progress bar."""
    level = logging.root.level
    logging.root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logging.root.setLevel(level)
