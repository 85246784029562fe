"""Does a model run at another speed in another process? One architecture in torch int8 and f32, and a 0.6 MB
matrix product that stays in L2, timed side by side in rounds, in several fresh processes one after the other.

    python tests/benchmarks/process_spread.py [--arch L4-h256-a2-f256] [--processes 8]

If the models move from process to process while the small product does not, the host's shared cache or memory
bus moved (see host_noise.py --weights-mb); if int8/f32 moves too, something in the process favours one of them.
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


def median_ms(run: Callable[[], object], calls: int) -> float:
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def one_process(name: str) -> dict[str, float]:
    import torch

    from latlab.architecture import Architecture
    from latlab.backend import Settings
    from latlab.modules import build_model
    from latlab.registry import load_backend

    layers, hidden, heads, ffn = (int(part[1:]) for part in name.split("-"))
    arch = Architecture(hidden=hidden, heads=(heads,) * layers, ffn=(ffn,) * layers)
    backend = load_backend("torch")
    runs: dict[str, Callable[[], object]] = {}
    for precision, method in (("int8", "dynamic"), ("f32", "")):
        model, inputs = build_model(arch, seed=0)
        runs[precision] = backend.prepare(model, inputs, Settings(precision=precision, quantization=method)).run
    weights, tokens = torch.randn(384, 384), torch.randn(128, 384)
    runs["product"] = lambda: torch.relu(tokens @ weights)
    for run in runs.values():
        median_ms(run, 20)  # warm-up
    rounds: dict[str, list[float]] = {key: [] for key in runs}
    for _ in range(ROUNDS):
        for key, run in runs.items():
            rounds[key].append(median_ms(run, CALLS if key != "product" else 200))
    return {key: statistics.median(values) for key, values in rounds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="L4-h256-a2-f256",
                        help="a uniform architecture: L<layers>-h<hidden>-a<heads>-f<ffn>")
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_process(args.arch)))
        return
    found = []
    for index in range(args.processes):
        out = subprocess.run([sys.executable, __file__, "--arch", args.arch, "--child"], capture_output=True,
                             text=True, check=True).stdout
        row = json.loads(out.strip().splitlines()[-1])
        found.append(row)
        print(f"process {index + 1}: int8 {row['int8']:.3f} ms, f32 {row['f32']:.3f} ms, int8/f32 "
              f"{row['int8'] / row['f32']:.3f}, 0.6 MB product {row['product'] * 1e3:.1f} us", flush=True)
    for key in ("int8", "f32", "product"):
        values = [row[key] for row in found]
        middle = statistics.median(values)
        print(f"{key}: (max - min) / median {(max(values) - min(values)) / middle * 100:.1f}% over "
              f"{len(values)} processes")
    ratios = [row["int8"] / row["f32"] for row in found]
    print(f"int8/f32: {min(ratios):.3f}-{max(ratios):.3f}")


if __name__ == "__main__":
    main()
