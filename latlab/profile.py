"""The device profile: the one file everything else stands on. This module is its only definition.

A profile is plain, versioned JSON. Units are in field names (``median_ms``); batch and seq_len are part of
every block, so every latency is per call at that batch size. Layout (schema_version 4)::

    schema_version   int, bumped on any incompatible change; versions this latlab cannot price are refused, not
                     guessed at. 4: the optional ``transfer`` record (an older latlab would take estimated
                     entries for measured ones); 3 (still read): ``model`` blocks (layers timed inside uniform whole models, see latlab.predict)
                     and ``protocol.model_depth``; 2 (still read: its layers were timed alone, model_depth 0):
                     layer blocks carry Hugging Face's attention mask; 1 (refused) priced layers without it
    created_utc      ISO timestamp
    backend          {name, runtime_version}
    settings         {threads, precision, device[, quantization]}: what was asked for; quantization (dynamic or
                     static) only with precision int8, whose full recipe the backend reports in ``applied``
    applied          what the runtime reported back after applying the settings, and the state of the process it
                     ran in (``Backend.process_state``: torch's ``huge_pages``), which measuring refuses to mix
    software         {python, torch, transformers, latlab}
    fingerprint      latlab.fingerprint.Fingerprint
    protocol         latlab.protocol.Protocol
    space            latlab.space.SearchSpace
    entries          {block key: {block: {...}, stats: LatencyStats, rounds_ms: [[...], ...], unstable: bool}}
    calibration      null, or {blocks: "profile" | "re-timed", models: [{arch, table_ms, changes_ms, deep_ms,
                     rounds_ms}]}: mixed whole models timed with the blocks, fitting (when read) what a
                     change of layer shape and a layer past the model depth cost (latlab.calibration); absent
                     before it, read as null
    resident_mib     {block key: MiB}: what each block holds resident once loaded and run once (latlab.memory,
                     ``latlab memory``); empty until measured, absent before it
    host_noise       [latlab.host.HostNoise]: how quiet the host was when profiling started (or resumed) and ended,
                     a fixed product's spread between rounds at the profile's threads; CPU only, absent before it
    complete         false while a run is in progress (``latlab profile --resume`` continues it)
    transfer         null, except in a profile written by ``latlab transfer``: {source, source_label, source_cpu,
                     source_model_depth, measured: [block keys timed here], fit: {kind: {log_ratio, blocks, spread_pct,
                     terms: {feature: {center, coefficient}}}} (latlab.transfer.KindFit), residuals_pct: {block key:
                     measured vs fit}}; every other entry is an estimate with a single sample
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from functools import cached_property
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from latlab.atomic import read_json, write_json
from latlab.backend import DEVICES, PRECISIONS, QUANTIZATIONS, Settings
from latlab.blocks import KINDS, Block
from latlab.calibration import Calibration
from latlab.errors import LatlabError
from latlab.fields import finite, refuse, short, typed, boolean, whole
from latlab.fingerprint import Fingerprint
from latlab.host import HostNoise
from latlab.protocol import Protocol, Rounds
from latlab.space import DEFAULT_SPACE, SearchSpace
from latlab.stats import LatencyStats

SCHEMA_VERSION = 4
OLDEST_READABLE = 2  # version 3 is version 4 without transfers, version 2 is version 3 without model blocks


@dataclass
class Entry:
    block: Block
    rounds_ms: Rounds
    unstable: bool = False

    def __post_init__(self) -> None:
        # 0.1 us is below any clock's resolution here; rounding once, here, keeps the file and its stats in step.
        self.rounds_ms = [[round(s, 4) for s in r] for r in self.rounds_ms]

    @cached_property
    def stats(self) -> LatencyStats:
        return LatencyStats.from_rounds(self.rounds_ms)


@dataclass
class Profile:
    backend: str
    runtime_version: str
    settings: Settings
    applied: dict[str, Any]
    software: dict[str, str]
    fingerprint: Fingerprint
    protocol: Protocol
    space: SearchSpace
    entries: dict[str, Entry] = field(default_factory=dict)
    complete: bool = False
    created_utc: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    schema_version: int = SCHEMA_VERSION
    # Set by `latlab transfer`: the source profile, the blocks measured here and the fit that estimated the rest.
    # None for a profile whose every entry was measured.
    transfer: dict[str, Any] | None = None
    calibration: Calibration | None = None  # see latlab.calibration
    resident_mib: dict[str, float] = field(default_factory=dict)  # see latlab.memory; empty until measured
    host_noise: list[HostNoise] = field(default_factory=list)  # see latlab.host; empty off the CPU

    @property
    def label(self) -> str:
        measured = f" [transferred: {len(self.transfer['measured'])} blocks measured, the rest estimated]" \
            if self.transfer else ""
        return (f"{self.backend} {self.runtime_version}, {self.settings.numerics}, {self.settings.threads} thread(s)"
                + measured)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "created_utc": self.created_utc,
            "backend": {"name": self.backend, "runtime_version": self.runtime_version},
            "settings": settings_json(self.settings),
            "applied": self.applied,
            "software": self.software,
            "fingerprint": self.fingerprint.to_json(),
            "protocol": self.protocol.to_json(),
            "space": self.space.to_json(),
            "complete": self.complete,
            "transfer": self.transfer,
            "calibration": self.calibration.to_json() if self.calibration else None,
            "resident_mib": self.resident_mib,
            "host_noise": [noise.to_json() for noise in self.host_noise],
            "entries": {
                key: {
                    "block": entry.block._asdict(),
                    "stats": entry.stats.to_json(),
                    "unstable": entry.unstable,
                    "rounds_ms": entry.rounds_ms,
                }
                for key, entry in self.entries.items()
            },
        }

    @classmethod
    def from_json(cls, data: Any, source: str) -> Profile:
        if not isinstance(data, dict):
            raise LatlabError(f"{source}: not a latlab profile (expected a JSON object)")
        if "schema_version" not in data:
            raise LatlabError(f"{source}: field 'schema_version' missing; not a latlab profile")
        version = data["schema_version"]
        if not isinstance(version, int) or isinstance(version, bool):
            raise LatlabError(f"{source}: field 'schema_version' must be an integer, got {version!r}")
        if version > SCHEMA_VERSION:
            raise LatlabError(f"{source}: schema_version {version} is newer than this latlab understands "
                              f"({SCHEMA_VERSION}); upgrade latlab")
        if version < OLDEST_READABLE:
            why = " priced layer blocks without the attention mask exported models carry;" if version == 1 else ""
            raise LatlabError(f"{source}: schema_version {version} is older than this latlab reads "
                              f"({OLDEST_READABLE}-{SCHEMA_VERSION});"
                              f"{why} re-measure it with 'latlab profile'")
        try:
            return cls(
                backend=_text(data["backend"], "name", source, "backend"),
                runtime_version=_text(data["backend"], "runtime_version", source, "backend"),
                settings=_settings(data["settings"], source),
                applied=_object(data["applied"], source, "applied"),
                software=_object(data["software"], source, "software"),
                fingerprint=typed(Fingerprint, data["fingerprint"], source, "fingerprint"),
                protocol=Protocol.from_json(_object(data["protocol"], source, "protocol"), source),
                space=SearchSpace.from_json(data["space"], f"{source}: field 'space'"),
                entries=_entries(_object(data["entries"], source, "entries"), source),
                complete=boolean(data["complete"], source, "complete"),
                created_utc=_text(data, "created_utc", source),
                schema_version=version,
                transfer=_transfer(data.get("transfer"), source),  # absent before schema 4
                calibration=Calibration.from_json(data.get("calibration"), source),
                resident_mib=_resident(data.get("resident_mib", {}), source),
                host_noise=_host_noise(data.get("host_noise", []), source),
            )
        except KeyError as exc:
            raise LatlabError(f"{source}: field {exc.args[0]!r} missing; the profile is incomplete or damaged") from None


def _object(value: Any, source: str, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise refuse(source, field, f"must be a JSON object, got {short(value)}")
    return value


def _host_noise(value: Any, source: str) -> list[HostNoise]:
    if not isinstance(value, list):
        raise refuse(source, "host_noise", f"must be a list, got {short(value)}")
    return [typed(HostNoise, item, source, f"host_noise[{index}]") for index, item in enumerate(value)]


def _transfer(value: Any, source: str) -> dict[str, Any] | None:
    if value is None:
        return None
    record = _object(value, source, "transfer")
    measured = record.get("measured")
    if not isinstance(measured, list) or not all(isinstance(key, str) for key in measured):
        raise refuse(source, "transfer.measured", f"must list the block keys measured, got {short(measured)}")
    return record


def _resident(value: Any, source: str) -> dict[str, float]:
    """MiB by block key; a figure may be slightly negative (a block that holds nothing, measured on a heap that
    shrank), never infinite or not a number."""
    found = _object(value, source, "resident_mib")
    return {key: finite(mib, source, f"resident_mib.{key}") for key, mib in found.items()}


def _text(container: Any, key: str, source: str, field: str = "") -> str:
    value = _object(container, source, field)[key] if field else container[key]
    if not isinstance(value, str):
        raise refuse(source, f"{field}.{key}" if field else key, f"must be text, got {short(value)}")
    return value


def settings_json(settings: Settings) -> dict[str, Any]:
    """The settings as profiles and validations store them; ``quantization`` only where there is one, so float
    profiles read the same as before int8 existed."""
    return {"threads": settings.threads, "precision": settings.precision, "device": settings.device,
            **({"quantization": settings.quantization} if settings.quantization else {})}


def _settings(data: Any, source: str) -> Settings:
    settings = typed(Settings, data, source, "settings")
    whole(settings.threads, source, "settings.threads")
    int8 = settings.precision == "int8"
    for name, allowed in (("precision", PRECISIONS), ("device", DEVICES),
                          ("quantization", QUANTIZATIONS if int8 else ("",))):
        if getattr(settings, name) not in allowed:
            fix = f"must be one of {', '.join(allowed)}" if int8 or name != "quantization" else "applies to int8 only"
            raise refuse(source, f"settings.{name}", f"{fix}, got {short(getattr(settings, name))}")
    return settings


def _entries(data: dict[str, Any], source: str) -> dict[str, Entry]:
    """Each entry's block must match its key, and its samples be latencies: finite and not negative."""
    entries = {}
    for key, raw in data.items():
        where = f"entries.{key}"
        raw = _object(raw, source, where)
        fields = _object(raw["block"], source, f"{where}.block")
        if set(fields) - set(Block._fields) or fields.get("kind") not in KINDS:
            raise LatlabError(f"{source}: entry {key!r} does not match its block {short(fields)}")
        block = Block(fields["kind"], *(whole(fields.get(name, 0), source, f"{where}.block.{name}", minimum=0)
                                        for name in Block._fields[1:]))
        if block.key != key:
            raise LatlabError(f"{source}: entry {key!r} does not match its block {short(fields)}")
        rounds = raw["rounds_ms"]
        if not isinstance(rounds, list) or not all(isinstance(r, list) for r in rounds):
            raise refuse(source, f"{where}.rounds_ms", f"must be a list of lists of milliseconds, got {short(rounds)}")
        samples = [[finite(s, source, f"{where}.rounds_ms", minimum=0.0) for s in r] for r in rounds]
        if not any(samples):
            raise LatlabError(f"{source}: entry {key!r} has no samples")
        entries[key] = Entry(block, samples, boolean(raw.get("unstable", False), source, f"{where}.unstable"))
    return entries


def load_profile(path: str | Path) -> Profile:
    data = read_json(path, "profile", "run 'latlab profile' or pick one from profiles/")
    return Profile.from_json(data, str(path))


def incomplete_problem(profile: Profile, path: str | Path) -> str | None:
    """An interrupted profile prices only part of its space, from rounds that may all come from one slow minute."""
    if profile.complete:
        return None
    return (f"{path}: profile is incomplete (interrupted); finish it with 'latlab profile --resume --out {path}' and "
            "its original options")


def load_complete_profile(path: str | Path) -> Profile:
    """A profile to predict or measure with."""
    profile = load_profile(path)
    problem = incomplete_problem(profile, path)
    if problem:
        raise LatlabError(problem)
    return profile


def save_profile(profile: Profile, path: str | Path) -> None:
    write_json(path, profile.to_json())


def software_versions() -> dict[str, str]:
    import torch
    import transformers

    from latlab import __version__

    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "latlab": __version__}


def default_name(profile: Profile) -> str:
    """Named for what it is: device, instruction-set level (CPU kinds that share a model name differ in it),
    threads, backend, precision, and the space unless it is the default; e.g. ``amd-epyc-avx2-1t-onnxruntime-f32``,
    ``intel-xeon-amx-1t-onnxruntime-f32-seq-grid``."""
    if profile.settings.device == "cuda" and profile.fingerprint.gpus:
        device = profile.fingerprint.gpus[0].name
    else:
        device = f"{profile.fingerprint.cpu_model} {profile.fingerprint.isa_level}"
    for noise in ("(r)", "(tm)", " processor", " cpu"):  # trademark marks and filler words say nothing
        device = device.lower().replace(noise, " ")
    slug = "-".join("".join(c if c.isalnum() else " " for c in device).split())
    name = f"{slug}-{profile.settings.threads}t-{profile.backend}-{profile.settings.numerics}"
    # another space's profile must not land on (and be refused as) the default space's file
    return name if profile.space.name == DEFAULT_SPACE.stem else f"{name}-{profile.space.name}"
