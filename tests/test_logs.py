"""Log lines carry the connection id; the JSON format keeps every field."""
from __future__ import annotations

import json
import logging

from server.logs import ConnectionLog, JsonFormatter, TextFormatter, utterance_fields


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
