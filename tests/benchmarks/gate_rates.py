"""How often do latlab's gates cry wolf, and how often do they catch a real slowdown? Real timings, real plugin.

Runs a small user suite in fresh pytest processes, as CI would: a torch model of 10 matrix-product blocks, and
the same model with 11 blocks (10% more work; the slowdown actually measured is printed). The processes alternate
unchanged (U) and slower (S) runs; every U run is saved, and each run is compared with the U run before it:

    saved-run mode  ``--benchmark-compare=<previous U> --latlab-fail=GATES`` (anchor-corrected, two processes)
    A/B mode        ``latency.ab(model, Chain(10), fail=GATES)`` inside each run

A false alarm is an unchanged comparison whose gate failed; a catch is a slower one whose gate failed. The same
verdicts are also judged by the old point rule (change above the limit) for comparison.

    python tests/benchmarks/gate_rates.py [--repeats 20] [--seconds 0.3] [--gates median:5%,p90:5%]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from latlab.regression.gates import parse_gates

SUITE = '''
import os

import torch

torch.set_num_threads(1)
BLOCKS = int(os.environ["GATE_RATES_BLOCKS"])
GATES = os.environ["GATE_RATES_GATES"]


class Chain(torch.nn.Module):
    def __init__(self, blocks):
        super().__init__()
        torch.manual_seed(0)
        self.w = torch.nn.Parameter(torch.randn(256, 256) / 16)
        self.blocks = blocks

    def forward(self, x):
        for _ in range(self.blocks):
            x = torch.tanh(x @ self.w)
        return x


X = torch.randn(32, 256)


def test_saved(latency):
    latency.measure(Chain(BLOCKS), X)


def test_ab(latency):
    latency.ab(Chain(BLOCKS), Chain(10), X, fail=GATES)
'''


def run(folder: Path, blocks: int, args: argparse.Namespace, *extra: str) -> dict[str, dict]:
    """One pytest process; its latlab records by test name."""
    out = folder / "last.json"
    env = {**__import__("os").environ, "GATE_RATES_BLOCKS": str(blocks), "GATE_RATES_GATES": args.gates}
    subprocess.run([sys.executable, "-m", "pytest", str(folder / "test_suite.py"), "-q", "-p", "no:cacheprovider",
                    "-W", "ignore", f"--benchmark-storage={folder / 'storage'}", f"--benchmark-timer={args.timer}",
                    f"--latlab-seconds={args.seconds}", f"--benchmark-json={out}", *extra],
                   cwd=folder, env=env, capture_output=True, text=True, check=False, timeout=300)
    data = json.loads(out.read_text())
    out.unlink()
    return {b["name"]: b["extra_info"]["latlab"] for b in data["benchmarks"]}


def rates(verdicts: list[list[dict]], gates: list[str]) -> str:
    """Share of comparisons failed, per gate and for any gate, by the interval rule (and by the point rule)."""
    parts = []
    for gate in (*gates, "any"):
        chosen = [[v for v in vs if gate in ("any", v["gate"])] for vs in verdicts]
        ci = sum(any(v["failed"] for v in vs) for vs in chosen)
        point = sum(any(v["change_pct"] > float(v["gate"].split(":")[1].rstrip("%")) for v in vs) for vs in chosen)
        parts.append(f"{gate} {ci}/{len(chosen)} = {ci / len(chosen):.0%} (point rule {point / len(chosen):.0%})")
    return "; ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=0.3, help="timed seconds per test")
    parser.add_argument("--gates", default="median:5%,p90:5%")
    parser.add_argument("--timer", default="time.process_time", help="pytest-benchmark timer (shared machine: CPU time)")
    args = parser.parse_args()
    gates = [str(g) for g in parse_gates(args.gates)]
    started = time.perf_counter()
    found: dict[str, list[list[dict]]] = {key: [] for key in ("saved U", "saved S", "ab U", "ab S")}
    slowdown: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "test_suite.py").write_text(SUITE)
        first = run(folder, 10, args, "--benchmark-save=u")
        found["ab U"].append(first["test_ab"]["verdicts"])
        for number in range(1, args.repeats + 1):
            compare = (f"--benchmark-compare={number:04d}", f"--latlab-fail={args.gates}")
            slower = run(folder, 11, args, *compare)
            same = run(folder, 10, args, *compare, "--benchmark-save=u")
            for key, records in (("S", slower), ("U", same)):
                found[f"saved {key}"].append(records["test_saved"]["verdicts"])
                found[f"ab {key}"].append(records["test_ab"]["verdicts"])
            slowdown.append(slower["test_ab"]["median_ms"] / slower["test_ab"]["reference"]["median_ms"])
            print(f"  repeat {number}/{args.repeats} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    print(f"gates {args.gates}, {args.seconds} s per test, timer {args.timer}, {args.repeats} repeats; "
          f"measured slowdown (A/B median ratio, mean of the S runs): {sum(slowdown) / len(slowdown):.3f}x; "
          f"{time.perf_counter() - started:.0f} s")
    for mode in ("saved", "ab"):
        print(f"{mode:5} false alarms: {rates(found[f'{mode} U'], gates)}")
        print(f"{mode:5} caught:       {rates(found[f'{mode} S'], gates)}")


if __name__ == "__main__":
    main()
