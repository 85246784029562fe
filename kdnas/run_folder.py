"""The run folder: ``run.json`` (the settings a search started with) and ``search.jsonl`` (one line per distilled
candidate). This module alone creates, reads, validates and appends them, and names the folder's other outputs.

Every read goes through one validated reader, so a truncated, hand-edited or foreign file is one line naming the
file, the line, the field and what to do, never a traceback. Lines are appended by rewriting the whole log
atomically: a crash leaves the old log or the new one, never half a line. The caller holds the folder's lock
(``latlab.lock``) for the whole run, since two writers rewriting one log would drop each other's lines.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kdnas.candidate import FIELDS, Candidate
from latlab.atomic import write_json, write_text
from latlab.errors import LatlabError

RUN_FILE, LOG_FILE = "run.json", "search.jsonl"
PLOT_FILE, REPORT_FILE, STUDENT_DIR, ONNX_FILE = "pareto.png", "report.md", "student", "student.onnx"
TEACHER_DIR, FINAL_FILE = "teacher", "final.json"  # the teacher fine-tuned on the task; the final step's figures
TRAINED_DIR = "trained"  # every model through the final recipe, one folder each, so that --resume trains none twice
OUTPUTS = (RUN_FILE, LOG_FILE, PLOT_FILE, REPORT_FILE, STUDENT_DIR, ONNX_FILE, TEACHER_DIR, FINAL_FILE,
           TRAINED_DIR)  # everything a search writes there
FIX_RUN = "restore it or start a new run in another folder"
FIX_LINE = "delete that line (--resume redoes its candidate) or start a new run in another folder"


class Invalid(Exception):
    """What is wrong with one parsed value; the reader adds the file and line and turns it into a LatlabError."""


def parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:  # JSONDecodeError, or an integer too long to convert
        raise Invalid(f"not valid JSON ({getattr(exc, 'msg', exc)})") from None
    except RecursionError:  # the parser recurses once per level: 100,000 '[' must be an error, not a crash
        raise Invalid("JSON nested too deeply") from None


def field(data: dict[str, Any], name: str, kinds: tuple[type, ...], what: str, prefix: str = "") -> Any:
    """``data[name]`` if it has one of ``kinds`` (bool is never a number here)."""
    if name not in data:
        raise Invalid(f"field '{prefix}{name}' is missing")
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise Invalid(f"field '{prefix}{name}' must be {what}, not {type(value).__name__}")
    return value


def count(data: dict[str, Any], name: str, least: int, prefix: str = "") -> int:
    value = field(data, name, (int,), "an integer", prefix)
    if value < least:
        raise Invalid(f"field '{prefix}{name}' must be at least {least}")
    return value


def real(data: dict[str, Any], name: str, finite: bool = False, optional: bool = False) -> float | None:
    if optional and data.get(name, 0) is None:
        return None
    value = field(data, name, (int, float), "a number")
    try:
        value = float(value)
    except OverflowError:  # an integer beyond any float
        raise Invalid(f"field '{name}' is out of range") from None
    if finite and not math.isfinite(value):
        raise Invalid(f"field '{name}' must be a finite number, not {value}")
    return value


@dataclass(frozen=True)
class Record:
    """One distilled candidate: one line of ``search.jsonl``."""

    episode: int
    index: int
    candidate: Candidate
    architecture: dict[str, Any]
    parameters: int
    predicted_ms: float
    proxy_loss: float
    quality: float
    accuracy: float | None
    reward: float
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "candidate": self.candidate.to_json()}

    @classmethod
    def from_json(cls, data: Any) -> Record:
        """A parsed line, every field checked: raises ``Invalid`` naming the first bad one."""
        if not isinstance(data, dict):
            raise Invalid(f"not a JSON object but {type(data).__name__}")
        candidate = field(data, "candidate", (dict,), "an object")
        return cls(
            episode=count(data, "episode", 1),
            index=count(data, "index", 0),
            candidate=Candidate(*(count(candidate, f, 1, "candidate.") for f in FIELDS)),
            architecture=field(data, "architecture", (dict,), "an object"),
            parameters=count(data, "parameters", 0),
            predicted_ms=real(data, "predicted_ms", finite=True),
            proxy_loss=real(data, "proxy_loss"),
            quality=real(data, "quality"),
            accuracy=real(data, "accuracy", optional=True),
            reward=real(data, "reward", finite=True),
            seconds=real(data, "seconds"),
        )


@dataclass(frozen=True)
class Run:
    """A run folder as read back: the settings it started with and its finished candidates, in order."""

    folder: Path
    settings: dict[str, Any]  # run.json: the search plan as JSON
    records: tuple[Record, ...]

    @property
    def controller(self) -> str:
        return self.settings["controller"]["kind"]


def parse_settings(text: str, source: str) -> dict[str, Any]:
    """``run.json``'s text: an object whose ``controller.kind`` names the controller, or one line saying why not."""
    try:
        data = parse_json(text)
        if not isinstance(data, dict):
            raise Invalid(f"not a JSON object but {type(data).__name__}")
        field(field(data, "controller", (dict,), "an object"), "kind", (str,), "a string", "controller.")
    except Invalid as exc:
        raise LatlabError(f"{source}: {exc}; {FIX_RUN}") from None
    return data


def parse_records(text: str, source: str) -> tuple[Record, ...]:
    """``search.jsonl``'s text, one record per non-blank line, or one line naming the first bad line and field."""
    records = []
    for line_number, line in enumerate(text.split("\n"), start=1):  # JSON escapes every newline inside a value
        if not line.strip():
            continue
        try:
            records.append(Record.from_json(parse_json(line)))
        except Invalid as exc:
            raise LatlabError(f"{source}:{line_number}: {exc}; {FIX_LINE}") from None
    return tuple(records)


def read_text(path: Path, fix: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LatlabError(f"{path}: not found; {fix}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LatlabError(f"{path}: cannot read it ({getattr(exc, 'strerror', None) or exc}); {FIX_RUN}") from None


# Settings added after runs were written, with the value those runs used, so an older run.json still resumes.
ADDED_SETTINGS = {"evaluation": {"score": "all"}}


def read_run(folder: Path) -> Run:
    """The one reader of a run folder; a missing log means no candidate has finished yet."""
    run_file, log_file = folder / RUN_FILE, folder / LOG_FILE
    settings = parse_settings(read_text(run_file, "pass a kdnas run folder"), str(run_file))
    for section, added in ADDED_SETTINGS.items():
        if isinstance(settings.get(section), dict):
            settings[section] = {**added, **settings[section]}
    records = parse_records(read_text(log_file, FIX_RUN), str(log_file)) if log_file.exists() else ()
    return Run(folder, settings, records)


def prepare(folder: Path, key: dict[str, Any], resume: bool, candidates: Collection[Candidate]) -> list[Record]:
    """Check the (locked, writable) folder before any work: the finished records of the interrupted run when
    resuming (its settings must match ``key`` and its candidates be among ``candidates``), else an absent or empty
    folder."""
    if not resume:
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            raise LatlabError(f"{folder}: already exists and is not empty; pass --resume to continue it or choose "
                              "another --out")
        return []
    if not (folder / RUN_FILE).is_file():
        raise LatlabError(f"{folder}: nothing to resume (no {RUN_FILE}); run without --resume")
    run = read_run(folder)
    for name, value in key.items():
        if run.settings.get(name) != value:
            raise LatlabError(f"{folder}: cannot resume, setting {name!r} differs from the interrupted run; "
                              "use the same options or another --out")
    for record in run.records:
        if record.candidate not in candidates:
            raise LatlabError(f"{folder / LOG_FILE}: candidate {record.candidate.name} (episode {record.episode}) is "
                              "not one this run may distill; delete its line (--resume redoes the episode's "
                              "proposals) or start a new run in another folder")
    return list(run.records)


def create(folder: Path, settings: dict[str, Any]) -> None:
    """Write ``run.json`` (again, when resuming: the episode count may have grown)."""
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / RUN_FILE, settings)


def append(folder: Path, records: list[Record], record: Record) -> list[Record]:
    """The log with ``record`` added in (episode, proposal) order, written atomically: parallel candidates finish
    in any order, and a resumed run fills the gaps they leave, yet the log reads as one run in proposal order."""
    records = sorted([*records, record], key=lambda r: (r.episode, r.index))
    write_text(folder / LOG_FILE, "".join(json.dumps(r.to_json()) + "\n" for r in records))
    return records
