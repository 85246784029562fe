"""What a finished search leaves for people: ``pareto.png`` and ``report.md``."""

from __future__ import annotations

import io
import json
from pathlib import Path

from kdnas.final import FinalResult
from kdnas.measure import Timing
from kdnas.run_folder import LOG_FILE, PLOT_FILE, REPORT_FILE, Record
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
    ax.set(xlabel="predicted latency (ms)", ylabel="proxy quality", title=title)
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7, loc="lower right")
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


def report_markdown(plan: SearchPlan, profile: Profile, records: list[Record], chosen: Record, final: FinalResult,
                    teacher_predicted: float | None) -> str:
    s_ms = final.student_ms.median_ms if final.student_ms else None
    t_ms = final.teacher_ms.median_ms if final.teacher_ms else None
    latency = final.latency
    speed_pred = f"{teacher_predicted / chosen.predicted_ms:.2f}x" if teacher_predicted else "n/a"
    speed_meas = f"{t_ms / s_ms:.2f}x" if s_ms and t_ms else "n/a"
    acc = lambda a: f"{a * 100:.1f}%" if a is not None else "n/a"  # noqa: E731
    lines = [
        f"# KD-NAS search: {chosen.candidate.name}",
        "",
        f"Profile `{plan.profile_path}`: {profile.label}, device {profile.settings.device}, space "
        f"`{plan.space.name}`, priced at seq_len {plan.space.seq_len[-1]}, batch {plan.space.batch[0]}.",
        "",
        "| | teacher | student | student / teacher |",
        "|---|---|---|---|",
        f"| parameters (encoder) | {final.teacher_parameters:,} | {final.student_parameters:,} | "
        f"{pct(final.student_parameters, final.teacher_parameters)} |",
        f"| predicted ms | {ms(teacher_predicted)} | {ms(chosen.predicted_ms)} | speedup {speed_pred} |",
        f"| measured median ms | {ms(t_ms)} | {ms(s_ms)} | speedup {speed_meas} |",
        f"| test accuracy | {acc(final.teacher_accuracy)} | {acc(final.student_accuracy)} | "
        f"{pct(final.student_accuracy, final.teacher_accuracy)} of teacher |",
        "",
        latency_sentence(chosen.predicted_ms, latency) if latency else f"Latency not measured: {final.not_measured}.",
        f"Reward target {plan.reward.target_ms:.3f} ms"
        + (f", hard budget {plan.reward.budget_ms:.3f} ms" if plan.reward.budget_ms is not None else "") + ".",
        f"Full distillation: {final.distill_steps} steps, held-out normalised loss {final.held_out_loss:.3f} "
        f"(proxy loss in the search {chosen.proxy_loss:.3f}); final stage {final.seconds:.0f} s.",
        "",
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


def write_report(out: Path, text: str) -> None:
    write_text(out / REPORT_FILE, text)
