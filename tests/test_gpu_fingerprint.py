"""read_gpus() against a fake pynvml that has only the documented read calls (so a clock setter would fail)."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field

import pytest

from latlab.errors import LatlabError
from latlab.fingerprint import Fingerprint, GpuInfo, read_gpus


class NVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(f"NVML error {value}")
        self.value = value


class NVMLError_LibraryNotFound(NVMLError):  # noqa: N801 (pynvml's own name)
    def __init__(self) -> None:
        super().__init__(12)


class NVMLError_NotSupported(NVMLError):  # noqa: N801
    def __init__(self) -> None:
        super().__init__(3)


@dataclass
class FakeGpu:
    name: str | bytes
    total_bytes: int
    capability: tuple[int, int]
    clocks: dict[int, int] | None  # None: the GPU refuses clock queries (NotSupported)


@dataclass
class FakeNvml:
    gpus: list[FakeGpu]
    present: bool = True
    cuda_driver: int | None = 12040
    lost: bool = False
    calls: list[str] = field(default_factory=list)

    def module(self) -> types.ModuleType:
        """A pynvml stand-in following nvidia-ml-py's signatures, with nothing that could change a setting."""
        nvml = types.ModuleType("pynvml")
        nvml.NVMLError = NVMLError
        nvml.NVMLError_LibraryNotFound = NVMLError_LibraryNotFound
        nvml.NVMLError_NotSupported = NVMLError_NotSupported
        nvml.NVML_CLOCK_SM, nvml.NVML_CLOCK_MEM = 1, 2

        def nvmlInit() -> None:
            self.calls.append("init")
            if not self.present:
                raise NVMLError_LibraryNotFound()

        def nvmlShutdown() -> None:
            self.calls.append("shutdown")

        def nvmlSystemGetCudaDriverVersion_v2() -> int:
            if self.cuda_driver is None:
                raise NVMLError_NotSupported()
            return self.cuda_driver

        def nvmlDeviceGetHandleByIndex(index: int) -> FakeGpu:
            if self.lost:
                raise NVMLError(15)  # NVML_ERROR_GPU_IS_LOST
            return self.gpus[index]

        def nvmlDeviceGetClockInfo(handle: FakeGpu, type: int) -> int:  # noqa: A002 (pynvml's parameter name)
            if handle.clocks is None:
                raise NVMLError_NotSupported()
            return handle.clocks[type]

        nvml.nvmlInit = nvmlInit
        nvml.nvmlShutdown = nvmlShutdown
        nvml.nvmlSystemGetDriverVersion = lambda: "550.54.15"
        nvml.nvmlSystemGetCudaDriverVersion_v2 = nvmlSystemGetCudaDriverVersion_v2
        nvml.nvmlDeviceGetCount = lambda: len(self.gpus)
        nvml.nvmlDeviceGetHandleByIndex = nvmlDeviceGetHandleByIndex
        nvml.nvmlDeviceGetName = lambda handle: handle.name
        nvml.nvmlDeviceGetMemoryInfo = lambda handle, version=None: types.SimpleNamespace(
            total=handle.total_bytes, free=handle.total_bytes // 2, used=handle.total_bytes // 2)
        nvml.nvmlDeviceGetCudaComputeCapability = lambda handle: handle.capability
        nvml.nvmlDeviceGetClockInfo = nvmlDeviceGetClockInfo
        return nvml


def install(monkeypatch: pytest.MonkeyPatch, fake: FakeNvml) -> FakeNvml:
    monkeypatch.setitem(sys.modules, "pynvml", fake.module())
    return fake


H100 = FakeGpu("NVIDIA H100 80GB HBM3", 85_520_809_984, (9, 0), {1: 1980, 2: 2619})
T4 = FakeGpu(b"Tesla T4", 16_106_127_360, (7, 5), {1: 585, 2: 5000})


def test_reads_every_gpu_and_shuts_nvml_down(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = install(monkeypatch, FakeNvml([H100, T4]))
    gpus = read_gpus()
    assert gpus == (
        GpuInfo("NVIDIA H100 80GB HBM3", 79.6, "550.54.15", "12.4", "9.0", {"sm": 1980, "memory": 2619}),
        GpuInfo("Tesla T4", 15.0, "550.54.15", "12.4", "7.5", {"sm": 585, "memory": 5000}),  # bytes name decoded
    )
    assert fake.calls == ["init", "shutdown"]


def test_no_driver_means_no_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = install(monkeypatch, FakeNvml([H100], present=False))
    assert read_gpus() == ()
    assert fake.calls == ["init"]  # nothing to shut down after a failed init


def test_no_pynvml_means_no_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    assert read_gpus() == ()


def test_informative_fields_a_gpu_refuses_are_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, FakeNvml([FakeGpu("GRID A100-4C", 4 * 2**30, (8, 0), None)], cuda_driver=None))
    (gpu,) = read_gpus()
    assert (gpu.name, gpu.compute_capability, gpu.clocks_mhz, gpu.cuda_version) == ("GRID A100-4C", "8.0", {}, "")


def test_a_gpu_that_does_not_answer_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = install(monkeypatch, FakeNvml([H100], lost=True))
    with pytest.raises(LatlabError, match="NVML could not read the GPUs .*nvidia-smi"):
        read_gpus()
    assert fake.calls == ["init", "shutdown"]


def test_gpus_survive_the_profile_json_and_enter_identity_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, FakeNvml([H100]))
    here = Fingerprint("cpu", ("avx2",), 8, 16, 16, 64.0, "Linux", "x86_64", gpus=read_gpus())
    assert Fingerprint.from_json(here.to_json()) == here
    other_driver = Fingerprint.from_json({**here.to_json(), "gpus": [{**here.to_json()["gpus"][0], "driver": "560.1"}]})
    assert here.differences(other_driver) == []  # a driver update alone does not flag a profile
    t4 = Fingerprint.from_json({**here.to_json(), "gpus": [{**here.to_json()["gpus"][0], "name": "Tesla T4"}]})
    assert here.differences(t4) == ["gpus: ['Tesla T4'] here vs ['NVIDIA H100 80GB HBM3'] in profile"]


def test_real_nvml_reads_or_reports_no_gpu() -> None:
    """Whatever this machine has: a tuple of GpuInfo, never an exception (here: no driver, so none)."""
    gpus = read_gpus()
    assert all(isinstance(g, GpuInfo) and g.name and g.compute_capability for g in gpus)
