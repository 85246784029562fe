"""End to end: a tiny teacher built from a BertConfig, a few dozen sentences, a fake profile priced by formula.
The search, the final distillation, the export and the measurement (torch backend) all run for real."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from transformers import AutoModel, BertConfig, BertModel, BertTokenizer

import kdnas.final
import kdnas.run
import kdnas.search
from kdnas.candidate import Candidate
from kdnas.cli import main
from kdnas.evaluate import CandidateResult, EvalSettings, evaluate
from kdnas.measure import Timed, Timing
from kdnas.report import latency_sentence
from kdnas.run_folder import prepare
from backends.torch_eager import TorchBackend
from latlab.backend import Backend, Settings
from latlab.blocks import EMBEDDINGS, HEAD, LAYER, MODEL, in_models, layer_block
from latlab.errors import LatlabError
from latlab.fingerprint import read_fingerprint
from latlab.lock import lock_path, locked
from latlab.profile import Entry, Profile, save_profile
from latlab.protocol import Protocol
from latlab.space import SearchSpace
from latlab.stats import LatencyStats

WORDS = ("the market rose sharply as shares in banks gained while the team won the match and fans cheered "
         "goals in the final minute of a league game").split()
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def tiny_space(vocab: int) -> SearchSpace:
    return SearchSpace("tiny-test", layers=(1, 2), hidden=(16, 32), heads=(2,), ffn=(32, 64), seq_len=(16,),
                       batch=(1,), labels=2, vocab=vocab)


def fake_ms(block) -> float:  # noqa: ANN001
    """Latency grows with work, so the reward has a real trade-off to find."""
    layer = 0.05 + block.hidden * (block.hidden + block.ffn) * 2e-5
    if block.kind == LAYER:
        return layer
    if block.kind == MODEL:  # overhead, embeddings, head and the layers, each a little slower in company
        return 0.01 + 0.02 + 0.01 + block.layers * (layer - 0.01) * 1.05
    return {EMBEDDINGS: 0.03, HEAD: 0.02}.get(block.kind, 0.01)


def write_profile(path: Path, space: SearchSpace, drop: str | None = None) -> Path:
    profile = Profile(backend="torch", runtime_version=torch.__version__, settings=Settings(),
                      applied=TorchBackend().process_state(Settings()), software={},  # as if measured in this process
                      fingerprint=read_fingerprint(), protocol=Protocol(), space=space, complete=True)
    for block in space.blocks(profile.protocol.model_depth):
        if block.key != drop:
            profile.entries[block.key] = Entry(block, [[fake_ms(block)] * 3])
    save_profile(profile, path)
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("kdnas")
    teacher = root / "teacher"
    teacher.mkdir()
    vocab_file = root / "vocab.txt"
    vocab_file.write_text("\n".join(SPECIAL + sorted(set(WORDS))) + "\n")
    tokenizer = BertTokenizer(vocab_file=str(vocab_file))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(teacher)
    tokenizer.save_pretrained(teacher)
    data = root / "data.csv"
    with data.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for i in range(48):
            words = WORDS[i % 7: i % 7 + 6 + i % 5]
            writer.writerow([" ".join(words) + f" {WORDS[i % len(WORDS)]}", "sport" if "team" in words else "business"])
    return {"root": root, "teacher": teacher, "data": data,
            "profile": write_profile(root / "profile.json", tiny_space(tokenizer.vocab_size))}


def search_args(setup: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return ["search", "--profile", str(setup["profile"]), "--teacher", str(setup["teacher"]), "--data",
            str(setup["data"]), "--out", str(out), "--quick", "--threads", "1", *extra]


@pytest.fixture(scope="module")
def finished(setup: dict[str, Path]) -> Path:
    out = setup["root"] / "run"
    result = CliRunner().invoke(main, search_args(setup, out))
    assert result.exit_code == 0, result.output + repr(result.exception)
    return out


def read_log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "search.jsonl").read_text().splitlines()]


def test_search_writes_every_output(finished: Path) -> None:
    for name in ("search.jsonl", "pareto.png", "report.md", "student.onnx", "run.json", "final.json"):
        assert (finished / name).stat().st_size > 0, name
    assert (finished / "teacher" / "config.json").is_file()  # the fine-tuned teacher, reused on --resume
    log = read_log(finished)
    assert len(log) == 6 and {r["episode"] for r in log} == {1, 2}  # --quick: 2 episodes x 3 candidates
    assert len({json.dumps(r["candidate"]) for r in log}) == 6  # never the same candidate twice
    for record in log:
        assert 0.0 <= record["quality"] <= 1.0 and record["predicted_ms"] > 0 and record["parameters"] > 0
    student = AutoModel.from_pretrained(finished / "student")
    best = max(log, key=lambda r: r["reward"])["candidate"]
    assert (student.config.num_hidden_layers, student.config.hidden_size) == (best["layers"], best["hidden"])
    report = (finished / "report.md").read_text()
    assert "reward = quality x (predicted_ms /" in report and "measured median ms" in report
    assert not [p for p in finished.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_baselines_go_through_the_same_recipe_and_are_timed_with_the_student(setup: dict[str, Path], tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    chosen: dict[str, Candidate] = {}

    def rivals(records: list, winner: Candidate, baselines: dict, priced: dict) -> dict[str, Candidate]:
        """The tiny space's winner is rarely slower than a baseline: face one with another candidate anyway, so
        that a rival is trained, timed and reported (which one is chosen is tested in test_kdnas_final)."""
        chosen.update(real(records, winner, baselines, priced) or
                      {"fewer layers": next(r.candidate for r in records if r.candidate != winner)})
        return chosen

    real = kdnas.run.rival_candidates
    monkeypatch.setattr(kdnas.run, "rival_candidates", rivals)
    out = tmp_path / "run"
    result = CliRunner().invoke(main, search_args(setup, out, "--baselines"))
    assert result.exit_code == 0, result.output + repr(result.exception)
    figures = json.loads((out / "final.json").read_text())
    rows = {row["model"]: row for row in figures["models"]}
    rival_rows = [f"searched, no slower than {family}" for family in chosen]
    assert list(rows) == ["student", "fewer layers", "narrower", *rival_rows]
    assert [rows[name]["architecture"] for name in rival_rows] == [c.name for c in chosen.values()]
    verdicts = {c["family"]: c for c in figures["comparisons"]}
    assert set(verdicts) == {"fewer layers", "narrower"}
    for family, verdict in verdicts.items():
        assert verdict["searched"] == (chosen[family].name if family in chosen else rows["student"]["architecture"])
        assert verdict["verdict"] and verdict["searched_ms"] > 0 and verdict["baseline_ms"] > 0
    teacher_shape = (32, 2, 64)  # the tiny teacher: hidden 32, 2 heads, ffn 64, 2 layers
    assert rows["fewer layers"]["architecture"] == "L1-h{}-a{}-f{}".format(*teacher_shape)
    assert rows["narrower"]["architecture"].startswith("L2-h16-")
    for row in rows.values():
        assert row["measured_median_ms"] > 0 and 0 <= row["test_accuracy"] <= 1 and row["parameters"] > 0
    report = (out / "report.md").read_text()
    assert "Against hand-designed students at the same latency" in report and "| narrower | L2-h16-" in report
    assert "Verdict, per baseline" in report and f"- narrower ({rows['narrower']['architecture']}" in report


def test_resume_with_baselines_reads_back_every_student_already_trained(
        setup: dict[str, Path], finished: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, user_error) -> None:
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    trained: list[str] = []
    real = kdnas.final.train_student
    monkeypatch.setattr(kdnas.final, "train_student", lambda candidate, *rest: trained.append(candidate.name) or
                        real(candidate, *rest))
    result = CliRunner().invoke(main, search_args(setup, out, "--resume", "--baselines"))
    assert result.exit_code == 0, result.output + repr(result.exception)
    before, after = (json.loads((folder / "final.json").read_text())["models"] for folder in (finished, out))
    assert after[0]["architecture"] not in trained  # the winner: read back from trained/, not trained again
    assert after[0]["test_accuracy_per_seed"] == before[0]["test_accuracy_per_seed"]
    assert sorted(trained) == sorted({row["architecture"] for row in after[1:]})  # the baselines, once each
    trained.clear()
    again = CliRunner().invoke(main, search_args(setup, out, "--resume", "--baselines"))
    assert again.exit_code == 0 and trained == [] and "read back from" in again.output
    seeds = out / "trained" / after[0]["architecture"] / "seeds.json"
    seeds.write_text(seeds.read_text().replace('"held_out_loss"', '"loss"'))
    message = user_error(CliRunner().invoke(main, search_args(setup, out, "--resume")), str(seeds))
    assert "'held_out_loss' is missing" in message and "delete" in message


def write_test_file(path: Path, data: Path, unseen: int) -> Path:
    """``unseen`` labelled sentences the data lacks, plus two of the data's own rows, which must be dropped."""
    rows = list(csv.reader(data.open()))[1:3]
    for i in range(unseen):
        words = WORDS[(3 * i) % 11: (3 * i) % 11 + 7]
        rows.append([" ".join(words) + f" unseen {i}", "sport" if "team" in words else "business"])
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([["text", "label"], *rows])
    return path


def test_a_test_file_replaces_the_test_split_and_retrains_what_was_tested_on_other_texts(
        setup: dict[str, Path], finished: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    test_file = write_test_file(tmp_path / "test.csv", setup["data"], unseen=12)
    trained: list[str] = []
    real = kdnas.final.train_student
    monkeypatch.setattr(kdnas.final, "train_student", lambda candidate, *rest: trained.append(candidate.name) or
                        real(candidate, *rest))
    result = CliRunner().invoke(main, search_args(setup, out, "--resume", "--test", str(test_file)))
    assert result.exit_code == 0, result.output + repr(result.exception)
    final = json.loads((out / "final.json").read_text())
    assert final["tested_on"] == f"{test_file} (12 texts not in the training data)"
    winner = final["models"][0]
    assert trained == [winner["architecture"]]  # trained/ held its result on the data's own test split
    assert all(round(a * 12, 6) == round(a * 12) for a in winner["test_accuracy_per_seed"])  # 12 texts, not 14
    assert f"test accuracy (on {test_file}" in (out / "report.md").read_text()
    trained.clear()
    again = CliRunner().invoke(main, search_args(setup, out, "--resume", "--test", str(test_file)))
    assert again.exit_code == 0 and trained == []  # the same test file: read back


def test_bad_test_file(setup: dict[str, Path], tmp_path: Path) -> None:
    unlabelled = tmp_path / "u.jsonl"
    unlabelled.write_text("\n".join(json.dumps({"text": w}) for w in WORDS))
    assert "needs a 'label' column" in refused(setup, tmp_path / "o", "--test", str(unlabelled))
    other_task = tmp_path / "t.csv"
    other_task.write_text("text,label\nhello there,politics\n")
    assert "politics are not among the training data's" in refused(setup, tmp_path / "o", "--test", str(other_task))
    seen = write_test_file(tmp_path / "seen.csv", setup["data"], unseen=0)
    assert "every text is also in the training data" in refused(setup, tmp_path / "o", "--test", str(seen))


def test_pareto_searches_each_budget_once_and_plots_every_winner_with_the_teacher(setup: dict[str, Path],
                                                                                finished: Path, tmp_path: Path,
                                                                                user_error) -> None:
    out = tmp_path / "sweep"
    args = ["pareto", "--profile", str(setup["profile"]), "--teacher", str(setup["teacher"]), "--data",
            str(setup["data"]), "--budgets", "0.4,0.2", "--out", str(out), "--quick", "--threads", "1"]
    user_error(CliRunner().invoke(main, [*args, "--include", str(tmp_path)]), f"{tmp_path}: no final.json")
    assert not out.exists()  # refused before any search
    result = CliRunner().invoke(main, [*args, "--include", str(finished)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    # the teacher is fine-tuned for the first budget, then read from there for the next
    assert (out / "budget-0.4ms" / "teacher" / "config.json").is_file()
    reused = result.output.split("fine-tuned one in", 1)[1].replace("\n", "")  # a long path may wrap
    assert reused.split()[0].endswith("budget-0.2ms/teacher")
    for budget in ("0.2", "0.4"):
        figures = json.loads((out / f"budget-{budget}ms" / "final.json").read_text())
        assert figures["models"][0]["predicted_ms"] <= float(budget)  # the hard budget held
    assert (out / "pareto.png").stat().st_size > 0
    rows = [line for line in (out / "pareto.md").read_text().splitlines() if line.startswith("| ")][1:]
    assert sum("| student |" in row for row in rows) == 3 and sum("| teacher |" in row for row in rows) == 3
    started = (out / "budget-0.2ms" / "final.json").stat().st_mtime
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and "finished in" in again.output
    assert (out / "budget-0.2ms" / "final.json").stat().st_mtime == started  # read back, never searched again


def test_resume_after_interruption_recomputes_nothing(setup: dict[str, Path], finished: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    out = setup["root"] / "interrupted"
    real = kdnas.search.evaluate
    calls: list[str] = []

    class Killed(BaseException):
        """Stands for a crash or a kill in the middle of the search: not a candidate's failure, so never retried."""

    def stop_after_four(candidate, settings):  # noqa: ANN001, ANN202
        if len(calls) == 4:
            raise Killed
        calls.append(candidate.name)
        return real(candidate, settings)

    monkeypatch.setattr(kdnas.search, "evaluate", stop_after_four)
    with pytest.raises(Killed):
        CliRunner().invoke(main, search_args(setup, out))
    assert len(read_log(out)) == 4 and not (out / "report.md").exists()

    calls.clear()
    resumed = CliRunner().invoke(main, search_args(setup, out, "--resume"))
    assert resumed.exit_code == 0, resumed.output
    assert len(calls) == 2  # only the two unfinished candidates ran
    strip = lambda log: [{k: v for k, v in r.items() if k != "seconds"} for r in log]  # noqa: E731
    assert strip(read_log(out)) == strip(read_log(finished))  # exactly what the uninterrupted run found


def test_a_run_written_before_a_setting_existed_resumes_with_the_value_it_ran_with(finished: Path,
                                                                                   tmp_path: Path) -> None:
    settings = json.loads((finished / "run.json").read_text())
    key = {name: value for name, value in json.loads((finished / "run.json").read_text()).items()
           if name not in ("episodes", "execution")}
    candidates = {Candidate(**r["candidate"]) for r in read_log(finished)}
    old = tmp_path / "old"
    old.mkdir()
    shutil.copy(finished / "search.jsonl", old)
    del settings["evaluation"]["score"]  # run.json as kdnas wrote it before proxy scores could be chosen
    (old / "run.json").write_text(json.dumps(settings))
    ran_with = {**key, "evaluation": {**key["evaluation"], "score": "all"}}  # every pair, the only score then
    assert len(prepare(old, ran_with, True, candidates)) == 6
    for score in ("layers", "last"):  # another score, today's default included, is another run
        changed = {**key, "evaluation": {**key["evaluation"], "score": score}}
        with pytest.raises(LatlabError, match="setting 'evaluation' differs"):
            prepare(old, changed, True, candidates)


def refused(setup: dict[str, Path], out: Path, *args: str, profile: Path | None = None) -> str:
    argv = search_args(setup, out, *args)
    if profile is not None:
        argv[argv.index("--profile") + 1] = str(profile)
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert not out.exists()  # nothing half-written
    return result.output


def test_bad_teacher(setup: dict[str, Path], tmp_path: Path) -> None:
    assert "no config.json" in refused(setup, tmp_path / "o", "--teacher", str(tmp_path / "missing"))
    folder = tmp_path / "gpt"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    assert "not a BERT-family encoder" in refused(setup, tmp_path / "o", "--teacher", str(folder))


def test_bad_data(setup: dict[str, Path], tmp_path: Path) -> None:
    assert "file not found" in refused(setup, tmp_path / "o", "--data", str(tmp_path / "none.csv"))
    no_text = tmp_path / "x.csv"
    no_text.write_text("sentence,label\nhello,a\n")
    assert "'text' column" in refused(setup, tmp_path / "o", "--data", str(no_text))
    unlabelled = tmp_path / "u.jsonl"
    unlabelled.write_text("\n".join(json.dumps({"text": w}) for w in WORDS))
    assert "needs a 'label' column" in refused(setup, tmp_path / "o", "--data", str(unlabelled),
                                               "--objective", "labelled")


def test_profile_not_covering_space(setup: dict[str, Path], tmp_path: Path) -> None:
    space = tiny_space(json.loads((setup["teacher"] / "config.json").read_text())["vocab_size"])
    deep = in_models(layer_block(1, 16, 32, 2, 64), Protocol().model_depth, space.vocab, space.labels)[-1]
    holey = write_profile(tmp_path / "holey.json", space, drop=deep.key)
    assert "does not cover space" in refused(setup, tmp_path / "o", profile=holey)


def test_a_profile_from_another_machine_or_runtime_is_named_before_searching(setup: dict[str, Path],
                                                                            tmp_path: Path) -> None:
    other = json.loads(setup["profile"].read_text())
    other["backend"]["runtime_version"] = "0.0-elsewhere"
    other["fingerprint"]["cpu_flags"] = ["avx2", "fma"]
    (tmp_path / "other.json").write_text(json.dumps(other))
    argv = search_args(setup, tmp_path / "o", "--budget-ms", "0.001")  # refused right after the warning
    argv[argv.index("--profile") + 1] = str(tmp_path / "other.json")
    result = CliRunner().invoke(main, argv)
    warning, error = result.output.strip().splitlines()
    here = read_fingerprint().isa_level
    assert warning.startswith(f"Warning: {tmp_path / 'other.json'} was measured on other hardware or runtime: ")
    if here != "avx2":
        assert f"instruction set {here} here vs avx2 in profile" in warning
    assert f"torch {torch.__version__} here vs 0.0-elsewhere in profile" in warning
    assert error.startswith("Error:") and result.exit_code == 2


def test_the_search_warns_before_it_starts_about_what_would_disturb_timing_its_winner(
        setup: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Backend, "disturbances", lambda self: ("telemetry would fork beside the timing",))
    result = CliRunner().invoke(main, search_args(setup, tmp_path / "o", "--budget-ms", "0.001"))
    warning, error = result.output.strip().splitlines()  # refused by the budget right after the warning
    assert warning == "Warning: telemetry would fork beside the timing"
    assert error.startswith("Error:") and result.exit_code == 2


def test_the_report_never_calls_a_difference_in_hardware_drift() -> None:
    rows = {"student": Timed(3.0, LatencyStats.from_rounds([[3.0, 3.0]]), False)}
    here = latency_sentence(3.0, Timing(rows, drift_pct=50.0))
    assert "reference blocks ran +50.0%" in here and "the error is +50.0%" in here
    elsewhere = latency_sentence(3.0, Timing(rows, drift_pct=50.0, foreign=("instruction set amx here vs avx2",)))
    assert "other hardware or runtime (instruction set amx here vs avx2)" in elsewhere
    assert "not machine drift" in elsewhere and "+50.0%" not in elsewhere
    assert Timing(rows, 50.0, ("x",)).error_pct("student", drift_corrected=True) is None


def test_budget_below_fastest(setup: dict[str, Path], tmp_path: Path) -> None:
    assert "below the fastest candidate" in refused(setup, tmp_path / "o", "--budget-ms", "0.001")


def test_unwritable_or_existing_out(setup: dict[str, Path], tmp_path: Path) -> None:
    assert "does not exist" in refused(setup, tmp_path / "nowhere" / "o")
    if os.geteuid() != 0:  # root writes anywhere; the missing-folder case above still covers the check
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert "not writable" in refused(setup, locked / "o")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("x")
    result = CliRunner().invoke(main, search_args(setup, taken))
    assert result.exit_code == 2 and "already exists" in result.output
    assert [p.name for p in taken.iterdir()] == ["keep.txt"]


def test_evaluate_is_picklable_deterministic_and_has_a_labelled_variant(setup: dict[str, Path]) -> None:
    import pickle

    from kdnas.candidate import Candidate
    from kdnas.distill import DistillConfig
    from kdnas.evaluate import EvalSettings, evaluate
    from kdnas.reward import quality_from_loss

    settings = EvalSettings(str(setup["teacher"]), str(setup["data"]), proxy_train=16, proxy_held_out=8, seq_len=16,
                            batch_size=8, distill=DistillConfig(steps=3))
    function, copy = pickle.loads(pickle.dumps((evaluate, settings)))  # what a process pool would ship
    candidate = Candidate(1, 16, 2, 32)
    first, second = function(candidate, copy), evaluate(candidate, settings)
    assert (first.proxy_loss, first.parameters) == (second.proxy_loss, second.parameters)
    assert first.quality == quality_from_loss(first.proxy_loss) and first.accuracy is None
    labelled = evaluate(candidate, EvalSettings(**{**settings.__dict__, "objective": "labelled"}))
    assert labelled.accuracy is not None and labelled.quality == labelled.accuracy


def test_compare_summarises_best_reward_per_controller(finished: Path, tmp_path: Path) -> None:
    best_reward = max(r["reward"] for r in read_log(finished))
    result = CliRunner().invoke(main, ["compare", str(finished), str(finished)])
    assert result.exit_code == 0, result.output
    later = [r["reward"] for r in read_log(finished) if r["episode"] > 1]
    assert (f"lstm       best reward {best_reward:.4f} ± 0.0000 over 2 run(s); "
            f"mean reward after episode 1 {sum(later) / len(later):.4f} ± 0.0000") in result.output
    assert CliRunner().invoke(main, ["compare", str(tmp_path)]).exit_code == 2


def test_report_separates_machine_drift_from_the_profile_error(finished: Path) -> None:
    report = (finished / "report.md").read_text()
    assert "reference blocks ran" in report and "corrected for that machine drift the error is" in report


def test_measure_times_a_finished_student_next_to_its_prediction(setup: dict[str, Path], finished: Path,
                                                                 tmp_path: Path) -> None:
    out = tmp_path / "measured.json"
    args = ["measure", str(finished), "--profile", str(setup["profile"]), "--teacher", str(setup["teacher"]),
            "--json", str(out)]
    other = json.loads(setup["profile"].read_text())
    other["backend"]["runtime_version"] = "0.0-elsewhere"
    (tmp_path / "other.json").write_text(json.dumps(other))
    foreign = CliRunner().invoke(main, [*args[:2], "--profile", str(tmp_path / "other.json"), *args[4:]])
    assert foreign.exit_code == 2 and "other hardware or runtime" in foreign.output and not out.exists()
    forced = CliRunner().invoke(main, [*args[:2], "--profile", str(tmp_path / "other.json"), *args[4:], "--force"])
    assert forced.exit_code == 0, forced.output
    assert {row["drift_corrected_error_pct"] for row in json.loads(out.read_text())["rows"]} == {None}, \
        "a difference in runtime is not drift: nothing is corrected for it"
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    rows = {row["model"]: row for row in json.loads(out.read_text())["rows"]}
    assert set(rows) == {str(finished), "teacher"}
    best = max(read_log(finished), key=lambda r: r["reward"])
    assert rows[str(finished)]["predicted_ms"] == pytest.approx(best["predicted_ms"])
    for row in rows.values():
        assert row["measured_median_ms"] > 0 and row["measured_p90_ms"] >= row["measured_median_ms"]
    assert f"| {setup['profile']} | {finished} |" in result.output


def test_measure_refuses_a_folder_without_a_model(setup: dict[str, Path], tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["measure", str(tmp_path), "--profile", str(setup["profile"])])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert f"model {tmp_path}: no config.json there; pass a kdnas run folder" in result.output


@pytest.mark.parametrize("change, needle", [({"vocab_size": 99}, "vocabulary 99 differs from space 'tiny-test'"),
                                            ({"max_position_embeddings": 8}, "8 positions, but space 'tiny-test' "
                                                                             "prices seq_len 16")])
def test_measure_refuses_a_model_the_profile_cannot_price(setup: dict[str, Path], tmp_path: Path, change: dict,
                                                          needle: str) -> None:
    config = BertConfig.from_pretrained(setup["teacher"])
    for key, value in change.items():
        setattr(config, key, value)
    BertModel(config).save_pretrained(tmp_path / "model")
    result = CliRunner().invoke(main, ["measure", str(tmp_path / "model"), "--profile", str(setup["profile"]),
                                       "--force"])
    assert result.exit_code == 2 and needle in result.output and "Traceback" not in result.output, result.output


# --- refused before any work or writing ----------------------------------------------------------------------

KDNAS_EXE = Path(sys.executable).parent / "kdnas"


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def interrupted(finished: Path, out: Path, lines: int = 3) -> Path:
    """The folder a run killed after ``lines`` candidates leaves: its run.json and the first lines of its log."""
    out.mkdir()
    shutil.copy(finished / "run.json", out / "run.json")
    log = (finished / "search.jsonl").read_text().splitlines(keepends=True)
    (out / "search.jsonl").write_text("".join(log[:lines]))
    return out


def without_seconds(log: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in log]


def test_data_too_small_for_the_splits(setup: dict[str, Path], tmp_path: Path) -> None:
    one_row = tmp_path / "one.csv"
    one_row.write_text("text,label\nthe team won the match,sport\n")
    message = refused(setup, tmp_path / "o", "--data", str(one_row))
    assert f"data {one_row}: 1 text(s) leave the" in message and "use a file with more texts" in message


def test_teacher_without_weights(setup: dict[str, Path], tmp_path: Path) -> None:
    teacher = tmp_path / "teacher"
    shutil.copytree(setup["teacher"], teacher)
    for weights in teacher.glob("*.safetensors"):
        weights.unlink()
    message = refused(setup, tmp_path / "o", "--teacher", str(teacher))
    assert f"teacher {teacher}: cannot load the model" in message


@pytest.mark.parametrize("option", ["--budget-ms", "--target-ratio"])
@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "0", "-1"])
def test_targets_that_are_not_positive_finite_are_refused_while_parsing(setup: dict[str, Path], tmp_path: Path,
                                                                        user_error, option: str, value: str) -> None:
    result = CliRunner().invoke(main, search_args(setup, tmp_path / "o", option, value))
    user_error(result, f"'{option}'", f"'{value}' is not a positive, finite number")
    assert not (tmp_path / "o").exists()


def test_measure_never_writes_over_an_input_or_into_a_folder(setup: dict[str, Path], finished: Path,
                                                             tmp_path: Path, user_error) -> None:
    profile = tmp_path / "profile.json"
    shutil.copy(setup["profile"], profile)
    (tmp_path / "sub").mkdir()
    before = snapshot(tmp_path)
    same = tmp_path / "sub" / ".." / "profile.json"  # another spelling of the same file
    result = CliRunner().invoke(main, ["measure", str(finished), "--profile", str(profile), "--json", str(same)])
    user_error(result, f"--json {same} would overwrite --profile {profile}")
    result = CliRunner().invoke(main, ["measure", str(finished), "--profile", str(profile), "--json",
                                       str(tmp_path / "sub")])
    user_error(result, f"--json {tmp_path / 'sub'} is a folder")
    assert snapshot(tmp_path) == before


def test_search_never_writes_over_an_input(setup: dict[str, Path], tmp_path: Path, user_error) -> None:
    out = tmp_path / "o"
    shutil.copytree(setup["teacher"], out / "student")  # the teacher is an earlier run's student
    before = snapshot(tmp_path)
    result = CliRunner().invoke(main, search_args(setup, out, "--teacher", str(out / "student"), "--resume"))
    user_error(result, f"--out's student {out / 'student'} would overwrite --teacher")
    assert snapshot(tmp_path) == before


def test_resume_and_compare_name_a_bad_log_line(setup: dict[str, Path], finished: Path, tmp_path: Path,
                                                user_error) -> None:
    out = interrupted(finished, tmp_path / "run")
    lines = (out / "search.jsonl").read_text().splitlines()
    broken = json.loads(lines[1])
    del broken["reward"]
    (out / "search.jsonl").write_text("\n".join([lines[0], json.dumps(broken), lines[2]]) + "\n")
    before = snapshot(tmp_path)
    for args in (search_args(setup, out, "--resume"), ["compare", str(out)]):
        user_error(CliRunner().invoke(main, args), f"{out / 'search.jsonl'}:2: field 'reward' is missing",
                   "delete that line")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(("text", "needle"), [("[" * 100_000, "nested too deeply"),
                                              ('["lstm"]', "not a JSON object but list"),
                                              ('{"controller": {"kind": null}}', "'controller.kind' must be a string")])
def test_resume_and_compare_name_a_bad_run_json(setup: dict[str, Path], finished: Path, tmp_path: Path, user_error,
                                                text: str, needle: str) -> None:
    out = interrupted(finished, tmp_path / "run")
    (out / "run.json").write_text(text)
    before = snapshot(tmp_path)
    for args in (search_args(setup, out, "--resume"), ["compare", str(out)]):
        user_error(CliRunner().invoke(main, args), f"{out / 'run.json'}: ", needle)
    assert snapshot(tmp_path) == before


def test_a_locked_run_folder_is_refused_naming_the_holder(setup: dict[str, Path], finished: Path, tmp_path: Path,
                                                          user_error) -> None:
    out = interrupted(finished, tmp_path / "run")
    before = snapshot(out)
    with locked(out):
        user_error(CliRunner().invoke(main, search_args(setup, out, "--resume")), str(out),
                   f"in use by another process (PID {os.getpid()}")
    assert snapshot(out) == before


def test_a_second_process_on_a_running_folder_is_refused_and_the_first_loses_nothing(
        setup: dict[str, Path], finished: Path, tmp_path: Path) -> None:
    out = interrupted(finished, tmp_path / "run")
    argv = [str(KDNAS_EXE), *search_args(setup, out, "--resume")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 300
        while not (lock_path(out).is_file() and lock_path(out).read_text().strip() == str(first.pid)):
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first run never took the lock"
            time.sleep(0.01)
        os.kill(first.pid, signal.SIGSTOP)  # it holds the folder, mid-run, while the second one starts
        try:
            before = snapshot(out)
            second = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
            after = snapshot(out)
        finally:
            os.kill(first.pid, signal.SIGCONT)
        stdout, stderr = first.communicate(timeout=600)
    finally:
        first.kill()
    assert second.returncode == 2 and second.stdout == "", second.stderr
    assert second.stderr.splitlines() == [second.stderr.strip()], second.stderr  # one line, no traceback
    assert second.stderr.startswith(f"Error: {out}: in use by another process (PID {first.pid},")
    assert after == before  # the refused one wrote nothing
    assert first.returncode == 0, stderr
    assert stdout.startswith(f"{out}: ") and "3 already done" in stderr
    assert without_seconds(read_log(out)) == without_seconds(read_log(finished))  # no record lost or repeated
    assert (out / "report.md").is_file() and not lock_path(out).exists()


# --- the same search through each executor ----------------------------------------------------------------------


def log_lines(out: Path) -> list[str]:
    """``search.jsonl`` as written, byte for byte, less each line's wall-clock ``seconds``."""
    return [re.sub(r', "seconds": [-+.e0-9]+', "", line) for line in (out / "search.jsonl").read_text().splitlines()]


def parallel_args(setup: dict[str, Path], out: Path, executor: str, *extra: str) -> list[str]:
    """Two workers of one thread each: a candidate gets the thread count of the local run (--threads 1), and
    torch's CPU kernels round differently at other counts."""
    argv = search_args(setup, out, "--executor", executor, "--workers", "2", *extra)
    argv[argv.index("--threads") + 1] = "2"
    return argv


def candidate_name(finished: Path, line: int) -> str:
    return Candidate(**read_log(finished)[line]["candidate"]).name


def dies_in_its_worker(candidate: Candidate, settings: EvalSettings) -> CandidateResult:
    """``evaluate`` in a spawned worker, except that the worker running the candidate named by $KDNAS_TEST_DIES
    exits abruptly: once when $KDNAS_TEST_ONCE names a marker file it then creates, else every time."""
    if candidate.name == os.environ["KDNAS_TEST_DIES"]:
        once = os.environ.get("KDNAS_TEST_ONCE")
        if once is None or not Path(once).exists():
            if once is not None:
                Path(once).touch()
            os._exit(3)
    return evaluate(candidate, settings)


def test_a_process_pool_writes_the_local_log_and_resumes_a_log_with_gaps(setup: dict[str, Path], finished: Path,
                                                                         tmp_path: Path) -> None:
    out = tmp_path / "process"
    result = CliRunner().invoke(main, parallel_args(setup, out, "process"))
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert log_lines(out) == log_lines(finished)  # same records, same order, same bytes
    settings = json.loads((out / "run.json").read_text())
    assert settings.pop("execution") == {"executor": "process", "workers": 2, "threads_per_worker": 1, "retries": 1}
    assert settings == {k: v for k, v in json.loads((finished / "run.json").read_text()).items() if k != "execution"}

    gappy = interrupted(finished, tmp_path / "gappy", lines=4)  # a local run's folder, resumed by a pool
    lines = (gappy / "search.jsonl").read_text().splitlines(keepends=True)
    (gappy / "search.jsonl").write_text(lines[0] + lines[2] + lines[3])  # candidate 2 of episode 1 unfinished
    resumed = CliRunner().invoke(main, parallel_args(setup, gappy, "process", "--resume"))
    assert resumed.exit_code == 0, resumed.output + repr(resumed.exception)
    assert "1 already done" in resumed.output and "2 already done" in resumed.output
    assert log_lines(gappy) == log_lines(finished)


def test_a_worker_that_dies_once_costs_no_candidate(setup: dict[str, Path], finished: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kdnas.search, "evaluate", dies_in_its_worker)
    monkeypatch.setenv("KDNAS_TEST_DIES", candidate_name(finished, 1))
    monkeypatch.setenv("KDNAS_TEST_ONCE", str(tmp_path / "died"))
    result = CliRunner().invoke(main, parallel_args(setup, tmp_path / "o", "process"))
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert (tmp_path / "died").exists() and log_lines(tmp_path / "o") == log_lines(finished)


def test_a_worker_that_always_dies_stops_the_search_with_every_other_candidate_logged(
        setup: dict[str, Path], finished: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dies = candidate_name(finished, 0)
    monkeypatch.setattr(kdnas.search, "evaluate", dies_in_its_worker)
    monkeypatch.setenv("KDNAS_TEST_DIES", dies)
    out = tmp_path / "o"
    result = CliRunner().invoke(main, parallel_args(setup, out, "process"))
    assert result.exit_code == 2, result.output
    error = result.output.strip().splitlines()[-1]
    assert error == (f"Error: candidate {dies} (episode 1, 1/3) failed 2 time(s) (last: BrokenProcessPool: A "
                     "process in the process pool was terminated abruptly while the future was running or pending.); "
                     f"2 finished candidate(s) are in {out / 'search.jsonl'}: fix the cause and pass --resume")
    assert log_lines(out) == log_lines(finished)[1:3] and not (out / "report.md").exists()


def test_a_candidate_that_keeps_raising_stops_the_search_and_resume_finishes_it(
        setup: dict[str, Path], finished: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken, attempts = candidate_name(finished, 1), []

    def raises_for_one(candidate: Candidate, settings: EvalSettings) -> CandidateResult:
        if candidate.name == broken:
            attempts.append(candidate)
            raise RuntimeError("out of memory\nwhile distilling")
        return evaluate(candidate, settings)

    monkeypatch.setattr(kdnas.search, "evaluate", raises_for_one)
    out = tmp_path / "o"
    result = CliRunner().invoke(main, search_args(setup, out, "--retries", "2"))
    assert result.exit_code == 2 and len(attempts) == 3, result.output
    assert result.output.strip().splitlines()[-1].startswith(
        f"Error: candidate {broken} (episode 1, 2/3) failed 3 time(s) (last: RuntimeError: out of memory); 2 "
        "finished candidate(s)")
    assert log_lines(out) == [log_lines(finished)[0], log_lines(finished)[2]]  # the one after it is kept too

    monkeypatch.setattr(kdnas.search, "evaluate", evaluate)
    resumed = CliRunner().invoke(main, search_args(setup, out, "--resume"))
    assert resumed.exit_code == 0, resumed.output
    assert log_lines(out) == log_lines(finished)


def test_ray_with_two_workers_writes_the_local_log_and_resumes(setup: dict[str, Path], finished: Path,
                                                               tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="ray is not installed: pip install 'latlab[ray]' (setup.sh does)")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for out, extra in [(tmp_path / "ray", ()), (interrupted(finished, tmp_path / "resumed", lines=4), ("--resume",))]:
        run = subprocess.run([str(KDNAS_EXE), *parallel_args(setup, out, "ray", *extra)], capture_output=True,
                             text=True, env=env, timeout=600)
        assert run.returncode == 0, run.stderr
        assert "executor ray (local Ray): 2 worker(s) x 1 thread(s)" in run.stderr
        assert log_lines(out) == log_lines(finished)
        assert json.loads((out / "run.json").read_text())["execution"]["executor"] == "ray"


def test_executor_options_are_refused_before_any_work(setup: dict[str, Path], tmp_path: Path, user_error) -> None:
    user_error(CliRunner().invoke(main, search_args(setup, tmp_path / "o", "--ray-address", "auto")),
               "--ray-address applies to --executor ray, not local")
    user_error(CliRunner().invoke(main, search_args(setup, tmp_path / "o", "--executor", "process", "--workers", "2")),
               "--workers 2 is more than the 1 CPU thread(s) of this run")
    assert not (tmp_path / "o").exists()
