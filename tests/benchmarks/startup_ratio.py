"""How fast the CLI starts, as a ratio to a bare interpreter, measured side by side in one run.

    python tests/benchmarks/startup_ratio.py [--repeats 11]

Every command runs in a fresh process, interleaved with the others, so drift hits all of them alike; medians and
interquartile ranges are printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROFILE = ROOT / "profiles" / "amd-epyc-avx2-1t-onnxruntime-f32.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11)
    repeats = parser.parse_args().repeats
    with tempfile.TemporaryDirectory() as folder:
        arch = Path(folder) / "arch.json"
        arch.write_text(json.dumps({"hidden": 256, "layers": 4, "heads": 4, "ffn": 1024}))
        latlab = [sys.executable, "-c", "import sys; sys.argv[0] = 'latlab'; from latlab.cli import main; main()"]
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "latlab --version": [*latlab, "--version"],
            "latlab --help": [*latlab, "--help"],
            "latlab predict": [*latlab, "predict", "--profile", str(PROFILE), "--arch", str(arch)],
        }
        seconds: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(repeats):
            for name, argv in commands.items():
                started = time.perf_counter()
                subprocess.run(argv, check=True, capture_output=True, cwd=folder)
                seconds[name].append(time.perf_counter() - started)
    base = statistics.median(seconds["python -c pass"])
    print("| command | median | interquartile | ratio to python -c pass |\n|---|---|---|---|")
    for name, values in seconds.items():
        low, _, high = statistics.quantiles(values, n=4)
        median = statistics.median(values)
        print(f"| `{name}` | {median * 1000:.0f} ms | {low * 1000:.0f}-{high * 1000:.0f} ms | {median / base:.1f}x |")


if __name__ == "__main__":
    main()
