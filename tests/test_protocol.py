"""Protocol §3 field rules, hotword parsing, and message formatting."""
from __future__ import annotations

import json

import pytest

from funasr_wss.server.hotwords import (
    MAX_WORDS,
    ClientHotwordsUnreadable,
    HotwordError,
    merge_hotwords,
    parse_client_hotwords,
    parse_hotword_file,
    warning_text,
)
from funasr_wss.server.protocol import (
    ClientConfig,
    ProtocolError,
    apply_fields,
    end_ack_message,
    format_timestamp,
    parse_chunk_size,
    parse_control_message,
    result_message,
    warning_message,
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
    assert parse_control_message(msg).end_of_input is False


@pytest.mark.parametrize("msg,ends,acks", [
    ('{"is_speaking": false, "is_end": true}', True, True),  # FunASR's Python client since 2026-07
    ('{"is_finished": true, "is_end": true}', True, True),
    ('{"is_end": true}', False, False),  # is_end alone ends nothing, as in FunASR's Python server
    ('{"is_speaking": true, "is_end": true}', False, False),
    ('{"is_speaking": false, "is_end": false}', True, False),
    ('{"is_speaking": false, "is_end": "true"}', True, False),
])
def test_end_of_input(msg, ends, acks):
    m = parse_control_message(msg)
    assert (m.end_of_utterance, m.end_of_input) == (ends, acks)


def test_a_bad_end_message_still_says_it_wanted_an_acknowledgement():
    with pytest.raises(ProtocolError) as err:
        parse_control_message('{"is_speaking": false, "is_end": true, "audio_fs": 0}')
    assert err.value.end_of_input is True
    with pytest.raises(ProtocolError) as err:
        parse_control_message('{"is_speaking": false, "audio_fs": 0}')
    assert err.value.end_of_input is False


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


@pytest.mark.parametrize("value", [5, ["a"], True, "一二三四五六七八九十一", '{"x": 0}'])
def test_a_bad_hotwords_value_is_not_a_bad_message(value):
    """Read later (server.hotwords), with a warning: the rest of the configuration must survive it."""
    m = parse_control_message(json.dumps({"hotwords": value, "chunk_size": [5, 10, 5], "mode": "online"}))
    assert m.fields == {"hotwords": value, "chunk_size": (5, 10, 5), "mode": "online"}


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
    assert parse_client_hotwords('{"阿里巴巴": 20, "达摩院": 30}') == ({"阿里巴巴": 20, "达摩院": 30}, [])
    assert parse_client_hotwords("阿里巴巴 达摩院") == ({"阿里巴巴": 20, "达摩院": 20}, [])
    assert parse_client_hotwords('{"阿里巴巴": "20"}') == ({"阿里巴巴": 20}, [])  # the reference drops these silently
    assert parse_client_hotwords("") == ({}, []) and parse_client_hotwords(None) == ({}, [])
    assert parse_client_hotwords({"达摩院": 30}) == ({"达摩院": 30}, [])  # an object sent as such


@pytest.mark.parametrize("text", [
    "阿里巴巴,达摩院,通义千问",  # FunASR's Python client since 2026-02: the file's words joined with commas
    "阿里巴巴, 达摩院 ,通义千问,",
    "阿里巴巴，达摩院，通义千问",
    "阿里巴巴、达摩院;通义千问",
    "阿里巴巴；达摩院\n通义千问",
    " 阿里巴巴\t达摩院  通义千问 ",
])
def test_plain_hotwords_split_on_whitespace_and_commas(text):
    assert parse_client_hotwords(text) == ({"阿里巴巴": 20, "达摩院": 20, "通义千问": 20}, [])


@pytest.mark.parametrize("text,words", [
    ("春 20", {"春": 20}),  # a trailing integer is the weight, as in the --hotword file
    ("阿里巴巴 30 达摩院", {"阿里巴巴": 30, "达摩院": 20}),  # a word without one gets the default
    ("阿里巴巴 30,达摩院 40", {"阿里巴巴": 30, "达摩院": 40}),  # file lines joined with commas
    ("阿里巴巴 0\n达摩院\t100", {"阿里巴巴": 0, "达摩院": 100}),  # the range's ends
    ("春 ２０", {"春": 20}),  # full-width digits, as int() and the file read them
])
def test_a_plain_hotword_s_trailing_integer_is_its_weight(text, words):
    assert parse_client_hotwords(text) == (words, [])


@pytest.mark.parametrize("text,words,dropped", [
    ("春 200,达摩院", {"达摩院": 20}, [("春", "weight 200 is not between 0 and 100")]),
    ("春 -1", {}, [("春", "weight -1 is not between 0 and 100")]),
    ("20 春", {"春": 20}, [("20", "no hotword before it")]),
    ("春 20 30", {"春": 20}, [("30", "no hotword before it")]),
    ("春 --5", {"春": 20, "--5": 20}, []),  # not an integer, so a word (as a JSON weight it raised ValueError)
])
def test_a_bad_plain_weight_is_dropped_never_taken_as_a_hotword(text, words, dropped):
    got, lost = parse_client_hotwords(text)
    assert got == words
    assert [w for w, _ in lost] == [w for w, _ in dropped]
    assert all(why in reason for (_, why), (_, reason) in zip(dropped, lost))


def test_json_hotword_keys_are_kept_whole():
    words, dropped = parse_client_hotwords('{"two words": 20, "阿里巴巴,达摩院": 30, " 通义 ": 5}')
    assert words == {"two words": 20, "阿里巴巴,达摩院": 30, "通义": 5} and dropped == []


@pytest.mark.parametrize("bad,why", [
    ('{"阿里巴巴": -1}', "between 0 and 100"), ('{"阿里巴巴": 101}', "between 0 and 100"),
    ('{"阿里巴巴": "x"}', "not an integer"), ('{"阿里巴巴": 2.5}', "not an integer"), ('{"阿里巴巴": null}', "not an integer"),
    ('{"阿里巴巴": true}', "not an integer"), ('{"阿里巴巴": "--5"}', "not an integer"), ('{"阿里巴巴": "²"}', "not an integer"),
    ('{"一二三四五六七八九十一": 20}', "longer than 10"), ("一二三四五六七八九十一", "longer than 10"),
    ("one two three four five six seven eight nine ten eleven", None),  # plain: eleven words, each fine
])
def test_a_bad_client_hotword_is_dropped_and_the_others_kept(bad, why):
    if why is None:
        words, dropped = parse_client_hotwords(bad)
        assert len(words) == 11 and dropped == []
        return
    text = bad[:-1] + ', "达摩院": 30}' if bad.startswith("{") else bad + ",达摩院"
    words, dropped = parse_client_hotwords(text)
    assert words == {"达摩院": 30 if bad.startswith("{") else 20}
    assert len(dropped) == 1 and why in dropped[0][1]
    assert dropped[0][0] in ("阿里巴巴", "一二三四五六七八九十一")


def test_an_empty_json_key_is_dropped():
    assert parse_client_hotwords('{"": 20, "  ": 5, "a": 5}') == ({"a": 5}, [("", "empty hotword"), ("", "empty hotword")])


@pytest.mark.parametrize("bad", ['{"x": 1', '["a"]', "[1, 2]", "{\"a\": 1}}", 5, 2.5, True, ["阿里巴巴"], [["阿里巴巴", 20]]])
def test_unreadable_client_hotwords(bad):
    with pytest.raises(ClientHotwordsUnreadable):
        parse_client_hotwords(bad)


def test_too_many_hotwords_keep_the_first_thousand():
    words, dropped = parse_client_hotwords(" ".join(f"w{i}" for i in range(MAX_WORDS + 2)))
    assert list(words) == [f"w{i}" for i in range(MAX_WORDS)]
    assert [w for w, _ in dropped] == [f"w{MAX_WORDS}", f"w{MAX_WORDS + 1}"] and "limit" in dropped[0][1]
    # merged with the server's list: the client's weight wins, and the total stays within the limit
    server = {f"s{i}": 5 for i in range(MAX_WORDS - 1)}
    merged, over = merge_hotwords(server, {"s0": 50, "new": 20, "newer": 20})
    assert merged["s0"] == 50 and merged["new"] == 20 and "newer" not in merged and len(merged) == MAX_WORDS
    assert over == [("newer", over[0][1])] and "server" in over[0][1]


def test_the_warning_names_each_dropped_hotword_and_why():
    text = warning_text([("一二三四五六七八九十一", "longer than 10 characters"), ("a", "weight -1 is not between 0 and 100")], kept=2)
    assert "'一二三四五六七八九十一' (longer than 10 characters)" in text and "'a' (weight -1" in text
    assert text.startswith("dropped 2 hotwords") and "2 other hotwords" in text
    assert "configuration is used" in warning_text([("a", "x")], kept=0)
    many = warning_text([(f"w{i}", "why") for i in range(30)] + [("x" * 5000, "long")], kept=0)
    assert "and 11 more" in many and len(many) < 1000  # bounded, however much was sent


def test_warning_and_end_acknowledgement_shapes():
    assert json.loads(warning_message("2pass", "w", "dropped 1 hotword")) == {
        "mode": "2pass", "wav_name": "w", "text": "", "is_final": False, "warning": "dropped 1 hotword"}
    assert json.loads(end_ack_message("offline", "w")) == {
        "mode": "offline", "wav_name": "w", "text": "", "is_final": True, "is_end": True}
    # a failed utterance: is_final false with the error, as FunASR's Python server acknowledges it
    assert json.loads(end_ack_message("online", "w", "too long")) == {
        "mode": "online", "wav_name": "w", "text": "", "is_final": False, "is_end": True, "error": "too long"}


def test_hotword_file_and_merge(tmp_path):
    f = tmp_path / "hotwords.txt"
    f.write_text("阿里巴巴 20\n# comment\n\n达摩院 30\n通义\nhello world 40\n", encoding="utf-8")
    server = parse_hotword_file(f)
    assert server == {"阿里巴巴": 20, "达摩院": 30, "通义": 20, "hello world": 40}
    assert merge_hotwords(server, {"达摩院": 5}) == ({**server, "达摩院": 5}, [])
    # the server's own file stays strict: the operator must fix it
    for bad in ("阿里巴巴 500\n", "一二三四五六七八九十一 20\n", "阿里巴巴 -1\n"):
        f.write_text(bad, encoding="utf-8")
        with pytest.raises(HotwordError, match=":1"):
            parse_hotword_file(f)
    f.write_text("".join(f"w{i}\n" for i in range(MAX_WORDS + 1)), encoding="utf-8")
    with pytest.raises(HotwordError, match="at most"):
        parse_hotword_file(f)
