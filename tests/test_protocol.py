"""Protocol §3 field rules, hotword parsing, and message formatting."""
from __future__ import annotations

import json

import pytest

from server.hotwords import HotwordError, merge_hotwords, parse_client_hotwords, parse_hotword_file
from server.protocol import (
    ClientConfig,
    ProtocolError,
    apply_fields,
    format_timestamp,
    parse_chunk_size,
    parse_control_message,
    result_message,
)


def test_defaults_match_the_protocol():
    c = ClientConfig()
    assert (c.mode, c.wav_name, c.wav_format, c.audio_fs, c.itn) == ("2pass", "wav-default-id", "pcm", 16000, True)
    assert (c.svs_lang, c.svs_itn, c.chunk_size) == ("auto", True, None)


def test_every_field_is_parsed_with_its_type():
    m = parse_control_message(json.dumps({
        "mode": "online", "wav_name": 42, "wav_format": "MP3", "audio_fs": "8000", "chunk_size": "5,10,5",
        "chunk_interval": 10, "encoder_chunk_look_back": 4, "decoder_chunk_look_back": 1,
        "hotwords": '{"阿里巴巴": 20}', "itn": False, "svs_lang": "zh", "svs_itn": False, "unknown": [1],
    }))
    assert m.fields == {
        "mode": "online", "wav_name": "42", "wav_format": "MP3", "audio_fs": 8000, "chunk_size": (5, 10, 5),
        "chunk_interval": 10, "encoder_chunk_look_back": 4, "decoder_chunk_look_back": 1,
        "hotwords": '{"阿里巴巴": 20}', "itn": False, "svs_lang": "zh", "svs_itn": False,
    }
    assert not m.end_of_utterance


def test_unknown_mode_becomes_2pass():
    assert parse_control_message('{"mode": "streaming"}').fields["mode"] == "2pass"


@pytest.mark.parametrize("msg,ends", [
    ('{"is_speaking": false}', True), ('{"is_finished": true}', True), ('{"is_speaking": 0}', False),
    ('{"is_speaking": "false"}', False), ('{"is_speaking": true}', False), ("{}", False), ('{"is_finished": 1}', False),
])
def test_end_signal(msg, ends):
    assert parse_control_message(msg).end_of_utterance is ends


@pytest.mark.parametrize("value,expected", [([5, 10, 5], (5, 10, 5)), ("0,8,4", (0, 8, 4)), (" 5, 10 ,5", (5, 10, 5)), ([8.0, 8, 4], (8, 8, 4))])
def test_chunk_size_forms(value, expected):
    assert parse_chunk_size(value) == expected


@pytest.mark.parametrize("value", [[5, 10], "5,10", [5, 0, 5], [-1, 10, 5], "a,b,c", 10, None, [5, 10, 5, 1], [True, 10, 5]])
def test_bad_chunk_sizes(value):
    with pytest.raises(ProtocolError):
        parse_chunk_size(value)


@pytest.mark.parametrize("text", ["", "{", "[]", "null", "1", '{"audio_fs": 0}', '{"audio_fs": true}', '{"itn": "yes"}', '{"mode": null}', '{"wav_format": []}'])
def test_malformed_messages_raise(text):
    with pytest.raises(ProtocolError):
        parse_control_message(text)


def test_hotwords_only_from_the_first_message():
    c = ClientConfig()
    apply_fields(c, {"hotwords": "a b", "wav_name": "x"}, first_message=True)
    apply_fields(c, {"hotwords": "c d", "wav_name": "y"}, first_message=False)
    assert (c.hotwords, c.wav_name) == ("a b", "y")


def test_timestamp_format_has_no_spaces():
    assert format_timestamp([(430, 670), (670, 810)]) == "[[430,670],[670,810]]"
    assert format_timestamp([]) == "[]"


def test_result_message_shape():
    msg = json.loads(result_message("offline", "w", "你好。", False, [(1, 2), (2, 3)], [{"text_seg": "你 好"}]))
    assert msg == {"mode": "offline", "wav_name": "w", "text": "你好。", "is_final": False,
                   "timestamp": "[[1,2],[2,3]]", "stamp_sents": [{"text_seg": "你 好"}]}
    assert "timestamp" not in json.loads(result_message("offline", "w", "x", False))


def test_client_hotwords_json_and_plain():
    assert parse_client_hotwords('{"阿里巴巴": 20, "达摩院": 30}') == {"阿里巴巴": 20, "达摩院": 30}
    assert parse_client_hotwords("阿里巴巴 达摩院") == {"阿里巴巴": 20, "达摩院": 20}
    assert parse_client_hotwords('{"阿里巴巴": "20"}') == {"阿里巴巴": 20}  # the reference drops these silently
    assert parse_client_hotwords("") == {} and parse_client_hotwords(None) == {}


@pytest.mark.parametrize("bad", ['{"阿里巴巴": 0}', '{"阿里巴巴": 101}', '{"阿里巴巴": "x"}', '{"阿里巴巴": 2.5}', '{"x": 1', '["a"]', "一二三四五六七八九十一"])
def test_bad_client_hotwords(bad):
    with pytest.raises(HotwordError):
        parse_client_hotwords(bad)


def test_too_many_hotwords():
    with pytest.raises(HotwordError):
        parse_client_hotwords(" ".join(f"w{i}" for i in range(1001)))


def test_hotword_file_and_merge(tmp_path):
    f = tmp_path / "hotwords.txt"
    f.write_text("阿里巴巴 20\n# comment\n\n达摩院 30\n通义\nhello world 40\n", encoding="utf-8")
    server = parse_hotword_file(f)
    assert server == {"阿里巴巴": 20, "达摩院": 30, "通义": 20, "hello world": 40}
    assert merge_hotwords(server, {"达摩院": 5})["达摩院"] == 5
    f.write_text("阿里巴巴 500\n", encoding="utf-8")
    with pytest.raises(HotwordError, match=":1"):
        parse_hotword_file(f)
