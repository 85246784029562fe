"""latlab's own latency suite: every registered backend on reference students of the default space.

Not in the default test run (marker ``bench``). ``tox -e bench`` runs it and saves a run under .benchmarks/;
``latlab report`` compares the last two saved runs. ``--latlab-smoke`` cuts every test to three rounds: the default
run does that once (tests/test_pytest_plugin.py) so that the suite cannot rot.
"""

from __future__ import annotations

import pytest

from latlab.architecture import Architecture
from latlab.registry import backend_names, load_backend
from latlab.space import load_space

pytestmark = pytest.mark.bench

SPACE = load_space("minilm-students")  # the default space, shipped as package data


def student(hidden: int, layers: int, heads: int, ffn: int) -> Architecture:
    """A uniform student at the space's sequence length and batch; refuses to drift outside the space."""
    arch = Architecture(hidden, (heads,) * layers, (ffn,) * layers, seq_len=SPACE.seq_len[0], batch=SPACE.batch[0],
                        labels=SPACE.labels, vocab=SPACE.vocab)
    SPACE.check_contains(arch)
    return arch


REFERENCES = {
    "small": student(128, 2, 2, 512),
    "medium": student(256, 4, 4, 1024),  # the shape timed in shared/FINDINGS.md
    "teacher": student(384, 6, 12, 1536),  # all-MiniLM-L6-v2's own shape: the largest student of the space
}


@pytest.mark.parametrize("arch", list(REFERENCES.values()), ids=list(REFERENCES))
@pytest.mark.parametrize("backend", backend_names())
def test_reference_student(latency, backend: str, arch: Architecture) -> None:
    available = load_backend(backend).is_available()
    if not available:
        pytest.skip(f"{backend}: {available.reason}")
    record = latency.measure(arch, backend=backend)
    assert record is None or record.stats.median_ms > 0
