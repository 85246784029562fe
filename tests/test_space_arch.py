"""Search spaces, architectures and blocks: what a profile must measure is exactly what a search can pick."""

from __future__ import annotations

import itertools
from collections import Counter
import json
import random
from pathlib import Path

import pytest
import torch

from latlab.architecture import Architecture, load_architecture
from latlab.blocks import (EMBEDDINGS, HEAD, KINDS, LAYER, MODEL, OVERHEAD, Block, embeddings_block, head_block,
                           layer_block, overhead_block, parameters)
from latlab.errors import LatlabError
from latlab.modules import bert_config, build_block, build_model
from latlab.predict import priced_blocks
from latlab.space import SPACES_DIR, SearchSpace, load_space

from conftest import TINY_SPACE

SMALL = Architecture(hidden=32, heads=(2, 4, 1), ffn=(64, 48, 64), seq_len=8, batch=2, labels=3, vocab=50)


# --- architectures -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("heads", "ffn", "needle"), [
    ((2, 3), (64, 64), "layer 1: hidden 64 is not divisible by heads 3"),
    ((0,), (64,), "layer 0: hidden 64 is not divisible by heads 0"),
    ((2, 2), (64,), "heads (2) and ffn (1)"),
    ((), (), "at least one layer"),
])
def test_invalid_architecture_is_a_user_error(heads, ffn, needle) -> None:
    with pytest.raises(LatlabError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        Architecture(hidden=64, heads=heads, ffn=ffn)


def test_architecture_json_forms_and_round_trip() -> None:
    uniform = Architecture.from_json({"hidden": 64, "layers": 3, "heads": 4, "ffn": 256, "seq_len": 32})
    listed = Architecture.from_json({"hidden": 64, "layers": [{"heads": 4, "ffn": 256}] * 3, "seq_len": 32})
    assert uniform == listed == Architecture(64, (4, 4, 4), (256, 256, 256), seq_len=32)
    assert Architecture.from_json(json.loads(json.dumps(SMALL.to_json()))) == SMALL


@pytest.mark.parametrize(("data", "needle"), [
    ([64], "expected a JSON object"),
    ({"layers": 2, "heads": 2, "ffn": 64}, "missing field 'hidden'"),
    ({"hidden": 64, "layers": 2, "ffn": 64}, "missing field 'heads'"),
    ({"hidden": 64, "layers": [{"heads": 2}]}, "missing field 'ffn'"),
    ({"hidden": "wide", "layers": 1, "heads": 2, "ffn": 64}, "must be a whole number"),
    ({"hidden": 64, "layers": 1, "heads": 3, "ffn": 64}, "layer 0: hidden 64 is not divisible by heads 3"),
])
def test_architecture_file_errors_name_the_file_and_field(tmp_path: Path, data, needle) -> None:
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(data))
    with pytest.raises(LatlabError, match=needle) as info:
        load_architecture(path)
    assert str(info.value).startswith(f"{path}: ")


def test_fractional_architecture_values_are_refused() -> None:
    with pytest.raises(LatlabError, match="hidden"):
        Architecture.from_json({"hidden": 64.5, "layers": 1, "heads": 2, "ffn": 64})


def test_missing_and_malformed_architecture_files(tmp_path: Path) -> None:
    with pytest.raises(LatlabError, match="file not found"):
        load_architecture(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text('{"hidden": 64,')
    with pytest.raises(LatlabError, match="not valid JSON"):
        load_architecture(tmp_path / "bad.json")


def test_blocks_follow_the_model_layer_by_layer() -> None:
    blocks = SMALL.blocks()
    assert [b.kind for b in blocks] == [EMBEDDINGS, LAYER, LAYER, LAYER, HEAD]
    assert [(b.heads, b.ffn) for b in blocks[1:-1]] == list(zip(SMALL.heads, SMALL.ffn))
    assert all((b.batch, b.seq_len, b.hidden) == (2, 8, 32) for b in blocks)
    assert (blocks[0].vocab, blocks[-1].labels) == (50, 3)


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_whole_model_is_made_of_exactly_the_priced_blocks() -> None:
    """Validation tests additivity alone only if the whole model holds the blocks' weights and nothing else."""
    model, (ids,) = build_model(SMALL)
    assert parameter_count(model) == sum(parameter_count(build_block(b)[0]) for b in SMALL.blocks())
    assert ids.shape == (SMALL.batch, SMALL.seq_len) and int(ids.max()) < SMALL.vocab
    with torch.no_grad():
        assert model(ids).shape == (SMALL.batch, SMALL.labels)


def test_exported_whole_model_runs_the_same_operators_as_the_hugging_face_model() -> None:
    """Profiles price exported HF encoders: a missing attention-mask op made them 4-8% optimistic on ONNX Runtime."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript", reason="torch's ONNX exporter needs onnxscript")
    from transformers import BertForSequenceClassification

    from backends.onnx_export import export_onnx
    from kdnas.measure import LogitsOnly

    uniform = Architecture(hidden=32, heads=(2, 2), ffn=(64, 64), seq_len=8, batch=1, labels=3, vocab=50)
    model, example = build_model(uniform)
    config = bert_config(uniform.hidden, 2, 64, uniform.vocab, uniform.seq_len, uniform.labels)
    config.num_hidden_layers = uniform.layers
    hugging_face = LogitsOnly(BertForSequenceClassification(config).eval()).eval()

    def operators(module: torch.nn.Module) -> Counter:
        return Counter(node.op_type for node in onnx.load_from_string(export_onnx(module, example)).graph.node)

    ours = operators(model)
    assert ours["Where"] > 0, "the layer's attention mask is missing from the export"
    assert ours == operators(hugging_face)


def test_each_block_runs_on_its_example_input() -> None:
    expected = {OVERHEAD: (2, 8), EMBEDDINGS: (2, 8, 32), LAYER: (2, 8, 32), HEAD: (2, 3), MODEL: (2, 3)}
    for block in [Block(OVERHEAD, 2, 8), *SMALL.blocks(), *priced_blocks(SMALL, 3)]:
        module, inputs = build_block(block)
        assert not module.training
        with torch.no_grad():
            assert tuple(module(*inputs).shape) == expected[block.kind], block.key


def test_block_keys_are_readable_and_unique() -> None:
    assert Block(LAYER, 1, 128, hidden=256, heads=4, ffn=1024).key == "layer/b1/s128/h256/a4/f1024"
    assert Block(OVERHEAD, 2, 64).key == "overhead/b2/s64"
    assert Block(MODEL, 1, 128, 256, 4, 1024, 30522, 5, layers=4).key == "model/b1/s128/h256/a4/f1024/v30522/l5/L4"
    space = load_space(SPACES_DIR / "minilm-students.json")
    blocks = space.blocks() + space.blocks(4)
    assert len({b.key for b in blocks}) == len(set(blocks))
    assert {b.kind for b in blocks} == set(KINDS)


def test_a_model_depth_times_each_layer_inside_models_of_one_and_that_many_layers() -> None:
    """Layers timed alone run faster than inside a model; with a depth they are timed only inside models."""
    space = load_space(TINY_SPACE)
    alone, in_models = space.blocks(), space.blocks(3)
    layers = [b for b in alone if b.kind == LAYER]
    models = [b for b in in_models if b.kind == MODEL]
    assert not [b for b in in_models if b.kind == LAYER]
    assert sorted(models) == sorted(b._replace(kind=MODEL, vocab=space.vocab, labels=space.labels, layers=d)
                                    for b in layers for d in (1, 3))
    assert [b for b in alone if b.kind != LAYER] == [b for b in in_models if b.kind != MODEL]
    module, _ = build_block(models[-1])
    assert len(module.layers) == models[-1].layers
    first, second = (layer.layer.attention.self.query.weight for layer in module.layers[:2])
    assert not torch.equal(first, second), "each layer has its own weights, as in a real model"


# --- search spaces -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", sorted(SPACES_DIR.glob("*.json")), ids=lambda p: p.stem)
def test_shipped_spaces_measure_every_valid_combination(path: Path) -> None:
    space = load_space(path)
    blocks = space.blocks()
    for batch, seq_len in itertools.product(space.batch, space.seq_len):
        group = [b for b in blocks if (b.batch, b.seq_len) == (batch, seq_len)]
        assert group[0] == Block(OVERHEAD, batch, seq_len), "overhead first"
        layers = {(b.hidden, b.heads, b.ffn) for b in group if b.kind == LAYER}
        valid = {(h, a, f) for h, a, f in itertools.product(space.hidden, space.heads, space.ffn) if h % a == 0}
        assert layers == valid
        assert {b.hidden for b in group if b.kind == EMBEDDINGS} == set(space.hidden)
        assert {b.hidden for b in group if b.kind == HEAD} == set(space.hidden)


def test_head_counts_that_do_not_divide_a_width_are_left_out() -> None:
    space = SearchSpace("odd", layers=(1,), hidden=(64, 96), heads=(2, 3), ffn=(128,), seq_len=(16,), batch=(1,))
    assert space.heads_for(64) == (2,) and space.heads_for(96) == (2, 3)
    assert all(b.hidden % b.heads == 0 for b in space.blocks() if b.kind == LAYER)


@pytest.mark.parametrize("path", [TINY_SPACE, SPACES_DIR / "minilm-students.json"], ids=lambda p: p.stem)
@pytest.mark.parametrize("depth", [0, 4])
def test_every_sampled_architecture_can_be_priced_by_a_profile_of_its_space(path: Path, depth: int) -> None:
    space = load_space(path)
    measured = set(space.blocks(depth))
    rng = random.Random(0)
    samples = [space.sample(rng) for _ in range(300)]
    for arch in samples:
        space.check_contains(arch)
        assert set(priced_blocks(arch, depth)) <= measured
        assert Block(OVERHEAD, arch.batch, arch.seq_len) in measured
    assert any(len(set(zip(a.heads, a.ffn))) > 1 for a in samples), "mixed stacks are sampled too"
    assert {a.layers for a in samples} == set(space.layers)


def test_sampling_is_reproducible_from_the_seed() -> None:
    space = load_space(TINY_SPACE)
    first = [space.sample(random.Random(5)) for _ in range(3)]
    assert first == [space.sample(random.Random(5)) for _ in range(3)]


@pytest.mark.parametrize(("change", "field"), [
    ({"hidden": 96}, "hidden = 96"),
    ({"heads": (2, 8)}, "layer 1 heads = 8"),
    ({"ffn": (256, 1024)}, "layer 1 ffn = 1024"),
    ({"heads": (2,) * 3, "ffn": (256,) * 3}, "layers = 3"),
    ({"seq_len": 64}, "seq_len = 64"),
    ({"batch": 4}, "batch = 4"),
])
def test_values_outside_the_space_are_named(change, field) -> None:
    space = load_space(TINY_SPACE)
    arch = Architecture(**{**dict(hidden=64, heads=(2, 2), ffn=(256, 256), seq_len=32, batch=1), **change})
    with pytest.raises(LatlabError, match=f"architecture {field} is outside space 'tiny'"):
        space.check_contains(arch)


@pytest.mark.parametrize(("change", "needle"), [
    ({"hidden": []}, "field 'hidden' must be a non-empty list"),
    ({"ffn": [256, -1]}, "field 'ffn' must be a non-empty list of positive integers"),
    ({"seq_len": 32}, "field 'seq_len'"),
    ({"heads": [3], "hidden": [64]}, "no hidden size is divisible by any head count"),
    ({"labels": 0}, "field 'labels' must be a whole number >= 1"),
    ({"vocab": True}, "field 'vocab' must be a whole number >= 1, got True"),
    ({"hidden": [True]}, "field 'hidden' must be a non-empty list of positive integers"),
    ({"layers": [2, 1000000000]}, "field 'layers' is 1000000000; latlab prices at most 1000 layers"),
    ({"hidden": list(range(64, 6464, 64)), "ffn": list(range(1, 101))}, "blocks to measure, more than latlab profiles"),
])
def test_bad_space_files_name_the_field(tmp_path: Path, change, needle) -> None:
    path = tmp_path / "space.json"
    path.write_text(json.dumps({**json.loads(TINY_SPACE.read_text()), **change}))
    with pytest.raises(LatlabError, match=needle) as info:
        load_space(path)
    assert str(info.value).startswith(f"{path}: ")


def test_missing_and_malformed_space_files(tmp_path: Path) -> None:
    with pytest.raises(LatlabError, match="space file not found"):
        load_space(tmp_path / "absent.json")
    (tmp_path / "cut.json").write_text(TINY_SPACE.read_text()[:40])
    with pytest.raises(LatlabError, match="not valid JSON"):
        load_space(tmp_path / "cut.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(LatlabError, match="expected a JSON object"):
        load_space(tmp_path / "list.json")


def test_space_json_round_trip_and_default() -> None:
    space = load_space(TINY_SPACE)
    assert SearchSpace.from_json(json.loads(json.dumps(space.to_json())), "x") == space
    assert load_space(None) == load_space(SPACES_DIR / "minilm-students.json")


def test_architecture_file_takes_what_it_leaves_out_from_the_space(tmp_path: Path) -> None:
    space = SearchSpace("s", layers=(2,), hidden=(64,), heads=(2,), ffn=(128,), seq_len=(32,), batch=(1, 4), labels=5,
                        vocab=100)
    path = tmp_path / "arch.json"
    path.write_text(json.dumps({"hidden": 64, "layers": 2, "heads": 2, "ffn": 128, "batch": 4}))
    arch = load_architecture(path, defaults=space.arch_defaults())
    assert (arch.labels, arch.vocab, arch.seq_len, arch.batch) == (5, 100, 32, 4)  # the file's batch wins
    assert load_architecture(path).labels == 2  # without defaults, the dataclass default


def test_a_shipped_space_is_found_by_name_and_a_wrong_name_lists_them(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # package data: found from any working directory
    assert load_space("tiny") == load_space(TINY_SPACE)
    with pytest.raises(LatlabError, match="shipped spaces: bert-base-students, minilm-students, seq-grid, tiny"):
        load_space("tinyy")


@pytest.mark.parametrize("block", [
    embeddings_block(1, 128, 256, 30522), embeddings_block(2, 600, 64, 100), layer_block(1, 128, 256, 4, 1024),
    layer_block(1, 32, 384, 12, 1536), head_block(1, 128, 192, 5), overhead_block(1, 16),
    Block(MODEL, 1, 64, 128, 2, 512, 1000, 3, 4),
], ids=lambda b: b.key)
def test_parameter_counts_match_the_modules_that_are_timed(block: Block) -> None:
    assert parameters(block) == parameter_count(build_block(block)[0])


def test_an_architecture_counts_its_weights_as_the_whole_model_holds_them() -> None:
    arch = Architecture(hidden=128, heads=(2, 4), ffn=(256, 512), seq_len=32, labels=3, vocab=500)
    assert arch.parameters == parameter_count(build_model(arch)[0])
    assert arch.weight_mb("bf16") == pytest.approx(arch.weight_mb("f32") / 2) == pytest.approx(arch.parameters * 2e-6)


def test_int8_weights_are_the_linear_matrices_at_one_byte_and_the_rest_at_four() -> None:
    """What a deployment stores after int8: the quantized modules' int8 matrices; biases, norms, embeddings float."""
    import torch

    arch = Architecture(hidden=64, heads=(2, 4, 2), ffn=(128, 256, 128), seq_len=16, labels=2, vocab=300)
    linear = sum(m.weight.numel() for m in build_model(arch)[0].modules() if isinstance(m, torch.nn.Linear))
    assert arch.weight_mb("int8") == pytest.approx((linear + 4 * (arch.parameters - linear)) / 1e6)
    assert arch.weight_mb("int8") < arch.weight_mb("bf16")
