"""``latlab validate``: does the profile predict what whole models really take on the same backend?"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import numpy as np

from latlab.accuracy import Accuracy, error_pct
from latlab.architecture import Architecture
from latlab.backend import Backend
from latlab.blocks import Block
from latlab.calibration import Calibration, CalibrationModel, calibration_architectures
from latlab.drift import drift_corrected_ms, time_with_references
from latlab.modules import build_model
from latlab.errors import LatlabError
from latlab.host import HostNoise
from latlab.predict import LatencyTable, predict, priced_calibration
from latlab.profile import Entry, Profile, settings_json
from latlab.protocol import Protocol, Report, Rounds, quiet
from latlab.stats import LatencyStats


@dataclass(frozen=True)
class ArchResult:
    arch: Architecture
    predicted_ms: float
    measured: LatencyStats
    unstable: bool
    same_run_predicted_ms: float | None = None  # the same arithmetic on blocks re-timed in the same rounds
    estimated: bool = False  # priced between measured shapes (latlab.interpolate), not from its own shape
    calibrated_ms: float = 0.0  # the calibrated part of predicted_ms (latlab.calibration)
    same_run_calibrated_ms: float = 0.0  # and of same_run_predicted_ms

    @property
    def error_pct(self) -> float:
        return error_pct(self.predicted_ms, self.measured.median_ms)


def sample_architectures(profile: Profile, count: int, seed: int, seq_lens: tuple[int, ...] = ()) -> list[Architecture]:
    """Random architectures of the profile's space; with ``seq_lens``, at those lengths in turn instead of the
    space's (lengths it did not measure are priced by interpolation), each refused in one line if out of range."""
    rng = random.Random(seed)
    fitted = {m.arch for m in profile.calibration.models} if profile.calibration else set()
    archs: list[Architecture] = []
    while len(archs) < count:  # the calibration's own architectures would score its fit on its data
        arch = profile.space.sample(rng)
        if arch not in fitted:
            archs.append(arch)
    if not seq_lens:
        return archs
    archs = [replace(a, seq_len=seq_lens[i % len(seq_lens)]) for i, a in enumerate(archs)]
    for arch in archs:
        try:
            profile.space.check_contains(arch, interpolate=True)
        except LatlabError as exc:
            raise LatlabError(f"--seq-len {arch.seq_len}: {exc}") from None
    return archs


@dataclass(frozen=True)
class Validation:
    rows: list[ArchResult]
    accuracy: Accuracy
    # How much slower (+) or faster (-) the machine ran reference blocks now than when it was profiled:
    # errors of that size come from the machine's state, not from the profile's arithmetic. None: no reference.
    drift_pct: float | None
    same_run_blocks_ms: dict[str, float] | None = None  # with --same-run: each re-timed block's median, by key

    def by_seq_len(self) -> dict[int, Accuracy]:
        """The accuracy at each sequence length validated, shortest first."""
        lengths = sorted({r.arch.seq_len for r in self.rows})
        return {n: Accuracy.of([r.predicted_ms for r in self.rows if r.arch.seq_len == n],
                               [r.measured.median_ms for r in self.rows if r.arch.seq_len == n]) for n in lengths}

    @cached_property
    def same_run(self) -> Accuracy | None:
        """The lookup table's own error, free of drift: blocks and whole models timed in the same rounds."""
        if any(r.same_run_predicted_ms is None for r in self.rows):
            return None
        return Accuracy.of([r.same_run_predicted_ms for r in self.rows], [r.measured.median_ms for r in self.rows])

    def uncalibrated(self, same_run: bool = False) -> Accuracy | None:
        """The accuracy without the calibrated costs: what the calibration adds, reported apart."""
        if same_run and self.same_run is None:
            return None
        predicted = [r.same_run_predicted_ms - r.same_run_calibrated_ms if same_run
                     else r.predicted_ms - r.calibrated_ms for r in self.rows]
        return Accuracy.of(predicted, [r.measured.median_ms for r in self.rows])

    @cached_property
    def drift_corrected(self) -> Accuracy | None:
        """The accuracy had the machine run as fast as when it was profiled."""
        if self.drift_pct is None:
            return None
        return Accuracy.of([r.predicted_ms for r in self.rows],
                           [drift_corrected_ms(r.measured.median_ms, self.drift_pct) for r in self.rows])


def blocks_moved_pct(profile: Profile, blocks_ms: dict[str, float]) -> dict[str, float]:
    """How much slower (+) each kind of block ran in the same-run validation than in the profile, median per kind
    (model blocks per depth). Drift that spares some kinds (measured: torch's layer models +4-5% minutes later, its
    embeddings and head +0.5%) shows here, where three reference blocks can miss it. Blocks at a length or batch the
    profile did not measure (``--seq-len``) have nothing to move from and are left out."""
    moved: dict[str, list[float]] = {}
    for key, ms in blocks_ms.items():
        if key not in profile.entries:
            continue
        block = profile.entries[key].block
        kind = f"{block.kind} L{block.layers}" if block.layers else block.kind
        moved.setdefault(kind, []).append((ms / profile.entries[key].stats.median_ms - 1) * 100)
    return {kind: float(np.median(changes)) for kind, changes in moved.items()}


def same_run_table(profile: Profile, blocks: dict[Block, Rounds]) -> LatencyTable:
    """The profile's arithmetic applied to blocks timed now: what the table would predict had it been measured in
    these very rounds."""
    return LatencyTable.from_profile(replace(profile, entries={b.key: Entry(b, r) for b, r in blocks.items()}))


def recalibrate(profile: Profile, backend: Backend, count: int, protocol: Protocol | None = None,
                report: Report = quiet) -> Calibration:
    """``latlab calibrate``: time ``count`` calibration models with every block they are priced from, in the same
    rounds, and fit the cost of shape changes on those (a profile measured before calibration existed gets one
    without being measured again)."""
    archs = calibration_architectures(profile.space, count)
    timed = time_with_references(profile, backend, {f"calibration/{i}": build_model(a, seed=i)
                                                    for i, a in enumerate(archs)},
                                 archs, protocol or profile.protocol, report, every_block=True)
    models = tuple(CalibrationModel(a, timed.rounds[f"calibration/{i}"]) for i, a in enumerate(archs))
    return priced_calibration(Calibration(models, "re-timed"), same_run_table(profile, timed.blocks))


def run_validation(
    profile: Profile,
    backend: Backend,
    count: int,
    seed: int,
    protocol: Protocol | None = None,
    report: Report = quiet,
    same_run: bool = False,
    seq_lens: tuple[int, ...] = (),
) -> Validation:
    """Measure ``count`` random whole models with the profile's own settings and protocol, interleaved.
    ``same_run`` re-times every block they use in the same rounds and prices them from those too; ``seq_lens``
    validates at those lengths (see ``sample_architectures``): a same-run price there reads blocks timed at the
    model's own length, so it is what a profile measured at that length would predict, interpolation left out."""
    protocol = protocol or profile.protocol
    table = LatencyTable.from_profile(profile)
    archs = sample_architectures(profile, count, seed, seq_lens)
    predictions = [predict(a, table, interpolate=True) for a in archs]
    timed = time_with_references(profile, backend, {f"arch{i}": build_model(a, seed=i) for i, a in enumerate(archs)},
                                 archs, protocol, report, every_block=same_run)
    now = same_run_table(profile, timed.blocks) if same_run else None
    again = [predict(a, now) if now else None for a in archs]
    rows = [ArchResult(a, p.total_ms, timed.stats[f"arch{i}"], f"arch{i}" in timed.unstable,
                       q.total_ms if q else None, bool(p.estimated), p.calibrated_ms,
                       q.calibrated_ms if q else 0.0)
            for i, (a, p, q) in enumerate(zip(archs, predictions, again))]
    blocks_ms = {b.key: LatencyStats.from_rounds(r).median_ms for b, r in timed.blocks.items()} if same_run else None
    return Validation(rows, Accuracy.of([r.predicted_ms for r in rows], [r.measured.median_ms for r in rows]),
                      timed.drift_pct, blocks_ms)


def rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


VALIDATION_SCHEMA = 1  # the version of what validation_json writes; bump it when a field changes meaning


def validation_json(profile: Profile, validation: Validation, seed: int, profile_path: str,
                    host_now: HostNoise | None = None) -> dict[str, Any]:
    accuracy, corrected = validation.accuracy, validation.drift_corrected
    return {
        "schema_version": VALIDATION_SCHEMA,
        "profile": profile_path,
        "backend": profile.backend,
        "runtime_version": profile.runtime_version,
        "settings": settings_json(profile.settings),
        "cpu_model": profile.fingerprint.cpu_model,
        "seed": seed,
        "n_archs": len(validation.rows),
        "reference_drift_pct": rounded(validation.drift_pct, 2),
        "mape_pct": round(accuracy.mape_pct, 3),
        "within_5pct": round(accuracy.within_5pct, 3),
        "within_10pct": round(accuracy.within_10pct, 3),
        "spearman": round(accuracy.spearman, 4),
        "mean_error_pct": round(accuracy.mean_error_pct, 3),
        "drift_corrected": corrected and corrected.to_json(),
        # how quiet the host was (latlab.host): when profiled, and before these models were timed (null: not probed)
        "host_noise": {"profiled": [n.to_json() for n in profile.host_noise], "now": host_now and host_now.to_json()},
        "same_run": validation.same_run and validation.same_run.to_json(),
        "by_seq_len": {str(n): a.to_json() for n, a in validation.by_seq_len().items()},
        # the same figures without the calibrated costs (null: the profile has no calibration)
        "calibration": profile.calibration and {
            "shape_change": round(profile.calibration.shape_change, 5),
            "beyond_depth": round(profile.calibration.beyond_depth, 5),
            "models": len(profile.calibration.fitted),
            "uncalibrated": validation.uncalibrated().to_json(),
            "same_run_uncalibrated": (validation.uncalibrated(same_run=True) or None) and
            validation.uncalibrated(same_run=True).to_json()},
        # the block medians the same-run prices come from: any other pricing rule can be checked against them
        "same_run_blocks_ms": validation.same_run_blocks_ms and {k: round(ms, 4) for k, ms in
                                                                 validation.same_run_blocks_ms.items()},
        # and how far they moved from the profile's, by kind (blocks_moved_pct)
        "same_run_blocks_moved_pct": validation.same_run_blocks_ms and {
            kind: round(pct, 2) for kind, pct in blocks_moved_pct(profile, validation.same_run_blocks_ms).items()},
        "archs": [
            {
                "arch": r.arch.to_json(),
                "predicted_ms": round(r.predicted_ms, 4),
                "measured_ms": round(r.measured.median_ms, 4),
                "measured_p90_ms": round(r.measured.p90_ms, 4),
                "error_pct": round(r.error_pct, 2),
                "same_run_predicted_ms": rounded(r.same_run_predicted_ms, 4),
                "calibrated_ms": round(r.calibrated_ms, 4),
                "estimated": r.estimated,
                "unstable": r.unstable,
            }
            for r in validation.rows
        ],
    }


def plot(validation: Validation, title: str, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from latlab.atomic import write_bytes

    rows, accuracy = validation.rows, validation.accuracy
    measured = [r.measured.median_ms for r in rows]
    predicted = [r.predicted_ms for r in rows]
    top = max(measured + predicted) * 1.05
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, top], [0, top], color="grey", lw=1, label="exact")
    ax.fill_between([0, top], [0, top * 0.9], [0, top * 1.1], color="grey", alpha=0.15, label="±10%")
    ax.scatter(measured, predicted, s=18)
    ax.set(xlim=(0, top), ylim=(0, top), xlabel="measured median (ms)", ylabel="predicted (ms)",
           title=f"{title}\nMAPE {accuracy.mape_pct:.1f}%, ±10%: {accuracy.within_10pct:.0%}, "
                 f"Spearman {accuracy.spearman:.3f}")
    ax.title.set_fontsize(9)
    ax.legend(loc="upper left")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    write_bytes(path, buffer.getvalue())
