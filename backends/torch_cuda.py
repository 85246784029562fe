"""CUDA through torch, shared by the GPU backends: what the device is, buffers, a stream, and device-side timing.

Kept apart from the backends so that the TensorRT backend can be handed a fake device in tests (no GPU here).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def event_ms(launch: Callable[[], Any], stream: torch.cuda.Stream | None = None) -> float:
    """Device time of the work ``launch`` enqueues on ``stream`` (the current stream when None).

    Host clocks around an asynchronous launch time the launch, not the kernels: CUDA events recorded on the same
    stream bracket the kernels themselves, and waiting on the end event makes the result final.
    """
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    start.record(stream)
    launch()
    end.record(stream)
    end.synchronize()
    return float(start.elapsed_time(end))


class CudaDevice:
    """The current CUDA device as torch sees it. Every method but ``missing`` needs a device to be there."""

    def missing(self) -> str:
        """Why nothing can run on CUDA here, or "" when it can."""
        if torch.version.cuda is None:
            return f"no CUDA: torch {torch.__version__} is a CPU-only build"
        if not torch.cuda.is_available():
            return "no CUDA device visible to torch (no NVIDIA driver/GPU, or CUDA_VISIBLE_DEVICES hides it)"
        return ""

    def name(self) -> str:
        return torch.cuda.get_device_name()

    def compute_capability(self) -> str:
        major, minor = torch.cuda.get_device_capability()
        return f"{major}.{minor}"

    def upload(self, tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return tensor.to(device="cuda", dtype=dtype).contiguous()

    def empty(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        return torch.empty(shape, dtype=dtype, device="cuda")

    def stream(self) -> torch.cuda.Stream:
        """A dedicated stream: TensorRT warns that enqueueing on the default stream adds synchronisation."""
        return torch.cuda.Stream()

    def synchronize(self, stream: torch.cuda.Stream | None = None) -> None:
        """Wait for ``stream``, or for the whole device when None (e.g. after uploads on the default stream)."""
        if stream is None:
            torch.cuda.synchronize()
        else:
            stream.synchronize()

    def time_ms(self, launch: Callable[[], Any], stream: torch.cuda.Stream | None = None) -> float:
        return event_ms(launch, stream)
