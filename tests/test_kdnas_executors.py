"""The executors on their own, with small functions instead of candidates: every call comes back once with its
position, a call that raises or whose worker dies is retried and then reported, never raised, and a death costs
no other call anything. The search through each executor, Ray included, is tested in test_kdnas_search.py."""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import pytest

from kdnas.executors import Done, Executor, LocalExecutor, ProcessExecutor, make_executor
from latlab.errors import LatlabError


def where(delay: float) -> tuple[int, int]:
    """Runs in a worker: which process, with how many torch threads."""
    import torch

    time.sleep(delay)
    return os.getpid(), torch.get_num_threads()


def fails_first(marker: Path, how: str, value: int) -> int:
    """Fails (raises, or kills its worker) unless ``marker`` exists, which its first attempt creates: the marker
    remembers the attempt across processes. ``always-...`` fails every attempt."""
    if how.startswith("always") or not marker.exists():
        marker.touch()
        if how.endswith("exit"):
            os._exit(3)
        raise ValueError(f"candidate {value} broke\nsecond line")
    return value


def executor(kind: str, retries: int = 1) -> Executor:
    return LocalExecutor(1, 1, retries) if kind == "local" else ProcessExecutor(2, 1, retries)


def run(kind: str, fn, calls: list[tuple], retries: int = 1) -> dict[int, Done]:  # noqa: ANN001
    with executor(kind, retries) as chosen:
        outcomes = list(chosen.completed(fn, calls))
    assert sorted(o.position for o in outcomes) == list(range(len(calls)))  # each exactly once
    return {o.position: o for o in outcomes}


def test_a_process_pool_runs_calls_in_parallel_workers_with_their_threads() -> None:
    with ProcessExecutor(2, 3, retries=0) as pool:
        outcomes = list(pool.completed(where, [(0.5,), (0.5,), (0.0,), (0.0,)]))
    pids = {o.result[0] for o in outcomes}
    assert len(pids) == 2 and os.getpid() not in pids  # two spawned workers, reused for the later calls
    assert {o.result[1] for o in outcomes} == {3} and {o.attempts for o in outcomes} == {1}


@pytest.mark.parametrize("kind", ["local", "process"])
def test_a_call_that_raises_once_is_retried(kind: str, tmp_path: Path) -> None:
    for i in (0, 2):
        (tmp_path / f"m{i}").touch()  # these succeed at once
    outcomes = run(kind, fails_first, [(tmp_path / f"m{i}", "raise", i) for i in range(3)])
    assert [(outcomes[i].result, outcomes[i].attempts, outcomes[i].error) for i in range(3)] == \
        [(0, 1, None), (1, 2, None), (2, 1, None)]


@pytest.mark.parametrize("kind", ["local", "process"])
def test_a_call_that_always_raises_is_reported_after_its_retries_and_the_others_finish(kind: str,
                                                                                      tmp_path: Path) -> None:
    calls = [(tmp_path / f"m{i}", "always-raise" if i == 1 else "raise", i) for i in range(3)]
    (tmp_path / "m0").touch()
    (tmp_path / "m2").touch()
    outcomes = run(kind, fails_first, calls, retries=2)
    assert (outcomes[1].result, outcomes[1].error, outcomes[1].attempts) == (None, "ValueError: candidate 1 broke", 3)
    assert [(outcomes[i].result, outcomes[i].attempts) for i in (0, 2)] == [(0, 1), (2, 1)]


def test_a_dead_worker_is_replaced_and_its_call_retried_without_charging_the_other_call(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).touch()
    calls = [(tmp_path / "dies", "exit", 7), (tmp_path / "a", "exit", 8), (tmp_path / "b", "exit", 9)]
    outcomes = run("process", fails_first, calls)
    assert [(outcomes[i].result, outcomes[i].attempts) for i in range(3)] == [(7, 2), (8, 1), (9, 1)]


def test_a_worker_that_always_dies_is_reported_and_the_others_finish(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).touch()
    calls = [(tmp_path / "a", "raise", 1), (tmp_path / "dies", "always-exit", 2), (tmp_path / "b", "raise", 3)]
    outcomes = run("process", fails_first, calls)
    assert outcomes[1].result is None and outcomes[1].attempts == 2
    assert outcomes[1].error.startswith("BrokenProcessPool: A process in the process pool was terminated abruptly")
    assert [(outcomes[i].result, outcomes[i].attempts) for i in (0, 2)] == [(1, 1), (3, 1)]


def test_a_crash_of_the_search_itself_is_not_retried() -> None:
    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), LocalExecutor(1, 1, retries=3) as local:
        list(local.completed(interrupted, [()]))


def test_options_are_checked_and_threads_split_among_workers() -> None:
    assert make_executor("local", None, 2, 1, None).describe() == {"executor": "local", "workers": 1,
                                                                  "threads_per_worker": 2, "retries": 1}
    process = make_executor("process", None, 4, 0, None)
    assert (process.workers, process.threads) == (4, 1)
    assert make_executor("process", 3, 8, 0, None).threads == 2  # 3 x 2 <= 8
    for args, needle in [(("local", 2, 2, 1, None), "--workers applies to --executor process or ray"),
                         (("process", 2, 2, 1, "ray://x:10001"), "--ray-address applies to --executor ray"),
                         (("process", 3, 2, 1, None), "--workers 3 is more than the 2 CPU thread(s)")]:
        with pytest.raises(LatlabError, match=re.escape(needle)):
            make_executor(*args)


def test_ray_missing_is_one_line_saying_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without the extra sees
    with pytest.raises(LatlabError, match=re.escape("ray is not installed; pip install 'latlab[ray]'")):
        make_executor("ray", 2, 2, 1, None)
