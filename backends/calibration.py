"""Calibration inputs for static int8: shaped like the inputs a block or model is timed with.

Latency depends on which operations run in int8, not on the scales calibration picks, so random token ids are
enough; a whole model still calibrates through its real embeddings, as a deployment's would.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

CALIBRATION_SAMPLES = 8


def calibration_inputs(example_inputs: tuple[torch.Tensor, ...], count: int = CALIBRATION_SAMPLES,
                       seed: int = 0) -> list[tuple[np.ndarray, ...]]:
    """``count`` input tuples: integer inputs drawn over the example's value range, float inputs with its mean
    and spread."""
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(count):
        sample = []
        for tensor in example_inputs:
            array = tensor.numpy()
            if np.issubdtype(array.dtype, np.integer):
                drawn = rng.integers(array.min(), array.max() + 1, size=array.shape)
            else:
                drawn = rng.normal(array.mean(), array.std() or 1.0, size=array.shape)
            sample.append(drawn.astype(array.dtype))
        samples.append(tuple(sample))
    return samples
