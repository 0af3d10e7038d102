"""``funasr-wss-server`` and ``funasr-wss-server-2pass``: the reference's flags, our server.

As in FunASR, ``funasr-wss-server`` serves the offline profile unless
``--online-model-dir`` is given, and ``funasr-wss-server-2pass`` serves the
2pass profile with FunASR's online model and realtime punctuation by default.
Flags are spelled as in FunASR's C++ servers (``--model-dir``) and also with
underscores (``--model_dir``) as its Python server and many scripts write them.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import signal
import sys
import threading
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, cast

from . import logs
from .app import MIB, AsrServer, ServerOptions
from .decoder_pool import DecoderPool
from .hotwords import HotwordError, parse_hotword_file
from .http_routes import AccessPolicy
from .session import SessionLimits
from .settings import ENV_PREFIX, LM_OFF_VALUES, ServerSettings, command_line_defaults
from .tls import TlsPolicy, TlsSetupError, self_signed_pair, server_context

log = logging.getLogger("funasr_wss_server")


class CliError(SystemExit):
    """A configuration the server refuses to start with; the message says what to change."""

    def __init__(self, message: str):
        super().__init__(2)
        self.message = message


#: The spellings of true and false that every boolean takes, on the command line and in the environment.
BOOL_TRUE = ("true", "1", "yes", "on")
BOOL_FALSE = ("false", "0", "no", "off")


def _bool(value: str) -> bool:
    v = str(value).strip().lower()
    if v in BOOL_TRUE:
        return True
    if v in BOOL_FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected one of {'/'.join(BOOL_TRUE + BOOL_FALSE)}, got {value!r}")


def _optional_path(value: str) -> Optional[str]:
    """The reference turns a feature off with an empty value (and ``0`` for --certfile)."""
    v = value.strip()
    return v or None


PROG = "funasr-wss-server"
PROG_2PASS = "funasr-wss-server-2pass"


class _HelpFormatter(argparse.HelpFormatter):
    """Each flag once, with its default where it has one to tell (none for switches, nor where the
    help text says it in words)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            default is None
            or default is argparse.SUPPRESS
            or action.nargs == 0  # switches: --gpu, --tls-only, --no-web-page
            or "default:" in text
        ):
            return text
        shown = str(default).lower() if isinstance(default, bool) else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


_BOOL = "{true,false}"

#: Flags whose value is a secret: never echoed in an error (nor logged).
SECRET_FLAGS = ("api_key",)

#: The groups of --help, in order: (title, description).
GROUPS = {
    "models": ("models", "what is loaded, and from where (local directories or ModelScope ids)"),
    "decoding": ("decoding", "how audio is decoded: search, threads, device"),
    "network": ("network and TLS", "who may connect, how, and what they receive"),
    "limits": ("limits", "sizes and times per message, utterance, connection and server"),
    "logging": ("logging", None),
}

ENV_EPILOG = (
    f"Environment: every flag can also be set by a variable {ENV_PREFIX}<FLAG>, the flag's name upper-cased with "
    f"'-' as '_' ({ENV_PREFIX}API_KEY, {ENV_PREFIX}LM_DIR, {ENV_PREFIX}NO_WEB_PAGE=true); a flag on the command "
    "line wins over its variable, and the variable over the built-in default. Values are read as the flag reads "
    "them; booleans and switches (--quantize, --tls-only, --gpu, --no-web-page) take "
    + "/".join(BOOL_TRUE + BOOL_FALSE) + "."
)


def env_var(flag: str) -> str:
    """``--api-key`` -> ``FUNASR_WSS_API_KEY``."""
    return ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    two_pass = prog == PROG_2PASS
    d = command_line_defaults(two_pass)
    known = {f.name for f in fields(ServerSettings)}
    p = argparse.ArgumentParser(
        prog=prog,
        description="FunASR-compatible WebSocket speech recognition server (pure Python, onnxruntime); "
        + ("2pass profile: offline, online and 2pass modes." if two_pass else "offline profile, or 2pass with --online-model-dir.")
        + " Every flag may also be spelled with underscores (--model_dir).",
        epilog=ENV_EPILOG,
        formatter_class=_HelpFormatter,
    )
    groups = {key: p.add_argument_group(title, description) for key, (title, description) in GROUPS.items()}

    def add(group: str, name: str, *aliases: str, dest: Optional[str] = None, **kw) -> None:
        """``--model-dir`` as shown in --help; ``--model_dir`` (and ``aliases``) accepted, not shown again.
        A setting's default is always ServerSettings' (command_line_defaults), never given here."""
        dest = dest or name
        if dest in known:
            assert "default" not in kw, f"--{name}: the default of a setting comes from command_line_defaults()"
            kw["default"] = getattr(d, dest)
        g = groups[group]
        g.add_argument("--" + name.replace("_", "-"), dest=dest, **kw)
        hidden = dict(kw, help=argparse.SUPPRESS, default=argparse.SUPPRESS)
        for alias in (["--" + name] if "_" in name else []) + list(aliases):
            g.add_argument(alias, dest=dest, **hidden)

    def revision(model_flag: str) -> str:
        return f"ModelScope revision of {model_flag} (default: the latest)"

    # models
    add("models", "model_dir", help="offline ASR model: a local directory or a ModelScope id")
    add("models", "model_revision", "--offline-model-revision", "--offline_model_revision",
        help="ModelScope revision of --model-dir (funasr-wss-server-2pass's --offline-model-revision; default: the latest)")
    add("models", "online_model_dir", type=_optional_path,
        help="streaming ASR model: serves the 2pass profile (online and 2pass modes)"
        + ("" if two_pass else "; default: none, the offline profile"))
    add("models", "online_model_revision", help=revision("--online-model-dir"))
    add("models", "vad_dir", type=_optional_path, help="FSMN VAD model ('' disables VAD)")
    add("models", "vad_revision", help=revision("--vad-dir"))
    add("models", "punc_dir", type=_optional_path,
        help="CT-Transformer punctuation model, offline or vad_realtime export ('' disables punctuation)")
    add("models", "punc_revision", help=revision("--punc-dir"))
    add("models", "itn_dir", type=_optional_path,
        help="Chinese ITN grammar: a directory or ModelScope id (thuduj12/fst_itn_zh) with zh_itn_tagger.fst and "
        "zh_itn_verbalizer.fst; default: WeTextProcessing's grammar as the wetext package ships it")
    add("models", "itn_revision", help=revision("--itn-dir"))
    add("models", "lm_dir", action=_NamedFlag,
        help="n-gram LM (TLG.fst, config.yaml, lexicon.txt) for WFST decoding of the offline Paraformer: a local "
        "directory or a ModelScope id; 'none' or '': greedy decoding. The default is used only if it can be had "
        "(already downloaded, or the hub reachable); a directory you name must be usable")
    add("models", "lm_revision", help="ModelScope revision of --lm-dir")
    add("models", "quantize", type=_bool, nargs="?", const=True, metavar=_BOOL, help="use model_quant.onnx for ASR")
    add("models", "vad_quant", type=_bool, nargs="?", const=True, metavar=_BOOL, help="use model_quant.onnx for VAD")
    add("models", "punc_quant", type=_bool, nargs="?", const=True, metavar=_BOOL,
        help="use model_quant.onnx for punctuation")
    add("models", "download_model_dir", help="where ModelScope downloads go")
    add("models", "bladedisc", type=_bool, nargs="?", const=True, default=True, action=_NamedFlag, metavar=_BOOL,
        help="accepted for compatibility, no effect here: BladeDISC models are for FunASR's TorchScript GPU build, "
        "this server runs ONNX models")
    # decoding
    add("decoding", "hotword", type=_optional_path, help="hotword file, one 'word weight' per line")
    add("decoding", "global_beam", type=float, help="WFST search beam with --lm-dir (must be positive)")
    add("decoding", "lattice_beam", type=float,
        help="WFST lattice beam with --lm-dir (must be positive; it never changes the best path)")
    add("decoding", "am_scale", type=float,
        help="scale of the Paraformer's log-probabilities against the LM in the WFST search (must be positive)")
    add("decoding", "fst_inc_wts", type=int,
        help="hotword bias per matched token in the WFST search with --lm-dir (0 or more)")
    add("decoding", "decoder_thread_num", type=int, help="threads running model work")
    add("decoding", "io_thread_num", type=int, action=_NamedFlag,
        help="accepted for compatibility, no effect here: one asyncio event loop serves every socket")
    add("decoding", "model_thread_num", type=int, help="onnxruntime intra-op threads per model call")
    add("decoding", "batch_size", type=int, help="VAD segments per offline Paraformer call")
    add("decoding", "device", choices=("cpu", "cuda"), help="onnxruntime execution provider")
    add("decoding", "gpu", action="store_true", default=False, help="same as --device cuda")
    # network and TLS
    add("network", "listen_ip", help="address to listen on")
    add("network", "port", type=int, help="TCP port for ws:// (and wss:// with a certificate)")
    add("network", "certfile",
        help="PEM certificate for wss:// (ws:// is served on the same port), with its key inside unless --keyfile "
        "names it; '0' or '': plain ws:// only; default: a self-signed certificate generated once in --self-signed-dir")
    add("network", "keyfile", type=_optional_path,
        help="PEM private key of --certfile (default: none, the key is read from the --certfile file)")
    add("network", "self_signed_dir", help="where the self-signed certificate is generated and reused")
    add("network", "tls_only", action="store_true",
        help="serve wss:// (and https:// side endpoints) only; plain connections are dropped")
    add("network", "api_key",
        help="require this key: 'Authorization: Bearer <key>' (or 'Bearer; <key>'), or ?token=<key>; otherwise "
        f"HTTP 401 (a secret: better passed as {env_var('--api-key')})")
    add("network", "no_web_page", dest="web_page", action="store_false",
        help="turn off the browser page at / (microphone or file transcription in a browser), which is served "
        "by default; WebSocket clients are unaffected")
    add("network", "offline_is_final", type=_bool, nargs="?", const=True, metavar=_BOOL,
        help="offline profile: the one result of each utterance says \"is_final\": true, for clients that wait for it "
        "(xiaozhi's fun_server provider, funasr-client's file_asr_stream); FunASR's server and guides say false, and "
        "FunASR's own clients take either")
    # limits
    add("limits", "max_connections", type=int,
        help="most WebSocket connections at once; more are refused with HTTP 503 (default: no limit)")
    add("limits", "max_message_mib", type=int, help="largest single WebSocket message")
    add("limits", "max_utterance_seconds", type=int,
        help="most audio per utterance, in seconds (PCM at its own rate; files by their decoded length)")
    add("limits", "max_utterance_mib", type=int,
        help="most bytes per utterance as received (PCM at any audio_fs, or a compressed file)")
    add("limits", "max_text_kib", type=int,
        help="largest JSON text message (configuration, hotwords), checked before it is parsed")
    add("limits", "max_queue_mib", type=int,
        help="unread data per connection before the server stops reading from its socket (backpressure)")
    add("limits", "max_buffered_audio_mib", type=int,
        help="client audio held in memory by all connections together; an upload beyond it gets an error")
    add("limits", "max_decode_seconds", type=float,
        help="wall-clock limit for decoding one uploaded file (wav, mp3, ...)")
    add("limits", "idle_timeout", type=float,
        help="close a connection after this many seconds without a message; 0: never")
    add("limits", "shutdown_grace", type=float,
        help="on SIGTERM/SIGINT, seconds for utterances in flight to finish before connections are closed")
    # logging
    add("logging", "log_level", choices=("DEBUG", "INFO", "WARNING", "ERROR"), help="logging level")
    add("logging", "log_format", choices=("text", "json"),
        help="text lines, or one JSON object per line (with the connection id and utterance fields)")
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    return p


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("funasr-wss-server")
    except Exception:  # running from a source tree that was never installed
        return "(not installed)"


class _NamedFlag(argparse.Action):
    """Stores the value and remembers that the flag was given (``<dest>_named``): a default and a
    value the user typed are treated differently (``--lm-dir``)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        setattr(namespace, self.dest + "_named", True)


def _lm_settings(args: argparse.Namespace, settings: ServerSettings) -> None:
    """``--lm-dir`` and the WFST search flags: ``none``/``''`` turn the LM off; beams must be positive."""
    named = bool(getattr(args, "lm_dir_named", False))
    value = (settings.lm_dir or "").strip()
    settings.lm_dir = None if value.lower() in LM_OFF_VALUES else value
    settings.lm_dir_is_default = settings.lm_dir is not None and not named
    if settings.lm_revision is not None and not settings.lm_revision.strip():
        settings.lm_revision = None
    for name in ("global_beam", "lattice_beam", "am_scale"):
        value = getattr(settings, name)
        if not (math.isfinite(value) and value > 0):
            raise CliError(f"--{name.replace('_', '-')} must be a positive number, got {value:g}")
    if settings.fst_inc_wts < 0:
        raise CliError(f"--fst-inc-wts must not be negative, got {settings.fst_inc_wts}")


def _tls_settings(settings: ServerSettings) -> None:
    """``--certfile 0`` (or ``''``): plain ws:// only; a key file needs its certificate."""
    given = settings.certfile
    if given is not None and given.strip() in ("", "0"):
        settings.certfile, settings.plain_only = None, True
    if settings.plain_only and settings.tls_only:
        raise CliError("--tls-only needs TLS: drop --certfile 0 (or give a certificate)")
    if settings.keyfile and settings.plain_only:
        raise CliError(
            f"--keyfile {settings.keyfile} is given, but --certfile {(given or '').strip() or repr(given)} turns TLS off: "
            "drop --keyfile to serve plain ws:// only, or name the certificate with --certfile CERT to serve "
            "wss:// with that key"
        )
    if settings.keyfile and not settings.certfile:
        raise CliError(
            f"--keyfile {settings.keyfile} needs the certificate it belongs to: add --certfile CERT (without "
            "--certfile the server makes a self-signed certificate with a key of its own), or drop --keyfile"
        )


#: The reference's flags that are accepted and change nothing here, and why (logged once at start-up).
NO_EFFECT_FLAGS = {
    "io_thread_num": "one asyncio event loop serves every socket",
    "bladedisc": "BladeDISC models are for FunASR's TorchScript GPU build; this server runs ONNX models",
}


def _no_effect_flags(args: argparse.Namespace) -> tuple:
    """``--io-thread-num 1`` and the like as given (in the order of NO_EFFECT_FLAGS), for the start-up log."""
    given = []
    for dest, why in NO_EFFECT_FLAGS.items():
        if getattr(args, dest + "_named", False):
            value = getattr(args, dest)
            shown = str(value).lower() if isinstance(value, bool) else str(value)
            given.append(f"--{dest.replace('_', '-')} {shown} ({why})")
    return tuple(given)


def log_no_effect_flags(settings: ServerSettings) -> None:
    """One INFO line naming the reference's flags that were given and have no effect here."""
    if settings.no_effect_flags:
        log.info("accepted for compatibility with FunASR's servers, no effect here: %s",
                 "; ".join(settings.no_effect_flags))


def _env_flags(parser: argparse.ArgumentParser) -> Dict[str, argparse.Action]:
    """``FUNASR_WSS_PORT`` -> the ``--port`` action: one variable per flag listed in --help."""
    return {
        env_var(a.option_strings[0]): a
        for a in parser._actions
        if a.option_strings and a.help is not argparse.SUPPRESS
        and not isinstance(a, (argparse._HelpAction, argparse._VersionAction))
    }


def _env_value(var: str, raw: str, action: argparse.Action):
    """The value of ``action`` that ``var=raw`` gives, read as the flag reads it (its type, its choices)."""
    flag = action.option_strings[0]
    shown = "" if action.dest in SECRET_FLAGS else f"={raw!r}"
    try:
        if action.nargs == 0:  # a switch: --gpu, --tls-only, --no-web-page
            return action.const if _bool(raw) else action.default
        value = cast(Callable[[str], Any], action.type)(raw) if action.type else raw  # argparse: a callable here
    except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
        what = exc if isinstance(exc, argparse.ArgumentTypeError) else f"invalid {getattr(action.type, '__name__', 'value')} value"
        raise CliError(f"environment variable {var}{shown} (for {flag}): {what}") from None
    if action.choices is not None and value not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise CliError(f"environment variable {var}{shown} (for {flag}): expected one of {choices}")
    return value


def _env_namespace(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> Tuple[argparse.Namespace, Tuple[str, ...]]:
    """The values the ``FUNASR_WSS_*`` variables give, as a namespace the command line then overrides
    (argparse fills in a default only where the namespace has no value), and the variables' names."""
    flags = _env_flags(parser)
    given = sorted(name for name in environ if name.startswith(ENV_PREFIX))
    unknown = [name for name in given if name not in flags]
    if unknown:  # a misspelt FUNASR_WSS_API_KEY must not start a server without its key
        raise CliError(f"unknown environment variable {', '.join(unknown)}: each flag's is {ENV_PREFIX}<FLAG>, "
                       f"the flag upper-cased with '-' as '_' (--api-key: {env_var('--api-key')})")
    namespace = argparse.Namespace()
    for name in given:
        action = flags[name]
        setattr(namespace, action.dest, _env_value(name, environ[name], action))
        if isinstance(action, _NamedFlag):  # a value from the environment is named, as one on the command line
            setattr(namespace, action.dest + "_named", True)
    return namespace, tuple(given)


def log_env_vars(settings: ServerSettings) -> None:
    """One INFO line naming the ``FUNASR_WSS_*`` variables that set flags (names only, never values)."""
    if settings.env_vars:
        log.info("flags set from the environment: %s", ", ".join(settings.env_vars))


def settings_from_args(argv: Optional[Sequence[str]] = None, prog: str = PROG,
                       environ: Optional[Mapping[str, str]] = None) -> ServerSettings:
    """The settings of a command line: its flags, else the ``FUNASR_WSS_*`` variables of ``environ``
    (default: ``os.environ``), else command_line_defaults()."""
    parser = build_parser(prog)
    namespace, env_vars = _env_namespace(parser, os.environ if environ is None else environ)
    args = parser.parse_args(argv, namespace)
    known = {f.name for f in fields(ServerSettings)}
    settings = ServerSettings(**{k: v for k, v in vars(args).items() if k in known})
    settings.env_vars = env_vars
    if args.gpu:
        settings.device = "cuda"
    _tls_settings(settings)
    _lm_settings(args, settings)
    settings.no_effect_flags = _no_effect_flags(args)
    if settings.online_model_dir and not settings.vad_dir:
        raise CliError("the 2pass profile needs a VAD model: its segments drive both passes (give --vad-dir)")
    if settings.max_connections is not None and settings.max_connections < 1:
        raise CliError("--max-connections must be at least 1")
    if settings.api_key is not None and not settings.api_key.strip():
        settings.api_key = None
    if settings.shutdown_grace < 0:
        raise CliError("--shutdown-grace must not be negative")
    if settings.idle_timeout < 0:
        raise CliError("--idle-timeout must not be negative (0 turns it off)")
    if settings.max_decode_seconds <= 0:
        raise CliError("--max-decode-seconds must be positive")
    for name in ("decoder_thread_num", "model_thread_num", "batch_size", "max_message_mib", "max_utterance_seconds",
                 "max_utterance_mib", "max_text_kib", "max_queue_mib", "max_buffered_audio_mib"):
        if getattr(settings, name) < 1:
            raise CliError(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 <= settings.port <= 65535:
        raise CliError("--port must be between 0 and 65535")
    return settings


def session_limits(settings: ServerSettings) -> SessionLimits:
    return SessionLimits(
        max_utterance_seconds=settings.max_utterance_seconds,
        max_utterance_bytes=settings.max_utterance_mib * MIB,
        max_text_bytes=settings.max_text_kib << 10,
        max_decode_seconds=settings.max_decode_seconds,
        idle_timeout=settings.idle_timeout,
    )


def tls_policy(settings: ServerSettings) -> TlsPolicy:
    """TLS for the port: the given certificate, else the self-signed one (made once), or none."""
    if settings.plain_only:
        return TlsPolicy()
    try:
        if settings.certfile:
            cert, key = Path(settings.certfile), Path(settings.keyfile) if settings.keyfile else None
            _check_key_files(cert, key)
        else:
            cert, key = self_signed_pair(Path(settings.self_signed_dir).expanduser())
        context = server_context(cert, key)
    except TlsSetupError as exc:
        raise CliError(f"{exc} (pass --certfile 0 to serve plain ws:// only)") from None
    return TlsPolicy(context, tls_only=settings.tls_only)


def _holds_private_key(path: Path) -> Optional[bool]:
    """Whether a PEM file holds a private key (``-----BEGIN ... PRIVATE KEY-----``); None: unreadable."""
    try:
        with path.open("rb") as f:
            return b"PRIVATE KEY-----" in f.read(1 << 20)
    except OSError:
        return None


def _check_key_files(cert: Path, key: Optional[Path]) -> None:
    """A certificate without its key (or a key file that holds none) gets advice, not OpenSSL's "PEM lib"."""
    if key is None and cert.is_file() and _holds_private_key(cert) is False:
        raise CliError(
            f"the certificate {cert} holds no private key: name its key file with --keyfile KEY (or give "
            "--certfile a PEM file holding both; --certfile 0 serves plain ws:// only)"
        )
    if key is not None and key.is_file() and _holds_private_key(key) is False:
        raise CliError(
            f"--keyfile {key} holds no private key (is it a certificate?): --keyfile takes the PEM private key "
            f"of --certfile {cert}"
        )


def _schemes(policy: TlsPolicy) -> str:
    if policy.context is None:
        return "ws://"
    return "wss://" if policy.tls_only else "ws:// and wss://"


def _page_urls(policy: TlsPolicy, host: str, port: int) -> str:
    """Where to open the browser page; browsers allow the microphone on https:// or localhost only."""
    if host in ("0.0.0.0", "::", ""):
        host = "localhost"
    elif ":" in host:
        host = f"[{host}]"
    if policy.context is None:
        return f"http://{host}:{port}/"
    https = f"https://{host}:{port}/"
    return https if policy.tls_only else f"{https} (or http://{host}:{port}/)"


async def run_server(settings: ServerSettings, ready: Optional[asyncio.Event] = None) -> None:
    """Open the port, load the models (``/health`` says 503 meanwhile), serve until SIGTERM/SIGINT, drain."""
    from .model_loader import LOAD_ERRORS, load_models

    log_env_vars(settings)
    log_no_effect_flags(settings)
    server_hotwords = {}
    if settings.hotword:
        try:
            server_hotwords = parse_hotword_file(Path(settings.hotword))
        except (OSError, HotwordError) as exc:
            raise CliError(f"--hotword: {exc}") from None
    tls = tls_policy(settings)
    pool = DecoderPool(settings.decoder_thread_num)
    options = ServerOptions(
        host=settings.listen_ip,
        port=settings.port,
        max_message_bytes=settings.max_message_mib * MIB,
        max_queue_bytes=settings.max_queue_mib * MIB,
        max_buffered_audio_bytes=settings.max_buffered_audio_mib * MIB,
        limits=session_limits(settings),
        tls=tls,
        access=AccessPolicy(api_key=settings.api_key, max_connections=settings.max_connections),
        web_page=settings.web_page,
        offline_is_final=settings.offline_is_final,
    )
    server = AsrServer(None, pool, options, server_hotwords)
    try:
        await server.start()
    except OSError as exc:
        raise CliError(f"cannot listen on {settings.listen_ip}:{settings.port}: {exc.strerror or exc}") from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - non-Unix
            pass
    try:
        loading = asyncio.ensure_future(asyncio.to_thread(load_models, settings))
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait([loading, stopping], return_when=asyncio.FIRST_COMPLETED)
        if not loading.done():
            log.info("stopped while loading the models")
            return
        stopping.cancel()
        try:
            models = loading.result()
        except LOAD_ERRORS as exc:
            raise CliError(str(exc)) from None
        await _check_server_hotwords(models, server_hotwords)
        server.set_models(models)
        log.info(
            "serving the %s profile, %s on %s:%d (%d decoder threads%s%s)",
            server.profile,
            _schemes(tls),
            settings.listen_ip,
            server.port,
            settings.decoder_thread_num,
            f", at most {settings.max_connections} connections" if settings.max_connections else "",
            ", API key required" if settings.api_key else "",
        )
        if settings.web_page:
            log.info("web page: %s", _page_urls(tls, settings.listen_ip, server.port))
        if settings.offline_is_final:
            log.info("--offline-is-final: %s", "each offline result says \"is_final\": true" if server.profile == "offline"
                     else "no effect on the 2pass profile, whose last message of each utterance is final already")
        if ready is not None:
            ready.set()
        await stop.wait()
        log.info("shutting down: draining for up to %.0f s", settings.shutdown_grace)
        await server.drain(settings.shutdown_grace)
    finally:
        await server.close()
        pool.shutdown(wait=False)


async def _check_server_hotwords(models, hotwords) -> None:
    """Embed the ``--hotword`` list once at start-up (every connection reuses it) and name the words
    the model cannot take, so the operator hears of them here rather than never."""
    from .recognizer import embed_hotwords, supports_hotwords

    if not hotwords:
        return
    if not supports_hotwords(models):
        log.info("--hotword: %d hotwords read; this model does not take hotwords (a contextual or SeACo "
                 "Paraformer does), so they change nothing", len(hotwords))
        return
    embedding = await asyncio.to_thread(embed_hotwords, models, list(hotwords))
    for word, why in embedding.rejected:
        log.warning("--hotword: %r is not used: %s", word, why)
    log.info("--hotword: %d of %d hotwords embedded", len(hotwords) - len(embedding.rejected), len(hotwords))


class _RedactSecret(logging.Filter):
    """Writes ``***`` for the API key wherever a log record would show it: websockets' DEBUG lines print each
    handshake's headers (``Authorization: Bearer <key>``) and request path (``?token=<key>``)."""

    def __init__(self, secret: str):
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.secret in message:
            record.msg, record.args = message.replace(self.secret, "***"), ()
        return True


def redact_in_logs(secret: Optional[str]) -> None:
    """Keep ``secret`` out of every handler of the root logger (as logs.configure set them up)."""
    if secret:
        for handler in logging.getLogger().handlers:
            handler.addFilter(_RedactSecret(secret))


def main(argv: Optional[List[str]] = None, prog: str = PROG) -> int:
    try:
        settings = settings_from_args(argv, prog)
        logs.configure(settings.log_level, settings.log_format)
        redact_in_logs(settings.api_key)
    except CliError as exc:
        print(f"{prog}: error: {exc.message}", file=sys.stderr)
        return 2
    code = 0
    try:
        _serve(settings)
    except CliError as exc:
        print(f"{prog}: error: {exc.message}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        pass
    _exit_if_threads_linger(code)
    return code


def _serve(settings: ServerSettings) -> None:
    """``asyncio.run`` without its last step: that step waits for every worker thread (a model
    still loading, a long decode), which would hold the exit past ``--shutdown-grace``."""
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(run_server(settings))
    finally:
        tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.wait(tasks, timeout=2.0))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()  # the default executor is shut down without waiting


def _exit_if_threads_linger(code: int) -> None:
    """Model work that outlived the grace period (one onnxruntime call, a model load) cannot be
    interrupted, and Python would join its threads at exit: end the process now instead."""
    lingering = [t for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive() and not t.daemon]
    if lingering:
        log.warning("exiting with %d worker threads still busy; their work is abandoned", len(lingering))
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main_2pass(argv: Optional[List[str]] = None) -> int:
    """``funasr-wss-server-2pass``: the same server, 2pass profile by default."""
    return main(argv, PROG_2PASS)


if __name__ == "__main__":
    sys.exit(main())
