"""The structure rules that keep the tools fast to start and easy to change: data modules load no torch or
runtime, and no module imports another that imports it back."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("latlab", "kdnas", "backends")
HEAVY = ("torch", "transformers", "onnxruntime", "openvino", "tensorrt", "matplotlib")


def loaded_after(code: str) -> set[str]:
    """Top-level packages in sys.modules after ``code`` runs in a fresh interpreter."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_the_prediction_path_loads_no_torch_and_no_runtime() -> None:
    modules = ("blocks, architecture, space, profile, predict, interpolate, estimate, machine, fingerprint, registry, "
               "backend")
    assert not loaded_after(f"from latlab import {modules}") & set(HEAVY)


def test_reading_a_profile_and_checking_its_machine_loads_no_torch(tmp_path: Path) -> None:
    """What `latlab predict` does for every shipped backend's profile: the runtime's version comes from the
    package metadata, not from importing the runtime."""
    profile = ROOT / "profiles" / "amd-epyc-avx2-1t-torch-f32.json"
    code = (f"from latlab.profile import load_profile\nfrom latlab.machine import profile_problems\n"
            f"profile_problems(load_profile({str(profile)!r}))")
    assert not loaded_after(code) & set(HEAVY)


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["info"], ["predict", "--profile", "P", "--arch", "A"]],
                         ids=lambda a: a[0])
def test_light_commands_start_without_torch(tmp_path: Path, args: list[str]) -> None:
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps({"hidden": 256, "layers": 2, "heads": 4, "ffn": 1024}))
    args = [str(ROOT / "profiles" / "amd-epyc-avx2-1t-onnxruntime-f32.json") if a == "P" else str(arch) if a == "A"
            else a for a in args]
    code = f"from latlab.cli import main\ntry:\n    main({args!r})\nexcept SystemExit as exit:\n    assert not exit.code"
    assert not loaded_after(code) & set(HEAVY)


def project_imports(path: Path) -> set[str]:
    """Project modules ``path`` imports anywhere, in functions too (a deferred import is still a dependency);
    ``if TYPE_CHECKING:`` blocks are left out, as they never run."""
    tree = ast.parse(path.read_text())
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
               for inner in node.body for n in ast.walk(inner)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)  # `from latlab import predict`
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] in PACKAGES)
    return found


def test_no_import_circles() -> None:
    modules = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
               for package in PACKAGES for p in (ROOT / package).rglob("*.py")}
    graph = {name: sorted(project_imports(path) & set(modules) - {name}) for name, path in modules.items()}
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            pytest.fail("import circle: " + " -> ".join(path[path.index(name):] + [name]))
        if name in done:
            return
        for following in graph[name]:
            visit(following, path + [name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
