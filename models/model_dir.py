"""Model files inside a local model directory: the ONNX graph to open, and the error for what is missing.

Finding or downloading the directory itself is the server's job (:mod:`server.model_dirs`).
"""
from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


class ModelDirError(RuntimeError):
    """A model directory could not be found, downloaded, or lacks a required file."""


def pick_onnx_file(model_dir: Path, quantized: bool, stem: str = "model") -> Path:
    """``<stem>_quant.onnx`` when ``quantized`` (falling back with a warning), else ``<stem>.onnx``."""
    plain = model_dir / f"{stem}.onnx"
    quant = model_dir / f"{stem}_quant.onnx"
    if quantized:
        if quant.is_file():
            return quant
        log.warning("%s not found, using %s instead", quant, plain.name)
    if plain.is_file():
        return plain
    if quant.is_file():
        log.warning("%s not found, using %s instead", plain, quant.name)
        return quant
    raise ModelDirError(f"model directory {model_dir} has neither {plain.name} nor {quant.name}")


__all__ = ["ModelDirError", "pick_onnx_file"]
