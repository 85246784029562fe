"""Property tests of the three readers (profile, space, architecture): whatever a file holds, random JSON or a
valid file with random damage, reading it gives a value or one ``LatlabError`` line naming the file, never another
exception; and ``latlab predict`` on such files exits 0 or with one ``Error:`` line, changing no file."""

from __future__ import annotations

import functools
import json
import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import latlab.machine
from latlab.architecture import load_architecture
from latlab.errors import LatlabError
from latlab.fingerprint import Fingerprint, read_fingerprint
from latlab.predict import LatencyTable, predict_ms
from latlab.profile import load_profile
from latlab.space import load_space

from conftest import TINY_SPACE, assert_user_error

MANY = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
raw_files = st.one_of(json_values.map(json.dumps), st.text(max_size=200),
                      st.builds(lambda n, c: c * n, st.integers(0, 3000), st.sampled_from(["[", "{", '{"a":', "-"])))


def slots(data: Any) -> list[tuple[Any, Any]]:
    """Every (container, key or index) in ``data``, found without recursion."""
    found, stack = [], [data]
    while stack:
        node = stack.pop()
        pairs = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in pairs:
            found.append((node, key))
            stack.append(value)
    return found


@st.composite
def damaged(draw: st.DrawFn, text: str) -> str:
    """A valid document with one to three random edits: a value replaced, a field or item removed, a field added."""
    data = json.loads(text)
    for _ in range(draw(st.integers(1, 3))):
        places = slots(data)
        if not places:
            break
        container, key = places[draw(st.integers(0, len(places) - 1))]
        edit = draw(st.sampled_from(["replace", "replace", "remove", "add"]))
        if edit == "replace":
            container[key] = draw(json_values | st.sampled_from([-1, 0, -5.0, math.nan, math.inf, True, 10**9]))
        elif edit == "remove":
            del container[key]
        elif isinstance(container, dict):
            container[draw(st.text(max_size=8))] = draw(json_values)
    return json.dumps(data)


def read_or_refuse(load: Callable[[Path], Any], path: Path, text: str) -> Any:
    path.write_text(text)
    try:
        return load(path)
    except LatlabError as exc:
        message = str(exc)
        assert "\n" not in message and str(path) in message and len(message) < 600, message
        return None


@pytest.fixture
def valid_profile(fake_profile_bytes: bytes) -> str:
    return fake_profile_bytes.decode()


VALID_SPACE = TINY_SPACE.read_text()
VALID_ARCH = json.dumps({"hidden": 64, "layers": [{"heads": 2, "ffn": 256}, {"heads": 4, "ffn": 512}], "seq_len": 32})


def check_profile(profile: Any) -> None:
    """What a profile that was read must be: latencies that are numbers a price can be made of."""
    if profile is None:
        return
    for entry in profile.entries.values():
        assert math.isfinite(entry.stats.median_ms) and entry.stats.median_ms >= 0
    table = LatencyTable.from_profile(profile)
    try:
        assert math.isfinite(predict_ms(profile.space.sample(random.Random(0)), table))
    except LatlabError:
        pass  # a block the damaged profile lacks: one line, as predict says it


@MANY
@given(text=raw_files)
def test_any_file_as_a_profile(tmp_path: Path, text: str) -> None:
    check_profile(read_or_refuse(load_profile, tmp_path / "p.json", text))


@MANY
@given(data=st.data())
def test_a_damaged_profile(tmp_path: Path, valid_profile: str, data: st.DataObject) -> None:
    check_profile(read_or_refuse(load_profile, tmp_path / "p.json", data.draw(damaged(valid_profile))))


@MANY
@given(text=st.one_of(raw_files, damaged(VALID_SPACE)))
def test_any_or_damaged_file_as_a_space(tmp_path: Path, text: str) -> None:
    space = read_or_refuse(load_space, tmp_path / "s.json", text)
    if space is not None:
        assert space.block_count() == len(space.blocks(2)) > 0


@MANY
@given(text=st.one_of(raw_files, damaged(VALID_ARCH)))
def test_any_or_damaged_file_as_an_architecture(tmp_path: Path, text: str) -> None:
    arch = read_or_refuse(load_architecture, tmp_path / "a.json", text)
    if arch is not None:
        assert arch.layers == len(arch.blocks()) - 2 and all(v > 0 for v in (arch.hidden, *arch.heads, *arch.ffn))


@functools.cache
def this_machine() -> Fingerprint:
    """Read once: the machine does not change between examples, and reading it takes a fifth of a second."""
    return read_fingerprint()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_predict_on_damaged_files_exits_0_or_with_one_error_line(cli, tmp_path: Path, valid_profile: str,
                                                                 monkeypatch, data: st.DataObject) -> None:
    monkeypatch.setattr(latlab.machine, "read_fingerprint", this_machine)
    profile, arch = tmp_path / "p.json", tmp_path / "a.json"
    profile.write_text(data.draw(st.one_of(st.just(valid_profile), damaged(valid_profile)), label="profile"))
    arch.write_text(data.draw(st.one_of(st.just(VALID_ARCH), damaged(VALID_ARCH)), label="arch"))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    result = cli("predict", "--profile", profile, "--arch", arch, "--json")
    if result.exit_code == 0:
        assert math.isfinite(json.loads(result.stdout)["total_ms"])
    else:
        assert_user_error(result)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
