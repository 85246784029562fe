"""Output paths checked before any work: a command must never replace its own input (``latlab validate --profile P
--json P`` would overwrite the profile), write two outputs to one path (``--json F --plot F`` leaves only the PNG),
or find only at the end that an output is a folder. Paths are compared resolved, so ``./p.json``, ``p.json`` and
a symlink to it are one file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from latlab.atomic import check_writable
from latlab.errors import LatlabError

Paths = Mapping[str, "str | os.PathLike[str] | None"]  # what the user named it ("--json") -> the path, None: not given


def check_outputs(outputs: Paths, inputs: Paths) -> None:
    """Refuse an output that is an input or holds one (an output folder is replaced whole), or that is another."""
    sources = {name: Path(os.path.realpath(path)) for name, path in inputs.items() if path is not None}
    taken: dict[Path, str] = {}
    for name, path in outputs.items():
        if path is None:
            continue
        target = Path(os.path.realpath(path))
        if target in taken:
            raise LatlabError(f"{name} and {taken[target]} are the same path ({path}); give each output its own")
        taken[target] = name
        for source_name, source in sources.items():
            if source == target or target in source.parents:
                raise LatlabError(f"{name} {path} would overwrite {source_name}; choose another output path")


def check_output_file(path: str | os.PathLike[str], name: str) -> None:
    """An output file that can be written: not a folder, in a folder that exists and is writable."""
    if Path(path).is_dir():
        raise LatlabError(f"{name} {path} is a folder; name a file to write")
    check_writable(path)


def check_output_files(outputs: Paths, inputs: Paths) -> None:
    """Every check a command's output files need, before it reads or measures anything."""
    check_outputs(outputs, inputs)
    for name, path in outputs.items():
        if path is not None:
            check_output_file(path, name)
