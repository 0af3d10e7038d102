"""A randomised protocol fuzzer: hostile clients against both profiles, bounded and seeded.

Each test runs one *batch* of random cases against a server with small limits (see
:data:`LIMITS`).  A case is one connection and a list of client actions (text frames,
binary frames, a text frame that is not UTF-8, a pause, vanishing without a close
frame, closing, half-closing).  Unless the connection is gone, every case ends with the
*sync*: two end signals with ``"is_end": true``, the second one named ``fuzz-sync``, whose
acknowledgements (replies with ``"is_end": true``) the protocol promises in every state;
once the named one has arrived, every reply to the case's earlier frames has too (one
connection's frames are answered in order).

Batches:

* ``json``: configurations of random fields and random-typed values (huge integers
  written as digits, NaN/Infinity, lone surrogates, control characters, long strings,
  arrays and objects nested up to thousands deep), unknown fields, non-object JSON,
  invalid and truncated JSON, JSON in binary frames, text frames over the limits, a text
  frame that is not UTF-8.  After the sync, a clean utterance on the same connection must
  give the reference text (a bad frame changes nothing that a full configuration does not
  reset).
* ``hotwords``: hotwords as JSON object strings, plain words with every separator, weights
  of every type, thousands of words, long words, nested arrays.  Also run against servers
  whose offline model takes hotwords (SeACo on the offline profile, contextual on 2pass).
* ``containers``: real audio files (encoded here with PyAV from a fixture clip) mutated
  (bit flips, truncation, splices, WAV/FLAC/MP4 header fields set to 0, 1, 4e9 ...), and
  bodies that are not audio at all (ffconcat, SDP, HLS playlists, images, random bytes).
  The bodies that name a fixture file or a local port must read nothing: no text, no
  connection to the trap listener.  Exactly one answer per end signal.
* ``orders``: valid frames in random orders (audio before the configuration, end signals
  twice, ``is_end``, odd-length and empty PCM frames, mode changes, vanishing or closing
  mid-utterance); the sequence of final messages and acknowledgements must be exactly the
  one the protocol predicts.
* ``limits``: one utterance clearly under or over a limit of :data:`LIMITS` (seconds of PCM
  at 1 to 384 kHz, bytes as stored, files that decode too long, files over the byte cap):
  over it, exactly one error that names the limit, and the usual one answer per end signal.

Every case checks: every reply is a JSON text frame of a known shape; the server closes,
if at all, with a close frame and a legitimate code (never 1011); the sync is acknowledged;
no ERROR log record (from any logger but our own client's).  While a batch runs, a
well-behaved bystander client keeps getting the reference result on its own connections.
After every batch: the server thread is alive, ``/health`` says ok, no session, job or
buffered audio is left, and a fresh client gets the reference results recorded before the
batch.

Seeds: every test has a fixed seed (printed at its start and in every failure);
``FUZZ_SEED=<n>`` replaces it, ``FUZZ_CASES=<n>`` changes the cases per batch (60),
``FUZZ_SECONDS=<s>`` the time after which a batch starts no new case (6), and ``FUZZ_CASE=<k>``
runs only case ``k`` (each case draws from its own RNG, seeded by the test's seed and its
index, so a case replays alone).  A failing case is shrunk (actions removed one at a time,
then long payloads halved, while it still fails; bounded) and reported with its problems and
its minimal action list.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from funasr_wss.server.session import SessionLimits
from tests.harness import ServerThread, fixture_settings, fixture_settings_2pass
from tests.helpers import encode_audio, wav_pcm
from tests.paths import ASR_CONTEXTUAL_DIR, ASR_SEACO_DIR, AUDIO
from tests.test_server_robustness import wait_until

# ---------------------------------------------------------------------------------- bounds

LIMITS = SessionLimits(
    max_utterance_seconds=20,
    max_utterance_bytes=4 << 20,
    max_text_bytes=64 << 10,
    max_decode_seconds=5,
    idle_timeout=5,
)
MAX_MESSAGE = 1 << 20
CASES = int(os.environ.get("FUZZ_CASES", "60"))
ONLY_CASE = os.environ.get("FUZZ_CASE")
#: A batch starts no new case after this many seconds (the cases it ran are printed).
BATCH_SECONDS = float(os.environ.get("FUZZ_SECONDS", "6"))
#: How long a case waits for the acknowledgement of its sync (decoding included).
SYNC_TIMEOUT = 10.0
#: Shrinking a failure: at most this many re-runs, this much time, this many failures per batch.
SHRINK_RUNS, SHRINK_SECONDS, SHRUNK_FAILURES = 40, 5.0, 3

#: Close codes a server may use on a hostile client; 1011 (internal error) is a bug.
LEGIT_CLOSE = {1000, 1001, 1002, 1003, 1007, 1008, 1009}
SYNC = '{"is_speaking": false, "is_end": true}'
#: Sent right after SYNC: its acknowledgement is told apart by its name (an earlier end signal of the
#: case may have asked for an acknowledgement too, and SYNC's echoes the name its utterance began with).
SYNC_NAME = "fuzz-sync"
SYNC_MARK = '{"is_speaking": false, "is_end": true, "wav_name": "fuzz-sync"}'
CHUNK = [5, 10, 5]
END_SIGNALS = ['{"is_speaking": false}', '{"is_speaking": false, "is_end": true}', '{"is_finished": true}',
               '{"is_finished": true, "is_end": true}', '{"is_speaking": false, "is_finished": true}']
NOT_END_SIGNALS = ['{"is_end": true}', '{"is_speaking": true}', '{"is_finished": false}', "{}"]
CLIP = "zh05_BAC009S0724W0121.wav"  # 4.3 s, 16 kHz mono
SPEECH_FILE = AUDIO / "zh01_asr_example_zh.wav"  # what the file-reading bodies name
#: In the tiny models' vocabulary (tests/test_server_hotwords.py); OOV: none of its characters is.
VOCAB_WORDS = ["腊棉", "孔眙铟", "敉春罍窳", "砦秕"]
OOV = "阿里巴巴"


def seed_for(name: str) -> int:
    env = os.environ.get("FUZZ_SEED")
    return int(env) if env else zlib.crc32(f"funasr-fuzz/{name}".encode())


# ---------------------------------------------------------------------------------- audio


PCM = wav_pcm(CLIP)
SPEECH_1S = np.frombuffer(PCM[: 2 * 16000], "<i2").astype(np.float32) / 32768.0


def encode(fmt: str, codec: str, wave_: np.ndarray = SPEECH_1S, rate: int = 16000, out_rate: int = 16000,
           layout: str = "mono") -> bytes:
    """A file made with PyAV's encoders, in memory."""
    channels = 2 if layout == "stereo" else 1
    return encode_audio(np.tile(wave_.astype(np.float32), (channels, 1)), fmt, codec, rate, out_rate, layout)


def wav_bytes(samples: np.ndarray, rate: int = 16000, channels: int = 1) -> bytes:
    """A canonical 44-byte-header WAV by hand (int16 → PCM, uint8 → 8-bit, float → IEEE float)."""
    samples = np.ascontiguousarray(samples)
    tag = 3 if samples.dtype.kind == "f" else 1
    bits = samples.dtype.itemsize * 8
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    data = samples.astype(samples.dtype.newbyteorder("<"), copy=False).tobytes()
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def build_files() -> Dict[str, Tuple[bytes, str, bool]]:
    """name → (bytes, the wav_format a client would say, whether it is valid audio the server accepts)."""
    s16 = (SPEECH_1S * 32767).astype("<i2")
    nan = SPEECH_1S.copy()
    nan[::97] = np.nan
    inf = SPEECH_1S.copy()
    inf[5] = np.inf
    files = {
        "wav_s16": (wav_bytes(s16), "wav", True),
        "wav_u8": (wav_bytes((SPEECH_1S * 127 + 128).astype(np.uint8)), "wav", True),
        "wav_f32": (wav_bytes(SPEECH_1S.astype("<f4")), "wav", True),
        "wav_f64": (wav_bytes(SPEECH_1S.astype("<f8")), "wav", True),
        "wav_stereo": (wav_bytes(np.repeat(s16, 2), channels=2), "wav", True),
        "wav_8k": (wav_bytes(s16[::2], rate=8000), "wav", True),
        "wav_nan": (wav_bytes(nan.astype("<f4")), "wav", False),
        # legal float WAVs whose samples are far outside [-1, 1]: finite, and the models must not see them as NaN
        "wav_f32_huge": (wav_bytes((SPEECH_1S * np.float32(1e38)).astype("<f4")), "wav", False),
        "wav_f64_huge": (wav_bytes((SPEECH_1S.astype(np.float64) * 1e300).astype("<f8")), "wav", False),
        "wav_inf": (wav_bytes(inf.astype("<f8")), "wav", False),
        "wav_alaw": (encode("wav", "pcm_alaw"), "wav", True),
        "wav_adpcm": (encode("wav", "adpcm_ima_wav"), "wav", True),
        "flac": (encode("flac", "flac"), "flac", True),
        "mp3": (encode("mp3", "libmp3lame"), "mp3", True),
        "ogg_opus": (encode("ogg", "libopus", out_rate=48000), "ogg", True),
        "adts": (encode("adts", "aac"), "aac", True),
        "mp4": (encode("mp4", "aac"), "m4a", True),
        "mkv_flac": (encode("matroska", "flac"), "webm", True),
        "aiff": (encode("aiff", "pcm_s16be"), "aiff", True),
        "au": (encode("au", "pcm_mulaw"), "au", True),
        "caf": (encode("caf", "alac"), "caf", True),
        "mp2": (encode("mp2", "mp2"), "mp3", True),
        "wavpack": (encode("wv", "wavpack"), "wv", False),  # not an accepted container: an error is fine
        "mp4_stereo": (encode("mp4", "aac", layout="stereo"), "mp4", True),
    }
    return files


# ---------------------------------------------------------------------------------- the trap


class Trap:
    """A TCP listener on loopback that container bodies point at: nobody may ever connect."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.hits: List[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            with conn:
                conn.settimeout(0.5)
                with contextlib.suppress(OSError):
                    self.hits.append(f"{peer}: {conn.recv(200)!r}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


# ---------------------------------------------------------------------------------- logs


class ErrorRecords(logging.Handler):
    """Every record at ERROR or above, from any thread."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.records: List[logging.LogRecord] = []
        self._lock_ = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock_:
            self.records.append(record)

    def since(self, n: int) -> List[logging.LogRecord]:
        with self._lock_:
            return [r for r in self.records[n:] if not r.name.startswith("websockets.client")]

    def mark(self) -> int:
        with self._lock_:
            return len(self.records)


def describe_record(r: logging.LogRecord) -> str:
    text = f"{r.levelname} {r.name}: {r.getMessage()}"
    if r.exc_info and r.exc_info[1] is not None:
        text += f" [{type(r.exc_info[1]).__name__}: {str(r.exc_info[1])[:300]}]"
    return text


# ---------------------------------------------------------------------------------- a case

Action = Tuple[Any, ...]
# ("text", str)        a text frame
# ("binary", bytes)    a binary frame
# ("raw", bytes)       a text frame whose payload is not UTF-8
# ("pause", seconds)
# ("abort",)           vanish: TCP reset, no close frame
# ("shutdown",)        shutdown(SHUT_RDWR) of the socket, no close frame
# ("close",)           a normal close frame mid-case


@dataclass
class Case:
    batch: str
    actions: List[Action]
    meta: Dict[str, Any] = field(default_factory=dict)


@dataclass
class Outcome:
    frames: List[Any] = field(default_factory=list)  # what came back, str or bytes
    replies: List[Any] = field(default_factory=list)  # the frames parsed (None where they do not parse)
    server_closed: bool = False  # the server ended the connection (close frame or not)
    close_code: Optional[int] = None  # of the server's close frame
    close_reason: str = ""
    gone: bool = False  # we vanished or closed ourselves
    sync_sent: bool = False
    synced: bool = False
    sync_seconds: float = 0.0
    probe: Optional[List[Any]] = None  # the replies to the clean utterance after the sync
    error_logs: List[str] = field(default_factory=list)


def strict_json(text: str) -> Any:
    def no_constant(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=no_constant)


def probe_actions() -> List[Action]:
    """A clean utterance whose configuration sets every field that changes a result."""
    config = {"mode": "offline", "wav_name": "probe", "wav_format": "pcm", "audio_fs": 16000, "itn": True,
              "svs_lang": "auto", "svs_itn": True, "is_speaking": True}
    return [("text", json.dumps(config)), ("binary", PCM), ("text", SYNC)]


def project(msgs: List[Any]) -> List[Any]:
    """What must be the same between a fresh connection and a reused one (not the sentence counter)."""
    keys = ("mode", "text", "is_final", "timestamp", "stamp_sents", "start_time", "end_time", "error", "warning", "is_end")
    return [{k: m[k] for k in keys if k in m} if isinstance(m, dict) else m for m in msgs]


def open_client(url: str):
    return connect(url, max_size=None, max_queue=None, compression=None, proxy=None, open_timeout=10, close_timeout=3,
                   ping_interval=None)


class Client:
    def __init__(self, ws):
        self.ws = ws
        self.out = Outcome()

    def _take(self, msg) -> Any:
        self.out.frames.append(msg)
        try:
            parsed = strict_json(msg) if isinstance(msg, str) else None
        except (ValueError, RecursionError):
            parsed = None
        self.out.replies.append(parsed)
        return parsed

    def drain(self) -> None:
        while True:
            try:
                self._take(self.ws.recv(timeout=0))
            except TimeoutError:
                return

    def until_ack(self, timeout: float, name: Optional[str] = None) -> bool:
        """Read until an acknowledgement (named ``name`` when given) arrives."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                msg = self._take(self.ws.recv(timeout=left))
            except TimeoutError:
                return False
            if isinstance(msg, dict) and msg.get("is_end") is True and name in (None, msg.get("wav_name")):
                return True

    def note_close(self) -> None:
        self.out.server_closed = True
        rcvd = self.ws.protocol.close_rcvd
        if rcvd is not None:
            self.out.close_code, self.out.close_reason = rcvd.code, rcvd.reason

    def vanish(self, how: str) -> None:
        self.out.gone = True
        sock = self.ws.socket
        with contextlib.suppress(OSError):
            if how == "abort":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
            else:
                sock.shutdown(socket.SHUT_RDWR)
        if how != "abort":
            with contextlib.suppress(Exception):
                self.ws.close()


def run_case(url: str, case: Case, probe: bool) -> Outcome:
    with open_client(url) as ws:
        client = Client(ws)
        _run(client, case, probe)
    return client.out


def _run(client: Client, case: Case, probe: bool) -> None:
    ws, out = client.ws, client.out
    try:
        for action in case.actions:
            kind = action[0]
            if kind in ("abort", "shutdown"):
                client.vanish(kind)
                return
            if kind == "close":
                client.drain()
                out.gone = True
                ws.close()
                return
            if kind == "pause":
                time.sleep(action[1])
            elif kind == "text":
                ws.send(action[1])
            elif kind == "binary":
                ws.send(action[1], text=False)
            elif kind == "raw":
                ws.send(action[1], text=True)
            else:  # pragma: no cover
                raise AssertionError(f"unknown action {kind}")
            client.drain()
        started = time.monotonic()
        ws.send(SYNC)
        ws.send(SYNC_MARK)
        out.sync_sent = True
        out.synced = client.until_ack(SYNC_TIMEOUT, SYNC_NAME)
        out.sync_seconds = time.monotonic() - started
        if out.synced and probe:
            n = len(out.frames)
            for kind, payload in probe_actions():
                ws.send(payload, text=kind == "text")
            if client.until_ack(SYNC_TIMEOUT, "probe"):
                out.probe = out.replies[n:]
            else:
                out.probe = ["no acknowledgement"] + out.replies[n:]
        ws.close()
        out.gone = True
    except ConnectionClosed:
        if not out.gone:
            client.note_close()
    finally:
        if not out.gone and not out.server_closed:
            with contextlib.suppress(Exception):
                ws.close()


# ---------------------------------------------------------------------------------- oracles

#: An error quotes a client's value cut short (tests/test_hostile_input.py: "the bad value is not echoed back
#: whole"); a warning names at most 20 dropped hotwords, each cut short, so neither comes near these.
MAX_ERROR_CHARS, MAX_WARNING_CHARS = 2000, 4000
MODES = {"offline": {"offline"}, "2pass": {"offline", "online", "2pass", "2pass-online", "2pass-offline"}}


def shape_problems(profile: str, msg: Any) -> List[str]:
    if not isinstance(msg, dict):
        return [f"reply is not a JSON object: {msg!r:.200}"]
    p = []
    if not isinstance(msg.get("is_final"), bool):
        p.append("no boolean is_final")
    for key in ("mode", "wav_name", "text", "error", "warning", "timestamp"):
        if key in msg and not isinstance(msg[key], str):
            p.append(f"{key} is not a string")
    if isinstance(msg.get("mode"), str) and msg["mode"] not in MODES[profile]:
        p.append(f"unknown mode {msg['mode']!r}")
    result_shape = {"mode", "wav_name", "text"} <= msg.keys()
    if "error" in msg:
        if not msg["error"]:
            p.append("empty error")
        if len(str(msg["error"])) > MAX_ERROR_CHARS:
            p.append(f"error of {len(str(msg['error']))} characters: the client's input echoed back")
        if msg.get("is_final") is not True and not result_shape:
            p.append("an error that is neither final nor a result")
    elif not result_shape:
        p.append("neither an error nor a result")
    if len(str(msg.get("warning", ""))) > MAX_WARNING_CHARS:
        p.append(f"warning of {len(str(msg['warning']))} characters: the client's input echoed back")
    if "is_end" in msg and (msg["is_end"] is not True or msg.get("text") != ""):
        p.append("odd end acknowledgement")
    if isinstance(msg.get("timestamp"), str):
        try:
            stamps = strict_json(msg["timestamp"])
            assert isinstance(stamps, list)
            for s in stamps:
                assert isinstance(s, list) and len(s) == 2 and all(type(v) is int for v in s) and 0 <= s[0] <= s[1]
        except (ValueError, AssertionError):
            p.append(f"bad timestamp {msg['timestamp']!r:.200}")
    sents = msg.get("stamp_sents", [])
    if not (isinstance(sents, list) and all(isinstance(s, dict) for s in sents)):
        p.append("bad stamp_sents")
    return [f"{x}: {json.dumps(msg, ensure_ascii=False)[:300]}" for x in p]


def _json_object(text: str) -> Optional[dict]:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def is_end_signal(obj: dict) -> bool:
    return obj.get("is_speaking", True) is False or obj.get("is_finished", False) is True


def predicted_sequence(profile: str, actions: List[Action]) -> List[str]:
    """The finals and acknowledgements that valid frames in this order must get, the sync included.

    Only for the ``orders`` and ``containers`` batches, whose text frames are all valid.
    2pass profile: every text frame in a streaming mode without a chunk size is answered with an
    error; otherwise each end signal gets one final (none when the utterance failed already: its
    error was final), and a container file in a streaming mode fails at its first frame.
    Offline profile: each end signal gets one result.  ``is_end`` adds an acknowledgement.
    """
    seq: List[str] = []
    mode, chunk, fmt = "2pass", None, "pcm"
    configured = failed = utterance = False
    for action in list(actions) + [("text", SYNC), ("text", SYNC_MARK)]:
        if action[0] == "binary":
            if profile == "2pass" and configured and not failed and not utterance:
                if mode in ("online", "2pass") and (fmt.strip().lower() or "pcm") != "pcm":
                    seq.append("error")
                    failed = True
                else:
                    utterance = True
            continue
        if action[0] != "text":
            continue
        obj = _json_object(action[1])
        assert obj is not None, action
        if "mode" in obj:
            mode = obj["mode"] if obj["mode"] in ("offline", "online", "2pass") else "2pass"
        if "chunk_size" in obj:
            chunk = obj["chunk_size"]
        if "wav_format" in obj:
            fmt = obj["wav_format"]
        end = is_end_signal(obj)
        ack = end and obj.get("is_end") is True
        if profile == "offline":
            seq += ["result"] * end + ["ack"] * ack
            continue
        if mode in ("online", "2pass") and chunk is None:
            seq += ["error"] + ["ack"] * ack
            configured = failed = utterance = False
            continue
        configured = True
        if end:
            seq += ["final"] * (not failed) + ["ack"] * ack
            failed = utterance = False
    return seq


def observed_sequence(profile: str, replies: List[Any]) -> List[str]:
    seq = []
    for m in replies:
        if not isinstance(m, dict):
            continue
        if m.get("is_end") is True:
            seq.append("ack")
        elif profile == "offline":
            if "error" in m and "timestamp" not in m and m.get("is_final") is True:
                seq.append("error")
            elif m.get("mode") == "offline":
                seq.append("result")
        elif m.get("is_final") is True:
            seq.append("error" if "error" in m and _is_protocol_error(m) else "final")
    return seq


def _is_protocol_error(m: dict) -> bool:
    """A 2pass error that stands for the final (bad configuration, PCM only), not a final carrying an error."""
    return "chunk_size" in m["error"] or "ONLY SUPPORT PCM" in m["error"]


def case_problems(profile: str, case: Case, out: Outcome) -> List[str]:
    p: List[str] = []
    for frame, reply in zip(out.frames, out.replies):
        if not isinstance(frame, str):
            p.append(f"a binary frame from the server: {frame[:60]!r}")
        elif reply is None:
            p.append(f"a reply that is not JSON: {frame[:200]!r}")
        else:
            p += shape_problems(profile, reply)
    if out.server_closed:
        if out.close_code is None:
            p.append("the server dropped the connection without a close frame")
        elif out.close_code not in LEGIT_CLOSE:
            p.append(f"the server closed with {out.close_code} {out.close_reason!r}")
        elif out.sync_sent and not out.synced and out.close_code in (1000, 1001):
            # not a refusal of a frame: it closed (the idle timeout, say) while it owed the sync's reply
            p.append(f"the server closed with {out.close_code} {out.close_reason!r} instead of acknowledging the sync")
    elif not out.gone:
        p.append("the case ended without closing")  # pragma: no cover
    vanished = any(a[0] in ("abort", "shutdown", "close") for a in case.actions)
    if not out.server_closed and not vanished and not out.synced:
        p.append(f"no acknowledgement of the sync within {SYNC_TIMEOUT:.0f} s")
    if case.meta.get("exact") and out.synced:
        want, got = predicted_sequence(profile, case.actions), observed_sequence(profile, out.replies)
        if want != got:
            p.append(f"finals/acknowledgements {got}, the protocol says {want}")
    if case.meta.get("no_text") and out.synced:
        texts = [m["text"] for m in out.replies if isinstance(m, dict) and m.get("text") and "error" not in m]
        if texts:
            p.append(f"a body that names a file or a port decoded to text: {texts}")
    if case.meta.get("valid_file") and out.synced:
        errors = [m["error"] for m in out.replies if isinstance(m, dict) and "error" in m]
        if errors:
            p.append(f"a valid {case.meta['valid_file']} file gave errors: {errors}")
    if case.batch == "limits":
        p += limit_problems(profile, case, out)
    if case.meta.get("probe_ref") is not None and out.synced:
        if project(out.probe or []) != case.meta["probe_ref"]:
            got = project(out.probe or [])
            p.append(f"a clean utterance after the case got {got}, on a fresh connection {case.meta['probe_ref']}")
    p += out.error_logs
    return p


# ---------------------------------------------------------------------------------- JSON values

SURROGATES = ["\ud800", "\udfff", "\udbff", "\ud83d"]
CHAR_POOLS = [
    "abcxyzABC0123456789_-./",
    " ,，、;；\t\n\r",
    "\x00\x01\x08\x1b\x1f\x7f\x85\u2028\u2029\ufeff\uffff\ufffe",
    "欢迎大家来体验达摩院推出的语音识别模型腊棉孔眙铟敉春罍窳砦秕",
    "😀🎤\U0010ffff",
    "\"\\{}[]:",
]


def rand_text(rng: random.Random, length: Optional[int] = None) -> str:
    if length is None:
        length = rng.choice([0, 1, 2, 5, 10, 11, 30, 200, 1024, 1025, 5000])
    pools = rng.sample(CHAR_POOLS, rng.randint(1, 3))
    alphabet = "".join(pools)
    if rng.random() < 0.2:
        alphabet += "".join(SURROGATES)
    if length > 300:  # a repeated chunk: long strings cost no time to make
        chunk = "".join(rng.choice(alphabet) for _ in range(97))
        return (chunk * (length // 97 + 1))[:length]
    return "".join(rng.choice(alphabet) for _ in range(length))


def js(text: str, rng: Optional[random.Random] = None) -> str:
    """``text`` as a JSON string literal; lone surrogates always escaped (the client cannot send them raw)."""
    raw_ok = rng is not None and rng.random() < 0.5 and not any("\ud800" <= c <= "\udfff" for c in text)
    return json.dumps(text, ensure_ascii=not raw_ok)


def huge_int(rng: random.Random) -> str:
    return rng.choice(["", "-"]) + "1" + "0" * rng.choice([19, 40, 400, 4299, 4300, 5000, 20000])


def rand_number(rng: random.Random) -> str:
    return rng.choice([
        lambda: str(rng.randint(-20, 20)),
        lambda: str(rng.choice([0, 1, -1, 2, 3, 16000, 8000, 2**31, 2**31 - 1, 2**63, -(2**63), 2**64, 10**18])),
        lambda: huge_int(rng),
        lambda: repr(rng.uniform(-1e6, 1e6)),
        lambda: rng.choice(["1e400", "-1e400", "1e-400", "0.0", "-0.0", "16000.0", "16000.5", "1E3", "5e0", "1.0e1"]),
        lambda: rng.choice(["NaN", "Infinity", "-Infinity"]),
    ])()


def deep(rng: random.Random, depth: Optional[int] = None) -> str:
    depth = depth or rng.choice([10, 100, 999, 1000, 1500, 2000, 5000])
    kind = rng.randrange(3)
    if kind == 0:
        return "[" * depth + "]" * depth
    if kind == 1:
        return '{"a":' * depth + "0" + "}" * depth
    return '[{"a":' * (depth // 2) + "null" + "}]" * (depth // 2)


def rand_value(rng: random.Random, depth: int = 0) -> str:
    r = rng.random()
    if r < 0.25:
        return rand_number(rng)
    if r < 0.5:
        return js(rand_text(rng), rng)
    if r < 0.6:
        return rng.choice(["null", "true", "false"])
    if r < 0.75 and depth < 3:
        return "[" + ",".join(rand_value(rng, depth + 1) for _ in range(rng.randint(0, 4))) + "]"
    if r < 0.85 and depth < 3:
        items = [f"{js(rand_text(rng, rng.randint(0, 8)))}:{rand_value(rng, depth + 1)}" for _ in range(rng.randint(0, 3))]
        return "{" + ",".join(items) + "}"
    if r < 0.93:
        return deep(rng)
    return js(rand_text(rng, rng.choice([20000, 60000, 70000])), rng)


#: The longest integer Python's json reads (4300 digits): valid JSON, a value far out of every range.
LONGEST_INT = "1" + "0" * 4299
PLAUSIBLE = {
    "mode": ['"offline"', '"online"', '"2pass"', '"OFFLINE"', '""', '"2pass-offline"', '" offline"', '"offline\\u0000"'],
    "wav_name": ['"a"', '"wav-default-id"', '""', '"名字"', '"a\\ud800b"', '"\\udfff"', '"x\\ny"', "123", "1.5", "-0"],
    "wav_format": ['"pcm"', '"PCM"', '"wav"', '"mp3"', '""', '" pcm "', '"pcm\\u0000"', '"hls"', '"concat"', '"sdp"'],
    "audio_fs": ["16000", "8000", "1000", "999", "384000", "384001", "0", "-16000", '"16000"', "16000.0", "16000.5",
                 "44100", "48000", '" 8000 "', "1", LONGEST_INT],
    "chunk_size": ["[5,10,5]", '"5,10,5"', "[0,10,5]", "[5,10]", "[5,10,5,5]", '"5, 10 ,5"', '",,5,10,5"', "[5.0,10.0,5.0]",
                   "[5.5,10,5]", '["5","10","5"]', "[true,10,5]", "[1e400,10,5]", "[-1,10,5]", '"a,b,c"',
                   "[5,100000000000000000000,5]",
                   "[]", '""', "[[5],[10],[5]]", "[2,2,2]", "[20,20,20]", "[1000,1,1000]", "null", f"[5,{LONGEST_INT},5]"],
    "chunk_interval": ["10", "1", "0", "1000", "1001", "-1", '"10"', "10.0", LONGEST_INT],
    "encoder_chunk_look_back": ["4", "0", "-1", "1000", "1001"],
    "decoder_chunk_look_back": ["0", "1", "1000", "1000000"],
    "hotwords": ['""', '"阿里巴巴 20"', '"{\\"腊棉\\": 20}"', '{"腊棉": 20}', "[]", "null", "5"],
    "itn": ["true", "false", "0", "1", "2", '"true"', '"FALSE"', '"yes"', "null"],
    "svs_lang": ['"auto"', '"zh"', '"EN"', '"klingon"', '""', "null", "5"],
    "svs_itn": ["true", "false", "1", '"false"', "null"],
    "is_speaking": ["true", "false", "0", '"false"', "null", "1"],
    "is_finished": ["true", "false", '"true"', "1"],
    "is_end": ["true", "false", '"true"', "1"],
}
UNKNOWN_KEYS = ["foo", "", "\\u0000", "MODE", "is_speaking ", "__proto__", "constructor", "hotWords", "audio-fs", "😀"]


def rand_object(rng: random.Random, fields: Optional[List[str]] = None) -> str:
    names = fields if fields is not None else rng.sample(list(PLAUSIBLE), rng.randint(0, 6))
    items = []
    for name in names:
        value = rng.choice(PLAUSIBLE[name]) if rng.random() < 0.6 else rand_value(rng)
        items.append(f"{js(name)}:{value}")
    for _ in range(rng.choice([0, 0, 0, 1, 2])):
        items.append(f'"{rng.choice(UNKNOWN_KEYS)}":{rand_value(rng)}')
    if items and rng.random() < 0.1:
        items.append(rng.choice(items))  # a duplicate key: the last one wins
    rng.shuffle(items)
    sep = rng.choice([",", ", ", " ,\n", ",\t"])
    return "{" + sep.join(items) + "}"


def invalid_json(rng: random.Random) -> str:
    good = rand_object(rng)
    return rng.choice([
        lambda: good[: rng.randrange(len(good))] if len(good) > 1 else "{",
        lambda: good[:-1] + ",}",
        lambda: good + good,
        lambda: good + " x",
        lambda: "\ufeff" + good,
        lambda: good.replace('"', "'"),
        lambda: '{"wav_name": "a\nb"}',  # a raw newline inside a string
        lambda: '{"wav_name": "a\x01b"}',
        lambda: '{"mode": "offline" /* c */}',
        lambda: "{'mode': None}",
        lambda: "",
        lambda: "   \n\t",
        lambda: "{" * rng.choice([1, 1000, 5000]),
        lambda: "]" * 10,
        lambda: '{"a":' + "1" * 5000,
        lambda: '{"mode": "offline", "audio_fs": 0x10}',
        lambda: '{"a": "\\x41"}',
        lambda: '{"a": "\\ud800\\u"}',
        lambda: '{"audio_fs": 016000}',
        lambda: "{\"mode\": \"offline\"}\x00",
        lambda: good.replace(":", "=", 1),
    ])()


def json_message(rng: random.Random) -> Action:
    r = rng.random()
    if r < 0.5:
        return ("text", rand_object(rng))
    if r < 0.62:
        return ("text", rand_value(rng))  # any JSON, mostly not an object
    if r < 0.8:
        return ("text", invalid_json(rng))
    if r < 0.86:
        return ("binary", rand_object(rng).encode("utf-8", "surrogatepass"))  # text where a text frame was expected
    if r < 0.88:
        return ("raw", rng.choice([b'{"mode": "\xff"}', b"\xc3\x28", b'{"wav_name": "\xed\xa0\x80"}', b"\x80" * 10]))
    if r < 0.93:  # over the text limit, under the frame limit: an error, the connection goes on
        return ("text", '{"mode": "offline", "wav_name": ' + js(rand_text(rng, rng.choice([66000, 200000]))) + "}")
    if r < 0.95:  # over the frame limit: the server may close with 1009
        return rng.choice([("text", '{"x": "' + "a" * (MAX_MESSAGE + 10) + '"}'), ("binary", b"\0" * (MAX_MESSAGE + 1))])
    return ("text", json.dumps({"mode": rng.choice(["offline", "online", "2pass"]), "chunk_size": CHUNK, "wav_name": "ok"}))


def short_pcm(rng: random.Random) -> List[Action]:
    start = 2 * rng.randrange(0, len(PCM) // 4)
    n = 2 * rng.choice([1, 800, 1600, 9600, 16000])
    piece = PCM[start : start + n]
    stride = rng.choice([len(piece) or 1, 1920, 3200, 19200])
    return [("binary", piece[i : i + stride]) for i in range(0, len(piece), stride)]


def end_message(rng: random.Random) -> str:
    return rng.choice([
        '{"is_speaking": false}',
        '{"is_finished": true}',
        '{"is_speaking": false, "is_end": true}',
        '{"is_speaking": false, "is_end": "true"}',
        '{"is_speaking": 0}',
        '{"is_speaking": "false"}',
        '{"is_speaking": false, "audio_fs": "x"}',
        '{"is_speaking": false, "is_end": true, "chunk_size": [1000, 1, 1000]}',
        '{"is_finished": true, "is_end": true, "wav_name": ' + deep(rng, 3000) + "}",
        rand_object(rng, ["is_speaking", "is_end"]),
    ])


def gen_json(rng: random.Random, profile: str) -> Case:
    actions = [json_message(rng) for _ in range(rng.randint(1, 6))]
    if rng.random() < 0.5:
        actions += short_pcm(rng) + [("text", end_message(rng))]
        if rng.random() < 0.4:
            actions += [json_message(rng)]
    return Case("json", actions, {"probe": True})


# ---------------------------------------------------------------------------------- hotwords

SEPARATORS = [" ", ",", "，", "、", ";", "；", "\n", "\t", "  ", ", ", ",,", " \u3000 ", "\r\n"]


def hotword(rng: random.Random) -> str:
    return rng.choice([
        lambda: rng.choice(VOCAB_WORDS),
        lambda: OOV,
        lambda: rng.choice(["hello", "Hello World", "a", "@@", "<unk>", "</s>", "<s>", "123", "1.5", "x@@y"]),
        lambda: "",
        lambda: " ",
        lambda: rand_text(rng, rng.choice([1, 2, 9, 10, 11, 30])),
        lambda: "腊" * rng.choice([10, 11, 100, 5000]),
        lambda: "a" * rng.choice([10, 11, 5000]),
        lambda: rng.choice(VOCAB_WORDS) + rng.choice(SEPARATORS) + rng.choice(VOCAB_WORDS),
        lambda: "\ud800" + rng.choice(VOCAB_WORDS),
        lambda: "腊\x00棉",
        lambda: "😀",
    ])()


def weight(rng: random.Random) -> str:
    return rng.choice([
        lambda: str(rng.randint(1, 100)),
        lambda: LONGEST_INT,
        lambda: rng.choice(["0", "101", "-1", "-100", "1000", "2147483648", "1.5", "20.0", "1e2", "1e400", "-0.0", "NaN",
                            "Infinity", "-Infinity", '"20"', '"abc"', '""', '" 20 "', "null", "true", "false", "[]", "{}",
                            "[20]", '{"w": 20}']),
        lambda: huge_int(rng),
        lambda: deep(rng, rng.choice([10, 1000, 2000])),
    ])()


def hotwords_value(rng: random.Random) -> str:
    """The JSON text of a ``hotwords`` field."""
    n = rng.choice([0, 1, 2, 3, 10, 50, 999, 1000, 1001, 2500])
    r = rng.random()
    if r < 0.45:  # a JSON object, as a string
        items = [f"{js(hotword(rng))}: {weight(rng) if rng.random() < 0.7 else str(rng.randint(1, 100))}" for _ in range(n)]
        if n > 100:
            items = [f"{js(f'词{i}')}: {rng.randint(1, 100)}" for i in range(n)] + items[:5]
        inner = "{" + ", ".join(items) + "}"
        return js(inner)
    if r < 0.75:  # plain words
        words = [hotword(rng) for _ in range(min(n, 60))] + [f"词{i}" for i in range(max(0, n - 60))]
        text = ""
        for w in words:
            text += w + rng.choice(SEPARATORS)
            if rng.random() < 0.1:
                text += str(rng.randint(-5, 200)) + " "  # a weight as in the server's hotword file
        if rng.random() < 0.3:
            text = rng.choice(SEPARATORS) + text
        return js(text, rng)
    if r < 0.87:  # not a string at all
        return rng.choice([
            lambda: rand_number(rng),
            lambda: rng.choice(["true", "false", "null", "[]", "{}"]),
            lambda: "[" + ",".join(js(hotword(rng)) for _ in range(rng.randint(1, 5))) + "]",
            lambda: deep(rng),
            lambda: "{" + ", ".join(f"{js(hotword(rng))}: {weight(rng)}" for _ in range(rng.randint(1, 5))) + "}",
        ])()
    if r < 0.97:  # a JSON-looking string that is not an object of weights
        return js(rng.choice([
            '{"腊棉": 20', '{"腊棉": {"a": 1}}', "[1, 2]", "[", '"x"', '{"腊棉": 20}}', '{"腊棉": 20, }', "{" * 3000,
            "[" * 3000, '{"a": 1' + "0" * 5000 + "}", "{}", " {} ", '{"": 5}', '{"腊棉": NaN}', '{"腊棉": 1e400}',
        ]))
    return js(",".join(f"长词{i}" for i in range(rng.choice([12000, 30000]))))  # beyond the text limit


def gen_hotwords(rng: random.Random, profile: str) -> Case:
    mode = rng.choice(["offline", "2pass", "online"]) if profile == "2pass" else "offline"
    config = f'{{"mode": "{mode}", "chunk_size": [5, 10, 5], "wav_name": "hw", "hotwords": {hotwords_value(rng)}}}'
    actions: List[Action] = [("text", config)]
    if rng.random() < 0.3:
        actions.append(("text", f'{{"hotwords": {hotwords_value(rng)}}}'))  # only the first message's count
    actions += short_pcm(rng) + [("text", rng.choice(['{"is_speaking": false}', '{"is_speaking": false, "is_end": true}']))]
    return Case("hotwords", actions, {"probe": True})


# ---------------------------------------------------------------------------------- containers


def set_u32(data: bytearray, at: int, value: int) -> None:
    if at + 4 <= len(data):
        data[at : at + 4] = struct.pack("<I", value & 0xFFFFFFFF)


def set_u16(data: bytearray, at: int, value: int) -> None:
    if at + 2 <= len(data):
        data[at : at + 2] = struct.pack("<H", value & 0xFFFF)


def mutate_wav_header(rng: random.Random, data: bytearray) -> str:
    """A field of the canonical 44-byte header set to something hostile."""
    name, at, size, values = rng.choice([
        ("riff_size", 4, 4, [0, 1, 0xFFFFFFFF, 36]),
        ("fmt_size", 16, 4, [0, 14, 15, 0xFFFFFFFF, 0x7FFFFFFF, 40]),
        ("format_tag", 20, 2, [0, 2, 3, 6, 7, 0x11, 0x55, 0x161, 0xFFFE, 0xFFFF]),
        ("channels", 22, 2, [0, 2, 8, 64, 65, 255, 65535]),
        ("sample_rate", 24, 4, [0, 1, 2, 999, 7999, 384001, 4_000_000_000, 0xFFFFFFFF, 0x80000000]),
        ("byte_rate", 28, 4, [0, 1, 0xFFFFFFFF]),
        ("block_align", 32, 2, [0, 1, 3, 0xFFFF]),
        ("bits", 34, 2, [0, 1, 4, 12, 24, 32, 64, 65535]),
        ("data_size", 40, 4, [0, 1, 0xFFFFFFFF, 0x7FFFFFFF]),
    ])
    value = rng.choice(values)
    (set_u32 if size == 4 else set_u16)(data, at, value)
    return f"wav {name}={value}"


def mutate_flac_header(rng: random.Random, data: bytearray) -> str:
    """STREAMINFO (after ``fLaC`` and a 4-byte block header): the 20-bit rate, 3-bit channels, 36-bit length."""
    if data[:4] != b"fLaC" or len(data) < 42:
        return "flac: no header"
    at = 8 + 10  # the rate's first byte
    value = rng.choice([0, 1, 0xFFFFF])
    data[at] = (value >> 12) & 0xFF
    data[at + 1] = (value >> 4) & 0xFF
    data[at + 2] = ((value & 0xF) << 4) | (data[at + 2] & 0x0F if rng.random() < 0.5 else 0x0F)
    return f"flac rate={value}"


def mutate_box_sizes(rng: random.Random, data: bytearray) -> str:
    """Some 4-byte field before a box or chunk name set to 0, 1 or 0xFFFFFFFF (mp4 boxes, RIFF/CAF chunks)."""
    tags = [b"ftyp", b"moov", b"trak", b"mdia", b"stsd", b"stsz", b"stco", b"mdat", b"data", b"desc", b"OggS", b"COMM",
            b"SSND"]
    spots = [i for t in tags for i in range(len(data)) if data.startswith(t, i)][:50]
    if not spots:
        return "no box"
    at = rng.choice(spots)
    value = rng.choice([0, 1, 8, 0xFFFFFFFF, 0x7FFFFFFF])
    if at >= 4:
        data[at - 4 : at] = struct.pack(">I", value)
    return f"size before {bytes(data[at:at + 4])!r}={value}"


def mutate(rng: random.Random, data: bytes, files: Dict[str, Tuple[bytes, str, bool]]) -> Tuple[bytes, List[str]]:
    buf = bytearray(data)
    notes = []
    for _ in range(rng.randint(1, 3)):
        r = rng.random()
        if r < 0.25:
            n = rng.choice([1, 2, 8, 64])
            for _ in range(n):
                if buf:
                    i = rng.randrange(min(len(buf), rng.choice([64, 512, len(buf)])))
                    buf[i] ^= 1 << rng.randrange(8)
            notes.append(f"{n} bit flips")
        elif r < 0.4:
            cut = rng.choice([0, 1, 4, 12, 44, 45, 100, rng.randrange(len(buf) + 1)])
            buf = buf[:cut]
            notes.append(f"truncated to {cut}")
        elif r < 0.55 and buf[:4] == b"RIFF":
            notes.append(mutate_wav_header(rng, buf))
        elif r < 0.6:
            notes.append(mutate_flac_header(rng, buf))
        elif r < 0.65 and len(buf) > 48:  # an extreme but finite sample (in a float WAV: a legal value)
            at = rng.randrange(44, len(buf) - 4) & ~3
            value = rng.choice([3.0e38, -3.4e38, 1.0e30, 65504.0, 1.0e-45])
            buf[at : at + 4] = struct.pack("<f", value)
            notes.append(f"float {value} at {at}")
        elif r < 0.72:
            notes.append(mutate_box_sizes(rng, buf))
        elif r < 0.78:
            other = rng.choice(list(files.values()))[0]
            cut = rng.randrange(len(buf) + 1)
            buf = buf[:cut] + other[rng.randrange(len(other)) :]
            notes.append(f"spliced at {cut}")
        elif r < 0.86 and buf:
            i, n = rng.randrange(len(buf)), rng.choice([1, 16, 1000])
            buf[i : i + n] = bytes(rng.getrandbits(8) for _ in range(min(n, 64))) * (n // 64 + 1)
            notes.append(f"overwrote {n} bytes at {i}")
        elif r < 0.93 and buf:
            i = rng.randrange(len(buf))
            buf = buf[:i] + buf[i : i + rng.choice([16, 256, 4096])] * rng.choice([2, 10]) + buf[i:]
            notes.append(f"repeated a span at {i}")
        else:
            buf += rng.choice([b"\0" * 1000, bytes(rng.getrandbits(8) for _ in range(100)), b"ID3" * 10, b"RIFF"])
            notes.append("trailing junk")
    return bytes(buf), notes


def nasty_bodies(trap_port: int) -> Dict[str, Tuple[bytes, bool]]:
    """name → (body, whether decoding it to any text means the server read a file or a socket)."""
    speech = str(SPEECH_FILE)
    http = f"http://127.0.0.1:{trap_port}/x"
    return {
        "ffconcat_rel": (b"ffconcat version 1.0\nfile x.wav\n", True),
        "ffconcat_abs": (f"ffconcat version 1.0\nfile '{speech}'\nfile '{speech}'\n".encode(), True),
        "ffconcat_http": (f"ffconcat version 1.0\nfile '{http}.wav'\n".encode(), True),
        "sdp": (("v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\n"
                 f"m=audio {trap_port} RTP/AVP 0\na=rtpmap:0 PCMU/8000\n").encode(), True),
        "m3u": (f"#EXTM3U\n{http}\n".encode(), True),
        "m3u_local": (b"#EXTM3U\nhttp://127.0.0.1:1/x\n", True),
        "hls": (f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:5,\n{http}.ts\n#EXTINF:5,\nfile://{speech}\n"
                "#EXT-X-ENDLIST\n".encode(), True),
        "hls_file": (f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:5,\nfile://{speech}\n#EXT-X-ENDLIST\n".encode(), True),
        "mpd": (f'<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011"><Period><AdaptationSet>'
                f'<Representation id="1" bandwidth="1"><BaseURL>{http}.mp4</BaseURL></Representation>'
                "</AdaptationSet></Period></MPD>".encode(), True),
        "png": (b"\x89PNG\r\n\x1a\n" + b"\0\0\0\rIHDR" + b"\0\0\x10\0\0\0\x10\0\x08\x02\0\0\0" + os.urandom(200), False),
        "jpeg": (b"\xff\xd8\xff\xe0\0\x10JFIF\0" + os.urandom(300), False),
        "gif": (b"GIF89a" + os.urandom(100), False),
        "pdf": (b"%PDF-1.4\n" + os.urandom(100), False),
        "ffmetadata": (b";FFMETADATA1\ntitle=x\n", False),
        "srt": (b"1\n00:00:00,000 --> 00:00:01,000\nhello\n", False),
        "text": (b"hello world\n", False),
        "empty": (b"", False),
        "zeros": (b"\0" * 4096, False),
        "random": (os.urandom(4096), False),
        "url": (f"{http}.wav".encode(), True),
        "avi": (b"RIFF\xff\xff\xff\xffAVI LIST" + os.urandom(200), False),
        "id3_only": (b"ID3\x04\0\0\0\0\0\x10" + b"\0" * 16, False),
        "riff_huge": (b"RIFF\xff\xff\xff\xffWAVEfmt \xff\xff\xff\xff", False),
    }


FORMAT_NAMES = ["wav", "WAV", "mp3", "flac", "ogg", "m4a", "mp4", "aac", "webm", "opus", "amr", "caf", "au", "aiff",
                "hls", "concat", "sdp", "image2", "lavfi", "file", "../../etc/passwd", "x" * 300, "wav\u0000", "😀"]


def gen_container(rng: random.Random, profile: str, files, bodies) -> Case:
    meta: Dict[str, Any] = {"exact": True}
    if rng.random() < 0.25:
        name = rng.choice(list(bodies))
        body, reads = bodies[name]
        fmt = rng.choice(["wav", "mp3", rng.choice(FORMAT_NAMES)])
        meta["no_text"] = reads
        meta["body"] = name
    else:
        name = rng.choice(list(files))
        body, fmt, valid = files[name]
        if rng.random() < 0.15:
            meta["body"] = name
            meta["valid_file"] = name if valid else None
        else:
            body, notes = mutate(rng, body, files)
            meta["body"] = f"{name}: {', '.join(notes)}"
        if rng.random() < 0.2:
            fmt = rng.choice(FORMAT_NAMES)
    mode = "offline"
    if profile == "2pass" and rng.random() < 0.2:
        mode = rng.choice(["2pass", "online"])
        meta.pop("valid_file", None)
    config = json.dumps({"mode": mode, "wav_name": "file", "wav_format": fmt, "chunk_size": CHUNK, "is_speaking": True})
    actions: List[Action] = [("text", config)]
    pieces = rng.choice([1, 1, 2, 3])
    step = max(1, -(-len(body) // pieces))
    actions += [("binary", body[i : i + step]) for i in range(0, len(body), step)] or [("binary", b"")]
    actions.append(("text", rng.choice(END_SIGNALS[:3])))
    if rng.random() < 0.2 and not meta.get("no_text"):  # back to PCM on the same connection
        actions += [("text", '{"wav_format": "pcm", "mode": "offline"}'), *short_pcm(rng), ("text", END_SIGNALS[0])]
    return Case("containers", actions, meta)


# ---------------------------------------------------------------------------------- frame orders


ORDER_CHUNKS = [CHUNK, CHUNK, "5,10,5", [0, 10, 5], [2, 2, 2], [20, 20, 20], [0, 20, 0], [2, 2, 0]]


def gen_order(rng: random.Random, profile: str) -> Case:
    """Valid frames in random orders: the finals and acknowledgements are predictable exactly."""
    actions: List[Action] = []
    pos, budget = 0, 200_000  # bytes of PCM in all: under the 20 s limit even at 8 kHz
    vanish = None
    for _ in range(rng.randint(1, 14)):
        r = rng.random()
        if r < 0.22:
            cfg: Dict[str, Any] = {"mode": rng.choice(["offline", "online", "2pass", "2pass", "bogus"])}
            cfg["wav_name"] = f"o{len(actions)}"
            if rng.random() < 0.75:
                cfg["chunk_size"] = rng.choice(ORDER_CHUNKS)
            if rng.random() < 0.3:
                cfg["audio_fs"] = rng.choice([16000, 8000, 48000])
            if rng.random() < 0.3:
                cfg["itn"] = rng.random() < 0.5
            if rng.random() < 0.3:
                cfg["wav_format"] = rng.choice(["pcm", "PCM"])
            if rng.random() < 0.5:
                cfg["is_speaking"] = True
            actions.append(("text", json.dumps(cfg)))
        elif r < 0.6:
            n = min(budget, rng.choice([0, 1, 2, 3, 1919, 1920, 1921, 3200, 19200, 19201, 32000]))
            if pos + n > len(PCM):
                pos = 0
            actions.append(("binary", PCM[pos : pos + n]))
            pos, budget = pos + n, budget - n
        elif r < 0.8:
            actions.append(("text", rng.choice(END_SIGNALS)))
        elif r < 0.88:
            actions.append(("text", rng.choice(NOT_END_SIGNALS)))
        elif r < 0.94:
            actions.append(("pause", rng.choice([0.01, 0.05, 0.2])))
        else:
            vanish = rng.choice(["abort", "shutdown", "close"])
            break
    if vanish:
        actions.append((vanish,))
    return Case("orders", actions, {"exact": vanish is None})


# ---------------------------------------------------------------------------------- limits

LIMIT_WORDS = ("too long", "too large", "longer than")


def tiled(n_bytes: int) -> bytes:
    """``n_bytes`` of the clip's PCM, repeated (even)."""
    n_bytes -= n_bytes % 2
    return (PCM * (n_bytes // len(PCM) + 1))[:n_bytes]


def build_long_files() -> Dict[str, bytes]:
    """Files whose decoded length is under or over LIMITS.max_utterance_seconds (20 s), small to send."""
    speech = np.tile(SPEECH_1S, 60)  # 60 s
    u8 = (speech * 127 + 128).astype(np.uint8)
    return {
        "u8_8k_10s": wav_bytes(u8[: 10 * 16000 : 2], rate=8000),
        "u8_8k_25s": wav_bytes(u8[: 25 * 16000 : 2], rate=8000),
        "flac_60s": encode("flac", "flac", speech),
        "mp3_8k_30s": encode("mp3", "libmp3lame", speech[: 30 * 16000], out_rate=8000),
    }


def gen_limits(rng: random.Random, profile: str, long_files: Dict[str, bytes]) -> Case:
    """One utterance clearly under or clearly over a limit of :data:`LIMITS`, then the sync.

    ``limit``: ``received`` (refused as it arrives: seconds of PCM, bytes as stored), ``decoded``
    (a file whose decoded audio is too long) or None (under every limit)."""
    kinds = ["pcm", "pcm", "file_long", "file_bytes"] + (["pcm_bytes"] if profile == "offline" else [])
    kind = rng.choice(kinds)
    mode = rng.choice(["offline", "online", "2pass"]) if profile == "2pass" and kind.startswith("pcm") else "offline"
    config: Dict[str, Any] = {"mode": mode, "wav_name": "lim", "chunk_size": CHUNK}
    frame = rng.choice([3200, 32000, 256000, 900_000])
    limit: Optional[str]
    if kind == "pcm":
        fs = rng.choice([1000, 8000, 16000])
        seconds = rng.choice([21.0, 21.0, 30.0, 3.0, 12.0])
        body, limit = tiled(int(seconds * fs) * 2), ("received" if seconds > 20 else None)
        config.update(audio_fs=fs, wav_format="pcm")
    elif kind == "pcm_bytes":  # at 384 kHz, 4 MiB is 5.5 s: the byte cap comes first (offline profile: PCM is stored)
        mib = rng.choice([3.5, 4.5, 6.0])
        body, limit = tiled(int(mib * (1 << 20))), ("received" if mib > 4 else None)
        config.update(audio_fs=384000, wav_format="pcm")
    elif kind == "file_long":
        name = rng.choice(list(long_files))
        body, limit = long_files[name], ("decoded" if not name.endswith("_10s") else None)
        config.update(wav_format=rng.choice(["wav", "mp3", "flac"]))
    else:  # a file over the byte cap, in frames under the frame cap
        body, limit = os.urandom(int(rng.choice([4.5, 5.0]) * (1 << 20))), "received"
        config.update(wav_format=rng.choice(["wav", "mp3"]))
        frame = rng.choice([256000, 900_000])
    actions: List[Action] = [("text", json.dumps(config))]
    actions += [("binary", body[i : i + frame]) for i in range(0, len(body), frame)]
    actions.append(("text", rng.choice(END_SIGNALS[:3])))
    return Case("limits", actions, {"limit": limit, "body": f"{kind} {len(body)} bytes, {config}"})


def limit_problems(profile: str, case: Case, out: Outcome) -> List[str]:
    if not out.synced:
        return []  # reported already
    limit = case.meta["limit"]
    end = _json_object(case.actions[-1][1])
    ack = ["ack"] * (end.get("is_end") is True)
    answer = "error" if (profile == "offline" and limit == "received") else ("result" if profile == "offline" else "final")
    want = [answer] + ack + predicted_sequence(profile, case.actions[:1])  # the config, then the sync
    got = observed_sequence(profile, out.replies)
    p = []
    if got != want:
        p.append(f"finals/acknowledgements {got}, the protocol says {want}")
    errors = [m["error"] for m in out.replies if isinstance(m, dict) and "error" in m and not m.get("is_end")]
    if limit is None and errors:
        p.append(f"errors under every limit: {errors}")
    if limit is not None and (len(errors) != 1 or not any(w in errors[0] for w in LIMIT_WORDS)):
        p.append(f"over a limit ({limit}): errors {errors}, expected one that names the limit")
    return p


# ---------------------------------------------------------------------------------- servers


@dataclass
class Target:
    name: str
    profile: str
    server: ServerThread
    takes_hotwords: bool
    reference: Dict[str, List[Any]] = field(default_factory=dict)


def stream_reference(url: str, mode: str) -> List[Any]:
    """The clean utterance, as FunASR's clients send it, in ``mode``: every reply until the final."""
    with connect(url, max_size=None, proxy=None) as ws:
        ws.send(json.dumps({"mode": mode, "chunk_size": CHUNK, "wav_name": "ref", "is_speaking": True}))
        for i in range(0, len(PCM), 19200):
            ws.send(PCM[i : i + 19200])
        ws.send(SYNC)
        msgs = []
        while not (msgs and msgs[-1].get("is_end")):
            msgs.append(strict_json(ws.recv(timeout=30)))
    return msgs


def probe_reference(url: str) -> List[Any]:
    with connect(url, max_size=None, proxy=None) as ws:
        for kind, payload in probe_actions():
            ws.send(payload, text=kind == "text")
        msgs = []
        while not (msgs and msgs[-1].get("is_end")):
            msgs.append(strict_json(ws.recv(timeout=30)))
    return msgs


def references(target: Target) -> Dict[str, List[Any]]:
    url = target.server.url
    refs = {"probe": project(probe_reference(url))}
    for mode in (["2pass", "online", "offline"] if target.profile == "2pass" else ["offline"]):
        refs[mode] = project(stream_reference(url, mode))
    return refs


TARGETS = {
    "offline": ("offline", lambda: fixture_settings(), False),
    "2pass": ("2pass", lambda: fixture_settings_2pass(), False),
    "offline-seaco": ("offline", lambda: fixture_settings(model_dir=str(ASR_SEACO_DIR), punc_dir=""), True),
    "2pass-contextual": ("2pass", lambda: fixture_settings_2pass(model_dir=str(ASR_CONTEXTUAL_DIR)), True),
}


@pytest.fixture(scope="module")
def error_records():
    handler = ErrorRecords()
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)


@pytest.fixture(scope="module")
def targets(error_records):
    """Servers with small limits, started on first use and kept for the module."""
    started: Dict[str, Target] = {}
    with contextlib.ExitStack() as stack:

        def get(name: str) -> Target:
            if name not in started:
                profile, settings, hotwords = TARGETS[name]
                server = stack.enter_context(
                    ServerThread(settings(), limits=LIMITS, max_message_bytes=MAX_MESSAGE, web_page=False)
                )
                target = Target(name, profile, server, hotwords)
                target.reference = references(target)
                started[name] = target
            return started[name]

        yield get


@pytest.fixture(scope="module")
def trap():
    t = Trap()
    yield t
    t.close()


@pytest.fixture(scope="module")
def container_files():
    return build_files()


@pytest.fixture(scope="module")
def long_files():
    return build_long_files()


# ---------------------------------------------------------------------------------- running a batch


def http_health(server: ServerThread) -> Tuple[int, str]:
    try:
        with urllib.request.urlopen(server.http_url + "/health", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return 0, str(e)


def settle(server: ServerThread) -> bool:
    """Every connection of the batch is gone and nothing of theirs is held or queued."""
    s = server.server
    return wait_until(lambda: s.active_sessions == 0 and s.pool.pending == 0 and s.audio_budget.used_bytes == 0, 15)


def server_problems(target: Target, records: ErrorRecords, mark: int) -> List[str]:
    p = []
    srv = target.server
    if not srv._thread.is_alive():
        return ["the server thread died"]
    if not settle(srv):
        s = srv.server
        p.append(f"left behind: {s.active_sessions} sessions, {s.pool.pending} jobs, "
                 f"{s.audio_budget.used_bytes} bytes of audio")
    status, body = http_health(srv)
    if status != 200 or '"status": "ready"' not in body:
        p.append(f"/health said {status} {body!r}")
    try:
        now = references(target)
    except Exception as exc:  # noqa: BLE001 - reported, not swallowed
        p.append(f"a clean client failed: {type(exc).__name__}: {exc}")
    else:
        for key, want in target.reference.items():
            if now[key] != want:
                p.append(f"a clean client's {key} result changed: {now[key]} != {want}")
    p += [describe_record(r) for r in records.since(mark)]
    return p


def show(action: Action) -> str:
    def cut(v):
        if isinstance(v, (str, bytes)) and len(v) > 160:
            return f"{v[:120]!r}...<{len(v)} {'chars' if isinstance(v, str) else 'bytes'}>...{v[-20:]!r}"
        return repr(v)

    return "(" + ", ".join([repr(action[0])] + [cut(v) for v in action[1:]]) + ")"


def attempt(target: Target, case: Case, records: ErrorRecords, probe_ref, trap: Trap) -> Tuple[Outcome, List[str]]:
    mark, hits = records.mark(), len(trap.hits)
    if case.meta.get("probe") and not target.takes_hotwords:
        case.meta["probe_ref"] = probe_ref
    out = run_case(target.server.url, case, probe=case.meta.get("probe_ref") is not None)
    if any(a[0] in ("abort", "shutdown", "close") for a in case.actions):
        settle(target.server)  # its records come when the server has noticed
    out.error_logs = [describe_record(r) for r in records.since(mark)]
    out.error_logs += [f"the server connected to the trap listener: {h}" for h in trap.hits[hits:]]
    return out, case_problems(target.profile, case, out)


def shrink(target: Target, case: Case, records: ErrorRecords, probe_ref, trap: Trap) -> Case:
    """Remove actions one at a time while the case still fails, then cut long payloads in half."""
    deadline, runs = time.monotonic() + SHRINK_SECONDS, 0

    def fails(actions: List[Action]) -> bool:
        nonlocal runs
        runs += 1
        try:
            _, problems = attempt(target, Case(case.batch, actions, dict(case.meta)), records, probe_ref, trap)
        except Exception:  # noqa: BLE001 - the trial is judged by its problems only
            return False
        return bool(problems)

    def budget() -> bool:
        return runs < SHRINK_RUNS and time.monotonic() < deadline

    actions = list(case.actions)
    i = 0
    while i < len(actions) and budget():
        trial = actions[:i] + actions[i + 1 :]
        if fails(trial):
            actions = trial
        else:
            i += 1
    for i in range(len(actions)):
        while budget() and actions[i][0] in ("text", "binary") and len(actions[i][1]) > 64:
            trial = list(actions)
            trial[i] = (actions[i][0], actions[i][1][: len(actions[i][1]) // 2])
            if not fails(trial):
                break
            actions = trial
    return Case(case.batch, actions, case.meta)


class Bystander:
    """A well-behaved client on its own connections while a batch runs: nothing the fuzzer does may change
    its results (protocol §4.5: never affect another connection)."""

    def __init__(self, url: str, reference: List[Any]):
        self.url, self.reference = url, reference
        self.problems: List[str] = []
        self.utterances = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(0.3):
            try:
                got = project(probe_reference(self.url))
            except Exception as exc:  # noqa: BLE001 - reported
                self.problems.append(f"a bystander client failed: {type(exc).__name__}: {exc}")
                continue
            self.utterances += 1
            if got != self.reference:
                self.problems.append(f"a bystander client got {got}")

    def __enter__(self) -> "Bystander":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(60)


def run_batch(target: Target, batch: str, make: Callable[[random.Random], Case], records: ErrorRecords, seed: int,
              trap: Trap) -> None:
    print(f"[fuzz] {target.name}/{batch}: seed {seed} (replay: FUZZ_SEED={seed})")
    probe_ref = target.reference["probe"]
    failures = []
    started = time.monotonic()
    count = CASES // 2 if batch == "limits" else CASES  # each of its cases sends up to 21 s of audio
    indices = [int(ONLY_CASE)] if ONLY_CASE is not None else range(count)
    ran, slowest = 0, 0.0
    with Bystander(target.server.url, probe_ref) as bystander:
        for k in indices:
            if time.monotonic() - started > BATCH_SECONDS:
                break
            case = make(random.Random(f"{seed}/{k}"))
            ran += 1
            try:
                out, problems = attempt(target, case, records, probe_ref, trap)
                slowest = max(slowest, out.sync_seconds)
            except Exception as exc:  # noqa: BLE001 - a client that cannot even talk to the server is a finding
                problems = [f"the client failed: {type(exc).__name__}: {exc}"]
            if problems:
                failures.append((k, case, problems))
                if not target.server._thread.is_alive():
                    break
    elapsed = time.monotonic() - started
    print(f"[fuzz] {target.name}/{batch}: {ran} cases in {elapsed:.1f} s (slowest sync {slowest:.2f} s), "
          f"{len(failures)} failed; a bystander decoded {bystander.utterances} clean utterances meanwhile")
    report = []
    for n, (k, case, problems) in enumerate(failures):
        head = f"case {k} (FUZZ_SEED={seed} FUZZ_CASE={k}) {case.meta.get('body', '')}:\n    " + "\n    ".join(problems[:6])
        if n >= SHRUNK_FAILURES:
            report.append(head)
            continue
        small = shrink(target, case, records, probe_ref, trap)
        shown_actions = [show(a) for a in small.actions[:12]]
        if len(small.actions) > 12:
            shown_actions.append(f"... {len(small.actions) - 12} more")
        report.append(
            head
            + f"\n  minimal actions ({len(small.actions)} of {len(case.actions)}), then the sync {SYNC} {SYNC_MARK}:\n    "
            + "\n    ".join(shown_actions)
        )
    if len(report) > 12:
        report = report[:12] + [f"... and {len(report) - 12} more failing cases"]
    after = bystander.problems[:5] + server_problems(target, records, records.mark())  # cases report their own records
    if after:
        report.append("after the batch:\n    " + "\n    ".join(after[:20]))
    if report:
        pytest.fail(f"[fuzz] {target.name}/{batch}, seed {seed}:\n" + "\n".join(report), pytrace=False)


# ---------------------------------------------------------------------------------- the tests

BATCHES = [
    ("offline", "json"), ("2pass", "json"),
    ("offline", "hotwords"), ("2pass", "hotwords"), ("offline-seaco", "hotwords"), ("2pass-contextual", "hotwords"),
    ("offline", "containers"), ("2pass", "containers"),
    ("offline", "orders"), ("2pass", "orders"),
    ("offline", "limits"), ("2pass", "limits"),
]


@pytest.mark.parametrize("target_name,batch", BATCHES, ids=[f"{t}-{b}" for t, b in BATCHES])
def test_fuzz(target_name, batch, targets, error_records, trap, container_files, long_files):
    target = targets(target_name)
    seed = seed_for(f"{target_name}/{batch}")
    profile = target.profile
    if batch == "json":
        make = lambda rng: gen_json(rng, profile)  # noqa: E731
    elif batch == "hotwords":
        make = lambda rng: gen_hotwords(rng, profile)  # noqa: E731
    elif batch == "containers":
        bodies = nasty_bodies(trap.port)
        make = lambda rng: gen_container(rng, profile, container_files, bodies)  # noqa: E731
    elif batch == "limits":
        make = lambda rng: gen_limits(rng, profile, long_files)  # noqa: E731
    else:
        make = lambda rng: gen_order(rng, profile)  # noqa: E731
    run_batch(target, batch, make, error_records, seed, trap)
