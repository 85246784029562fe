"""``latlab profile``: measure every block of a space on one backend and write the device profile."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from latlab.architecture import Architecture
from latlab.backend import Backend, Settings
from latlab.blocks import Block
from latlab.calibration import Calibration, CalibrationModel, calibration_architectures
from latlab.errors import LatlabError
from latlab.fingerprint import read_fingerprint
from latlab.machine import process_problems
from latlab.modules import build_block, build_model
from latlab.predict import LatencyTable, priced_calibration
from latlab.profile import Entry, Profile, load_profile, save_profile, software_versions
from latlab.protocol import Protocol, Report, Rounds, measure, prepare_all, quiet
from latlab.space import SearchSpace

def new_profile(backend: Backend, settings: Settings, space: SearchSpace, protocol: Protocol) -> Profile:
    return Profile(
        backend=backend.name,
        runtime_version=backend.runtime_version(),
        settings=settings,
        applied={},
        software=software_versions(),
        fingerprint=read_fingerprint(),
        protocol=protocol,
        space=space,
    )


def resumable(existing: Profile, fresh: Profile, path: Path) -> None:
    """Refuse to continue a profile measured under anything that changes latency."""
    checks = {
        "backend": (existing.backend, fresh.backend),
        "runtime_version": (existing.runtime_version, fresh.runtime_version),
        "settings": (existing.settings, fresh.settings),
        "space": (existing.space, fresh.space),
        "protocol": (existing.protocol, fresh.protocol),
    }
    for field, (old, new) in checks.items():
        if old != new:
            raise LatlabError(f"{path}: cannot resume, field {field!r} differs ({old} in file, {new} now); "
                              "use another --out or the same options")
    differences = existing.fingerprint.differences(fresh.fingerprint, include_gpus=fresh.settings.device != "cpu")
    if differences:
        raise LatlabError(f"{path}: cannot resume on different hardware ({differences[0]})")


def open_profile(backend: Backend, settings: Settings, space: SearchSpace, protocol: Protocol, out: Path,
                 resume: bool = False) -> Profile:
    """A new profile, or the one in ``out`` to resume; every refusal happens here, before any measuring."""
    backend.check(settings)
    profile = new_profile(backend, settings, space, protocol)
    if not out.exists():
        return profile
    if not resume:
        raise LatlabError(f"{out}: already exists; pass --resume to continue it or choose another --out")
    existing = load_profile(out)
    resumable(existing, profile, out)
    if existing.entries and (problems := process_problems(existing, backend)):
        raise LatlabError(f"{out}: cannot resume, {problems[0]}")
    return existing


def needs_measuring(profile: Profile, block: Block) -> bool:
    """Missing rounds, or all rounds saved but stopped before the re-measurement of a shaky block ended."""
    entry = profile.entries.get(block.key)
    if entry is None or len(entry.rounds_ms) < profile.protocol.rounds:
        return True
    return not profile.complete and entry.stats.round_cv_pct > profile.protocol.max_round_cv_pct


def remaining(profile: Profile) -> list[tuple[Block, int]]:
    """Each block still to measure, with the rounds it lacks (a full pass for one whose re-measurement was cut)."""
    rounds = profile.protocol.rounds
    todo = [b for b in profile.space.blocks(profile.protocol.model_depth) if needs_measuring(profile, b)]
    lacking = {b: rounds - len(profile.entries[b.key].rounds_ms) if b.key in profile.entries else rounds for b in todo}
    return [(b, lacking[b] if lacking[b] > 0 else rounds) for b in todo]


def planned_calibration(profile: Profile) -> Calibration | None:
    """The profile's calibration, or a new one with no model timed yet when its protocol asks for models."""
    if profile.calibration is None and profile.protocol.calibration_models:
        archs = calibration_architectures(profile.space, profile.protocol.calibration_models)
        return Calibration(tuple(CalibrationModel(a, []) for a in archs), "profile")
    return profile.calibration


def calibration_todo(profile: Profile) -> list[tuple[Architecture, int]]:
    """Each calibration model still to time (all of them in a fresh run), with the rounds it lacks."""
    rounds, calibration = profile.protocol.rounds, planned_calibration(profile)
    return [(m.arch, rounds - len(m.rounds_ms)) for m in (calibration.models if calibration else ())
            if len(m.rounds_ms) < rounds]


def run_profile(
    backend: Backend,
    settings: Settings,
    space: SearchSpace,
    protocol: Protocol,
    out: Path,
    resume: bool = False,
    report: Report = quiet,
) -> Profile:
    return continue_profile(backend, open_profile(backend, settings, space, protocol, out, resume), out, report)


def continue_profile(backend: Backend, profile: Profile, out: Path, report: Report = quiet) -> Profile:
    """Measure what ``profile`` still lacks, the calibration models in the same rounds as the blocks (so drift cannot
    enter their fit), checkpointing after every round, then fit the calibration and mark the profile complete."""
    settings, protocol = profile.settings, profile.protocol
    profile.calibration = planned_calibration(profile)
    models = {f"calibration/{i}": m for i, m in enumerate(profile.calibration.models if profile.calibration else ())}
    blocks: list[Block] = profile.space.blocks(protocol.model_depth)
    done: dict[str, Rounds] = {**{k: e.rounds_ms for k, e in profile.entries.items()},
                               **{k: m.rounds_ms for k, m in models.items()}}
    todo = [b for b, _ in remaining(profile)]
    unmeasured = {k: m for k, m in models.items() if len(m.rounds_ms) < protocol.rounds}
    if todo or unmeasured:
        items = {**{b.key: build_block(b) for b in todo},
                 **{k: build_model(m.arch, seed=int(k.split('/')[1])) for k, m in unmeasured.items()}}
        runners = prepare_all(backend, items, settings, report)
        profile.applied = next(iter(runners.values())).applied
        by_key = {b.key: b for b in blocks}

        def keep(results: dict[str, Rounds], unstable: frozenset[str] = frozenset()) -> None:
            for key, rounds in results.items():
                if key in models:
                    models[key] = replace(models[key], rounds_ms=rounds)
                else:
                    profile.entries[key] = Entry(by_key[key], rounds, unstable=key in unstable)
            if profile.calibration:
                profile.calibration = replace(profile.calibration, models=tuple(models.values()))

        def checkpoint(index: int, total: int, results: dict[str, Rounds]) -> None:
            keep(results)
            save_profile(profile, out)
            report("measure", index, total)

        results, unstable = measure(runners, protocol, {k: done.get(k, []) for k in runners}, checkpoint, report)
        keep(results, frozenset(unstable))
    if profile.calibration:
        table = LatencyTable.from_profile(replace(profile, calibration=None))
        profile.calibration = priced_calibration(profile.calibration, table)
    profile.complete = True
    save_profile(profile, out)
    return profile
