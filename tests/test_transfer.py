"""`latlab transfer`: a dozen blocks measured here, the rest estimated from a profile measured elsewhere."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from latlab.backend import Settings
from latlab.blocks import EMBEDDINGS, HEAD, LAYER, MODEL, OVERHEAD, Block, gflops
from latlab.errors import LatlabError
from latlab.profile import Entry, load_profile
from latlab.protocol import Protocol
from latlab.space import SearchSpace
from latlab.transfer import FEATURES, Method, plan_references, source_latencies, transfer_protocol, transferred

from conftest import FAKE_PROTOCOL, TINY_SPACE, synthetic_profile

SPACE = SearchSpace("x", layers=(1, 2, 4), hidden=(64, 128, 256), heads=(2, 4, 8), ffn=(128, 512), seq_len=(16,),
                    batch=(1,), labels=2, vocab=100)


def cost_ms(block: Block) -> float:
    """Blocks whose cost is their matrix work at 0.2 GFLOP/s plus a memory-bound part that grows with width."""
    return round(1 + gflops(block) / 0.2 + 0.04 * block.hidden * max(block.layers, 1), 4)


def source_medians(model_depth: int = 4) -> dict:
    return {b: cost_ms(b) for b in SPACE.blocks(model_depth)}


def log_ratio(block: Block, ms: float) -> float:
    """How much faster a block runs in the synthetic target: the deeper and the narrower its heads, the less it gains
    (as bf16 gains least on 16-wide heads), and more on a large ffn; a form the fit can express exactly."""
    return -0.5 - 0.15 * FEATURES["layers*head_dim"](block, ms) - 0.2 * FEATURES["ffn"](block, ms)


# A fit the references pin down: linear in the features they are spread over, and depth times head dimension.
FORM = ("hidden", "ffn", "head_dim", "layers", "layers*head_dim")


def synthetic_target(truth: dict[Block, float], plan: list[Block]):  # noqa: ANN201
    """An empty bf16 profile of ``SPACE`` at model depth 4, and the references measured at their ``truth``."""
    target = replace(synthetic_profile({}, SPACE), settings=Settings(precision="bf16"),
                     protocol=Protocol(model_depth=4))
    return target, {b: Entry(b, [[truth[b]]]) for b in plan}


def test_the_references_span_the_models_and_a_budget_too_small_is_refused() -> None:
    source = synthetic_profile(source_medians(), SPACE)
    layout = source_latencies(source, 4)
    plan = plan_references(layout, 12)
    kinds: dict[str, list] = {}
    for block in plan:
        kinds.setdefault(block.kind, []).append(block)
    assert len(plan) == 12 and len(set(plan)) == 12
    assert len(kinds[OVERHEAD]) == len(kinds[EMBEDDINGS]) == len(kinds[HEAD]) == 1  # predictions never read them
    models = kinds[MODEL]
    every = [b for b in layout if b.kind == MODEL]
    assert min(layout[b] for b in models) == min(layout[b] for b in every)  # the cheapest and the dearest
    assert max(layout[b] for b in models) == max(layout[b] for b in every)
    # a fit linear in (log) width, ffn, head dimension and depth is pinned down by the ends of each
    for name, ends in (("hidden", {64, 256}), ("ffn", {128, 512}), ("layers", {1, 4})):
        assert {getattr(b, name) for b in models} >= ends, name
    assert {b.hidden // b.heads for b in models} >= {8, 128}
    with pytest.raises(LatlabError, match="--budget 5 is too small .* at least 6"):
        plan_references(layout, 5)


def test_a_target_of_the_fitted_form_is_estimated_exactly_and_the_ridge_shrinks_to_one_factor() -> None:
    source = synthetic_profile(source_medians(), SPACE)
    layout = source_latencies(source, 4)
    truth = {b: ms * math.exp(log_ratio(b, ms)) if b.kind == MODEL else ms * 0.8 for b, ms in layout.items()}
    plan = plan_references(layout, 12)
    target, measured = synthetic_target(truth, plan)
    exact = transferred(source, target, measured, "src.json", Method(FORM, ridge=0.0))
    for key, entry in exact.entries.items():
        assert entry.stats.median_ms == pytest.approx(truth[entry.block], rel=2e-3), key
    terms = exact.transfer["fit"][MODEL]["terms"]
    assert terms["layers*head_dim"]["coefficient"] == pytest.approx(-0.15, abs=0.01)
    assert terms["ffn"]["coefficient"] == pytest.approx(-0.2, abs=0.01)
    assert max(abs(r) for r in exact.transfer["residuals_pct"].values()) < 0.5
    assert sorted(exact.transfer["measured"]) == sorted(b.key for b in plan)
    assert "transferred: 12 blocks measured" in exact.label
    shrunk = transferred(source, target, measured, "src.json", Method(ridge=1e6))
    ratios = [shrunk.entries[b.key].stats.median_ms / ms for b, ms in layout.items()
              if b.kind == MODEL and b not in measured]
    factor = math.exp(shrunk.transfer["fit"][MODEL]["log_ratio"])
    assert all(r == pytest.approx(factor, rel=2e-3) for r in ratios)  # one factor: every weight penalised away


def test_a_source_of_layers_alone_prices_each_model_as_its_sum_and_the_fit_learns_the_difference() -> None:
    """A schema-2 source (layers timed alone, model_depth 0): here whole models run 1.3x what the source's sum of
    blocks gives, and 20% more per extra layer on top. The transferred profile prices layers inside models."""
    source = synthetic_profile(source_medians(model_depth=0), SPACE)
    assert source.protocol.model_depth == 0 and transfer_protocol(source.protocol).model_depth == 4
    layout = source_latencies(source, 4)
    assert not any(b.kind == LAYER for b in layout) and len(layout) == len(SPACE.blocks(4))
    medians = source_medians(model_depth=0)
    overhead = medians[Block(OVERHEAD, 1, 16)]
    for block, ms in layout.items():
        if block.kind == MODEL:  # overhead once, then embeddings, L layers and head each net of it
            parts = [b for b in medians if b.kind in (EMBEDDINGS, HEAD) and b.hidden == block.hidden]
            layer = block._replace(kind=LAYER, vocab=0, labels=0, layers=0)
            expected = overhead + sum(medians[b] - overhead for b in parts) + block.layers * (medians[layer] - overhead)
            assert ms == pytest.approx(expected, rel=1e-9), block.key
    truth = {b: ms * (1.3 * b.layers ** 0.2 if b.kind == MODEL else 1.1) for b, ms in layout.items()}
    plan = plan_references(layout, 12)
    target, measured = synthetic_target(truth, plan)
    result = transferred(source, target, measured, "src.json", Method(FORM, ridge=0.0))
    assert set(result.entries) == {b.key for b in SPACE.blocks(4)} and result.protocol.model_depth == 4
    assert result.transfer["source_model_depth"] == 0
    for key, entry in result.entries.items():
        assert entry.stats.median_ms == pytest.approx(truth[entry.block], rel=2e-3), key


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


def test_cli_transfers_a_profile_of_layers_alone_into_one_of_models(cli, fake_plugin, tmp_path) -> None:
    """A schema-2 source (layers timed alone) on the fake backend, 1.5x slower here: the written profile has this
    latlab's model depth, every whole model at 1.5x the sum of its blocks in the source, and validates."""
    from latlab.profiling import run_profile
    from latlab.space import load_space

    source_path = tmp_path / "alone.json"
    space = load_space(TINY_SPACE)
    run_profile(fake_plugin.FakeBackend(), Settings(), space, replace(FAKE_PROTOCOL, model_depth=0), source_path)
    fake_plugin.State.slowdown = 1.5
    out = tmp_path / "t.json"
    done = cli("transfer", "--from", source_path, "--backend", "fake", "--budget", "8", "--min-seconds", "0",
               "--out", out)
    assert done.exit_code == 0, done.output
    written, source = load_profile(out), load_profile(source_path)
    assert written.protocol.model_depth == Protocol.model_depth and set(written.entries) == {
        b.key for b in space.blocks(Protocol.model_depth)}
    summed = source_latencies(source, Protocol.model_depth)
    for entry in written.entries.values():
        assert entry.stats.median_ms == pytest.approx(1.5 * summed[entry.block], rel=0.02), entry.block.key
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
