"""int8 against f32 on every CPU backend, for the teacher and a student, measured side by side in one run.

    python tests/benchmarks/int8_speedup.py [--threads 1] [--min-seconds 1.5] [--json out.json]

Every (model, backend, precision) is prepared first, then all are timed in the same interleaved rounds
(``latlab.protocol``), so drift hits f32 and int8 alike; the table gives medians, the spread of the per-round
medians, and the f32/int8 ratio of medians. Models are built from configs (random weights): latency does not
depend on the weights' values.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from latlab.architecture import Architecture
from latlab.atomic import write_json
from latlab.backend import Settings
from latlab.modules import build_model
from latlab.protocol import Protocol, measure, prepare_all, quiet
from latlab.registry import load_backend
from latlab.stats import LatencyStats

# The kdnas default teacher (the 6-layer MiniLM, see README) and the student its search found on a torch profile.
MODELS = {
    "teacher L6-h384-a12-f1536": Architecture(hidden=384, heads=(12,) * 6, ffn=(1536,) * 6),
    "student L2-h384-a2-f256": Architecture(hidden=384, heads=(2,) * 2, ffn=(256,) * 2),
}
BACKENDS = ("onnxruntime", "openvino", "torch")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--min-seconds", type=float, default=1.5)
    parser.add_argument("--json", dest="json_path", default=None)
    args = parser.parse_args()
    protocol = replace(Protocol(), rounds=10, min_seconds=args.min_seconds)
    runners, rows = {}, []
    for name in BACKENDS:
        backend = load_backend(name)
        if not backend.is_available():
            print(f"skipping {name}: {backend.is_available().reason}", file=sys.stderr)
            continue
        variants = [Settings(threads=args.threads)] + [backend.settings(args.threads, "int8", "cpu", method)
                                                        for method in backend.quantizations]
        for settings in variants:
            items = {f"{model}|{name}|{settings.numerics}": build_model(arch) for model, arch in MODELS.items()}
            runners.update(prepare_all(backend, items, settings, quiet))
    rounds, unstable = measure(runners, protocol)
    stats = {key: LatencyStats.from_rounds(r) for key, r in rounds.items()}
    print("| model | backend | precision | median ms | round spread | f32 / this |\n|---|---|---|---|---|---|")
    for key, stat in stats.items():
        model, backend, numerics = key.split("|")
        ratio = stats[f"{model}|{backend}|f32"].median_ms / stat.median_ms
        flag = " (unstable)" if key in unstable else ""
        print(f"| {model} | {backend} | {numerics} | {stat.median_ms:.3f} | {stat.round_cv_pct:.1f}%{flag} | "
              f"{ratio:.2f}x |")
        rows.append({"model": model, "backend": backend, "precision": numerics, "median_ms": stat.median_ms,
                     "round_cv_pct": stat.round_cv_pct, "speedup_vs_f32": ratio, "unstable": key in unstable})
    if args.json_path:
        write_json(args.json_path, {"threads": args.threads, "protocol": protocol.to_json(), "rows": rows})


if __name__ == "__main__":
    main()
