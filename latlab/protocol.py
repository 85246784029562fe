"""The measurement protocol. On these machines drift, not arithmetic, decides accuracy (shared/FINDINGS.md):
prepare everything first, warm each item up, then time all items in shuffled, interleaved rounds so that a slow
minute is spread over every item instead of landing on a few."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from latlab.backend import Backend, Runner, Settings
from latlab.fields import finite, refuse, typed, whole
from latlab.stats import LatencyStats

Rounds = list[list[float]]
Report = Callable[[str, int, int], None]  # (stage, done, total): progress for the CLI to draw


def quiet(stage: str, done: int, total: int) -> None:
    return None


def prepare_all(backend: Backend, items: dict[str, tuple], settings: Settings, report: Report) -> dict[str, Runner]:
    """Build/convert every item before any timing starts, so timing rounds are not interleaved with compiles."""
    runners: dict[str, Runner] = {}
    for index, (key, (module, inputs)) in enumerate(items.items()):
        report("prepare", index, len(items))
        runners[key] = backend.prepare(module, inputs, settings)
    report("prepare", len(items), len(items))
    return runners


MAX_MODEL_DEPTH = 24  # the deepest uniform model a profile times (Protocol.model_depth)


@dataclass(frozen=True)
class Protocol:
    rounds: int = 20  # interleaved passes over all items
    min_samples: int = 100  # per item, in total
    min_seconds: float = 1.5  # per item, in total, of timed calls (a default space profiles in under 10 minutes)
    max_samples: int = 1000  # per item: microsecond-sized items reach min_samples long before min_seconds
    warmup_calls: int = 5
    warmup_seconds: float = 0.2
    max_round_cv_pct: float = 10.0  # spread of per-round medians above which an item is measured again
    remeasure_tries: int = 1
    # Stable items timed again beside the unstable ones, to rescale the later pass to the first pass's machine
    # speed (see measure). 0: no rescaling, as in profiles written before it.
    remeasure_anchors: int = 8
    seed: int = 0
    # Each layer configuration is timed inside uniform whole models of 1 and of this many layers, which price a
    # layer as it runs inside a model (latlab.predict). 0: layers timed alone, as profiles written before it were.
    model_depth: int = 4
    # Random mixed whole models timed in the same rounds as the blocks, to fit the cost of shape changes
    # (latlab.calibration). 0: none, as in profiles written before it.
    calibration_models: int = 10

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: str = "profile") -> Protocol:
        """Fields a later latlab adds are ignored; a count below 1 or a negative time is damage."""
        # written before model blocks: layers alone; before calibration: none; before anchors: none
        values = {**data, "model_depth": data.get("model_depth", 0),
                  "calibration_models": data.get("calibration_models", 0),
                  "remeasure_anchors": data.get("remeasure_anchors", 0)}
        protocol = typed(cls, values, source, "protocol", strict=False)
        for name in ("rounds", "min_samples", "max_samples", "warmup_calls"):
            whole(getattr(protocol, name), source, f"protocol.{name}")
        for name in ("min_seconds", "warmup_seconds", "max_round_cv_pct"):
            finite(getattr(protocol, name), source, f"protocol.{name}", minimum=0.0)
        whole(protocol.remeasure_tries, source, "protocol.remeasure_tries", minimum=0)
        whole(protocol.remeasure_anchors, source, "protocol.remeasure_anchors", minimum=0)
        whole(protocol.calibration_models, source, "protocol.calibration_models", minimum=0)
        if protocol.model_depth == 1 or not 0 <= protocol.model_depth <= MAX_MODEL_DEPTH:
            raise refuse(source, "protocol.model_depth",
                         f"must be 0 or from 2 to {MAX_MODEL_DEPTH}, got {protocol.model_depth}")
        return protocol


def warm_up(runner: Runner, protocol: Protocol) -> float:
    """Run until both the call count and the time are reached; returns the median call latency seen."""
    samples: list[float] = []
    while len(samples) < protocol.warmup_calls or sum(samples) < protocol.warmup_seconds * 1000:
        samples.append(runner.time_ms())
    return sorted(samples)[len(samples) // 2]


def burst_size(estimate_ms: float, protocol: Protocol) -> int:
    """Calls per round so that the item reaches both the minimum count and the minimum time (up to max_samples)."""
    by_count = math.ceil(protocol.min_samples / protocol.rounds)
    by_time = math.ceil(protocol.min_seconds * 1000 / protocol.rounds / max(estimate_ms, 1e-3))
    return max(1, by_count, min(by_time, math.ceil(protocol.max_samples / protocol.rounds)))


def interleave(
    runners: Mapping[str, Runner],
    protocol: Protocol,
    done: Mapping[str, Rounds] | None = None,
    on_round: Callable[[int, int, dict[str, Rounds]], None] | None = None,
    report: Report = quiet,
) -> dict[str, Rounds]:
    """Time every runner in shuffled rounds until each has ``protocol.rounds`` rounds of samples.

    ``done`` holds rounds already measured (a resumed run): those items only get their missing rounds.
    ``on_round(round_index, total_rounds, results)`` is called after each round, e.g. to checkpoint;
    ``report("warm-up", done, total)`` after each item's warm-up.
    """
    results: dict[str, Rounds] = {key: [list(r) for r in (done or {}).get(key, [])] for key in runners}
    pending = [key for key in runners if len(results[key]) < protocol.rounds]
    bursts = {}
    for index, key in enumerate(pending):
        bursts[key] = burst_size(warm_up(runners[key], protocol), protocol)
        report("warm-up", index + 1, len(pending))
    rng = random.Random(protocol.seed + sum(len(r) for r in results.values()))
    total = max((protocol.rounds - len(results[k]) for k in pending), default=0)
    for index in range(total):
        order = [k for k in pending if len(results[k]) < protocol.rounds]
        rng.shuffle(order)
        for key in order:
            runner = runners[key]
            results[key].append([runner.time_ms() for _ in range(bursts[key])])
        if on_round:
            on_round(index + 1, total, results)
    return results


def anchors_for(results: Mapping[str, Rounds], shaky: list[str], count: int) -> list[str]:
    """Up to ``count`` stable items spread evenly over the stable items' latencies, shortest to longest."""
    stable = sorted((k for k in results if k not in shaky),
                    key=lambda k: LatencyStats.from_rounds(results[k]).median_ms)
    if count >= len(stable):
        return stable
    return [stable[round(i * (len(stable) - 1) / max(count - 1, 1))] for i in range(count)]


def speed_ratio(first: Mapping[str, Rounds], again: Mapping[str, Rounds], anchors: list[str]) -> float:
    """How much faster the first pass ran than a later one: the median over anchors of their median ratios."""
    ratios = [LatencyStats.from_rounds(first[k]).median_ms / LatencyStats.from_rounds(again[k]).median_ms
              for k in anchors]
    return float(np.median(ratios)) if ratios else 1.0


def measure(
    runners: Mapping[str, Runner],
    protocol: Protocol,
    done: Mapping[str, Rounds] | None = None,
    on_round: Callable[[int, int, dict[str, Rounds]], None] | None = None,
    report: Report = quiet,
) -> tuple[dict[str, Rounds], set[str]]:
    """Interleaved measurement, then re-measurement of items whose round medians spread too much.

    A re-measurement runs minutes after the first pass, when the machine may run at another speed (a host that
    switches speed states), while the stable items keep their first-pass rounds. So stable anchors are timed
    again beside the unstable items, and the new rounds are rescaled by how much faster the first pass ran;
    otherwise one table, or one same-run validation, would mix two machine speeds.

    Returns the rounds per item and the keys that stayed unstable after ``remeasure_tries``. ``report`` hears
    the warm-ups and each round of a re-measurement (stage "re-measure"); ``on_round`` the first pass's rounds.
    """
    results = interleave(runners, protocol, done, on_round, report)
    for _ in range(protocol.remeasure_tries):
        shaky = [k for k in results if LatencyStats.from_rounds(results[k]).round_cv_pct > protocol.max_round_cv_pct]
        if not shaky:
            break
        anchors = anchors_for(results, shaky, protocol.remeasure_anchors)
        again = interleave({k: runners[k] for k in shaky + anchors}, protocol,
                           on_round=lambda index, total, _: report("re-measure", index, total))
        ratio = speed_ratio(results, again, anchors)
        for key in shaky:
            rescaled = [[sample * ratio for sample in r] for r in again[key]]
            if LatencyStats.from_rounds(rescaled).round_cv_pct < LatencyStats.from_rounds(results[key]).round_cv_pct:
                results[key] = rescaled
    unstable = {k for k in results if LatencyStats.from_rounds(results[k]).round_cv_pct > protocol.max_round_cv_pct}
    return results, unstable
