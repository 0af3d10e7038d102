"""``--lm-dir`` over the protocol: the n-gram LM and weighted hotwords change the text as FunASR's C++ decoder does.

The expected texts are built from ``golden/lm/golden.json`` (FunASR's own C++
``WfstDecoder`` on the fixture clips): each segment's words through the
C++ timestamp path's text rules, joined as the pipeline joins segments.
Punctuation and ITN are off so the LM's words reach the client unchanged.
Clips go as their own int16 samples (the golden's audio), on both profiles:
the offline profile and the offline pass of the 2pass profile.
"""
from __future__ import annotations

import json
from typing import List, Optional

import pytest
from websockets.sync.client import connect

from funasr_wss.models.lm_text import lm_words, split_lm_words
from funasr_wss.models.tokens import join_words
from tests.harness import ServerThread, fixture_settings, fixture_settings_2pass
from tests.helpers import wav_pcm
from tests.paths import LM_DIR, LM_GOLDEN
from tests.test_server_2pass import stream
from tests.test_server_offline import recv_json, send_utterance

GOLDEN = json.loads(LM_GOLDEN.read_text(encoding="utf-8"))
CLIPS = sorted(GOLDEN)
#: Hotword sets decoded at the server default --fst-inc-wts 20 (hw_low_inc is at 2).
SETS_AT_20 = [name for name, inc in GOLDEN[CLIPS[0]]["fst_inc_wts"].items() if inc == 20]


def golden_text(clip: str, hotword_set: str = "none") -> str:
    words: List[str] = []
    for segment in GOLDEN[clip]["lm"][hotword_set]:
        words += lm_words(split_lm_words(segment["word_strs"]))[0]
    return join_words(words)


def golden_stamps_ms(clip: str, hotword_set: str = "none") -> List[List[int]]:
    """The C++ stamps (segment-relative seconds after ``|``) made absolute, in ms."""
    out = []
    for (start_ms, _), segment in zip(GOLDEN[clip]["segments"], GOLDEN[clip]["lm"][hotword_set]):
        values = [float(v) for v in segment["stamp_text"].split(" | ", 1)[1].replace(",", " ").split()]
        out += [[start_ms + round(a * 1000), start_ms + round(b * 1000)] for a, b in zip(values[::2], values[1::2])]
    return out


def hotwords_json(clip: str, hotword_set: str) -> Optional[str]:
    words = GOLDEN[clip]["hotword_sets"].get(hotword_set)
    return json.dumps(words, ensure_ascii=False) if words else None


def lm_settings(profile: str, **overrides):
    make = fixture_settings_2pass if profile == "2pass" else fixture_settings
    return make(punc_dir="", lm_dir=str(LM_DIR), **overrides)


@pytest.fixture(scope="module", params=["offline", "2pass"])
def lm_server(request):
    with ServerThread(lm_settings(request.param)) as server:
        yield request.param, server


@pytest.fixture(scope="module")
def greedy_server():
    with ServerThread(fixture_settings(punc_dir="")) as server:
        yield server


def offline_answer(server: ServerThread, pcm: bytes, **config) -> dict:
    with connect(server.url) as ws:
        send_utterance(ws, pcm, itn=False, **{k: v for k, v in config.items() if v is not None})
        return recv_json(ws)


def two_pass_offline_text(server: ServerThread, pcm: bytes, **config) -> str:
    run = stream(server.url, pcm, "2pass", itn=False, **{k: v for k, v in config.items() if v is not None})
    return "".join(m["text"] for m in run.messages if m.get("mode") == "2pass-offline")


def answer_text(profile: str, server: ServerThread, clip: str, hotwords: Optional[str] = None) -> str:
    if profile == "offline":
        return offline_answer(server, wav_pcm(clip), hotwords=hotwords)["text"]
    return two_pass_offline_text(server, wav_pcm(clip), hotwords=hotwords)


def test_the_servers_vad_cuts_the_golden_segments(lm_server):
    """The precondition of every comparison here: the same segments as the C++ decode was given."""
    profile, server = lm_server
    pipeline = server.models if profile == "offline" else server.models.pipeline
    from funasr_wss.models.audio import pcm16_to_float

    for clip in CLIPS:
        segments = pipeline.speech_segments(pcm16_to_float(wav_pcm(clip)))
        assert [list(s) for s in segments] == GOLDEN[clip]["segments"], clip


@pytest.mark.parametrize("clip", CLIPS)
def test_the_lm_gives_the_cpp_decoders_text(lm_server, greedy_server, clip):
    profile, server = lm_server
    text = answer_text(profile, server, clip)
    assert text == golden_text(clip)
    assert text != offline_answer(greedy_server, wav_pcm(clip))["text"], "the LM changes the greedy text"


@pytest.mark.parametrize("hotword_set", SETS_AT_20)
@pytest.mark.parametrize("clip", ["zh01_asr_example_zh.wav", "zh02_llamacpp_sample.wav", "en01_libri_1995-1837-0001.wav"])
def test_weighted_hotwords_give_the_cpp_decoders_text(lm_server, clip, hotword_set):
    profile, server = lm_server
    assert answer_text(profile, server, clip, hotwords_json(clip, hotword_set)) == golden_text(clip, hotword_set)


def test_a_low_increment_hotword_set_at_fst_inc_wts_2():
    with ServerThread(lm_settings("offline", fst_inc_wts=2)) as server:
        for clip in ("zh03_triton_mid.wav", "zh04_triton_long.wav"):
            got = offline_answer(server, wav_pcm(clip), hotwords=hotwords_json(clip, "hw_low_inc"))["text"]
            assert got == golden_text(clip, "hw_low_inc")


def test_lm_timestamps_follow_the_cpp_rules():
    """Units and times as C++'s TimestampOnnx gives them, the alpha-rescaling fallback included
    (``andthese`` is one LM word over two CIF positions); C++ rounds some values 1 ms lower."""
    with ServerThread(lm_settings("offline")) as server:
        _check_timestamps(server)


def _check_timestamps(server: ServerThread) -> None:
    for clip in ("en01_libri_1995-1837-0001.wav", "zh02_llamacpp_sample.wav"):
        msg = offline_answer(server, wav_pcm(clip))
        got = json.loads(msg["timestamp"])
        expected = golden_stamps_ms(clip)
        assert len(got) == len(expected)
        assert max(abs(a - b) for g, e in zip(got, expected) for a, b in zip(g, e)) <= 1


def test_lm_dir_none_gives_todays_text(greedy_server):
    """Without an LM: the greedy decode, exactly what the pipeline gives by itself."""
    from funasr_wss.models.audio import pcm16_to_float

    assert greedy_server.models.asr.lm is None
    for clip in ("zh01_asr_example_zh.wav", "en02_libri_1089-134686-0001.wav"):
        pcm = wav_pcm(clip)
        expected = greedy_server.models.transcribe(pcm16_to_float(pcm), use_itn=False).text
        assert offline_answer(greedy_server, pcm)["text"] == expected


def test_unspellable_hotwords_are_reported_and_change_nothing(lm_server):
    """``{"Cloud": 20}`` crashes FunASR's C++ server; here it is no hotwords, and the client is told."""
    profile, server = lm_server
    clip = "zh01_asr_example_zh.wav"
    if profile == "offline":
        msg = offline_answer(server, wav_pcm(clip), hotwords=json.dumps({"Cloud": 20, "蘅猫": 15}, ensure_ascii=False))
        assert "'Cloud'" in msg["warning"] and "no hotword" not in msg["warning"]
        assert "'蘅猫'" in msg["warning"] and "'猫'" in msg["warning"]
        msg = offline_answer(server, wav_pcm(clip), hotwords=json.dumps({"Cloud": 20}))
        assert "no hotword reaches the n-gram LM" in msg["warning"]
        assert msg["text"] == golden_text(clip)
    else:
        run = stream(server.url, wav_pcm(clip), "2pass", itn=False, hotwords=json.dumps({"Cloud": 20}))
        warnings = [m["warning"] for m in run.messages if "warning" in m]
        assert len(warnings) == 1 and "no hotword reaches the n-gram LM" in warnings[0]
        assert "".join(m["text"] for m in run.messages if m.get("mode") == "2pass-offline") == golden_text(clip)


def test_the_server_hotword_file_reaches_the_lm(tmp_path):
    clip = "zh01_asr_example_zh.wav"
    path = tmp_path / "hotwords.txt"
    path.write_text("肝斜 20\n", encoding="utf-8")
    from funasr_wss.server.hotwords import parse_hotword_file

    with ServerThread(lm_settings("offline"), server_hotwords=parse_hotword_file(path)) as server:
        assert offline_answer(server, wav_pcm(clip))["text"] == golden_text(clip, "hw_one")


def test_the_lm_search_is_a_stage_in_the_metrics(lm_server):
    profile, server = lm_server
    answer_text(profile, server, "zh05_BAC009S0724W0121.wav")
    import urllib.request

    body = urllib.request.urlopen(server.http_url + "/metrics", timeout=10).read().decode()
    (line,) = [m for m in body.splitlines() if m.startswith('funasr_stage_seconds_count{stage="lm_search"}')]
    assert float(line.rsplit(" ", 1)[1]) >= 1


def test_the_plain_paraformer_decodes_through_the_lm_too():
    """The export without timestamps gives the same log-probabilities to ~1e-5 (golden README), so the
    same words; its text has no space between multi-character Chinese words, unlike the C++ server's
    unpunctuated ``Vector2StringV2`` (``肝斜 肝斜``), which punctuation removes there anyway."""
    from tests.paths import ASR_PLAIN_DIR

    with ServerThread(fixture_settings(model_dir=str(ASR_PLAIN_DIR), punc_dir="", lm_dir=str(LM_DIR))) as server:
        for clip in ("zh03_triton_mid.wav", "en02_libri_1089-134686-0001.wav"):
            msg = offline_answer(server, wav_pcm(clip), hotwords=hotwords_json(clip, "hw_one"))
            assert msg["text"] == golden_text(clip, "hw_one")
            assert "timestamp" not in msg
