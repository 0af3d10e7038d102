"""FSMN VAD: agreement with FunASR's ``funasr_onnx`` (golden file and live), streaming, config.

The golden file ``tests/golden/vad.json`` comes from ``tests/oracle/oracle_vad.py``.
The live tests import ``funasr_onnx`` (a test dependency) and compare directly,
including a randomised comparison of the end-point state machine alone against
the oracle's ``E2EVadModel`` over many configurations, which reaches branches
the fixture clips never do (segment length cuts, level/SNR gates,
single-utterance mode, odd window sizes).
"""
from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pytest
import yaml

from funasr_wss.models.audio import load_audio_file
from funasr_wss.models.vad import (
    FsmnVadModel,
    SegmentEvent,
    VadConfig,
    _Derived,
    _EndPointer,
    _FrameClassifier,
    events_to_segments,
    frame_decibels,
    offline_blocks,
)
from tests.paths import GOLDEN, VAD_DIR, audio_clips

MULTI_SEGMENT_CLIP = "long02_vad_30s_48k.wav"


# --------------------------------------------------------------------------
# fixtures and helpers
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model() -> FsmnVadModel:
    return FsmnVadModel(VAD_DIR)


@pytest.fixture(scope="module")
def waves() -> Dict[str, np.ndarray]:
    return {clip.name: load_audio_file(clip, 16000) for clip in audio_clips()}


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads((GOLDEN / "vad.json").read_text(encoding="utf-8"))


def stream_events(stream, waveform: np.ndarray, chunks: Sequence[int]) -> List[List[int]]:
    """``[[call_index, beg, end], ...]`` - the same shape as the oracle driver's."""
    out: List[List[int]] = []
    pos = 0
    for k, size in enumerate(chunks):
        for ev in stream.accept(waveform[pos : pos + size], is_final=k == len(chunks) - 1):
            out.append([k, ev.start_ms, ev.end_ms])
        pos += size
    return out


def fixed_chunks(n: int, size: int) -> List[int]:
    return [min(size, n - i) for i in range(0, n, size)] or [0]


def random_chunks(rng: np.random.RandomState, n: int, low: int = 1, high: int = 20000) -> List[int]:
    """Chunk sizes spanning tiny (a few samples) to large, covering exactly ``n`` samples."""
    sizes: List[int] = []
    left = n
    while left > 0:
        scale = rng.choice([10, 400, 800, 3000, high])
        size = int(min(left, max(low, rng.randint(1, scale + 1))))
        sizes.append(size)
        left -= size
    return sizes or [0]


def as_pairs(events: List[List[int]]) -> List[Tuple[int, int]]:
    return events_to_segments([SegmentEvent(b, e) for _, b, e in events])


def composite(waves: Dict[str, np.ndarray], seconds: float = 60.0) -> np.ndarray:
    """Clips separated by silence and faint noise: many starts and ends in one signal."""
    rng = np.random.RandomState(7)
    parts: List[np.ndarray] = []
    total = 0
    names = sorted(waves)
    i = 0
    while total < seconds * 16000:
        gap = rng.randint(1600, 40000)
        parts.append((rng.randn(gap) * rng.choice([0.0, 0.001, 0.005])).astype(np.float32))
        parts.append(waves[names[i % len(names)]])
        total += gap + waves[names[i % len(names)]].size
        i += 1
    return np.concatenate(parts)


# --------------------------------------------------------------------------
# 1. golden file
# --------------------------------------------------------------------------


def test_golden_covers_every_clip(golden: dict) -> None:
    assert sorted(golden) == [c.name for c in audio_clips()]


@pytest.mark.parametrize("clip", [c.name for c in audio_clips()])
def test_offline_matches_golden(model: FsmnVadModel, waves, golden, clip: str) -> None:
    entry = golden[clip]
    assert waves[clip].size == entry["samples"]
    assert [list(s) for s in model.segments(waves[clip])] == entry["offline"]


@pytest.mark.parametrize("chunk", ["800", "9600"])
@pytest.mark.parametrize("clip", [c.name for c in audio_clips()])
def test_streaming_matches_golden(model: FsmnVadModel, waves, golden, clip: str, chunk: str) -> None:
    w = waves[clip]
    events = stream_events(model.new_stream(), w, fixed_chunks(w.size, int(chunk)))
    assert events == golden[clip]["online"][chunk]
    # every segment the oracle closes online is one of its offline segments
    assert [s for s in as_pairs(events) if s[1] >= 0] == [tuple(s) for s in golden[clip]["offline"]]


# --------------------------------------------------------------------------
# 2. live comparison with funasr_onnx
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def oracle():
    pytest.importorskip("funasr_onnx")
    from tests.oracle import oracle_vad

    return oracle_vad


@pytest.fixture(scope="module")
def oracle_models(oracle):
    from funasr_onnx import Fsmn_vad, Fsmn_vad_online

    return Fsmn_vad(str(VAD_DIR), intra_op_num_threads=1), Fsmn_vad_online(str(VAD_DIR), intra_op_num_threads=1)


def test_live_offline_all_clips_and_composite(model, waves, oracle, oracle_models) -> None:
    vad, _ = oracle_models
    for name, w in waves.items():
        assert [list(s) for s in model.segments(w)] == oracle.oracle_offline(vad, w), name
    mix = composite(waves, 60.0)
    expected = oracle.oracle_offline(vad, mix)
    assert len(expected) >= 10
    assert [list(s) for s in model.segments(mix)] == expected


def test_live_streaming_random_chunks(model, waves, oracle, oracle_models) -> None:
    """Events *and the call that reports them* equal the oracle's, for irregular chunking."""
    _, online = oracle_models
    rng = np.random.RandomState(1)
    mix = composite(waves, 25.0)
    for w in (mix, waves[MULTI_SEGMENT_CLIP], waves["zh02_llamacpp_sample.wav"]):
        # the oracle's online path crashes on a call that yields no frame: its first
        # chunk must give >= 3 fbank frames and every later one >= 1 (160 samples)
        chunks = [720, *random_chunks(rng, w.size - 720, low=160)]
        expected = oracle.oracle_stream(online, w, chunks)
        assert stream_events(model.new_stream(), w, chunks) == expected


def test_live_quantized_model(waves, oracle) -> None:
    from funasr_onnx import Fsmn_vad

    ours = FsmnVadModel(VAD_DIR, quantized=True)
    assert ours.model_path.name == "model_quant.onnx"
    theirs = Fsmn_vad(str(VAD_DIR), quantize=True, intra_op_num_threads=1)
    for name in (MULTI_SEGMENT_CLIP, "zh02_llamacpp_sample.wav", "k8_BAC009S0764W0121_8k.wav"):
        assert [list(s) for s in ours.segments(waves[name])] == oracle.oracle_offline(theirs, waves[name]), name


# --------------------------------------------------------------------------
# 2b. the state machine alone against the oracle's E2EVadModel, many configs
# --------------------------------------------------------------------------


def _random_conf(rng: np.random.RandomState) -> dict:
    """A plausible but unusual ``model_conf``; avoids the settings that make the oracle hang.

    (With ``max_end_silence_time < speech_to_sil_time_thres`` and no extension the
    oracle places end points in the future and spins forever.)
    """
    window = int(rng.choice([50, 100, 200, 300]))
    to_speech = int(rng.choice([0, 30, 60, 150, window]))
    to_sil = int(rng.choice([0, 30, 60, 150]))
    conf = {
        "detect_mode": int(rng.choice([0, 1, 1, 1])),
        "window_size_ms": window,
        "sil_to_speech_time_thres": min(to_speech, window),
        "speech_to_sil_time_thres": min(to_sil, window),
        "do_extend": int(rng.choice([0, 1, 1])),
        "lookback_time_start_point": int(rng.choice([0, 100, 200, 500])),
        "lookahead_time_end_point": int(rng.choice([0, 50, 100, 300])),
        "max_single_segment_time": int(rng.choice([300, 1500, 5000, 60000])),
        "max_start_silence_time": int(rng.choice([200, 1000, 3000])),
        "speech_noise_thres": float(rng.choice([0.6, 0.3, 0.85, -0.2])),
        "speech_2_noise_ratio": float(rng.choice([1.0, 1.0, 0.5, 2.0])),
        "decibel_thres": float(rng.choice([-100.0, -100.0, -30.0, 0.0])),
        "snr_thres": float(rng.choice([-100.0, -100.0, 5.0, 15.0])),
        "noise_frame_num_used_for_snr": int(rng.choice([100, 10])),
        "fe_prior_thres": float(rng.choice([1e-4, 1e-4, 1e-4, 1e-4, 2.0])),
    }
    conf["max_end_silence_time"] = int(conf["speech_to_sil_time_thres"] + rng.choice([0, 100, 350, 650, 1200]))
    if rng.rand() < 0.3:
        conf["sil_pdf_ids"] = [0, 2]
        conf["silence_pdf_num"] = 2
    return conf


def _synthetic(rng: np.random.RandomState, frames: int, sil_ids: Sequence[int]) -> Tuple[np.ndarray, np.ndarray]:
    """Network outputs and a waveform with alternating speech/silence runs, flicker and near-threshold values.

    The silence probability is spread over ``sil_ids`` (their sum is what the post-processor reads).
    """
    sil = np.empty(frames)
    amp = np.empty(frames)
    t = 0
    speech = bool(rng.rand() < 0.5)
    while t < frames:
        run = int(rng.geometric(1.0 / rng.choice([3, 15, 60, 200])))
        end = min(frames, t + run)
        base = rng.uniform(0.001, 0.25) if speech else rng.uniform(0.2, 0.99)
        sil[t:end] = base + rng.normal(0, 0.08, end - t)
        amp[t:end] = rng.choice([0.05, 0.2, 0.5]) if speech else rng.choice([0.0, 0.0005, 0.003, 0.02])
        speech = not speech
        t = end
    near = rng.rand(frames) < 0.03  # probabilities right at the default decision boundary
    sil[near] = 0.2 + rng.normal(0, 1e-7, near.sum())
    sil = np.clip(sil, 1e-4, 0.999)
    scores = np.zeros((frames, 4), dtype=np.float32)
    share = rng.dirichlet(np.ones(len(sil_ids)), frames)
    for k, i in enumerate(sil_ids):
        scores[:, i] = sil * share[:, k]
    scores[:, 1] = 1 - sil
    samples = (frames - 1) * 160 + 400
    per_sample = np.repeat(np.concatenate([amp, amp[-1:], amp[-1:]]), 160)[:samples]
    wave = (rng.randn(samples) * per_sample).astype(np.float32)
    return scores, wave


def _random_blocks(rng: np.random.RandomState, frames: int) -> List[Tuple[int, int]]:
    if rng.rand() < 0.3:
        return [(0, frames)]
    out, lo = [], 0
    while lo < frames:
        hi = min(frames, lo + int(rng.choice([1, 2, 5, 17, 100, 400])))
        out.append((lo, hi))
        lo = hi
    return out


class _Timeout(Exception):
    pass


def _oracle_e2e(conf: dict, scores, wave, blocks, online: bool) -> Optional[List[List[int]]]:
    from funasr_onnx.utils.e2e_vad import E2EVadModel

    e2e = E2EVadModel(dict(conf))
    frames = scores.shape[0]
    out: List[List[int]] = []

    def on_alarm(*_):
        raise _Timeout

    guard = hasattr(signal, "SIGALRM")
    if guard:
        old = signal.signal(signal.SIGALRM, on_alarm)
        signal.alarm(5)
    try:
        for k, (lo, hi) in enumerate(blocks):
            part = wave[lo * 160 : (hi - 1) * 160 + 400][None, :]
            segs = e2e(
                scores[None, lo:hi], part, is_final=hi == frames, max_end_sil=conf["max_end_silence_time"], online=online
            )
            for batch in segs:
                out.extend([k, int(b), int(e)] for b, e in batch)
    except _Timeout:
        return None
    finally:
        if guard:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)
    return out


def _ours_e2e(cfg: VadConfig, scores, wave, blocks, online: bool) -> List[List[int]]:
    d = _Derived.of(cfg)
    classifier, machine = _FrameClassifier(d), _EndPointer(d)
    frames = scores.shape[0]
    out: List[List[int]] = []
    for k, (lo, hi) in enumerate(blocks):
        speech, quiet = classifier.classify(scores[lo:hi], frame_decibels(wave[lo * 160 :], hi - lo, 400, 160))
        machine.feed(speech, quiet, final=hi == frames)
        if online:
            out.extend([k, ev.start_ms, ev.end_ms] for ev in machine.take_events())
        else:
            out.extend([k, s.start_ms, s.end_ms] for s in machine.finished)
            machine.finished.clear()
            if hi == frames and machine.open is not None:
                out.append([k, machine.open.start_ms, machine.open.end_ms])
    return out


def test_state_machine_matches_oracle_on_random_configs(oracle) -> None:
    rng = np.random.RandomState(2024)
    base = yaml.safe_load((VAD_DIR / "config.yaml").read_text())["model_conf"]
    compared = 0
    segments_seen = 0
    for trial in range(120):
        conf = {**base, **_random_conf(rng)}
        scores, wave = _synthetic(rng, int(rng.randint(50, 1200)), conf["sil_pdf_ids"])
        blocks = _random_blocks(rng, scores.shape[0])
        cfg = VadConfig.from_config(conf)
        for online in (False, True):
            expected = _oracle_e2e(conf, scores, wave, blocks, online)
            if expected is None:  # pragma: no cover - the oracle looped; nothing to compare
                continue
            got = _ours_e2e(cfg, scores, wave, blocks, online)
            assert got == expected, (trial, online, conf)
            compared += 1
            segments_seen += len(expected)
    assert compared >= 200 and segments_seen > 300


# --------------------------------------------------------------------------
# 3. streaming behaviour
# --------------------------------------------------------------------------


def test_random_chunks_give_offline_segments(model, waves) -> None:
    rng = np.random.RandomState(3)
    for name in (MULTI_SEGMENT_CLIP, "zh02_llamacpp_sample.wav", "zh15_sr_chinese.flac"):
        w = waves[name]
        offline = model.segments(w)
        for _ in range(3):
            events = stream_events(model.new_stream(), w, random_chunks(rng, w.size))
            assert as_pairs(events) == offline, name


def test_long_stream_memory_is_bounded(model, waves) -> None:
    """Ten minutes fed in one-second chunks: retained state never grows, segments stay right.

    The signal repeats a 30.8 s clip cut to a whole number of frames, so each
    repetition must give the clip's own segments shifted by its start (the clip
    ends in silence, so nothing carries over from one repetition to the next).
    """
    base = waves[MULTI_SEGMENT_CLIP]
    base = base[: base.size // 160 * 160]
    reps = 20  # 616 s
    long = np.tile(base, reps)
    stream = model.new_stream()
    sizes = []
    events: List[SegmentEvent] = []
    step = 16000
    for pos in range(0, long.size, step):
        events.extend(stream.accept(long[pos : pos + step], is_final=pos + step >= long.size))
        sizes.append(stream.retained_size())
    # caches (4 x 128 x 19) + less than one chunk of samples/features
    assert max(sizes) < 4 * 128 * 19 + 2 * step
    assert max(sizes[10:]) <= max(sizes[:10]) + 1000
    one = model.segments(base)
    period_ms = base.size // 16
    assert len(one) == 5
    assert events_to_segments(events) == [(s + k * period_ms, e + k * period_ms) for k in range(reps) for s, e in one]


def test_reset_makes_the_next_utterance_identical(model, waves) -> None:
    w = waves["zh02_llamacpp_sample.wav"]
    chunks = fixed_chunks(w.size, 800)
    stream = model.new_stream()
    first = stream_events(stream, w, chunks)  # ends with is_final: resets by itself
    second = stream_events(stream, w, chunks)
    assert first == second and len(first) >= 3
    # an explicit reset mid-utterance also starts from scratch
    stream.accept(waves[MULTI_SEGMENT_CLIP][: 16000 * 12])
    stream.reset()
    assert stream.frames_decided == 0
    assert stream_events(stream, w, chunks) == first


def test_empty_and_very_short_input(model) -> None:
    assert model.segments(np.zeros(0, dtype=np.float32)) == []
    for n in (1, 399, 400, 401, 560, 719, 720, 1000):
        x = (np.random.RandomState(n).randn(n) * 0.3).astype(np.float32)
        assert model.segments(x) == []
        stream = model.new_stream()
        assert stream.accept(x, is_final=True) == []
        stream = model.new_stream()
        for sample in x[:50]:
            assert stream.accept(np.array([sample], dtype=np.float32)) == []
        assert stream.accept(x[50:], is_final=True) == []
    stream = model.new_stream()
    assert stream.accept(np.zeros(0, dtype=np.float32)) == []
    assert stream.accept(np.zeros(0, dtype=np.float32), is_final=True) == []


def test_offline_blocks_follow_the_reference() -> None:
    assert offline_blocks(0) == []
    assert offline_blocks(5) == [(0, 5)]
    assert offline_blocks(6001) == [(0, 6001)]
    assert offline_blocks(6002) == [(0, 6000), (6000, 6002)]
    assert offline_blocks(12001) == [(0, 6000), (6000, 12001)]


def test_decibels_match_the_reference_formula() -> None:
    import math

    x = (np.random.RandomState(5).randn(16000) * 0.2).astype(np.float32)
    n = (x.size - 400) // 160 + 1
    expected = [10 * math.log10(np.square(x[i * 160 : i * 160 + 400]).sum() + 0.000001) for i in range(n)]
    assert frame_decibels(x, n, 400, 160) == expected


# --------------------------------------------------------------------------
# 4. configuration is honoured (and agrees with the oracle reading the same config)
# --------------------------------------------------------------------------


def _model_dir_with(tmp_path: Path, **changes) -> Path:
    out = tmp_path / "vad"
    out.mkdir()
    for name in ("model.onnx", "am.mvn"):
        shutil.copy(VAD_DIR / name, out / name)
    conf = yaml.safe_load((VAD_DIR / "config.yaml").read_text())
    conf["model_conf"].update(changes)
    (out / "config.yaml").write_text(yaml.safe_dump(conf))
    return out


@pytest.mark.parametrize(
    "changes",
    [
        {"max_single_segment_time": 2000},
        {"max_end_silence_time": 300},
        {"max_end_silence_time": 300, "lookback_time_start_point": 50, "lookahead_time_end_point": 0},
        {"detect_mode": 0},
    ],
    ids=["max_single_segment", "max_end_silence", "padding", "single_utterance"],
)
def test_config_is_honoured_like_the_oracle(tmp_path, model, waves, oracle, changes) -> None:
    from funasr_onnx import Fsmn_vad, Fsmn_vad_online

    mdir = _model_dir_with(tmp_path, **changes)
    ours = FsmnVadModel(mdir)
    for key, value in changes.items():
        assert getattr(ours.config, key) == value
    vad = Fsmn_vad(str(mdir), intra_op_num_threads=1)
    online = Fsmn_vad_online(str(mdir), intra_op_num_threads=1)
    signals = {"composite": composite(waves, 20.0)}  # starts with en01: 8.7 s of unbroken speech
    for name, w in signals.items():
        default = model.segments(w)
        expected = oracle.oracle_offline(vad, w)
        got = ours.segments(w)
        assert [list(s) for s in got] == expected, name
        chunks = fixed_chunks(w.size, 800)
        assert stream_events(ours.new_stream(), w, chunks) == oracle.oracle_stream(online, w, chunks), name
        if "max_single_segment_time" in changes:
            assert len(got) > len(default)  # the 8.7 s utterance is cut into <= 2 s pieces
            assert all(e - s <= 2000 + 10 for s, e in got)  # the cut frame itself is included
        else:
            assert got != default
    # the same settings passed directly instead of through config.yaml
    direct = model.config.with_overrides(**changes)
    assert model.segments(waves[MULTI_SEGMENT_CLIP], config=direct) == ours.segments(waves[MULTI_SEGMENT_CLIP])


def test_level_and_snr_gates_like_the_oracle(tmp_path, model, waves, oracle) -> None:
    """``decibel_thres`` / ``snr_thres`` (off by default) change the result, as in the oracle.

    The oracle's online frontend only keeps its per-frame decibels aligned with
    the frames when the first chunk yields fewer than four fbank frames (as the
    2pass server's 800-sample chunks do); with larger chunks it drifts, so there
    the reference is our offline result (which equals the oracle's offline one).
    """
    from funasr_onnx import Fsmn_vad, Fsmn_vad_online

    changes = {"decibel_thres": 0.0, "snr_thres": 10.0}
    mdir = _model_dir_with(tmp_path, **changes)
    ours = FsmnVadModel(mdir)
    w = composite(waves, 25.0)
    expected = oracle.oracle_offline(Fsmn_vad(str(mdir), intra_op_num_threads=1), w)
    got = ours.segments(w)
    assert [list(s) for s in got] == expected
    assert got != model.segments(w)
    chunks = fixed_chunks(w.size, 800)
    online = Fsmn_vad_online(str(mdir), intra_op_num_threads=1)
    assert stream_events(ours.new_stream(), w, chunks) == oracle.oracle_stream(online, w, chunks)
    assert as_pairs(stream_events(ours.new_stream(), w, fixed_chunks(w.size, 9600))) == got


def test_max_end_silence_changes_segmentation(model, waves) -> None:
    w = waves[MULTI_SEGMENT_CLIP]
    short = model.segments(w, config=model.config.with_overrides(max_end_silence_time=200))
    long = model.segments(w, config=model.config.with_overrides(max_end_silence_time=3000))
    default = model.segments(w)
    assert len(short) > len(default) > len(long)


def test_config_from_yaml_and_validation() -> None:
    conf = yaml.safe_load((VAD_DIR / "config.yaml").read_text())["model_conf"]
    cfg = VadConfig.from_config(conf)
    assert cfg.sil_pdf_ids == (0,) and cfg.max_end_silence_time == 800 and cfg.frame_shift_samples == 160
    assert VadConfig.from_config({}) == VadConfig()
    with pytest.raises(ValueError):
        VadConfig.from_config({"sil_pdf_ids": []})
    with pytest.raises(ValueError):
        VadConfig.from_config({"window_size_ms": 5})


def test_cache_shapes_come_from_the_model(model) -> None:
    caches = model.initial_caches()
    names = [i.name for i in model.session.get_inputs()[1:]]
    assert len(caches) == len(names) == 4
    for c, inp in zip(caches, model.session.get_inputs()[1:]):
        assert list(c.shape) == list(inp.shape)


def test_one_model_serves_concurrent_streams(model, waves) -> None:
    """All per-stream state lives in the stream: interleaved use from threads changes nothing."""
    from concurrent.futures import ThreadPoolExecutor

    names = [MULTI_SEGMENT_CLIP, "zh02_llamacpp_sample.wav", "en01_libri_1995-1837-0001.wav", "k8_BAC009S0764W0121_8k.wav"]

    def run(name: str) -> List[List[int]]:
        w = waves[name]
        return stream_events(model.new_stream(), w, fixed_chunks(w.size, 800))

    sequential = [run(n) for n in names]
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(run, names)) == sequential
        assert list(pool.map(lambda n: model.segments(waves[n]), names)) == [model.segments(waves[n]) for n in names]
