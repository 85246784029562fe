"""`latlab compare`: the pattern between two profiles per kind of block, and the blocks that break it."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from latlab.backend import Settings
from latlab.compare import compare_profiles
from latlab.profile import save_profile
from latlab.space import SearchSpace

from conftest import synthetic_profile

SPACE = SearchSpace("c", layers=(1, 2), hidden=(64, 128, 256), heads=(2, 4), ffn=(128, 512), seq_len=(16,),
                    batch=(1,), labels=2, vocab=100)


def medians(scale=lambda block, ms: ms) -> dict:  # noqa: ANN001
    """Blocks growing with size, as real ones do; ``scale`` maps each to the other setup's latency."""
    base = {b: 0.01 + 0.001 * b.hidden * (1 + b.heads + b.ffn / 128) for b in SPACE.blocks(4)}
    return {b: round(scale(b, ms), 4) for b, ms in base.items()}


def test_a_uniformly_faster_setup_is_one_factor_and_nothing_breaks_it() -> None:
    a = synthetic_profile(medians(), SPACE)
    b = replace(synthetic_profile(medians(lambda _, ms: ms * 0.5), SPACE), settings=Settings(threads=2))
    comparison = compare_profiles(a, b)
    assert comparison.scaling["model"].ratio == pytest.approx(0.5, rel=1e-2)
    assert comparison.scaling["model"].exponent == pytest.approx(1.0, abs=0.02)
    assert comparison.outliers == [] and comparison.only_in_a == comparison.only_in_b == 0
    assert comparison.differences == ["threads: 2 in B vs 1 in A"]


def test_a_size_dependent_speedup_is_a_slope_and_a_block_off_it_is_named() -> None:
    """bf16-like: large blocks gain more than small ones (B = A^0.8); one block runs twice as slow as that."""
    odd = next(b for b in SPACE.blocks(4) if b.kind == "model" and b.hidden == 128 and b.heads == 4)
    b_medians = medians(lambda block, ms: ms ** 0.8 * (2 if block == odd else 1))
    comparison = compare_profiles(synthetic_profile(medians(), SPACE), synthetic_profile(b_medians, SPACE))
    assert comparison.scaling["model"].exponent == pytest.approx(0.8, abs=0.05)
    assert [r.key for r in comparison.outliers] == [odd.key]
    assert comparison.scaling["model"].off_pct(comparison.outliers[0]) == pytest.approx(100, abs=10)


def test_cli_prints_the_differences_first_and_writes_json_and_png(cli, tmp_path) -> None:
    a_path, b_path, png = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.png"
    save_profile(synthetic_profile(medians(), SPACE), a_path)
    save_profile(replace(synthetic_profile(medians(lambda _, ms: ms * 1.3), SPACE),
                         settings=Settings(precision="bf16")), b_path)
    shown = cli("compare", a_path, b_path, "--png", png)
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.splitlines()[2] == "  precision: bf16 in B vs f32 in A"
    assert png.read_bytes().startswith(b"\x89PNG")
    data = json.loads(cli("compare", a_path, b_path, "--json").stdout)
    assert data["scaling"]["all"]["ratio"] == pytest.approx(1.3, rel=1e-2) and len(data["blocks"]) == len(SPACE.blocks(4))


def test_cli_refuses_a_plot_over_a_profile_and_profiles_that_share_no_block(cli, user_error, tmp_path) -> None:
    a_path, b_path = tmp_path / "a.json", tmp_path / "b.json"
    save_profile(synthetic_profile(medians(), SPACE), a_path)
    other = SearchSpace("o", layers=(1,), hidden=(32,), heads=(2,), ffn=(64,), seq_len=(8,), batch=(1,))
    save_profile(synthetic_profile({b: 1.0 for b in other.blocks(4)}, other), b_path)
    before = a_path.read_bytes()
    user_error(cli("compare", a_path, b_path, "--png", a_path), "--png", "would overwrite A.json")
    assert a_path.read_bytes() == before
    user_error(cli("compare", a_path, b_path), "share no measured block", "same space")
