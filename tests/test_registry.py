"""Backends are found through the ``latlab.backends`` entry-point group, a third-party plugin exactly like ours."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from latlab.backend import Backend, Settings
from latlab.errors import LatlabError
from latlab.registry import backend_names, describe, disturbances, load_backend

from conftest import PLUGIN_MODULE, TINY_SPACE, write_plugin

BUILT_IN = {"torch", "onnxruntime", "openvino"}


def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **entry_points: str) -> None:
    """A dist-info with these entry points plus the plugin module, on sys.path as if pip had installed it."""
    monkeypatch.syspath_prepend(str(write_plugin(tmp_path / "site", "latlab_test_plugin", entry_points)))


def test_plugin_is_found_through_its_entry_point(tmp_path, monkeypatch, cli) -> None:
    assert "fake" not in backend_names()
    install(tmp_path, monkeypatch, fake=f"{PLUGIN_MODULE}:FakeBackend")
    assert BUILT_IN | {"fake"} <= set(backend_names())
    backend = load_backend("fake")
    assert isinstance(backend, Backend) and type(backend) is sys.modules[PLUGIN_MODULE].FakeBackend
    info = describe("fake")
    assert (info.available, info.runtime_version, info.source) == (True, "1.0", f"{PLUGIN_MODULE}:FakeBackend")

    result = cli("backends", "--json")
    assert result.exit_code == 0, result.output
    listed = {row["name"]: row for row in json.loads(result.stdout)}
    assert BUILT_IN | {"fake"} <= set(listed)
    assert listed["fake"] == {"name": "fake", "available": True, "reason": "", "runtime_version": "1.0",
                              "precisions": ["f32", "bf16"], "devices": ["cpu"], "pip_extra": "fake",
                              "source": f"{PLUGIN_MODULE}:FakeBackend", "quantizations": []}


def test_plugin_backend_profiles_like_a_built_in(tmp_path, monkeypatch, cli) -> None:
    install(tmp_path, monkeypatch, fake=f"{PLUGIN_MODULE}:FakeBackend")
    out = tmp_path / "p.json"
    result = cli("profile", "--backend", "fake", "--space", TINY_SPACE, "--rounds", "2", "--min-seconds", "0",
                 "--out", out)
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["backend"]["name"] == "fake"


def test_unavailable_plugin_is_listed_with_its_reason(tmp_path, monkeypatch, cli) -> None:
    install(tmp_path, monkeypatch, fakemissing=f"{PLUGIN_MODULE}:MissingBackend")
    result = cli("backends")
    assert result.exit_code == 0, result.output
    line = next(line for line in result.stdout.splitlines() if line.startswith("fakemissing"))
    assert "missing" in line and "pip install 'latlab[fakert]'" in line
    assert describe("fakemissing").runtime_version == "", "no version is asked of a runtime that is not there"


def test_entry_point_that_is_not_a_backend_is_a_user_error(tmp_path, monkeypatch, cli, user_error) -> None:
    install(tmp_path, monkeypatch, broken=f"{PLUGIN_MODULE}:NotABackend")
    with pytest.raises(LatlabError, match=f"entry point '{PLUGIN_MODULE}:NotABackend' for backend 'broken' is not"):
        load_backend("broken")
    user_error(cli("profile", "--backend", "broken", "--space", TINY_SPACE, "--out", tmp_path / "p.json"),
               "'broken'", "not a latlab Backend subclass")


def test_entry_point_whose_module_is_missing_is_a_user_error(tmp_path, monkeypatch, cli, user_error) -> None:
    install(tmp_path, monkeypatch, ghost="latlab_no_such_module:GhostBackend")
    user_error(cli("profile", "--backend", "ghost", "--space", TINY_SPACE, "--out", tmp_path / "p.json"),
               "'ghost'", "latlab_no_such_module")


def test_one_broken_plugin_does_not_hide_the_others(tmp_path, monkeypatch, cli) -> None:
    install(tmp_path, monkeypatch, broken=f"{PLUGIN_MODULE}:NotABackend")
    result = cli("backends", "--json")
    assert result.exit_code == 0, result.output
    listed = {row["name"]: row for row in json.loads(result.stdout)}
    assert BUILT_IN <= set(listed) and not listed["broken"]["available"]


def test_unknown_backend_lists_the_registered_ones() -> None:
    with pytest.raises(LatlabError, match="unknown backend 'nope'; registered backends: .*onnxruntime.*torch"):
        load_backend("nope")


def test_a_backend_that_does_not_load_here_disturbs_nothing_since_nothing_times_on_it(monkeypatch) -> None:
    monkeypatch.setattr(Backend, "disturbances", lambda self: ("telemetry on",))
    assert disturbances("torch") == ("telemetry on",)
    assert disturbances("nope") == ()


@pytest.mark.parametrize(("settings", "needle"), [
    (Settings(precision="fp16"), "does not support precision 'fp16' (supported: f32, bf16)"),
    (Settings(device="cuda"), "does not run on device 'cuda' (supported: cpu)"),
    (Settings(threads=0), "threads must be at least 1, got 0"),
    (Settings(precision="int8", quantization="static"), "does not support precision 'int8'"),
    (Settings(precision="bf16", quantization="static"), "quantization 'static' applies to precision int8 only"),
])
def test_check_refuses_settings_a_backend_cannot_honour(fake_plugin, settings, needle) -> None:
    with pytest.raises(LatlabError) as info:
        fake_plugin.FakeBackend().check(settings)
    assert needle in str(info.value)
    fake_plugin.FakeBackend().check(Settings(threads=2, precision="bf16"))


def test_prepare_checks_the_settings_before_the_backend_sees_them(fake_plugin) -> None:
    """The base class owns the refusal: a plugin's ``_prepare`` never runs with settings it cannot honour."""
    backend = fake_plugin.FakeBackend()
    seen = []
    backend._prepare = lambda module, inputs, settings: seen.append(settings)
    with pytest.raises(LatlabError, match="does not support precision 'fp16'"):
        backend.prepare(object(), (), Settings(precision="fp16"))
    backend.prepare(object(), (), Settings(precision="bf16"))
    assert seen == [Settings(precision="bf16")]


def test_a_backend_without_onnx_loading_refuses_an_onnx_file_in_one_line(fake_plugin, tmp_path) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"onnx")
    with pytest.raises(LatlabError, match="^backend 'fake' cannot load an ONNX file; pass the torch module instead$"):
        fake_plugin.FakeBackend().prepare_onnx(model, (), Settings())
    with pytest.raises(LatlabError, match="cannot read ONNX file .*missing.onnx"):
        fake_plugin.FakeBackend().prepare_onnx(tmp_path / "missing.onnx", (), Settings())


def test_an_onnx_file_reaches_the_backend_as_bytes(fake_plugin, tmp_path) -> None:
    """Every backend gets the same thing whether the caller holds bytes or a path (TensorRT hashes the bytes)."""
    model = tmp_path / "m.onnx"
    model.write_bytes(b"onnx model bytes")
    backend = fake_plugin.FakeBackend()
    received = []
    backend._prepare_onnx = lambda data, inputs, settings: received.append(data)
    backend.prepare_onnx(model, (), Settings())
    backend.prepare_onnx(str(model), (), Settings())
    backend.prepare_onnx(b"onnx model bytes", (), Settings())
    assert received == [b"onnx model bytes"] * 3


@pytest.mark.parametrize(("name", "module", "extra"), [("onnxruntime", "onnxruntime", "onnxruntime"),
                                                       ("onnxruntime", "onnxscript", "onnxruntime"),
                                                       ("openvino", "openvino", "openvino")])
def test_built_in_backend_without_its_runtime_names_the_pip_extra(monkeypatch, name, module, extra) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # what an uninstalled package looks like to find_spec
    backend = load_backend(name)
    available = backend.is_available()
    assert not available and module in available.reason and f"pip install 'latlab[{extra}]'" in available.reason
    with pytest.raises(LatlabError, match=f"backend '{name}' is not available: .*latlab\\[{extra}\\]"):
        backend.check(Settings())


def test_int8_settings_take_the_backends_first_method_and_refuse_one_it_lacks() -> None:
    backend = load_backend("onnxruntime")
    if not backend.is_available():
        pytest.skip(f"onnxruntime not available: {backend.is_available().reason}")
    assert backend.settings(2, "int8") == Settings(threads=2, precision="int8", quantization=backend.quantizations[0])
    assert backend.settings(1, "int8", quantization="static").numerics == "int8-static"
    assert backend.settings(1, "f32").numerics == "f32"
    with pytest.raises(LatlabError, match="has no unnamed int8 quantization"):
        backend.check(Settings(precision="int8"))
