"""Gate expressions, the drift-corrected comparison of two saved runs, and ``latlab report`` on files."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from latlab.errors import LatlabError
from latlab.fingerprint import Fingerprint
from latlab.regression.gates import STATS, Gate, judge, parse_gates
from latlab.regression.report import compare_runs, render_chart, render_markdown
from latlab.regression.runs import BenchRecord, load_run, parse_run
from latlab.stats import LatencyStats

FINGERPRINT = Fingerprint("AMD EPYC", ("avx2", "fma"), 2, 2, 2, 23.5, "Linux 6.8", "x86_64")


def stats(median: float, p90: float) -> LatencyStats:
    return LatencyStats(n=100, median_ms=median, mean_ms=median, trimmed_mean_ms=median, p90_ms=p90, p95_ms=p90,
                        p99_ms=p90, min_ms=median * 0.9, max_ms=p90 * 1.2, stdev_ms=0.1, cv_pct=1.0,
                        round_cv_pct=1.0)


def record(median: float, p90: float, anchor: float | None = 0.5, **identity: object) -> BenchRecord:
    """A record whose anchor has the given median and a p90 1.2x that, so the relative p90 is p90 / (1.2 anchor)."""
    fields = dict(backend="onnxruntime", runtime_version="1.31.1", threads=1, precision="f32", device="cpu", batch=1,
                  seq_len=128, timer="time.perf_counter", model="arch h256 L4", stats=stats(median, p90))
    fields.update(identity)
    if anchor is not None:
        anchor_stats = stats(anchor, anchor * 1.2)
        relative = {s: getattr(fields["stats"], f"{s}_ms") / getattr(anchor_stats, f"{s}_ms") for s in STATS}
        fields.update(anchor=anchor_stats, anchor_name="numpy-f32-matmul-v2", relative=relative)
    return BenchRecord(**fields)


def saved(path: Path, records: dict[str, BenchRecord], fingerprint: Fingerprint | None = FINGERPRINT,
          plain: tuple[str, ...] = ()) -> Path:
    """A file laid out like pytest-benchmark's --benchmark-save output with latlab's additions."""
    benchmarks = [{"name": n.split("::")[-1], "fullname": n, "extra_info": {"latlab": r.to_json()},
                   "stats": {"median": r.stats.median_ms / 1000}} for n, r in records.items()]
    benchmarks += [{"name": n, "fullname": n, "extra_info": {}, "stats": {}} for n in plain]
    machine_info = {"node": "vm", "latlab": {"fingerprint": fingerprint.to_json()}} if fingerprint else {"node": "vm"}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine_info": machine_info, "benchmarks": benchmarks, "datetime": "2026-11-21",
                                "version": "5.3.1"}))
    return path


A, B = "test_suite.py::test_a", "test_suite.py::test_b"


@pytest.mark.parametrize(("text", "gates"), [
    ("p90:10%", (Gate("p90", 10.0),)),
    (" P99 : 7.5 % ", (Gate("p99", 7.5),)),
    ("median:5%,p90:0%", (Gate("median", 5.0), Gate("p90", 0.0))),
])
def test_gate_expressions(text: str, gates: tuple[Gate, ...]) -> None:
    assert parse_gates(text) == gates
    assert ",".join(str(g) for g in gates) == text.replace(" ", "").lower()


@pytest.mark.parametrize("text", ["", "p90", "p90:10", "p90:-5%", "p42:10%", "p90:ten%", "p90:10%,", "p90=10%"])
def test_bad_gate_expressions_say_what_is_expected(text: str) -> None:
    with pytest.raises(LatlabError, match=r"expected STAT:LIMIT% such as p90:10%, with STAT one of min, median"):
        parse_gates(text)


def test_change_is_drift_corrected_when_relative_values_are_given() -> None:
    gate = Gate("p90", 10.0)
    assert judge(gate, "baseline", 10.0, 12.5).change_pct == pytest.approx(25.0)
    # 25% more work on a machine 20% faster: raw says 0%, relative to the anchor it is +25%.
    corrected = judge(gate, "baseline", 10.0, 10.0, corrected=(20.0, 25.0))
    assert corrected.change_pct == pytest.approx(25.0) and corrected.failed and corrected.drift_corrected
    assert "FAIL p90 10.000 ms vs baseline 10.000 ms: +25.0%, drift-corrected (limit +10%)" == corrected.describe()
    assert not judge(gate, "baseline", 10.0, 10.99).failed
    assert judge(gate, "baseline", 10.0, 11.01).failed
    assert judge(gate, "baseline", 0.0, 1.0).failed and math.isnan(judge(gate, "baseline", 0.0, 1.0).change_pct)


def test_record_round_trips_through_json() -> None:
    original = replace(record(1.0, 1.2), reference=stats(0.9, 1.1), verdicts=({"gate": "p90:10%", "failed": False},))
    assert BenchRecord.from_json(json.loads(json.dumps(original.to_json()))) == original


def test_comparison_gates_each_benchmark(tmp_path: Path) -> None:
    base = load_run(saved(tmp_path / "base.json", {A: record(10.0, 12.0), B: record(5.0, 6.0)}))
    # The machine is 30% slower in the current run; A also does 25% more work, B is unchanged.
    current = load_run(saved(tmp_path / "now.json", {A: record(16.25, 19.5, anchor=0.65),
                                                     B: record(6.5, 7.8, anchor=0.65)}))
    comparison = compare_runs([base], current, parse_gates("p90:10%"))
    assert [row.name for row in comparison.failed] == [A]
    row_a, row_b = comparison.rows
    assert row_a.change("p90") == pytest.approx(25.0) and row_b.change("p90") == pytest.approx(0.0)
    assert row_a.machine_change() == pytest.approx(30.0)
    markdown = render_markdown(comparison)
    header = "| benchmark | backend | median base → now | Δ median | p90 base → now | Δ p90 | machine | verdict |"
    assert header in markdown
    assert f"| `{A}` | onnxruntime | 10.000 → 16.250 | +25.0% | 12.000 → 19.500 | +25.0% | +30.0% | " \
           "**FAIL** p90 +25.0% > 10% |" in markdown
    assert f"| `{B}` | onnxruntime | 5.000 → 6.500 | +0.0% | 6.000 → 7.800 | +0.0% | +30.0% | ok |" in markdown
    assert "**FAIL**: 1 of 2 benchmarks regressed" in markdown
    assert render_chart(comparison).startswith(b"\x89PNG")


def test_without_anchors_the_change_is_raw(tmp_path: Path) -> None:
    base = load_run(saved(tmp_path / "base.json", {A: record(10.0, 12.0, anchor=None)}))
    current = load_run(saved(tmp_path / "now.json", {A: record(11.0, 12.6)}))
    (row,) = compare_runs([base], current, parse_gates("p90:10%")).rows
    assert row.change("p90") == pytest.approx(5.0) and row.machine_change() is None and not row.failed


def test_other_hardware_or_runtime_is_noted_or_refused(tmp_path: Path) -> None:
    other = replace(FINGERPRINT, cpu_model="Intel Xeon")
    base = load_run(saved(tmp_path / "base.json", {A: record(10.0, 12.0)}, fingerprint=other,))
    current = load_run(saved(tmp_path / "now.json", {A: record(10.0, 12.0, runtime_version="1.32.0")},
                             plain=("test_suite.py::test_plain",)))
    notes = compare_runs([base], current, parse_gates("p90:10%")).notes
    assert any("cpu_model: AMD EPYC here vs Intel Xeon in baseline" in n for n in notes)
    assert any(f"{A}: runtime_version: 1.32.0 here vs 1.31.1 in baseline" in n for n in notes)
    assert any("not timed by latlab's latency fixture, not compared: test_suite.py::test_plain" in n for n in notes)
    with pytest.raises(LatlabError, match="other hardware, runtime or settings.*--strict-device"):
        compare_runs([base], current, parse_gates("p90:10%"), strict_device=True)


def test_runs_without_common_benchmarks_are_refused(tmp_path: Path) -> None:
    base = load_run(saved(tmp_path / "base.json", {A: record(10.0, 12.0)}))
    current = load_run(saved(tmp_path / "now.json", {B: record(10.0, 12.0)}))
    with pytest.raises(LatlabError, match="no latlab benchmark in common"):
        compare_runs([base], current, parse_gates("p90:10%"))


def test_malformed_record_names_file_and_benchmark() -> None:
    data = {"machine_info": {}, "benchmarks": [{"fullname": A, "extra_info": {"latlab": {"backend": "torch"}}}]}
    with pytest.raises(LatlabError, match=r"run.json: benchmark 'test_suite.py::test_a': latlab record is malformed"):
        parse_run(data, "run.json")


def test_report_cli_writes_markdown_and_png_and_fails_on_regression(tmp_path: Path, cli) -> None:
    base = saved(tmp_path / "base.json", {A: record(10.0, 12.0), B: record(5.0, 6.0)})
    slower = saved(tmp_path / "slower.json", {A: record(10.0, 15.0), B: record(5.0, 6.1)})
    out, png = tmp_path / "report.md", tmp_path / "chart.png"
    failed = cli("report", base, slower, "--out", out, "--png", png)
    assert failed.exit_code == 1, failed.output
    assert "2 benchmarks compared, 1 regressed" in failed.stderr
    assert "**FAIL** p90 +25.0% > 10%" in out.read_text() and png.read_bytes().startswith(b"\x89PNG")
    relaxed = cli("report", base, slower, "--fail", "p90:30%,median:5%")
    assert relaxed.exit_code == 0, relaxed.output
    assert "gates: p90:30%, median:5%; result: pass: 2 benchmarks within the gates" in relaxed.stdout


def test_report_cli_defaults_to_the_last_two_saved_runs(tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = tmp_path / ".benchmarks" / "Linux-CPython-3.11-64bit"
    saved(storage / "0001_old.json", {A: record(99.0, 99.0)})
    saved(storage / "0002_base.json", {A: record(10.0, 12.0)})
    saved(storage / "0003_now.json", {A: record(10.0, 12.0)})
    monkeypatch.chdir(tmp_path)
    result = cli("report")
    assert result.exit_code == 0, result.output
    assert "0002_base.json" in result.stdout and "0003_now.json" in result.stdout and "0001" not in result.stdout


@pytest.mark.parametrize(("case", "needle"), [
    ("missing", "saved run not found"),
    ("corrupt", "not valid JSON (line 1"),
    ("profile", "not a pytest-benchmark saved run"),
    ("disjoint", "no latlab benchmark in common"),
    ("bad gate", "bad gate 'p90'"),
    ("one run", "need two"),
])
def test_report_cli_bad_input_is_one_line(tmp_path: Path, cli, user_error, case: str, needle: str) -> None:
    base = saved(tmp_path / "base.json", {A: record(10.0, 12.0)})
    args: list[object] = [base, tmp_path / "now.json"]
    if case == "corrupt":
        (tmp_path / "now.json").write_text('{"benchmarks": [')
    elif case == "profile":
        (tmp_path / "now.json").write_text(json.dumps({"schema_version": 1, "entries": {}}))
    elif case == "disjoint":
        saved(tmp_path / "now.json", {B: record(10.0, 12.0)})
    elif case == "bad gate":
        saved(tmp_path / "now.json", {A: record(10.0, 12.0)})
        args += ["--fail", "p90"]
    elif case == "one run":
        args = ["--storage", tmp_path]
        saved(tmp_path / "machine" / "0001_only.json", {A: record(10.0, 12.0)})
    user_error(cli("report", *args), needle)


def test_report_cli_never_writes_over_a_run_it_reads(tmp_path: Path, cli, user_error) -> None:
    base = saved(tmp_path / "base.json", {A: record(10.0, 12.0)})
    now = saved(tmp_path / "now.json", {A: record(10.0, 12.0)})
    before = base.read_bytes(), now.read_bytes()
    user_error(cli("report", base, now, "--out", base), f"--out {base} would overwrite BASELINE")
    user_error(cli("report", base, now, "--png", now), f"--png {now} would overwrite CURRENT")
    user_error(cli("report", base, now, "--out", tmp_path / "r", "--png", tmp_path / "r"), "are the same path")
    assert (base.read_bytes(), now.read_bytes()) == before and not (tmp_path / "r").exists()


def test_report_cli_names_a_saved_statistic_that_is_not_a_number(tmp_path: Path, cli, user_error) -> None:
    base = saved(tmp_path / "base.json", {A: record(10.0, 12.0)})
    now = saved(tmp_path / "now.json", {A: record(10.0, 12.0)})
    data = json.loads(now.read_text())
    data["benchmarks"][0]["extra_info"]["latlab"]["median_ms"] = "x"
    now.write_text(json.dumps(data))
    user_error(cli("report", base, now), str(now), A)


def test_report_cli_baseline_saved_by_several_runs(tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch,
                                                   user_error) -> None:
    """``--baseline NAME`` takes every run saved as NAME, compared through their centre (geometric mean), against
    the latest other run; the same runs given as BASELINE... CURRENT give the same table."""
    storage = tmp_path / ".benchmarks" / "Linux-CPython-3.11-64bit"
    bases = [saved(storage / f"000{n}_base.json", {A: record(m, m * 1.2)}) for n, m in ((1, 9.0), (2, 10.0), (4, 11.0))]
    saved(storage / "0003_other.json", {A: record(99.0, 99.0)})
    now = saved(storage / "0005_now.json", {A: record(12.0, 14.4)})
    monkeypatch.chdir(tmp_path)
    named = cli("report", "--baseline", "base", "--fail", "median:15%")
    assert named.exit_code == 1, named.output
    center = (9.0 * 10.0 * 11.0) ** (1 / 3)
    row = f"| `{A}` | onnxruntime | {center:.3f} → 12.000 | {(12 / center - 1) * 100:+.1f}% |"
    assert row in named.stdout and "- baseline: 3 runs, one process each: " in named.stdout
    assert "0005_now.json" in named.stdout and "0003_other" not in named.stdout
    given = cli("report", *bases, now, "--fail", "median:15%")
    assert given.exit_code == 1 and row in given.stdout
    assert cli("report", *bases, now, "--fail", "median:25%").exit_code == 0
    user_error(cli("report", "--baseline", "nothing"), "--baseline nothing: no run saved as 'nothing'")
    user_error(cli("report", "--baseline", "base", bases[0], now), "pass at most one run, CURRENT, got 2")
