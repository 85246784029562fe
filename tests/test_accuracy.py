"""Full-accuracy check of the issue's bar: profile the default space, validate 20 random models.

Minutes per backend, so opt-in: ``pytest -m slow tests/test_accuracy.py``. The default run covers the same
code paths on the tiny space (tests/test_backends_real.py).
"""

import json

import pytest
from click.testing import CliRunner

from latlab.cli import main
from latlab.registry import load_backend

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("backend", ["torch", "onnxruntime", "openvino"])
def test_default_space_predicts_whole_models(backend: str, tmp_path) -> None:
    available = load_backend(backend).is_available()
    if not available:
        pytest.skip(available.reason)
    profile, report = tmp_path / "profile.json", tmp_path / "validation.json"
    runner = CliRunner()
    result = runner.invoke(main, ["profile", "--backend", backend, "--out", str(profile)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["validate", "--profile", str(profile), "--archs", "20", "--json", str(report)])
    assert result.exit_code == 0, result.output
    accuracy = json.loads(report.read_text())
    assert accuracy["mape_pct"] <= 5.0
    assert accuracy["within_10pct"] >= 0.9
