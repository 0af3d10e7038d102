"""Container decoding is an untrusted-input boundary: regression tests for what client uploads did.

Each attack below once worked against ``models.audio.decode_container``: an
ffconcat body read files from the server's working directory, an SDP body bound
UDP ports and blocked for 20 s, a WAV header claiming 1 Hz made a 12 KB upload
allocate 651 MiB, and a float WAV with NaN samples crashed the models.  The
last tests check that ordinary audio files decode to exactly the samples they
decoded to before the hardening (a plain PyAV decode, kept here as the reference).
"""
from __future__ import annotations

import io
import json
import socket
import struct
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import av
import numpy as np
import pytest

import funasr_wss.models.audio as audio
from funasr_wss.models.audio import (
    AudioDecodeCancelled,
    AudioDecodeError,
    AudioDecodeTimeout,
    AudioTooLongError,
    UnsupportedFormatError,
    decode_container,
    load_audio_file,
)
from tests.helpers import encode_audio
from tests.paths import AUDIO

# ---------------------------------------------------------------------- helpers


def wav_bytes(samples: np.ndarray, rate: int, channels: int = 1, *, claimed_rate: int = 0) -> bytes:
    """A WAV file by hand, so its header can claim anything: int16 → PCM, float32/64 → IEEE float."""
    samples = np.ascontiguousarray(samples)
    fmt_tag = 3 if samples.dtype.kind == "f" else 1
    bits = samples.dtype.itemsize * 8
    rate = claimed_rate or rate
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, rate * block, block, bits)
    data = samples.astype(samples.dtype.newbyteorder("<"), copy=False).tobytes()
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def tone(seconds: float, rate: int, channels: int = 1, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wave_ = (0.3 * np.sin(2 * np.pi * freq * t) + 0.1 * np.sin(2 * np.pi * 1234.5 * t)).astype(np.float32)
    return np.tile(wave_, (channels, 1))


def encode(fmt: str, codec: str, rate: int = 16000, layout: str = "mono", seconds: float = 2.0, bit_rate: int = 0) -> bytes:
    """An audio file made with PyAV's encoders, held in memory."""
    return encode_audio(tone(seconds, rate, 2 if layout == "stereo" else 1), fmt, codec, rate, layout=layout,
                        bit_rate=bit_rate)


def one_packet_mkv(rate: int, samples: int) -> bytes:
    """Matroska holding one PCM packet of ``samples`` samples: it decodes to one frame that big."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as out:
        stream = out.add_stream("pcm_s16le", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, samples), np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts = rate, 0
        for packet in list(stream.encode(frame)) + list(stream.encode(None)):
            out.mux(packet)
    return buf.getvalue()


def reference_decode(data: bytes, target_rate: int) -> np.ndarray:
    """decode_container as it was before the hardening: plain PyAV, no options, no checks."""
    with av.open(io.BytesIO(data)) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=target_rate)
        pieces = []
        for frame in container.decode(container.streams.audio[0]):
            pieces += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
        pieces += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(pieces).astype(np.float32, copy=False)


def udp_ports_bound() -> set:
    """Local ports of every UDP socket in this network namespace (Linux)."""
    ports = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            ports.add(int(line.split()[1].rsplit(":", 1)[1], 16))
    return ports


def free_udp_port_pair() -> int:
    """An even UDP port with the next one free too (RTP takes the port, RTCP the next)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1] & ~1
        try:
            for p in (port, port + 1):
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.bind(("0.0.0.0", p))
            return port
        except OSError:
            continue
    pytest.skip("no free UDP port pair")


class TcpListener:
    """A local TCP port that records whether anything connected to it."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]

    def connected(self) -> bool:
        try:
            conn, _ = self.sock.accept()
        except BlockingIOError:
            return False
        conn.close()
        return True

    def close(self):
        self.sock.close()


SDP = "v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio {port} RTP/AVP 0\n"


# ---------------------------------------------------------------------- files and sockets


def test_a_concat_playlist_cannot_read_files_from_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    secret = wav_bytes((tone(1.0, 16000)[0] * 32767).astype(np.int16), 16000)
    (tmp_path / "private_recording.wav").write_bytes(secret)
    assert reference_decode(secret, 16000).size == 16000  # a file ffmpeg would happily decode

    errors = {}
    for name in ("private_recording.wav", "no_such_recording.wav"):
        with pytest.raises(AudioDecodeError) as caught:
            decode_container(f"ffconcat version 1.0\nfile {name}\n".encode(), 16000)
        errors[name] = caught.value
    existing, missing = errors["private_recording.wav"], errors["no_such_recording.wav"]
    assert isinstance(existing, UnsupportedFormatError)
    assert str(existing) == str(missing)  # nothing tells whether the path exists
    assert "unsupported container format" in str(existing)
    assert "private_recording" not in str(existing) and "RIFF" not in str(existing)


def test_an_sdp_description_binds_no_port_and_fails_at_once():
    if not Path("/proc/net/udp").exists():
        pytest.skip("needs /proc/net/udp")
    port = free_udp_port_pair()
    body = SDP.format(port=port).encode()
    outcome = {}

    def run():
        try:
            decode_container(body, 16000)
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcome["error"] = exc

    worker = threading.Thread(target=run, daemon=True)  # daemon: if this ever blocks, the test still ends
    started = time.monotonic()
    worker.start()
    seen = set()
    while worker.is_alive() and time.monotonic() - started < 2.0:
        seen |= udp_ports_bound() & {port, port + 1}
        time.sleep(0.001)
    elapsed = time.monotonic() - started
    seen |= udp_ports_bound() & {port, port + 1}
    assert not worker.is_alive(), "decoding an SDP body blocked"
    assert elapsed < 2.0
    assert not seen, f"UDP port(s) {sorted(seen)} were bound"
    assert isinstance(outcome.get("error"), UnsupportedFormatError)


def test_playlists_and_images_are_refused_without_touching_the_network(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "private_recording.wav").write_bytes(wav_bytes(np.zeros(1600, np.int16), 16000))
    listener = TcpListener()
    url = f"http://127.0.0.1:{listener.port}/a.wav"
    png = io.BytesIO()
    with av.open(png, "w", format="image2pipe") as out:
        stream = out.add_stream("png", rate=1)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "rgb24"
        picture = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
        for packet in list(stream.encode(picture)) + list(stream.encode(None)):
            out.mux(packet)
    bodies = {
        "hls": f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{url}\n#EXT-X-ENDLIST\n".encode(),
        "hls master": f"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n{url}\n".encode(),
        "m3u of a local file": b"#EXTM3U\n#EXTINF:1,\nprivate_recording.wav\n",
        "ffconcat of a url": f"ffconcat version 1.0\nfile {url}\n".encode(),
        "png": png.getvalue(),
        "text": b"this is not audio",
    }
    try:
        for name, body in bodies.items():
            with pytest.raises(AudioDecodeError, match="^cannot decode audio"):
                decode_container(body, 16000)
            assert not listener.connected(), name
    finally:
        listener.close()
    with pytest.raises(UnsupportedFormatError):
        decode_container(bodies["png"], 16000)


def test_the_format_whitelist_alone_refuses_playlists_before_they_are_read(tmp_path, monkeypatch):
    """The first wall: with every protocol allowed, a playlist demuxer is still never started."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "private_recording.wav").write_bytes(wav_bytes(np.zeros(1600, np.int16), 16000))
    options = {k: v for k, v in audio._container_options().items() if k != "protocol_whitelist"}
    port = free_udp_port_pair()
    for body in (b"ffconcat version 1.0\nfile private_recording.wav\n", SDP.format(port=port).encode()):
        started = time.monotonic()
        with pytest.raises(av.error.ArgumentError):  # EINVAL: "Format not on whitelist"
            with av.open(io.BytesIO(body), container_options=options, timeout=2):
                pass
        assert time.monotonic() - started < 1.0


def test_no_protocol_is_allowed_even_when_a_playlist_demuxer_runs(tmp_path, monkeypatch):
    """The second wall: with the format whitelist out of the way, nested opens still fail."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "private_recording.wav").write_bytes(wav_bytes(np.zeros(1600, np.int16), 16000))
    options = {k: v for k, v in audio._container_options().items() if k != "format_whitelist"}
    listener = TcpListener()
    try:
        playlists = [
            ("concat", b"ffconcat version 1.0\nfile private_recording.wav\n"),
            ("hls", f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nhttp://127.0.0.1:{listener.port}/a.ts\n".encode()),
        ]
        for fmt, body in playlists:
            with pytest.raises(av.error.FFmpegError):
                with av.open(io.BytesIO(body), format=fmt, container_options=options, timeout=2) as container:
                    for _ in container.decode(container.streams.audio[0]):
                        pass
            assert not listener.connected(), fmt
    finally:
        listener.close()


# ---------------------------------------------------------------------- header claims and memory


_SUBPROCESS = r"""
import json, resource, struct, sys, time
import numpy as np
from funasr_wss.models.audio import AudioDecodeError, decode_container
sys.path.insert(0, sys.argv[1])
from test_audio_hardening import wav_bytes
cases = {
    "12 KB": wav_bytes(np.zeros(6000, np.int16), 16000, claimed_rate=1),
    "344 B": wav_bytes(np.zeros(150, np.int16), 16000, claimed_rate=1),
}
decode_container(wav_bytes(np.zeros(16000, np.int16), 16000), 16000)  # warm up PyAV
out = {}
for name, data in cases.items():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    try:
        decode_container(data, 16000, 3 * 3600)  # the server's default cap: 3 h
        error = None
    except AudioDecodeError as exc:
        error = str(exc)
    out[name] = {"bytes": len(data), "error": error, "seconds": time.monotonic() - started,
                 "grew_mib": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024}
print(json.dumps(out))
"""


def test_a_header_claiming_1_hz_fails_fast_without_a_big_allocation():
    # ru_maxrss is the process's peak, so it is measured in a fresh process
    run = subprocess.run(
        [sys.executable, "-c", _SUBPROCESS, str(Path(__file__).resolve().parent)],
        capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[1],
    )
    assert run.returncode == 0, run.stderr
    results = json.loads(run.stdout.strip().splitlines()[-1])
    assert results["12 KB"]["bytes"] > 12000 and results["344 B"]["bytes"] == 344
    for name, result in results.items():
        assert result["error"] and "sample rate 1 Hz is not supported" in result["error"], name
        assert result["seconds"] < 1.0, name
        assert result["grew_mib"] < 100, name


@pytest.mark.parametrize("rate, ok", [(999, False), (1000, True), (384000, True), (384001, False), (2**31 - 1, False)])
def test_the_sample_rate_must_be_plausible(rate, ok):
    data = wav_bytes(np.zeros(2000, np.int16), 16000, claimed_rate=rate)
    if ok:
        assert decode_container(data, 16000).size == pytest.approx(2000 * 16000 / rate, abs=2)
    else:
        with pytest.raises(AudioDecodeError, match=f"sample rate {rate} Hz is not supported"):
            decode_container(data, 16000)


def test_too_many_channels_are_refused():
    assert decode_container(wav_bytes(np.zeros(1600 * 8, np.int16), 16000, channels=8), 16000).size == 1600
    with pytest.raises(AudioDecodeError, match="65 channels is not supported"):
        decode_container(wav_bytes(np.zeros(1600 * 65, np.int16), 16000, channels=65), 16000)


def test_one_huge_frame_is_refused_before_it_is_resampled(monkeypatch):
    """1 M samples at 1 kHz in one packet: 16 M samples at 16 kHz; the cap must act before the resampler."""
    data = one_packet_mkv(1000, 1_000_000)
    handed = []
    real = av.AudioResampler

    class Spy:
        def __init__(self, *args, **kwargs):
            self.inner = real(*args, **kwargs)

        def resample(self, frame):
            handed.append(None if frame is None else frame.samples)
            return self.inner.resample(frame)

    monkeypatch.setattr(audio.av, "AudioResampler", Spy)
    with pytest.raises(AudioTooLongError, match="longer than 60 s"):
        decode_container(data, 16000, max_seconds=60)
    assert handed == []
    monkeypatch.undo()
    assert decode_container(data, 16000, max_seconds=1001).size == pytest.approx(16_000_000, abs=64)


def test_the_length_cap_is_unchanged_at_the_boundary():
    data = wav_bytes((tone(2.0, 48000)[0] * 20000).astype(np.int16), 48000)
    assert decode_container(data, 16000, max_seconds=2.0).size == 32000
    with pytest.raises(AudioTooLongError):
        decode_container(data, 16000, max_seconds=1.99)


# ---------------------------------------------------------------------- samples the models cannot take


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rate", [16000, 8000, 44100])
def test_nan_and_infinite_samples_are_refused(bad, dtype, rate):
    samples = tone(1.0, rate)[0].astype(dtype)
    samples[rate // 2] = bad
    with pytest.raises(AudioDecodeError, match="the audio contains NaN or infinite samples"):
        decode_container(wav_bytes(samples, rate), 16000)
    samples[rate // 2] = 0.5
    assert np.isfinite(decode_container(wav_bytes(samples, rate), 16000)).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_samples_that_would_overflow_the_filterbank_are_refused(dtype):
    """A float WAV with a sample of 1e30 (finite) made the frontend compute NaN energies: an internal error."""
    samples = tone(1.0, 16000)[0].astype(dtype)
    samples[8000] = 1e30
    with pytest.raises(AudioDecodeError, match="magnitude above"):
        decode_container(wav_bytes(samples, 16000), 16000)
    samples[8000] = 0.0
    scaled = samples * 32767  # int16-scaled floats, as some tools write them: accepted as before
    assert decode_container(wav_bytes(scaled, 16000), 16000).max() > 1000


# ---------------------------------------------------------------------- time and cancellation


def _long_flac() -> bytes:
    return encode("flac", "flac", 16000, seconds=120.0)


@pytest.fixture(scope="module")
def long_flac() -> bytes:
    return _long_flac()


def test_decoding_stops_after_max_decode_seconds(long_flac, monkeypatch):
    clock = {"now": 0.0}

    def monotonic():  # every look at the clock costs a second
        clock["now"] += 1.0
        return clock["now"]

    monkeypatch.setattr(audio, "time", types.SimpleNamespace(monotonic=monotonic))
    with pytest.raises(AudioDecodeTimeout, match="decoding took longer than 10 s") as caught:
        decode_container(long_flac, 16000, max_decode_seconds=10)
    assert isinstance(caught.value, AudioDecodeError)
    assert 10 <= clock["now"] <= 13  # stopped at the first check past the limit
    monkeypatch.undo()
    assert decode_container(long_flac, 16000, max_decode_seconds=None).size == 120 * 16000


def test_a_tiny_wall_time_limit_stops_a_real_decode_early(long_flac):
    started = time.monotonic()
    decode_container(long_flac, 16000)
    whole = time.monotonic() - started
    started = time.monotonic()
    with pytest.raises(AudioDecodeTimeout):
        decode_container(long_flac, 16000, max_decode_seconds=whole / 20)
    assert time.monotonic() - started < whole * 0.6


def test_a_cancelled_decode_stops_between_packets(long_flac):
    asked = []

    def cancelled():
        asked.append(1)
        return len(asked) >= 5

    with pytest.raises(AudioDecodeCancelled) as caught:
        decode_container(long_flac, 16000, cancelled=cancelled)
    assert isinstance(caught.value, AudioDecodeError) and len(asked) == 5

    gone = threading.Event()
    gone.set()
    with pytest.raises(AudioDecodeCancelled):
        decode_container(long_flac, 16000, cancelled=gone)
    assert decode_container(long_flac, 16000, cancelled=threading.Event()).size == 120 * 16000
    assert decode_container(long_flac, 16000, cancelled=lambda: False).size == 120 * 16000


# ---------------------------------------------------------------------- good files, unchanged


GOOD = {
    "wav s16 16k": lambda: encode("wav", "pcm_s16le"),
    "wav f32 stereo 44.1k": lambda: encode("wav", "pcm_f32le", 44100, "stereo"),
    "mp3 22.05k": lambda: encode("mp3", "libmp3lame", 22050),
    "flac stereo 48k": lambda: encode("flac", "flac", 48000, "stereo"),
    "ogg opus": lambda: encode("ogg", "libopus", 48000),
    "m4a aac": lambda: encode("ipod", "aac", 44100),
    "webm opus stereo": lambda: encode("webm", "libopus", 48000, "stereo"),
    "mkv flac 8k": lambda: encode("matroska", "flac", 8000),
    "aiff": lambda: encode("aiff", "pcm_s16be", 11025),
    "caf alac": lambda: encode("caf", "alac", 16000),
    "w64 s24": lambda: encode("w64", "pcm_s24le", 32000),
    "au": lambda: encode("au", "pcm_s16be", 8000),
    "adts aac": lambda: encode("adts", "aac", 16000),
    "mp4 aac 48k": lambda: encode("mp4", "aac", 48000),
    "ogg flac": lambda: encode("ogg", "flac", 16000),
    "wma": lambda: encode("asf", "wmav2", 16000, bit_rate=32000),
    "amr nb": lambda: encode("amr", "libopencore_amrnb", 8000),
    "fixture wav": lambda: (AUDIO / "zh01_asr_example_zh.wav").read_bytes(),
    "fixture wav 48k": lambda: (AUDIO / "long02_vad_30s_48k.wav").read_bytes(),
    "fixture mp3": lambda: (AUDIO / "zh14_sensevoice_zh.mp3").read_bytes(),
    "fixture flac": lambda: (AUDIO / "zh15_sr_chinese.flac").read_bytes(),
}


@pytest.mark.parametrize("name", list(GOOD))
@pytest.mark.parametrize("target", [16000, 8000])
def test_good_files_decode_exactly_as_before(name, target):
    if name == "amr nb" and "libopencore_amrnb" not in av.codecs_available:
        pytest.skip("this PyAV build has no AMR encoder")
    data = GOOD[name]()
    got = decode_container(data, target, max_seconds=3 * 3600)
    want = reference_decode(data, target)
    assert got.dtype == np.float32 and got.size > 0.5 * target
    assert np.array_equal(got, want)


def test_a_video_track_next_to_the_audio_is_ignored():
    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as out:
        sound = out.add_stream("flac", rate=16000, layout="mono")
        picture = out.add_stream("mjpeg", rate=1)
        picture.width, picture.height, picture.pix_fmt = 64, 64, "yuvj420p"
        image = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24").reformat(format="yuvj420p")
        image.pts = 0
        for packet in list(picture.encode(image)) + list(picture.encode(None)):
            out.mux(packet)
        frame = av.AudioFrame.from_ndarray(tone(1.0, 16000), format="flt", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        for packet in list(sound.encode(frame)) + list(sound.encode(None)):
            out.mux(packet)
    data = buf.getvalue()
    assert np.array_equal(decode_container(data, 16000), reference_decode(data, 16000))
    # probing decodes a video frame to learn its pixel format, unless only audio decoders may run
    with av.open(io.BytesIO(data)) as container:
        assert container.streams.video[0].codec_context.pix_fmt == "yuvj420p"
    with av.open(io.BytesIO(data), container_options=audio._container_options()) as container:
        assert container.streams.video[0].codec_context.pix_fmt is None


def test_local_files_keep_the_format_checks_but_no_time_limit(tmp_path, monkeypatch):
    playlist = tmp_path / "list.wav"
    playlist.write_bytes(b"ffconcat version 1.0\nfile other.wav\n")
    with pytest.raises(UnsupportedFormatError):
        load_audio_file(playlist)
    seen = {}
    real = audio.decode_container

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(audio, "decode_container", spy)
    assert load_audio_file(AUDIO / "zh15_sr_chinese.flac").size == 15303
    assert seen["max_decode_seconds"] is None


def test_empty_bytes_are_no_audio():
    assert decode_container(b"", 16000).size == 0
