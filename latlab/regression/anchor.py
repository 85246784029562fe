"""The calibration anchor: the same NumPy work in every run, timed in the same rounds as the model. This kind of
machine drifts 20-57% between processes (shared/FINDINGS.md); a latency relative to the anchor does not."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from latlab.backend import Runner
from latlab.regression.confidence import Series, estimate
from latlab.regression.gates import STATS

ANCHOR_NAME = "numpy-f32-matmul-v2"  # change the name whenever the workload changes: anchors only compare by name
ALIGNMENT = 64  # bytes: a cache line, and what torch's CPU allocator guarantees its tensors


def aligned(values: np.ndarray) -> np.ndarray:
    """A copy of ``values`` whose data starts on an ALIGNMENT-byte boundary. NumPy only guarantees 16 bytes, and
    the first anchor ran 13% faster in the processes where its weights happened to land on a cache line: an effect
    of one allocation, not of the machine, that the model does not share."""
    raw = np.empty(values.nbytes + ALIGNMENT, dtype=np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    out = raw[start:start + values.nbytes].view(values.dtype).reshape(values.shape)
    out[...] = values
    return out


class Anchor(Runner):
    """About 0.2 ms of float32 matrix products in NumPy, independent of the runtime under test. Small operands keep
    OpenBLAS on the calling thread; every operand, outputs included, is allocated once and aligned, so the anchor's
    speed depends on the machine and not on where this process's allocator happened to put it."""

    def __init__(self) -> None:
        super().__init__()
        rng = np.random.default_rng(0)
        self.x = aligned(rng.standard_normal((8, 128), dtype=np.float32))
        self.w = aligned(rng.standard_normal((128, 128), dtype=np.float32) / np.float32(11.3))
        self.out = (aligned(np.zeros_like(self.x)), aligned(np.zeros_like(self.x)))

    def run(self) -> None:
        x = self.x
        for step in range(48):
            out = self.out[step % 2]  # never an output that is also the input: NumPy would copy
            np.matmul(x, self.w, out=out)
            np.tanh(out, out=out)
            x = out


def relative_to_anchor(model_ms: Sequence[float], anchor_ms: Sequence[float]) -> dict[str, float]:
    """Each gate statistic of the model over the same statistic of the anchor timed in the same rounds, per block
    of consecutive rounds, median over blocks (``confidence.Series.anchored``): a machine whose speed changes
    during the run then neither inflates the model's tail nor hides it."""
    series = Series.anchored(model_ms, anchor_ms)
    return {stat: estimate(series, stat) for stat in STATS}
