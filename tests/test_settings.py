"""One source of defaults (ServerSettings), --help's groups, and every flag from a ``FUNASR_WSS_*`` variable."""
from __future__ import annotations

import argparse
import json
import signal
import subprocess
from dataclasses import fields

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from funasr_wss.server.cli import PROG, PROG_2PASS, CliError, build_parser, env_var, settings_from_args
from funasr_wss.server.settings import (
    COMMAND_LINE_DEFAULTS,
    DEFAULT_LM_MODEL,
    ENV_PREFIX,
    TWO_PASS_DEFAULTS,
    ServerSettings,
    command_line_defaults,
)
from tests.helpers import fixture_pcm, free_port
from tests.paths import ASR_TIMESTAMP_DIR, VAD_DIR
from tests.test_cli import NO_HUB, SERVER_CMD, _wait_until_healthy

#: Fields the command line derives from other flags rather than taking from a flag of their own.
DERIVED = {"plain_only", "lm_dir_is_default", "no_effect_flags", "env_vars"}
PROGS = [PROG, PROG_2PASS]


# ------------------------------------------------------------------ one source of defaults


@pytest.mark.parametrize("prog", PROGS)
def test_the_parser_takes_every_default_from_the_settings(prog):
    """Would catch a default written into the parser that drifts from ServerSettings (--download-model-dir did)."""
    expected = command_line_defaults(prog == PROG_2PASS)
    assert settings_from_args([], prog, environ={}) == expected
    parser = build_parser(prog)
    shown = {a.dest: a for a in parser._actions if a.option_strings and a.help is not argparse.SUPPRESS}
    for f in fields(ServerSettings):
        if f.name in DERIVED:
            continue
        assert f.name in shown, f"{f.name} has no flag"
        assert shown[f.name].default == getattr(expected, f.name), f.name


def test_the_command_line_differs_from_a_settings_built_in_code_only_where_it_says():
    code, cli, two_pass = ServerSettings(), command_line_defaults(), command_line_defaults(two_pass=True)
    differ = {f.name for f in fields(ServerSettings) if getattr(code, f.name) != getattr(cli, f.name)}
    assert differ == set(COMMAND_LINE_DEFAULTS)
    assert cli.lm_dir == DEFAULT_LM_MODEL and code.lm_dir is None  # a ServerSettings built in code names no LM
    differ_2pass = {f.name for f in fields(ServerSettings) if getattr(cli, f.name) != getattr(two_pass, f.name)}
    assert differ_2pass == set(TWO_PASS_DEFAULTS)
    assert code.download_model_dir == cli.download_model_dir == "~/.cache/funasr-wss-server/models"


def test_the_api_key_is_not_in_the_settings_repr():
    assert "s3cret" not in repr(ServerSettings(api_key="s3cret")) and "s3cret" not in repr(settings_from_args(["--api-key", "s3cret"]))


# ------------------------------------------------------------------ --help


@pytest.mark.parametrize("prog", PROGS)
def test_help_shows_the_groups_and_the_environment(monkeypatch, prog):
    monkeypatch.setenv("COLUMNS", "200")
    help_text = build_parser(prog).format_help()
    for title in ("models:", "decoding:", "network and TLS:", "limits:", "logging:"):
        assert f"\n{title}\n" in help_text, title
    titles = ["models:", "decoding:", "network and TLS:", "limits:", "logging:"]
    for title, following, flags in zip(titles, titles[1:] + ["Environment:"], (
        ("--model-dir", "--lm-dir", "--download-model-dir"), ("--hotword", "--global-beam", "--decoder-thread-num", "--gpu"),
        ("--port", "--certfile", "--tls-only", "--api-key"), ("--max-connections", "--idle-timeout", "--shutdown-grace"),
        ("--log-level", "--log-format"),
    )):
        section = "\n" + help_text.split(f"\n{title}\n", 1)[1].split(f"\n{following}", 1)[0]
        for flag in flags:
            assert f"\n  {flag} " in section, (title, flag)
    assert f"{ENV_PREFIX}<FLAG>" in help_text and "FUNASR_WSS_API_KEY" in help_text
    assert "true/1/yes/on/false/0/no/off" in " ".join(help_text.split())


def test_every_listed_flag_has_its_variable():
    parser = build_parser()
    shown = [a.option_strings[0] for a in parser._actions
             if a.option_strings and a.help is not argparse.SUPPRESS and a.dest not in ("help", "version")]
    assert env_var("--api-key") == "FUNASR_WSS_API_KEY" and env_var("--no-web-page") == "FUNASR_WSS_NO_WEB_PAGE"
    for flag in shown:  # each variable sets its flag's setting (a bad value names the variable, so it is read)
        if parser._option_string_actions[flag].type is int:
            with pytest.raises(CliError) as err:
                settings_from_args([], environ={env_var(flag): "not-a-number"})
            assert env_var(flag) in err.value.message and flag in err.value.message


# ------------------------------------------------------------------ the environment


def test_a_variable_sets_its_flag():
    s = settings_from_args([], environ={"FUNASR_WSS_PORT": "10095", "FUNASR_WSS_DECODER_THREAD_NUM": "3",
                                        "FUNASR_WSS_API_KEY": "k", "FUNASR_WSS_PUNC_DIR": "", "FUNASR_WSS_CERTFILE": "0",
                                        "FUNASR_WSS_DEVICE": "cuda", "FUNASR_WSS_IDLE_TIMEOUT": "7.5"})
    assert (s.port, s.decoder_thread_num, s.api_key, s.punc_dir, s.device, s.idle_timeout) == (10095, 3, "k", None, "cuda", 7.5)
    assert s.plain_only and s.certfile is None  # the same post-processing as --certfile 0
    assert s.env_vars == tuple(sorted(["FUNASR_WSS_PORT", "FUNASR_WSS_DECODER_THREAD_NUM", "FUNASR_WSS_API_KEY",
                                       "FUNASR_WSS_PUNC_DIR", "FUNASR_WSS_CERTFILE", "FUNASR_WSS_DEVICE",
                                       "FUNASR_WSS_IDLE_TIMEOUT"]))
    # the 2pass command reads the same variables; the os environment is the default source
    assert settings_from_args([], PROG_2PASS, environ={"FUNASR_WSS_ONLINE_MODEL_DIR": "/o"}).online_model_dir == "/o"


def test_the_os_environment_is_read(monkeypatch):
    monkeypatch.setenv("FUNASR_WSS_MAX_CONNECTIONS", "4")
    assert settings_from_args([]).max_connections == 4


def test_the_command_line_beats_the_environment():
    env = {"FUNASR_WSS_PORT": "1", "FUNASR_WSS_QUANTIZE": "false", "FUNASR_WSS_API_KEY": "from-env",
           "FUNASR_WSS_LOG_LEVEL": "DEBUG"}
    s = settings_from_args(["--port", "2", "--quantize", "--api_key", "from-cli"], environ=env)
    assert (s.port, s.quantize, s.api_key, s.log_level) == (2, True, "from-cli", "DEBUG")
    s = settings_from_args(["--no-web-page"], environ={"FUNASR_WSS_NO_WEB_PAGE": "false"})
    assert s.web_page is False


@pytest.mark.parametrize("env,needle", [
    ({"FUNASR_WSS_PORT": "ten"}, "FUNASR_WSS_PORT='ten' (for --port): invalid int value"),
    ({"FUNASR_WSS_GLOBAL_BEAM": "wide"}, "FUNASR_WSS_GLOBAL_BEAM='wide' (for --global-beam): invalid float value"),
    ({"FUNASR_WSS_QUANTIZE": "maybe"}, "FUNASR_WSS_QUANTIZE='maybe' (for --quantize): expected one of true/1/yes/on"),
    ({"FUNASR_WSS_TLS_ONLY": ""}, "FUNASR_WSS_TLS_ONLY='' (for --tls-only)"),
    ({"FUNASR_WSS_DEVICE": "gpu"}, "FUNASR_WSS_DEVICE='gpu' (for --device): expected one of cpu, cuda"),
    ({"FUNASR_WSS_LOG_FORMAT": "xml"}, "FUNASR_WSS_LOG_FORMAT='xml' (for --log-format)"),
    ({"FUNASR_WSS_APIKEY": "k"}, "unknown environment variable FUNASR_WSS_APIKEY"),  # a typo must not go unnoticed
    ({"FUNASR_WSS_MAX_CONNECTIONS": "0"}, "--max-connections must be at least 1"),  # the flag's own checks too
])
def test_a_bad_value_names_the_variable(env, needle):
    with pytest.raises(CliError) as err:
        settings_from_args([], environ=env)
    assert needle in err.value.message


@pytest.mark.parametrize("spelling,value", [
    ("true", True), ("TRUE", True), ("1", True), ("yes", True), ("on", True),
    ("false", False), ("False", False), ("0", False), ("no", False), ("off", False),
])
def test_boolean_spellings(spelling, value):
    s = settings_from_args(["--self-signed-dir", "/t"], environ={
        "FUNASR_WSS_QUANTIZE": spelling, "FUNASR_WSS_OFFLINE_IS_FINAL": spelling, "FUNASR_WSS_TLS_ONLY": spelling,
        "FUNASR_WSS_GPU": spelling, "FUNASR_WSS_NO_WEB_PAGE": spelling,
    })
    assert (s.quantize, s.offline_is_final, s.tls_only) == (value, value, value)
    assert s.device == ("cuda" if value else "cpu") and s.web_page is (not value)


def test_an_lm_dir_from_the_environment_is_named():
    """As --lm-dir on the command line: a missing LM stops the start rather than being skipped with a warning."""
    s = settings_from_args([], environ={"FUNASR_WSS_LM_DIR": DEFAULT_LM_MODEL})
    assert s.lm_dir == DEFAULT_LM_MODEL and s.lm_dir_is_default is False
    assert settings_from_args([], environ={"FUNASR_WSS_LM_DIR": "none"}).lm_dir is None
    assert settings_from_args([], environ={"FUNASR_WSS_LM_REVISION": "v1"}).lm_dir_is_default is True
    # the flags without effect, set from the environment, are said at start-up as given ones are
    assert settings_from_args([], environ={"FUNASR_WSS_IO_THREAD_NUM": "1"}).no_effect_flags[0].startswith("--io-thread-num 1")


def test_a_secret_value_is_not_echoed_in_an_error():
    with pytest.raises(CliError) as err:
        settings_from_args([], environ={"FUNASR_WSS_API_KEY": "k", "FUNASR_WSS_PORT": "x"})
    assert "FUNASR_WSS_PORT" in err.value.message


def test_an_lm_dir_from_the_environment_that_cannot_be_had_stops_the_process(tmp_path):
    env = dict(NO_HUB, FUNASR_WSS_LM_DIR=str(tmp_path / "no-such-lm"))
    proc = subprocess.run(
        SERVER_CMD + ["--port", str(free_port()), "--model-dir", str(ASR_TIMESTAMP_DIR), "--vad-dir", str(VAD_DIR),
                      "--punc-dir", "", "--certfile", "0"],
        capture_output=True, text=True, timeout=60, env=env,
    )
    assert proc.returncode == 2 and "--lm-dir" in proc.stderr and "no-such-lm" in proc.stderr


# ------------------------------------------------------------------ the API key as a container secret


def test_the_api_key_from_the_environment_guards_a_real_server_and_is_never_logged():
    key = "env-secret-9f3c2a"
    port = free_port()
    env = dict(NO_HUB, FUNASR_WSS_API_KEY=key, FUNASR_WSS_CERTFILE="0", FUNASR_WSS_LOG_LEVEL="DEBUG",
               FUNASR_WSS_LM_DIR="none", FUNASR_WSS_PORT=str(port))
    cmd = SERVER_CMD + ["--listen-ip", "127.0.0.1", "--model-dir", str(ASR_TIMESTAMP_DIR), "--vad-dir", str(VAD_DIR),
                        "--punc-dir", "", "--decoder-thread-num", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        _wait_until_healthy(port, proc)
        with pytest.raises(InvalidStatus) as refused:
            connect(f"ws://127.0.0.1:{port}")
        assert refused.value.response.status_code == 401
        with connect(f"ws://127.0.0.1:{port}", additional_headers={"Authorization": f"Bearer {key}"}) as ws:
            ws.send(json.dumps({"mode": "offline", "wav_name": "env"}))
            ws.send(fixture_pcm())
            ws.send(json.dumps({"is_speaking": False}))
            msg = json.loads(ws.recv(timeout=60))
        assert msg["wav_name"] == "env" and msg["text"]
        with connect(f"ws://127.0.0.1:{port}/?token={key}") as ws:  # the query form, which DEBUG logs print too
            ws.ping().wait(10)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out, err = proc.stdout.read(), proc.stderr.read()
    assert key not in out and key not in err
    assert "API key required" in err and "FUNASR_WSS_API_KEY" in err  # named as a source, never its value
    assert "Authorization: Bearer ***" in err and "token=***" in err  # websockets' DEBUG lines, redacted
