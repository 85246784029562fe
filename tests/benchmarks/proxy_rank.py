"""Does the search's proxy rank candidates as the final recipe does? Kendall tau between proxy quality and
final test accuracy, over candidates spread across the space.

    python tests/benchmarks/proxy_rank.py --profile P --out runs/rank [--candidates 10] [--draw 0] [--seeds 1]
                                          [--data FILE] [--band 5-7] [--test FILE]

Candidates: the space's uniform students sorted by predicted latency on P, cut into ``--candidates`` equal bins,
one drawn at random from each (``--draw`` seeds the draw; draws of other seeds skip the earlier draws' picks, so
``--draw 1`` gives a set disjoint from ``--draw 0``). Across the whole space, size alone ranks them well; what a
search needs is the order among students of one latency, so ``--band LO-HI`` draws only from those predicted
within LO-HI ms. ``--test FILE`` scores the final models on that labelled file instead of the data's test split
(texts also in ``--data`` are dropped): a test split of a few hundred texts is as noisy as the gaps between
students of one latency (``sentiment_csv.py --rest`` writes the snippets a sample left out).

Each candidate goes through the final recipe (``kdnas.final``, ``--seeds`` seeds), then through every proxy
below; the final figures are appended to ``final.jsonl`` in ``--out`` as each finishes, so a stopped run resumes
where it was. Put a fine-tuned ``teacher/`` from a search's
run folder into ``--out`` to skip fine-tuning the teacher again (only one fine-tuned on the same ``--data``:
BBC News when it is left out; ``tests/benchmarks/sentiment_csv.py`` writes a harder one).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch
from scipy.stats import kendalltau

from kdnas.candidate import Candidate, all_candidates
from kdnas.data import default_teacher_dir
from kdnas.distill import DistillConfig
from kdnas.evaluate import EvalSettings, evaluate
from kdnas.final import FinalConfig, prepare_teacher, train_student
from kdnas.run_folder import TEACHER_DIR
from latlab.predict import LatencyTable, predict_ms
from latlab.profile import load_complete_profile

# Each proxy as EvalSettings changes from the search's default; "default" is what kdnas search runs.
PROXIES = {
    "default": {},
    "score: all pairs (the default before session 10)": {"score": "all"},
    "score: last layer": {"score": "last"},
    "seq_len 128": {"seq_len": 128},
    "labelled (accuracy after 20 steps)": {"objective": "labelled"},
    "90 distillation steps (3x)": {"distill": DistillConfig(steps=90)},
}
TUNED = "teacher fine-tuned on the task (the final recipe's)"  # a proxy whose teacher is this run's teacher/


def spread(priced: dict[Candidate, float], count: int, draw: int) -> list[Candidate]:
    ordered = sorted(priced, key=lambda c: (priced[c], c))
    taken: set[Candidate] = set()
    for earlier in range(draw + 1):
        rng, picked = random.Random(earlier), []
        free = [c for c in ordered if c not in taken]
        for i in range(count):
            picked.append(rng.choice(free[i * len(free) // count:(i + 1) * len(free) // count]))
        taken |= set(picked)
    return picked


def latency_band(text: str) -> tuple[float, float]:
    low, _, high = text.partition("-")
    try:
        band = float(low), float(high)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--band {text!r}: give LO-HI in ms, e.g. 5-7") from None
    if not 0 <= band[0] < band[1]:
        raise argparse.ArgumentTypeError(f"--band {text!r}: LO must be below HI")
    return band


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--candidates", type=int, default=10)
    parser.add_argument("--draw", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--data", default=None, help="CSV/JSONL as kdnas search --data takes; BBC News if left out")
    parser.add_argument("--band", type=latency_band, default=None, help="draw only from students predicted "
                        "within LO-HI ms, e.g. 5-7")
    parser.add_argument("--test", default=None, help="score final models on this labelled CSV/JSONL instead")
    args = parser.parse_args()
    torch.set_num_threads(2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    profile = load_complete_profile(args.profile)
    table, space = LatencyTable.from_profile(profile), profile.space
    priced = {c: predict_ms(c.architecture(space), table) for c in all_candidates(space)}
    if args.band:
        priced = {c: ms for c, ms in priced.items() if args.band[0] <= ms <= args.band[1]}
        if len(priced) < args.candidates:
            raise SystemExit(f"--band {args.band[0]:g}-{args.band[1]:g}: {len(priced)} students in it, fewer "
                             f"than --candidates {args.candidates}")
    chosen = spread(priced, args.candidates, args.draw)
    settings = EvalSettings(str(default_teacher_dir()), args.data)
    config = replace(FinalConfig(), seeds=args.seeds)

    log = out / "final.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    done = {row["candidate"]: row for row in rows if row.get("test") == args.test and len(row["per_seed"]) == args.seeds}
    todo = [c for c in chosen if c.name not in done]
    if todo:
        teacher = prepare_teacher(settings, config, space.seq_len[-1], out, print, test_path=args.test)
        print(f"test: {teacher.test_source}, teacher {teacher.test_accuracy:.1%}")
        for candidate in todo:
            started = time.perf_counter()
            trained = train_student(candidate, teacher, settings, config, print)
            row = {"candidate": candidate.name, "predicted_ms": priced[candidate], "test_accuracy": trained.accuracy,
                   "per_seed": trained.accuracies, "test": args.test,
                   "seconds": round(time.perf_counter() - started, 1)}
            with log.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
            done[candidate.name] = row
            print(f"{len(done)}/{len(chosen)} {candidate.name}: test {trained.accuracy:.1%}")

    final = [done[c.name]["test_accuracy"] for c in chosen]
    where = f"predicted {args.band[0]:g}-{args.band[1]:g} ms" if args.band else "across the space"
    print(f"\n{len(chosen)} candidates {where} (draw {args.draw}), final test accuracy "
          f"{statistics.mean(final):.1%} (range {min(final):.1%}-{max(final):.1%})")
    print("| proxy | Kendall tau | p | proxy seconds per candidate |")
    print("|---|---|---|---|")
    results = {}
    proxies = dict(PROXIES)
    if (out / TEACHER_DIR / "config.json").is_file():
        proxies[TUNED] = {"teacher_dir": str(out / TEACHER_DIR)}
    for name, change in proxies.items():
        started = time.perf_counter()
        quality = [evaluate(c, replace(settings, **change)).quality for c in chosen]
        tau, p = kendalltau(quality, final)
        results[name] = {"tau": tau, "p": p, "quality": quality}
        print(f"| {name} | {tau:+.2f} | {p:.3f} | {(time.perf_counter() - started) / len(chosen):.1f} |")
    name = f"rank-draw{args.draw}" + (f"-band{args.band[0]:g}-{args.band[1]:g}" if args.band else "")
    (out / f"{name}.json").write_text(json.dumps(
        {"candidates": [c.name for c in chosen], "final": final, "proxies": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
