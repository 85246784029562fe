"""What the search chooses: a uniform student (one heads/ffn value for every layer) inside a latlab space.

Students are Hugging Face ``BertConfig`` models, and a ``BertConfig`` has one ``num_attention_heads`` and one
``intermediate_size`` for all layers, so a candidate is four numbers. latlab prices it as an ``Architecture``
whose per-layer tuples repeat those numbers.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

from latlab.architecture import Architecture
from latlab.space import SearchSpace

FIELDS = ("layers", "hidden", "heads", "ffn")


@dataclass(frozen=True, order=True)
class Candidate:
    layers: int
    hidden: int
    heads: int
    ffn: int

    @property
    def name(self) -> str:
        return f"L{self.layers}-h{self.hidden}-a{self.heads}-f{self.ffn}"

    def architecture(self, space: SearchSpace) -> Architecture:
        """Priced at the space's deployment shape: its largest seq_len and smallest batch."""
        return Architecture(hidden=self.hidden, heads=(self.heads,) * self.layers, ffn=(self.ffn,) * self.layers,
                            seq_len=space.seq_len[-1], batch=space.batch[0], labels=space.labels, vocab=space.vocab)

    @classmethod
    def of(cls, arch: Architecture) -> Candidate:
        """A uniform architecture (as a BertConfig builds, e.g. the teacher) as a candidate."""
        return cls(arch.layers, arch.hidden, arch.heads[0], arch.ffn[0])

    def to_json(self) -> dict[str, int]:
        return asdict(self)


def all_candidates(space: SearchSpace) -> list[Candidate]:
    """Every uniform student of the space (heads must divide hidden), in a fixed order."""
    return [Candidate(layers, hidden, heads, ffn)
            for layers in space.layers for hidden in space.hidden
            for heads in space.heads_for(hidden) for ffn in space.ffn]


def choices(space: SearchSpace) -> dict[str, tuple[int, ...]]:
    """The values each field may take: the vocabulary of the controller's encoding."""
    return {"layers": space.layers, "hidden": space.hidden, "heads": space.heads, "ffn": space.ffn}


def encode(candidate: Candidate, space: SearchSpace) -> list[int]:
    """One token per field, each the index of its value among the field's choices (the LSTM's input sequence)."""
    table = choices(space)
    return [table[f].index(getattr(candidate, f)) for f in FIELDS]


def neighbours(candidate: Candidate, space: SearchSpace) -> list[Candidate]:
    """Candidates that differ in exactly one field (heads still dividing hidden)."""
    found = []
    for field, values in choices(space).items():
        for value in values:
            child = Candidate(**{**asdict(candidate), field: value})
            if child != candidate and child.hidden % child.heads == 0:
                found.append(child)
    return found


def mutate(candidate: Candidate, space: SearchSpace, rng: random.Random) -> Candidate:
    """Evolution's step: a random one-field change; the candidate itself when the space allows none."""
    return rng.choice(neighbours(candidate, space) or [candidate])
