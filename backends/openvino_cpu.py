"""OpenVINO on the CPU. Precision is always explicit: on CPUs with bf16 OpenVINO silently defaults to it."""

from __future__ import annotations

import importlib.util
import warnings
from typing import TYPE_CHECKING, Any

from latlab.backend import Availability, Backend, Runner, Settings
from latlab.errors import LatlabError

if TYPE_CHECKING:
    import torch

_HINTS = {"f32": "f32", "bf16": "bf16", "fp16": "f16"}


class OpenVinoRunner(Runner):
    def __init__(self, request: Any, applied: dict[str, Any]) -> None:
        super().__init__(applied)
        self.request = request

    def run(self) -> None:
        self.request.infer()


class OpenVinoBackend(Backend):
    name = "openvino"
    pip_extra = "openvino"
    precisions = ("f32", "bf16", "fp16")

    def is_available(self) -> Availability:
        if importlib.util.find_spec("openvino") is None:
            return Availability(False, "openvino not installed; pip install 'latlab[openvino]'")
        return Availability(True)

    def runtime_version(self) -> str:
        import openvino

        return openvino.get_version()

    def _prepare(self, module: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...], settings: Settings) -> Runner:
        import openvino as ov
        import torch

        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about transformers' shape checks: static shapes here
            model = ov.convert_model(module, example_input=example_inputs)
        return self._compile(model, example_inputs, settings)

    def _prepare_onnx(self, model: bytes, example_inputs: tuple[torch.Tensor, ...], settings: Settings) -> Runner:
        import openvino as ov

        return self._compile(ov.Core().read_model(model), example_inputs, settings)

    def _compile(self, model: Any, example_inputs: tuple[torch.Tensor, ...], settings: Settings) -> Runner:
        """Compile an OpenVINO model for latency and bind the inputs once."""
        import openvino as ov

        core = ov.Core()
        config = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": settings.threads,
            "NUM_STREAMS": 1,
            "INFERENCE_PRECISION_HINT": _HINTS[settings.precision],
        }
        compiled = core.compile_model(model, "CPU", config)
        request = compiled.create_infer_request()
        for index, tensor in enumerate(example_inputs):
            request.set_input_tensor(index, ov.Tensor(tensor.numpy()))
        applied = {"device": "cpu", "cpu_name": core.get_property("CPU", "FULL_DEVICE_NAME")}
        for prop in ("INFERENCE_PRECISION_HINT", "INFERENCE_NUM_THREADS", "NUM_STREAMS", "PERFORMANCE_HINT"):
            value = compiled.get_property(prop)
            applied[prop.lower()] = value.to_string() if hasattr(value, "to_string") else str(value)
        applied["optimization_capabilities"] = list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
        hint = applied["inference_precision_hint"]
        applied["precision"] = {v: k for k, v in _HINTS.items()}.get(hint, hint)
        if applied["precision"] != settings.precision:  # e.g. bf16 asked on a CPU without BF16: OpenVINO runs f32
            raise LatlabError(f"OpenVINO runs {applied['precision']} when asked for {settings.precision} on this CPU "
                              f"(capabilities: {', '.join(applied['optimization_capabilities'])}); choose another "
                              "--precision")
        return OpenVinoRunner(request, applied)
