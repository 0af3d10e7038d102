"""``funasr-wss-client``: recognise audio files (or the microphone) with a FunASR server.

Every flag of FunASR's ``funasr_wss_client.py`` is accepted with its own
spelling (``--audio_in``, ``--chunk_size``, ``--ssl 0`` ...) so scripts written
for it keep working, and with dashes (``--audio-in``).  The defaults follow
this project's server (``127.0.0.1:10096``) and FunASR's client elsewhere
(``--mode 2pass``, ``--ssl 1``).

Exit status: 0 when every file was recognised, 1 when any failed (each failure
is reported on stderr as it happens, the other files carry on), 2 for a bad
command line, 130 when interrupted.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass, field
from typing import IO, List, Optional, Sequence

from funasr_wss.server.protocol import DEFAULT_CHUNK_SIZE, DEFAULT_MODE, MODES, SVS_LANGUAGES

from .batch import FileResult, run_batch
from .config import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    ConnectionSettings,
    RecognitionSettings,
    parse_chunk_size,
    server_url,
)
from .errors import ClientError
from .hotwords import hotword_message
from .inputs import expand_inputs
from .output import FORMATS, OutputDir, StdoutPrinter
from .progress import Progress

PROG = "funasr-wss-client"


def _switch(value: str) -> bool:
    """FunASR writes ``--ssl 1`` / ``--use_itn 0``; ``true``/``false`` are accepted too."""
    v = str(value).strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected 1 or 0, got {value!r}")


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1, got {value!r}")
    return number


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {value!r}")
    return number


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Recognise audio files (wav, mp3, flac, m4a, raw .pcm, directories, .scp and list files) "
        "or the microphone with a FunASR-compatible WebSocket server. FunASR's funasr_wss_client.py flags work unchanged.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )

    def add(name: str, **kw) -> None:
        """``--audio_in`` and ``--audio-in`` for the same option: FunASR's spelling and the usual one."""
        names = ["--" + name.replace("_", "-")]
        if "_" in name:
            names.append("--" + name)
        p.add_argument(*names, dest=name, **kw)

    p.add_argument("files", nargs="*", metavar="FILE",
                   help="audio files, directories, .scp files ('name path' lines) or list files (one path per line)")
    add("audio_in", action="append", default=[], metavar="PATH",
        help="FunASR's input flag: an audio file, .scp or list file (may be repeated)")
    server = p.add_argument_group("server")
    server_add = server.add_argument
    server_add("--host", default=DEFAULT_HOST, help="server host")
    server_add("--port", type=int, default=DEFAULT_PORT, help="server port")
    server_add("--ssl", type=_switch, default=True, metavar="1|0",
               help="1: wss:// (TLS, certificate not verified, as FunASR's client), 0: ws://")
    server_add("--url", default=None, help="full ws:// or wss:// URL; overrides --host, --port and --ssl")
    server_add("--api-key", "--api_key", dest="api_key", default=None,
               help="sent as 'Authorization: Bearer <key>'")
    add("result_timeout", type=_positive_float, default=300.0,
        help="seconds without any message from the server, after the audio is sent, before giving up on a file")

    rec = p.add_argument_group("recognition")

    def rec_add(name: str, **kw) -> None:
        names = ["--" + name.replace("_", "-")] + (["--" + name] if "_" in name else [])
        rec.add_argument(*names, dest=name, **kw)

    rec_add("mode", choices=MODES, default=DEFAULT_MODE,
            help="offline: whole file, punctuated result; online: streamed, fast text; 2pass: both")
    rec_add("chunk_size", default=",".join(map(str, DEFAULT_CHUNK_SIZE)), help="streaming look-back,chunk,look-ahead in 60 ms frames")
    rec_add("chunk_interval", type=_positive_int, default=10,
            help="a stride of audio is 60*chunk_size[1]/chunk_interval ms")
    rec_add("encoder_chunk_look_back", type=int, default=4, help="sent to the server as FunASR's client does")
    rec_add("decoder_chunk_look_back", type=int, default=0, help="sent to the server as FunASR's client does")
    rec_add("hotword", default="", help="file of 'word weight' lines (or a string sent as it is)")
    rec_add("use_itn", type=_switch, default=True, metavar="1|0", help="inverse text normalisation of the result")
    rec_add("svs_lang", choices=SVS_LANGUAGES, default="auto",
            help="language for a SenseVoiceSmall server (ignored by Paraformer servers)")
    rec_add("svs_itn", type=_switch, default=True, metavar="1|0",
            help="SenseVoiceSmall writes punctuation and numbers itself (ignored by Paraformer servers)")
    rec_add("audio_fs", type=_positive_int, default=16000, help="sample rate of raw .pcm inputs (other files are decoded)")
    rec_add("send_without_sleep", action="store_true",
            help="in online/2pass, send audio as fast as possible instead of at the pace of real time")

    out = p.add_argument_group("batch and output")

    def out_add(name: str, **kw) -> None:
        names = ["--" + name.replace("_", "-")] + (["--" + name] if "_" in name else [])
        out.add_argument(*names, dest=name, **kw)

    out_add("thread_num", type=_positive_int, default=1, help="connections at once, each taking the next file")
    out_add("output_dir", default=None,
            help="write <name>.txt/.json/.srt per input and a combined 'text' file (name<TAB>text) here")
    out_add("format", choices=FORMATS, default="text",
            help="text: the text (name<TAB>text for several inputs); jsonl: one JSON object per file as it "
            "finishes; srt: subtitles from the sentence timestamps")
    out_add("no_progress", action="store_true", help="no progress bar on stderr")
    out_add("words_max_print", type=int, default=10000, help="characters of live text shown with --mic")

    mic = p.add_argument_group("microphone")
    mic.add_argument("--mic", action="store_true",
                     help="stream the microphone until Ctrl-C (needs: pip install 'funasr-wss-server[mic]')")
    mic.add_argument("--mic-seconds", "--mic_seconds", dest="mic_seconds", type=_positive_float, default=None,
                     help="stop the microphone after this many seconds")
    mic.add_argument("--mic-device", "--mic_device", dest="mic_device", default=None,
                     help="input device (name or number, as sounddevice lists them)")
    return p


@dataclass(frozen=True)
class CliOptions:
    """A parsed, checked command line."""

    inputs: List[str]
    connection: ConnectionSettings
    recognition: RecognitionSettings
    workers: int = 1
    fmt: str = "text"
    output_dir: Optional[str] = None
    no_progress: bool = False
    mic: bool = False
    mic_seconds: Optional[float] = None
    mic_device: Optional[str] = None
    words_max_print: int = 10000
    warnings: List[str] = field(default_factory=list)


def parse_options(argv: Optional[Sequence[str]] = None) -> CliOptions:
    """The command line → :class:`CliOptions`; a bad value exits with status 2 and a usage line."""
    parser = build_parser()
    args = parser.parse_args(argv)
    inputs = list(args.files) + list(args.audio_in)
    if args.mic and inputs:
        parser.error("give audio files or --mic, not both")
    if not args.mic and not inputs:
        parser.error("no input: name audio files (or --audio_in), or use --mic")
    try:
        url = server_url(args.host, args.port, args.ssl, args.url)
        chunk_size = parse_chunk_size(args.chunk_size)
        hotwords, warnings = hotword_message(args.hotword)
        recognition = RecognitionSettings(
            mode=args.mode,
            chunk_size=chunk_size,
            chunk_interval=args.chunk_interval,
            encoder_chunk_look_back=args.encoder_chunk_look_back,
            decoder_chunk_look_back=args.decoder_chunk_look_back,
            hotwords=hotwords,
            itn=args.use_itn,
            svs_lang=args.svs_lang,
            svs_itn=args.svs_itn,
            audio_fs=args.audio_fs,
            send_without_sleep=args.send_without_sleep,
            result_timeout=args.result_timeout,
        )
    except (ValueError, ClientError) as exc:
        parser.error(str(exc))
    return CliOptions(
        inputs=inputs,
        connection=ConnectionSettings(url=url, api_key=args.api_key),
        recognition=recognition,
        workers=args.thread_num,
        fmt=args.format,
        output_dir=args.output_dir,
        no_progress=args.no_progress,
        mic=args.mic,
        mic_seconds=args.mic_seconds,
        mic_device=args.mic_device,
        words_max_print=args.words_max_print,
        warnings=warnings,
    )


def _warn(stderr: IO[str], message: str) -> None:
    stderr.write(f"{PROG}: {message}\n")
    stderr.flush()


def run_files(options: CliOptions, stdout: IO[str], stderr: IO[str]) -> int:
    """Recognise the files of ``options``; the exit status."""
    items = expand_inputs(options.inputs)
    out_dir = OutputDir(options.output_dir, options.fmt, items) if options.output_dir else None
    printer = StdoutPrinter(options.fmt, len(items), stdout)
    progress = Progress(len(items), stderr, enabled=not options.no_progress and len(items) > 1 and stderr.isatty())
    write_errors: List[str] = []

    def on_result(result: FileResult) -> None:
        progress.clear()
        if not result.ok:
            _warn(stderr, f"{result.item.path}: {result.error}")
        for warning in result.transcript.warnings if result.transcript else ():
            _warn(stderr, f"{result.item.path}: the server warns: {warning}")
        printer.add(result)
        if out_dir is not None:
            try:
                out_dir.write(result)
            except ClientError as exc:
                write_errors.append(str(exc))
                _warn(stderr, str(exc))
        progress.advance(result.ok, result.audio_seconds)

    progress.draw()
    try:
        results = asyncio.run(run_batch(items, options.connection, options.recognition, options.workers, on_result))
    finally:
        progress.clear()
    if out_dir is not None:
        out_dir.write_combined(results)
    failed = sum(1 for r in results if not r.ok)
    if failed and len(results) > 1:
        _warn(stderr, f"{failed} of {len(results)} files failed")
    return 1 if failed or write_errors else 0


def run_mic(options: CliOptions, stdout: IO[str], stderr: IO[str]) -> int:
    """Stream the microphone; print (and write) its transcript like a file's."""
    from .mic import LiveLine, run_microphone

    live = LiveLine(stderr, enabled=stderr.isatty(), max_chars=options.words_max_print)
    result = asyncio.run(run_microphone(
        options.connection, options.recognition, live, options.mic_seconds, options.mic_device
    ))
    StdoutPrinter(options.fmt, 1, stdout).add(result)
    if options.output_dir:
        out_dir = OutputDir(options.output_dir, options.fmt, [result.item])
        out_dir.write(result)
        out_dir.write_combined([result])
    return 0


def main(argv: Optional[Sequence[str]] = None, stdout: Optional[IO[str]] = None,
         stderr: Optional[IO[str]] = None) -> int:
    """The console script; returns the exit status instead of exiting (tests call it)."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    try:
        options = parse_options(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2), already printed
        return exc.code if isinstance(exc.code, int) else 2
    for warning in options.warnings:
        _warn(stderr, warning)
    try:
        if options.mic:
            return run_mic(options, stdout, stderr)
        return run_files(options, stdout, stderr)
    except ClientError as exc:
        _warn(stderr, str(exc))
        return 1
    except KeyboardInterrupt:
        _warn(stderr, "interrupted")
        return 130
    except BrokenPipeError:  # `funasr-wss-client ... | head`
        return 1
