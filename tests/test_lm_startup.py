"""``--lm-dir`` at start-up: the default-vs-named rule, the checks, where the LM is attached.

The contract is FunASR's C++ server (shared/lm-decoding.md §1.2, §2.6, §4): the LM is on by default
(``damo/speech_ngram_lm_zh-cn-ai-wesp-fst``, revision ``v1.0.2``), ``none``/``""`` turns it off,
SenseVoiceSmall and the English model never use it, the offline Paraformer of both profiles does.
Where the reference exits or silently decodes greedily, this server either starts without the
*default* LM (one warning naming the flag) or refuses to start with an LM the user *named*.
"""
from __future__ import annotations

import logging
import shutil
import signal
import subprocess
from pathlib import Path
from typing import List

import pytest
from websockets.sync.client import connect

from funasr_wss.models.audio import pcm16_to_float
from funasr_wss.models.fst_file import read_fst
from funasr_wss.models.model_dir import ModelDirError
from funasr_wss.models.tokens import Vocabulary
from funasr_wss.models.wfst_decoder import WfstDecoder
from funasr_wss.server.cli import PROG_2PASS, CliError, settings_from_args
from funasr_wss.server.model_loader import load_models
from funasr_wss.server.settings import DEFAULT_LM_MODEL, ServerSettings
from tests.harness import ServerThread, fixture_settings
from tests.helpers import fixture_pcm, free_port
from tests.paths import (
    ASR_CONTEXTUAL_DIR,
    ASR_ONLINE_DIR,
    ASR_PLAIN_DIR,
    ASR_SEACO_DIR,
    ASR_TIMESTAMP_DIR,
    LM_DIR,
    PUNC_DIR,
    PUNC_REALTIME_DIR,
    SENSEVOICE_DIR,
    VAD_DIR,
)
from tests.test_cli import SERVER_CMD, server_process
from tests.test_server_offline import recv_json, send_utterance

WARNING_TEXT = "starting without an n-gram LM; pass --lm-dir DIR or --lm-dir none"


def cli_settings(tmp_path: Path, *extra: str, model_dir: Path = ASR_TIMESTAMP_DIR, prog: str = "funasr-wss-server",
                 **online) -> ServerSettings:
    """The command line on the fixture models, downloads going to an empty ``tmp_path/downloads``."""
    argv = ["--model-dir", str(model_dir), "--vad-dir", str(VAD_DIR), "--quantize", "false", "--vad-quant", "false",
            "--punc-quant", "false", "--download-model-dir", str(tmp_path / "downloads"), "--decoder-thread-num", "2"]
    if prog == PROG_2PASS:
        argv += ["--online-model-dir", str(ASR_ONLINE_DIR), "--punc-dir", str(PUNC_REALTIME_DIR)]
    else:
        argv += ["--punc-dir", str(PUNC_DIR)]
    return settings_from_args(argv + list(extra), prog)


def offline_asr(models):
    """The offline recogniser of either profile."""
    return models.pipeline.asr if hasattr(models, "pipeline") else models.asr


def lm_warnings(caplog) -> List[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING and "--lm-dir" in r.getMessage()]


# ------------------------------------------------------------------ the default LM


@pytest.mark.parametrize("prog", ["funasr-wss-server", PROG_2PASS])
def test_the_default_lm_unavailable_starts_without_it_and_warns_once(tmp_path, hub, caplog, prog):
    settings = cli_settings(tmp_path, prog=prog)
    assert settings.lm_dir == DEFAULT_LM_MODEL and settings.lm_dir_is_default
    with caplog.at_level(logging.INFO):
        models = load_models(settings)
    assert offline_asr(models).lm is None
    warned = lm_warnings(caplog)
    assert len(warned) == 1, [r.getMessage() for r in warned]
    message = warned[0].getMessage()
    assert WARNING_TEXT in message and DEFAULT_LM_MODEL in message and "unreachable" in message
    assert hub.probes == 1


def test_the_default_lm_already_downloaded_is_reused_without_the_hub(tmp_path, hub, caplog):
    shutil.copytree(LM_DIR, tmp_path / "downloads" / DEFAULT_LM_MODEL)
    with caplog.at_level(logging.INFO):
        models = load_models(cli_settings(tmp_path))
    assert isinstance(models.asr.lm, WfstDecoder)
    assert models.asr.lm.directory == tmp_path / "downloads" / DEFAULT_LM_MODEL
    assert hub.probes == 0 and not lm_warnings(caplog)


def test_a_download_under_the_renamed_organisation_is_reused(tmp_path, hub):
    """ModelScope's ``damo`` is now ``iic``; run_server.sh names the LM ``iic/...``, the default is ``damo/...``."""
    shutil.copytree(LM_DIR, tmp_path / "downloads" / "iic" / "speech_ngram_lm_zh-cn-ai-wesp-fst")
    assert isinstance(load_models(cli_settings(tmp_path)).asr.lm, WfstDecoder)
    assert hub.probes == 0


def test_another_revision_is_asked_of_the_hub_and_the_earlier_download_serves_when_it_is_unreachable(tmp_path, hub, caplog):
    shutil.copytree(LM_DIR, tmp_path / "downloads" / DEFAULT_LM_MODEL)
    with caplog.at_level(logging.INFO):
        models = load_models(cli_settings(tmp_path, "--lm-revision", "v9.9.9"))
    assert isinstance(models.asr.lm, WfstDecoder)
    assert hub.probes == 1
    assert any("v9.9.9" in r.getMessage() and "earlier download" in r.getMessage() for r in caplog.records)


def test_the_default_lm_of_another_vocabulary_is_not_used(tmp_path, hub, caplog, monkeypatch):
    """The default LM on a model it was not built for (FunASR's 8 kHz model has its own LM) warns, not stops."""
    shutil.copytree(LM_DIR, tmp_path / "downloads" / DEFAULT_LM_MODEL)
    import funasr_wss.server.model_loader as loader

    real = loader.open_recognizer

    def fewer_tokens(found, settings):
        asr = real(found, settings)
        asr.vocab = Vocabulary.from_tokens(asr.vocab.tokens[:20])  # as a model of a smaller vocabulary
        return asr

    monkeypatch.setattr(loader, "open_recognizer", fewer_tokens)
    with caplog.at_level(logging.INFO):
        assert load_models(cli_settings(tmp_path)).asr.lm is None
    (warned,) = lm_warnings(caplog)
    assert "another vocabulary" in warned.getMessage() and WARNING_TEXT in warned.getMessage()
    # the same LM named by the user stops the start
    with pytest.raises(ModelDirError, match="another vocabulary"):
        load_models(cli_settings(tmp_path, "--lm-dir", str(LM_DIR)))


# ------------------------------------------------------------------ an LM the user named


def test_a_named_lm_that_cannot_be_downloaded_stops_the_start(tmp_path, hub):
    with pytest.raises(ModelDirError) as err:
        load_models(cli_settings(tmp_path, "--lm-dir", DEFAULT_LM_MODEL))
    assert "--lm-dir" in str(err.value) and "unreachable" in str(err.value) and "--lm-dir none" in str(err.value)
    assert "pass its local directory instead (--lm-dir /path/to/dir)" in str(err.value)  # the flag that asked


def test_a_named_directory_that_does_not_exist_stops_the_start(tmp_path, hub):
    with pytest.raises(ModelDirError) as err:
        load_models(cli_settings(tmp_path, "--lm-dir", str(tmp_path / "no-such-lm")))
    assert "--lm-dir" in str(err.value) and "no-such-lm" in str(err.value) and "does not exist" in str(err.value)
    assert hub.probes == 0


@pytest.mark.parametrize("missing", ["TLG.fst", "config.yaml", "lexicon.txt"])
def test_a_directory_without_an_lm_file_is_an_error_naming_it(tmp_path, hub, missing):
    broken = tmp_path / "lm"
    shutil.copytree(LM_DIR, broken)
    (broken / missing).unlink()
    with pytest.raises(ModelDirError) as err:
        load_models(cli_settings(tmp_path, "--lm-dir", str(broken)))
    assert missing in str(err.value) and "--lm-dir" in str(err.value)


def test_a_named_lm_that_is_missing_stops_the_server_process_with_a_message(tmp_path):
    proc = subprocess.run(
        SERVER_CMD + ["--port", str(free_port()), "--model-dir", str(ASR_TIMESTAMP_DIR), "--vad-dir", str(VAD_DIR),
                      "--punc-dir", "", "--certfile", "0", "--lm-dir", str(tmp_path / "no-such-lm")],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert "error: --lm-dir" in proc.stderr and "no-such-lm" in proc.stderr and "Traceback" not in proc.stderr


# ------------------------------------------------------------------ off, and the search flags


@pytest.mark.parametrize("off", ["none", "NONE", ""])
def test_none_turns_the_lm_off_without_asking_the_hub(tmp_path, hub, caplog, off):
    with caplog.at_level(logging.INFO):
        models = load_models(cli_settings(tmp_path, "--lm-dir", off))
    assert models.asr.lm is None and hub.probes == 0 and not lm_warnings(caplog)


def test_lm_none_gives_the_greedy_text_over_the_protocol(tmp_path, hub):
    greedy = load_models(fixture_settings())  # a ServerSettings built in code names no LM
    assert greedy.asr.lm is None
    pcm = fixture_pcm()
    want = greedy.transcribe(pcm16_to_float(pcm)).text
    with ServerThread(cli_settings(tmp_path, "--lm-dir", "none")) as server:
        assert server.models.asr.lm is None
        with connect(server.url) as ws:
            send_utterance(ws, pcm)
            assert recv_json(ws)["text"] == want != ""


@pytest.mark.parametrize("flag,value", [("--global-beam", "0"), ("--global-beam", "-3"), ("--lattice-beam", "0"),
                                        ("--am-scale", "-1"), ("--fst-inc-wts", "-5")])
def test_a_bad_search_setting_is_a_start_up_error(flag, value):
    with pytest.raises(CliError) as err:
        settings_from_args(["--lm-dir", str(LM_DIR), flag, value])
    assert flag in err.value.message


def test_a_bad_search_setting_in_code_is_refused_naming_the_flag(hub):
    with pytest.raises(ModelDirError, match="--global-beam"):
        load_models(fixture_settings(lm_dir=str(LM_DIR), global_beam=0.0))


def test_the_search_flags_reach_the_decoder(tmp_path, hub):
    models = load_models(cli_settings(tmp_path, "--lm-dir", str(LM_DIR), "--global-beam", "5", "--lattice-beam", "2",
                                      "--am-scale", "7.5", "--fst-inc-wts", "11"))
    config = models.asr.lm.config
    assert (config.beam, config.lattice_beam, config.am_scale, config.fst_inc_wts) == (5.0, 2.0, 7.5, 11)


# ------------------------------------------------------------------ which recognisers take the LM


def _english_copy(tmp_path: Path, by: str) -> Path:
    if by == "config":
        english = tmp_path / "my-english-model"
        shutil.copytree(ASR_PLAIN_DIR, english)
        with (english / "config.yaml").open("a", encoding="utf-8") as f:
            f.write("lang: en-bpe\n")
    else:  # the reference's check: the model id in the path
        english = tmp_path / "speech_paraformer-large_asr_nat-en-16k-common-vocab10020-onnx"
        shutil.copytree(ASR_PLAIN_DIR, english)
    return english


@pytest.mark.parametrize("model", ["sensevoice", "english-config", "english-id"])
@pytest.mark.parametrize("lm", ["default", "named"])
def test_sensevoice_and_the_english_model_never_use_the_lm(tmp_path, hub, caplog, model, lm):
    model_dir = SENSEVOICE_DIR if model == "sensevoice" else _english_copy(tmp_path, model.split("-")[1])
    extra = ["--lm-dir", str(LM_DIR)] if lm == "named" else []
    with caplog.at_level(logging.INFO):
        models = load_models(cli_settings(tmp_path, *extra, model_dir=model_dir))
    assert getattr(models.asr, "lm", None) is None
    assert hub.probes == 0 and not lm_warnings(caplog)  # not even looked for
    why = "SenseVoiceSmall" if model == "sensevoice" else "English model"
    (said,) = [r.getMessage() for r in caplog.records if "--lm-dir" in r.getMessage()]
    assert "is not used" in said and why in said


@pytest.mark.parametrize("prog", ["funasr-wss-server", PROG_2PASS])
@pytest.mark.parametrize("model_dir", [ASR_TIMESTAMP_DIR, ASR_PLAIN_DIR, ASR_CONTEXTUAL_DIR, ASR_SEACO_DIR],
                         ids=lambda d: d.name)
def test_the_fixture_lm_attaches_to_the_offline_paraformer(tmp_path, hub, caplog, monkeypatch, prog, model_dir):
    import funasr_wss.models.ngram_lm as ngram_lm

    loads = []
    real = ngram_lm.load_lm_dir
    monkeypatch.setattr(ngram_lm, "load_lm_dir", lambda d: loads.append(d) or real(d))
    with caplog.at_level(logging.INFO):
        models = load_models(cli_settings(tmp_path, "--lm-dir", str(LM_DIR), model_dir=model_dir, prog=prog))
    decoder = offline_asr(models).lm
    assert isinstance(decoder, WfstDecoder) and decoder.directory == LM_DIR
    assert decoder.am_tokens == list(offline_asr(models).vocab.tokens)
    assert loads == [LM_DIR], "the graph is loaded once per process"
    if prog == PROG_2PASS:
        assert not hasattr(models.online, "lm") or models.online.lm is None, "the online pass never uses the LM"
    graph = read_fst(LM_DIR / "TLG.fst")
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("n-gram LM:")]
    assert str(LM_DIR) in line and f"{graph.num_states} states" in line and f"{graph.num_arcs} arcs" in line
    assert "MiB on disk" in line and "MiB in memory" in line and "loaded in" in line


# ------------------------------------------------------------------ the server process
# (the guides' run_server.sh and run_server_2pass.sh command lines, with --lm-dir: tests/test_guides.py)


def _stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    return proc.stderr.read()


def test_without_lm_dir_the_server_process_starts_and_warns_once(tmp_path):
    port = free_port()
    cmd = SERVER_CMD + ["--model-dir", str(ASR_TIMESTAMP_DIR), "--vad-dir", str(VAD_DIR), "--punc-dir", str(PUNC_DIR),
                        "--download-model-dir", str(tmp_path / "models"), "--certfile", "0"]
    with server_process(cmd, port) as proc:  # the hub is unreachable there (tests.test_cli.NO_HUB)
        with connect(f"ws://127.0.0.1:{port}") as ws:
            send_utterance(ws, fixture_pcm())
            assert recv_json(ws, 60)["text"]
        log = _stop(proc)
    warned = [line for line in log.splitlines() if "--lm-dir" in line]
    assert len(warned) == 1 and "WARNING" in warned[0] and WARNING_TEXT in warned[0], warned
