"""On-disk cache of serialized TensorRT engines: a build takes seconds to minutes, a profile needs hundreds.

An engine is only valid for the exact model, build options, TensorRT version and GPU it was built for, so all of
them go into the key: change any one and the lookup misses and a fresh engine is built (never a stale one used).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from latlab.atomic import write_bytes, write_json
from latlab.errors import LatlabError


@dataclass(frozen=True)
class EngineKey:
    onnx_sha256: str  # the block itself: graph, weights and (static) shapes
    precision: str
    builder_flags: tuple[str, ...]  # every flag set or cleared, so a change of build recipe misses too
    workspace_bytes: int
    tensorrt_version: str
    gpu_name: str
    compute_capability: str

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()


def onnx_sha256(model: bytes) -> str:
    return hashlib.sha256(model).hexdigest()


def default_folder() -> Path:
    """``$XDG_CACHE_HOME/latlab/tensorrt``, else ``~/.cache/latlab/tensorrt``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "latlab" / "tensorrt"


class EngineCache:
    """``<digest>.engine`` holds the plan; ``<digest>.json`` what the builder read back, and the key for people."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder or default_folder()

    def paths(self, key: EngineKey) -> tuple[Path, Path]:
        stem = self.folder / key.digest()
        return stem.with_suffix(".engine"), stem.with_suffix(".json")

    def load(self, key: EngineKey) -> tuple[bytes, dict[str, Any]] | None:
        """The cached plan and its build record, or None when either is missing, unreadable, or the plan's bytes
        are not the ones recorded when it was built (truncated, corrupted, or swapped in the folder)."""
        plan_path, record_path = self.paths(key)
        try:
            record = json.loads(record_path.read_text())
            plan = plan_path.read_bytes()
            if record["plan_sha256"] != hashlib.sha256(plan).hexdigest():
                return None
            return plan, dict(record["built"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def store(self, key: EngineKey, plan: bytes, built: dict[str, Any]) -> None:
        """Record first, plan last: a plan on disk always has its record (``load`` needs both)."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LatlabError(f"{self.folder}: cannot create the TensorRT engine cache ({exc.strerror}); "
                              "set XDG_CACHE_HOME to a writable folder") from None
        plan_path, record_path = self.paths(key)
        write_json(record_path, {"key": asdict(key), "built": built, "plan_sha256": hashlib.sha256(plan).hexdigest()})
        write_bytes(plan_path, plan)
