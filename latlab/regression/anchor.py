"""The calibration anchor: the same NumPy work in every run, timed in the same rounds as the model. This kind of
machine drifts 20-57% between processes (shared/FINDINGS.md); a latency relative to the anchor does not."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from latlab.backend import Runner
from latlab.regression.confidence import Series, estimate
from latlab.regression.gates import STATS

ANCHOR_NAME = "numpy-f32-matmul-v1"  # change the name whenever the workload changes: anchors only compare by name


class Anchor(Runner):
    """~0.5 ms of float32 matrix products in NumPy, independent of the runtime under test. Small operands keep
    OpenBLAS on the calling thread."""

    def __init__(self) -> None:
        super().__init__()
        rng = np.random.default_rng(0)
        self.x = rng.standard_normal((8, 128), dtype=np.float32)
        self.w = rng.standard_normal((128, 128), dtype=np.float32) / np.float32(11.3)

    def run(self) -> None:
        x = self.x
        for _ in range(48):
            x = np.tanh(x @ self.w)


def relative_to_anchor(model_ms: Sequence[float], anchor_ms: Sequence[float]) -> dict[str, float]:
    """Each gate statistic of the model over the same statistic of the anchor timed in the same rounds, per block
    of consecutive rounds, median over blocks (``confidence.Series.anchored``): a machine whose speed changes
    during the run then neither inflates the model's tail nor hides it."""
    series = Series.anchored(model_ms, anchor_ms)
    return {stat: estimate(series, stat) for stat in STATS}
