"""Which host probe moves with a model? The 0.6 MB product, the 16 MB one that `latlab profile` runs (latlab.host),
an OpenVINO and a torch model, timed in turn for one second each, round after round; then the correlation of
their round medians. A probe that tracks the models can tell a user that the host, not the table, moved.

    python tests/benchmarks/probe_tracking.py [--rounds 60] [--threads 2] [--arch L4-h384-a12-f1536]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
import torch

from latlab.architecture import Architecture
from latlab.host import PROBE_MB, PROJECTION_MB, product_call, round_median_us
from latlab.modules import build_model
from latlab.process import prepare_process
from latlab.registry import load_backend


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--arch", default="L4-h384-a12-f1536", help="L<layers>-h<hidden>-a<heads>-f<ffn>")
    args = parser.parse_args()
    prepare_process()
    layers, hidden, heads, ffn = (int(part[1:]) for part in args.arch.split("-"))
    arch = Architecture(hidden=hidden, heads=(heads,) * layers, ffn=(ffn,) * layers)
    runs: dict[str, Callable[[], float]] = {}
    for name in ("openvino", "torch"):
        backend = load_backend(name)
        model, inputs = build_model(arch, seed=0)
        runner = backend.prepare(model, inputs, backend.settings(threads=args.threads))
        runs[f"{name} model"] = lambda run=runner.run: round_median_us(run, 1.0)
    torch.set_num_threads(args.threads)
    for megabytes in (PROJECTION_MB, PROBE_MB):
        call, weights_mb = product_call(megabytes, args.threads)
        runs[f"{weights_mb:.1f} MB product"] = lambda call=call: round_median_us(call, 1.0)
    names = list(runs)
    medians = np.array([[runs[name]() for name in names] for _ in range(args.rounds)])
    for column, name in enumerate(names):
        values = medians[:, column]
        print(f"{name}: median {np.median(values):.1f} us, spread (max - min) / median "
              f"{(values.max() - values.min()) / np.median(values) * 100:.1f}%")
    correlation = np.corrcoef(medians.T)
    for row, name in enumerate(names):
        print(f"{name:>16}: " + " ".join(f"{correlation[row, column]:+.2f}" for column in range(len(names))))


if __name__ == "__main__":
    main()
