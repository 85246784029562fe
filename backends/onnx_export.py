"""Export a torch module to an in-memory ONNX model for the exact shapes it will be timed at."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings

import torch

from latlab.errors import LatlabError


def export_onnx(module: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> bytes:
    """The dynamo exporter (torch's default); static shapes, since profiles are per exact shape."""
    try:
        import onnxscript  # noqa: F401  (the dynamo exporter needs it; say so plainly if it is missing)
    except ImportError:
        raise LatlabError("ONNX export needs onnxscript: pip install 'latlab[onnxruntime]'") from None
    # The exporter logs about optional torchvision ops and constant folding; none of it concerns a user here.
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            program = torch.onnx.export(module, example_inputs, dynamo=True, external_data=False, verbose=False)
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)
    return program.model_proto.SerializeToString()
