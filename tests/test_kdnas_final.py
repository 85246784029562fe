"""The final recipe's parts on toy models: the soft-label loss, early stopping that keeps the best epoch, and the
choice of hand-designed baselines at the winner's latency, and the verdict against them."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from kdnas.candidate import Candidate
from kdnas.final import SeedResult, Trained, baseline_candidates, rival_candidates, rival_name
from kdnas.finetune import TaskConfig, accuracy, task_loss, train_task
from kdnas.report import comparisons
from kdnas.run_folder import Record
from kdnas.sweep import Point, front
from latlab.errors import LatlabError


class Toy(nn.Module):
    """A classifier of the first token: learns ``label = token % 2`` in a few steps."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.table = nn.Embedding(16, 2)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> SimpleNamespace:
        return SimpleNamespace(logits=self.table(input_ids[:, 0]))


def labelled(flip: bool = False, count: int = 8) -> list:
    generator = torch.Generator().manual_seed(1)
    out = []
    for _ in range(count):
        ids = torch.randint(0, 16, (8, 4), generator=generator)
        labels = ids[:, 0] % 2
        out.append((ids, torch.ones_like(ids), 1 - labels if flip else labels))
    return out


def test_the_soft_label_term_is_zero_when_the_student_already_matches_the_teacher() -> None:
    logits, labels = torch.tensor([[2.0, -1.0], [0.5, 0.3]]), torch.tensor([0, 1])
    hard = nn.functional.cross_entropy(logits, labels)
    assert task_loss(logits, labels, None, TaskConfig(soft_weight=0.5)) == pytest.approx(float(hard))
    assert task_loss(logits, labels, logits, TaskConfig(soft_weight=0.5)) == pytest.approx(0.5 * float(hard), abs=1e-6)
    other = torch.tensor([[-2.0, 1.0], [0.5, 0.3]])  # a teacher that disagrees pulls the loss up
    assert task_loss(logits, labels, other, TaskConfig(soft_weight=0.5)) > 0.5 * float(hard) + 0.1


def test_training_stops_after_patience_epochs_without_progress_and_keeps_the_best_epoch() -> None:
    train, wrong = labelled(), labelled(flip=True)  # validation labels are the opposite: learning makes it worse
    model = Toy()
    outcome = train_task(model, train, wrong, TaskConfig(max_epochs=10, patience=2, lr=0.5))
    assert len(outcome.validation) == outcome.best_epoch + 2 < 10  # stopped early, two epochs after its best
    assert outcome.steps == len(outcome.validation) * len(train)
    assert outcome.validation_accuracy == max(outcome.validation)
    assert accuracy(model, wrong) == pytest.approx(outcome.validation_accuracy)  # the best epoch's weights came back


def test_training_that_keeps_improving_runs_every_epoch_and_a_share_of_an_epoch_is_honoured() -> None:
    train = labelled()
    outcome = train_task(Toy(), train, train, TaskConfig(max_epochs=3, patience=3, lr=0.5))
    assert len(outcome.validation) == 3 and outcome.steps == 3 * len(train)
    assert outcome.validation_accuracy == 1.0
    part = train_task(Toy(), train, train, TaskConfig(max_epochs=0.25, lr=0.5))
    assert part.steps == 2 and len(part.validation) == 1


def test_the_same_seed_trains_the_same_weights() -> None:
    first, second = Toy(), Toy()
    for model in (first, second):
        train_task(model, labelled(), labelled(), TaskConfig(max_epochs=2, lr=0.1, seed=3))
    assert torch.equal(first.table.weight, second.table.weight)


def test_baselines_are_the_teacher_cut_in_depth_and_in_width_closest_to_the_winners_latency() -> None:
    teacher = Candidate(6, 384, 12, 1536)
    priced = {Candidate(layers, hidden, heads, ffn): layers * (hidden * ffn) / 1e5
              for layers in range(1, 7) for hidden, heads, ffn in ((384, 12, 1536), (256, 4, 1024), (128, 2, 512),
                                                                   (128, 4, 512))}
    winner = Candidate(2, 256, 4, 1024)  # 5.24 "ms"
    picked = baseline_candidates(winner, teacher, priced)
    assert picked["fewer layers"] == Candidate(1, 384, 12, 1536)  # 5.90: the closest of the teacher's width
    # 6 x 128 x 512 = 3.93 either way: the tie goes to more heads, never to the order of the dict
    assert picked["narrower"] == Candidate(6, 128, 4, 512)


def test_a_space_without_the_teachers_shape_cannot_give_baselines() -> None:
    priced = {Candidate(2, 128, 2, 512): 1.0, Candidate(6, 128, 2, 512): 3.0}
    with pytest.raises(LatlabError, match="fewer layers.*teacher L6-h384-a12-f1536"):
        baseline_candidates(Candidate(2, 128, 2, 512), Candidate(6, 384, 12, 1536), priced)


def record(candidate: Candidate, ms: float, quality: float) -> Record:
    return Record(1, 0, candidate, {}, 1, ms, 1 - quality, quality, None, quality, 1.0)


def test_a_baseline_faster_than_the_winner_faces_the_best_searched_student_no_slower_than_it() -> None:
    winner, teacher = Candidate(4, 256, 2, 256), Candidate(6, 384, 12, 1536)
    fast, slow = Candidate(1, 384, 12, 1536), Candidate(6, 192, 2, 256)
    priced = {winner: 6.3, fast: 5.8, slow: 6.4}
    searched = [record(winner, 6.3, 0.49), record(Candidate(4, 192, 4, 512), 5.6, 0.40),
                record(Candidate(3, 192, 8, 256), 3.8, 0.35), record(Candidate(4, 256, 4, 256), 6.6, 0.50)]
    rivals = rival_candidates(searched, winner, {"fewer layers": fast, "narrower": slow}, priced)
    # the narrower baseline is no faster than the winner: the winner itself faces it, so it has no rival
    assert rivals == {"fewer layers": Candidate(4, 192, 4, 512)}
    assert rival_candidates(searched[2:3], winner, {"fewer layers": fast}, priced) == {
        "fewer layers": Candidate(3, 192, 8, 256)}
    assert rival_candidates([record(winner, 6.3, 0.49)], winner, {"fewer layers": fast}, priced) == {}


def trained(candidate: Candidate, *accuracies: float) -> Trained:
    return Trained(candidate, tuple(SeedResult(i, 0.5, None, a) for i, a in enumerate(accuracies)), None, 1, 1)


def result(ms: dict[str, float], student: Trained, baselines: dict[str, Trained],
           rivals: dict[str, Trained]) -> SimpleNamespace:
    rows = {name: SimpleNamespace(measured=SimpleNamespace(median_ms=value)) for name, value in ms.items()}
    return SimpleNamespace(trained=student, baselines=baselines, rivals=rivals, latency=SimpleNamespace(rows=rows))


def test_a_baseline_is_beaten_only_at_equal_or_lower_latency_and_beyond_the_seeds_spread() -> None:
    student = trained(Candidate(4, 256, 2, 256), 0.785, 0.756, 0.781)
    fewer, narrower = trained(Candidate(1, 384, 12, 1536), 0.738, 0.738, 0.746), trained(Candidate(6, 192, 2, 256),
                                                                                        0.724, 0.781, 0.763)
    rival = trained(Candidate(4, 192, 4, 512), 0.770, 0.775, 0.780)
    ms = {"student": 6.98, "fewer layers": 6.37, "narrower": 7.20, rival_name("fewer layers"): 6.30}
    found = {c["family"]: c for c in comparisons(result(ms, student, {"fewer layers": fewer, "narrower": narrower},
                                                        {"fewer layers": rival}))}
    assert found["fewer layers"]["searched"] == "L4-h192-a4-f512"
    assert found["fewer layers"]["verdict"].startswith("beats it") and found["fewer layers"]["p"] < 0.05
    assert found["narrower"]["searched"] == "L4-h256-a2-f256"  # the winner, faster than this baseline
    assert found["narrower"]["verdict"] == "no slower and more accurate, within the seeds' spread"
    slower = comparisons(result({**ms, rival_name("fewer layers"): 6.40}, student, {"fewer layers": fewer},
                                {"fewer layers": rival}))
    assert slower[0]["verdict"] == "slower than the baseline"  # predicted no slower is not enough: measured decides
    without_rival = comparisons(result(ms, student, {"fewer layers": fewer}, {}))
    assert without_rival[0]["searched"] == "L4-h256-a2-f256"
    assert without_rival[0]["verdict"] == "slower than the baseline"


def test_a_rival_is_a_searched_student_on_the_latency_accuracy_front() -> None:
    point = lambda model, ms, accuracy: Point("run", model, "arch", ms, accuracy, None)  # noqa: E731
    rival = point(rival_name("fewer layers"), 6.0, 0.72)
    winner, baseline = point("student", 7.0, 0.77), point("fewer layers", 6.1, 0.74)
    assert front([winner, rival, baseline]) == [rival, winner]  # the faster baseline is no point of the front
