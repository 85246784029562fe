"""What latlab adds to a pytest-benchmark saved run, and how it is read back. The one definition of the format.

pytest-benchmark writes ``<storage>/<machine id>/NNNN_<name>.json`` (``--benchmark-save``/``--benchmark-autosave``).
latlab's plugin adds, through pytest-benchmark's hooks and ``extra_info``::

    machine_info.latlab.fingerprint     latlab.fingerprint.Fingerprint of the machine that ran
    benchmarks[].extra_info.latlab      a BenchRecord: backend, runtime_version, threads, precision, device,
                                        batch, seq_len, timer, model; LatencyStats of the model (median_ms,
                                        p90_ms, p95_ms, p99_ms, ...); ``anchor`` (the calibration workload timed
                                        in the same rounds) and ``reference`` (A/B mode) as LatencyStats;
                                        ``relative``: each gate statistic of the model over the anchor's, per
                                        block of consecutive rounds, median over blocks; the ``verdicts``;
                                        ``samples_ms`` (and ``anchor.samples_ms``, ``reference.samples_ms``):
                                        the timed rounds in order, at most STORED_SAMPLES, the same rounds for
                                        each, so that a later comparison can bootstrap an interval

Runs saved before samples were stored are read all the same; their gates compare point estimates.
"""

from __future__ import annotations

import glob
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from latlab.atomic import read_json
from latlab.errors import LatlabError
from latlab.fingerprint import Fingerprint
from latlab.stats import LatencyStats

# Settings that must match for two measurements to be comparable at all.
IDENTITY = ("backend", "runtime_version", "threads", "precision", "device", "timer", "batch", "seq_len")
_STATS_FIELDS = tuple(f.name for f in fields(LatencyStats))
STORED_SAMPLES = 2000  # ~20 kB of JSON per series; an interval from 2000 rounds is already within a percent or so


def stored(samples: Sequence[float]) -> tuple[float, ...]:
    """Every k-th round, k chosen to keep at most STORED_SAMPLES: the same rounds for series of the same length."""
    step = max(1, math.ceil(len(samples) / STORED_SAMPLES))
    return tuple(round(float(value), 6) for value in samples[::step])


@dataclass(frozen=True)
class BenchRecord:
    backend: str
    runtime_version: str
    threads: int
    precision: str
    device: str
    batch: int
    seq_len: int
    timer: str  # pytest-benchmark's timer: time.perf_counter (latency) or e.g. time.process_time (CPU time)
    model: str
    stats: LatencyStats
    anchor: LatencyStats | None = None
    anchor_name: str = ""
    relative: dict[str, float] = field(default_factory=dict)  # per gate statistic: model / anchor, drift-corrected
    reference: LatencyStats | None = None
    applied: dict[str, Any] = field(default_factory=dict)
    verdicts: tuple[dict[str, Any], ...] = ()
    samples_ms: tuple[float, ...] = ()  # ``stored`` rounds of the model; empty in runs saved before samples were
    anchor_samples_ms: tuple[float, ...] = ()  # the anchor in the same rounds
    reference_samples_ms: tuple[float, ...] = ()  # the A/B reference in the same rounds

    def identity(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in IDENTITY}

    def setting_differences(self, baseline: BenchRecord, where: str) -> list[str]:
        """Settings that differ from ``baseline``'s, e.g. ``runtime_version: 1.31.1 here vs 1.30.0 in <where>``;
        the hardware is ``Fingerprint.differences``'s (``hardware_problems``)."""
        return [f"{key}: {getattr(self, key)} here vs {getattr(baseline, key)} in {where}"
                for key in IDENTITY if getattr(self, key) != getattr(baseline, key)]

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {**self.identity(), "model": self.model, **self.stats.to_json()}
        if self.anchor:
            data["anchor"] = {"name": self.anchor_name, **self.anchor.to_json(),
                              "samples_ms": list(self.anchor_samples_ms)}
            data["relative"] = {stat: round(value, 6) for stat, value in self.relative.items()}
        if self.reference:
            data["reference"] = {**self.reference.to_json(), "samples_ms": list(self.reference_samples_ms)}
        data["applied"] = self.applied
        data["verdicts"] = list(self.verdicts)
        data["samples_ms"] = list(self.samples_ms)
        return data

    @classmethod
    def from_json(cls, data: Any) -> BenchRecord:
        """Raises KeyError/TypeError/ValueError on a malformed record; ``load_run`` names the file."""
        anchor, reference = data.get("anchor"), data.get("reference")
        return cls(
            backend=str(data["backend"]), runtime_version=str(data["runtime_version"]), threads=int(data["threads"]),
            precision=str(data["precision"]), device=str(data["device"]), batch=int(data["batch"]),
            seq_len=int(data["seq_len"]), timer=str(data["timer"]), model=str(data["model"]),
            stats=_stats(data),
            anchor=_stats(anchor) if anchor else None,
            anchor_name=str(anchor["name"]) if anchor else "",
            relative={str(k): float(v) for k, v in data.get("relative", {}).items()},
            reference=_stats(reference) if reference else None,
            applied=dict(data.get("applied", {})),
            verdicts=tuple(dict(v) for v in data.get("verdicts", ())),
            samples_ms=_samples(data),
            anchor_samples_ms=_samples(anchor) if anchor else (),
            reference_samples_ms=_samples(reference) if reference else (),
        )


def _stats(data: Mapping[str, Any]) -> LatencyStats:
    """A saved statistic that is not a finite, non-negative number would surface later as a formatting crash."""
    values = {name: data[name] for name in _STATS_FIELDS}
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return LatencyStats(**values)


def _samples(data: Mapping[str, Any]) -> tuple[float, ...]:
    return tuple(float(value) for value in data.get("samples_ms", ()))


def saved_fingerprint(machine_info: Mapping[str, Any]) -> Fingerprint | None:
    """The fingerprint stored in a run's machine_info by latlab's plugin; None for runs saved without it."""
    latlab = machine_info.get("latlab") if isinstance(machine_info, Mapping) else None
    if not isinstance(latlab, Mapping) or "fingerprint" not in latlab:
        return None
    return Fingerprint.from_json(dict(latlab["fingerprint"]))


@dataclass(frozen=True)
class SavedRun:
    path: str
    datetime: str
    fingerprint: Fingerprint | None  # None when saved without latlab's plugin
    records: dict[str, BenchRecord]  # by pytest node id (pytest-benchmark's "fullname")
    plain: tuple[str, ...]  # benchmarks without a latlab record (the plain ``benchmark`` fixture)

    @property
    def uses_gpu(self) -> bool:
        return any(record.device != "cpu" for record in self.records.values())


def hardware_problems(baseline: SavedRun, here: Fingerprint | None, include_gpus: bool) -> list[str]:
    """How the machine ``here`` differs from the one that saved ``baseline`` (``Fingerprint.differences``); one
    line when either fingerprint is unknown. Prints nothing."""
    if baseline.fingerprint is None or here is None:
        return ["hardware unknown: a run was saved without latlab's fingerprint"]
    return baseline.fingerprint.differences(here, include_gpus=include_gpus, names=("in baseline", "here"))


def parse_run(data: Any, source: str) -> SavedRun:
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise LatlabError(f"{source}: not a pytest-benchmark saved run (no 'benchmarks' list); pass a file "
                          "written by --benchmark-save or --benchmark-autosave")
    try:
        fingerprint = saved_fingerprint(data.get("machine_info", {}))
    except (KeyError, TypeError, ValueError) as exc:
        raise LatlabError(f"{source}: machine_info.latlab.fingerprint is malformed ({exc})") from None
    records: dict[str, BenchRecord] = {}
    plain: list[str] = []
    for bench in data["benchmarks"]:
        name = bench.get("fullname") if isinstance(bench, dict) else None
        if not isinstance(name, str):
            raise LatlabError(f"{source}: a benchmark has no 'fullname'; the file is damaged")
        extra = bench.get("extra_info") or {}
        if "latlab" not in extra:
            plain.append(name)
            continue
        try:
            records[name] = BenchRecord.from_json(extra["latlab"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise LatlabError(f"{source}: benchmark {name!r}: latlab record is malformed ({exc!r})") from None
    return SavedRun(source, str(data.get("datetime", "")), fingerprint, records, tuple(plain))


def load_run(path: str | Path) -> SavedRun:
    return parse_run(read_json(path, "saved run", "save one with pytest --benchmark-autosave"), str(path))


def by_test(runs: Sequence[SavedRun]) -> dict[str, tuple[BenchRecord, ...]]:
    """Each test's records across ``runs``, one per run that timed it: a baseline saved from several processes."""
    found: dict[str, list[BenchRecord]] = {}
    for run in runs:
        for name, record in run.records.items():
            found.setdefault(name, []).append(record)
    return {name: tuple(records) for name, records in found.items()}


def storage_folder(storage: str) -> Path:
    """pytest-benchmark's ``--benchmark-storage`` (``file://`` prefix optional) as a folder."""
    path = storage.removeprefix("file://")
    if "://" in path:
        raise LatlabError(f"--benchmark-storage {storage}: latlab reads saved runs from a folder, not from "
                          "another storage; pass a folder")
    return Path(path)


def find_runs(storage: str | Path, name: str | None = None) -> list[Path]:
    """Saved runs under pytest-benchmark's storage folder, oldest first (by their NNNN_ counter); with ``name``,
    only those saved as ``--benchmark-save=NAME``."""
    pattern = f"[0-9][0-9][0-9][0-9]_{glob.escape(name) if name else '*'}.json"
    return sorted(Path(storage).glob(f"*/{pattern}"), key=lambda p: (p.name, str(p.parent)))
