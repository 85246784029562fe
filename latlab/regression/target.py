"""What a model given to the ``latency`` fixture resolves to, and how a backend prepares it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from latlab.backend import Backend, Runner, Settings
from latlab.errors import LatlabError

if TYPE_CHECKING:  # architectures are data, but only a test that times one needs them
    from latlab.architecture import Architecture

    ModelLike = torch.nn.Module | Architecture | dict | str | Path
Inputs = torch.Tensor | Sequence[torch.Tensor] | None


@dataclass(frozen=True)
class Target:
    """A model resolved to what a backend can prepare: a torch module or an ONNX file, with its inputs."""

    label: str
    module: torch.nn.Module | None
    onnx_path: str | None
    inputs: tuple[torch.Tensor, ...]
    batch: int
    seq_len: int


def arch_label(arch: Architecture) -> str:
    layers = ",".join(f"{a}/{f}" for a, f in zip(arch.heads, arch.ffn))
    return f"arch h{arch.hidden} L{arch.layers} [{layers}] s{arch.seq_len} b{arch.batch}"


def as_architecture(model: Architecture | dict | str | Path) -> Architecture:
    from latlab.architecture import Architecture, load_architecture

    if isinstance(model, Architecture):
        return model
    return Architecture.from_json(model) if isinstance(model, dict) else load_architecture(model)


def resolve(model: ModelLike, inputs: Inputs) -> Target:
    """A torch module + inputs, an ``.onnx`` path + inputs, or an Architecture (object, JSON dict or file)."""
    given = (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs) if inputs is not None else None
    if isinstance(model, (str, Path)) and str(model).endswith(".onnx"):
        if not Path(model).is_file():
            raise LatlabError(f"{model}: ONNX file not found")
        if not given:
            raise LatlabError(f"{model}: an ONNX model needs example inputs")
        return Target(f"onnx {Path(model).name}", None, str(model), given, *_shape(given))
    if isinstance(model, torch.nn.Module):
        if not given:
            raise LatlabError(f"{type(model).__name__}: a torch module needs example inputs")
        return Target(type(model).__name__, model.eval(), None, given, *_shape(given))
    from latlab.architecture import Architecture
    from latlab.modules import build_model

    if isinstance(model, (Architecture, dict, str, Path)):
        if given is not None:
            raise LatlabError("an architecture builds its own inputs from its batch and seq_len; pass no inputs")
        arch = as_architecture(model)
        module, built = build_model(arch)
        return Target(arch_label(arch), module, None, built, arch.batch, arch.seq_len)
    raise LatlabError(f"cannot time a {type(model).__name__}: pass a torch module with example inputs, an .onnx "
                      "path with example inputs, or a latlab Architecture (or its JSON)")


def _shape(inputs: tuple[torch.Tensor, ...]) -> tuple[int, int]:
    """(batch, seq_len) read from the first input, 0 where it has no such dimension."""
    shape = tuple(inputs[0].shape)
    return (shape[0] if shape else 0), (shape[1] if len(shape) > 1 else 0)


def prepare(backend: Backend, target: Target, settings: Settings) -> Runner:
    """The backend refuses what it cannot load (``prepare_onnx`` on a backend without ONNX) in one line."""
    if target.module is not None:
        return backend.prepare(target.module, target.inputs, settings)
    return backend.prepare_onnx(target.onnx_path, target.inputs, settings)
