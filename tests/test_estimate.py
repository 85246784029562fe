"""The time a profile will take, said before it starts: the protocol's arithmetic on guessed call times, and what
``latlab profile`` prints, fresh and resumed."""

from __future__ import annotations

import re

import pytest

from latlab.backend import Settings
from latlab.blocks import layer_block, overhead_block
from latlab.estimate import PREPARE_S, QUANTIZE_S, estimate_profile, guess_ms, measure_seconds
from latlab.profile import load_profile
from latlab.calibration import calibration_architectures
from latlab.profiling import calibration_todo, remaining, run_profile
from latlab.protocol import Protocol
from latlab.space import load_space

from conftest import FAKE_PROTOCOL, FAKE_PROTOCOL_ARGS, TINY_SPACE

PROTOCOL = Protocol(rounds=10, min_samples=100, min_seconds=2.0, max_samples=1000, warmup_calls=5, warmup_seconds=0.2)


@pytest.mark.parametrize(("call_ms", "seconds"), [
    (100.0, 0.5 + 10.0),  # 100 calls bind (10 s), warm-up 5 calls (0.5 s)
    (10.0, 0.2 + 2.0),  # 2 s of calls bind (200 calls), warm-up 0.2 s
    (1.0, 0.2 + 1.0),  # 1000 calls at most: 1 s, short of the 2 s
])
def test_measuring_takes_what_the_protocol_asks_for_a_call_of_that_time(call_ms: float, seconds: float) -> None:
    assert measure_seconds(call_ms, PROTOCOL.rounds, PROTOCOL) == pytest.approx(seconds)
    if call_ms == 100.0:  # rounds already measured are not measured again
        assert measure_seconds(call_ms, 3, PROTOCOL) == pytest.approx(0.5 + 3 * 10.0 / PROTOCOL.rounds)


def test_call_times_are_guessed_from_the_work() -> None:
    small, large = layer_block(1, 32, 64, 2, 128), layer_block(1, 512, 384, 12, 1536)
    cpu = Settings()
    assert guess_ms(overhead_block(1, 32), cpu) < guess_ms(small, cpu) < guess_ms(large, cpu)
    assert guess_ms(large, Settings(threads=2)) < guess_ms(large, cpu)
    assert guess_ms(large, Settings(device="cuda")) < guess_ms(large, cpu) / 10


def test_every_block_is_counted_in_both_stages() -> None:
    blocks = load_space(TINY_SPACE).blocks(4)
    todo = [(b, PROTOCOL.rounds) for b in blocks]
    known = estimate_profile(todo, "onnxruntime", Settings(), PROTOCOL)
    assert [(s.name, s.blocks) for s in known.stages] == [("prepare", len(blocks)), ("measure", len(blocks))]
    assert known.stages[0].seconds == pytest.approx(len(blocks) * PREPARE_S["onnxruntime"])
    assert known.stages[1].seconds == pytest.approx(sum(measure_seconds(guess_ms(b, Settings()), PROTOCOL.rounds,
                                                                        PROTOCOL) for b in blocks))
    assert known.seconds == pytest.approx(sum(s.seconds for s in known.stages))
    int8 = estimate_profile(todo, "onnxruntime", Settings(precision="int8", quantization="static"), PROTOCOL)
    assert int8.stages[0].seconds == pytest.approx(known.stages[0].seconds + len(blocks) * QUANTIZE_S["onnxruntime"])
    assert int8.stages[1].seconds < known.stages[1].seconds, "int8 calls are guessed faster"
    unknown = estimate_profile(todo, "mine", Settings(), PROTOCOL)
    assert unknown.stages[0].seconds == len(blocks) * max(PREPARE_S.values())
    assert "mine unknown" in unknown.stages[0].basis and "guessed" in unknown.stages[0].basis


def printed(stderr: str) -> dict[str, tuple[int, float]]:
    """The estimate's lines: stage -> (items, seconds)."""
    lines = re.finditer(r"^  (prepare|measure) +(\d+) items +about +([\d.]+) s", stderr, re.MULTILINE)
    return {m[1]: (int(m[2]), float(m[3])) for m in lines}


def test_profile_prints_the_estimate_and_resume_estimates_what_is_left(cli, fake_plugin, tmp_path) -> None:
    args = ("profile", "--backend", "fake", "--space", TINY_SPACE, *FAKE_PROTOCOL_ARGS, "--out", tmp_path / "p.json")
    blocks = load_space(TINY_SPACE).blocks(FAKE_PROTOCOL.model_depth)
    models = calibration_architectures(load_space(TINY_SPACE), FAKE_PROTOCOL.calibration_models)
    items = len(blocks) + len(models)
    fresh = estimate_profile([(b, FAKE_PROTOCOL.rounds) for b in blocks], "fake", Settings(), FAKE_PROTOCOL,
                             [(a, FAKE_PROTOCOL.rounds) for a in models])
    result = cli(*args)
    assert result.exit_code == 0, result.output
    assert printed(result.stderr) == {s.name: (items, round(s.seconds)) for s in fresh.stages}
    assert re.search(r"total +about +[\d.]+ min", result.stderr) and "resuming" not in result.stderr

    calls = fake_plugin.State.calls
    done = load_profile(tmp_path / "p.json")
    per_round = (sum(len(e.rounds_ms[0]) for e in done.entries.values())
                 + sum(len(m.rounds_ms[0]) for m in done.calibration.models))
    (tmp_path / "p.json").unlink()
    fake_plugin.State.reset()
    fake_plugin.State.interrupt_at = calls - (FAKE_PROTOCOL.rounds - 2) * per_round + 1  # Ctrl-C in round 3
    assert cli(*args).exit_code == 1
    partial = load_profile(tmp_path / "p.json")
    left, models_left = remaining(partial), calibration_todo(partial)
    assert left == [(b, FAKE_PROTOCOL.rounds - 2) for b in blocks]
    assert models_left == [(a, FAKE_PROTOCOL.rounds - 2) for a in models]
    fake_plugin.State.reset()
    resumed = cli(*args, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert f"resuming: {items} left to measure" in resumed.stderr
    expected = estimate_profile(left, "fake", Settings(), FAKE_PROTOCOL, models_left)
    assert printed(resumed.stderr) == {s.name: (items, round(s.seconds)) for s in expected.stages}
    assert expected.stages[1].seconds < fresh.stages[1].seconds


def test_progress_is_reported_per_stage(fake_plugin, tmp_path) -> None:
    stages: list[tuple[str, int, int]] = []
    space = load_space(TINY_SPACE)
    run_profile(fake_plugin.FakeBackend(), Settings(), space, FAKE_PROTOCOL, tmp_path / "p.json",
                report=lambda *a: stages.append(a))
    blocks = len(space.blocks(FAKE_PROTOCOL.model_depth)) + FAKE_PROTOCOL.calibration_models  # timed together
    assert [s for s in stages if s[0] == "warm-up"] == [("warm-up", i, blocks) for i in range(1, blocks + 1)]
    assert [s[0] for s in stages].index("warm-up") > [s[0] for s in stages].index("prepare")
    assert stages[-1] == ("measure", FAKE_PROTOCOL.rounds, FAKE_PROTOCOL.rounds)
