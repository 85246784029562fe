"""How often do latlab's gates cry wolf, and how often do they catch a real slowdown? Real timings, real plugin.

Runs a small user suite in fresh pytest processes, as CI would: a torch model of 10 matrix-product blocks, and
the same model with 11 blocks (10% more work; the slowdown actually measured is printed). First PROCESSES runs of
unchanged code (U); then REPEATS times a slower run (S) and an unchanged one. Each S and U run is gated against
the last PROCESSES U runs, saved as one baseline (``--latlab-baseline``, the interval over processes), and is
then one of them:

    saved-run mode  ``--latlab-baseline=base --latlab-fail=GATES``, the baseline: the last PROCESSES U runs
    A/B mode        ``latency.ab(model, Chain(10), fail=GATES)`` inside every run

A false alarm is a U run whose gate failed; a catch is an S run whose gate failed. From the same saved records,
with latlab's own ``judge_saved``, two alternatives to the saved-run design are judged too: the baseline as one
process (the previous U run, what ``--benchmark-compare`` does) and the baseline of PROCESSES runs without the
anchor (raw latencies).

    python tests/benchmarks/gate_rates.py [--repeats 20] [--processes 5] [--seconds 0.3] [--gates median:5%,p90:5%]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from latlab.regression.compare import judge_saved
from latlab.regression.gates import parse_gates
from latlab.regression.runs import BenchRecord

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
Verdicts = list[dict[str, Any]]


def run(folder: Path, blocks: int, args: argparse.Namespace, baseline: Sequence[Path]) -> tuple[Path, dict[str, Any]]:
    """One pytest process, gated against ``baseline`` (saved runs, one process each) when given: the file it wrote
    (laid out like a saved run) and its latlab records by test name."""
    out = folder / f"run{len(list(folder.glob('run*.json'))):03d}.json"
    storage = folder / "storage"
    shutil.rmtree(storage, ignore_errors=True)
    for number, path in enumerate(baseline, start=1):
        (storage / "machine").mkdir(parents=True, exist_ok=True)
        shutil.copy(path, storage / "machine" / f"{number:04d}_base.json")
    gates = ("--latlab-baseline=base", f"--latlab-fail={args.gates}") if baseline else ()
    env = {**os.environ, "GATE_RATES_BLOCKS": str(blocks), "GATE_RATES_GATES": args.gates}
    subprocess.run([sys.executable, "-m", "pytest", str(folder / "test_suite.py"), "-q", "-p", "no:cacheprovider",
                    "-W", "ignore", f"--benchmark-storage={storage}", f"--benchmark-timer={args.timer}",
                    f"--latlab-seconds={args.seconds}", f"--benchmark-json={out}", *gates],
                   cwd=folder, env=env, capture_output=True, text=True, check=False, timeout=300)
    data = json.loads(out.read_text())
    return out, {b["name"]: b["extra_info"]["latlab"] for b in data["benchmarks"]}


def raw(record: BenchRecord) -> BenchRecord:
    """The record as if no anchor had been timed: gates then compare raw latencies."""
    return replace(record, anchor=None, anchor_name="", relative={}, anchor_samples_ms=())


def offline(gates: str, baseline: Sequence[dict], current: dict,
            view: Callable[[BenchRecord], BenchRecord]) -> Verdicts:
    """The verdicts latlab gives ``current`` against ``baseline`` (saved records), recomputed from the records."""
    records = [view(BenchRecord.from_json(record)) for record in baseline]
    return [judge_saved(gate, records, view(BenchRecord.from_json(current))).to_json() for gate in parse_gates(gates)]


def rate(verdicts: list[Verdicts], gate: str) -> str:
    """How many of the comparisons failed ``gate`` (or any gate)."""
    failed = sum(any(v["failed"] for v in vs if gate in ("any", v["gate"])) for vs in verdicts)
    return f"{failed}/{len(verdicts)} ({failed / len(verdicts):.0%})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--processes", type=int, default=5, help="baseline: the last N unchanged runs")
    parser.add_argument("--seconds", type=float, default=0.3, help="timed seconds per test")
    parser.add_argument("--gates", default="median:5%,p90:5%")
    parser.add_argument("--timer", default="time.process_time", help="pytest-benchmark timer (shared machine: CPU time)")
    args = parser.parse_args()
    k = args.processes
    designs = {f"saved run, baseline of {k} processes (--latlab-baseline)": "saved",
               "saved run, baseline of 1 process (--benchmark-compare; recomputed)": "one",
               f"saved run, baseline of {k} processes, no anchor (recomputed)": "raw",
               "A/B in one process (latency.ab)": "ab"}
    found: dict[str, list[Verdicts]] = {f"{key} {kind}": [] for key in designs.values() for kind in "US"}
    slowdown: list[float] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "test_suite.py").write_text(SUITE)
        unchanged: list[tuple[Path, dict[str, Any]]] = []
        for _ in range(k):
            unchanged.append(run(folder, 10, args, []))
            found["ab U"].append(unchanged[-1][1]["test_ab"]["verdicts"])
        for number in range(1, args.repeats + 1):
            window = unchanged[-k:]
            for blocks, kind in ((11, "S"), (10, "U")):
                path, records = run(folder, blocks, args, [p for p, _ in window])
                saved = [r["test_saved"] for _, r in window]
                found[f"saved {kind}"].append(records["test_saved"]["verdicts"])
                found[f"one {kind}"].append(offline(args.gates, saved[-1:], records["test_saved"], lambda r: r))
                found[f"raw {kind}"].append(offline(args.gates, saved, records["test_saved"], raw))
                found[f"ab {kind}"].append(records["test_ab"]["verdicts"])
                if kind == "S":
                    slowdown.append(records["test_ab"]["median_ms"] / records["test_ab"]["reference"]["median_ms"])
                else:
                    unchanged.append((path, records))
            print(f"  repeat {number}/{args.repeats} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    print(f"gates {args.gates}, {args.seconds} s per test, timer {args.timer}, {args.repeats} repeats, baseline of "
          f"{k} processes; measured slowdown (A/B median ratio, mean of the S runs): "
          f"{sum(slowdown) / len(slowdown):.3f}x; {time.perf_counter() - started:.0f} s\n")
    print("| design | gate | false alarms (unchanged) | caught (10% slower) |\n|---|---|---|---|")
    for label, key in designs.items():
        for gate in (*(str(g) for g in parse_gates(args.gates)), "any"):
            print(f"| {label} | {gate} | {rate(found[f'{key} U'], gate)} | {rate(found[f'{key} S'], gate)} |")


if __name__ == "__main__":
    main()
