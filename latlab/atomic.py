"""File I/O at the edges: atomic writes (never a half-written file) and JSON reads that fail in one line."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from latlab.errors import LatlabError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over the target."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise LatlabError(f"{target}: folder {folder} does not exist; create it or choose another --out path")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise LatlabError(f"{target}: cannot write there ({exc.strerror}); choose a writable path") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a profile is meant to be shared
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise LatlabError(f"{target}: write failed ({exc.strerror}); nothing was changed") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike[str], text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    write_text(path, json.dumps(data, indent=1) + "\n")


def check_writable(path: str | os.PathLike[str]) -> None:
    """Fail before a long measurement, not after it, when the output cannot be written."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise LatlabError(f"{target}: folder {folder} does not exist; create it or choose another output path")
    if not os.access(folder, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise LatlabError(f"{target}: not writable; choose another output path")


MAX_JSON_BYTES = 64 * 2**20  # 40 times the largest shipped profile; a bigger file is not one latlab wrote
MAX_JSON_DEPTH = 32  # a profile nests 5 levels; 100,000 '[' would overflow the parser's stack
_NESTING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')  # strings (skipped whole) and brackets


def nesting_problem(text: str) -> str | None:
    """Where ``text`` nests deeper than ``MAX_JSON_DEPTH``, found without parsing it (the parser is recursive)."""
    depth = 0
    for match in _NESTING.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return f"line {text.count(chr(10), 0, match.start()) + 1}"
        elif token in "]}":
            depth -= 1
    return None


def read_json(path: str | os.PathLike[str], what: str, hint: str) -> Any:
    """Parse a JSON file, turning every way it can be unreadable into one line naming the file.

    ``what`` names the file's role ("profile"); ``hint`` says what to do when it is missing. Size and nesting are
    bounded before parsing, so that no file can exhaust the memory or the stack of the reader.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise LatlabError(f"{path}: {size / 2**20:.0f} MiB, larger than any {what} (at most "
                              f"{MAX_JSON_BYTES // 2**20} MiB); check that the path names the right file")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LatlabError(f"{path}: {what} not found; {hint}") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise LatlabError(f"{path}: cannot read {what} ({getattr(exc, 'strerror', None) or exc})") from None
    deep = nesting_problem(text)
    if deep:
        raise LatlabError(f"{path}: JSON nested more than {MAX_JSON_DEPTH} levels deep at {deep}, deeper than any "
                          f"{what}; the file is damaged or is not a latlab file")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise LatlabError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg}); the file may be truncated") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise LatlabError(f"{path}: not valid JSON ({str(exc).split(';')[0]})") from None
