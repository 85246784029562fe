"""Resident memory next to latency: how much a deployed model holds once it is loaded and has run.

Users ask for a model's latency and its size together. Weight bytes follow from the architecture
(``Architecture.weight_mb``); what a runtime really keeps resident (its copy of the weights, buffers it plans for
activations, per-session state) does not, so it is measured: how much this process's resident set shrinks when an
item that was built, prepared and run once is released, its torch module dropped before (a runtime that converted
it keeps its own copy). Each item is measured alone, with freed heap handed back to the system before each reading.
What outlives a model (the runtime's libraries, thread pools, global caches) is not given back with it, so it is
the process's, not counted as any model's.

A profile stores one figure per block (``Profile.resident_mib``), and a whole model's memory is priced from them
by the arithmetic that prices its latency (``latlab.predict``): the per-session floor once, each layer its growth
between the 1- and D-layer models, the model the mean premium of its layers.
"""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import psutil

from latlab.accuracy import Accuracy
from latlab.architecture import Architecture
from latlab.backend import Backend, Settings
from latlab.predict import LatencyTable, predict_ms
from latlab.profile import Profile
from latlab.protocol import Report, quiet

MIB = 2 ** 20
Build = Callable[[], tuple]  # () -> (torch module, example inputs), as latlab.modules builds them


def _release_freed_heap() -> None:
    """Collect garbage and hand freed heap pages back to the system (glibc), so the resident set shows what is held,
    not what the allocator kept for later."""
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the figures then include what the allocator keeps
        pass


def _rss() -> int:
    return psutil.Process().memory_info().rss


def resident_mib(backend: Backend, build: Build, settings: Settings) -> float:
    """MiB the process gives back when one item, built, prepared and run once, is released.

    Read on release rather than as growth on load: converting a model (tracing, export) leaves Python and heap
    fragments that no release returns, and they would count as the model's. Measured on whole ONNX Runtime models
    built twice, growth on load differed by up to 50% between copies, the release by at most 3%."""
    module, inputs = build()
    runner = backend.prepare(module, inputs, settings)
    del module, inputs  # a runtime that converted the module holds its own copy; eager torch keeps this one
    runner.run()
    _release_freed_heap()
    loaded = _rss()
    runner.close()
    del runner
    _release_freed_heap()
    return (loaded - _rss()) / MIB


def measure_resident(backend: Backend, builds: dict[str, Build], settings: Settings,
                     report: Report = quiet) -> dict[str, float]:
    """``resident_mib`` of every item, by key."""
    found = {}
    for index, (key, build) in enumerate(builds.items()):
        report("memory", index, len(builds))
        found[key] = round(resident_mib(backend, build, settings), 3)
    report("memory", len(builds), len(builds))
    return found


def memory_table(profile: Profile) -> LatencyTable:
    """The profile's resident MiB per block in the table that prices latency: the same arithmetic in other units,
    without the calibration (it was fitted on milliseconds)."""
    blocks = {key: entry.block for key, entry in profile.entries.items()}
    return LatencyTable.of({blocks[key]: mib for key, mib in profile.resident_mib.items() if key in blocks},
                           profile.space.name, profile.protocol.model_depth)


def predict_resident_mib(arch: Architecture, table: LatencyTable) -> float:
    """MiB a whole model holds resident, from a ``memory_table``."""
    return predict_ms(arch, table)


@dataclass(frozen=True)
class MemoryCheck:
    """Random whole models measured like the blocks, against what the blocks predict for them."""

    archs: list[Architecture]
    predicted_mib: list[float]
    measured_mib: list[float]

    @property
    def accuracy(self) -> Accuracy:
        return Accuracy.of(self.predicted_mib, self.measured_mib)

    def to_json(self) -> dict[str, Any]:
        return {**self.accuracy.to_json(),
                "archs": [{"arch": a.to_json(), "predicted_mib": round(p, 3), "measured_mib": m}
                          for a, p, m in zip(self.archs, self.predicted_mib, self.measured_mib)]}


def measure_memory(profile: Profile, backend: Backend, count: int, seed: int, report: Report = quiet) -> MemoryCheck:
    """Measure every block's resident memory into ``profile.resident_mib``, then ``count`` random whole models of its
    space (``latlab validate``'s architectures for the same seed) in the same pass, and check the prediction."""
    from latlab.modules import build_block, build_model  # torch loads only where something is measured
    from latlab.validate import sample_architectures

    archs = sample_architectures(profile, count, seed)
    builds: dict[str, Build] = {key: partial(build_block, entry.block) for key, entry in profile.entries.items()}
    builds.update({f"whole/{i}": partial(build_model, arch, seed=i) for i, arch in enumerate(archs)})
    found = measure_resident(backend, builds, profile.settings, report)
    profile.resident_mib = {key: mib for key, mib in found.items() if key in profile.entries}
    table = memory_table(profile)
    return MemoryCheck(archs, [predict_resident_mib(a, table) for a in archs],
                       [found[f"whole/{i}"] for i in range(len(archs))])
