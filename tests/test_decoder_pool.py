"""The decoder pool runs the most urgent job first, by deadline, and starves none."""
from __future__ import annotations

import asyncio
import threading
import time
from typing import List

import pytest

from funasr_wss.server.decoder_pool import DecoderPool, JobSkipped, Priority


def _blocked(pool: DecoderPool) -> threading.Event:
    """Occupy every thread until the returned event is set."""
    release = threading.Event()
    for _ in range(pool.threads):
        pool.submit(release.wait)
    deadline = time.monotonic() + 5
    while pool.queued and time.monotonic() < deadline:
        time.sleep(0.001)
    return release


def test_the_waiting_user_first_then_live_captions_then_corrections():
    pool = DecoderPool(1)
    ran: List[str] = []
    try:
        release = _blocked(pool)
        futures = [pool.submit(lambda name=name: ran.append(name), priority=p) for name, p in
                   [("correction", Priority.BACKGROUND), ("caption", Priority.ONLINE), ("final", Priority.FINAL),
                    ("caption2", Priority.ONLINE)]]
        release.set()
        for f in futures:
            f.result(5)
    finally:
        pool.shutdown()
    assert ran == ["final", "caption", "caption2", "correction"]


def test_no_job_starves_behind_a_stream_of_urgent_ones():
    """A background job submitted at t runs before any urgent job submitted after t + its slack."""
    slack = {Priority.FINAL: 0.0, Priority.ONLINE: 0.05, Priority.BACKGROUND: 0.2}
    pool = DecoderPool(1, slack=slack)
    order: List[str] = []
    try:
        release = _blocked(pool)
        background_at = time.monotonic()
        background = pool.submit(lambda: order.append("background"), priority=Priority.BACKGROUND)
        submitted = []
        futures = []
        release.set()
        end = background_at + 1.0
        while time.monotonic() < end:  # keep the queue full of urgent 10 ms jobs
            if pool.queued < 3:
                k = len(submitted)
                submitted.append(time.monotonic())
                futures.append(pool.submit(lambda k=k: (time.sleep(0.01), order.append(f"final{k}")),
                                           priority=Priority.FINAL))
            time.sleep(0.001)
        background.result(5)
        for f in futures:
            f.result(5)
    finally:
        pool.shutdown()
    position = order.index("background")
    overtook = [int(name[5:]) for name in order[:position]]
    assert overtook and len(overtook) < len(submitted)  # it waited for some, then ran among the rest
    assert all(submitted[k] <= background_at + slack[Priority.BACKGROUND] for k in overtook)


def test_run_awaits_the_result_and_skips_jobs_whose_client_left():
    async def main():
        pool = DecoderPool(2)
        try:
            assert await pool.run(lambda a, b: a + b, 2, 3, priority=Priority.ONLINE) == 5
            with pytest.raises(JobSkipped):
                await pool.run(lambda: 1, skip_if=lambda: True)
            with pytest.raises(ZeroDivisionError):
                await pool.run(lambda: 1 / 0)
            assert pool.pending == 0
        finally:
            pool.shutdown()

    asyncio.run(main())


def test_a_cancelled_waiter_drops_its_queued_job():
    async def main():
        pool = DecoderPool(1)
        release = _blocked(pool)
        ran = []
        task = asyncio.ensure_future(pool.run(lambda: ran.append(1)))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()
        pool.shutdown()
        return ran, pool.pending

    ran, pending = asyncio.run(main())
    assert ran == [] and pending == 0


def test_shutdown_without_waiting_cancels_what_is_queued():
    pool = DecoderPool(1)
    release = _blocked(pool)
    queued = pool.submit(lambda: "never")
    pool.shutdown(wait=False)
    release.set()
    assert queued.cancelled() and pool.pending <= 1
    with pytest.raises(RuntimeError):
        pool.submit(lambda: None)


def test_spare_offers_a_thread_only_when_one_is_idle_and_nothing_waits():
    pool = DecoderPool(2)
    try:
        assert pool.spare(lambda: 7).result(5) == 7
        release = threading.Event()
        pool.submit(release.wait)
        time.sleep(0.05)
        offered = pool.spare(lambda: 8)  # one thread busy, one idle
        assert offered is not None and offered.result(5) == 8
        pool.submit(release.wait)
        time.sleep(0.05)
        assert pool.spare(lambda: 9) is None  # both busy
        release.set()
    finally:
        pool.shutdown()


# -- one request alone uses the idle thread: half its segments decoded there, the same results


@pytest.fixture(scope="module")
def pipeline():
    from funasr_wss.server.model_loader import load_offline_pipeline
    from tests.harness import fixture_settings

    return load_offline_pipeline(fixture_settings())


@pytest.fixture(scope="module")
def long_wave():
    from funasr_wss.models.audio import load_audio_file
    from tests.paths import AUDIO

    return load_audio_file(AUDIO / "long02_vad_30s_48k.wav")


def _transcript_fields(t):
    return t.text, t.timestamps, t.segments, t.sentences


def test_a_request_alone_decodes_half_its_segments_on_the_spare_thread(pipeline, long_wave):
    from dataclasses import replace

    from funasr_wss.models.paraformer import NO_OPTIONS

    alone = pipeline.transcribe(long_wave)
    assert len(alone.segments) >= 2
    pool = DecoderPool(2)
    threads: List[str] = []

    def spare(call):
        def tracked():
            threads.append(threading.current_thread().name)
            return call()
        return pool.spare(tracked)

    try:
        helped = pool.submit(lambda: pipeline.transcribe(long_wave, options=replace(NO_OPTIONS, spare_thread=spare)))
        got = helped.result(120)
    finally:
        pool.shutdown()
    assert threads and threads[0].startswith("decoder_")  # the other half ran on the pool's other thread
    assert _transcript_fields(got) == _transcript_fields(alone)


def test_a_spare_thread_taken_meanwhile_costs_nothing(pipeline, long_wave):
    """The offered future never starts (another job has the thread): the request decodes it itself."""
    from concurrent.futures import Future
    from dataclasses import replace

    from funasr_wss.models.paraformer import NO_OPTIONS

    offered: List[Future] = []

    def never_started(call):
        offered.append(Future())
        return offered[-1]

    got = pipeline.transcribe(long_wave, options=replace(NO_OPTIONS, spare_thread=never_started))
    assert offered and offered[0].cancelled()
    assert _transcript_fields(got) == _transcript_fields(pipeline.transcribe(long_wave))
