"""Prediction arithmetic: overhead once, plus each block's median minus the overhead it paid alone."""

import pytest

from latlab.architecture import Architecture
from latlab.backend import Settings
from latlab.blocks import embeddings_block, head_block, layer_block, overhead_block
from latlab.errors import LatlabError
from latlab.fingerprint import Fingerprint
from latlab.predict import LatencyTable, predict, predict_ms
from latlab.profile import Entry, Profile
from latlab.protocol import Protocol
from latlab.space import SearchSpace

SPACE = SearchSpace("t", layers=(1, 2), hidden=(64,), heads=(2, 4), ffn=(128,), seq_len=(16,), batch=(1,), labels=2,
                    vocab=100)


def make_profile(medians: dict) -> Profile:
    profile = Profile(backend="fake", runtime_version="1", settings=Settings(), applied={}, software={},
                      fingerprint=Fingerprint("cpu", (), 1, 1, 1, 1.0, "os", "x86_64"), protocol=Protocol(),
                      space=SPACE, complete=True)
    for block, ms in medians.items():
        profile.entries[block.key] = Entry(block, [[ms, ms, ms]])
    return profile


def test_prediction_is_overhead_plus_net_blocks() -> None:
    profile = make_profile({
        overhead_block(1, 16): 0.1,
        embeddings_block(1, 16, 64, 100): 0.3,
        layer_block(1, 16, 64, 2, 128): 1.1,
        layer_block(1, 16, 64, 4, 128): 1.6,
        head_block(1, 16, 64, 2): 0.2,
    })
    table = LatencyTable.from_profile(profile)
    arch = Architecture(hidden=64, heads=(2, 4), ffn=(128, 128), seq_len=16, batch=1, labels=2, vocab=100)
    expected = 0.1 + (0.3 - 0.1) + (1.1 - 0.1) + (1.6 - 0.1) + (0.2 - 0.1)
    assert predict_ms(arch, table) == pytest.approx(expected)
    result = predict(arch, table)
    assert result.total_ms == pytest.approx(expected)
    assert [key for key, _ in result.parts][1:3] == ["layer/b1/s16/h64/a2/f128", "layer/b1/s16/h64/a4/f128"]


def test_block_outside_grid_is_a_clear_error() -> None:
    table = LatencyTable.from_profile(make_profile({overhead_block(1, 16): 0.1}))
    arch = Architecture(hidden=64, heads=(2,), ffn=(128,), seq_len=16, batch=1, labels=2, vocab=100)
    with pytest.raises(LatlabError, match="outside the measured grid"):
        predict_ms(arch, table)
