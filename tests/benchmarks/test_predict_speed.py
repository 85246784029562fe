"""How fast a search can price architectures: ``predict_ms`` one at a time against ``predict_many`` on arrays.

Opt in: ``pytest tests/benchmarks/test_predict_speed.py -m bench``. pytest-benchmark's table gives the time per
call; each call prices ``ROWS`` architectures, so architectures per second = ROWS / mean.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from latlab.predict import Architectures, LatencyTable, predict_many, predict_ms
from latlab.profile import load_profile

pytestmark = pytest.mark.bench

PROFILE = Path(__file__).resolve().parents[2] / "profiles" / "amd-epyc-avx2-1t-onnxruntime-f32.json"
ROWS = 100_000


@pytest.fixture(scope="module")
def priced() -> tuple[LatencyTable, list]:
    profile = load_profile(PROFILE)
    rng = random.Random(0)
    return LatencyTable.from_profile(profile), [profile.space.sample(rng) for _ in range(ROWS)]


def test_predict_ms_one_at_a_time(benchmark, priced) -> None:
    table, archs = priced
    totals = benchmark(lambda: [predict_ms(a, table) for a in archs])
    assert len(totals) == ROWS


def test_predict_many_on_arrays(benchmark, priced) -> None:
    table, archs = priced
    rows = Architectures.of(archs)
    totals = benchmark(predict_many, rows, table)
    assert np.allclose(totals[:100], [predict_ms(a, table) for a in archs[:100]])
