"""``kdnas pareto``: one search per latency budget, then measured latency against test accuracy for every winner,
with the teacher and any hand-designed baselines on the same axes.

Each budget has its own run folder (``budget-<ms>ms``), so a stopped sweep resumes: a finished folder (it has
``final.json``) is read, an unfinished one is resumed, a missing one is searched.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from kdnas.final import RIVAL_PREFIX
from kdnas.report import save_figure
from kdnas.run import Say, SearchRequest, search_and_distill
from kdnas.run_folder import FINAL_FILE, RUN_FILE, TEACHER_DIR
from latlab.atomic import write_text
from latlab.errors import LatlabError

PLOT, TABLE = "pareto.png", "pareto.md"


@dataclass(frozen=True)
class Point:
    run: str
    model: str  # "student", a baseline family, a rival (``rival_name``) or "teacher"
    architecture: str
    measured_ms: float
    accuracy: float
    accuracy_sd: float | None


def budget_folder(out: Path, budget_ms: float) -> Path:
    return out / f"budget-{budget_ms:g}ms"


def sweep(request: SearchRequest, budgets: list[float], out: Path, say: Say) -> list[Path]:
    """Search every budget not finished yet; ``request`` holds every other option of ``kdnas search``."""
    if not out.parent.is_dir():
        raise LatlabError(f"--out {out}: folder {out.parent} does not exist; create it or choose another --out")
    if out.exists() and not out.is_dir():
        raise LatlabError(f"--out {out}: is a file, not a folder; choose another --out")
    created = not out.exists()
    out.mkdir(exist_ok=True)
    try:
        folders = [search_budget(request, budgets[0], out, say)]
        shared = replace(request, tuned_teacher=str(folders[0] / TEACHER_DIR))  # fine-tuned once for the sweep
        return folders + [search_budget(shared, budget, out, say) for budget in budgets[1:]]
    finally:
        if created and not any(out.iterdir()):  # the first search was refused: leave nothing behind
            out.rmdir()


def search_budget(request: SearchRequest, budget: float, out: Path, say: Say) -> Path:
    """A finished folder is read back, an interrupted one resumed, a missing one searched."""
    folder = budget_folder(out, budget)
    if (folder / FINAL_FILE).is_file():
        say(f"budget {budget:g} ms: finished in {folder}")
    else:
        say(f"budget {budget:g} ms: searching in {folder}")
        search_and_distill(replace(request, budget_ms=budget, target_ratio=None, out=str(folder),
                                   resume=(folder / RUN_FILE).is_file()), say)
    return folder


def points(folder: Path) -> list[Point]:
    """What a finished run measured: its student, its baselines and its teacher (each only when timed)."""
    path = folder / FINAL_FILE
    try:
        figures = json.loads(path.read_text())
        found = [Point(str(folder), row["model"], row["architecture"], row["measured_median_ms"], row["test_accuracy"],
                       row["test_accuracy_sd"]) for row in figures["models"]]
        teacher = figures["teacher"]
        found.append(Point(str(folder), "teacher", "teacher", teacher["measured_median_ms"], teacher["test_accuracy"],
                           None))
    except FileNotFoundError:
        raise LatlabError(f"{folder}: no {FINAL_FILE}; pass a finished kdnas run folder") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise LatlabError(f"{path}: not a kdnas {FINAL_FILE} ({exc!r}); run the search again to rewrite it") from None
    return [p for p in found if p.measured_ms is not None and p.accuracy is not None]


def searched(point: Point) -> bool:
    """A student the search found: a run's winner, or the one it set against a faster baseline."""
    return point.model == "student" or point.model.startswith(RIVAL_PREFIX)


def front(found: list[Point]) -> list[Point]:
    """Searched students no other searched student beats on both measured latency and accuracy."""
    best, kept = float("-inf"), []
    for point in sorted((p for p in found if searched(p)), key=lambda p: (p.measured_ms, -p.accuracy)):
        if point.accuracy > best:
            kept.append(point)
            best = point.accuracy
    return kept


def table(found: list[Point]) -> str:
    lines = ["| run | model | architecture | measured ms | test accuracy |", "|---|---|---|---|---|"]
    for p in sorted(found, key=lambda p: (not searched(p), p.measured_ms)):
        sd = f" ± {p.accuracy_sd:.1%}" if p.accuracy_sd is not None else ""
        lines.append(f"| {p.run} | {p.model} | {p.architecture} | {p.measured_ms:.3f} | {p.accuracy:.1%}{sd} |")
    return "\n".join(lines) + "\n"


def plot(found: list[Point], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    styles = {"student": ("o", "tab:blue", "KD-NAS students"), "fewer layers": ("s", "tab:orange", "fewer layers"),
              "narrower": ("^", "tab:green", "narrower"), "teacher": ("*", "red", "teacher")}
    for model, (marker, colour, label) in styles.items():
        group = [p for p in found if (searched(p) if model == "student" else p.model == model)]
        if not group:
            continue
        seen = {(p.measured_ms, p.accuracy): p for p in group}.values()  # one teacher per run folder, often the same
        ax.errorbar([p.measured_ms for p in seen], [p.accuracy * 100 for p in seen],
                    yerr=[(p.accuracy_sd or 0) * 100 for p in seen], fmt=marker, color=colour, ms=9 if model == "teacher" else 6,
                    capsize=3, label=label)
    line = front(found)
    ax.plot([p.measured_ms for p in line], [p.accuracy * 100 for p in line], color="tab:blue", lw=1)
    ax.set(xscale="log", xlabel="measured latency (ms, log scale)", ylabel="test accuracy (%)")
    save_figure(fig, ax, title, 8, path)


def write_pareto(folders: list[Path], title: str, out: Path) -> list[Point]:
    found = [p for folder in folders for p in points(folder)]
    if not found:
        raise LatlabError(f"none of {', '.join(map(str, folders))} has measured latency and accuracy to plot")
    plot(found, title, out / PLOT)
    write_text(out / TABLE, table(found))
    return found
