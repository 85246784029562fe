"""`latlab transfer`: a dozen blocks measured here, the rest estimated from a profile measured elsewhere."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from latlab.backend import Settings
from latlab.blocks import MODEL, OVERHEAD, gflops
from latlab.errors import LatlabError
from latlab.profile import Entry, load_profile
from latlab.space import SearchSpace
from latlab.transfer import intensity, plan_references, transferred

from conftest import synthetic_profile

SPACE = SearchSpace("x", layers=(1, 2, 4), hidden=(64, 128, 256), heads=(2, 4), ffn=(128, 512), seq_len=(16,),
                    batch=(1,), labels=2, vocab=100)


def source_medians() -> dict:
    """Blocks whose cost is their matrix work at 20 GFLOP/s plus a memory-bound part that grows with width."""
    return {b: round(0.01 + gflops(b) / 20 + 0.0004 * b.hidden * max(b.layers, 1), 4) for b in SPACE.blocks(4)}


def test_the_references_span_the_space_and_a_budget_too_small_is_refused() -> None:
    source = synthetic_profile(source_medians(), SPACE)
    plan = plan_references(source, 12)
    kinds: dict[str, list] = {}
    for block in plan:
        kinds.setdefault(block.kind, []).append(block)
    assert len(plan) == 12 and len(set(plan)) == 12
    assert len(kinds[OVERHEAD]) == 1 and len(kinds["embeddings"]) == len(kinds["head"]) == 2
    models = kinds[MODEL]
    ms = {b: source.entries[b.key].stats.median_ms for b in models}
    every = [e for e in source.entries.values() if e.block.kind == MODEL]
    assert min(ms.values()) == min(e.stats.median_ms for e in every)  # the cheapest and the dearest
    assert max(ms.values()) == max(e.stats.median_ms for e in every)
    assert {b.hidden for b in models} == set(SPACE.hidden) and {b.layers for b in models} == {1, 4}
    with pytest.raises(LatlabError, match="--budget 7 is too small .* at least 8"):
        plan_references(source, 7)


def test_a_target_that_gains_with_matrix_work_is_estimated_exactly() -> None:
    """Here, blocks speed up by more the more compute-bound they were: exactly the form the fit assumes, so
    every estimated block must come out as the target really is."""
    source = synthetic_profile(source_medians(), SPACE)

    def here_ms(block, ms):  # noqa: ANN001, ANN202
        return ms * math.exp(-0.2 - 0.3 * intensity(block, ms)) if block.kind == MODEL else ms * 0.8

    truth = {e.block: here_ms(e.block, e.stats.median_ms) for e in source.entries.values()}
    plan = plan_references(source, 12)
    target = replace(synthetic_profile({}, SPACE), settings=Settings(precision="bf16"))
    result = transferred(source, target, {b: Entry(b, [[truth[b]]]) for b in plan}, "src.json")
    for key, entry in result.entries.items():
        assert entry.stats.median_ms == pytest.approx(truth[entry.block], rel=2e-3), key
    assert result.transfer["fit"][MODEL]["slope"] == pytest.approx(-0.3, abs=0.01)
    assert sorted(result.transfer["measured"]) == sorted(b.key for b in plan)
    assert max(abs(r) for r in result.transfer["residuals_pct"].values()) < 0.5
    assert "transferred: 12 blocks measured" in result.label


def test_cli_transfers_to_a_slower_machine_and_validate_agrees(cli, fake_profile, fake_plugin, tmp_path) -> None:
    """The fake backend runs 1.5x slower here: the transferred profile predicts what validate measures."""
    fake_plugin.State.slowdown = 1.5
    out = tmp_path / "t.json"
    done = cli("transfer", "--from", fake_profile, "--backend", "fake", "--budget", "8", "--min-seconds", "0",
               "--out", out)
    assert done.exit_code == 0, done.output
    assert "8 blocks measured" in done.stdout
    written, source = load_profile(out), load_profile(fake_profile)
    assert written.transfer["source"] == str(fake_profile) and set(written.entries) == set(source.entries)
    for key, entry in written.entries.items():
        assert entry.stats.median_ms == pytest.approx(1.5 * source.entries[key].stats.median_ms, rel=0.02)
    predicted = cli("predict", "--profile", out, "--arch", json_arch(tmp_path))
    assert "transferred: 8 blocks measured, the rest estimated" in predicted.stdout
    report = tmp_path / "v.json"
    validated = cli("validate", "--profile", out, "--archs", "3", "--min-seconds", "0", "--json", report)
    assert validated.exit_code == 0, validated.output
    assert json.loads(report.read_text())["mape_pct"] < 2


def json_arch(tmp_path):  # noqa: ANN001, ANN201
    path = tmp_path / "arch.json"
    path.write_text(json.dumps({"hidden": 64, "layers": 2, "heads": 2, "ffn": 256, "seq_len": 32}))
    return path


def test_cli_refuses_a_budget_too_small_before_timing_and_an_out_over_the_source(cli, user_error, fake_profile,
                                                                                  fake_plugin, tmp_path) -> None:
    before = fake_profile.read_bytes()
    user_error(cli("transfer", "--from", fake_profile, "--backend", "fake", "--budget", "3", "--out",
                   tmp_path / "t.json"), "--budget 3 is too small")
    user_error(cli("transfer", "--from", fake_profile, "--backend", "fake", "--out", fake_profile),
               "would overwrite --from")
    other = tmp_path / "space.json"
    other.write_text(json.dumps({"name": "o", "layers": [1], "hidden": [32], "heads": [2], "ffn": [64],
                                 "seq_len": [8], "batch": [1]}))
    user_error(cli("transfer", "--from", fake_profile, "--backend", "fake", "--space", other, "--out",
                   tmp_path / "t.json"), "not the one in")
    assert fake_plugin.State.calls == 0 and fake_profile.read_bytes() == before
    assert not (tmp_path / "t.json").exists()
