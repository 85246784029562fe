"""This machine's identity as far as latency is concerned. Read-only: nothing here changes a setting."""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass, field
from typing import Any

import psutil

from latlab.errors import LatlabError
from latlab.limits import usable_cpus

# Instruction-set flags that select different kernels in oneDNN/MLAS/OpenVINO, hence different latencies.
KERNEL_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16",
                "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")

# The machine kinds this project meets, best first: (name, flags that define it). One word that tells profiles of
# different kinds apart in a file name and in `latlab info`; the full flag list stays in the fingerprint.
ISA_LEVELS = (
    ("amx", ("amx_tile", "amx_bf16")),
    ("avx512bf16", ("avx512f", "avx512_bf16")),
    ("avx512", ("avx512f",)),
    ("avx2", ("avx2", "fma")),
)


def isa_level(flags: tuple[str, ...] | list[str]) -> str:
    """The best instruction-set level the flags reach, e.g. ``avx2`` or ``amx``; ``baseline`` below AVX2."""
    return next((name for name, needs in ISA_LEVELS if all(f in flags for f in needs)), "baseline")


@dataclass(frozen=True)
class GpuInfo:
    """One GPU as NVML reports it. Only the name enters ``Fingerprint.identity``: the kernels that decide latency
    ship in cuBLAS/cuDNN/TensorRT (recorded as the runtime version), not in the driver, and flagging every driver
    update would block resuming and validating profiles on machines whose drivers are updated under them."""

    name: str
    memory_gib: float
    driver: str
    cuda_version: str
    compute_capability: str
    clocks_mhz: dict[str, int] = field(default_factory=dict)  # read at profile time; informative, not compared


@dataclass(frozen=True)
class Fingerprint:
    cpu_model: str
    cpu_flags: tuple[str, ...]
    physical_cores: int
    logical_cores: int
    usable_cpus: int
    memory_gib: float
    os: str
    machine: str
    gpus: tuple[GpuInfo, ...] = ()

    @property
    def isa_level(self) -> str:
        return isa_level(self.cpu_flags)

    def identity(self) -> dict[str, Any]:
        """The fields that must match for a profile to be trusted here. Clocks, OS patch level and the process's
        CPU affinity (``usable_cpus``, e.g. under taskset) are recorded but not compared."""
        return {
            "cpu_model": self.cpu_model,
            "cpu_flags": list(self.cpu_flags),
            "logical_cores": self.logical_cores,
            "memory_gib": round(self.memory_gib),
            "machine": self.machine,
            "gpus": [g.name for g in self.gpus],
        }

    def differences(self, other: Fingerprint, include_gpus: bool = True,
                    names: tuple[str, str] = ("in profile", "here")) -> list[str]:
        """Mismatches, worded by default for a profile (self) checked on this machine (other); ``names`` words them
        for any two machines. A CPU profile ignores GPUs."""
        mine, theirs = self.identity(), other.identity()
        keys = [k for k in mine if include_gpus or k != "gpus"]
        found = [f"{k}: {theirs[k]} {names[1]} vs {mine[k]} {names[0]}" for k in keys if mine[k] != theirs[k]]
        if self.isa_level != other.isa_level:  # the kind of machine first: it alone moves latencies by a third
            found.insert(0, f"instruction set {other.isa_level} {names[1]} vs {self.isa_level} {names[0]}")
        return found

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fingerprint:
        values = dict(data)
        values["cpu_flags"] = tuple(values.get("cpu_flags", ()))
        values["gpus"] = tuple(GpuInfo(**g) for g in values.get("gpus", ()))
        return cls(**values)


def _cpu() -> tuple[str, tuple[str, ...]]:
    import cpuinfo  # provided by py-cpuinfo2 (a pytest-benchmark dependency)

    info = cpuinfo.get_cpu_info()
    flags = set(info.get("flags", ()))
    return str(info.get("brand_raw") or platform.processor() or "unknown"), tuple(f for f in KERNEL_FLAGS if f in flags)


def read_gpus() -> tuple[GpuInfo, ...]:
    """GPUs through NVML (nvidia-ml-py); none when the library or driver is absent. Only queries, never sets.

    Name, memory and compute capability identify a GPU and must be readable; clocks and the CUDA driver version
    are informative, and some GPUs (vGPU, MIG) refuse them, so they are left out rather than failing the read.
    """
    try:
        import pynvml
    except ImportError:
        return ()
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:  # NVMLError_LibraryNotFound and friends: no driver, no GPU
        return ()
    try:
        return _read(pynvml)
    except pynvml.NVMLError as exc:  # the driver answers but a GPU does not (e.g. NVMLError_GPUIsLost)
        raise LatlabError(f"NVML could not read the GPUs ({exc}); check the driver with nvidia-smi") from None
    finally:
        pynvml.nvmlShutdown()


def _read(pynvml: Any) -> tuple[GpuInfo, ...]:
    driver = _text(pynvml.nvmlSystemGetDriverVersion())
    cuda = _optional(pynvml, pynvml.nvmlSystemGetCudaDriverVersion_v2)
    gpus = []
    for index in range(pynvml.nvmlDeviceGetCount()):
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
        clocks = {name: _optional(pynvml, pynvml.nvmlDeviceGetClockInfo, handle, kind)
                  for name, kind in (("sm", pynvml.NVML_CLOCK_SM), ("memory", pynvml.NVML_CLOCK_MEM))}
        gpus.append(GpuInfo(
            name=_text(pynvml.nvmlDeviceGetName(handle)),
            memory_gib=round(pynvml.nvmlDeviceGetMemoryInfo(handle).total / 2**30, 1),
            driver=driver,
            cuda_version=f"{cuda // 1000}.{cuda % 1000 // 10}" if cuda is not None else "",
            compute_capability=f"{major}.{minor}",
            clocks_mhz={name: int(mhz) for name, mhz in clocks.items() if mhz is not None},
        ))
    return tuple(gpus)


def _optional(pynvml: Any, query: Any, *args: Any) -> Any:
    """An NVML query whose failure (e.g. NVMLError_NotSupported) means "unknown", not "no GPU"."""
    try:
        return query(*args)
    except pynvml.NVMLError:
        return None


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def read_fingerprint() -> Fingerprint:
    model, flags = _cpu()
    return Fingerprint(
        cpu_model=model,
        cpu_flags=flags,
        physical_cores=psutil.cpu_count(logical=False) or 0,
        logical_cores=psutil.cpu_count(logical=True) or 0,
        usable_cpus=usable_cpus(),
        memory_gib=round(psutil.virtual_memory().total / 2**30, 1),
        os=f"{platform.system()} {platform.release()}",
        machine=platform.machine(),
        gpus=read_gpus(),
    )
