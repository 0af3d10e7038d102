"""Everything the command line decides, as one dataclass."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

from funasr_wss.models.wfst_config import WfstConfig

DEFAULT_ASR_MODEL = "iic/speech_paraformer-large-vad-punc_asr_nat-zh-cn-16k-common-vocab8404-onnx"
DEFAULT_VAD_MODEL = "iic/speech_fsmn_vad_zh-cn-16k-common-onnx"
DEFAULT_PUNC_MODEL = "iic/punc_ct-transformer_zh-cn-common-vocab272727-onnx"
#: Defaults of ``funasr-wss-server-2pass``, as in FunASR's ``run_server_2pass.sh``.
DEFAULT_ONLINE_MODEL = "iic/speech_paraformer-large_asr_nat-zh-cn-16k-common-vocab8404-online-onnx"
DEFAULT_REALTIME_PUNC_MODEL = "iic/punc_ct-transformer_zh-cn-common-vad_realtime-vocab272727-onnx"
#: FunASR's C++ servers load this n-gram LM even without ``--lm-dir`` (it is the flag's default).
DEFAULT_LM_MODEL = "damo/speech_ngram_lm_zh-cn-ai-wesp-fst"
DEFAULT_LM_REVISION = "v1.0.2"
#: ``--lm-dir`` values that turn the LM off, as in the reference (compared case-insensitively).
LM_OFF_VALUES = ("", "none")
#: Where ModelScope downloads go (``--download-model-dir``).
DEFAULT_DOWNLOAD_DIR = "~/.cache/funasr-wss-server/models"
#: Every flag can also come from the environment: ``FUNASR_WSS_`` + the flag upper-cased, ``-`` as ``_``.
ENV_PREFIX = "FUNASR_WSS_"
#: The WFST search's defaults (the reference's ``--global-beam``, ``--lattice-beam``, ``--am-scale``, ``--fst-inc-wts``).
WFST_DEFAULTS = WfstConfig()


@dataclass
class ServerSettings:
    listen_ip: str = "0.0.0.0"
    port: int = 10096
    model_dir: str = DEFAULT_ASR_MODEL
    model_revision: Optional[str] = None
    online_model_dir: Optional[str] = None  # given: the 2pass profile
    online_model_revision: Optional[str] = None
    vad_dir: Optional[str] = DEFAULT_VAD_MODEL
    vad_revision: Optional[str] = None
    punc_dir: Optional[str] = DEFAULT_PUNC_MODEL
    punc_revision: Optional[str] = None
    itn_dir: Optional[str] = None
    itn_revision: Optional[str] = None
    #: n-gram LM for WFST decoding of the offline Paraformer; None: off. The command line's default is
    #: DEFAULT_LM_MODEL (as in the reference); a ServerSettings built in code has no LM unless it names one.
    lm_dir: Optional[str] = None
    lm_revision: Optional[str] = DEFAULT_LM_REVISION
    #: True when lm_dir is only the default (the user did not give --lm-dir): if it cannot be had, the
    #: server starts without an LM and warns. False: the user named it, and a missing LM stops the start.
    lm_dir_is_default: bool = False
    global_beam: float = WFST_DEFAULTS.beam
    lattice_beam: float = WFST_DEFAULTS.lattice_beam
    am_scale: float = WFST_DEFAULTS.am_scale
    fst_inc_wts: int = WFST_DEFAULTS.fst_inc_wts
    hotword: Optional[str] = None
    quantize: bool = True
    vad_quant: bool = True
    punc_quant: bool = True
    download_model_dir: Optional[str] = DEFAULT_DOWNLOAD_DIR
    decoder_thread_num: int = 8
    io_thread_num: int = 2  # accepted, no effect here (one asyncio event loop serves every socket)
    model_thread_num: int = 1
    batch_size: int = 1
    device: str = "cpu"
    certfile: Optional[str] = None  # None: a self-signed certificate from self_signed_dir
    keyfile: Optional[str] = None
    plain_only: bool = False  # --certfile 0 (or ""): no TLS at all
    tls_only: bool = False  # refuse plain ws:// and http:// on the port
    self_signed_dir: str = "~/.cache/funasr-wss-server/tls"
    max_message_mib: int = 32
    max_utterance_seconds: int = 3 * 3600
    max_utterance_mib: int = 512
    max_text_kib: int = 256
    max_queue_mib: int = 8
    max_buffered_audio_mib: int = 2048
    max_decode_seconds: float = 120.0
    idle_timeout: float = 300.0
    max_connections: Optional[int] = None
    api_key: Optional[str] = field(default=None, repr=False)  # a secret: never in a repr, nor in the log
    web_page: bool = True  # the browser page at / (--no-web-page: off)
    #: The offline profile's one result says ``"is_final": true`` (--offline-is-final); the reference says false.
    offline_is_final: bool = False
    #: The reference's flags that were given and change nothing here (``--io-thread-num 1``), logged at start-up.
    no_effect_flags: Tuple[str, ...] = ()
    #: The ``FUNASR_WSS_*`` variables that set a flag (names only: a value may be a secret), logged at start-up.
    env_vars: Tuple[str, ...] = ()
    shutdown_grace: float = 30.0
    log_level: str = "INFO"
    log_format: str = "text"  # or "json"


#: Where the command line's defaults differ from a ServerSettings built in code: the reference's n-gram LM is on
#: (and only as a default, so a missing one is skipped with a warning).
COMMAND_LINE_DEFAULTS: Dict[str, Any] = {"lm_dir": DEFAULT_LM_MODEL, "lm_dir_is_default": True}
#: ``funasr-wss-server-2pass``'s defaults on top of those: FunASR's online model and realtime punctuation.
TWO_PASS_DEFAULTS: Dict[str, Any] = {"online_model_dir": DEFAULT_ONLINE_MODEL, "punc_dir": DEFAULT_REALTIME_PUNC_MODEL}


def command_line_defaults(two_pass: bool = False) -> ServerSettings:
    """The settings of a command line that gives no flag (and no ``FUNASR_WSS_*`` variable): the one
    source of every flag's default."""
    return ServerSettings(**COMMAND_LINE_DEFAULTS, **(TWO_PASS_DEFAULTS if two_pass else {}))
