"""The command lines of FunASR's guides start this server as written.

FunASR's ``runtime/run_server.sh`` and ``runtime/run_server_2pass.sh`` (which its SDK guides,
``runtime/docs/SDK_advanced_guide_offline*.md`` and ``SDK_advanced_guide_online*.md``, run with
``--download-model-dir``, ``--model-dir``, ``--vad-dir``, ``--punc-dir``, ``--lm-dir``, ``--itn-dir``,
``--hotword`` and ``--certfile 0``) end in one command line for ``funasr-wss-server`` or
``funasr-wss-server-2pass``. Here each goes through the real parser and the real model loader,
with the hub unreachable: the ModelScope ids are served from earlier downloads in
``--download-model-dir`` (the fixture models under the ids' names, and an ``fst_itn_zh`` made
of the FSTs the installed ITN package ships), or replaced by local directories. Both spellings:
the scripts' ``--model-dir`` and the ``--model_dir`` of other scripts.

Also: every flag of FunASR's ``funasr-wss-server.cpp`` and ``funasr-wss-server-2pass.cpp`` is
accepted, and ``--help`` lists each flag once with its real default.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import re
import shutil
import signal
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
from websockets.sync.client import connect

from funasr_wss.models.live_stream import LiveRecognizer
from funasr_wss.models.model_dir import ModelDirError
from funasr_wss.models.wfst_decoder import WfstDecoder
from funasr_wss.server.cli import PROG, PROG_2PASS, build_parser, log_no_effect_flags, settings_from_args, tls_policy
from funasr_wss.server.hotwords import parse_hotword_file
from funasr_wss.server.model_dirs import ITN_FILES, resolve_model_dir
from funasr_wss.server.model_loader import load_models
from funasr_wss.server.tls import self_signed_pair
from tests.helpers import fixture_pcm, free_port
from tests.paths import (
    ASR_ONLINE_DIR,
    ASR_TIMESTAMP_DIR,
    LM_DIR,
    PUNC_DIR,
    PUNC_LARGE_DIR,
    PUNC_REALTIME_DIR,
    VAD_DIR,
)
from tests.test_cli import SERVER_2PASS_CMD, SERVER_CMD, server_process

ITN_ID = "thuduj12/fst_itn_zh"

#: The ids each script passes (FunASR runtime/run_server.sh, run_server_2pass.sh), and the fixture model
#: that stands in for each (same directory name, except the ITN grammar).
SCRIPT_IDS: Dict[str, Dict[str, str]] = {
    "run_server.sh": {
        "--model-dir": "iic/speech_paraformer-large-vad-punc_asr_nat-zh-cn-16k-common-vocab8404-onnx",
        "--vad-dir": "iic/speech_fsmn_vad_zh-cn-16k-common-onnx",
        "--punc-dir": "iic/punc_ct-transformer_cn-en-common-vocab471067-large-onnx",
        "--itn-dir": ITN_ID,
        "--lm-dir": "iic/speech_ngram_lm_zh-cn-ai-wesp-fst",
    },
    "run_server_2pass.sh": {
        "--model-dir": "damo/speech_paraformer-large-vad-punc_asr_nat-zh-cn-16k-common-vocab8404-onnx",
        "--online-model-dir": "damo/speech_paraformer-large_asr_nat-zh-cn-16k-common-vocab8404-online-onnx",
        "--vad-dir": "damo/speech_fsmn_vad_zh-cn-16k-common-onnx",
        "--punc-dir": "damo/punc_ct-transformer_zh-cn-common-vad_realtime-vocab272727-onnx",
        "--itn-dir": ITN_ID,
        "--lm-dir": "damo/speech_ngram_lm_zh-cn-ai-wesp-fst",
    },
}
SCRIPT_PROG = {"run_server.sh": PROG, "run_server_2pass.sh": PROG_2PASS}
FIXTURE_DIRS = [ASR_TIMESTAMP_DIR, ASR_ONLINE_DIR, VAD_DIR, PUNC_LARGE_DIR, PUNC_REALTIME_DIR, LM_DIR]


# ------------------------------------------------------------------ the ITN grammar's files


def itn_package_fsts() -> Tuple[Path, Path]:
    """The Chinese ITN tagger and verbalizer that the installed ITN package ships: the one models.itn loads
    its default grammar from first. WeTextProcessing's ``itn`` names them as FunASR's fst_itn_zh does;
    ``wetext`` keeps them as ``fsts/zh/itn/{tagger,verbalizer}.fst``."""
    from funasr_wss.models.itn import ChineseItn

    ChineseItn()  # loads the default grammar, so the package models.itn uses is imported
    layouts = {
        "wetext": ("fsts/zh/itn/tagger.fst", "fsts/zh/itn/verbalizer.fst"),
        "itn": ("zh_itn_tagger.fst", "zh_itn_verbalizer.fst"),
    }
    order = [name for name in layouts if name in sys.modules] + list(layouts)
    for package in order:
        spec = importlib.util.find_spec(package)
        for root in (spec.submodule_search_locations or []) if spec else []:
            tagger, verbalizer = (Path(root) / name for name in layouts[package])
            if tagger.is_file() and verbalizer.is_file():
                return tagger, verbalizer
    raise AssertionError("no Chinese ITN FSTs in the installed ITN package (wetext or WeTextProcessing)")


def make_itn_dir(target: Path) -> Path:
    """A directory laid out as ModelScope's thuduj12/fst_itn_zh: zh_itn_tagger.fst, zh_itn_verbalizer.fst."""
    target.mkdir(parents=True)
    for source, name in zip(itn_package_fsts(), ITN_FILES):
        shutil.copy(source, target / name)
    return target


# ------------------------------------------------------------------ the machine the guides assume


class Guide:
    """The files the scripts name (certificate, key, hotwords), a download directory holding every id the
    scripts pass, and the same models as local directories."""

    def __init__(self, root: Path):
        self.root = root
        self.download = root / "models"
        for model in FIXTURE_DIRS:  # ModelScope's layout: <download dir>/<owner>/<name>; iic serves damo too
            shutil.copytree(model, self.download / "iic" / model.name)
        self.downloaded_itn = make_itn_dir(self.download / ITN_ID)
        self.local_itn = make_itn_dir(root / "fst_itn_zh")
        self.cert, self.key = self_signed_pair(root / "ssl_key")
        self.hotword = root / "hotwords.txt"
        self.hotword.write_text("阿里巴巴 20\n哇哦 30\n", encoding="utf-8")

    def local_dirs(self, script: str) -> Dict[str, str]:
        local = {"--model-dir": ASR_TIMESTAMP_DIR, "--vad-dir": VAD_DIR, "--itn-dir": self.local_itn, "--lm-dir": LM_DIR}
        if script == "run_server.sh":
            local["--punc-dir"] = PUNC_LARGE_DIR
        else:
            local.update({"--online-model-dir": ASR_ONLINE_DIR, "--punc-dir": PUNC_REALTIME_DIR})
        return {flag: str(path) for flag, path in local.items()}

    def argv(self, script: str, dirs: str = "ids", port: int = 10095, tls: bool = True) -> List[str]:
        """The script's command line, in its order; ``tls=False``: run with ``certfile=0``, which the
        scripts turn into ``--certfile "" --keyfile ""``."""
        models = SCRIPT_IDS[script] if dirs == "ids" else self.local_dirs(script)
        argv = ["--download-model-dir", str(self.download), "--model-dir", models["--model-dir"]]
        if "--online-model-dir" in models:
            argv += ["--online-model-dir", models["--online-model-dir"]]
        argv += ["--vad-dir", models["--vad-dir"], "--punc-dir", models["--punc-dir"], "--itn-dir", models["--itn-dir"],
                 "--lm-dir", models["--lm-dir"], "--decoder-thread-num", "2", "--model-thread-num", "1",
                 "--io-thread-num", "1", "--port", str(port),
                 "--certfile", str(self.cert) if tls else "", "--keyfile", str(self.key) if tls else "",
                 "--hotword", str(self.hotword)]
        return argv

    def expected_dir(self, script: str, dirs: str, flag: str) -> Path:
        if dirs == "local":
            return Path(self.local_dirs(script)[flag])
        if flag == "--itn-dir":
            return self.downloaded_itn
        return self.download / "iic" / SCRIPT_IDS[script][flag].split("/", 1)[1]


@pytest.fixture(scope="module")
def guide(tmp_path_factory) -> Guide:
    return Guide(tmp_path_factory.mktemp("guide"))


def underscored(argv: List[str]) -> List[str]:
    """``--model-dir`` → ``--model_dir``, values untouched."""
    return ["--" + a[2:].replace("-", "_") if a.startswith("--") else a for a in argv]


# ------------------------------------------------------------------ the scripts' command lines, in-process


@pytest.mark.parametrize("dirs", ["ids", "local"])
@pytest.mark.parametrize("spelling", ["dashes", "underscores"])
@pytest.mark.parametrize("script", ["run_server.sh", "run_server_2pass.sh"])
def test_the_scripts_command_lines_load_every_model_they_name(guide, hub, caplog, script, spelling, dirs):
    argv = guide.argv(script, dirs)
    if spelling == "underscores":
        argv = underscored(argv)
    settings = settings_from_args(argv, SCRIPT_PROG[script])
    assert (settings.port, settings.decoder_thread_num, settings.model_thread_num) == (10095, 2, 1)
    assert settings.certfile == str(guide.cert) and settings.keyfile == str(guide.key) and not settings.plain_only
    assert [f.split(" (")[0] for f in settings.no_effect_flags] == ["--io-thread-num 1"]
    assert tls_policy(settings).context is not None
    assert parse_hotword_file(Path(settings.hotword)) == {"阿里巴巴": 20, "哇哦": 30}

    with caplog.at_level(logging.INFO):
        models = load_models(settings)
    assert hub.probes == 0, "every id is served from the earlier download, without asking the hub"
    two_pass = script == "run_server_2pass.sh"
    assert isinstance(models, LiveRecognizer) == two_pass
    pipeline = models.pipeline if two_pass else models
    assert isinstance(pipeline.asr.lm, WfstDecoder)
    assert pipeline.asr.lm.directory == guide.expected_dir(script, dirs, "--lm-dir")
    assert pipeline.asr.model_path.parent == guide.expected_dir(script, dirs, "--model-dir")
    assert pipeline.itn("一百二十三") == "123"
    (summary,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("vad=")]
    assert f"itn={guide.expected_dir(script, dirs, '--itn-dir')}," in summary
    assert f"vad={guide.expected_dir(script, dirs, '--vad-dir')}," in summary
    assert f"punc={guide.expected_dir(script, dirs, '--punc-dir')} " in summary
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "-dir" in r.getMessage()]


@pytest.mark.parametrize("script", ["run_server.sh", "run_server_2pass.sh"])
def test_the_scripts_certfile_0_serves_plain_ws(guide, script):
    """``run_server.sh --certfile 0`` (the guides' way to turn SSL off) passes ``--certfile "" --keyfile ""``."""
    settings = settings_from_args(guide.argv(script, tls=False), SCRIPT_PROG[script])
    assert settings.plain_only and settings.certfile is None and settings.keyfile is None
    assert tls_policy(settings).context is None


# ------------------------------------------------------------------ --itn-dir thuduj12/fst_itn_zh


def test_an_earlier_itn_download_is_reused_without_the_hub(tmp_path, hub):
    itn = make_itn_dir(tmp_path / ITN_ID)
    assert resolve_model_dir(ITN_ID, tmp_path, flag="--itn-dir") == itn
    assert hub.probes == 0


def test_an_itn_id_that_is_not_downloaded_names_the_itn_flag(tmp_path, hub):
    settings = settings_from_args(["--model-dir", str(ASR_TIMESTAMP_DIR), "--vad-dir", str(VAD_DIR), "--punc-dir",
                                   str(PUNC_DIR), "--lm-dir", "none", "--itn-dir", ITN_ID,
                                   "--download-model-dir", str(tmp_path)])
    with pytest.raises(ModelDirError) as err:
        load_models(settings)
    message = str(err.value)
    assert message.startswith(f"--itn-dir {ITN_ID}:") and "unreachable" in message
    assert "(--itn-dir /path/to/dir)" in message and "--model-dir" not in message and "--vad-dir" not in message
    assert "leave --itn-dir out" in message


@pytest.mark.parametrize("missing", ITN_FILES)
def test_an_itn_directory_without_its_fsts_names_the_flag_and_the_file(tmp_path, hub, missing):
    itn = make_itn_dir(tmp_path / "fst_itn_zh")
    (itn / missing).unlink()
    with pytest.raises(ModelDirError) as err:
        load_models(settings_from_args(["--model-dir", str(ASR_TIMESTAMP_DIR), "--vad-dir", str(VAD_DIR),
                                        "--punc-dir", "", "--lm-dir", "none", "--itn-dir", str(itn)]))
    assert str(err.value).startswith(f"--itn-dir {itn}:") and missing in str(err.value)


# ------------------------------------------------------------------ every flag of the reference's servers

#: Every flag of FunASR's funasr-wss-server.cpp (offline) and funasr-wss-server-2pass.cpp, with a value and
#: where it lands: (flag, value, settings field, expected value); field None: no effect here (logged).
REFERENCE_FLAGS = [
    ("--download-model-dir", "/srv/models", "download_model_dir", "/srv/models"),
    ("--model-dir", "/srv/asr", "model_dir", "/srv/asr"),
    ("--model-revision", "v2.0.5", "model_revision", "v2.0.5"),
    ("--offline-model-revision", "v2.0.4", "model_revision", "v2.0.4"),  # the 2pass server's spelling
    ("--online-model-dir", "/srv/online", "online_model_dir", "/srv/online"),
    ("--online-model-revision", "v2.0.5", "online_model_revision", "v2.0.5"),
    ("--quantize", "false", "quantize", False),
    ("--bladedisc", "true", None, None),
    ("--vad-dir", "/srv/vad", "vad_dir", "/srv/vad"),
    ("--vad-revision", "v2.0.6", "vad_revision", "v2.0.6"),
    ("--vad-quant", "false", "vad_quant", False),
    ("--punc-dir", "/srv/punc", "punc_dir", "/srv/punc"),
    ("--punc-revision", "v2.0.5", "punc_revision", "v2.0.5"),
    ("--punc-quant", "false", "punc_quant", False),
    ("--itn-dir", ITN_ID, "itn_dir", ITN_ID),
    ("--itn-revision", "v1.0.1", "itn_revision", "v1.0.1"),
    ("--lm-dir", "/srv/lm", "lm_dir", "/srv/lm"),
    ("--lm-revision", "v1.0.1", "lm_revision", "v1.0.1"),
    ("--listen-ip", "127.0.0.1", "listen_ip", "127.0.0.1"),
    ("--port", "10095", "port", 10095),
    ("--io-thread-num", "3", None, None),
    ("--decoder-thread-num", "5", "decoder_thread_num", 5),
    ("--model-thread-num", "2", "model_thread_num", 2),
    ("--certfile", "0", "plain_only", True),
    ("--keyfile", "", "keyfile", None),
    ("--global-beam", "4", "global_beam", 4.0),
    ("--lattice-beam", "2", "lattice_beam", 2.0),
    ("--am-scale", "8", "am_scale", 8.0),
    ("--hotword", "/srv/hotwords.txt", "hotword", "/srv/hotwords.txt"),
    ("--fst-inc-wts", "10", "fst_inc_wts", 10),
    ("--gpu", None, "device", "cuda"),
    ("--batch-size", "4", "batch_size", 4),
]


@pytest.mark.parametrize("prog", [PROG, PROG_2PASS])
@pytest.mark.parametrize("spelling", ["dashes", "underscores"])
@pytest.mark.parametrize("flag,value,field,expected", REFERENCE_FLAGS, ids=[f[0] for f in REFERENCE_FLAGS])
def test_every_reference_flag_is_accepted(prog, spelling, flag, value, field, expected):
    argv = [flag] + ([value] if value is not None else [])
    if spelling == "underscores":
        argv = underscored(argv)
    settings = settings_from_args(argv, prog)
    if field is None:
        (said,) = settings.no_effect_flags
        assert said.startswith(f"{flag} {value} (")
    else:
        assert getattr(settings, field) == expected
        assert settings.no_effect_flags == ()


def test_the_flags_without_effect_are_said_once_at_start_up(caplog):
    settings = settings_from_args(["--io-thread-num", "4", "--bladedisc", "false"])
    with caplog.at_level(logging.INFO):
        log_no_effect_flags(settings)
    (record,) = caplog.records
    assert record.levelno == logging.INFO
    message = record.getMessage()
    assert "no effect here" in message and "--io-thread-num 4" in message and "--bladedisc false" in message
    caplog.clear()
    with caplog.at_level(logging.INFO):
        log_no_effect_flags(settings_from_args(["--io-thread-num", "2"]))  # the default, given: still said
        log_no_effect_flags(settings_from_args([]))  # not given: nothing to say
    assert len(caplog.records) == 1 and "--io-thread-num 2" in caplog.records[0].getMessage()


# ------------------------------------------------------------------ --help


def _help_entries(help_text: str) -> Dict[str, str]:
    """Each option's help entry (its lines joined), by the spelling that starts it."""
    entries: Dict[str, str] = {}
    current = None
    for line in help_text.split("options:", 1)[1].splitlines():
        match = re.match(r"^  (-[-\w]+)", line)
        if match:
            current = match.group(1)
            assert current not in entries, f"{current} is listed twice"
            entries[current] = line
        elif current is not None:
            entries[current] += " " + line.strip()
    return {flag: " ".join(entry.split()) for flag, entry in entries.items()}


def _shown(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


@pytest.mark.parametrize("prog", [PROG, PROG_2PASS])
def test_help_lists_each_flag_once_with_its_real_default(monkeypatch, prog):
    monkeypatch.setenv("COLUMNS", "400")  # no wrapping inside a default
    parser = build_parser(prog)
    help_text = parser.format_help()
    visible = [a for a in parser._actions if a.help is not argparse.SUPPRESS and a.dest != "help"]
    for action in visible:
        assert len(action.option_strings) == 1, f"one spelling in --help: {action.option_strings}"
        assert "_" not in action.option_strings[0], f"{action.option_strings[0]}: the dashed spelling is listed"
    assert len({a.dest for a in visible}) == len(visible), "each setting has one flag in --help"
    entries = _help_entries(help_text)
    assert set(entries) == {a.option_strings[0] for a in visible} | {"-h"}
    usage = re.findall(r"\[(--[\w-]+)", help_text.split("options:", 1)[0])
    assert sorted(usage) == sorted(entries.keys() - {"-h"}), "the usage line lists each flag once"

    defaults = settings_from_args([], prog)
    for action in visible:
        entry = entries[action.option_strings[0]]
        for wrong in ("default: None", "default: False", "default: True", "default: no limit) (default"):
            assert wrong not in entry, entry
        shown = re.findall(r"\(default: ([^)]*)\)", entry)
        assert len(shown) <= 1, entry
        value = getattr(defaults, action.dest, None)
        if shown and value is not None:
            assert shown[0] == _shown(value), entry
    # the page is on unless --no-web-page is given: the help must read that way
    web = entries["--no-web-page"]
    assert "served by default" in web and "(default:" not in web
    assert defaults.web_page is True and settings_from_args(["--no-web-page"], prog).web_page is False
    for flag in ("--bladedisc", "--io-thread-num"):
        assert "no effect here" in entries[flag]
    assert "self-signed" in entries["--certfile"] and "(default:" not in entries["--certfile"]
    assert "(default: 10096)" in entries["--port"] and "(default: v1.0.2)" in entries["--lm-revision"]


@pytest.mark.parametrize("prog", [PROG, PROG_2PASS])
def test_every_listed_flag_takes_its_underscore_spelling_too(prog):
    parser = build_parser(prog)
    shown = {a.option_strings[0]: a.dest for a in parser._actions if a.option_strings and a.help is not argparse.SUPPRESS}
    spellings = {s: a.dest for a in parser._actions for s in a.option_strings}
    for flag, dest in shown.items():
        if "-" in flag[2:]:
            assert spellings.get("--" + flag[2:].replace("-", "_")) == dest, flag


# ------------------------------------------------------------------ the scripts' command lines, as processes


def _unverified_tls() -> ssl.SSLContext:
    """As FunASR's clients connect: TLS without verifying the certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    return proc.stderr.read()


def _assert_started_as_written(log: str, guide: Guide, script: str) -> None:
    assert f"itn={guide.expected_dir(script, 'ids', '--itn-dir')}," in log
    assert f"n-gram LM: {guide.expected_dir(script, 'ids', '--lm-dir')}" in log and "--lm-dir" not in log
    (no_effect,) = [line for line in log.splitlines() if "no effect here" in line]
    assert "INFO" in no_effect and "--io-thread-num 1" in no_effect
    assert "Traceback" not in log


def test_run_server_sh_command_line_starts_and_answers(guide):
    """run_server.sh's command line as it is, with its ModelScope ids; the hub unreachable (NO_HUB)."""
    port = free_port()
    with server_process(SERVER_CMD + guide.argv("run_server.sh", port=port), port, own_port_flags=True) as proc:
        pcm = fixture_pcm()
        with connect(f"wss://127.0.0.1:{port}", ssl=_unverified_tls()) as ws:
            ws.send(json.dumps({"mode": "offline", "wav_name": "guide", "wav_format": "pcm", "audio_fs": 16000,
                                "is_speaking": True, "itn": True}))
            for i in range(0, len(pcm), 1920):
                ws.send(pcm[i : i + 1920])
            ws.send(json.dumps({"is_speaking": False}))
            msg = json.loads(ws.recv(timeout=60))
        assert msg["mode"] == "offline" and msg["wav_name"] == "guide" and msg["text"] and msg["is_final"] is False
        log = _stop(proc)
    assert "offline profile" in log
    _assert_started_as_written(log, guide, "run_server.sh")


def test_run_server_2pass_sh_command_line_starts_and_answers(guide):
    """run_server_2pass.sh's command line (damo/ ids, served by the iic/ downloads) through funasr-wss-server-2pass."""
    port = free_port()
    cmd = SERVER_2PASS_CMD + guide.argv("run_server_2pass.sh", port=port)
    with server_process(cmd, port, own_port_flags=True) as proc:
        pcm = fixture_pcm()
        with connect(f"wss://127.0.0.1:{port}", ssl=_unverified_tls()) as ws:
            ws.send(json.dumps({"mode": "2pass", "wav_name": "guide2", "chunk_size": [5, 10, 5], "is_speaking": True}))
            for i in range(0, len(pcm), 9600):
                ws.send(pcm[i : i + 9600])
            ws.send(json.dumps({"is_speaking": False}))
            msgs = []
            while not msgs or not msgs[-1].get("is_final"):
                msgs.append(json.loads(ws.recv(timeout=60)))
        assert {m["mode"] for m in msgs} == {"2pass-online", "2pass-offline"}
        assert msgs[-1]["mode"] == "2pass-offline" and msgs[-1]["wav_name"] == "guide2"
        assert any(m["text"] for m in msgs if m["mode"] == "2pass-offline")
        log = _stop(proc)
    assert "2pass profile" in log
    _assert_started_as_written(log, guide, "run_server_2pass.sh")
