"""The one cost a lookup table of uniform models cannot see: neighbouring layers of different shapes.

A profile prices each layer from uniform models (every layer alike). Mixed stacks ran slower than that arithmetic
on some runtimes (OpenVINO bf16: -3% on average, same-run; up to -5% with five changes of shape), as if each change
of heads or ffn between neighbours cost part of a layer. So a profile times a few random mixed whole models in the
same rounds as its blocks and fits one number, ``shape_change``: the cost of each change of shape as a fraction of
the model's mean layer growth (``latlab.predict``). Drift cannot enter the fit (models and blocks share rounds), and
``latlab validate`` never measures a calibration architecture, so the fit is never scored on its own data.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from latlab.architecture import Architecture
from latlab.fields import finite, refuse, short
from latlab.protocol import Rounds
from latlab.space import SearchSpace
from latlab.stats import LatencyStats

CALIBRATION_SEED = 7919  # the calibration architectures' seed; validation leaves these architectures out


def calibration_architectures(space: SearchSpace, count: int, seed: int = CALIBRATION_SEED) -> list[Architecture]:
    """``count`` distinct random stacks of the space with at least one change of shape (a space without mixed
    stacks gives none: there is nothing to calibrate)."""
    rng, found = random.Random(seed), []
    for _ in range(100 * count):
        if len(found) == count:
            break
        arch = space.sample(rng)
        if arch.shape_changes and arch not in found:
            found.append(arch)
    return found


@dataclass(frozen=True)
class CalibrationModel:
    arch: Architecture
    rounds_ms: Rounds  # the whole model, timed in the same rounds as the blocks it is priced from
    table_ms: float | None = None  # the table's price without shape changes, from those blocks (None: not yet)
    changes_ms: float | None = None  # shape changes x mean growth: what ``shape_change`` multiplies

    @property
    def measured_ms(self) -> float:
        return LatencyStats.from_rounds(self.rounds_ms).median_ms


@dataclass(frozen=True)
class Calibration:
    models: tuple[CalibrationModel, ...]
    blocks: str  # "profile": timed in the profile's own rounds; "re-timed": by `latlab calibrate`, with the models

    @property
    def fitted(self) -> tuple[CalibrationModel, ...]:
        return tuple(m for m in self.models if m.table_ms is not None and m.changes_ms is not None)

    @property
    def shape_change(self) -> float:
        """Least squares on relative error: sum w x y / sum w x^2 with w = 1 / measured^2 (0 without data)."""
        pairs = [(m.changes_ms, m.measured_ms - m.table_ms, m.measured_ms ** -2) for m in self.fitted]
        denominator = sum(w * x * x for x, _, w in pairs)
        return sum(w * x * y for x, y, w in pairs) / denominator if denominator else 0.0

    def errors_pct(self, shape_change: float) -> list[float]:
        """Each calibration model's error with a given ``shape_change``: 0 for none, ``self.shape_change`` fitted."""
        return [(m.table_ms + shape_change * m.changes_ms) / m.measured_ms * 100 - 100 for m in self.fitted]

    def to_json(self) -> dict[str, Any]:
        return {"blocks": self.blocks, "shape_change": round(self.shape_change, 5),
                "models": [{"arch": m.arch.to_json(), "table_ms": m.table_ms, "changes_ms": m.changes_ms,
                            "rounds_ms": m.rounds_ms} for m in self.models]}

    @classmethod
    def from_json(cls, data: Any, source: str) -> Calibration | None:
        """``shape_change`` is recomputed from the models, so a file cannot disagree with its own data."""
        if data is None:
            return None
        if not isinstance(data, dict) or data.get("blocks") not in ("profile", "re-timed"):
            raise refuse(source, "calibration", f"must be an object with blocks 'profile' or 're-timed', got "
                                                f"{short(data)}")
        models = data.get("models")
        if not isinstance(models, list):
            raise refuse(source, "calibration.models", f"must be a list of objects, got {short(models)}")
        return cls(tuple(_model(m, source, f"calibration.models[{i}]") for i, m in enumerate(models)), data["blocks"])


def _model(data: Any, source: str, where: str) -> CalibrationModel:
    if not isinstance(data, dict):
        raise refuse(source, where, f"must be an object with arch and rounds_ms, got {short(data)}")
    rounds = data.get("rounds_ms")
    if not isinstance(rounds, list) or not all(isinstance(r, list) and r for r in rounds):  # [] until measured
        raise refuse(source, f"{where}.rounds_ms", f"must be a list of lists of milliseconds, got {short(rounds)}")
    optional = {name: None if data.get(name) is None else finite(data[name], source, f"{where}.{name}")
                for name in ("table_ms", "changes_ms")}
    return CalibrationModel(Architecture.from_json(data.get("arch"), f"{source}: field '{where}.arch'"),
                            [[finite(s, source, f"{where}.rounds_ms", minimum=0.0) for s in r] for r in rounds],
                            **optional)
