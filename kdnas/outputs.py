"""Output paths checked before any work: a command must never replace its own input (``kdnas measure R --profile P
--json P`` would overwrite the profile), write two outputs to one path, or find only at the end that an output is
a folder. Paths are compared resolved, so ``./p.json``, ``p.json`` and a symlink to it are one file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from latlab.atomic import check_writable
from latlab.errors import LatlabError

Paths = Mapping[str, "str | os.PathLike[str]"]  # what the user named it ("--json x.json") -> the path


def check_outputs(outputs: Paths, inputs: Paths) -> None:
    """Refuse an output that is an input or holds one (an output folder is replaced whole), or that is another."""
    sources = {name: Path(os.path.realpath(path)) for name, path in inputs.items()}
    taken: dict[Path, str] = {}
    for name, path in outputs.items():
        target = Path(os.path.realpath(path))
        if target in taken:
            raise LatlabError(f"{name} and {taken[target]} are the same path; give each output its own")
        taken[target] = name
        for source_name, source in sources.items():
            if source == target or target in source.parents:
                raise LatlabError(f"{name} would overwrite {source_name}; choose another output path")


def check_output_file(path: str | os.PathLike[str], name: str) -> None:
    """An output file that can be written: not a folder, in a folder that exists and is writable."""
    if Path(path).is_dir():
        raise LatlabError(f"{name} is a folder; name a file to write")
    check_writable(path)
