"""What a lookup table of uniform models misses, measured in one interleaved run per backend: growth per layer by
depth, the order of a model's layers, and how far separately built copies of one architecture differ.

    python tests/benchmarks/stack_shapes.py --backend openvino [--precision f32] [--min-seconds 1.0] [--json out.json]

Items (all prepared first, then timed in the same shuffled rounds, ``latlab.protocol``, so drift hits all alike):
- uniform stacks of 1..6 layers of six layer shapes: each layer's growth, as a percentage of the mean growth from
  1 to 4 layers (what a profile with model depth 4 prices every layer at);
- pairs of stacks with the same layers in two orders (AB/BA, ...): the ratio of their medians;
- five copies of three architectures, each built with other random weights and prepared on its own: the spread of
  their medians, which no table of one copy per shape can price below.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np

from latlab.architecture import Architecture
from latlab.atomic import write_json
from latlab.modules import build_model
from latlab.protocol import Protocol, measure, prepare_all, quiet
from latlab.registry import load_backend
from latlab.stats import LatencyStats

SHAPES = {"A": (192, 8, 1024), "B": (192, 2, 256), "C": (192, 12, 1536), "D": (256, 4, 512), "E": (384, 12, 1536),
          "F": (128, 2, 256)}
ORDERS = [("AB", "BA"), ("AC", "CA"), ("ABC", "CBA"), ("CCCBBB", "BBBCCC")]
COPIES = {"h192-a12-f256 L1": "B", "h256-a4-f512 L4": "DDDD", "mixed ACB": "ACB"}  # 16-wide heads, uniform, mixed


def stack(letters: str) -> Architecture:
    hidden = {SHAPES[c][0] for c in letters}.pop()
    return Architecture(hidden, tuple(SHAPES[c][1] for c in letters), tuple(SHAPES[c][2] for c in letters), labels=5)


def items() -> dict[str, tuple[Architecture, int]]:
    found = {f"{c}x{n}": (stack(c * n), 0) for c in SHAPES for n in range(1, 7)}
    found.update({name: (stack(name), 0) for pair in ORDERS for name in pair})
    found.update({f"{name}#{copy}": (stack(letters), copy)
                  for name, letters in COPIES.items() for copy in range(1, 6)})
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", required=True)
    parser.add_argument("--precision", default="f32")
    parser.add_argument("--min-seconds", type=float, default=1.0)
    parser.add_argument("--json", dest="json_path", default=None)
    args = parser.parse_args()
    backend = load_backend(args.backend)
    settings = backend.settings(threads=1, precision=args.precision)
    wanted = items()
    runners = prepare_all(backend, {k: build_model(a, seed=seed) for k, (a, seed) in wanted.items()}, settings, quiet)
    rounds, unstable = measure(runners, replace(Protocol(), min_seconds=args.min_seconds, seed=7))
    ms = {k: LatencyStats.from_rounds(r).median_ms for k, r in rounds.items()}
    print(f"{args.backend} {args.precision}, 1 thread; medians of {Protocol().rounds} interleaved rounds"
          + (f"; unstable: {', '.join(sorted(unstable))}" if unstable else ""))
    print("growth of layer 2..6, % of the mean growth from 1 to 4 layers:")
    for c in SHAPES:
        depth = [ms[f"{c}x{n}"] for n in range(1, 7)]
        mean = (depth[3] - depth[0]) / 3
        print(f"  {c} h{SHAPES[c][0]}-a{SHAPES[c][1]}-f{SHAPES[c][2]}: "
              + " ".join(f"{(depth[n] - depth[n - 1]) / mean * 100:5.0f}" for n in range(1, 6)))
    print("same layers, two orders: first / second")
    for first, second in ORDERS:
        print(f"  {first}/{second}: {ms[first]:.3f} / {ms[second]:.3f} ms = {ms[first] / ms[second]:.3f}")
    print("five separately built copies of one architecture:")
    for name in COPIES:
        copies = np.array([ms[f"{name}#{copy}"] for copy in range(1, 6)])
        print(f"  {name}: " + " ".join(f"{x:.3f}" for x in copies)
              + f" ms; sd {copies.std() / copies.mean() * 100:.1f}% of the mean, max/min {copies.max() / copies.min():.3f}")
    if args.json_path:
        write_json(args.json_path, {"backend": args.backend, "precision": args.precision, "median_ms": ms})


if __name__ == "__main__":
    main()
