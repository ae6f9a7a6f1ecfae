"""Source -> log-mel features -> model -> episode tracker: one worker thread behind a bounded queue.

The event loop only reads the source and queues chunks (never waiting on the worker); the worker
thread does all the number crunching and hands each window's result back to the loop with
`call_soon_threadsafe`. Window times come from the chunks' own start stamps plus sample offsets,
never from a clock, so a slow or briefly stalled worker cannot skew them.

Faults: a window whose inference raises is skipped (logged once, counted); only
`max_inference_errors` failures in a row stop the pipeline with a ModelError. A prediction that
does not return within `stall_seconds` is a stall: counted, logged once and flagged in the stats
while it lasts (a live source keeps being read and overruns are counted meanwhile); stopping
does not wait for a stalled prediction, its thread is left to finish on its own. A restamped
chunk (the source's time base followed a clock step) shifts the tracker's time instead of
breaking the audio, so a clock jump neither loses nor double-counts cry time.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_right
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
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
from .features import DBFS_FLOOR, FeatureConfig, PatchStream, dbfs
from .sources import AudioChunk, AudioSource, Int16Array
from .tracker import GAP_TOLERANCE_SECONDS, EpisodeTracker, TrackerConfig, TrackerUpdate

_LOGGER = logging.getLogger(__name__)

INFERENCE_HISTORY = 1000
WORKER_THREAD_NAME = "cry_detector_pipeline"
# A prediction running this long is a stall.
STALL_SECONDS = 10.0
# This many failing windows in a row are a persistent failure: run() raises ModelError.
MAX_INFERENCE_ERRORS = 3

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
    inference_errors: int = 0  # windows skipped because inference raised
    stalls: int = 0  # predictions that took stall_seconds or longer
    stalled: bool = False  # a prediction is stalled right now
    restamps: int = 0  # clock steps followed without breaking the audio


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


class _Run:
    """What one run() shares with its worker thread (a thread left behind keeps its own)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        """Fresh queue, stop flag and completion future."""
        self.loop = loop
        self.queue: queue.Queue[_Item] = queue.Queue()
        self.stopping = threading.Event()
        self.done: asyncio.Future[None] = loop.create_future()
        self.failure: BaseException | None = None


class _WorkerState:
    """The worker's streaming state: features, patches, timeline and fault bookkeeping."""

    def __init__(self, config: FeatureConfig) -> None:
        """Start with no audio."""
        self.config = config
        self.keep = config.patch_hop_frames * config.hop_length + config.window_length
        self.patches = PatchStream(config)
        self.segment = _Segment(config.sample_rate, self.keep)
        self.last_sequence = 0
        self.pending_shift = 0.0  # clock steps the tracker has not followed yet
        self.failures_in_a_row = 0

    def restart(self) -> None:
        """Audio is missing before the next chunk: start the features and timeline afresh."""
        self.patches.reset()
        self.segment = _Segment(self.config.sample_rate, self.keep)


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
        stall_seconds: float = STALL_SECONDS,
        max_inference_errors: int = MAX_INFERENCE_ERRORS,
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
        if not stall_seconds > 0:
            raise ValueError(f"stall_seconds must be positive, got {stall_seconds!r}")
        if max_inference_errors < 1:
            raise ValueError(
                f"max_inference_errors must be at least 1, got {max_inference_errors!r}"
            )
        self.source = source
        self.card = card
        self.backend = backend
        self._on_result = on_result
        self._monotonic = monotonic
        self._features = card.features
        self._positive = card.positive_index
        self._capacity = max(1, round(queue_seconds * card.features.sample_rate))
        self._stall_seconds = stall_seconds
        self._check_interval = min(1.0, max(0.01, stall_seconds / 4))
        self._max_errors = max_inference_errors
        self._tracker = EpisodeTracker(tracker_config)
        self._tracker_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._queue_lock = threading.Lock()
        self._queued_samples = 0
        self._backpressure = not source.live if backpressure is None else backpressure
        self._space = asyncio.Event()
        self._space_wanted = False
        self._sequence = 0
        self._windows = 0
        self._overruns = 0
        self._inference_errors = 0
        self._stalls = 0
        self._restamps = 0
        # Loop time the running prediction began, and whether it has been counted as a stall.
        self._predicting_since: float | None = None
        self._stalled = False
        self._inference_ms: deque[float] = deque(maxlen=INFERENCE_HISTORY)
        self._processing_seconds = 0.0
        self._audio_seconds = 0.0
        self._run: _Run | None = None
        self._thread: threading.Thread | None = None

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
            errors, stalls, stalled = (
                self._inference_errors,
                self._stalls,
                self._stalled,
            )
            restamps = self._restamps
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
            inference_errors=errors,
            stalls=stalls,
            stalled=stalled,
            restamps=restamps,
        )

    async def run(self) -> None:
        """Process the source until it ends (None) or this task is cancelled.

        Source errors propagate; a backend or tracker failing max_inference_errors windows in a
        row surfaces as ModelError. The worker thread is stopped and joined before run() returns
        or raises, unless it is stuck in a stalled prediction (then it is left to finish alone).
        """
        if self._thread is not None:
            raise RuntimeError("Pipeline.run() is already running")
        run = self._start_worker(asyncio.get_running_loop())
        reader = asyncio.create_task(
            self._read_source(run), name="cry_detector audio reader"
        )
        try:
            await self._watch({reader, run.done})
            if reader.done():
                reader.result()  # a source error propagates from here
                run.queue.put_nowait(_END)
                await self._watch({run.done})
        finally:
            reader.cancel()
            run.stopping.set()
            run.queue.put_nowait(_STOP)
            await asyncio.wait([reader])
            await self._join_worker(run)
        if run.failure is not None:
            raise _as_model_error(run.failure) from run.failure

    # -- event loop side ------------------------------------------------------------------------

    async def _read_source(self, run: _Run) -> None:
        """Read chunks as fast as the source delivers them and queue them without waiting."""
        while (chunk := await self.source.read()) is not None:
            if self._backpressure:
                await self._wait_for_space(chunk.samples.shape[0])
            self._enqueue(run, chunk)

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

    def _enqueue(self, run: _Run, chunk: AudioChunk) -> None:
        """Queue a chunk; beyond queue_seconds of backlog drop the oldest chunks (overruns)."""
        size = chunk.samples.shape[0]
        with self._queue_lock:
            while (
                self._queued_samples > 0
                and self._queued_samples + size > self._capacity
            ):
                try:
                    dropped = run.queue.get_nowait()
                except queue.Empty:
                    break
                if isinstance(dropped, tuple):
                    self._queued_samples -= dropped[1].samples.shape[0]
                    with self._stats_lock:
                        self._overruns += 1
            self._queued_samples += size
            self._sequence += 1
            run.queue.put_nowait((self._sequence, chunk))

    async def _watch(self, waiting: set[asyncio.Future[Any]]) -> None:
        """Wait until one of `waiting` is done, looking out for a stalled prediction meanwhile."""
        while True:
            done, _ = await asyncio.wait(
                waiting,
                timeout=self._check_interval,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if done:
                return
            self._check_stall()

    def _check_stall(self) -> None:
        """Count and log a prediction that has been running for stall_seconds (loop side)."""
        assert self._run is not None
        now = self._run.loop.time()
        with self._stats_lock:
            since = self._predicting_since
            if (
                since is None
                or self._stalled
                or now - since < self._stall_seconds - 1e-3
            ):
                return
            self._stalled = True
            self._stalls += 1
            first = self._stalls == 1
        (_LOGGER.warning if first else _LOGGER.debug)(
            "Cry Detector inference on the %s backend has not returned for %.1f s (stalled)",
            self.backend.name,
            now - since,
        )

    def _start_worker(self, loop: asyncio.AbstractEventLoop) -> _Run:
        """Start the worker thread of a new run.

        A daemon thread, so that a prediction stuck for good cannot block interpreter exit; it
        is joined whenever it is not stuck.
        """
        run = self._run = _Run(loop)
        with self._stats_lock:
            self._predicting_since, self._stalled = None, False
        self._thread = threading.Thread(
            target=self._work, args=(run,), name=WORKER_THREAD_NAME, daemon=True
        )
        self._thread.start()
        return run

    async def _join_worker(self, run: _Run) -> None:
        """Wait (without blocking the loop) until the worker has delivered everything and exited.

        A worker stuck in a stalled prediction is not waited for: once nothing can reach the
        tracker or the caller any more, it is left behind to exit when its prediction returns.
        """
        thread, self._thread = self._thread, None
        try:
            while not run.done.done():
                await asyncio.wait([run.done], timeout=self._check_interval)
                self._check_stall()
                if not run.done.done() and self.stats.stalled:
                    await self._abandon(run)
                    return
        finally:
            if thread is not None and run.done.done():
                thread.join()  # it has finished: immediate
            self._drain_queue(run)

    async def _abandon(self, run: _Run) -> None:
        """Give up on a worker stuck in a prediction (run.stopping is already set)."""
        with self._tracker_lock:
            pass  # a tracker update in progress has finished; none follows (stopping is set)
        await asyncio.sleep(0)  # results it scheduled before reach the caller now
        _LOGGER.warning(
            "Cry Detector stopped without waiting for a stalled %s inference",
            self.backend.name,
        )

    def _drain_queue(self, run: _Run) -> None:
        """Forget chunks nobody will process."""
        with self._queue_lock:
            while True:
                try:
                    run.queue.get_nowait()
                except queue.Empty:
                    break
            self._queued_samples = 0

    # -- worker thread --------------------------------------------------------------------------

    def _work(self, run: _Run) -> None:
        """Worker: process queued chunks in order until told to end or stop."""
        state = _WorkerState(self._features)
        try:
            while not run.stopping.is_set():
                item = run.queue.get()
                if item == _STOP:
                    break
                if item == _END:
                    self._finish(run)
                    break
                assert isinstance(item, tuple)
                sequence, chunk = item
                self._dequeued(run, chunk)
                self._place(sequence, chunk, state)
                self._process(run, chunk, state)
        except Exception as err:
            run.failure = err
            _LOGGER.error("Cry Detector pipeline stopped: %s", err, exc_info=err)
        finally:
            _to_loop(run.loop, _set_done, run.done)

    def _dequeued(self, run: _Run, chunk: AudioChunk) -> None:
        """Account for a chunk taken off the queue; wake a reader waiting for room."""
        with self._queue_lock:
            self._queued_samples -= chunk.samples.shape[0]
            wake, self._space_wanted = self._space_wanted, False
        if wake:
            _to_loop(run.loop, self._space.set)

    def _place(self, sequence: int, chunk: AudioChunk, state: _WorkerState) -> None:
        """Join a chunk to the audio before it: seamlessly, restamped (a clock step) or after a gap.

        A gap is audio missing before the chunk (dropped chunks, a jump in the stamps): the
        features start afresh. A restamped chunk continues the audio; only time jumped, and the
        tracker follows that jump before its next window.
        """
        dropped = state.last_sequence and sequence != state.last_sequence + 1
        state.last_sequence = sequence
        expected = state.segment.expected_start()
        jump = 0.0 if expected is None else chunk.start - expected
        if not dropped and abs(jump) <= GAP_TOLERANCE_SECONDS:
            return
        if not dropped and chunk.restamped:
            state.pending_shift += jump
            with self._stats_lock:
                self._restamps += 1
            return
        state.restart()

    def _process(self, run: _Run, chunk: AudioChunk, state: _WorkerState) -> None:
        """Features, inference and tracking for one chunk."""
        began = self._monotonic()
        segment = state.segment
        segment.append(chunk)
        config = self._features
        hop_samples = config.patch_hop_frames * config.hop_length
        for patch in state.patches.push(chunk.samples):
            end_index = (
                segment.patches * config.patch_hop_frames + config.patch_frames - 1
            ) * config.hop_length + config.window_length
            segment.patches += 1
            end = segment.time_at(end_index)
            start = end - hop_samples / config.sample_rate
            level = dbfs(segment.samples(end_index - hop_samples, end_index))
            if run.stopping.is_set():
                return
            self._window(run, state, patch, WindowResult(start, end, 0.0, level, _NONE))
        with self._stats_lock:
            self._processing_seconds += self._monotonic() - began
            self._audio_seconds += chunk.samples.shape[0] / config.sample_rate

    def _window(
        self, run: _Run, state: _WorkerState, patch: np.ndarray, window: WindowResult
    ) -> None:
        """Infer and track one window and deliver its result; a failure skips the window."""
        try:
            probability = self._infer(run, patch)
            with self._tracker_lock:
                if run.stopping.is_set():
                    return  # stopped during the prediction: the caller owns the tracker now
                if state.pending_shift:
                    self._tracker.shift_time(state.pending_shift)
                    state.pending_shift = 0.0
                update = self._tracker.update(window.start, window.end, probability)
                with self._stats_lock:
                    self._windows += 1
                result = replace(window, probability=probability, update=update)
                _to_loop(run.loop, self._on_result, result)
        except Exception as err:  # noqa: BLE001 - counted, logged, re-raised when persistent
            self._window_failed(err, state)
            return
        state.failures_in_a_row = 0

    def _window_failed(self, err: Exception, state: _WorkerState) -> None:
        """Count a failed window; log the first one; re-raise once failures persist."""
        state.failures_in_a_row += 1
        with self._stats_lock:
            self._inference_errors += 1
            first = self._inference_errors == 1
        if state.failures_in_a_row >= self._max_errors:
            raise err
        if first:
            _LOGGER.warning(
                "Cry Detector inference failed, skipping the window: %s", err
            )
        else:
            _LOGGER.debug("Cry Detector inference failed again: %s", err)

    def _infer(self, run: _Run, patch: np.ndarray) -> float:
        """Run the model on one patch; return the positive label's probability."""
        with self._stats_lock:
            self._predicting_since = run.loop.time()
        began = self._monotonic()
        try:
            probabilities = self.backend.predict(patch)
        finally:
            elapsed_ms = (self._monotonic() - began) * 1000.0
            self._predicted(run, elapsed_ms)
        return float(np.asarray(probabilities).reshape(-1)[self._positive])

    def _predicted(self, run: _Run, elapsed_ms: float) -> None:
        """Record a prediction's time; count it as a stall if the watch has not already."""
        now = run.loop.time()
        with self._stats_lock:
            self._inference_ms.append(elapsed_ms)
            since, self._predicting_since = self._predicting_since, None
            lasted = now - since if since is not None else 0.0
            flagged, self._stalled = self._stalled, False
            late = not flagged and lasted >= self._stall_seconds - 1e-3
            if late:
                self._stalls += 1
            first = self._stalls == 1
        if flagged:
            _LOGGER.info("Cry Detector inference returned after %.1f s", lasted)
        elif late:
            (_LOGGER.warning if first else _LOGGER.debug)(
                "Cry Detector inference took %.1f s (stalled)", lasted
            )

    def _finish(self, run: _Run) -> None:
        """The source ended: close an open episode and deliver that as a last, zero-length result."""
        with self._tracker_lock:
            update = self._tracker.flush()
        if update.ended is not None:
            at = update.ended.end
            _to_loop(
                run.loop,
                self._on_result,
                WindowResult(at, at, 0.0, DBFS_FLOOR, update),
            )


_NONE = TrackerUpdate(0.0, 0.0, False, None, None, ())


def _to_loop(
    loop: asyncio.AbstractEventLoop, callback: Callable[..., Any], *args: Any
) -> None:
    """Schedule a callback on the loop (ignored once the loop is closed)."""
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:
        _LOGGER.debug("Event loop closed; dropping a pipeline callback")


def _set_done(future: asyncio.Future[None]) -> None:
    """Resolve the worker's done future (on the loop)."""
    if not future.done():
        future.set_result(None)


def _as_model_error(err: BaseException) -> ModelError:
    """Wrap a worker failure as a ModelError (keeping a ModelError's reason)."""
    reason = err.reason if isinstance(err, ModelError) else None
    return ModelError(f"inference failed: {err}", reason=reason)
