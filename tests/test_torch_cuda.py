"""PyTorch eager on CUDA: timed by device events and synchronised, never by host clocks (faked without a GPU)."""

from __future__ import annotations

import time

import pytest
import torch

from backends.torch_cuda import CudaDevice, event_ms
from backends.torch_eager import TorchBackend, TorchRunner
from latlab.backend import Settings
from latlab.errors import LatlabError


def fake_events(monkeypatch: pytest.MonkeyPatch, log: list[str], elapsed_ms: float) -> None:
    class FakeEvent:
        count = 0

        def __init__(self, enable_timing: bool = False) -> None:
            assert enable_timing, "events that cannot time were created"
            FakeEvent.count += 1
            self.name = "start" if FakeEvent.count % 2 else "end"

        def record(self, stream: object = None) -> None:
            log.append(f"{self.name}.record({stream})")

        def synchronize(self) -> None:
            log.append(f"{self.name}.synchronize")

        def elapsed_time(self, end: FakeEvent) -> float:
            log.append(f"{self.name}.elapsed_time({end.name})")
            return elapsed_ms

    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)


def no_host_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden() -> int:
        raise AssertionError("a host clock was read")

    for name in ("perf_counter", "perf_counter_ns", "monotonic", "monotonic_ns", "time", "time_ns"):
        monkeypatch.setattr(time, name, forbidden)


class Logged(torch.nn.Module):
    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.log = log

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.log.append("forward")
        return x * 2


def test_cuda_time_ms_brackets_the_work_with_device_events(monkeypatch: pytest.MonkeyPatch) -> None:
    log: list[str] = []  # the order of device events and module calls
    fake_events(monkeypatch, log, elapsed_ms=2.5)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: log.append("device.synchronize"))
    no_host_clock(monkeypatch)
    runner = TorchRunner(Logged(log), (torch.ones(2),), {}, cuda=True)
    assert runner.time_ms() == 2.5
    assert log == ["start.record(None)", "forward", "end.record(None)", "end.synchronize",
                   "start.elapsed_time(end)"]


def test_cuda_run_waits_for_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    log: list[str] = []  # the order of device events and module calls
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: log.append("device.synchronize"))
    TorchRunner(Logged(log), (torch.ones(2),), {}, cuda=True).run()
    assert log == ["forward", "device.synchronize"]


def test_cpu_runner_uses_the_host_clock_and_no_events(monkeypatch: pytest.MonkeyPatch) -> None:
    log: list[str] = []  # the order of device events and module calls
    fake_events(monkeypatch, log, elapsed_ms=99.0)
    runner = TorchRunner(Logged(log), (torch.ones(2),), {})
    assert runner.time_ms() != 99.0
    assert log == ["forward"]


def test_event_ms_records_on_the_given_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    log: list[str] = []  # the order of device events and module calls
    fake_events(monkeypatch, log, elapsed_ms=0.75)
    stream = "stream7"
    assert event_ms(lambda: log.append("launch"), stream) == 0.75  # type: ignore[arg-type]
    assert log == ["start.record(stream7)", "launch", "end.record(stream7)", "end.synchronize",
                   "start.elapsed_time(end)"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present: the absence path does not apply")
def test_without_cuda_the_device_says_why_and_torch_refuses_cuda() -> None:
    assert "CUDA" in CudaDevice().missing()
    with pytest.raises(LatlabError, match="does not run on device 'cuda'"):
        TorchBackend().check(Settings(device="cuda"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device (torch.cuda.is_available() is False)")
def test_real_cuda_runner_times_and_reports_the_gpu() -> None:
    module = torch.nn.Sequential(torch.nn.Linear(256, 1024), torch.nn.GELU(), torch.nn.Linear(1024, 256))
    runner = TorchBackend().prepare(module, (torch.randn(8, 128, 256),), Settings(device="cuda"))
    runner.run()
    samples = [runner.time_ms() for _ in range(20)]
    assert all(ms > 0 for ms in samples)
    assert runner.applied["gpu"] == torch.cuda.get_device_name()
    assert runner.applied["float32_matmul_precision"] == torch.get_float32_matmul_precision()
    assert CudaDevice().missing() == ""
