"""A plain (non-editable) install must carry everything the tools read at run time."""

from __future__ import annotations

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
