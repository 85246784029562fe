"""latlab.lock: a second writer is refused naming the holder's PID, and a killed holder leaves a lock that is free."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from latlab.errors import LatlabError
from latlab.lock import lock_path, locked

HOLD = "import sys, time; from latlab.lock import locked\nwith locked(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(600)\n"


def test_a_second_holder_is_refused_naming_the_first_and_the_lock_is_gone_after(tmp_path: Path) -> None:
    target = tmp_path / "profile.json"
    with locked(target):
        assert lock_path(target).read_text().strip() == str(os.getpid())
        with pytest.raises(LatlabError) as refused, locked(target):
            pass
        message = str(refused.value)
        assert f"PID {os.getpid()}" in message and str(target) in message and "\n" not in message
    assert not lock_path(target).exists()
    with locked(target):  # free again
        pass


def test_the_lock_of_a_killed_process_is_taken_over(tmp_path: Path) -> None:
    target = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(target)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LatlabError, match=f"in use by another process \\(PID {holder.pid},"), locked(target):
            pass
        holder.send_signal(signal.SIGKILL)
        assert holder.wait(timeout=30) == -signal.SIGKILL
    finally:
        holder.kill()
        holder.stdout.close()
    assert lock_path(target).read_text().strip() == str(holder.pid)  # the dead holder's file is still there
    with locked(target):
        assert lock_path(target).read_text().strip() == str(os.getpid())
    assert not lock_path(target).exists()


def test_a_lock_in_a_missing_folder_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(LatlabError, match="cannot create lock file .*; choose a writable path"), \
            locked(tmp_path / "no" / "run"):
        pass


def test_the_body_raising_still_releases(tmp_path: Path) -> None:
    target = tmp_path / "p.json"
    with pytest.raises(KeyboardInterrupt), locked(target):
        raise KeyboardInterrupt
    assert not lock_path(target).exists()
