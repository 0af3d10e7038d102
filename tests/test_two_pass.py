"""The 2pass stream (models/live_stream.py): VAD-driven online and offline passes over live audio.

Each property is checked against the parts it is built from, run independently:
the streaming VAD fed 50 ms steps, the offline Paraformer on the segment's samples,
the realtime punctuation model with its cache, the online Paraformer on the
samples a segment had when the VAD closed it.
"""
from __future__ import annotations

from typing import List, Tuple

import numpy as np
import pytest

from funasr_wss.models.audio import load_audio_file
from funasr_wss.models.live_stream import FINAL_MARK, LiveStream, PartialText, SegmentText
from funasr_wss.models.punctuation import PunctuationCache, RealtimePunctuator
from funasr_wss.models.vad import events_to_segments
from funasr_wss.server.model_loader import load_two_pass
from tests.harness import fixture_settings_2pass
from tests.paths import AUDIO, PUNC_REALTIME_DIR

STEP = 800  # 50 ms


@pytest.fixture(scope="module")
def recognizer():
    return load_two_pass(fixture_settings_2pass())


@pytest.fixture(scope="module")
def waves():
    names = ["zh02_llamacpp_sample.wav", "long02_vad_30s_48k.wav", "zh01_asr_example_zh.wav", "en02_libri_1089-134686-0001.wav"]
    return {n: load_audio_file(AUDIO / n) for n in names}


def run(stream: LiveStream, wave: np.ndarray, piece: int = 9600) -> List[Tuple[int, object]]:
    """Feed ``wave`` in pieces, then a bare final call; each event with the samples fed when it came."""
    out = []
    for i in range(0, wave.size, piece):
        for ev in stream.accept(wave[i : i + piece]):
            out.append((min(i + piece, wave.size), ev))
    for ev in stream.accept(np.zeros(0, np.float32), is_final=True):
        out.append((wave.size, ev))
    return out


def vad_reference(recognizer, wave: np.ndarray):
    """Segments of the streaming VAD fed 50 ms steps, and for each the samples fed *before*
    the step that closed it (``wave.size`` for the ones the final call closed)."""
    vad = recognizer.vad.new_stream()
    events, closed_at = [], []
    for i in range(0, wave.size, STEP):
        for ev in vad.accept(wave[i : i + STEP]):
            events.append(ev)
            if ev.ends:
                closed_at.append(i)
    final = vad.accept(np.zeros(0, np.float32), is_final=True)
    events += final
    closed_at += [wave.size] * sum(1 for ev in final if ev.ends)
    segments = events_to_segments(events)
    segments = [(s, e if e >= 0 else wave.size // 16) for s, e in segments]
    return segments, closed_at + [wave.size] * (len(segments) - len(closed_at))


def segments_of(events) -> List[SegmentText]:
    return [ev for _, ev in events if isinstance(ev, SegmentText)]


@pytest.mark.parametrize("name", ["zh02_llamacpp_sample.wav", "long02_vad_30s_48k.wav", "en02_libri_1089-134686-0001.wav"])
def test_offline_pass_decodes_each_vad_segment(recognizer, waves, name):
    wave = waves[name]
    expected_segments, _ = vad_reference(recognizer, wave)
    got = segments_of(run(recognizer.new_stream(online=False, offline=True, use_itn=False), wave))
    assert [(s.start_ms, s.end_ms) for s in got] == expected_segments
    assert [s.segment for s in got] == list(range(len(got)))
    # only a segment that the end of the audio closes is the utterance's last one
    closed_by_final = [False] * (len(got) - 1) + [expected_segments[-1][1] * 16 > wave.size - 16000 * 0.8]
    assert [s.last for s in got] == closed_by_final
    asr, punc = recognizer.pipeline.asr, recognizer.realtime_punctuator
    cache = PunctuationCache()
    for seg in got:
        want = asr.recognize([wave[seg.start_ms * 16 : seg.end_ms * 16]])[0]
        assert seg.transcript.raw_text == want.text
        # times are absolute within the stream and inside the segment
        assert seg.transcript.timestamps is not None
        for s, e in seg.transcript.timestamps:
            assert seg.start_ms <= s <= e <= seg.end_ms + 60
        text = punc.punctuate(want.text, cache).text.replace("<unk>", "") if want.text else ""
        if seg.last and text and text[-1] not in "，。？、,?":
            text += FINAL_MARK
        assert seg.transcript.text == text


@pytest.mark.parametrize("online,offline", [(True, True), (True, False), (False, True)])
def test_results_do_not_depend_on_how_the_audio_is_cut(recognizer, waves, online, offline):
    wave = waves["long02_vad_30s_48k.wav"]
    rng = np.random.default_rng(11)

    def summary(events):
        """Per segment: the online text, and the offline text with its times."""
        out = {}
        for _, ev in events:
            online_text, offline = out.setdefault(ev.segment, ["", None])
            if isinstance(ev, PartialText):
                out[ev.segment][0] = online_text + ev.text
            else:
                out[ev.segment][1] = (ev.start_ms, ev.end_ms, ev.transcript.text, ev.transcript.timestamps, ev.last)
        return out

    def feed(sizes):
        stream = recognizer.new_stream(online=online, offline=offline)
        events, pos = [], 0
        for size in sizes:
            events += [(pos, ev) for ev in stream.accept(wave[pos : pos + size])]
            pos += size
        return events + [(pos, ev) for ev in stream.accept(np.zeros(0, np.float32), is_final=True)]

    base = feed([9600] * (wave.size // 9600 + 1))
    assert summary(base) and all(v[0] or v[1] for v in summary(base).values())
    random_sizes = list(rng.integers(1, 6000, size=wave.size // 1000))
    random_sizes.append(wave.size)
    assert summary(feed(random_sizes)) == summary(base)
    assert summary(feed([wave.size])) == summary(base)


def test_online_pass_sees_each_segment_from_its_start_until_the_vad_closes_it(recognizer, waves):
    wave = waves["long02_vad_30s_48k.wav"]
    segments, closed_at = vad_reference(recognizer, wave)
    events = run(recognizer.new_stream(online=True, offline=False), wave, STEP)
    assert not segments_of(events)
    partials = [ev for _, ev in events if isinstance(ev, PartialText)]
    assert all(ev.text for ev in partials)
    for k, ((start, end), stop) in enumerate(zip(segments, closed_at)):
        mine = [ev for ev in partials if ev.segment == k]
        assert mine and mine[-1].ends_segment and not any(ev.ends_segment for ev in mine[:-1])
        online = recognizer.online.new_stream()
        want = online.accept(wave[start * 16 : stop], is_final=True).text
        assert "".join(ev.text for ev in mine) == want, k
    assert {ev.segment for ev in partials} == set(range(len(segments)))


def test_partials_come_only_while_a_segment_is_open(recognizer, waves):
    wave = waves["zh02_llamacpp_sample.wav"]
    segments, closed_at = vad_reference(recognizer, wave)
    events = run(recognizer.new_stream(online=True, offline=True), wave, STEP)
    for fed, ev in events:
        if isinstance(ev, PartialText):
            start, _ = segments[ev.segment]
            # a chunk of speech has been heard, and the segment is not closed yet
            assert start * 16 + 9600 <= fed <= closed_at[ev.segment] + STEP
    # the 2pass stream: segment k's offline text comes after its partials and before segment k+1's
    order = [(ev.segment, isinstance(ev, SegmentText)) for _, ev in events]
    assert order == sorted(order)
    silence = np.zeros(16000 * 3, np.float32)
    assert run(recognizer.new_stream(online=True, offline=True), silence) == []


def test_an_open_segment_is_closed_by_the_final_call(recognizer, waves):
    wave = waves["zh01_asr_example_zh.wav"][: 16000 * 3]  # cut in the middle of speech
    stream = recognizer.new_stream(online=True, offline=True)
    before = stream.accept(wave)
    assert not segments_of([(0, ev) for ev in before])
    assert stream.segment_open
    final = stream.accept(np.zeros(0, np.float32), is_final=True)
    (seg,) = [ev for ev in final if isinstance(ev, SegmentText)]
    assert seg.last and 2900 <= seg.end_ms <= 3000  # the VAD closes it on its last whole frame
    assert seg.transcript.text.endswith(FINAL_MARK)
    assert not stream.segment_open and stream.samples_seen == 0


def test_final_call_with_many_segments_marks_only_the_last(recognizer, waves):
    wave = waves["long02_vad_30s_48k.wav"]
    stream = recognizer.new_stream(online=False, offline=True)
    got = [ev for ev in stream.accept(wave, is_final=True) if isinstance(ev, SegmentText)]
    assert len(got) == 5
    assert [s.last for s in got] == [False] * 4 + [True]


def test_stream_is_reusable_after_the_final_call(recognizer, waves):
    wave = waves["zh02_llamacpp_sample.wav"]
    stream = recognizer.new_stream(online=True, offline=True)

    def summary(events):
        return [(fed, type(ev).__name__, getattr(ev, "text", None) or ev.transcript.text, getattr(ev, "start_ms", None)) for fed, ev in events]

    first = summary(run(stream, wave))
    assert first == summary(run(stream, wave))
    # a fresh stream gives the same, so nothing leaked from the first utterance (punctuation cache included)
    assert first == summary(run(recognizer.new_stream(online=True, offline=True), wave))


def test_memory_stays_bounded_over_a_long_stream(recognizer, waves):
    wave = np.concatenate([waves["long02_vad_30s_48k.wav"]] * 4)  # two minutes
    stream = recognizer.new_stream(online=True, offline=True)
    sizes = []
    for i in range(0, wave.size, 9600):
        stream.accept(wave[i : i + 9600])
        sizes.append(stream.retained_size())
    assert stream.samples_seen == wave.size
    # the longest fixture segment is ~5 s; with 2 s of history and model state that is well under 10 s of samples
    assert max(sizes) < 16000 * 10
    assert max(sizes[len(sizes) // 2 :]) <= max(sizes[: len(sizes) // 2]) * 1.2


def test_a_stream_needs_a_pass(recognizer):
    with pytest.raises(ValueError):
        recognizer.new_stream(online=False, offline=False)


def test_realtime_punctuation_cache_is_capped():
    model = RealtimePunctuator(PUNC_REALTIME_DIR, max_carried_words=6)
    cache = PunctuationCache()
    rng = np.random.default_rng(0)
    chars = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动"
    for _ in range(30):
        text = "".join(rng.choice(list(chars), size=int(rng.integers(3, 15))))
        model.punctuate(text, cache)
        assert len(cache.words) <= 6
    with pytest.raises(ValueError):
        RealtimePunctuator(PUNC_REALTIME_DIR, max_carried_words=0)
