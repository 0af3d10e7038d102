"""The server under test as its own process, as users run it: the benchmark's clients never share its GIL."""
from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]

ASR = "speech_paraformer-large-vad-punc_asr_nat-zh-cn-16k-common-vocab8404-onnx"
ONLINE = "speech_paraformer-large_asr_nat-zh-cn-16k-common-vocab8404-online-onnx"
VAD = "speech_fsmn_vad_zh-cn-16k-common-onnx"
PUNC = "punc_ct-transformer_zh-cn-common-vocab272727-onnx"
PUNC_REALTIME = "punc_ct-transformer_zh-cn-common-vad_realtime-vocab272727-onnx"
LM = "speech_ngram_lm_zh-cn-ai-wesp-fst"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    """Resident memory of process ``pid`` (Linux)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def server_command(model_root: Path, profile: str, quantize: bool, decoder_threads: int, port: int,
                   extra: Optional[List[str]] = None, lm_dir: Optional[Path] = None) -> List[str]:
    """``funasr-wss-server`` on the official directory names under ``model_root``.

    ``--lm-dir none`` unless ``lm_dir`` is given: the server's default LM is the
    reference's ModelScope id, which would make every section measure WFST
    decoding (or a download) instead of what it was written to measure.
    """
    model_root = Path(model_root).resolve()  # the server runs from the project root
    q = "true" if quantize else "false"
    cmd = [sys.executable, "-m", "funasr_wss.server", "--listen-ip", "127.0.0.1", "--port", str(port),
           "--model-dir", str(model_root / ASR), "--vad-dir", str(model_root / VAD),
           "--quantize", q, "--vad-quant", q, "--punc-quant", q,
           "--decoder-thread-num", str(decoder_threads), "--log-level", "WARNING",
           "--lm-dir", str(Path(lm_dir).resolve()) if lm_dir else "none"]
    if profile == "2pass":
        cmd += ["--online-model-dir", str(model_root / ONLINE), "--punc-dir", str(model_root / PUNC_REALTIME)]
    else:
        cmd += ["--punc-dir", str(model_root / PUNC)]
    return cmd + (extra or [])


@contextlib.contextmanager
def running_server(model_root: Path, profile: str = "offline", quantize: bool = False, decoder_threads: int = 2,
                   extra: Optional[List[str]] = None,
                   lm_dir: Optional[Path] = None) -> Iterator[Tuple[subprocess.Popen, int]]:
    """Start the server, wait for ``/health``, yield (process, port); stop it with SIGTERM after.

    ``lm_dir``: decode through that n-gram LM; None: ``--lm-dir none``."""
    port = free_port()
    with tempfile.TemporaryDirectory() as certs:
        cmd = server_command(model_root, profile, quantize, decoder_threads, port, ["--self-signed-dir", certs] + (extra or []),
                             lm_dir)
        proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
        try:
            _wait_healthy(proc, port)
            yield proc, port
        finally:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()


def _wait_healthy(proc: subprocess.Popen, port: int, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the server did not become healthy")
