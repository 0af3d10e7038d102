"""What the server is compared with: FunASR's own Python runtime, and the models alone.

* :func:`funasr_onnx_throughput`: the same offline chain through ``funasr_onnx``
  (``Fsmn_vad`` → ``Paraformer`` per segment → ``CT_Transformer``, no ITN), C
  worker processes with one intra-op thread each (what the server gives each
  call), models loaded before the clock starts.
* :func:`floor_throughput`: every onnxruntime call our pipeline makes for the
  corpus, recorded once and replayed on C threads with the same sessions: the
  cost of the models alone, which no server running them can beat.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, Iterator, List, Sequence, Tuple

import numpy as np

from benchmarks import corpus
from benchmarks.server_process import ASR, PUNC, VAD

# ---------------------------------------------------------------------------------------- funasr-onnx

_peer: Dict[str, Any] = {}


def _peer_init(model_root: str, quantize: bool, files: List[str]) -> None:
    from funasr_onnx import CT_Transformer, Fsmn_vad, Paraformer

    root = Path(model_root)
    _peer["vad"] = Fsmn_vad(str(root / VAD), quantize=quantize, intra_op_num_threads=1)
    _peer["asr"] = Paraformer(str(root / ASR), batch_size=1, quantize=quantize, intra_op_num_threads=1)
    _peer["punc"] = CT_Transformer(str(root / PUNC), quantize=quantize, intra_op_num_threads=1)
    _peer["waves"] = corpus.load([Path(f) for f in files])
    _peer_transcribe(0)  # warm up


def _peer_transcribe(i: int) -> str:
    wave = _peer["waves"][i]
    segments = _peer["vad"](wave)[0] if wave.size else []
    texts = []
    for start, end in segments:
        piece = wave[int(start) * 16 : int(end) * 16]
        if piece.size:
            texts.append(_peer["asr"](piece)[0]["preds"])
    texts = [t if isinstance(t, str) else t[0] for t in texts]
    joined = "".join(texts)
    return _peer["punc"](joined)[0] if joined else ""


@contextlib.contextmanager
def funasr_onnx_workers(model_root: Path, quantize: bool, files: Sequence[Path], workers: int) -> Iterator[Any]:
    """``workers`` funasr-onnx processes with their models loaded (and warmed up), for :func:`funasr_onnx_throughput`."""
    ctx = multiprocessing.get_context("spawn")
    init = (str(model_root), quantize, [str(f) for f in files])
    with ctx.Pool(workers, initializer=_peer_init, initargs=init) as pool:
        pool.map(time.sleep, [0.0] * workers * 4, chunksize=1)  # every worker has loaded its models
        yield pool


def funasr_onnx_throughput(pool: Any, jobs: Sequence[int], audio_seconds: float) -> float:
    """Audio seconds per wall second of the pool's funasr-onnx processes sharing the job list."""
    start = time.perf_counter()
    list(pool.imap_unordered(_peer_transcribe, jobs, chunksize=1))
    return audio_seconds / (time.perf_counter() - start)


# ---------------------------------------------------------------------------------------- floor

Call = Tuple[Any, Any, Dict[str, np.ndarray]]


class _Recorder:
    """Stands in for an onnxruntime session: forwards every call and keeps its inputs."""

    def __init__(self, session, calls: List[Call], lock: threading.Lock):
        self._session, self._calls, self._lock = session, calls, lock

    def run(self, output_names, feeds, *args, **kwargs):
        with self._lock:
            self._calls.append((self._session, output_names, {k: np.array(v, copy=True) for k, v in feeds.items()}))
        return self._session.run(output_names, feeds, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._session, name)


def record_model_calls(model_root: Path, quantize: bool, waves: Sequence[np.ndarray]) -> List[List[Call]]:
    """Our offline pipeline on each waveform, once (no ITN); every onnxruntime call it made, per file."""
    from funasr_wss.server.model_loader import load_offline_pipeline
    from funasr_wss.server.settings import ServerSettings

    settings = ServerSettings(model_dir=str(model_root / ASR), vad_dir=str(model_root / VAD), punc_dir=str(model_root / PUNC),
                              quantize=quantize, vad_quant=quantize, punc_quant=quantize, model_thread_num=1)
    pipeline = load_offline_pipeline(settings)
    per_file = []
    lock = threading.Lock()
    for wave in waves:
        calls: List[Call] = []
        originals = []
        for holder in (pipeline.asr, pipeline.vad, pipeline.punctuator):
            if holder is not None:
                originals.append((holder, holder.session))
                holder.session = _Recorder(holder.session, calls, lock)
        pipeline.transcribe(wave, use_itn=False)
        for holder, session in originals:
            holder.session = session
        per_file.append(calls)
    return per_file


def floor_throughput(per_file: List[List[Call]], jobs: Sequence[int], concurrency: int, audio_seconds: float) -> float:
    """Audio seconds per wall second of the recorded calls alone, replayed on ``concurrency`` threads."""
    def replay(i: int) -> None:
        for session, names, feeds in per_file[i]:
            session.run(names, feeds)

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(replay, jobs[:concurrency]))  # warm up
        start = time.perf_counter()
        list(pool.map(replay, jobs))
        return audio_seconds / (time.perf_counter() - start)
