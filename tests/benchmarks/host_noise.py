"""Is this host quiet enough to profile? The spread of one fixed 1-thread matrix product over 1-second rounds.

    python tests/benchmarks/host_noise.py [--rounds 20]

The protocol re-measures a block whose round medians spread more than 10% (``Protocol.max_round_cv_pct``); when
this fixed workload already spreads far more, expect unstable blocks and weaker validations, and measure later.
CPU time stolen by the hypervisor over the same seconds is read from /proc/stat where it exists.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch


def steal_ticks() -> tuple[int, int] | None:
    """(steal, total) jiffies of all CPUs so far, or None off Linux."""
    stat = Path("/proc/stat")
    if not stat.exists():
        return None
    fields = [int(v) for v in stat.read_text().splitlines()[0].split()[1:]]
    return fields[7], sum(fields)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    rounds = parser.parse_args().rounds
    torch.set_num_threads(1)
    weights, tokens = torch.randn(384, 384), torch.randn(128, 384)  # one h384 projection at seq_len 128
    before = steal_ticks()
    medians = []
    for _ in range(rounds):
        calls_us = []
        end = time.perf_counter() + 1.0
        while time.perf_counter() < end:
            start = time.perf_counter_ns()
            torch.relu(tokens @ weights)
            calls_us.append((time.perf_counter_ns() - start) / 1e3)
        medians.append(statistics.median(calls_us))
    after = steal_ticks()
    middle = statistics.median(medians)
    print(f"round medians: min {min(medians):.1f} us, median {middle:.1f} us, max {max(medians):.1f} us; "
          f"spread (max - min) / median {(max(medians) - min(medians)) / middle * 100:.1f}% over {rounds} rounds")
    if before and after and after[1] > before[1]:
        print(f"CPU time stolen by the hypervisor meanwhile: {(after[0] - before[0]) / (after[1] - before[1]) * 100:.1f}%")


if __name__ == "__main__":
    main()
