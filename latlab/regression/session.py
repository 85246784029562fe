"""The plugin's state for one pytest session, handed to every ``latency`` fixture: the one module that both the
plugin and the fixture import, so that neither imports the other. Stdlib-only, like the plugin."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from latlab.regression.gates import Gate

if TYPE_CHECKING:
    from latlab.regression.runs import BenchRecord


@dataclass
class SessionState:
    gates: tuple[Gate, ...]  # --latlab-fail: gates against the saved run loaded by --benchmark-compare
    strict_device: bool
    seconds: float
    smoke: bool
    baseline: dict[str, tuple[BenchRecord, ...]] | None = None  # latlab records of the baseline by test node id,
    # one per saved run (process): --benchmark-compare loads one, --latlab-baseline every run saved under its name
    baseline_source: str = "the compared run"  # how verdicts and warnings name the baseline
    fingerprint_json: dict[str, Any] | None = field(default=None, repr=False)

    def fingerprint(self) -> dict[str, Any]:
        """Read once per session (cpuinfo takes ~0.2 s)."""
        if self.fingerprint_json is None:
            from latlab.fingerprint import read_fingerprint

            self.fingerprint_json = read_fingerprint().to_json()
        return self.fingerprint_json
