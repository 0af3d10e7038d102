"""Log lines carry the connection id; the JSON format keeps every field."""
from __future__ import annotations

import json
import logging

from funasr_wss.server.logs import ConnectionLog, JsonFormatter, TextFormatter, utterance_fields


def record_of(call) -> logging.LogRecord:
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    logger = logging.getLogger("test_logs")
    logger.handlers[:] = [Keep()]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    call(ConnectionLog(logger, "c42"))
    assert len(records) == 1
    return records[0]


def test_text_lines_carry_the_connection_id():
    record = record_of(lambda log: log.info("closed after %d utterances", 3))
    line = TextFormatter().format(record)
    assert line.endswith("test_logs: [c42] closed after 3 utterances")
    plain = logging.LogRecord("x", logging.INFO, __file__, 1, "no connection here", (), None)
    assert TextFormatter().format(plain).endswith("x: no connection here")


def test_json_lines_hold_the_id_and_the_call_s_own_fields():
    fields = utterance_fields("2pass", "mic", 12.3456, 0.5, None)
    record = record_of(lambda log: log.info("%s done", "utterance", extra=fields))
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "utterance done" and entry["level"] == "INFO" and entry["logger"] == "test_logs"
    assert entry["conn"] == "c42" and entry["event"] == "utterance"
    assert (entry["mode"], entry["wav_name"], entry["audio_seconds"], entry["seconds"]) == ("2pass", "mic", 12.346, 0.5)
    assert "error" not in entry and "args" not in entry and "msg" not in entry


def test_json_lines_keep_exceptions_and_unicode():
    def fail(log):
        try:
            raise ValueError("坏了")
        except ValueError:
            log.exception("decoding failed")

    entry = json.loads(JsonFormatter().format(record_of(fail)))
    assert entry["conn"] == "c42" and "ValueError: 坏了" in entry["exception"]


# ---------------------------------------------------------------------- hotwords: one line each


def _lines_naming(records, word: str, skip=()) -> list:
    return [r for r in records if word in r.getMessage() and r.name not in skip]


def _hotword_connections(caplog, skip=()):
    """Two connections to a contextual Paraformer with the n-gram LM, both sending unusable hotwords,
    on a server whose own --hotword list has an unusable word (``Wombat``: no model token, no LM entry).
    Returns the records of each connection."""
    from websockets.sync.client import connect

    from tests.harness import ServerThread, fixture_settings
    from tests.paths import ASR_CONTEXTUAL_DIR, LM_DIR
    from tests.test_server_offline import recv_json, send_utterance

    settings = fixture_settings(model_dir=str(ASR_CONTEXTUAL_DIR), punc_dir="", lm_dir=str(LM_DIR))
    per_connection = []
    with ServerThread(settings, server_hotwords={"Wombat": 10, "腊棉": 5}) as server:
        for _ in range(2):
            caplog.clear()
            with caplog.at_level(logging.INFO):
                with connect(server.url) as ws:
                    send_utterance(ws, b"", hotwords="阿里巴巴 Quokka 30,一二三四五六七八九十一,砦秕 40")
                    answer = recv_json(ws)
            per_connection.append(list(caplog.records))
    # what the client hears: each of its unusable words, once
    for word in ("阿里巴巴", "Quokka", "一二三四五六七八九十一"):
        assert answer["warning"].count(f"'{word}'") == 1, answer
    assert "Wombat" not in answer["warning"]
    return per_connection


def test_each_unusable_hotword_is_logged_once(caplog, monkeypatch):
    from funasr_wss.server import session

    monkeypatch.setattr(session, "_LOGGED_SERVER_LM_PROBLEMS", set())  # as in a fresh server process
    first, second = _hotword_connections(caplog)
    for records in (first, second):
        for word in ("阿里巴巴", "Quokka", "一二三四五六七八九十一"):
            # the client's words: in the warning's one line, not again as if from the server's list
            lines = _lines_naming(records, f"'{word}'")
            assert len(lines) == 1 and lines[0].getMessage().startswith("hotwords: dropped"), lines
    # the server's own word is the same on every connection: one line in all, not one per connection
    wombat = _lines_naming(first + second, "'Wombat'")
    assert [r.getMessage() for r in wombat] == ["--hotword 'Wombat' and the n-gram LM: none of its pieces is in the LM lexicon"]


def test_each_unusable_hotword_is_logged_once_by_every_logger(caplog):
    first, _ = _hotword_connections(caplog)
    for word in ("阿里巴巴", "Quokka"):
        assert len(_lines_naming(first, f"'{word}'")) == 1


# ---------------------------------------------------------------------- /health and /metrics probes


def _http(url: str, path: str, headers: dict = {}) -> int:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(urllib.request.Request(url + path, headers=headers), timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _websockets_lines(records, level=logging.INFO) -> list:
    return [r.getMessage() for r in records if r.name == "websockets.server" and r.levelno == level]


def test_health_and_metrics_probes_do_not_log_at_info(offline_server, caplog):
    import time

    from websockets.sync.client import connect

    url = offline_server.http_url
    with caplog.at_level(logging.INFO):
        for _ in range(5):
            assert _http(url, "/health") == 200
        for _ in range(2):
            assert _http(url, "/metrics") == 200
        # what must still show: other requests, a broken handshake and a WebSocket on the probe path
        assert _http(url, "/nothing-here") == 404
        assert _http(url, "/health", {"Connection": "Upgrade", "Upgrade": "websocket"}) == 426
        with connect(offline_server.url + "/health"):
            pass
        deadline = time.monotonic() + 5
        while _websockets_lines(caplog.records).count("connection closed") < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    lines = _websockets_lines(caplog.records)
    assert "HTTP response sent (200 OK)" not in lines, lines
    assert sorted(lines) == sorted([
        "HTTP response sent (404 Not Found)", "connection rejected (426 Upgrade Required)", "connection open",
    ] + ["connection closed"] * 3), lines
    # with DEBUG on, the probes are there
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="websockets.server"):
        assert _http(url, "/health") == 200
        deadline = time.monotonic() + 5
        while "connection closed" not in _websockets_lines(caplog.records, logging.DEBUG) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert {"HTTP response sent (200 OK)", "connection closed"} <= set(_websockets_lines(caplog.records, logging.DEBUG))
    assert _websockets_lines(caplog.records) == []


def test_probe_records_above_info_pass():
    from types import SimpleNamespace

    from websockets.datastructures import Headers
    from websockets.http11 import Request

    from funasr_wss.server.http_routes import QuietProbes

    probe = SimpleNamespace(request=Request("/health?x=1", Headers()))
    handshake = SimpleNamespace(request=Request("/health", Headers({"Connection": "Upgrade", "Upgrade": "websocket"})))

    def record(level, websocket):
        r = logging.LogRecord("websockets.server", level, __file__, 1, "m", (), None)
        r.websocket = websocket
        return r

    assert QuietProbes().filter(record(logging.ERROR, probe)) is True
    assert QuietProbes().filter(record(logging.WARNING, probe)) is True
    assert QuietProbes().filter(record(logging.INFO, handshake)) is True
    assert QuietProbes().filter(record(logging.INFO, SimpleNamespace(request=None))) is True
    assert QuietProbes().filter(record(logging.INFO, None)) is True
