"""Which teacher hidden states each student hidden state learns from. Index 0 is the embeddings' output,
index i the output of layer i, as in Hugging Face ``output_hidden_states``.

- ``uniform``: student layer i learns teacher layer i*k with stride k = teacher_layers // student_layers
  (TinyBERT's spacing); when the depths do not divide, the student's last layer misses the teacher's last.
- ``last``: only the final layers (MiniLM's choice), so the student is free in between.
- ``uniform+last``: uniform plus (last, last): the final representation is always matched, and the last
  student layer then learns from two teacher layers when uniform did not already give it the last one.

The embeddings pair (0, 0) is part of every mapping.
"""

from __future__ import annotations

MAPPINGS = ("uniform", "last", "uniform+last")


def layer_map(student_layers: int, teacher_layers: int, strategy: str = "uniform+last") -> tuple[tuple[int, int], ...]:
    """Pairs (student hidden-state index, teacher hidden-state index), embeddings first, sorted."""
    if strategy not in MAPPINGS:
        raise ValueError(f"unknown layer mapping {strategy!r}; choose one of {', '.join(MAPPINGS)}")
    if student_layers < 1 or teacher_layers < 1:
        raise ValueError("both models need at least one layer")
    stride = max(1, teacher_layers // student_layers)
    uniform = {(i, min(i * stride, teacher_layers)) for i in range(1, student_layers + 1)}
    last = {(student_layers, teacher_layers)}
    chosen = {"uniform": uniform, "last": last, "uniform+last": uniform | last}[strategy]
    return tuple(sorted({(0, 0)} | chosen))
