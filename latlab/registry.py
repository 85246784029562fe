"""Finds backends through the ``latlab.backends`` entry-point group, built-in and third-party alike."""

from __future__ import annotations

from importlib.metadata import entry_points

from latlab.backend import Backend, BackendInfo
from latlab.errors import LatlabError

GROUP = "latlab.backends"


def backend_names() -> list[str]:
    return sorted({ep.name for ep in entry_points(group=GROUP)})


def load_backend(name: str) -> Backend:
    matches = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    if not matches:
        known = ", ".join(backend_names()) or "none (is latlab installed with pip install -e .?)"
        raise LatlabError(f"unknown backend {name!r}; registered backends: {known}")
    try:
        cls = matches[0].load()
    except (ImportError, AttributeError) as exc:
        raise LatlabError(f"backend {name!r}: entry point {matches[0].value!r} does not load ({exc}); "
                          "reinstall the package that provides it") from None
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise LatlabError(f"entry point {matches[0].value!r} for backend {name!r} is not a latlab Backend subclass")
    return cls()


def disturbances(name: str) -> tuple[str, ...]:
    """What on this machine would disturb timing on backend ``name``; nothing when it does not load here, since
    whatever would time on it then refuses, with the reason."""
    try:
        return load_backend(name).disturbances()
    except LatlabError:
        return ()


def describe(name: str) -> BackendInfo:
    backend = load_backend(name)
    available = backend.is_available()
    version = backend.runtime_version() if available else ""
    source = next(ep.value for ep in entry_points(group=GROUP) if ep.name == name)
    return BackendInfo(name, available.ok, available.reason, version, backend.precisions, backend.devices,
                       backend.pip_extra, source, backend.quantizations)
