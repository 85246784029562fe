"""A plain (non-editable) install must carry everything the tools read at run time."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_ships_the_search_spaces_and_every_package(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("latlab-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"latlab/spaces/{p.name}" for p in (ROOT / "latlab" / "spaces").glob("*.json")}
    assert shipped and shipped <= names
    assert {"latlab/predict.py", "kdnas/reward.py", "backends/onnxruntime_cpu.py"} <= names
    assert not any(n.startswith(("tests/", "profiles/")) for n in names)


def _pins() -> dict[str, str]:
    """The runtime versions a new user gets: constraints.txt for the runtimes, setup.sh's TORCH_SPEC for torch."""
    pins = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().splitlines()
                if line.strip() and not line.startswith("#"))
    (torch_spec,) = re.findall(r"TORCH_SPEC:-torch==([\w.]+)", (ROOT / "setup.sh").read_text())
    return {**pins, "torch": torch_spec}


def test_every_shipped_profile_was_measured_on_the_runtime_setup_installs() -> None:
    """Otherwise every shipped profile is foreign on a fresh clone: predict warns and validate refuses."""
    pins = _pins()
    profiles = [p for p in (ROOT / "profiles").rglob("*.json") if not p.name.endswith(".validation.json")]
    assert profiles
    for path in profiles:
        backend = json.loads(path.read_text())["backend"]
        version = re.match(r"[\d.]+\d", backend["runtime_version"]).group()
        assert version == pins[backend["name"]], f"{path.name}: {backend['name']} {version}, setup installs {pins[backend['name']]}"
