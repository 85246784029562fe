"""Where candidates are evaluated: in this process (``local``), a pool of processes on this machine (``process``)
or Ray (``ray``: a local Ray, or an existing cluster).

An executor runs independent calls at most ``workers`` at a time and yields each as it finishes, with its position,
so the search can log records in proposal order whatever finishes first. The interface owns retries: a call that
raises, or whose worker dies, is run again up to ``retries`` times, then reported as a failure rather than raised,
so the search keeps every finished record before it stops. Each worker runs with ``threads`` torch threads, and
workers x threads never exceeds the cores given to the run.
"""

from __future__ import annotations

import multiprocessing
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Generic, TypeVar

from latlab.errors import LatlabError

EXECUTORS = ("local", "process", "ray")
R = TypeVar("R")


@dataclass(frozen=True)
class Done(Generic[R]):
    """One call's outcome: its result, or the last attempt's error as one line."""

    position: int  # in the sequence of calls
    result: R | None
    error: str | None
    attempts: int


def one_line(error: BaseException) -> str:
    first = str(error).strip().splitlines()
    return f"{type(error).__name__}: {first[0]}" if first else type(error).__name__


def set_threads(threads: int) -> None:
    """Torch's CPU threads for this worker; results are reproducible only at the same thread count."""
    import torch

    torch.set_num_threads(threads)


def call_with_threads(fn: Callable[..., R], threads: int, args: tuple[Any, ...]) -> R:
    """A Ray task: Ray reuses worker processes, so every task sets its own threads."""
    set_threads(threads)
    return fn(*args)


class Executor(ABC):
    """Runs calls and owns their retries; a subclass only starts, submits and stops."""

    name: ClassVar[str]

    def __init__(self, workers: int, threads: int, retries: int) -> None:
        self.workers, self.threads, self.retries = workers, threads, retries

    def describe(self) -> dict[str, Any]:
        """What ``run.json`` records: how the candidates were run (results do not depend on it at equal threads)."""
        return {"executor": self.name, "workers": self.workers, "threads_per_worker": self.threads,
                "retries": self.retries}

    def summary(self) -> str:
        """The executor in a progress line."""
        return (f"executor {self.name}{self._where()}: {self.workers} worker(s) x {self.threads} thread(s), "
                f"{self.retries} retry(ies) per candidate")

    def _where(self) -> str:
        return ""

    def __enter__(self) -> Executor:
        self._start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._stop(failed=error is not None)

    def completed(self, fn: Callable[..., R], calls: Sequence[tuple[Any, ...]]) -> Iterator[Done[R]]:
        """``fn(*call)`` for every call, each yielded as it finishes (ties in call order); a failed attempt is
        retried first, before calls not yet started."""
        attempts = [0] * len(calls)
        waiting = deque(range(len(calls)))
        running: dict[Future[R], int] = {}
        while waiting or running:
            while waiting and len(running) < self.workers:
                position = waiting.popleft()
                attempts[position] += 1
                running[self._submit(fn, calls[position])] = position
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in sorted(finished, key=running.__getitem__):
                position = running.pop(future)
                error = future.exception()
                if error is None:
                    yield Done(position, future.result(), None, attempts[position])
                elif attempts[position] <= self.retries:
                    waiting.appendleft(position)
                else:
                    yield Done(position, None, one_line(error), attempts[position])

    def _start(self) -> None:
        """Bring up workers; a user's mistake (Ray missing or unreachable) is a LatlabError."""

    def _stop(self, failed: bool) -> None:
        """Release workers; ``failed``: the search is ending on an exception, do not wait for running calls."""

    @abstractmethod
    def _submit(self, fn: Callable[..., R], args: tuple[Any, ...]) -> Future[R]:
        """Start ``fn(*args)``; its exception, or its worker's death, goes into the future."""


class LocalExecutor(Executor):
    """One call at a time in this process, with the threads the run already set."""

    name = "local"

    def _submit(self, fn: Callable[..., R], args: tuple[Any, ...]) -> Future[R]:
        future: Future[R] = Future()
        try:
            future.set_result(fn(*args))
        except Exception as error:  # a KeyboardInterrupt is not a candidate's failure: it ends the search
            future.set_exception(error)
        return future


class ProcessExecutor(Executor):
    """One single-worker pool per slot: a dying worker breaks only its own pool, so the death is charged to the
    one call it was running, and only that slot's process is replaced. Workers are spawned (torch and fork do not
    mix) and keep their loaded teacher and proxy data between calls."""

    name = "process"

    def __init__(self, workers: int, threads: int, retries: int) -> None:
        super().__init__(workers, threads, retries)
        self._pools: list[ProcessPoolExecutor] = []
        self._last: list[Future[Any]] = []  # each slot's latest call

    def _pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=set_threads,
                                   initargs=(self.threads,))

    def _submit(self, fn: Callable[..., R], args: tuple[Any, ...]) -> Future[R]:
        slot = next((i for i, last in enumerate(self._last) if last.done()), len(self._last))
        if slot == len(self._pools):
            self._pools.append(self._pool())
            self._last.append(Future())
        elif isinstance(self._last[slot].exception(), BrokenProcessPool):
            self._pools[slot].shutdown(wait=False)
            self._pools[slot] = self._pool()
        self._last[slot] = self._pools[slot].submit(fn, *args)
        return self._last[slot]

    def _stop(self, failed: bool) -> None:
        for pool in self._pools:
            pool.shutdown(wait=not failed, cancel_futures=True)


class RayExecutor(Executor):
    """Ray tasks of ``threads`` CPUs each, at most ``workers`` in flight. Without an address a local Ray of
    workers x threads CPUs is started, and stopped at the end; with one, the run joins that cluster."""

    name = "ray"

    def __init__(self, workers: int, threads: int, retries: int, address: str | None) -> None:
        super().__init__(workers, threads, retries)
        try:
            import ray
        except ImportError:
            raise LatlabError("ray is not installed; pip install 'latlab[ray]'") from None
        self._ray, self.address = ray, address
        self._task: Any = None

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "ray_address": self.address}

    def _where(self) -> str:
        return f" at {self.address}" if self.address else " (local Ray)"

    def _start(self) -> None:
        try:  # log_to_driver off: a failure comes back as its candidate's error; Ray's logs stay in its session
            if self.address is None:
                self._ray.init(address="local", num_cpus=self.workers * self.threads, include_dashboard=False,
                               log_to_driver=False)
            else:
                self._ray.init(address=self.address, log_to_driver=False)
        except (ConnectionError, TimeoutError, ValueError, RuntimeError) as error:
            where = f"join Ray at {self.address}" if self.address else "start a local Ray"
            raise LatlabError(f"cannot {where}: {one_line(error)}") from None
        self._task = self._ray.remote(num_cpus=self.threads, max_retries=0)(call_with_threads)

    def _submit(self, fn: Callable[..., R], args: tuple[Any, ...]) -> Future[R]:
        future: Future[R] = Future()

        def settle(ray_future: Future[R]) -> None:  # a task's own exception rather than Ray's wrapper of it
            error = ray_future.exception()
            if error is None:
                future.set_result(ray_future.result())
            else:
                future.set_exception(getattr(error, "cause", None) or error)

        self._task.remote(fn, self.threads, args).future().add_done_callback(settle)
        return future

    def _stop(self, failed: bool) -> None:
        self._ray.shutdown()


def make_executor(name: str, workers: int | None, cores: int, retries: int, ray_address: str | None) -> Executor:
    """The executor the options ask for, checked before any work: workers x threads fits ``cores`` on this
    machine (a cluster's workers are its own cores; each still gets ``cores // workers`` threads)."""
    if ray_address is not None and name != "ray":
        raise LatlabError(f"--ray-address applies to --executor ray, not {name}")
    if name == "local":
        if workers not in (None, 1):
            raise LatlabError("--workers applies to --executor process or ray; local runs one candidate at a time")
        return LocalExecutor(1, cores, retries)
    workers = workers or cores
    if workers > cores and ray_address is None:
        raise LatlabError(f"--workers {workers} is more than the {cores} CPU thread(s) of this run (--threads, "
                          "default: usable CPUs); lower --workers or raise --threads")
    threads = max(1, cores // workers)
    if name == "process":
        return ProcessExecutor(workers, threads, retries)
    return RayExecutor(workers, threads, retries, ray_address)
