"""One place that builds onnxruntime sessions, so every model runs with the same settings."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import List

import onnxruntime as ort

log = logging.getLogger(__name__)


class DeviceUnavailableError(RuntimeError):
    """The requested execution provider is not present in this onnxruntime build."""


@dataclass(frozen=True)
class RuntimeOptions:
    """How models are executed.

    ``intra_op_threads`` is the reference's ``--model-thread-num``: the number of
    threads one onnxruntime call may use.  Concurrency *between* calls comes from
    the server's decoder pool, so the default stays at 1.
    """

    device: str = "cpu"  # "cpu" or "cuda"
    device_id: int = 0
    intra_op_threads: int = 1


def available_providers() -> List[str]:
    return list(ort.get_available_providers())


def create_session(model_path: Path, options: RuntimeOptions = RuntimeOptions()) -> ort.InferenceSession:
    """Open ``model_path`` with the provider and thread settings of ``options``."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, int(options.intra_op_threads))
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    if options.device == "cuda":
        if "CUDAExecutionProvider" not in available_providers():
            raise DeviceUnavailableError(
                "CUDA was requested but this onnxruntime build has no CUDAExecutionProvider "
                f"(available: {', '.join(available_providers())}). Install the 'gpu' extra "
                "(onnxruntime-gpu) with a matching CUDA/cuDNN, or run on the CPU."
            )
        providers: list = [
            ("CUDAExecutionProvider", {"device_id": str(options.device_id)}),
            "CPUExecutionProvider",
        ]
    elif options.device == "cpu":
        providers = ["CPUExecutionProvider"]
    else:
        raise ValueError(f"unknown device {options.device!r}; expected 'cpu' or 'cuda'")
    session = ort.InferenceSession(str(model_path), sess_options=so, providers=providers)
    if options.device == "cuda" and "CUDAExecutionProvider" not in session.get_providers():
        # onnxruntime-gpu falls back to the CPU (with only a log line) when CUDA or cuDNN
        # libraries are missing; a server asked to use the GPU must not do that silently.
        raise DeviceUnavailableError(
            f"CUDA was requested but onnxruntime could not use it for {model_path.name} "
            "(CUDA or cuDNN libraries missing or mismatched?); run without --device cuda to use the CPU."
        )
    log.debug("loaded %s on %s", model_path, session.get_providers())
    return session
