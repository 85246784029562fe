"""The run folder's one reader: any bytes in run.json or search.jsonl give a valid run or one line naming the file
(and line), the field and what to do; never another exception."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kdnas.candidate import Candidate
from kdnas.run_folder import (LOG_FILE, RUN_FILE, Record, append, create, parse_records, parse_settings, prepare,
                              read_run)
from latlab.errors import LatlabError

SETTINGS = {"profile_path": "p.json", "episodes": 2, "candidates": 3,
            "controller": {"kind": "lstm", "pool_size": 100, "epsilon": 0.3, "seed": 0},
            "reward": {"target_ms": 0.5, "weight_under": -0.07, "weight_over": -1.0, "budget_ms": None}}
RECORD = {"episode": 1, "index": 0, "candidate": {"layers": 2, "hidden": 32, "heads": 2, "ffn": 64},
          "architecture": {"hidden": 32, "heads": [2, 2], "ffn": [64, 64]}, "parameters": 1234, "predicted_ms": 0.5,
          "proxy_loss": 0.4, "quality": 0.6, "accuracy": None, "reward": 0.61, "seconds": 1.5}


def log_text(*records: dict) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def one_line_error(call, *needles: str) -> str:  # noqa: ANN001
    with pytest.raises(LatlabError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message and "\r" not in message, message
    for needle in needles:
        assert needle in message, (needle, message)
    return message


def test_a_valid_folder_reads_back_what_was_written(tmp_path: Path) -> None:
    create(tmp_path, SETTINGS)
    first = Record(1, 0, Candidate(2, 32, 2, 64), RECORD["architecture"], 1234, 0.5, float("nan"), 0.0, None, 0.6, 1.0)
    records = append(tmp_path, [], first)
    records = append(tmp_path, records, Record(2, 1, Candidate(1, 16, 2, 32), {}, 99, 0.25, 0.3, 0.7, 0.5, 0.8, 2.0))
    run = read_run(tmp_path)
    assert run.controller == "lstm" and run.settings == SETTINGS
    assert [r.candidate for r in run.records] == [r.candidate for r in records] and run.records[1] == records[1]


@pytest.mark.parametrize(("text", "needles"), [
    ("[1, 2]", ("not a JSON object but list",)),
    ('"lstm"', ("not a JSON object but str",)),
    ("[" * 100_000, ("nested too deeply",)),
    ('{"controller": {"kind": "lstm"}', ("not valid JSON",)),
    ("{}", ("field 'controller' is missing",)),
    ('{"controller": {"kind": 3}}', ("field 'controller.kind' must be a string, not int",)),
    ('{"controller": "lstm"}', ("field 'controller' must be an object, not str",)),
])
def test_a_bad_run_json_is_one_line_naming_file_and_field(text: str, needles: tuple[str, ...]) -> None:
    one_line_error(lambda: parse_settings(text, "runs/r/run.json"), "runs/r/run.json: ", *needles,
                   "restore it or start a new run")


@pytest.mark.parametrize(("line", "needles"), [
    ('{"episode": 1, "index"', ("not valid JSON",)),
    ("[" * 100_000, ("nested too deeply",)),
    ("[]", ("not a JSON object but list",)),
    (json.dumps({k: v for k, v in RECORD.items() if k != "reward"}), ("field 'reward' is missing",)),
    (json.dumps({**RECORD, "reward": "0.61"}), ("field 'reward' must be a number, not str",)),
    (json.dumps({**RECORD, "reward": float("nan")}), ("field 'reward' must be a finite number",)),
    (json.dumps({**RECORD, "predicted_ms": 10**400}), ("field 'predicted_ms' is out of range",)),
    (json.dumps({**RECORD, "episode": True}), ("field 'episode' must be an integer, not bool",)),
    (json.dumps({**RECORD, "episode": 0}), ("field 'episode' must be at least 1",)),
    (json.dumps({**RECORD, "candidate": {**RECORD["candidate"], "heads": 2.5}}),
     ("field 'candidate.heads' must be an integer, not float",)),
    (json.dumps({**RECORD, "candidate": None}), ("field 'candidate' must be an object, not NoneType",)),
])
def test_a_bad_log_line_is_one_line_naming_file_line_and_field(line: str, needles: tuple[str, ...]) -> None:
    text = log_text(RECORD) + "\n" + line + "\n" + log_text(RECORD)  # a blank line still counts as a line
    one_line_error(lambda: parse_records(text, "runs/r/search.jsonl"), "runs/r/search.jsonl:3: ", *needles,
                   "delete that line")


def test_files_that_cannot_be_read_are_one_line(tmp_path: Path) -> None:
    one_line_error(lambda: read_run(tmp_path), f"{tmp_path / RUN_FILE}: not found; pass a kdnas run folder")
    (tmp_path / RUN_FILE).write_bytes(b'{"controller": {"kind": "\xff"}}')
    one_line_error(lambda: read_run(tmp_path), f"{tmp_path / RUN_FILE}: cannot read it")
    (tmp_path / RUN_FILE).write_text(json.dumps(SETTINGS))
    (tmp_path / LOG_FILE).mkdir()
    one_line_error(lambda: read_run(tmp_path), f"{tmp_path / LOG_FILE}: cannot read it")


def test_resume_refuses_other_settings_and_candidates_outside_the_run(tmp_path: Path) -> None:
    create(tmp_path, SETTINGS)
    record = Record.from_json(RECORD)
    append(tmp_path, [], record)
    key = {k: v for k, v in SETTINGS.items() if k != "episodes"}  # episodes may grow on resume
    assert prepare(tmp_path, key, True, {record.candidate}) == [record]
    one_line_error(lambda: prepare(tmp_path, {**key, "candidates": 4}, True, {record.candidate}),
                   "setting 'candidates' differs")
    one_line_error(lambda: prepare(tmp_path, key, True, {Candidate(1, 16, 2, 32)}),
                   f"{tmp_path / LOG_FILE}: candidate L2-h32-a2-f64 (episode 1) is not one this run may distill")
    one_line_error(lambda: prepare(tmp_path, key, False, {record.candidate}), "already exists and is not empty")
    one_line_error(lambda: prepare(tmp_path / "new", key, True, set()), "nothing to resume")
    assert prepare(tmp_path / "new", key, False, set()) == []


# --- properties --------------------------------------------------------------------------------------------------

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                    max_leaves=8)


@st.composite
def mutated(draw: st.DrawFn, valid: dict) -> str:
    """A valid document with a field replaced, removed or nested-replaced, then a few characters edited."""
    data = json.loads(json.dumps(valid))
    target = data
    if draw(st.booleans()):
        nested = [k for k, v in data.items() if isinstance(v, dict)]
        target = data[draw(st.sampled_from(nested))] if nested else data
    key = draw(st.sampled_from(sorted(target)) | st.text(max_size=6))
    if draw(st.booleans()):
        target.pop(key, None)
    else:
        target[key] = draw(JSON)
    text = json.dumps(data)
    for position, replacement in draw(st.lists(st.tuples(st.integers(0, len(text)), st.text(max_size=2)),
                                               max_size=draw(st.integers(0, 3)))):
        text = text[:position] + replacement + text[position + 1:]
    return text


def settings_or_one_line(text: str) -> None:
    try:
        data = parse_settings(text, "run.json")
    except LatlabError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("run.json: ")
        return
    assert isinstance(data, dict) and isinstance(data["controller"]["kind"], str)


def records_or_one_line(text: str) -> None:
    try:
        records = parse_records(text, "search.jsonl")
    except LatlabError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("search.jsonl:")
        return
    for record in records:  # what the search and compare rely on
        assert record.episode >= 1 and record.index >= 0 and min(vars(record.candidate).values()) >= 1
        assert isinstance(record.reward, float) and record.reward == record.reward and abs(record.reward) < float("inf")
        json.dumps(record.to_json())


@settings(max_examples=1000, deadline=None)
@given(st.one_of(JSON.map(json.dumps), st.text(max_size=40), mutated(SETTINGS)))
def test_any_run_json_is_a_run_or_one_line(text: str) -> None:
    settings_or_one_line(text)


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.one_of(mutated(RECORD), JSON.map(json.dumps), st.just(json.dumps(RECORD)), st.text(max_size=20)),
                max_size=4))
def test_any_search_jsonl_is_records_or_one_line(lines: list[str]) -> None:
    records_or_one_line("\n".join(lines))


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(run_bytes=st.binary(max_size=60) | mutated(SETTINGS).map(str.encode),
       log_bytes=st.binary(max_size=60) | mutated(RECORD).map(str.encode))
def test_any_bytes_on_disk_are_a_run_or_one_line(tmp_path: Path, run_bytes: bytes, log_bytes: bytes) -> None:
    (tmp_path / RUN_FILE).write_bytes(run_bytes)
    (tmp_path / LOG_FILE).write_bytes(log_bytes)
    try:
        run = read_run(tmp_path)
    except LatlabError as exc:
        assert "\n" not in str(exc) and str(tmp_path) in str(exc)
        return
    assert isinstance(run.controller, str)
