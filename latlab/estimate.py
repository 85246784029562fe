"""How long ``latlab profile`` will take, said before it starts. Pure arithmetic on the protocol's settings.

Measuring follows from the protocol once a block's call time is known (``protocol.burst_size``: at least
``min_seconds`` and ``min_samples`` calls per block, after ``warmup_seconds`` and ``warmup_calls``); before
anything ran, the call time is guessed from the block's multiply-add work. Preparing (export, compile) is guessed
per backend. Both are guesses: the progress bars then give each stage's remaining time from the blocks done.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from latlab.architecture import Architecture
from latlab.backend import Settings
from latlab.blocks import Block, gflops
from latlab.protocol import Protocol, burst_size

# Seconds to prepare one block, by backend: (wall time of this project's full profiling runs on the amx kind - the
# measuring they did) / 121 blocks (README, "Shipped profiles"); OpenVINO's is its prepare stage alone on the
# avx512bf16 kind with its telemetry off (59 s for the default space; 2.8 s per block with it on). A backend not
# listed gets the largest.
PREPARE_S = {"onnxruntime": 1.5, "openvino": 0.5, "torch": 0.1}
# Seconds more per block for int8: quantizing a 4-layer h256 model block took 0.8-1.2 s with ONNX Runtime's
# quantizer, 2.4 s with NNCF and 0.1 s with torch (amx kind, session 5).
QUANTIZE_S = {"onnxruntime": 1.0, "openvino": 2.5, "torch": 0.1}
# Multiply-add throughput per thread assumed for a call-time guess, below what the shipped CPU profiles achieved
# on their model blocks (f32: median 83-120 GFLOP/s, lowest 45; bf16: 129-340). On a GPU the protocol's minimum
# time decides anyway.
GFLOPS_PER_THREAD = {"f32": 50.0, "bf16": 100.0, "fp16": 100.0, "int8": 100.0}  # int8: 1.5-3.4x f32 measured
GPU_GFLOPS = 5000.0
CALL_MS = 0.02  # what a near-empty call costs (overhead blocks measured 0.01-0.09 ms)


@dataclass(frozen=True)
class Stage:
    name: str
    blocks: int
    seconds: float
    basis: str  # what the figure rests on, said next to it


@dataclass(frozen=True)
class ProfileEstimate:
    stages: tuple[Stage, ...]

    @property
    def seconds(self) -> float:
        return sum(stage.seconds for stage in self.stages)


def guess_ms(block: Block, settings: Settings) -> float:
    rate = GPU_GFLOPS if settings.device != "cpu" else GFLOPS_PER_THREAD[settings.precision] * settings.threads
    return CALL_MS + gflops(block) / rate * 1000


def measure_seconds(call_ms: float, rounds: int, protocol: Protocol) -> float:
    """Warm-up, then ``rounds`` bursts of the size the protocol gives a block of that call time."""
    warmup = max(protocol.warmup_seconds, protocol.warmup_calls * call_ms / 1000)
    return warmup + rounds * burst_size(call_ms, protocol) * call_ms / 1000


def estimate_profile(todo: Sequence[tuple[Block, int]], backend: str, settings: Settings, protocol: Protocol,
                     models: Sequence[tuple[Architecture, int]] = ()) -> ProfileEstimate:
    """``todo``: each block still to measure and how many rounds it lacks (all of them in a fresh run); ``models``:
    the same for whole models timed with them (the calibration's), each guessed as the sum of its blocks."""
    prepare_s = PREPARE_S.get(backend, max(PREPARE_S.values()))
    if settings.precision == "int8":
        prepare_s += QUANTIZE_S.get(backend, max(QUANTIZE_S.values()))
    per_block = f"on {backend}" if backend in PREPARE_S else f"as on the slowest known backend ({backend} unknown)"
    calls = [(guess_ms(block, settings), rounds) for block, rounds in todo]
    calls += [(sum(guess_ms(block, settings) for block in arch.blocks()), rounds) for arch, rounds in models]
    measure = sum(measure_seconds(ms, rounds, protocol) for ms, rounds in calls)
    count = len(calls)
    rate = "a GPU's" if settings.device != "cpu" else f"{GFLOPS_PER_THREAD[settings.precision]:g} GFLOP/s per thread"
    return ProfileEstimate((
        Stage("prepare", count, count * prepare_s, f"guessed: {prepare_s:g} s per block {per_block}"),
        Stage("measure", count, measure,
              f"up to {protocol.rounds} rounds, each block at least {protocol.min_seconds:g} s and "
              f"{protocol.min_samples} calls after {protocol.warmup_seconds:g} s of warm-up; call times guessed "
              f"from the blocks' GFLOPs at {rate}"),
    ))
