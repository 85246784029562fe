"""How well ``latlab transfer`` would do between every pair of shipped profiles, without timing anything.

    python tests/benchmarks/transfer_offline.py [--profiles profiles] [--budget 12]

For each pair (source, target) of full profiles of one space whose target prices layers inside whole models and
has a validation next to it, a transfer is simulated: the references the planner picks take their latencies from
the target's full profile, the fit estimates every other block, and the target's validation models are priced from
the result. Scores per pair: MAPE and share within ±10% against the models' measured latency (the bar a real
transfer is held to), and MAPE against the target's full profile's own prediction (the transfer's error alone: the
validation's drift and the table's own error, the "full" column, are left out). A real transfer times its
references minutes before its validation, where this reads them from a profile measured earlier.

The fit (``latlab.transfer.Method``) is chosen by leave-one-pair-out over a grid of feature sets and penalties:
for each pair, the method with the lowest mean error over all other pairs is scored on it. Selection uses the
error against the full profile: against measured latency a method would also be rewarded for matching how far
each of the six targets' validations drifted from its profile. "before" is the method shipped at commit
``BEFORE_COMMIT`` (layers of a schema-2 source alone: no cross-kind pairs).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType

import numpy as np

from latlab.architecture import Architecture
from latlab.predict import LatencyTable, predict_ms
from latlab.profile import Entry, Profile, load_profile
from latlab.transfer import Method, plan_references, source_latencies, transfer_protocol, transferred

ROOT = Path(__file__).resolve().parents[2]
BEFORE_COMMIT = "2ae5a33"
GRID = [Method(features, ridge) for features in [
    ("intensity",),
    ("intensity", "head_dim"),
    ("hidden", "ffn", "head_dim", "layers"),
    ("source_ms", "hidden", "ffn", "heads", "layers"),
    ("source_ms", "hidden", "ffn", "heads", "layers", "layers*head_dim"),
    Method().features,
] for ridge in (0.0, 0.003, 0.01, 0.03, 0.1)]
# The cases the transfer is held to: (source, target) name fragments.
CASES = [("amx-1t-onnxruntime-f32", "amx-1t-openvino-f32"), ("amx-1t-openvino-f32", "amx-1t-onnxruntime-f32"),
         ("amx-1t-openvino-f32", "amx-1t-openvino-bf16"), ("amx-1t-torch-f32", "amx-1t-torch-bf16"),
         ("amx-1t-onnxruntime-f32", "amx-2t-onnxruntime-f32"), ("avx2-1t-onnxruntime-f32", "amx-1t-onnxruntime-f32"),
         ("avx2-1t-openvino-f32", "amx-1t-openvino-f32"), ("avx2-1t-torch-f32", "amx-1t-torch-f32")]


@dataclass(frozen=True)
class Target:
    profile: Profile
    archs: list[Architecture]
    measured_ms: np.ndarray
    full_ms: np.ndarray  # what the target's full profile predicts for them


@dataclass(frozen=True)
class Score:
    mape: float  # against measured
    within_10: float
    vs_full: float  # MAPE against the full profile's prediction

    @classmethod
    def of(cls, table: LatencyTable, target: Target) -> Score:
        predicted = np.array([predict_ms(a, table) for a in target.archs])
        errors = np.abs(predicted / target.measured_ms - 1) * 100
        return cls(float(errors.mean()), float((errors <= 10).mean()),
                   float((np.abs(predicted / target.full_ms - 1) * 100).mean()))


def load(folder: Path) -> tuple[dict[str, Profile], dict[str, Target]]:
    """Full profiles by name, and those that can be targets: layers priced inside models, a validation beside."""
    profiles = {path.stem: load_profile(path) for path in sorted(folder.glob("*.json"))
                if not path.name.endswith(".validation.json")}
    profiles = {name: p for name, p in profiles.items() if p.complete and p.transfer is None}
    targets = {}
    for name, profile in profiles.items():
        validation = folder / f"{name}.validation.json"
        if profile.protocol.model_depth and validation.exists():
            rows = json.loads(validation.read_text())["archs"]
            archs = [Architecture.from_json(r["arch"]) for r in rows]
            table = LatencyTable.from_profile(profile)
            targets[name] = Target(profile, archs, np.array([r["measured_ms"] for r in rows]),
                                   np.array([predict_ms(a, table) for a in archs]))
    return profiles, targets


def simulate(source: Profile, target: Target, method: Method, budget: int) -> Score:
    references = plan_references(source_latencies(source, target.profile.protocol.model_depth), budget)
    measured = {b: Entry(b, [[target.profile.entries[b.key].stats.median_ms]]) for b in references}
    result = transferred(source, replace(target.profile, entries={}), measured, "source", method)
    return Score.of(LatencyTable.from_profile(result), target)


def before_module() -> ModuleType | None:
    """latlab/transfer.py as shipped at ``BEFORE_COMMIT``, or None outside a git checkout that has it."""
    try:
        text = subprocess.run(["git", "show", f"{BEFORE_COMMIT}:latlab/transfer.py"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = Path(tempfile.mkdtemp()) / "transfer_before.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("transfer_before", path)
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def simulate_before(module: ModuleType, source: Profile, target: Target, budget: int) -> Score | None:
    if source.protocol.model_depth != target.profile.protocol.model_depth:
        return None  # it transferred a schema-2 source as layers alone, which a target of model blocks cannot price
    references = module.plan_references(source, budget)
    measured = {b: Entry(b, [[target.profile.entries[b.key].stats.median_ms]]) for b in references}
    result = module.transferred(source, replace(target.profile, entries={}), measured, "source")
    return Score.of(LatencyTable.from_profile(result), target)


def short(name: str) -> str:
    for long, brief in (("intel-xeon-amx-", "amx-"), ("amd-epyc-avx2-", "avx2-"), ("onnxruntime", "ort"),
                        ("openvino", "ov")):
        name = name.replace(long, brief)
    return name


def method_name(method: Method) -> str:
    return f"{'+'.join(method.features)} ridge {method.ridge:g}"


def leave_one_pair_out(scores: dict[Method, dict[tuple[str, str], Score]], pick: str) -> tuple[dict, dict]:
    """For each pair, the method best on all other pairs by mean ``pick`` (an attribute of Score), scored on it."""
    pairs = list(next(iter(scores.values())))
    held, chosen = {}, {}
    for pair in pairs:
        best = min(scores, key=lambda m: np.mean([getattr(scores[m][p], pick) for p in pairs if p != pair]))
        held[pair], chosen[best] = scores[best][pair], chosen.get(best, 0) + 1
    return held, chosen


def mean(scores: list[Score]) -> str:
    return (f"{np.mean([s.mape for s in scores]):.2f}% | {np.mean([s.within_10 for s in scores]):.0%} | "
            f"{np.mean([s.vs_full for s in scores]):.2f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=Path, default=ROOT / "profiles")
    parser.add_argument("--budget", type=int, default=12)
    args = parser.parse_args()
    profiles, targets = load(args.profiles)
    pairs = [(s, t) for t in targets for s in profiles if s != t and profiles[s].space == profiles[t].space
             and transfer_protocol(profiles[s].protocol).model_depth == targets[t].profile.protocol.model_depth]
    scores = {m: {(s, t): simulate(profiles[s], targets[t], m, args.budget) for s, t in pairs} for m in GRID}
    shipped = {(s, t): simulate(profiles[s], targets[t], Method(), args.budget) for s, t in pairs}
    held, chosen = leave_one_pair_out(scores, "vs_full")
    held_measured, _ = leave_one_pair_out(scores, "mape")
    module = before_module()
    before = {p: module and simulate_before(module, profiles[p[0]], targets[p[1]], args.budget) for p in pairs}
    own = {t: Score.of(LatencyTable.from_profile(targets[t].profile), targets[t]) for t in targets}

    print(f"{len(pairs)} pairs, budget {args.budget}; * = a case held to the bar (MAPE <= 6%, >= 85% within ±10%)\n")
    print("| source -> target | before: MAPE, ±10% | after: MAPE, ±10%, vs full | left-out pick: MAPE, ±10% "
          "| full profile's own MAPE |")
    print("|---|---|---|---|---|")
    for s, t in pairs:
        star = "*" if any(a in s and b in t for a, b in CASES) else ""
        was = before[(s, t)]
        old = f"{was.mape:.2f}%, {was.within_10:.0%}" if was else "n/a"
        now, out = shipped[(s, t)], held[(s, t)]
        print(f"| {star}{short(s)} -> {short(t)} | {old} | {now.mape:.2f}%, {now.within_10:.0%}, {now.vs_full:.2f}% "
              f"| {out.mape:.2f}%, {out.within_10:.0%} | {own[t].mape:.2f}% |")
    print("\nmeans (MAPE vs measured | within ±10% | MAPE vs full profile):")
    comparable = [p for p in pairs if before[p]]
    if comparable:
        print(f"  before, {len(comparable)} same-layout pairs: {mean([before[p] for p in comparable])}; "
              f"after, same pairs: {mean([shipped[p] for p in comparable])}")
    print(f"  after (Method()), all pairs: {mean(list(shipped.values()))}")
    print(f"  leave-one-pair-out, picked on error vs full: {mean(list(held.values()))}")
    print(f"  leave-one-pair-out, picked on error vs measured: {mean(list(held_measured.values()))}")
    print("  picked (held-out pairs): " + "; ".join(f"{method_name(m)} x{n}" for m, n in chosen.items()))
    print("\ngrid, best first by mean error vs full profile:")
    for method in sorted(GRID, key=lambda m: np.mean([s.vs_full for s in scores[m].values()]))[:8]:
        failing = sum(s.mape > 6 or s.within_10 < 0.85 for s in scores[method].values())
        print(f"  {method_name(method):<72} {mean(list(scores[method].values()))}, {failing} pairs miss the bar")


if __name__ == "__main__":
    sys.exit(main())
