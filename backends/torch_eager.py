"""PyTorch eager: the reference backend; CPU always, CUDA when a GPU is present (timed with CUDA events).

int8 is dynamic quantization of the linear layers on the CPU (weights int8 per tensor ahead, activations at run
time), the eager-mode recipe torch itself offers. torch marks that API deprecated in favour of torchao, which
is not a dependency here; a profile records the torch version it ran on.

On the CPU, whether torch's tensors sit on huge pages moves latency from process to process (see latlab.process);
`process_state` reads back what this process got, and a profile records it.
"""

from __future__ import annotations

import warnings
from functools import cache
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

from latlab.backend import Availability, Backend, Runner, Settings
from latlab.errors import LatlabError
from latlab.process import HUGE_PAGES_ENV

if TYPE_CHECKING:
    import torch

# torch is imported where a model runs, not here: a torch profile is read and checked without loading torch.
_DTYPES = {"f32": "float32", "bf16": "bfloat16", "fp16": "float16"}
_PROBE_BYTES = 4 << 20  # above torch's 2 MB threshold, so it holds at least one whole huge page when they are on


@cache
def huge_pages() -> bool:
    """Whether this process's large torch tensors really land on huge pages (the kernel may refuse them even when
    torch asks); fixed at torch's first allocation, so read once."""
    import torch

    probe = torch.ones(_PROBE_BYTES, dtype=torch.uint8)
    try:
        with open("/proc/self/smaps") as smaps:
            return anon_huge_kib(smaps.read(), probe.data_ptr()) > 0
    except OSError:  # not Linux: no transparent huge pages to read
        return False


def anon_huge_kib(smaps: str, address: int) -> int:
    """``AnonHugePages`` of the mapping in a ``/proc/<pid>/smaps`` text that holds ``address``; 0 if none does."""
    inside = False
    for line in smaps.splitlines():
        first, _, rest = line.partition(" ")
        if not first.endswith(":"):  # a mapping's header: "start-end perms offset dev inode [path]"
            start, _, end = first.partition("-")
            inside = int(start, 16) <= address < int(end, 16)
        elif inside and first == "AnonHugePages:":
            return int(rest.split()[0])
    return 0


class TorchRunner(Runner):
    def __init__(self, module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], applied: dict[str, Any],
                 cuda: bool = False) -> None:
        super().__init__(applied)
        self.module = module
        self.inputs = inputs
        self.cuda = cuda

    def _forward(self) -> None:
        import torch

        with torch.inference_mode():
            self.module(*self.inputs)

    def run(self) -> None:
        self._forward()
        if self.cuda:
            import torch

            torch.cuda.synchronize()

    def time_ms(self) -> float:
        if not self.cuda:
            return super().time_ms()
        from backends.torch_cuda import event_ms

        return event_ms(self._forward)


class TorchBackend(Backend):
    name = "torch"
    pip_extra = "(none: torch is a core dependency)"

    @property
    def devices(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("cpu", "cuda") if _cuda() else ("cpu",)

    quantizations = ("dynamic",)

    @property
    def precisions(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("f32", "bf16", "fp16", "int8") if _cuda() else ("f32", "bf16", "int8")

    def check(self, settings: Settings) -> None:
        super().check(settings)
        if settings.precision == "int8" and settings.device != "cpu":
            raise LatlabError("torch int8 (dynamic quantization) runs on the CPU only; use --device cpu")

    def is_available(self) -> Availability:
        return Availability(True)

    def runtime_version(self) -> str:
        return version("torch")  # the same string as torch.__version__, without importing torch

    def default_settings(self) -> Settings:
        return Settings(device="cuda" if _cuda() else "cpu")

    unrecorded_state = {"huge_pages": False}  # latlab did not ask for them before it recorded them
    process_state_help = (f"torch uses huge pages when {HUGE_PAGES_ENV}=1 is set before it starts; latlab and kdnas "
                          f"set it unless it is set: run with {HUGE_PAGES_ENV}=0 or 1 to match the profile")

    def process_state(self, settings: Settings) -> dict[str, Any]:
        return {"huge_pages": huge_pages()} if settings.device == "cpu" else {}

    def _prepare(self, module: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...], settings: Settings) -> Runner:
        import torch

        torch.set_num_threads(settings.threads)
        try:  # one inter-op thread, like the other backends; torch only allows this before any parallel work
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass
        dtype = getattr(torch, _DTYPES.get(settings.precision, "float32"))  # int8: float32 outside the Linear layers
        module = module.to(device=settings.device, dtype=dtype).eval()
        inputs = tuple(t.to(settings.device, dtype=dtype if t.is_floating_point() else t.dtype) for t in example_inputs)
        ran = next(module.parameters(), torch.empty(0, dtype=dtype)).dtype
        applied = {
            "device": settings.device,
            "precision": {v: k for k, v in _DTYPES.items()}[str(ran).removeprefix("torch.")],
            "intra_op_threads": torch.get_num_threads(),
            "inter_op_threads": torch.get_num_interop_threads(),
            **self.process_state(settings),
        }
        if settings.precision == "int8":
            module, applied["quantization"], applied["integer_ops"] = _quantize(module)
            applied["precision"] = "int8"
        cuda = settings.device == "cuda"
        if cuda:
            major, minor = torch.cuda.get_device_capability()
            applied.update(gpu=torch.cuda.get_device_name(), compute_capability=f"{major}.{minor}",
                           float32_matmul_precision=torch.get_float32_matmul_precision())  # "highest": no TF32
        return TorchRunner(module, inputs, applied, cuda=cuda)


def _quantize(module: torch.nn.Module) -> tuple[torch.nn.Module, dict[str, Any], int]:
    """The module with its Linear layers dynamically quantized, the recipe, and how many layers were converted."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the deprecation notice for torch.ao.quantization (see the module docstring)
        quantized = torch.ao.quantization.quantize_dynamic(module, {torch.nn.Linear}, dtype=torch.qint8)
    converted = sum(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in quantized.modules())
    recipe = {"method": "dynamic", "tool": f"torch.ao.quantization {version('torch')}", "ops": ["Linear"],
              "weights": "int8", "per_channel": False, "activations": "uint8 (at run time)",
              "engine": torch.backends.quantized.engine}
    return quantized, recipe, converted


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
