"""What a machine can hold, checked before anything is allocated: a space with ``hidden: [1000000]`` or threads by
the ten thousand is refused in one line instead of dying in an allocator or crawling for minutes.

Checks return a problem (or None) and print nothing; the command line decides whether ``--force`` lets it pass.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import psutil

from latlab.blocks import LAYER, MODEL, Block, parameters

FLOAT_BYTES = 4  # modules are built in float32 whatever the precision
COPIES = 2  # the module and the backend's converted copy of its weights are alive together


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity, e.g. under taskset), not all the machine has."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else psutil.cpu_count() or 1


def available_bytes() -> int:
    """Memory the system can give now without swapping (page cache counts as free)."""
    return psutil.virtual_memory().available


def thread_problem(threads: int) -> str | None:
    usable = usable_cpus()
    if threads <= usable:
        return None
    return (f"{threads} threads are more than the {usable} CPU(s) this process may use; threads beyond them only "
            "wait for each other")


def activations(block: Block) -> int:
    """Floats alive during one call: hidden states and the ffn's intermediate per token, and the attention
    scores (batch x heads x seq_len^2), which are what a long ``seq_len`` runs out of."""
    tokens = block.batch * block.seq_len
    if block.kind in (LAYER, MODEL):
        return tokens * (4 * block.hidden + block.ffn) + block.batch * max(block.heads, 1) * block.seq_len ** 2
    return tokens * (2 * block.hidden + 1)


def memory_problem(blocks: Iterable[Block], what: str) -> str | None:
    """Whether ``blocks``, all prepared at once and run one at a time, fit the memory available now."""
    blocks = list(blocks)
    if not blocks:
        return None
    largest = max(blocks, key=lambda b: parameters(b) + activations(b))
    need = FLOAT_BYTES * (COPIES * sum(parameters(b) for b in blocks) + max(activations(b) for b in blocks))
    available = available_bytes()
    if need <= available:
        return None
    return (f"{what} needs about {need / 2**30:,.1f} GiB of memory (largest block {largest.key}) but "
            f"{available / 2**30:,.1f} GiB is available; use smaller sizes")
