"""What latlab's and kdnas's commands set up in their own process before anything loads a runtime.

torch puts CPU tensors of 2 MB and more on transparent huge pages only when ``THP_MEM_ALLOC_ENABLE=1`` is set
before its first allocation. Without them a model's weights sit on 4 KB pages scattered over physical memory, and
how they share the caches differs from one process to the next: torch int8 layers ran 9-28% slower in the process
that validated a profile than in the one that measured it. The backend reads back what the process really got
(``Backend.process_state``) and a profile records it.
"""

from __future__ import annotations

import os

HUGE_PAGES_ENV = "THP_MEM_ALLOC_ENABLE"


def prepare_process() -> None:
    """Ask for huge pages unless the user chose otherwise; a no-op once torch has allocated anything."""
    os.environ.setdefault(HUGE_PAGES_ENV, "1")
