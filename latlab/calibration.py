"""Two costs a lookup table of uniform 1- and D-layer models cannot see, fitted on whole models.

A profile prices each layer from uniform models of 1 and D layers (every layer alike). Two things differ in the
models it is asked about, both measured here (amx kind, models and blocks interleaved in one run):

- **depth beyond D**: on OpenVINO f32 the 5th and 6th layers of uniform stacks cost 105-141% of the growth per
  layer from 1 to 4, so 5- and 6-layer models came out 3-10% under (``beyond_depth``: the extra cost of each layer
  past D, as a fraction of its growth);
- **changes of shape**: OpenVINO bf16 ran mixed stacks 2-3% slower than uniform ones predict (``shape_change``: the
  extra cost of each pair of neighbours that differ in heads or ffn, as a fraction of the model's mean growth).

A profile times a few random mixed whole models in the same rounds as its blocks, so drift cannot enter, and fits
both fractions by non-negative least squares on relative error (``latlab.predict`` applies them). ``latlab
validate`` never measures a calibration architecture, so the fit is never scored on its own data.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

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
    table_ms: float | None = None  # the table's price without calibration, from those blocks (None: not yet)
    changes_ms: float | None = None  # shape changes x mean growth: what ``shape_change`` multiplies
    deep_ms: float | None = None  # the growth of the layers past the profile's model depth: what ``beyond_depth`` does

    @property
    def terms(self) -> tuple[float, float]:
        return self.changes_ms or 0.0, self.deep_ms or 0.0

    @property
    def measured_ms(self) -> float:
        return LatencyStats.from_rounds(self.rounds_ms).median_ms


@dataclass(frozen=True)
class Calibration:
    models: tuple[CalibrationModel, ...]
    blocks: str  # "profile": timed in the profile's own rounds; "re-timed": by `latlab calibrate`, with the models

    @property
    def fitted(self) -> tuple[CalibrationModel, ...]:
        return tuple(m for m in self.models if m.table_ms is not None)

    @cached_property
    def fractions(self) -> tuple[float, float]:
        """(shape_change, beyond_depth): non-negative least squares on relative error, weights 1 / measured; a term
        no model carries, or one that would have to be negative, is 0."""
        rows = [(m.terms, m.measured_ms - m.table_ms, 1 / m.measured_ms) for m in self.fitted]
        x = np.array([[t * w for t in terms] for terms, _, w in rows]).reshape(-1, 2)
        y = np.array([gap * w for _, gap, w in rows])
        best, best_error = (0.0, 0.0), float(np.sum(y ** 2))
        for columns in ([0, 1], [0], [1]):
            if not len(y) or not np.any(x[:, columns]):
                continue
            solution, *_ = np.linalg.lstsq(x[:, columns], y, rcond=None)
            if np.all(solution >= 0):
                candidate = [0.0, 0.0]
                for column, value in zip(columns, solution):
                    candidate[column] = float(value)
                error = float(np.sum((y - x @ np.array(candidate)) ** 2))
                if error < best_error - 1e-15:
                    best, best_error = (candidate[0], candidate[1]), error
        return best

    @property
    def shape_change(self) -> float:
        return self.fractions[0]

    @property
    def beyond_depth(self) -> float:
        return self.fractions[1]

    def errors_pct(self, fractions: tuple[float, float]) -> list[float]:
        """Each calibration model's error with given fractions: (0, 0) for none, ``self.fractions`` fitted."""
        return [(m.table_ms + fractions[0] * m.terms[0] + fractions[1] * m.terms[1]) / m.measured_ms * 100 - 100
                for m in self.fitted]

    def to_json(self) -> dict[str, Any]:
        return {"blocks": self.blocks,  # the fractions are not stored: they follow from the models
                "models": [{"arch": m.arch.to_json(), "table_ms": m.table_ms, "changes_ms": m.changes_ms,
                            "deep_ms": m.deep_ms, "rounds_ms": m.rounds_ms} for m in self.models]}

    @classmethod
    def from_json(cls, data: Any, source: str) -> Calibration | None:
        """The fractions are recomputed from the models, so a file cannot disagree with its own data."""
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
                for name in ("table_ms", "changes_ms", "deep_ms")}
    return CalibrationModel(Architecture.from_json(data.get("arch"), f"{source}: field '{where}.arch'"),
                            [[finite(s, source, f"{where}.rounds_ms", minimum=0.0) for s in r] for r in rounds],
                            **optional)
