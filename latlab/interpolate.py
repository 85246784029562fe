"""A block's cost at a batch and seq_len the profile did not measure, from the shapes it did. Pure arithmetic.

Each cost is fitted, over all the shapes it was measured at, to a small model in tokens chosen by what the block
computes (T = batch x seq_len tokens, B = batch, S = seq_len):

- a layer, ``c0 + c1*T + c2*B*S^2``: the projections and the feed-forward do the same work per token; the two
  attention products and the softmax do it per pair of tokens of a sequence;
- embeddings, head and the per-call overhead, ``c0 + c1*T``: a lookup, a copy or a normalisation per token.

Least squares with each shape's row divided by its tokens, so a short sequence counts as much as a long one
(relative error, what a MAPE scores). The fit's residuals at the measured shapes around the query are then
interpolated linearly and added back: a measured shape comes out at exactly what it measured, a cost that follows
the model comes out exactly everywhere, and one that bends away from it (a cache level crossed between two
lengths) is corrected by its nearest measurements. Never beyond the measured range: that is refused.
"""

from __future__ import annotations

from bisect import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import product

import numpy as np

from latlab.errors import LatlabError

Shape = tuple[int, int]  # (batch, seq_len)
LINEAR = ("1", "T")
ATTENTION = ("1", "T", "B*S^2")


def features(terms: Sequence[str], shapes: Sequence[Shape]) -> np.ndarray:
    """One row per shape, one column per term of the model."""
    columns = {"1": lambda b, s: 1.0, "T": lambda b, s: float(b * s), "B*S^2": lambda b, s: float(b * s * s)}
    return np.array([[columns[t](b, s) for t in terms] for b, s in shapes])


def fit(points: Mapping[Shape, float], terms: Sequence[str]) -> np.ndarray:
    """Coefficients of ``terms`` (as many as the points can pin down, the rest 0) by least squares on relative
    error. Columns are scaled to 1 first, so that B*S^2 in the millions and the constant share one conditioning."""
    shapes = sorted(points)
    used = list(terms[:len(shapes)])
    x = features(used, shapes)
    weights = 1.0 / np.array([b * s for b, s in shapes], dtype=float)
    scale = np.abs(x).max(axis=0)
    solved, *_ = np.linalg.lstsq(x / scale * weights[:, None], np.array([points[p] for p in shapes]) * weights,
                                 rcond=None)
    return np.concatenate([solved / scale, np.zeros(len(terms) - len(used))])


def bracket(axis: Sequence[int], value: int, name: str) -> tuple[tuple[int, float], ...]:
    """The measured values either side of ``value`` with their linear weights (just ``value`` when measured)."""
    if value in axis:
        return ((value, 1.0),)
    above = bisect(axis, value)
    if above in (0, len(axis)):
        span = f"{axis[0]}..{axis[-1]}" if len(axis) > 1 else f"only {axis[0]}"
        raise LatlabError(f"{name} {value} lies outside the measured {name} ({span}); latlab interpolates between "
                          f"measured shapes, never beyond: profile a space that reaches {value}")
    low, high = axis[above - 1], axis[above]
    weight = (value - low) / (high - low)
    return (low, 1.0 - weight), (high, weight)


@dataclass(frozen=True)
class Estimate:
    ms: float
    corners: tuple[Shape, ...]  # the measured shapes the residual correction reads: where the estimate stands


def interpolate(points: Mapping[Shape, float], batch: int, seq_len: int, terms: Sequence[str]) -> Estimate:
    """The cost at (batch, seq_len) from its measurements at ``points``; at a measured shape, that measurement."""
    if (batch, seq_len) in points:
        return Estimate(points[batch, seq_len], ((batch, seq_len),))
    cells = [bracket(sorted({p[axis] for p in points}), value, name)
             for axis, (value, name) in enumerate(((batch, "batch"), (seq_len, "seq_len")))]
    corners = [((b, s), wb * ws) for (b, wb), (s, ws) in product(*cells)]
    lacking = [shape for shape, _ in corners if shape not in points]
    if lacking:
        raise LatlabError(f"batch {lacking[0][0]}, seq_len {lacking[0][1]} was not measured, and the estimate "
                          "needs it; profile the whole grid of the space (latlab profile --resume)")
    coefficients = fit(points, terms)
    shapes = [shape for shape, _ in corners]
    trend, at_corners = np.split(features(terms, [(batch, seq_len), *shapes]) @ coefficients, [1])
    residuals = np.array([points[shape] for shape in shapes]) - at_corners
    return Estimate(float(trend[0] + residuals @ np.array([w for _, w in corners])), tuple(shapes))
