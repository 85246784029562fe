"""What both command lines (``latlab`` and ``kdnas``) share at the edge: one-line errors, progress on stderr,
and the decision to warn about or refuse a profile measured elsewhere."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from latlab.backend import Backend, Settings
from latlab.errors import LatlabError
from latlab.host import HostNoise, probe_host
from latlab.machine import foreign_message, process_problems, profile_problems
from latlab.profile import Profile, load_complete_profile
from latlab.protocol import Protocol, Report
from latlab.registry import load_backend

err = Console(stderr=True, soft_wrap=True)  # one line per message in logs, too


class Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LatlabError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(2)


@contextmanager
def progress_bar() -> Iterator[Report]:
    """A rich progress bar on stderr; one task per stage (prepare, warm-up, measure, re-measure), each with its
    elapsed time and the time left at the pace of the items done so far."""
    columns = (TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("left"), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=False) as bar:
        tasks: dict[str, Any] = {}

        def report(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield report


def check_same_machine(profile: Profile, path: str, force: bool) -> None:
    """Profiles are per hardware and runtime: say so loudly, and refuse to measure against a foreign one."""
    if not force:
        load_backend(profile.backend)  # a backend that is not installed is its own, clearer refusal
    refuse_or_warn(path, profile_problems(profile), force)


def refuse_or_warn(path: str, problems: list[str], force: bool) -> None:
    if problems and not force:
        raise LatlabError(foreign_message(path, problems) + "; measure a profile here, or pass --force")
    if problems:
        err.print(f"[yellow]Warning:[/] {foreign_message(path, problems)}", highlight=False)


def profile_to_measure_with(path: str, force: bool) -> tuple[Profile, Backend]:
    """A complete profile of this machine whose backend, settings and process state can run here, or one line
    saying why not."""
    profile = load_complete_profile(path)
    check_same_machine(profile, path, force)
    backend = backend_to_measure_with(profile.backend)
    backend.check(profile.settings)
    refuse_or_warn(path, process_problems(profile, backend), force)
    return profile, backend


def backend_to_measure_with(name: str) -> Backend:
    """The backend, with a warning for whatever on this machine would disturb its timing."""
    backend = load_backend(name)
    for disturbance in backend.disturbances():
        err.print(f"[yellow]Warning:[/] {disturbance}", highlight=False)
    return backend


PROBE_ROUNDS = 10  # at most; each as long as the protocol's shortest timing of a block, at most 1 s


def probe_and_say(when: str, settings: Settings, protocol: Protocol) -> HostNoise | None:
    """How quiet the host is now, said on stderr, with a warning where the protocol would call a block this noisy
    unstable. CPU settings only: a GPU's latency does not wait on the host's other vCPUs in the same way."""
    if settings.device != "cpu":
        return None
    noise = probe_host(when, settings.threads, min(protocol.rounds, PROBE_ROUNDS), min(protocol.min_seconds, 1.0))
    err.print(noise.describe(), highlight=False)
    if noise.round_cv_pct > protocol.max_round_cv_pct:
        err.print(f"[yellow]Warning:[/] the host is noisier than the {protocol.max_round_cv_pct:g}% round CV at "
                  "which the protocol re-measures a block: expect unstable blocks and a weaker validation; other "
                  "jobs on this machine, or its neighbours, are moving every latency (measure at a quieter time)",
                  highlight=False)
    return noise
