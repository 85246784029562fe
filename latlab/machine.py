"""Can a profile be trusted on this machine? One check, one wording: it returns problems and prints nothing;
each edge (the CLIs, the final step of a search) decides whether to warn or to refuse."""

from __future__ import annotations

from latlab.backend import Backend
from latlab.errors import LatlabError
from latlab.fingerprint import read_fingerprint
from latlab.profile import Profile
from latlab.registry import load_backend


def profile_problems(profile: Profile) -> list[str]:
    """How this machine and its runtime differ from the ones ``profile`` was measured on; empty when they match.

    A difference listed here is hardware or software, never drift: latencies measured against such a profile say
    how the machines differ, not how the machine's state moved."""
    problems = profile.fingerprint.differences(read_fingerprint(), include_gpus=profile.settings.device != "cpu")
    try:
        backend = load_backend(profile.backend)
    except LatlabError:
        problems.append(f"backend {profile.backend!r} is not installed here, so its version was not checked")
    else:
        if backend.is_available() and backend.runtime_version() != profile.runtime_version:
            problems.append(f"{profile.backend} {backend.runtime_version()} here vs {profile.runtime_version} "
                            "in profile")
    return problems


def process_problems(profile: Profile, backend: Backend) -> list[str]:
    """How this process's state (``Backend.process_state``) differs from the one ``profile`` was measured in.
    Reading it loads the runtime, so only commands that measure ask."""
    now = backend.process_state(profile.settings)
    recorded = {key: profile.applied.get(key, backend.unrecorded_state.get(key)) for key in now}
    problems = [f"{backend.name} {key}: {now[key]} here vs {recorded[key]} in profile"
                for key in now if recorded[key] != now[key]]
    return [f"{'; '.join(problems)} ({backend.process_state_help})"] if problems else []


def foreign_message(path: str, problems: list[str]) -> str:
    return f"{path} was measured on other hardware or runtime: {'; '.join(problems)}"
