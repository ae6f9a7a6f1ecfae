"""Pipeline: real audio, real features, real LiteRT models, one worker thread."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
import itertools
import logging
from pathlib import Path
import threading
import time

import numpy as np
import pytest

from custom_components.cry_detector.engine.backends import Backend, load_model
from custom_components.cry_detector.engine.card import ModelCard
from custom_components.cry_detector.engine.errors import ModelError, SourceError
from custom_components.cry_detector.engine.features import (
    dbfs,
    log_mel,
    normalize_patch,
    patches,
)
from custom_components.cry_detector.engine.pipeline import (
    WORKER_THREAD_NAME,
    Pipeline,
    WindowResult,
)
from custom_components.cry_detector.engine.sources import (
    AudioChunk,
    AudioSource,
    FileSource,
)

from .audio import cry_bout, room_tone, scene, to_int16, write_audio

MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "models"
RATE = 16000
PATCH_SAMPLES = (
    99 * 160 + 400
)  # 16240: the audio one window's model input is computed from
HOP_SAMPLES = 50 * 160  # 8000: the newest hop a window represents


@pytest.fixture(scope="module")
def tiny() -> Iterator[tuple[ModelCard, Backend]]:
    """The untrained tiny DS-CNN fixture on the best backend."""
    card, backend = load_model(MODELS / "tiny_dscnn.tflite")
    yield card, backend
    backend.close()


@pytest.fixture(scope="module")
def energy() -> Iterator[tuple[ModelCard, Backend]]:
    """The hand-wired cry-band energy model (tests/fixtures/make_energy_model.py)."""
    card, backend = load_model(MODELS / "energy_cry.tflite")
    yield card, backend
    backend.close()


def worker_threads() -> list[threading.Thread]:
    """Pipeline worker threads still alive."""
    return [t for t in threading.enumerate() if t.name == WORKER_THREAD_NAME]


def expected_probability(
    backend: Backend, card: ModelCard, samples: np.ndarray, end_index: int
) -> float:
    """What the model says about the patch that ends at end_index (computed in one batch)."""
    patch = normalize_patch(
        log_mel(samples[end_index - PATCH_SAMPLES : end_index], card.features),
        card.features,
    )
    return float(backend.predict(patch)[card.positive_index])


class PacedSource(AudioSource):
    """Wraps a FileSource: sleeps `delay` real seconds per chunk and records when each read returned."""

    def __init__(
        self, inner: FileSource, delay: float, limit: int | None = None
    ) -> None:
        """Wrap inner."""
        self.inner, self.delay, self.limit = inner, delay, limit
        self.sample_rate, self.description = (
            inner.sample_rate,
            "paced " + inner.description,
        )
        self.read_times: list[float] = []
        self.closed = False

    async def open(self) -> None:
        """Open the file."""
        await self.inner.open()

    async def read(self) -> AudioChunk | None:
        """Next chunk after the delay."""
        await asyncio.sleep(self.delay)
        if self.limit is not None and len(self.read_times) >= self.limit:
            return None
        chunk = await self.inner.read()
        self.read_times.append(time.monotonic())
        return chunk

    async def close(self) -> None:
        """Close the file."""
        self.closed = True
        await self.inner.close()


class ListSource(AudioSource):
    """Replays prepared chunks, optionally raising an error after them."""

    def __init__(
        self, chunks: list[AudioChunk], error: Exception | None = None
    ) -> None:
        """Hold the chunks."""
        self.chunks, self.error = list(chunks), error
        self.sample_rate, self.description = RATE, "list"

    async def open(self) -> None:
        """Nothing to open."""

    async def read(self) -> AudioChunk | None:
        """Next chunk, then the error (if any), then None."""
        await asyncio.sleep(0)
        if self.chunks:
            return self.chunks.pop(0)
        if self.error is not None:
            raise self.error
        return None

    async def close(self) -> None:
        """Nothing to close."""


class SlowBackend:
    """A real backend that takes `seconds` per prediction (a slow CPU)."""

    def __init__(self, inner: Backend, seconds: float) -> None:
        """Wrap inner."""
        self.inner, self.seconds = inner, seconds
        self.name, self.input_shape, self.output_shape = (
            "slow",
            inner.input_shape,
            inner.output_shape,
        )

    def predict(self, patch: np.ndarray) -> np.ndarray:
        """Sleep, then predict."""
        time.sleep(self.seconds)
        return self.inner.predict(patch)

    def close(self) -> None:
        """Nothing to release (the inner backend belongs to the fixture)."""


class FailingBackend(SlowBackend):
    """A real backend that breaks after `good` predictions."""

    def __init__(self, inner: Backend, good: int) -> None:
        """Wrap inner."""
        super().__init__(inner, 0.0)
        self.calls = itertools.count()
        self.good = good

    def predict(self, patch: np.ndarray) -> np.ndarray:
        """Predict, until it breaks."""
        if next(self.calls) >= self.good:
            raise RuntimeError("tensor exploded")
        return self.inner.predict(patch)


def chunked(samples: np.ndarray, start: float, size: int = 1600) -> list[AudioChunk]:
    """Cut samples into stamped chunks."""
    return [
        AudioChunk(samples[i : i + size], start + i / RATE)
        for i in range(0, samples.size, size)
    ]


async def test_windows_match_the_batch_computation(
    tmp_path: Path, tiny: tuple[ModelCard, Backend]
) -> None:
    card, backend = tiny
    samples = to_int16(scene(12.3, cries=[(4.0, 9.0)], seed=5))
    path = write_audio(tmp_path / "scene.wav", samples, RATE)
    now = [5000.0]

    async def quick_sleep(
        seconds: float,
    ) -> None:  # real time at 50x: a live source, not a scan
        now[0] += seconds
        await asyncio.sleep(seconds / 50)

    results: list[WindowResult] = []
    async with FileSource(
        path, realtime=True, clock=lambda: now[0], sleep=quick_sleep
    ) as source:
        pipeline = Pipeline(
            source, card, backend, card.tracker_config(), results.append
        )
        await pipeline.run()

    windows = [
        r for r in results if r.end > r.start
    ]  # (a last zero-length one may carry a flush)
    expected = patches(samples, card.features)
    assert (
        len(windows)
        == len(expected)
        == (samples.size - PATCH_SAMPLES) // HOP_SAMPLES + 1
    )
    reference = [
        float(backend.predict(patch)[card.positive_index]) for patch in expected
    ]
    assert [r.probability for r in windows] == pytest.approx(reference, abs=1e-6)
    for k, result in enumerate(windows):
        end_index = PATCH_SAMPLES + k * HOP_SAMPLES
        assert result.end == pytest.approx(5000.0 + end_index / RATE, abs=1e-9)
        assert result.end - result.start == pytest.approx(0.5)
        assert result.level_dbfs == pytest.approx(
            dbfs(samples[end_index - HOP_SAMPLES : end_index])
        )
        assert result.update.probability == pytest.approx(result.probability)
    stats = pipeline.stats
    assert (stats.backend, stats.windows, stats.overruns) == (
        backend.name,
        len(windows),
        0,
    )
    assert stats.audio_seconds == pytest.approx(samples.size / RATE)
    assert 0 < stats.real_time_factor < 1
    assert 0 < stats.inference_ms_mean <= stats.inference_ms_p95
    assert not worker_threads()


async def test_slow_backend_counts_overruns_and_never_stalls_the_reader(
    tmp_path: Path, tiny: tuple[ModelCard, Backend]
) -> None:
    card, backend = tiny
    samples = to_int16(scene(8.0, cries=[(2.0, 6.0)], seed=9))
    path = write_audio(tmp_path / "scene.wav", samples, RATE)
    # 0.3 s per 0.5 s window of audio that arrives at 10x real time
    slow = SlowBackend(backend, seconds=0.3)
    results: list[WindowResult] = []
    source = PacedSource(FileSource(path, start_time=0.0), delay=0.01)
    async with source:
        pipeline = Pipeline(
            source, card, slow, card.tracker_config(), results.append, queue_seconds=1.0
        )
        await pipeline.run()

    assert len(source.read_times) == 81  # 80 chunks and the end
    stats = pipeline.stats
    # The reader never waited for a prediction: all 80 chunks were read while the worker, able
    # to process only a fraction of them, lagged behind, so the full queue dropped old audio.
    # (Wall-clock gaps of the reader are measured in benchmarks/soak.py, not asserted here.)
    assert stats.overruns > 10
    windows = [r for r in results if r.end > r.start]
    assert (
        0
        < stats.windows
        == len(windows)
        < (samples.size - PATCH_SAMPLES) // HOP_SAMPLES + 1
    )
    assert stats.audio_seconds < samples.size / RATE - stats.overruns * 0.1 + 1e-6
    for result in windows:  # after every gap the times still point at the right audio
        end_index = round(result.end * RATE)
        assert result.probability == pytest.approx(
            expected_probability(backend, card, samples, end_index), abs=1e-6
        )
        assert result.level_dbfs == pytest.approx(
            dbfs(samples[end_index - HOP_SAMPLES : end_index])
        )


async def test_offline_sources_wait_instead_of_dropping(
    tmp_path: Path, tiny: tuple[ModelCard, Backend]
) -> None:
    card, backend = tiny
    samples = to_int16(scene(20.0, seed=4))
    path = write_audio(tmp_path / "long.wav", samples, RATE)
    results: list[WindowResult] = []
    async with FileSource(path) as source:  # fast: not live
        assert not source.live
        pipeline = Pipeline(
            source,
            card,
            SlowBackend(backend, 0.005),
            card.tracker_config(),
            results.append,
            queue_seconds=1.0,
        )
        await pipeline.run()
    windows = [r for r in results if r.end > r.start]
    assert pipeline.stats.overruns == 0
    assert len(windows) == (samples.size - PATCH_SAMPLES) // HOP_SAMPLES + 1


async def test_gap_in_chunk_stamps_restarts_the_features(
    tiny: tuple[ModelCard, Backend],
) -> None:
    card, backend = tiny
    first, second = (
        to_int16(scene(3.0, seed=1)),
        to_int16(scene(2.5, cries=[(0.0, 2.5)], seed=2)),
    )
    results: list[WindowResult] = []
    source = ListSource(chunked(first, 0.0) + chunked(second, 100.0, size=1000))
    pipeline = Pipeline(
        source, card, backend, card.tracker_config(), results.append, backpressure=True
    )
    await pipeline.run()
    ends = [r.end for r in results if r.end > r.start]
    assert ends == pytest.approx(
        [1.015, 1.515, 2.015, 2.515, 101.015, 101.515, 102.015]
    )
    after_gap = [r.probability for r in results[4:7]]
    reference = [
        float(backend.predict(p)[card.positive_index])
        for p in patches(second, card.features)
    ]
    assert after_gap == pytest.approx(reference, abs=1e-6)
    assert pipeline.stats.overruns == 0


async def test_cancellation_joins_the_worker_and_leaves_the_source_open(
    tmp_path: Path, tiny: tuple[ModelCard, Backend]
) -> None:
    card, backend = tiny
    path = write_audio(tmp_path / "room.wav", room_tone(3.0), RATE)
    results: list[WindowResult] = []
    got_three = asyncio.Event()

    def on_result(result: WindowResult) -> None:
        results.append(result)
        if len(results) == 3:
            got_three.set()

    source = PacedSource(FileSource(path, loop=True), delay=0.005)
    async with source:
        pipeline = Pipeline(
            source, card, SlowBackend(backend, 0.02), card.tracker_config(), on_result
        )
        task = asyncio.create_task(pipeline.run())
        await asyncio.wait_for(got_three.wait(), 10)
        assert len(worker_threads()) == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not worker_threads()
        assert not source.closed
        assert await source.read() is not None  # still usable: the caller owns it
    count = len(results)
    await asyncio.sleep(0.05)
    assert len(results) == count  # nothing is delivered after run() has ended


async def test_backend_failure_is_logged_once_and_raised_as_model_error(
    tmp_path: Path, tiny: tuple[ModelCard, Backend], caplog: pytest.LogCaptureFixture
) -> None:
    card, backend = tiny
    path = write_audio(tmp_path / "room.wav", room_tone(3.0), RATE)
    results: list[WindowResult] = []
    source = PacedSource(FileSource(path, loop=True), delay=0.002)  # endless
    async with source:
        pipeline = Pipeline(
            source,
            card,
            FailingBackend(backend, good=2),
            card.tracker_config(),
            results.append,
        )
        with pytest.raises(ModelError, match="tensor exploded") as caught:
            await asyncio.wait_for(pipeline.run(), 10)
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert len(results) == 2
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "tensor exploded" in errors[0].getMessage()
    assert not worker_threads()


async def test_source_error_propagates_after_stopping_the_worker(
    tiny: tuple[ModelCard, Backend],
) -> None:
    card, backend = tiny
    source = ListSource(
        chunked(to_int16(room_tone(2.0)), 0.0),
        error=SourceError("mic gone", reason="device_lost"),
    )
    pipeline = Pipeline(source, card, backend, card.tracker_config(), lambda _: None)
    with pytest.raises(SourceError) as caught:
        await pipeline.run()
    assert caught.value.reason == "device_lost"
    assert not worker_threads()
    assert (
        pipeline.stats.windows <= 2
    )  # queued audio may be left unprocessed: the error comes first


async def test_end_of_source_closes_the_open_episode(
    energy: tuple[ModelCard, Backend],
) -> None:
    card, backend = energy
    samples = to_int16(
        room_tone(8.0) + np.concatenate([np.zeros(3 * RATE), cry_bout(5.0)])
    )
    results: list[WindowResult] = []
    pipeline = Pipeline(
        ListSource(chunked(samples, 0.0)),
        card,
        backend,
        card.tracker_config(),
        results.append,
        backpressure=True,
    )
    await pipeline.run()
    started = [r.update.started for r in results if r.update.started]
    assert len(started) == 1 and started[0].start == pytest.approx(3.0, abs=0.5)
    final = results[-1]
    assert final.start == final.end and final.update.ended is not None
    assert final.update.ended.end == pytest.approx(8.0, abs=0.5)
    credited = sum(e - s for r in results for s, e in r.update.credited)
    assert credited == pytest.approx(final.update.ended.duration)
    assert pipeline.tracker.total_cry_seconds == pytest.approx(credited)
    assert (
        pipeline.tracker.flush().ended is None
    )  # nothing left for the owner's own flush
    assert pipeline.stats.windows == len(results) - 1


async def test_tracker_config_changes_apply_live_and_keep_totals(
    energy: tuple[ModelCard, Backend],
) -> None:
    card, backend = energy
    samples = to_int16(scene(30.0, cries=[(3.0, 9.0), (18.0, 25.0)], distractors=False))
    results: list[WindowResult] = []
    pipeline: Pipeline

    def on_result(result: WindowResult) -> None:
        results.append(result)
        if (
            result.update.ended is not None
        ):  # after the first episode: demand 60 s of crying
            pipeline.set_tracker_config(card.tracker_config(min_cry_seconds=60.0))

    pipeline = Pipeline(
        ListSource(chunked(samples, 0.0)),
        card,
        backend,
        card.tracker_config(),
        on_result,
        backpressure=True,
    )
    await pipeline.run()
    episodes = [r.update.ended for r in results if r.update.ended]
    assert len(episodes) == 1 and episodes[0].start == pytest.approx(3.0, abs=0.5)
    assert pipeline.tracker.config.min_cry_seconds == 60.0
    assert pipeline.tracker.total_cry_seconds == pytest.approx(episodes[0].duration)
    assert (
        max(r.probability for r in results if r.start > 19.0) > 0.9
    )  # the model still hears it


async def test_stats_use_the_injected_monotonic_clock(
    tiny: tuple[ModelCard, Backend],
) -> None:
    card, backend = tiny
    ticks = itertools.count()
    chunks = chunked(to_int16(room_tone(5.0)), 0.0)
    pipeline = Pipeline(
        ListSource(chunks),
        card,
        backend,
        card.tracker_config(),
        lambda _: None,
        monotonic=lambda: next(ticks) / 1000,
        backpressure=True,
    )
    await pipeline.run()
    stats = pipeline.stats
    assert stats.windows == 8
    assert stats.inference_ms_mean == pytest.approx(
        1.0
    ) and stats.inference_ms_p95 == pytest.approx(1.0)
    assert stats.real_time_factor == pytest.approx((2 * 8 + 50) / 1000 / 5.0)


def test_source_rate_must_match_the_model(
    tmp_path: Path, tiny: tuple[ModelCard, Backend]
) -> None:
    card, backend = tiny
    with pytest.raises(ValueError, match="8000 Hz"):
        Pipeline(
            FileSource(tmp_path / "x.wav", sample_rate=8000),
            card,
            backend,
            card.tracker_config(),
            print,
        )
