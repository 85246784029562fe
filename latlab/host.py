"""How quiet is the host right now? One fixed matrix product timed in short rounds at the profile's threads.

Neighbours on a shared VM move every latency at once, and no table survives them: the OpenVINO 2-thread profile
of session 14, taken while this probe spread 1.9% between rounds, priced whole models within 1.63% in the same run;
session 15's, taken at 77%, missed by 6.88%. So profiling and validating probe the host first, say what they
found, and a profile keeps the figures beside its latencies.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

# h384 projections at seq_len 128, 0.56 MB each. One stays in a core's L2 and sees only the CPU; the probe cycles
# through 16 MB of them, about a student's weights, which live in the L3 and memory bus the VM shares as a model's
# do. Over 60 one-second rounds at 2 threads (session 15), an OpenVINO h384 L4 model's round medians correlated
# +0.68 with the 16 MB product and +0.55 with one projection (a torch model: +0.52 and +0.38;
# tests/benchmarks/probe_tracking.py).
HIDDEN, TOKENS_PER_THREAD, PROBE_MB = 384, 128, 16
PROJECTION_MB = HIDDEN * HIDDEN * 4 / 2**20


@dataclass(frozen=True)
class HostNoise:
    when: str  # "profile start", "profile end", "resume start", "validate"
    threads: int
    weights_mb: float  # what the product cycles through per call
    rounds: int
    median_us: float  # of the round medians: the product's time per call
    spread_pct: float  # (max - min) / median of the round medians
    round_cv_pct: float  # their coefficient of variation, as the protocol's stability limit reads it

    def to_json(self) -> dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    def describe(self) -> str:
        return (f"host at {self.threads} thread(s), {self.when}: a fixed {self.weights_mb:.0f} MB product took "
                f"{self.median_us:.0f} us, its round medians spread {self.spread_pct:.1f}% "
                f"(CV {self.round_cv_pct:.1f}%) over {self.rounds} rounds")


def product_call(weights_mb: float, threads: int) -> tuple[Callable[[], None], float]:
    """The probe's workload: ``relu(tokens @ w)`` over enough projections to make ``weights_mb`` (at least one),
    with ``threads`` times the tokens so that each thread has the same share; and the megabytes it really cycles."""
    import torch

    weights = [torch.randn(HIDDEN, HIDDEN) for _ in range(max(1, round(weights_mb / PROJECTION_MB)))]
    tokens = torch.randn(TOKENS_PER_THREAD * threads, HIDDEN)

    def call() -> None:
        for matrix in weights:
            torch.relu(tokens @ matrix)

    return call, len(weights) * PROJECTION_MB


def round_median_us(call: Callable[[], object], seconds: float) -> float:
    """The median of ``call``, in microseconds, called again and again for ``seconds`` (at least once)."""
    calls_us = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or not calls_us:
        start = time.perf_counter_ns()
        call()
        calls_us.append((time.perf_counter_ns() - start) / 1e3)
    return statistics.median(calls_us)


def summarize(when: str, threads: int, weights_mb: float, medians: list[float]) -> HostNoise:
    middle = statistics.median(medians)
    cv = statistics.stdev(medians) / statistics.mean(medians) * 100 if len(medians) > 1 else 0.0
    return HostNoise(when, threads, weights_mb, len(medians), middle, (max(medians) - min(medians)) / middle * 100, cv)


def probe_host(when: str, threads: int, rounds: int, seconds: float) -> HostNoise:
    """Time the product at ``threads`` intra-op threads (each thread gets the same share of tokens), leaving
    torch's thread count as it was."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        call, weights_mb = product_call(PROBE_MB, threads)
        round_median_us(call, seconds / 4)  # warm-up
        medians = [round_median_us(call, seconds) for _ in range(rounds)]
        return summarize(when, threads, weights_mb, medians)
    finally:
        torch.set_num_threads(before)
