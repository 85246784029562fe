"""Does a model run at another speed in another process? One architecture on several backends/precisions, and a
0.6 MB matrix product that stays in L2, timed side by side in rounds, in several fresh processes one after the other.

    python tests/benchmarks/process_spread.py [--arch L4-h256-a2-f256] [--processes 8]
    python tests/benchmarks/process_spread.py --runs openvino:f32,torch:f32 --threads 2

If the models move from process to process while the small product does not, the host's shared cache or memory
bus moved (see host_noise.py --weights-mb); if the first run moves against the second (their ratio), something in
the process favours one of them; if they move together, the host did.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

ROUNDS, CALLS = 12, 15
PRODUCT = "0.6 MB product"


def median_ms(run: Callable[[], object], calls: int) -> float:
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def one_process(name: str, runs_asked: list[str], threads: int) -> dict[str, float]:
    import torch

    from latlab.architecture import Architecture
    from latlab.modules import build_model
    from latlab.process import prepare_process
    from latlab.registry import load_backend

    prepare_process()
    layers, hidden, heads, ffn = (int(part[1:]) for part in name.split("-"))
    arch = Architecture(hidden=hidden, heads=(heads,) * layers, ffn=(ffn,) * layers)
    runs: dict[str, Callable[[], object]] = {}
    for asked in runs_asked:
        backend_name, precision = asked.split(":")
        backend = load_backend(backend_name)
        model, inputs = build_model(arch, seed=0)
        runs[asked] = backend.prepare(model, inputs, backend.settings(threads=threads, precision=precision)).run
    weights, tokens = torch.randn(384, 384), torch.randn(128, 384)
    runs[PRODUCT] = lambda: torch.relu(tokens @ weights)
    for run in runs.values():
        median_ms(run, 20)  # warm-up
    rounds: dict[str, list[float]] = {key: [] for key in runs}
    for _ in range(ROUNDS):
        for key, run in runs.items():
            rounds[key].append(median_ms(run, CALLS if key != PRODUCT else 200))
    return {key: statistics.median(values) for key, values in rounds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="L4-h256-a2-f256",
                        help="a uniform architecture: L<layers>-h<hidden>-a<heads>-f<ffn>")
    parser.add_argument("--runs", default="torch:int8,torch:f32",
                        help="backend:precision pairs timed side by side; the first two give the ratio")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    runs = args.runs.split(",")
    if args.child:
        print(json.dumps(one_process(args.arch, runs, args.threads)))
        return
    first, second = (runs + runs)[:2]
    found = []
    for index in range(args.processes):
        out = subprocess.run([sys.executable, __file__, "--arch", args.arch, "--runs", args.runs, "--threads",
                              str(args.threads), "--child"], capture_output=True, text=True, check=True).stdout
        row = json.loads(out.strip().splitlines()[-1])
        found.append(row)
        times = ", ".join(f"{key} {row[key]:.3f} ms" for key in runs)
        print(f"process {index + 1}: {times}, {first}/{second} {row[first] / row[second]:.3f}, {PRODUCT} "
              f"{row[PRODUCT] * 1e3:.1f} us", flush=True)
    for key in [*runs, PRODUCT]:
        values = [row[key] for row in found]
        middle = statistics.median(values)
        print(f"{key}: (max - min) / median {(max(values) - min(values)) / middle * 100:.1f}% over "
              f"{len(values)} processes")
    ratios = [row[first] / row[second] for row in found]
    print(f"{first}/{second}: {min(ratios):.3f}-{max(ratios):.3f}, (max - min) / median "
          f"{(max(ratios) - min(ratios)) / statistics.median(ratios) * 100:.1f}%")


if __name__ == "__main__":
    main()
