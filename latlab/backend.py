"""The backend plugin interface. A backend turns a torch module into something that runs one inference.

Third-party backends subclass ``Backend`` and register it under the entry-point group ``latlab.backends``
(see ``latlab.registry``); the built-in ones in ``backends/`` are registered the same way in pyproject.toml.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from latlab.errors import LatlabError

if TYPE_CHECKING:  # torch loads only where a model is built, so prediction and `latlab --help` stay fast
    import torch

PRECISIONS = ("f32", "bf16", "fp16", "int8")
DEVICES = ("cpu", "cuda")
# How int8 models are made: weights quantized ahead, activations at run time (dynamic), or both ahead from a
# calibration pass (static). Backends list the ones they implement; each records its full recipe in `applied`.
QUANTIZATIONS = ("dynamic", "static")


@dataclass(frozen=True)
class Settings:
    """What the user asks for. Backends apply it, read back what the runtime did, and report that."""

    threads: int = 1
    precision: str = "f32"
    device: str = "cpu"
    quantization: str = ""  # int8 only: one of QUANTIZATIONS

    @property
    def numerics(self) -> str:
        """Precision with its int8 method, as names and labels show it: ``f32``, ``int8-static``."""
        return f"{self.precision}-{self.quantization}" if self.quantization else self.precision


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


class Runner(ABC):
    """One prepared model with its inputs bound: ``run`` does exactly one complete inference."""

    applied: dict[str, Any]

    def __init__(self, applied: dict[str, Any] | None = None) -> None:
        self.applied = dict(applied or {})

    @abstractmethod
    def run(self) -> None:
        """One inference, finished when this returns (device work synchronised)."""

    def time_ms(self) -> float:
        """Latency of one inference. Host clock by default; asynchronous devices override with device timers."""
        start = time.perf_counter_ns()
        self.run()
        return (time.perf_counter_ns() - start) / 1e6

    def close(self) -> None:
        """Release runtime resources early; the default relies on garbage collection."""


class Backend(ABC):
    """Subclasses implement ``_prepare`` (and ``_prepare_onnx`` if the runtime loads ONNX files); the public
    methods refuse what cannot run first, so no caller has to remember to check."""

    name: ClassVar[str]
    pip_extra: ClassVar[str]
    precisions: ClassVar[tuple[str, ...]] = ("f32",)
    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    quantizations: ClassVar[tuple[str, ...]] = ()  # int8 methods, the default first; empty without int8

    @abstractmethod
    def is_available(self) -> Availability:
        """Whether the runtime imports and can run here; the reason says what is missing when it cannot."""

    @abstractmethod
    def runtime_version(self) -> str:
        ...

    # Process-wide state that moves this runtime's latency, as ``process_state`` reads it (see there): what a
    # profile that predates its recording was measured with, and how a user sets it.
    unrecorded_state: ClassVar[dict[str, Any]] = {}
    process_state_help: ClassVar[str] = ""

    def process_state(self, settings: Settings) -> dict[str, Any]:
        """State of this process, read back, that holds for every model it runs and changes their latency (torch:
        whether its weights sit on huge pages). A profile records it in ``applied``; measuring against a profile
        taken in another state is refused like a foreign machine. None by default."""
        return {}

    def disturbances(self) -> tuple[str, ...]:
        """What this runtime would do on this machine that disturbs measuring, each with its fix; the CLI warns
        before measuring. None by default."""
        return ()

    def prepare(self, module: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...], settings: Settings) -> Runner:
        """Convert/compile ``module`` for the exact shapes of ``example_inputs`` with ``settings`` applied."""
        self.check(settings)
        return self._prepare(module, example_inputs, settings)

    def prepare_onnx(self, model: bytes | str | Path, example_inputs: tuple[torch.Tensor, ...],
                     settings: Settings) -> Runner:
        """Load an ONNX model (its bytes or a file) for the exact shapes of ``example_inputs``."""
        self.check(settings)
        if not isinstance(model, bytes):
            try:
                model = Path(model).read_bytes()
            except OSError as exc:
                raise LatlabError(f"cannot read ONNX file {model}: {exc.strerror}") from None
        return self._prepare_onnx(model, example_inputs, settings)

    @abstractmethod
    def _prepare(self, module: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...], settings: Settings) -> Runner:
        """``prepare`` after the settings were checked."""

    def _prepare_onnx(self, model: bytes, example_inputs: tuple[torch.Tensor, ...], settings: Settings) -> Runner:
        raise LatlabError(f"backend {self.name!r} cannot load an ONNX file; pass the torch module instead")

    def default_settings(self) -> Settings:
        return Settings()

    def settings(self, threads: int = 1, precision: str = "f32", device: str | None = None,
                 quantization: str | None = None) -> Settings:
        """What a user asked for, completed with this backend's defaults (device, int8 method) and checked."""
        if quantization is None and precision == "int8" and self.quantizations:
            quantization = self.quantizations[0]
        settings = Settings(threads=threads, precision=precision, device=device or self.default_settings().device,
                            quantization=quantization or "")
        self.check(settings)
        return settings

    def check(self, settings: Settings) -> None:
        """Refuse settings this backend cannot honour, or a runtime that is not there, with one clear line."""
        available = self.is_available()
        if not available:
            raise LatlabError(f"backend {self.name!r} is not available: {available.reason}")
        if settings.precision not in self.precisions:
            raise LatlabError(f"backend {self.name!r} does not support precision {settings.precision!r} "
                              f"(supported: {', '.join(self.precisions)})")
        if settings.device not in self.devices:
            raise LatlabError(f"backend {self.name!r} does not run on device {settings.device!r} "
                              f"(supported: {', '.join(self.devices)})")
        if settings.precision == "int8" and settings.quantization not in self.quantizations:
            raise LatlabError(f"backend {self.name!r} has no {settings.quantization or 'unnamed'} int8 quantization "
                              f"(it has: {', '.join(self.quantizations)})")
        if settings.precision != "int8" and settings.quantization:
            raise LatlabError(f"quantization {settings.quantization!r} applies to precision int8 only, "
                              f"not {settings.precision}")
        if settings.threads < 1:
            raise LatlabError(f"threads must be at least 1, got {settings.threads}")


@dataclass(frozen=True)
class BackendInfo:
    """What ``latlab backends`` lists for each registered backend."""

    name: str
    available: bool
    reason: str
    runtime_version: str
    precisions: tuple[str, ...]
    devices: tuple[str, ...]
    pip_extra: str
    source: str = field(default="")
    quantizations: tuple[str, ...] = ()
