"""An exclusive lock on an output path, so two writers never interleave (two resumed runs, two profilers).

The lock is ``flock(LOCK_EX | LOCK_NB)`` on a sibling ``<path>.lock`` file that holds the holder's PID. The kernel
drops a flock when its process dies, so a lock left by a killed process is free again with no stale-lock guessing;
the PID is only there to name the holder to whoever is refused.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from latlab.errors import LatlabError


def lock_path(path: str | os.PathLike[str]) -> Path:
    target = Path(path)
    return target.with_name(target.name + ".lock")


@contextmanager
def locked(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold ``path`` for the ``with`` body, or refuse in one line naming the PID that holds it."""
    lock = lock_path(path)
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise LatlabError(f"{path}: cannot create lock file {lock} ({exc.strerror}); choose a writable path") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise LatlabError(f"{path}: in use by another process (PID {holder}, lock file {lock}); wait for it to "
                              "finish or choose another path") from None
        try:  # the releasing holder unlinks the file: then this one is locked on an orphan and must start over
            current = os.stat(lock).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        yield
    finally:
        lock.unlink(missing_ok=True)  # still locked here, so no one can take the file being removed
        os.close(fd)
