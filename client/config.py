"""What a run is made of: where the server is, and how each utterance is sent.

Two frozen dataclasses, built once by :mod:`client.cli` and passed down, so the
protocol code never reads ``argparse`` results and tests can build them directly.
The protocol's vocabulary (modes, ``chunk_size``, SenseVoiceSmall's languages)
is :mod:`server.protocol`'s, the one definition the server uses too.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple
from urllib.parse import urlsplit

from funasr_wss.server import protocol
from funasr_wss.server.protocol import DEFAULT_MODE, MODES

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 10096


def parse_chunk_size(value: str) -> Tuple[int, int, int]:
    """``"5,10,5"`` (FunASR also writes ``"5, 10, 5"``) → ``(5, 10, 5)``, by the protocol's parser.

    The server needs exactly three frame counts (look-back, chunk, look-ahead,
    in 60 ms frames; the middle one above 0); a wrong value is caught here,
    before any connection, rather than answered by the server with an error per
    file.  This server's cost limits on the chunk are not checked: other servers
    need not share them.
    """
    try:
        return protocol.parse_chunk_size(str(value), bounded=False)
    except protocol.ProtocolError as exc:
        if "must be an integer" in str(exc):
            raise ValueError(f"chunk size must be three integers like 5,10,5, got {value!r}") from None
        raise ValueError(f"chunk size must be three integers like 5,10,5 (the middle one above 0), got {value!r}") from None


def server_url(host: str, port: int, use_ssl: bool, url: Optional[str] = None) -> str:
    """The WebSocket URL: ``url`` as given, or built from FunASR's ``--host/--port/--ssl``."""
    if url:
        scheme = urlsplit(url).scheme.lower()
        if scheme not in ("ws", "wss"):
            raise ValueError(f"--url must start with ws:// or wss://, got {url!r}")
        return url
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 literal
    return f"{'wss' if use_ssl else 'ws'}://{host}:{port}"


@dataclass(frozen=True)
class ConnectionSettings:
    """How to reach the server.

    TLS certificates are never verified, as in all of FunASR's clients: the
    servers they talk to mostly run with a self-signed certificate.
    """

    url: str
    api_key: Optional[str] = None
    open_timeout: float = 10.0

    @property
    def secure(self) -> bool:
        return urlsplit(self.url).scheme.lower() == "wss"

    def headers(self) -> Dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


@dataclass(frozen=True)
class RecognitionSettings:
    """The per-utterance choices that go into the configuration message.

    ``audio_fs`` is the rate of raw ``.pcm`` inputs only: every other file is
    decoded to 16 kHz by the client, and says so in its own configuration.
    """

    mode: str = DEFAULT_MODE
    chunk_size: Tuple[int, int, int] = protocol.DEFAULT_CHUNK_SIZE
    chunk_interval: int = 10
    encoder_chunk_look_back: int = 4
    decoder_chunk_look_back: int = 0
    hotwords: str = ""
    itn: bool = True
    audio_fs: int = 16000
    send_without_sleep: bool = False
    result_timeout: float = 300.0
    #: SenseVoiceSmall servers only (others ignore them): the language, and whether it writes punctuation.
    svs_lang: str = "auto"
    svs_itn: bool = True

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.chunk_interval <= 0:
            raise ValueError(f"chunk interval must be above 0, got {self.chunk_interval}")
        if self.audio_fs <= 0:
            raise ValueError(f"audio_fs must be above 0, got {self.audio_fs}")

    @property
    def stride_seconds(self) -> float:
        """Audio per binary message when streaming: FunASR's ``60 * chunk_size[1] / chunk_interval`` ms."""
        return 60.0 * self.chunk_size[1] / self.chunk_interval / 1000.0

    def stride_bytes(self, sample_rate: int) -> int:
        """The stride in bytes of int16 mono PCM (at least one sample)."""
        return max(1, int(self.stride_seconds * sample_rate)) * 2

    def config_message(self, wav_name: str, sample_rate: int) -> Dict[str, Any]:
        """The first text message of an utterance, with the fields FunASR's client sends."""
        return {
            "mode": self.mode,
            "chunk_size": list(self.chunk_size),
            "chunk_interval": self.chunk_interval,
            "encoder_chunk_look_back": self.encoder_chunk_look_back,
            "decoder_chunk_look_back": self.decoder_chunk_look_back,
            "audio_fs": sample_rate,
            "wav_name": wav_name,
            "wav_format": "pcm",
            "is_speaking": True,
            "hotwords": self.hotwords,
            "itn": self.itn,
            "svs_lang": self.svs_lang,
            "svs_itn": self.svs_itn,
        }
