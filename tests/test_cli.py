"""The ``funasr-wss-server`` command: flags, start-up errors, a real process serving a file."""
from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import pytest
from websockets.sync.client import connect

from funasr_wss.server.cli import PROG_2PASS, CliError, settings_from_args
from funasr_wss.server.settings import (
    DEFAULT_LM_MODEL,
    DEFAULT_ONLINE_MODEL,
    DEFAULT_PUNC_MODEL,
    DEFAULT_REALTIME_PUNC_MODEL,
)
from tests.helpers import fixture_pcm, free_port
from tests.paths import ASR_ONLINE_DIR, ASR_TIMESTAMP_DIR, PUNC_DIR, PUNC_REALTIME_DIR, VAD_DIR

SERVER_CMD = [sys.executable, "-m", "funasr_wss.server"]
SERVER_2PASS_CMD = [sys.executable, "-c", "import sys; from funasr_wss.server.cli import main_2pass; sys.exit(main_2pass())"]


def test_defaults_follow_the_reference():
    s = settings_from_args([])
    assert s.port == 10096 and s.listen_ip == "0.0.0.0"
    assert s.model_dir.startswith("iic/") and s.vad_dir.startswith("iic/") and s.punc_dir.startswith("iic/")
    assert s.quantize and s.vad_quant and s.punc_quant
    assert (s.decoder_thread_num, s.model_thread_num, s.io_thread_num) == (8, 1, 2)
    assert s.itn_dir is None and s.certfile is None and s.device == "cpu"
    # the n-gram LM is on by default, as in the C++ server, and only as a default (not named)
    assert (s.lm_dir, s.lm_revision, s.lm_dir_is_default) == (DEFAULT_LM_MODEL, "v1.0.2", True)
    assert (s.global_beam, s.lattice_beam, s.am_scale, s.fst_inc_wts) == (3.0, 3.0, 10.0, 20)


def test_profiles_of_the_two_commands():
    offline = settings_from_args([])
    assert offline.online_model_dir is None and offline.punc_dir == DEFAULT_PUNC_MODEL
    two_pass = settings_from_args([], PROG_2PASS)
    assert two_pass.online_model_dir == DEFAULT_ONLINE_MODEL and two_pass.punc_dir == DEFAULT_REALTIME_PUNC_MODEL
    assert "online-onnx" in DEFAULT_ONLINE_MODEL and "vad_realtime" in DEFAULT_REALTIME_PUNC_MODEL
    # the offline command turns into the 2pass server when given an online model
    assert settings_from_args(["--online-model-dir", "/o"]).online_model_dir == "/o"
    assert settings_from_args(["--online_model_dir", "/o", "--online-model-revision", "v2"]).online_model_revision == "v2"


def test_dash_and_underscore_spellings():
    a = settings_from_args(["--model-dir", "/m", "--vad_dir", "/v", "--punc-quant", "false", "--decoder_thread_num", "3", "--quantize", "false"])
    assert (a.model_dir, a.vad_dir, a.punc_quant, a.decoder_thread_num, a.quantize) == ("/m", "/v", False, 3, False)
    b = settings_from_args(["--quantize", "--model_thread_num", "2", "--punc-dir", "", "--certfile", "0", "--gpu"])
    assert b.quantize is True and b.model_thread_num == 2 and b.punc_dir is None and b.certfile is None and b.plain_only
    assert b.device == "cuda"


def test_lm_flags():
    named = settings_from_args(["--lm-dir", DEFAULT_LM_MODEL, "--lm-revision", "v1.0.1", "--global-beam", "5",
                                "--lattice_beam", "4", "--am-scale", "8", "--fst-inc-wts", "0"])
    assert (named.lm_dir, named.lm_revision, named.lm_dir_is_default) == (DEFAULT_LM_MODEL, "v1.0.1", False)
    assert (named.global_beam, named.lattice_beam, named.am_scale, named.fst_inc_wts) == (5.0, 4.0, 8.0, 0)
    for off in ("none", "NONE", "None", "", " "):
        s = settings_from_args(["--lm_dir", off])
        assert s.lm_dir is None and not s.lm_dir_is_default, off
    assert settings_from_args(["--lm-dir", "/srv/lm"]).lm_dir == "/srv/lm"


@pytest.mark.parametrize("argv,needle", [
    (["--global-beam", "0"], "--global-beam"),
    (["--global-beam", "nan"], "--global-beam"),
    (["--lattice-beam", "-1"], "--lattice-beam"),
    (["--am-scale", "0"], "--am-scale"),
    (["--fst-inc-wts", "-1"], "--fst-inc-wts"),
    (["--online-model-dir", "/x", "--vad-dir", ""], "VAD"),
    (["--decoder-thread-num", "0"], "--decoder-thread-num"),
    (["--certfile", "0", "--tls-only"], "--tls-only"),
    (["--keyfile", "/k.pem"], "--certfile"),
])
def test_unsupported_or_bad_flags_are_refused(argv, needle):
    with pytest.raises(CliError) as err:
        settings_from_args(argv)
    assert needle in err.value.message


def health(port: int) -> int:
    """The status of ``GET /health``; 0 when nothing answers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/health")
        return conn.getresponse().status
    except OSError:
        return 0
    finally:
        conn.close()


def _wait_until_healthy(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early: {proc.stderr.read()}")
        if health(port) == 200:
            return
        time.sleep(0.1)
    raise AssertionError("server did not become healthy")


#: The hub as these tests see it: unreachable (nothing listens on the discard port), so a default model
#: id that is not given as a fixture directory (the default --lm-dir) is "not available" at once, everywhere.
NO_HUB = dict(os.environ, MODELSCOPE_DOMAIN="127.0.0.1:9")


@contextlib.contextmanager
def server_process(cmd: List[str], port: int, own_port_flags: bool = False, env: Optional[Dict[str, str]] = None,
                   cwd: Optional[Path] = None):
    """A server subprocess on ``port``; yields once it accepts connections, killed if still alive after.

    Unless ``cmd`` says otherwise, its self-signed certificate goes to a temporary directory.
    ``own_port_flags``: ``cmd`` is a complete command line (with its own --port), run as it is.
    ``env`` (default: this process's, with the hub unreachable) and ``cwd``: the subprocess's."""
    certs = tempfile.TemporaryDirectory()
    if own_port_flags:
        extra = []
    else:
        extra = [] if "--certfile" in cmd or "--self-signed-dir" in cmd else ["--self-signed-dir", certs.name]
        extra += ["--listen-ip", "127.0.0.1", "--port", str(port), "--decoder-thread-num", "2"]
    proc = subprocess.Popen(cmd + extra, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=NO_HUB if env is None else env, cwd=cwd)
    try:
        _wait_until_healthy(port, proc)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        certs.cleanup()


def test_server_process_serves_a_file_and_stops_cleanly_on_sigterm(tmp_path):
    """By default ws:// and wss:// share the port, with a self-signed certificate made on first start."""
    port = free_port()
    hotwords = tmp_path / "hotwords.txt"
    hotwords.write_text("阿里巴巴 20\n", encoding="utf-8")
    certs = tmp_path / "certs"
    args = ["--model-dir", str(ASR_TIMESTAMP_DIR), "--vad-dir", str(VAD_DIR), "--punc-dir", str(PUNC_DIR),
            "--hotword", str(hotwords), "--self-signed-dir", str(certs)]
    with server_process(SERVER_CMD + args, port) as proc:
        pcm = fixture_pcm()
        texts = []
        trusting_our_cert = ssl.create_default_context(cafile=str(certs / "server.crt"))
        for url, kw in ((f"ws://127.0.0.1:{port}", {}), (f"wss://localhost:{port}", {"ssl": trusting_our_cert})):
            with connect(url, **kw) as ws:
                ws.send(json.dumps({"mode": "offline", "wav_name": "cli", "wav_format": "pcm", "audio_fs": 16000}))
                for i in range(0, len(pcm), 1920):
                    ws.send(pcm[i : i + 1920])
                ws.send(json.dumps({"is_speaking": False}))
                msg = json.loads(ws.recv(timeout=60))
            assert msg["wav_name"] == "cli" and msg["text"] and msg["mode"] == "offline"
            texts.append(msg["text"])
        assert texts[0] == texts[1]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def test_unreachable_hub_stops_at_once_with_advice(tmp_path):
    started = time.time()
    proc = subprocess.run(
        SERVER_CMD + ["--port", str(free_port()), "--download-model-dir", str(tmp_path)],
        capture_output=True, text=True, env=NO_HUB, timeout=60,
    )
    assert proc.returncode == 2
    assert time.time() - started < 30
    assert "unreachable" in proc.stderr and "--model-dir" in proc.stderr


def test_missing_model_file_is_named(tmp_path):
    broken = tmp_path / "asr"
    shutil.copytree(ASR_TIMESTAMP_DIR, broken)
    (broken / "tokens.json").unlink()
    proc = subprocess.run(
        SERVER_CMD + ["--port", str(free_port()), "--model-dir", str(broken), "--vad-dir", str(VAD_DIR), "--punc-dir", ""],
        capture_output=True, text=True, timeout=60, env=NO_HUB,
    )
    assert proc.returncode == 2 and "tokens.json" in proc.stderr


def test_earlier_download_is_reused_offline(tmp_path):
    """A model already in --download-model-dir starts without the hub."""
    from funasr_wss.server.model_dirs import resolve_model_dir

    target = tmp_path / "iic" / "speech_fsmn_vad_zh-cn-16k-common-onnx"
    shutil.copytree(VAD_DIR, target)
    assert resolve_model_dir("iic/speech_fsmn_vad_zh-cn-16k-common-onnx", tmp_path) == target


def test_2pass_server_process_streams_and_stops_cleanly():
    """Also: with ``--log-format json`` every stderr line is a JSON object, the connection's carry its id."""
    port = free_port()
    args = ["--model-dir", str(ASR_TIMESTAMP_DIR), "--online-model-dir", str(ASR_ONLINE_DIR), "--vad-dir", str(VAD_DIR),
            "--punc-dir", str(PUNC_REALTIME_DIR), "--log-format", "json"]
    with server_process(SERVER_2PASS_CMD + args, port) as proc:
        pcm = fixture_pcm()
        with connect(f"ws://127.0.0.1:{port}") as ws:
            ws.send(json.dumps({"mode": "2pass", "wav_name": "cli2", "chunk_size": [5, 10, 5]}))
            for i in range(0, len(pcm), 19200):
                ws.send(pcm[i : i + 19200])
            ws.send(json.dumps({"is_speaking": False}))
            msgs = []
            while not msgs or not msgs[-1]["is_final"]:
                msgs.append(json.loads(ws.recv(timeout=60)))
        assert {m["mode"] for m in msgs} == {"2pass-online", "2pass-offline"}
        assert msgs[-1]["mode"] == "2pass-offline" and msgs[-1]["text"] and msgs[-1]["wav_name"] == "cli2"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        entries = [json.loads(line) for line in proc.stderr.read().splitlines() if line.strip()]
        assert any("2pass profile" in e["message"] for e in entries)
        utterance = [e for e in entries if e.get("event") == "utterance"]
        assert len(utterance) == 1 and utterance[0]["mode"] == "2pass" and utterance[0]["wav_name"] == "cli2"
        assert abs(utterance[0]["audio_seconds"] - len(pcm) / 32000) < 0.01
        conn = utterance[0]["conn"]
        events = [e.get("event") for e in entries if e.get("conn") == conn]
        assert events[0] == "connected" and events[-1] == "closed" and "utterance" in events


def test_sigterm_lets_the_utterance_in_flight_finish(tmp_path):
    port = free_port()
    args = ["--model-dir", str(ASR_TIMESTAMP_DIR), "--vad-dir", str(VAD_DIR), "--punc-dir", str(PUNC_DIR),
            "--shutdown-grace", "20"]
    with server_process(SERVER_CMD + args, port) as proc:
        with connect(f"ws://127.0.0.1:{port}") as ws:
            ws.send(json.dumps({"mode": "offline", "wav_name": "inflight"}))
            ws.send(fixture_pcm())
            time.sleep(0.3)
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            assert proc.poll() is None  # waiting for this utterance
            assert health(port) != 200  # no longer taking connections
            ws.send(json.dumps({"is_speaking": False}))
            assert json.loads(ws.recv(timeout=30))["wav_name"] == "inflight"
        assert proc.wait(30) == 0


def test_admission_flags():
    s = settings_from_args(["--max-connections", "20", "--api-key", "k", "--shutdown-grace", "5"])
    assert (s.max_connections, s.api_key, s.shutdown_grace) == (20, "k", 5.0)
    d = settings_from_args([])
    assert d.max_connections is None and d.api_key is None and d.shutdown_grace == 30.0
    for bad in (["--max-connections", "0"], ["--shutdown-grace", "-1"]):
        with pytest.raises(CliError):
            settings_from_args(bad)


def test_tls_settings_become_a_policy(tmp_path):
    from funasr_wss.server.cli import tls_policy

    default = settings_from_args(["--self-signed-dir", str(tmp_path / "tls")])
    assert not default.plain_only and not default.tls_only
    policy = tls_policy(default)
    assert policy.context is not None and not policy.tls_only
    assert (tmp_path / "tls" / "server.crt").is_file()  # generated on first use
    assert tls_policy(settings_from_args(["--certfile", ""])).context is None
    own = settings_from_args(["--certfile", str(tmp_path / "tls" / "server.crt"), "--keyfile",
                              str(tmp_path / "tls" / "server.key"), "--tls-only"])
    assert tls_policy(own).tls_only and tls_policy(own).context is not None
    with pytest.raises(CliError) as err:
        tls_policy(settings_from_args(["--certfile", str(tmp_path / "nope.crt")]))
    assert "nope.crt" in err.value.message and "--certfile 0" in err.value.message


def test_cuda_without_a_gpu_build_stops_with_a_clear_error():
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():  # pragma: no cover - GPU machines
        pytest.skip("this onnxruntime has CUDA; the refusal is for CPU-only builds")
    proc = subprocess.run(
        SERVER_CMD + ["--port", str(free_port()), "--model-dir", str(ASR_TIMESTAMP_DIR), "--vad-dir", str(VAD_DIR),
                      "--punc-dir", "", "--certfile", "0", "--gpu"],
        capture_output=True, text=True, timeout=60, env=NO_HUB,
    )
    assert proc.returncode == 2
    assert "CUDAExecutionProvider" in proc.stderr and "Traceback" not in proc.stderr


# ------------------------------------------------------------------ TLS flags that cannot work together


def test_a_keyfile_with_certfile_0_says_what_to_do():
    with pytest.raises(CliError) as err:
        settings_from_args(["--certfile", "0", "--keyfile", "/srv/server.key"])
    message = err.value.message
    assert "--keyfile /srv/server.key" in message and "--certfile 0 turns TLS off" in message
    assert "drop --keyfile" in message and "--certfile CERT" in message


def test_a_keyfile_without_a_certfile_says_what_to_do():
    with pytest.raises(CliError) as err:
        settings_from_args(["--keyfile", "/srv/server.key"])
    message = err.value.message
    assert "--keyfile /srv/server.key needs the certificate" in message and "add --certfile CERT" in message


def test_the_scripts_blank_keyfile_with_certfile_0_is_plain_ws():
    """run_server.sh turns ``certfile=0`` into ``--certfile "" --keyfile ""``."""
    s = settings_from_args(["--certfile", "", "--keyfile", ""])
    assert s.plain_only and s.certfile is None and s.keyfile is None


def _split_pair(tmp_path):
    """A certificate file without its key, and the key on its own."""
    from funasr_wss.server.tls import self_signed_pair

    return self_signed_pair(tmp_path / "tls")


def test_a_certificate_without_its_key_says_what_to_do(tmp_path):
    from funasr_wss.server.cli import tls_policy

    cert, key = _split_pair(tmp_path)
    with pytest.raises(CliError) as err:
        tls_policy(settings_from_args(["--certfile", str(cert)]))
    message = err.value.message
    assert f"the certificate {cert} holds no private key" in message and "--keyfile KEY" in message
    # with its key, or with a file holding both, it serves wss://
    assert tls_policy(settings_from_args(["--certfile", str(cert), "--keyfile", str(key)])).context is not None
    both = tmp_path / "both.pem"
    both.write_bytes(cert.read_bytes() + key.read_bytes())
    assert tls_policy(settings_from_args(["--certfile", str(both)])).context is not None


def test_a_certificate_given_as_the_keyfile_says_so(tmp_path):
    from funasr_wss.server.cli import tls_policy

    cert, _ = _split_pair(tmp_path)
    with pytest.raises(CliError) as err:
        tls_policy(settings_from_args(["--certfile", str(cert), "--keyfile", str(cert)]))
    assert f"--keyfile {cert} holds no private key" in err.value.message


def test_a_certificate_without_its_key_stops_the_server_process_with_the_advice(tmp_path):
    cert, _ = _split_pair(tmp_path)
    proc = subprocess.run(
        SERVER_CMD + ["--port", str(free_port()), "--model-dir", str(ASR_TIMESTAMP_DIR), "--vad-dir", str(VAD_DIR),
                      "--punc-dir", "", "--lm-dir", "none", "--certfile", str(cert)],
        capture_output=True, text=True, timeout=60, env=NO_HUB,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "holds no private key" in proc.stderr and "--keyfile KEY" in proc.stderr


# ------------------------------------------------------------------ --offline-is-final


def test_offline_is_final_flag():
    assert settings_from_args([]).offline_is_final is False
    assert settings_from_args(["--offline-is-final"]).offline_is_final is True
    assert settings_from_args(["--offline_is_final", "true"]).offline_is_final is True
    assert settings_from_args(["--offline-is-final", "false"]).offline_is_final is False


@pytest.mark.parametrize("flag", [[], ["--offline-is-final"]], ids=["default", "offline-is-final"])
def test_offline_is_final_reaches_the_server_process(flag):
    port = free_port()
    args = ["--model-dir", str(ASR_TIMESTAMP_DIR), "--vad-dir", str(VAD_DIR), "--punc-dir", "", "--lm-dir", "none",
            "--certfile", "0"] + flag
    with server_process(SERVER_CMD + args, port) as proc:
        with connect(f"ws://127.0.0.1:{port}") as ws:
            ws.send(json.dumps({"mode": "offline", "wav_name": "final"}))
            ws.send(fixture_pcm())
            ws.send(json.dumps({"is_speaking": False}))
            msg = json.loads(ws.recv(timeout=60))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert msg["mode"] == "offline" and msg["text"] and msg["is_final"] is bool(flag)
