"""Pipeline faults: inference that raises now and then, fails for good, or stalls."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
import logging
from pathlib import Path
import threading
import time

import numpy as np
import pytest

from custom_components.cry_detector.engine.backends import Backend, load_model
from custom_components.cry_detector.engine.card import ModelCard
from custom_components.cry_detector.engine.errors import ModelError
from custom_components.cry_detector.engine.features import patches
from custom_components.cry_detector.engine.pipeline import Pipeline, WindowResult
from custom_components.cry_detector.engine.sources import FileSource

from .audio import room_tone, scene, to_int16, write_audio
from .test_pipeline import ListSource, PacedSource, chunked, worker_threads

MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "models"
RATE = 16000


@pytest.fixture(scope="module")
def energy() -> Iterator[tuple[ModelCard, Backend]]:
    """The hand-wired cry-band energy model (tests/fixtures/make_energy_model.py)."""
    card, backend = load_model(MODELS / "energy_cry.tflite")
    yield card, backend
    backend.close()


class FlakyBackend:
    """A real backend whose n-th predictions (0-based) misbehave as `fault(n)` says."""

    def __init__(
        self, inner: Backend, fault: Callable[[int], str | None], hold: float = 0.0
    ) -> None:
        """fault(n) -> None (fine), "raise", "nan", "slow" (sleep hold) or "stall" (wait for release)."""
        self.inner, self.fault, self.hold = inner, fault, hold
        self.name, self.input_shape, self.output_shape = (
            "flaky",
            inner.input_shape,
            inner.output_shape,
        )
        self.calls = 0
        self.faults: list[int] = []
        self.release = threading.Event()
        self.stalling = threading.Event()

    def predict(self, patch: np.ndarray) -> np.ndarray:
        """Predict, unless this call is one of the faulty ones."""
        call, self.calls = self.calls, self.calls + 1
        kind = self.fault(call)
        if kind is not None:
            self.faults.append(call)
        if kind == "raise":
            raise RuntimeError(f"delegate hiccup on call {call}")
        if kind == "nan":
            return np.full(self.output_shape[-1], np.nan, np.float32)
        if kind == "slow":
            time.sleep(self.hold)
        if kind == "stall":
            self.stalling.set()
            self.release.wait(30.0)
        return self.inner.predict(patch)

    def close(self) -> None:
        """The inner backend belongs to the fixture."""


def cry_chunks(seconds: float = 20.0) -> tuple[np.ndarray, list[object]]:
    """A scene with a cry from 4 s to 14 s, cut into 0.1 s chunks stamped from 1000 s."""
    samples = to_int16(scene(seconds, cries=[(4.0, 14.0)], seed=8, distractors=False))
    return samples, chunked(samples, 1000.0)  # type: ignore[return-value]


async def run_offline(
    card: ModelCard, backend: FlakyBackend, chunks: list[object], **kwargs: object
) -> tuple[list[WindowResult], Pipeline]:
    """Run the chunks through a pipeline that never drops (backpressure)."""
    results: list[WindowResult] = []
    pipeline = Pipeline(
        ListSource(chunks),  # type: ignore[arg-type]
        card,
        backend,
        card.tracker_config(),
        results.append,
        backpressure=True,
        **kwargs,  # type: ignore[arg-type]
    )
    await pipeline.run()
    return results, pipeline


def reference(card: ModelCard, backend: Backend, samples: np.ndarray) -> list[float]:
    """Every window's probability computed in one batch."""
    return [
        float(backend.predict(p)[card.positive_index])
        for p in patches(samples, card.features)
    ]


async def test_transient_errors_skip_the_window_are_logged_once_and_counted(
    energy: tuple[ModelCard, Backend], caplog: pytest.LogCaptureFixture
) -> None:
    card, inner = energy
    samples, chunks = cry_chunks()
    flaky = FlakyBackend(inner, lambda n: "raise" if n in (3, 11, 12, 30) else None)
    results, pipeline = await run_offline(card, flaky, chunks)

    expected = reference(card, inner, samples)
    windows = [r for r in results if r.end > r.start]
    assert len(windows) == len(expected) - 4 == pipeline.stats.windows
    kept = [p for n, p in enumerate(expected) if n not in (3, 11, 12, 30)]
    # the worker carried on with its features intact: every other window is exactly right
    assert [r.probability for r in windows] == pytest.approx(kept, abs=1e-6)
    assert pipeline.stats.inference_errors == 4
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert (
        len(warnings) == 1 and "delegate hiccup on call 3" in warnings[0].getMessage()
    )
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    # a skipped window inside the cry is a short pause: still one episode, exact accounting
    episodes = [r.update.ended for r in results if r.update.ended]
    assert len(episodes) == 1
    credited = sum(e - s for r in results for s, e in r.update.credited)
    assert credited == pytest.approx(episodes[0].duration)
    assert not worker_threads()


async def test_failures_must_be_consecutive_to_stop_the_pipeline(
    energy: tuple[ModelCard, Backend],
) -> None:
    card, inner = energy
    _, chunks = cry_chunks(10.0)
    flaky = FlakyBackend(inner, lambda n: "raise" if n % 2 else None)
    results, pipeline = await run_offline(card, flaky, chunks, max_inference_errors=2)
    assert pipeline.stats.inference_errors == len(flaky.faults) == flaky.calls // 2
    windows = [r for r in results if r.end > r.start]
    assert pipeline.stats.windows == flaky.calls - len(flaky.faults) == len(windows)


@pytest.mark.parametrize("limit", [1, 3])
async def test_persistent_failure_is_a_model_error(
    energy: tuple[ModelCard, Backend], caplog: pytest.LogCaptureFixture, limit: int
) -> None:
    card, inner = energy
    _, chunks = cry_chunks(10.0)
    flaky = FlakyBackend(inner, lambda n: "raise" if n >= 4 else None)
    with pytest.raises(ModelError, match="delegate hiccup") as caught:
        await run_offline(card, flaky, chunks, max_inference_errors=limit)
    assert caught.value.reason == "invalid_model"
    assert flaky.calls == 4 + limit
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert not worker_threads()


async def test_nan_output_is_a_failed_window_not_a_broken_tracker(
    energy: tuple[ModelCard, Backend],
) -> None:
    card, inner = energy
    _, chunks = cry_chunks()
    flaky = FlakyBackend(inner, lambda n: "nan" if n == 15 else None)
    results, pipeline = await run_offline(card, flaky, chunks)
    assert pipeline.stats.inference_errors == 1
    assert all(np.isfinite(r.probability) for r in results)
    assert pipeline.tracker.total_cry_seconds == pytest.approx(
        sum(e - s for r in results for s, e in r.update.credited)
    )


async def test_slow_predictions_are_each_counted_as_one_stall(
    energy: tuple[ModelCard, Backend],
) -> None:
    card, inner = energy
    _, chunks = cry_chunks(4.0)
    flaky = FlakyBackend(inner, lambda n: "slow" if n % 3 == 1 else None, hold=0.3)
    _, pipeline = await run_offline(card, flaky, chunks, stall_seconds=0.2)
    stats = pipeline.stats
    assert stats.stalls == len(flaky.faults) == 2
    assert not stats.stalled
    assert stats.inference_ms_p95 >= 300.0


async def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll until condition() holds."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_stall_is_reported_while_the_reader_keeps_reading(
    tmp_path: Path,
    energy: tuple[ModelCard, Backend],
    caplog: pytest.LogCaptureFixture,
) -> None:
    card, inner = energy
    caplog.set_level(logging.INFO)
    path = write_audio(tmp_path / "room.wav", room_tone(12.0), RATE)
    flaky = FlakyBackend(inner, lambda n: "stall" if n == 2 else None)
    source = PacedSource(FileSource(path), delay=0.01)  # live, 10x real time
    results: list[WindowResult] = []
    async with source:
        pipeline = Pipeline(
            source,
            card,
            flaky,
            card.tracker_config(),
            results.append,
            queue_seconds=1.0,
            stall_seconds=0.2,
        )
        task = asyncio.create_task(pipeline.run())
        await wait_for(flaky.stalling.is_set)
        await wait_for(lambda: pipeline.stats.stalled)
        reads_at_detection = len(source.read_times)
        await asyncio.sleep(0.3)
        during = pipeline.stats
        assert during.stalled and during.stalls == 1
        assert (
            len(source.read_times) - reads_at_detection >= 10
        )  # the reader never waits
        assert during.overruns > 0
        assert len(results) == 2
        flaky.release.set()
        await asyncio.wait_for(task, 30)
    after = pipeline.stats
    assert not after.stalled and after.stalls == 1
    assert after.windows == len(results) > 2  # processing went on after the stall
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert sum("stalled" in m for m in messages) == 1
    assert sum("returned after" in m for m in messages) == 1
    assert not worker_threads()


async def test_stopping_does_not_wait_for_a_stalled_prediction(
    tmp_path: Path,
    energy: tuple[ModelCard, Backend],
    caplog: pytest.LogCaptureFixture,
) -> None:
    card, inner = energy
    path = write_audio(tmp_path / "room.wav", room_tone(30.0), RATE)
    flaky = FlakyBackend(inner, lambda n: "stall" if n == 3 else None)
    source = PacedSource(FileSource(path, loop=True), delay=0.005)
    results: list[WindowResult] = []
    try:
        async with source:
            pipeline = Pipeline(
                source,
                card,
                flaky,
                card.tracker_config(),
                results.append,
                stall_seconds=0.2,
            )
            task = asyncio.create_task(pipeline.run())
            await wait_for(lambda: pipeline.stats.stalled)
            task.cancel()
            began = time.monotonic()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert time.monotonic() - began < 2.0
        assert "without waiting" in caplog.text
        delivered = len(results)
        total = pipeline.tracker.total_cry_seconds
        assert (
            pipeline.tracker.flush().ended is None
        )  # the owner may use the tracker now
        assert len(worker_threads()) == 1  # still inside predict
    finally:
        flaky.release.set()
    await wait_for(lambda: not worker_threads())
    await asyncio.sleep(0.05)
    assert len(results) == delivered  # the late prediction reached nobody
    assert pipeline.tracker.total_cry_seconds == total
    assert flaky.calls == 4


async def test_overruns_are_counted_exactly(
    energy: tuple[ModelCard, Backend],
) -> None:
    """Every chunk either reaches the worker or is counted as an overrun."""
    card, inner = energy
    samples = to_int16(room_tone(20.0))
    flaky = FlakyBackend(inner, lambda n: "slow", hold=0.02)
    source = ListSource(chunked(samples, 0.0))  # live: dropping, not waiting
    pipeline = Pipeline(
        source, card, flaky, card.tracker_config(), lambda _: None, queue_seconds=0.5
    )
    await pipeline.run()
    stats = pipeline.stats
    assert stats.overruns > 0
    assert stats.audio_seconds + 0.1 * stats.overruns == pytest.approx(20.0)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("stall_seconds", 0.0, "stall_seconds must be positive"),
        ("max_inference_errors", 0, "max_inference_errors must be at least 1"),
    ],
)
def test_pipeline_refuses_nonsense_fault_settings(
    energy: tuple[ModelCard, Backend], option: str, value: float, message: str
) -> None:
    card, backend = energy
    with pytest.raises(ValueError, match=message):
        Pipeline(
            ListSource([]),
            card,
            backend,
            card.tracker_config(),
            lambda _: None,
            **{option: value},
        )
