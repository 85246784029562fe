"""Is this host quiet enough to profile? The spread of one fixed matrix product over 1-second rounds.

    python tests/benchmarks/host_noise.py [--rounds 20] [--threads 2] [--per-cpu] [--weights-mb 16]

The protocol re-measures a block whose round medians spread more than 10% (``Protocol.max_round_cv_pct``); when
this fixed workload already spreads far more, expect unstable blocks and weaker validations, and measure later.
CPU time stolen by the hypervisor over the same seconds is read from /proc/stat where it exists.

A quiet 1-thread figure says nothing about the other vCPUs, and a profile at N threads waits at every
synchronisation for the slowest of N: ``--threads N`` times the product at N intra-op threads, and ``--per-cpu``
pins the 1-thread product to each usable CPU in turn, round by round, so that a slow vCPU shows as its own
median, side by side with the others in the same seconds.

The default product's weights (0.6 MB) stay in a core's L2 cache, so it cannot see a neighbour that fills the shared
L3 or the memory bus, which a model whose weights are megabytes does see. ``--weights-mb 16`` cycles through that
many megabytes of h384 projections per call.
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

import torch

from latlab.host import product_call, round_median_us, summarize


def steal_ticks() -> tuple[int, int] | None:
    """(steal, total) jiffies of all CPUs so far, or None off Linux."""
    stat = Path("/proc/stat")
    if not stat.exists():
        return None
    fields = [int(v) for v in stat.read_text().splitlines()[0].split()[1:]]
    return fields[7], sum(fields)


def summary(label: str, threads: int, weights_mb: float, medians: list[float]) -> str:
    noise = summarize(label, threads, weights_mb, medians)
    return (f"{label}round medians: min {min(medians):.1f} us, median {noise.median_us:.1f} us, max {max(medians):.1f} "
            f"us; spread (max - min) / median {noise.spread_pct:.1f}% (CV {noise.round_cv_pct:.1f}%) over "
            f"{noise.rounds} rounds")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of the product (default 1)")
    parser.add_argument("--per-cpu", action="store_true", help="the 1-thread product pinned to each CPU in turn")
    parser.add_argument("--weights-mb", type=float, default=0.0,
                        help="cycle through this many MB of weights per call (default: one 0.6 MB projection)")
    args = parser.parse_args()
    if args.rounds < 1 or args.threads < 1:
        parser.error("--rounds and --threads must be at least 1")
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if args.per_cpu and (args.threads != 1 or not cpus):
        parser.error("--per-cpu times 1 thread on each CPU in turn: leave --threads at 1, on Linux")
    torch.set_num_threads(args.threads)
    call, weights_mb = product_call(args.weights_mb, args.threads)  # latlab's probe, at these weights
    print(f"weights {weights_mb:.1f} MB per call")
    before = steal_ticks()
    if args.per_cpu:
        per_cpu: dict[int, list[float]] = {cpu: [] for cpu in cpus}
        for _ in range(args.rounds):
            for cpu in cpus:
                os.sched_setaffinity(0, {cpu})
                per_cpu[cpu].append(round_median_us(call, 1.0))
        os.sched_setaffinity(0, set(cpus))
        for cpu, medians in per_cpu.items():
            print(summary(f"CPU {cpu}: ", 1, weights_mb, medians))
        middles = [statistics.median(m) for m in per_cpu.values()]
        print(f"slowest CPU / fastest CPU, by median: {max(middles) / min(middles):.3f}")
    else:
        medians = [round_median_us(call, 1.0) for _ in range(args.rounds)]
        print(summary(f"{args.threads} thread(s): ", args.threads, weights_mb, medians))
    after = steal_ticks()
    if before and after and after[1] > before[1]:
        print(f"CPU time stolen by the hypervisor meanwhile: {(after[0] - before[0]) / (after[1] - before[1]) * 100:.1f}%")


if __name__ == "__main__":
    main()
