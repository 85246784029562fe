"""Shared fixtures: a fake backend installed as a real entry-point plugin, profiles built from it, a CLI driver."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner, Result

from latlab.backend import Settings
from latlab.blocks import MODEL
from latlab.cli import main
from latlab.fingerprint import Fingerprint, GpuInfo
from latlab.profile import Entry, Profile
from latlab.protocol import Protocol
from latlab.space import SearchSpace, load_space

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
TINY_SPACE = ROOT / "latlab" / "spaces" / "tiny.json"
LATLAB_EXE = Path(sys.executable).parent / "latlab"
PLUGIN_MODULE = "latlab_fake_plugin"
# Few rounds and a short minimum time: the fake backend's calls cost microseconds, so this stays fast.
FAKE_PROTOCOL = Protocol(rounds=4, min_samples=4, min_seconds=0.01)
FAKE_PROTOCOL_ARGS = ("--rounds", str(FAKE_PROTOCOL.rounds), "--min-seconds", str(FAKE_PROTOCOL.min_seconds),
                      "--min-samples", str(FAKE_PROTOCOL.min_samples))


def write_plugin(root: Path, dist: str, entry_points: dict[str, str]) -> Path:
    """Lay out what ``pip install`` of a plugin leaves behind: the module and a dist-info with entry points."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURES / f"{PLUGIN_MODULE}.py", root / f"{PLUGIN_MODULE}.py")
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[latlab.backends]\n{lines}")
    return root


@pytest.fixture(scope="session")
def plugin_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_plugin(tmp_path_factory.mktemp("plugin"), "latlab_fake_plugin", {
        "fake": f"{PLUGIN_MODULE}:FakeBackend",
        "fakemissing": f"{PLUGIN_MODULE}:MissingBackend",
    })


@pytest.fixture
def fake_plugin(plugin_root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The fake backends registered through entry points for this test; their call counter starts at 0."""
    monkeypatch.syspath_prepend(str(plugin_root))
    __import__(PLUGIN_MODULE)
    module = sys.modules[PLUGIN_MODULE]
    module.State.reset()
    yield module
    module.State.reset()


@pytest.fixture(scope="session")
def fake_profile_bytes(plugin_root: Path, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A complete profile of the tiny space measured on the fake backend, made once per session."""
    from latlab.profiling import run_profile

    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(plugin_root))
        plugin = __import__(PLUGIN_MODULE)
        out = tmp_path_factory.mktemp("profile") / "fake.json"
        run_profile(plugin.FakeBackend(), Settings(), load_space(TINY_SPACE), FAKE_PROTOCOL, out)
        plugin.State.reset()
    return out.read_bytes()


@pytest.fixture
def fake_profile(tmp_path: Path, fake_plugin: ModuleType, fake_profile_bytes: bytes) -> Path:
    path = tmp_path / "fake-profile.json"
    path.write_bytes(fake_profile_bytes)
    return path


@pytest.fixture
def cli() -> Callable[..., Result]:
    """Run ``latlab ARGS`` in-process; stdout and stderr are kept apart."""

    def invoke(*args: str | Path) -> Result:
        return CliRunner().invoke(main, [str(a) for a in args])

    return invoke


def assert_user_error(result: Result, *needles: str) -> str:
    """The contract for mistakes a user can make: exit 2, no traceback, and stderr ends with exactly one line
    ``Error: ...`` that names the culprit (click's usage hint or a progress line may come before it)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    assert lines and lines[-1].startswith("Error: "), result.stderr
    assert sum(line.startswith("Error:") for line in lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[-1], (needle, lines[-1])
    return lines[-1]


@pytest.fixture
def user_error() -> Callable[..., str]:
    return assert_user_error


TEST_SPACE = SearchSpace("t", layers=(1, 2), hidden=(64,), heads=(2, 4), ffn=(128,), seq_len=(16,), batch=(1,),
                         labels=2, vocab=100)


def synthetic_profile(medians: dict, space: SearchSpace = TEST_SPACE,
                      fingerprint: Fingerprint | None = None, model_depth: int | None = None) -> Profile:
    """A profile whose entries take the given median for each block (three equal samples each). Its protocol's
    model depth is that of its model blocks unless given, or 0 (layers timed alone) when it has none."""
    depth = model_depth if model_depth is not None else max((b.layers for b in medians if b.kind == MODEL), default=0)
    profile = Profile(backend="fake", runtime_version="1.0", settings=Settings(), applied={}, software={},
                      fingerprint=fingerprint or Fingerprint("cpu", (), 1, 1, 1, 1.0, "os", "x86_64"),
                      protocol=Protocol(model_depth=depth), space=space, complete=True)
    for block, ms in medians.items():
        profile.entries[block.key] = Entry(block, [[ms, ms, ms]])
    return profile


@pytest.fixture
def make_profile() -> Callable[..., Profile]:
    return synthetic_profile


@pytest.fixture
def gpu_fingerprint() -> Fingerprint:
    gpu = GpuInfo("NVIDIA H100 80GB HBM3", 79.6, "570.1", "12.8", "9.0", {"sm": 1980, "memory": 2619})
    return Fingerprint("AMD EPYC 9R14", ("avx2", "avx512f"), 2, 2, 2, 7.7, "Linux 6.8", "x86_64", (gpu,))
