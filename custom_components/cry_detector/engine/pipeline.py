"""Source -> log-mel features -> model -> episode tracker: one worker thread behind a bounded queue.

The event loop only reads the source and queues chunks (never waiting on the worker); the worker
thread does all the number crunching and hands each window's result back to the loop with
`call_soon_threadsafe`. Window times come from the chunks' own start stamps plus sample offsets,
never from a clock, so a slow or briefly stalled worker cannot skew them.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_right
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
import logging
import math
import queue
import threading
import time
from typing import Any, Final

import numpy as np

from .backends import Backend
from .card import ModelCard
from .errors import ModelError
from .features import DBFS_FLOOR, LogMelFrontend, PatchAssembler, dbfs
from .sources import AudioChunk, AudioSource, Int16Array
from .tracker import GAP_TOLERANCE_SECONDS, EpisodeTracker, TrackerConfig, TrackerUpdate

_LOGGER = logging.getLogger(__name__)

INFERENCE_HISTORY = 1000
WORKER_THREAD_NAME = "cry_detector_pipeline"

_END: Final = (
    "end"  # the source ended: finish the queued audio, flush the tracker, exit
)
_STOP: Final = "stop"  # cancelled: exit as soon as possible

_Item = tuple[int, AudioChunk] | str


@dataclass(frozen=True)
class WindowResult:
    """One model window: the interval it represents, its cry probability, level and tracker update.

    When the source ends, a last zero-length result (start == end, probability 0) carries the
    tracker flush that closes an open episode.
    """

    start: float
    end: float
    probability: float
    level_dbfs: float
    update: TrackerUpdate


@dataclass(frozen=True)
class PipelineStats:
    """Throughput and health figures of a pipeline."""

    backend: str
    windows: int
    overruns: int
    inference_ms_mean: float
    inference_ms_p95: float
    real_time_factor: float
    audio_seconds: float


class _Segment:
    """Map sample positions of the audio since the last gap to epoch time via the chunk stamps."""

    def __init__(self, sample_rate: int, keep_samples: int) -> None:
        """Start an empty segment."""
        self.sample_rate = sample_rate
        self.keep_samples = keep_samples
        self.total = 0
        self.patches = 0
        self._anchor_index: list[int] = []
        self._anchor_time: list[float] = []
        self._recent: Int16Array = np.zeros(0, dtype=np.int16)

    def expected_start(self) -> float | None:
        """Epoch time the next chunk should start at, if the segment has audio."""
        return self.time_at(self.total) if self._anchor_index else None

    def append(self, chunk: AudioChunk) -> None:
        """Record a chunk's stamp and keep its samples for level measurement."""
        self._anchor_index.append(self.total)
        self._anchor_time.append(chunk.start)
        tail = (
            self._recent[-self.keep_samples :]
            if self.keep_samples
            else self._recent[:0]
        )
        self._recent = np.concatenate((tail, chunk.samples))
        self.total += chunk.samples.shape[0]
        while (
            len(self._anchor_index) > 1
            and self._anchor_index[1] <= self.total - 2 * self.keep_samples
        ):
            del self._anchor_index[0], self._anchor_time[0]

    def time_at(self, index: int) -> float:
        """Epoch time of sample `index`: the stamp of the chunk holding it plus the offset."""
        position = max(0, bisect_right(self._anchor_index, index) - 1)
        return (
            self._anchor_time[position]
            + (index - self._anchor_index[position]) / self.sample_rate
        )

    def samples(self, begin: int, end: int) -> Int16Array:
        """Samples [begin, end) of the segment (must still be kept)."""
        offset = self.total - self._recent.shape[0]
        return self._recent[max(0, begin - offset) : end - offset]


class Pipeline:
    """Run audio from a source through features, the model and the tracker."""

    def __init__(
        self,
        source: AudioSource,
        card: ModelCard,
        backend: Backend,
        tracker_config: TrackerConfig,
        on_result: Callable[[WindowResult], None],
        *,
        queue_seconds: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
        backpressure: bool | None = None,
    ) -> None:
        """Prepare the pipeline; run() does the work. The caller owns (opens, closes) the source.

        When the queue holds queue_seconds of audio, a live source's oldest chunk is dropped (an
        overrun); with backpressure the reader waits for the worker instead. Default: backpressure
        exactly for offline sources (`source.live` False: files read as fast as possible).
        """
        if source.sample_rate != card.features.sample_rate:
            raise ValueError(
                f"source delivers {source.sample_rate} Hz, the model needs {card.features.sample_rate} Hz"
            )
        self.source = source
        self.card = card
        self.backend = backend
        self._on_result = on_result
        self._monotonic = monotonic
        self._features = card.features
        self._positive = card.positive_index
        self._capacity = max(1, round(queue_seconds * card.features.sample_rate))
        self._tracker = EpisodeTracker(tracker_config)
        self._tracker_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._queue_lock = threading.Lock()
        self._queue: queue.Queue[_Item] = queue.Queue()
        self._queued_samples = 0
        self._backpressure = not source.live if backpressure is None else backpressure
        self._space = asyncio.Event()
        self._space_wanted = False
        self._sequence = 0
        self._windows = 0
        self._overruns = 0
        self._inference_ms: deque[float] = deque(maxlen=INFERENCE_HISTORY)
        self._processing_seconds = 0.0
        self._audio_seconds = 0.0
        self._failure: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # -- public ---------------------------------------------------------------------------------

    @property
    def tracker(self) -> EpisodeTracker:
        """The episode tracker (read its totals; flush it only once run() has returned)."""
        return self._tracker

    def set_tracker_config(self, config: TrackerConfig) -> None:
        """Apply new tracker options live; the open episode and totals are kept."""
        with self._tracker_lock:
            self._tracker.config = config

    @property
    def stats(self) -> PipelineStats:
        """Current figures (safe to read while running)."""
        with self._stats_lock:
            timings = sorted(self._inference_ms)
            processing, audio = self._processing_seconds, self._audio_seconds
            windows, overruns = self._windows, self._overruns
        mean = sum(timings) / len(timings) if timings else 0.0
        p95 = timings[max(0, math.ceil(0.95 * len(timings)) - 1)] if timings else 0.0
        return PipelineStats(
            backend=self.backend.name,
            windows=windows,
            overruns=overruns,
            inference_ms_mean=mean,
            inference_ms_p95=p95,
            real_time_factor=processing / audio if audio > 0 else 0.0,
            audio_seconds=audio,
        )

    async def run(self) -> None:
        """Process the source until it ends (None) or this task is cancelled.

        Source errors propagate; a failing backend or tracker surfaces as ModelError. The worker
        thread is always stopped and joined before run() returns or raises.
        """
        if self._thread is not None:
            raise RuntimeError("Pipeline.run() is already running")
        loop = asyncio.get_running_loop()
        worker_done: asyncio.Future[None] = loop.create_future()
        self._start_worker(loop, worker_done)
        reader = asyncio.create_task(
            self._read_source(), name="cry_detector audio reader"
        )
        try:
            await asyncio.wait(
                [reader, worker_done], return_when=asyncio.FIRST_COMPLETED
            )
            if reader.done():
                reader.result()  # a source error propagates from here
                self._queue.put_nowait(_END)
                await worker_done
        finally:
            reader.cancel()
            self._stopping.set()
            self._queue.put_nowait(_STOP)
            await asyncio.wait([reader])
            await self._join_worker(worker_done)
        if self._failure is not None:
            raise _as_model_error(self._failure) from self._failure

    # -- event loop side ------------------------------------------------------------------------

    async def _read_source(self) -> None:
        """Read chunks as fast as the source delivers them and queue them without waiting."""
        while (chunk := await self.source.read()) is not None:
            if self._backpressure:
                await self._wait_for_space(chunk.samples.shape[0])
            self._enqueue(chunk)

    async def _wait_for_space(self, size: int) -> None:
        """Wait until the worker has room for `size` more samples (backpressure mode)."""
        while True:
            with self._queue_lock:
                if (
                    self._queued_samples == 0
                    or self._queued_samples + size <= self._capacity
                ):
                    return
                self._space.clear()
                self._space_wanted = True
            await self._space.wait()

    def _enqueue(self, chunk: AudioChunk) -> None:
        """Queue a chunk; beyond queue_seconds of backlog drop the oldest chunks (overruns)."""
        size = chunk.samples.shape[0]
        with self._queue_lock:
            while (
                self._queued_samples > 0
                and self._queued_samples + size > self._capacity
            ):
                try:
                    dropped = self._queue.get_nowait()
                except queue.Empty:
                    break
                if isinstance(dropped, tuple):
                    self._queued_samples -= dropped[1].samples.shape[0]
                    with self._stats_lock:
                        self._overruns += 1
            self._queued_samples += size
            self._sequence += 1
            self._queue.put_nowait((self._sequence, chunk))

    def _start_worker(
        self, loop: asyncio.AbstractEventLoop, worker_done: asyncio.Future[None]
    ) -> None:
        """Start the worker thread (not a daemon: it is always joined)."""
        self._loop = loop
        self._failure = None
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._work,
            args=(worker_done,),
            name=WORKER_THREAD_NAME,
            daemon=False,
        )
        self._thread.start()

    async def _join_worker(self, worker_done: asyncio.Future[None]) -> None:
        """Wait (without blocking the loop) until the worker has delivered everything and exited."""
        thread, self._thread = self._thread, None
        try:
            await asyncio.wait([worker_done])
        finally:
            if thread is not None:
                thread.join()  # immediate, unless cancelled again while waiting above
            self._drain_queue()

    def _drain_queue(self) -> None:
        """Forget chunks nobody will process."""
        with self._queue_lock:
            while True:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
            self._queued_samples = 0

    def _to_loop(self, callback: Callable[..., Any], *args: Any) -> None:
        """Schedule a callback on the loop (ignored once the loop is closed)."""
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            _LOGGER.debug("Event loop closed; dropping a pipeline callback")

    # -- worker thread --------------------------------------------------------------------------

    def _work(self, worker_done: asyncio.Future[None]) -> None:
        """Worker: process queued chunks in order until told to end or stop."""
        frontend = LogMelFrontend(self._features)
        assembler = PatchAssembler(self._features)
        keep = (
            self._features.patch_hop_frames * self._features.hop_length
            + self._features.window_length
        )
        segment = _Segment(self._features.sample_rate, keep)
        last_sequence = 0
        try:
            while not self._stopping.is_set():
                item = self._queue.get()
                if item == _STOP:
                    break
                if item == _END:
                    self._finish()
                    break
                assert isinstance(item, tuple)
                sequence, chunk = item
                self._dequeued(chunk)
                if self._is_gap(sequence, last_sequence, chunk, segment):
                    frontend.reset()
                    assembler.reset()
                    segment = _Segment(self._features.sample_rate, keep)
                last_sequence = sequence
                self._process(chunk, frontend, assembler, segment)
        except Exception as err:
            self._failure = err
            _LOGGER.error("Cry Detector pipeline stopped: %s", err, exc_info=err)
        finally:
            self._to_loop(_set_done, worker_done)

    def _dequeued(self, chunk: AudioChunk) -> None:
        """Account for a chunk taken off the queue; wake a reader waiting for room."""
        with self._queue_lock:
            self._queued_samples -= chunk.samples.shape[0]
            wake, self._space_wanted = self._space_wanted, False
        if wake:
            self._to_loop(self._space.set)

    @staticmethod
    def _is_gap(
        sequence: int, last_sequence: int, chunk: AudioChunk, segment: _Segment
    ) -> bool:
        """Whether audio is missing before this chunk (dropped chunks or a jump in the stamps)."""
        if last_sequence and sequence != last_sequence + 1:
            return True
        expected = segment.expected_start()
        return (
            expected is not None and abs(chunk.start - expected) > GAP_TOLERANCE_SECONDS
        )

    def _process(
        self,
        chunk: AudioChunk,
        frontend: LogMelFrontend,
        assembler: PatchAssembler,
        segment: _Segment,
    ) -> None:
        """Features, inference and tracking for one chunk."""
        began = self._monotonic()
        segment.append(chunk)
        config = self._features
        hop_samples = config.patch_hop_frames * config.hop_length
        for patch in assembler.push(frontend.process(chunk.samples)):
            end_index = (
                segment.patches * config.patch_hop_frames + config.patch_frames - 1
            ) * config.hop_length + config.window_length
            segment.patches += 1
            end = segment.time_at(end_index)
            start = end - hop_samples / config.sample_rate
            level = dbfs(segment.samples(end_index - hop_samples, end_index))
            probability = self._infer(patch)
            with self._tracker_lock:
                update = self._tracker.update(start, end, probability)
            with self._stats_lock:
                self._windows += 1
            self._to_loop(
                self._on_result, WindowResult(start, end, probability, level, update)
            )
        with self._stats_lock:
            self._processing_seconds += self._monotonic() - began
            self._audio_seconds += chunk.samples.shape[0] / config.sample_rate

    def _infer(self, patch: np.ndarray) -> float:
        """Run the model on one patch; return the positive label's probability."""
        began = self._monotonic()
        probabilities = self.backend.predict(patch)
        elapsed_ms = (self._monotonic() - began) * 1000.0
        with self._stats_lock:
            self._inference_ms.append(elapsed_ms)
        return float(np.asarray(probabilities).reshape(-1)[self._positive])

    def _finish(self) -> None:
        """The source ended: close an open episode and deliver that as a last, zero-length result."""
        with self._tracker_lock:
            update = self._tracker.flush()
        if update.ended is not None:
            at = update.ended.end
            self._to_loop(
                self._on_result, WindowResult(at, at, 0.0, DBFS_FLOOR, update)
            )


def _set_done(future: asyncio.Future[None]) -> None:
    """Resolve the worker's done future (on the loop)."""
    if not future.done():
        future.set_result(None)


def _as_model_error(err: BaseException) -> ModelError:
    """Wrap a worker failure as a ModelError (keeping a ModelError's reason)."""
    reason = err.reason if isinstance(err, ModelError) else None
    return ModelError(f"inference failed: {err}", reason=reason)
