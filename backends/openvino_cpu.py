"""OpenVINO on the CPU. Precision is always explicit: on CPUs with bf16 OpenVINO silently defaults to it.

int8 is NNCF's post-training quantization (static: calibrated ahead on token inputs), with the operations it
leaves in float run in f32, so an int8 profile means the same on every CPU kind.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import warnings
from collections import Counter
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

from latlab.backend import Availability, Backend, Runner, Settings
from latlab.errors import LatlabError

if TYPE_CHECKING:
    import torch

_HINTS = {"f32": "f32", "bf16": "bf16", "fp16": "f16"}
_MATRIX_OPS = ("FullyConnected", "MatMul")


class OpenVinoRunner(Runner):
    def __init__(self, request: Any, applied: dict[str, Any]) -> None:
        super().__init__(applied)
        self.request = request

    def run(self) -> None:
        self.request.infer()


class OpenVinoBackend(Backend):
    name = "openvino"
    pip_extra = "openvino"
    precisions = ("f32", "bf16", "fp16", "int8")
    quantizations = ("static",)

    def is_available(self) -> Availability:
        if importlib.util.find_spec("openvino") is None:
            return Availability(False, "openvino not installed; pip install 'latlab[openvino]'")
        return Availability(True)

    def check(self, settings: Settings) -> None:
        super().check(settings)
        if settings.precision == "int8" and importlib.util.find_spec("nncf") is None:
            raise LatlabError("OpenVINO int8 needs NNCF: pip install 'latlab[openvino]'")

    def runtime_version(self) -> str:
        import openvino

        return openvino.get_version()

    def disturbances(self) -> tuple[str, ...]:
        if not telemetry_sends():
            return ()
        return ("OpenVINO telemetry is on: every model conversion forks about 30 processes to send it (here: prepare "
                "about 8x slower, and children still running while timing starts); turn it off with "
                "'opt_in_out --opt_out' (setup.sh does)",)

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

        recipe = None
        if settings.precision == "int8":
            model, recipe = quantize(model, example_inputs)
        core = ov.Core()
        config = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": settings.threads,
            "NUM_STREAMS": 1,
            "INFERENCE_PRECISION_HINT": _hint(settings),
            # OpenVINO pins a worker thread only while no other compiled model holds that CPU, so with its default
            # a process that compiles many blocks gets some pinned and some not (call overhead 15 or 22 us at 2
            # threads here, against 13.5-16 us unpinned): off, every block and model runs alike
            "ENABLE_CPU_PINNING": False,
        }
        compiled = core.compile_model(model, "CPU", config)
        request = compiled.create_infer_request()
        for index, tensor in enumerate(example_inputs):
            request.set_input_tensor(index, ov.Tensor(tensor.numpy()))
        applied = {"device": "cpu", "cpu_name": core.get_property("CPU", "FULL_DEVICE_NAME")}
        for prop in ("INFERENCE_PRECISION_HINT", "INFERENCE_NUM_THREADS", "NUM_STREAMS", "PERFORMANCE_HINT",
                     "ENABLE_CPU_PINNING"):
            value = compiled.get_property(prop)
            applied[prop.lower()] = value.to_string() if hasattr(value, "to_string") else str(value)
        applied["optimization_capabilities"] = list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
        hint = applied["inference_precision_hint"]
        applied["precision"] = {v: k for k, v in _HINTS.items()}.get(hint, hint)
        if hint != _hint(settings):  # e.g. bf16 asked on a CPU without BF16: OpenVINO runs f32
            raise LatlabError(f"OpenVINO runs {applied['precision']} when asked for {settings.precision} on this CPU "
                              f"(capabilities: {', '.join(applied['optimization_capabilities'])}); choose another "
                              "--precision")
        if recipe is not None:
            applied.update(precision="int8", quantization=recipe, integer_ops=_integer_ops(compiled))
            if recipe["quantized_nodes"] and not applied["integer_ops"]:
                raise LatlabError("OpenVINO runs the quantized matrix products in float on this CPU (capabilities: "
                                  f"{', '.join(applied['optimization_capabilities'])}); use --precision f32")
        return OpenVinoRunner(request, applied)


def telemetry_sends() -> bool:
    """Whether OpenVINO's model conversion would send telemetry here, decided as it decides: on unless the user
    opted out (the consent file) or a CI variable is set."""
    try:
        from openvino_telemetry.utils.opt_in_checker import ConsentCheckResult, OptInChecker
    except ImportError:  # no telemetry package: conversion uses OpenVINO's stub
        return False
    result = OptInChecker().check(enable_opt_in_dialog=False, disable_in_ci=True)
    return result in (ConsentCheckResult.ACCEPTED, ConsentCheckResult.NO_FILE)


def _hint(settings: Settings) -> str:
    """The precision asked of OpenVINO; int8 models run whatever stays float in f32."""
    return _HINTS.get(settings.precision, "f32")


def quantize(model: Any, example_inputs: tuple[torch.Tensor, ...]) -> tuple[Any, dict[str, Any]]:
    """NNCF's post-training int8 for transformers (its default mixed preset: weights symmetric, activations
    asymmetric), calibrated on token inputs shaped like the example."""
    import nncf

    from backends.calibration import CALIBRATION_SAMPLES, calibration_inputs

    samples = calibration_inputs(example_inputs)
    nncf.set_log_level(logging.ERROR)
    # NNCF draws progress bars on the terminal for each calibration pass; latlab shows its own progress.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        quantized = nncf.quantize(model, nncf.Dataset(samples), model_type=nncf.ModelType.TRANSFORMER,
                                  subset_size=CALIBRATION_SAMPLES)
    fake_quantize = sum(op.get_type_name() == "FakeQuantize" for op in quantized.get_ordered_ops())
    return quantized, {"method": "static", "tool": f"nncf {version('nncf')}", "preset": "mixed",
                       "model_type": "transformer", "weights": "int8", "per_channel": True,
                       "activations": "int8/uint8", "float_ops": "f32",
                       "calibration": {"samples": CALIBRATION_SAMPLES, "inputs": "random token ids"},
                       "quantized_nodes": fake_quantize}


def _integer_ops(compiled: Any) -> int:
    """Matrix products the compiled model runs in 8-bit integers, read from OpenVINO's runtime graph."""
    ran: Counter[str] = Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if "layerType" in info and info["layerType"].astype(str) in _MATRIX_OPS:
            ran[info["runtimePrecision"].astype(str) if "runtimePrecision" in info else "?"] += 1
    return ran["i8"] + ran["u8"]
