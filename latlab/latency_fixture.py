"""What the ``latency`` fixture does: time a model on a latlab backend with pytest-benchmark, record who measured
it where, and apply the gates. Loaded only when a test asks for the fixture (it imports torch and numpy).

Each timed round calls the model once (``runner.run``, which synchronises the device); before it, in
pytest-benchmark's untimed ``setup``, the same round times its companions with the same timer: the A/B
reference, and on CPU a fixed calibration workload (the anchor). Gates against a saved run compare latency
relative to the anchor, because this kind of machine drifts 20-57% between processes (shared/FINDINGS.md);
the A/B ratio needs no anchor, both sides share every round.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import torch

from latlab.backend import Backend, Runner, Settings
from latlab.benchrun import BenchRecord, differences
from latlab.errors import LatlabError
from latlab.fingerprint import Fingerprint
from latlab.gates import STATS, Verdict, judge, parse_gates
from latlab.protocol import Protocol, warm_up
from latlab.pytest_plugin import LatlabDeviceWarning, PluginState
from latlab.registry import load_backend
from latlab.stats import LatencyStats

if TYPE_CHECKING:  # architectures import transformers (seconds): only when a test times one
    from latlab.architecture import Architecture

    ModelLike = torch.nn.Module | Architecture | dict | str | Path
Inputs = torch.Tensor | Sequence[torch.Tensor] | None

ANCHOR_NAME = "numpy-f32-matmul-v1"  # change the name whenever the workload changes: anchors only compare by name
WALL_CLOCK = "time.perf_counter"  # pytest-benchmark's default timer; profiles are measured with it too
MIN_ROUNDS, MAX_ROUNDS, SMOKE_ROUNDS = 50, 20_000, 3  # 50 calls at least so that a p90 means something
RELATIVE_BLOCK = 30  # rounds per block at least, so that a block's p90 rests on a few samples above it
PROBE = Protocol(warmup_calls=3, warmup_seconds=0.0)  # three calls: first-call set-up, and a cost estimate


class Anchor(Runner):
    """~0.5 ms of float32 matrix products in NumPy: the same work in every run, independent of the runtime under
    test. Small operands keep OpenBLAS on the calling thread."""

    def __init__(self) -> None:
        super().__init__()
        rng = np.random.default_rng(0)
        self.x = rng.standard_normal((8, 128), dtype=np.float32)
        self.w = rng.standard_normal((128, 128), dtype=np.float32) / np.float32(11.3)

    def run(self) -> None:
        x = self.x
        for _ in range(48):
            x = np.tanh(x @ self.w)


@dataclass(frozen=True)
class Target:
    """A model resolved to what a backend can prepare: a torch module or an ONNX file, with its inputs."""

    label: str
    module: torch.nn.Module | None
    onnx_path: str | None
    inputs: tuple[torch.Tensor, ...]
    batch: int
    seq_len: int


def arch_label(arch: Architecture) -> str:
    layers = ",".join(f"{a}/{f}" for a, f in zip(arch.heads, arch.ffn))
    return f"arch h{arch.hidden} L{arch.layers} [{layers}] s{arch.seq_len} b{arch.batch}"


def as_architecture(model: Architecture | dict | str | Path) -> Architecture:
    from latlab.architecture import Architecture, load_architecture

    if isinstance(model, Architecture):
        return model
    return Architecture.from_json(model) if isinstance(model, dict) else load_architecture(model)


def resolve(model: ModelLike, inputs: Inputs) -> Target:
    """A torch module + inputs, an ``.onnx`` path + inputs, or an Architecture (object, JSON dict or file)."""
    given = (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs) if inputs is not None else None
    if isinstance(model, (str, Path)) and str(model).endswith(".onnx"):
        if not Path(model).is_file():
            raise LatlabError(f"{model}: ONNX file not found")
        if not given:
            raise LatlabError(f"{model}: an ONNX model needs example inputs")
        return Target(f"onnx {Path(model).name}", None, str(model), given, *_shape(given))
    if isinstance(model, torch.nn.Module):
        if not given:
            raise LatlabError(f"{type(model).__name__}: a torch module needs example inputs")
        return Target(type(model).__name__, model.eval(), None, given, *_shape(given))
    from latlab.architecture import Architecture
    from latlab.modules import build_model

    if isinstance(model, (Architecture, dict, str, Path)):
        if given is not None:
            raise LatlabError("an architecture builds its own inputs from its batch and seq_len; pass no inputs")
        arch = as_architecture(model)
        module, built = build_model(arch)
        return Target(arch_label(arch), module, None, built, arch.batch, arch.seq_len)
    raise LatlabError(f"cannot time a {type(model).__name__}: pass a torch module with example inputs, an .onnx "
                      "path with example inputs, or a latlab Architecture (or its JSON)")


def _shape(inputs: tuple[torch.Tensor, ...]) -> tuple[int, int]:
    """(batch, seq_len) read from the first input, 0 where it has no such dimension."""
    shape = tuple(inputs[0].shape)
    return (shape[0] if shape else 0), (shape[1] if len(shape) > 1 else 0)


def prepare(backend: Backend, target: Target, settings: Settings) -> Runner:
    if target.module is not None:
        return backend.prepare(target.module, target.inputs, settings)
    return backend.prepare_onnx(target.onnx_path, target.inputs, settings)


def plan_rounds(round_ms: float, seconds: float, smoke: bool) -> tuple[int, int]:
    """(timed rounds, warm-up rounds) that fit ``seconds``; smoke mode only proves that the test runs."""
    if smoke:
        return SMOKE_ROUNDS, 1
    per_round = max(round_ms, 1e-3)
    rounds = min(MAX_ROUNDS, max(MIN_ROUNDS, math.ceil(seconds * 1000 / per_round)))
    warmup = max(Protocol.warmup_calls, math.ceil(Protocol.warmup_seconds * 1000 / per_round))
    return rounds, min(warmup, rounds)


def stats_of(samples_ms: Sequence[float]) -> LatencyStats:
    """Consecutive tenths as rounds, so that ``round_cv_pct`` shows drift during the measurement."""
    chunks = np.array_split(np.asarray(samples_ms, dtype=float), min(10, len(samples_ms)))
    return LatencyStats.from_rounds([chunk.tolist() for chunk in chunks])


def relative_to_anchor(model_ms: Sequence[float], anchor_ms: Sequence[float]) -> dict[str, float]:
    """Each gate statistic of the model over the same statistic of the anchor timed in the same rounds, computed
    per block of consecutive rounds (up to ten, of at least RELATIVE_BLOCK rounds each) and the median taken over
    blocks: a machine whose speed changes during the run then neither inflates the model's tail nor hides it."""
    blocks = max(1, min(10, len(model_ms) // RELATIVE_BLOCK))
    ratios: dict[str, list[float]] = {stat: [] for stat in STATS}
    for model, anchor in zip(np.array_split(np.asarray(model_ms), blocks),
                             np.array_split(np.asarray(anchor_ms), blocks)):
        mine, its = LatencyStats.from_rounds([model.tolist()]), LatencyStats.from_rounds([anchor.tolist()])
        for stat in STATS:
            ratios[stat].append(getattr(mine, f"{stat}_ms") / getattr(its, f"{stat}_ms"))
    return {stat: float(np.median(values)) for stat, values in ratios.items()}


def timer_name(timer: Callable[[], float]) -> str:
    return f"{getattr(timer, '__module__', '')}.{getattr(timer, '__qualname__', repr(timer))}".lstrip(".")


@contextmanager
def user_errors() -> Iterator[None]:
    """A user's mistake fails the test with one line, not a traceback into latlab."""
    try:
        yield
    except LatlabError as exc:
        raise pytest.fail.Exception(str(exc), pytrace=False) from None


class Latency:
    """The ``latency`` fixture: one measurement per test, like pytest-benchmark's ``benchmark``."""

    def __init__(self, benchmark: Any, state: PluginState) -> None:
        self.benchmark = benchmark
        self.state = state
        self.used = False

    def measure(self, model: ModelLike, inputs: Inputs = None, *, backend: str = "torch", threads: int = 1,
                precision: str = "f32", device: str = "cpu") -> BenchRecord | None:
        """Time ``model``; with ``--latlab-fail`` and ``--benchmark-compare``, gate it against the saved run.
        Returns None under ``--benchmark-disable`` (the model then runs once, untimed)."""
        with user_errors():
            chosen, settings = self._start(backend, Settings(threads, precision, device))
            target = resolve(model, inputs)
            record = self._run(chosen, settings, target, prepare(chosen, target, settings))
            return self._finish(record, [])

    def ab(self, candidate: ModelLike, reference: ModelLike, inputs: Inputs = None, *, backend: str = "torch",
           threads: int = 1, precision: str = "f32", device: str = "cpu", fail: str = "p90:10%") -> BenchRecord | None:
        """Time ``candidate`` and ``reference`` in alternating rounds of the same run and fail when the candidate
        is slower by more than ``fail``. Drift between processes cannot fool this gate: both sides share it."""
        with user_errors():
            gates = parse_gates(fail)
            chosen, settings = self._start(backend, Settings(threads, precision, device))
            new, old = resolve(candidate, inputs), resolve(reference, inputs)
            record = self._run(chosen, settings, new, prepare(chosen, new, settings),
                               reference=prepare(chosen, old, settings))
            verdicts = [] if record is None else [
                judge(g, "reference", g.value(record.reference), g.value(record.stats)) for g in gates
            ]
            return self._finish(record, verdicts)

    def against_profile(self, profile: str | Path, arch: Architecture | dict | str | Path, *,
                        fail: str = "median:15%") -> BenchRecord | None:
        """Time ``arch`` with the profile's backend and settings and fail when it is slower than the profile's
        prediction by more than ``fail``. A profile predicts medians measured with the wall clock."""
        from latlab.predict import LatencyTable, predict_ms
        from latlab.profile import load_profile

        with user_errors():
            gates = parse_gates(fail)
            if any(g.stat != "median" for g in gates):
                raise LatlabError(f"gate {fail!r}: a profile predicts the median; use median:LIMIT%")
            loaded = load_profile(profile)
            target_arch = as_architecture(arch)
            loaded.space.check_contains(target_arch)
            predicted = predict_ms(target_arch, LatencyTable.from_profile(loaded))
            chosen, settings = self._start(loaded.backend, loaded.settings)
            target = resolve(target_arch, None)
            record = self._run(chosen, settings, target, prepare(chosen, target, settings))
            if record is None:
                return None
            here = Fingerprint.from_json(self.state.fingerprint())
            self._device_problems(loaded.fingerprint.differences(here) + differences(
                {"runtime_version": loaded.runtime_version, "timer": WALL_CLOCK},
                {"runtime_version": record.runtime_version, "timer": record.timer}, "profile"), f"profile {profile}")
            return self._finish(record, [judge(g, "profile", predicted, g.value(record.stats)) for g in gates])

    def _start(self, backend: str, settings: Settings) -> tuple[Backend, Settings]:
        if self.used:
            raise LatlabError("the latency fixture measures once per test; use one test per model (or parametrize)")
        self.used = True
        return load_backend(backend), settings

    def _timer(self) -> Callable[[], float]:
        """pytest-benchmark's timer for this test (--benchmark-timer or the benchmark marker), once it is set up."""
        stats = self.benchmark.stats
        return stats.options["timer"] if stats else time.perf_counter

    def _run(self, backend: Backend, settings: Settings, target: Target, runner: Runner,
             reference: Runner | None = None) -> BenchRecord | None:
        anchor = Anchor() if settings.device == "cpu" else None
        companions = {k: r for k, r in (("reference", reference), ("anchor", anchor)) if r is not None}
        round_ms = sum(warm_up(r, PROBE) for r in (runner, *companions.values()))
        rounds, warmup = plan_rounds(round_ms, self.state.seconds, self.state.smoke)
        samples: dict[str, list[float]] = {key: [] for key in companions}

        def time_companions() -> None:  # pytest-benchmark's setup: runs before each round, untimed
            timer = self._timer()
            keys = list(companions)
            if len(keys) > 1 and len(samples[keys[0]]) % 2:
                keys.reverse()  # model and reference each follow the anchor in half of the rounds: same cache state
            for key in keys:
                start = timer()
                companions[key].run()
                samples[key].append((timer() - start) * 1000)

        self.benchmark.pedantic(runner.run, setup=time_companions, rounds=rounds, warmup_rounds=warmup, iterations=1)
        if not self.benchmark.stats:
            return None  # --benchmark-disable: pytest-benchmark ran the model once, untimed
        model_ms = [s * 1000 for s in self.benchmark.stats.stats.data]
        measured = {key: values[warmup:] for key, values in samples.items()}
        record = BenchRecord(
            backend=backend.name, runtime_version=backend.runtime_version(), threads=settings.threads,
            precision=settings.precision, device=settings.device, batch=target.batch, seq_len=target.seq_len,
            timer=timer_name(self._timer()), model=target.label,
            stats=stats_of(model_ms),
            anchor=stats_of(measured["anchor"]) if anchor else None, anchor_name=ANCHOR_NAME if anchor else "",
            relative=relative_to_anchor(model_ms, measured["anchor"]) if anchor else {},
            reference=stats_of(measured["reference"]) if reference else None, applied=runner.applied,
        )
        self.benchmark.extra_info["latlab"] = record.to_json()  # saved even if a later check fails the test
        return record

    def _against_baseline(self, record: BenchRecord) -> list[Verdict]:
        """The --latlab-fail gates against the run loaded by --benchmark-compare (identity checked first)."""
        baseline = self.state.baseline
        if baseline is None:
            if self.state.gates:
                raise LatlabError("--latlab-fail needs a saved baseline, but --benchmark-compare loaded no latlab "
                                  "run (see pytest-benchmark's warning; check --benchmark-storage)")
            return []
        base = baseline.get(self.benchmark.fullname)
        if base is None:
            if self.state.gates:
                warnings.warn(LatlabDeviceWarning(f"{self.benchmark.fullname}: not in the compared run; "
                                                  "no baseline, so --latlab-fail was not applied"), stacklevel=3)
            return []
        self._device_problems(differences(base.identity(), record.identity(), "the compared run"), "the compared run")
        return [judge(g, "baseline", g.value(base.stats), g.value(record.stats), record.corrected(base, g.stat))
                for g in self.state.gates]

    def _device_problems(self, problems: list[str], source: str) -> None:
        if not problems:
            return
        message = f"{self.benchmark.fullname}: {source} differs from this run: {'; '.join(problems)}"
        if self.state.strict_device:
            raise LatlabError(f"{message} (--latlab-strict-device)")
        warnings.warn(LatlabDeviceWarning(f"{message}; the comparison may not hold"), stacklevel=3)

    def _finish(self, record: BenchRecord | None, verdicts: list[Verdict]) -> BenchRecord | None:
        if record is None:
            return None
        verdicts = self._against_baseline(record) + verdicts
        record = replace(record, verdicts=tuple(v.to_json() for v in verdicts))
        self.benchmark.extra_info["latlab"] = record.to_json()
        failed = [v for v in verdicts if v.failed]
        if failed and not self.state.smoke:  # three rounds say nothing about speed: recorded, not enforced
            lines = "\n  ".join(v.describe() for v in verdicts)
            raise LatlabError(f"latency gate failed for {record.model} on {record.backend}:\n  {lines}")
        return record
