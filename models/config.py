"""Reading a FunASR model directory's ``config.yaml``."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

import yaml


def load_config(model_dir: Path) -> Dict[str, Any]:
    """Return the parsed ``config.yaml`` of ``model_dir`` (an empty dict when absent).

    FunASR's exports carry the training config verbatim; only a handful of
    sections (``frontend_conf``, ``model_conf``, ``encoder_conf`` ...) matter
    for inference, and callers pick what they need.
    """
    path = Path(model_dir) / "config.yaml"
    if not path.is_file():
        return {}
    with path.open("r", encoding="utf-8") as f:
        data = yaml.safe_load(f)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data
