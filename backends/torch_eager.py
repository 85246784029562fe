"""PyTorch eager: the reference backend; CPU always, CUDA when a GPU is present (timed with CUDA events)."""

from __future__ import annotations

from importlib.metadata import version
from typing import TYPE_CHECKING, Any

from latlab.backend import Availability, Backend, Runner, Settings

if TYPE_CHECKING:
    import torch

# torch is imported where a model runs, not here: a torch profile is read and checked without loading torch.
_DTYPES = {"f32": "float32", "bf16": "bfloat16", "fp16": "float16"}


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

    @property
    def precisions(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("f32", "bf16", "fp16") if _cuda() else ("f32", "bf16")

    def is_available(self) -> Availability:
        return Availability(True)

    def runtime_version(self) -> str:
        return version("torch")  # the same string as torch.__version__, without importing torch

    def default_settings(self) -> Settings:
        return Settings(device="cuda" if _cuda() else "cpu")

    def _prepare(self, module: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...], settings: Settings) -> Runner:
        import torch

        torch.set_num_threads(settings.threads)
        try:  # one inter-op thread, like the other backends; torch only allows this before any parallel work
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass
        dtype = getattr(torch, _DTYPES[settings.precision])
        module = module.to(device=settings.device, dtype=dtype).eval()
        inputs = tuple(t.to(settings.device, dtype=dtype if t.is_floating_point() else t.dtype) for t in example_inputs)
        ran = next(module.parameters(), torch.empty(0, dtype=dtype)).dtype
        applied = {
            "device": settings.device,
            "precision": {v: k for k, v in _DTYPES.items()}[str(ran).removeprefix("torch.")],
            "intra_op_threads": torch.get_num_threads(),
            "inter_op_threads": torch.get_num_interop_threads(),
        }
        cuda = settings.device == "cuda"
        if cuda:
            major, minor = torch.cuda.get_device_capability()
            applied.update(gpu=torch.cuda.get_device_name(), compute_capability=f"{major}.{minor}",
                           float32_matmul_precision=torch.get_float32_matmul_precision())  # "highest": no TF32
        return TorchRunner(module, inputs, applied, cuda=cuda)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
