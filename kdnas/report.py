"""What a finished search leaves for people: ``pareto.png`` and ``report.md``."""

from __future__ import annotations

import io
import json
from pathlib import Path

from kdnas.final import BASELINE_FAMILIES, FinalResult, Trained, rival_name
from kdnas.measure import Timing
from kdnas.run_folder import FINAL_FILE, LOG_FILE, PLOT_FILE, REPORT_FILE, Record
from kdnas.search import SearchPlan
from latlab.atomic import write_bytes, write_text
from latlab.profile import Profile


def pareto_front(records: list[Record]) -> list[Record]:
    """Candidates no other candidate beats on both predicted latency (lower) and quality (higher)."""
    front, best_quality = [], float("-inf")
    for record in sorted(records, key=lambda r: (r.predicted_ms, -r.quality)):
        if record.quality > best_quality:
            front.append(record)
            best_quality = record.quality
    return front


def plot_pareto(records: list[Record], chosen: Record, plan: SearchPlan, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    front = pareto_front(records)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.scatter([r.predicted_ms for r in records], [r.quality for r in records], s=16, c=[r.episode for r in records],
               cmap="viridis", label="candidates (colour: episode)")
    ax.plot([r.predicted_ms for r in front], [r.quality for r in front], color="black", lw=1, marker="o",
            mfc="none", label="Pareto front")
    ax.scatter([chosen.predicted_ms], [chosen.quality], marker="*", s=180, color="red", label=f"best reward {chosen.candidate.name}")
    ax.axvline(plan.reward.target_ms, color="grey", ls="--", lw=1, label="reward target")
    if plan.reward.budget_ms is not None:
        ax.axvline(plan.reward.budget_ms, color="red", ls=":", lw=1, label="hard budget")
    ax.set(xlabel="predicted latency (ms)", ylabel="proxy quality")
    save_figure(fig, ax, title, 7, path)


def save_figure(fig: object, ax: object, title: str, legend_size: int, path: Path) -> None:
    """Small title, legend at the lower right, PNG written whole (write then rename)."""
    import matplotlib.pyplot as plt

    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=legend_size, loc="lower right")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    write_bytes(path, buffer.getvalue())


def flatten(data: dict, prefix: str = "") -> list[tuple[str, str]]:
    """Nested settings as dotted keys, lists inline: every constant of the run, one per line."""
    rows: list[tuple[str, str]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            rows += flatten(value, f"{prefix}{key}.")
        else:
            rows.append((f"{prefix}{key}", json.dumps(value)))
    return rows


def pct(part: float | None, whole: float | None) -> str:
    return f"{part / whole * 100:.1f}%" if part is not None and whole else "n/a"


def signed_pct(value: float | None) -> str:
    return f"{value:+.1f}%" if value is not None else "n/a"


def ms(value: float | None) -> str:
    return f"{value:.3f}" if value is not None else "n/a"


def accuracy_text(mean: float | None, sd: float | None = None) -> str:
    if mean is None:
        return "n/a"
    return f"{mean * 100:.1f}%" + (f" ± {sd * 100:.1f}" if sd is not None else "")


def seeds_text(trained: Trained, what: str) -> str:
    """Per seed, in seed order: ``loss`` (held-out hidden-state loss) or ``test`` (test accuracy)."""
    values = [f"{s.held_out_loss:.3f}" if what == "loss" else accuracy_text(s.test_accuracy) for s in trained.seeds]
    return ", ".join(values)


def latency_sentence(predicted_ms: float, latency: Timing) -> str:
    measured = latency.rows["student"].measured
    found = (f"Student predicted vs measured: {signed_pct(latency.error_pct('student'))} (predicted {predicted_ms:.3f} "
             f"ms, measured median {measured.median_ms:.3f} ms, p90 {measured.p90_ms:.3f} ms). ")
    if latency.foreign:
        return found + (f"The profile was measured on other hardware or runtime ({'; '.join(latency.foreign)}): the "
                        "gap is that difference, not machine drift, and no drift correction applies. Measure a "
                        "profile on this machine to target it.")
    return found + (f"The profile's reference blocks ran {signed_pct(latency.drift_pct)} against the profile in the "
                    f"same rounds; corrected for that machine drift the error is "
                    f"{signed_pct(latency.error_pct('student', drift_corrected=True))}.")


def model_rows(final: FinalResult) -> list[dict]:
    """Teacher, student and baselines side by side: what ``final.json`` holds and the report's comparison shows."""
    timed = final.latency.rows if final.latency else {}
    teacher_ms = timed["teacher"].measured.median_ms if "teacher" in timed else None
    rows = []
    for name, trained in {"student": final.trained, **final.baselines,
                          **{rival_name(family): t for family, t in final.rivals.items()}}.items():
        row = timed.get(name)
        rows.append({"model": name, "architecture": trained.candidate.name, "parameters": trained.parameters,
                     "predicted_ms": row.predicted_ms if row else None,
                     "measured_median_ms": row.measured.median_ms if row else None,
                     "measured_speedup": teacher_ms / row.measured.median_ms if row and teacher_ms else None,
                     "test_accuracy": trained.accuracy, "test_accuracy_sd": trained.accuracy_sd,
                     "test_accuracy_per_seed": trained.accuracies,
                     "of_teacher": trained.accuracy / final.teacher_accuracy
                     if trained.accuracy is not None and final.teacher_accuracy else None})
    return rows


def comparisons(final: FinalResult) -> list[dict]:
    """Per baseline: does a searched student beat it at equal or lower measured latency? The winner faces it,
    or, where the baseline is faster than the winner, the searched student at its latency (``rival_candidates``).
    "beats" needs the accuracy gain beyond the seeds' spread (Welch's t-test, p < 0.05), not only a higher mean."""
    from scipy.stats import ttest_ind

    timed = final.latency.rows if final.latency else {}
    found = []
    for family, baseline in final.baselines.items():
        name = rival_name(family) if family in final.rivals else "student"
        rival = final.rivals.get(family, final.trained)
        rival_ms = timed[name].measured.median_ms if name in timed else None
        baseline_ms = timed[family].measured.median_ms if family in timed else None
        gain = (rival.accuracy - baseline.accuracy if rival.accuracy is not None and baseline.accuracy is not None
                else None)
        spread = (len(rival.accuracies) > 1 and len(baseline.accuracies) > 1
                  and bool(rival.accuracy_sd or baseline.accuracy_sd))  # identical seeds: t is undefined
        t, p = ttest_ind(rival.accuracies, baseline.accuracies, equal_var=False) if spread else (None, None)
        if rival_ms is None or baseline_ms is None or gain is None:
            verdict = "not decided: latency or accuracy not measured"
        elif rival_ms > baseline_ms:
            verdict = "slower than the baseline"
        elif gain <= 0:
            verdict = "no slower, but not more accurate"
        elif p is None or p >= 0.05:
            verdict = "no slower and more accurate, within the seeds' spread"
        else:
            verdict = "beats it: no slower and more accurate beyond the seeds' spread"
        found.append({"family": family, "baseline": baseline.candidate.name, "searched_model": name,
                      "searched": rival.candidate.name, "baseline_ms": baseline_ms, "searched_ms": rival_ms,
                      "accuracy_gain": gain, "welch_t": None if t is None else float(t),
                      "p": None if p is None else float(p), "verdict": verdict})
    return found


def final_json(final: FinalResult) -> dict:
    timed = final.latency.rows if final.latency else {}
    return {"teacher": {"parameters": final.teacher_parameters, "test_accuracy": final.teacher_accuracy,
                        "predicted_ms": timed["teacher"].predicted_ms if "teacher" in timed else None,
                        "measured_median_ms": timed["teacher"].measured.median_ms if "teacher" in timed else None},
            "models": model_rows(final), "drift_pct": final.latency.drift_pct if final.latency else None,
            "comparisons": comparisons(final), "tested_on": final.test_source, "not_measured": final.not_measured,
            "seconds": final.seconds}


def comparison_lines(final: FinalResult) -> list[str]:
    """The student against the hand-designed baselines (``--baselines``), all timed in the same rounds."""
    if not final.baselines:
        return []
    lines = ["## Against hand-designed students at the same latency", "",
             "| model | architecture | parameters | predicted ms | measured median ms | measured speedup | "
             "test accuracy | of teacher |", "|---|---|---|---|---|---|---|---|"]
    for row in model_rows(final):
        speedup = f"{row['measured_speedup']:.2f}x" if row["measured_speedup"] else "n/a"
        lines.append(f"| {row['model']} | {row['architecture']} | {row['parameters']:,} | {ms(row['predicted_ms'])} | "
                     f"{ms(row['measured_median_ms'])} | {speedup} | "
                     f"{accuracy_text(row['test_accuracy'], row['test_accuracy_sd'])} | "
                     f"{'n/a' if row['of_teacher'] is None else format(row['of_teacher'], '.1%')} |")
    lines += ["", *(f"- {family}: {why}" for family, why in BASELINE_FAMILIES.items())]
    if final.rivals:
        lines.append("- searched, no slower than a baseline: where that baseline runs faster than the winner, the "
                     "searched candidate with the best proxy quality among those predicted no slower than it")
    lines += ["", f"Test accuracy on {final.test_source}.", "",
              "Verdict, per baseline (measured in the same rounds; Welch's t over the seeds' test accuracies):", ""]
    for c in comparisons(final):
        gain = "n/a" if c["accuracy_gain"] is None else f"{c['accuracy_gain'] * 100:+.1f} points"
        test = "" if c["p"] is None else f", t {c['welch_t']:.2f}, p {c['p']:.3f}"
        lines.append(f"- {c['family']} ({c['baseline']}, {ms(c['baseline_ms'])} ms) against {c['searched']} "
                     f"({ms(c['searched_ms'])} ms): {gain}{test}: {c['verdict']}")
    return lines + [""]


def report_markdown(plan: SearchPlan, profile: Profile, records: list[Record], chosen: Record, final: FinalResult,
                    teacher_predicted: float | None) -> str:
    s_ms = final.student_ms.median_ms if final.student_ms else None
    t_ms = final.teacher_ms.median_ms if final.teacher_ms else None
    latency = final.latency
    speed_pred = f"{teacher_predicted / chosen.predicted_ms:.2f}x" if teacher_predicted else "n/a"
    speed_meas = f"{t_ms / s_ms:.2f}x" if s_ms and t_ms else "n/a"
    trained = final.trained
    lines = [
        f"# KD-NAS search: {chosen.candidate.name}",
        "",
        f"Profile `{plan.profile_path}`: {profile.label}, device {profile.settings.device}, space "
        f"`{plan.space.name}`, priced at seq_len {plan.space.seq_len[-1]}, batch {plan.space.batch[0]}.",
        "",
        "| | teacher | student | student / teacher |",
        "|---|---|---|---|",
        f"| parameters (encoder) | {final.teacher_parameters:,} | {trained.parameters:,} | "
        f"{pct(trained.parameters, final.teacher_parameters)} |",
        f"| predicted ms | {ms(teacher_predicted)} | {ms(chosen.predicted_ms)} | speedup {speed_pred} |",
        f"| measured median ms | {ms(t_ms)} | {ms(s_ms)} | speedup {speed_meas} |",
        f"| test accuracy | {accuracy_text(final.teacher_accuracy)} | "
        f"{accuracy_text(trained.accuracy, trained.accuracy_sd)} | {pct(trained.accuracy, final.teacher_accuracy)} "
        "of teacher |",
        "",
        latency_sentence(chosen.predicted_ms, latency) if latency else f"Latency not measured: {final.not_measured}.",
        f"Reward target {plan.reward.target_ms:.3f} ms"
        + (f", hard budget {plan.reward.budget_ms:.3f} ms" if plan.reward.budget_ms is not None else "") + ".",
        f"Final recipe ({len(trained.seeds)} seed(s); the teacher fine-tuned once): hidden-state distillation "
        f"{trained.distill_steps} steps per seed, held-out normalised loss {seeds_text(trained, 'loss')} (proxy loss "
        f"in the search {chosen.proxy_loss:.3f}); test accuracy (on {final.test_source}) per seed "
        f"{seeds_text(trained, 'test')}; the saved and "
        f"timed student is the seed with the best validation accuracy. Final stage {final.seconds:.0f} s.",
        "",
        *comparison_lines(final),
        "## Settings",
        "",
        f"- {plan.reward.describe()}",
        f"- episodes {plan.episodes} x {plan.candidates} candidates, controller `{plan.controller.kind}`",
        "",
        *(f"- `{key}`: {value}" for key, value in flatten(plan.to_json())),
        "",
        "## Top candidates (by reward)",
        "",
        "| episode | candidate | parameters | predicted ms | proxy loss | quality | reward |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in sorted(records, key=lambda r: -r.reward)[:10]:
        lines.append(f"| {r.episode} | {r.candidate.name} | {r.parameters:,} | {r.predicted_ms:.3f} | "
                     f"{r.proxy_loss:.3f} | {r.quality:.3f} | {r.reward:.4f} |")
    lines += ["", f"All {len(records)} candidates are in `{LOG_FILE}`; the plot is `{PLOT_FILE}`.", ""]
    return "\n".join(lines)


def write_report(out: Path, text: str, final: FinalResult) -> None:
    write_text(out / REPORT_FILE, text)
    write_text(out / FINAL_FILE, json.dumps(final_json(final), indent=1) + "\n")
