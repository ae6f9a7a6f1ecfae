"""Soak: a day of audio through the real engine Pipeline; prints memory, accuracy, drops, throughput.

Usage: ``scripts/run python benchmarks/soak.py [--hours 24] [--corpus-hours H] [--realtime-seconds 120]``
(``CRY_DETECTOR_SOAK_HOURS`` sets the default of --hours.)

Four runs, each through ``Pipeline`` with a generator source (no files; constant memory):

1. exact: ``--hours`` of quiet room tone with speech-like bursts, music and knocks, and synthesised
   cry bouts at known times, through the hand-wired energy model (it reacts to 300-650 Hz band
   energy, so the ground truth is exact whatever a trained model would say). Offline, as fast as
   the worker goes. Reports RSS growth after warm-up, every episode's error against the truth and
   the cry-minute total, throughput.
2. corpus: ``--corpus-hours`` of the same room with real clips of the cry corpus
   (``../shared/data/cry-corpus``: a few hundred clips decoded once, crying ones concatenated into
   episodes) through the bundled default model: what it measures against the clip labels.
   Skipped when the corpus is absent.
3. realtime: ``--realtime-seconds`` paced at normal speed as a live source (chunk stamps from a
   fake clock): every window must come out, no overrun.
4. overrun: a live source at 10x real time into a deliberately slow backend: overruns counted,
   the reader never waits for the worker.

The engine is loaded by path as ``cry_detector_engine`` (as training does): no Home Assistant.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
import gc
import importlib
import math
import os
from pathlib import Path
import sys
import time
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

REPO_ROOT = Path(__file__).resolve().parent.parent
ENERGY_MODEL = REPO_ROOT / "tests" / "fixtures" / "models" / "energy_cry.tflite"
DEFAULT_MODEL = (
    REPO_ROOT / "custom_components" / "cry_detector" / "models" / "default.tflite"
)
CORPUS = REPO_ROOT.parent / "shared" / "data" / "cry-corpus"
RATE = 16000
CHUNK = 1600  # 0.1 s, like the live sources
BLOCK = 10 * RATE  # rendered at a time; also the room-tone clip length
EPOCH = 1_700_000_000.0  # the fake clock's start
WARM_UP_SECONDS = 600.0  # RSS is compared with its value after this much audio
RSS_LIMIT_BYTES = 5 * 1024 * 1024

FloatArray = npt.NDArray[np.float32]
Int16Array = npt.NDArray[np.int16]

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
from tests.engine import audio  # noqa: E402 - after making the repository importable


@dataclass(frozen=True)
class Engine:
    """The engine modules the soak uses (loaded by path, or the test's own imports)."""

    backends: ModuleType
    pipeline: ModuleType
    sources: ModuleType


def load_engine() -> Engine:
    """Register the engine folder as `cry_detector_engine` without importing Home Assistant."""
    sys.path.insert(0, str(REPO_ROOT / "training"))
    from cry_training._engine import (
        load_engine as load_by_path,
    )  # the one by-path loader

    load_by_path()
    return Engine(
        backends=importlib.import_module("cry_detector_engine.backends"),
        pipeline=importlib.import_module("cry_detector_engine.pipeline"),
        sources=importlib.import_module("cry_detector_engine.sources"),
    )


def rss_bytes() -> int:
    """Resident set size of this process now (Linux /proc; else the peak from getrusage)."""
    statm = Path("/proc/self/statm")
    if statm.is_file():
        return int(statm.read_text(encoding="ascii").split()[1]) * os.sysconf(
            "SC_PAGE_SIZE"
        )
    import resource  # POSIX only

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# --- audio pools and the timeline --------------------------------------------------------------


@dataclass
class Pools:
    """Clips the timeline is made of (float32, [-1, 1), 16 kHz)."""

    room: list[FloatArray]  # BLOCK samples each: the continuous background
    sounds: list[FloatArray]  # not crying, placed now and then
    cries: list[
        FloatArray
    ]  # one cry call (synthesised) or one crying clip (corpus) each
    cry_gap: tuple[float, float]  # pause between consecutive cry clips, seconds


def synthetic_pools(seed: int = 1) -> Pools:
    """Room tone, speech-like bursts, music, knocks and ~1 s cry calls from tests/engine/audio.py."""
    rng = np.random.default_rng(seed)
    room = [
        audio.room_tone(
            BLOCK / RATE, RATE, level_dbfs=float(rng.uniform(-58, -50)), seed=s
        )
        for s in range(12)
    ]
    sounds: list[Any] = []
    for s in range(8):
        sounds += [
            audio.speech_like(3.0, RATE, seed=s),
            audio.music(3.0, RATE, seed=s),
            audio.door_knocks(1.0, RATE, seed=s),
        ]
    cries = [
        audio.cry(
            float(rng.uniform(0.8, 1.2)),
            RATE,
            low_hz=float(rng.uniform(280, 340)),
            high_hz=float(rng.uniform(520, 620)),
            level_dbfs=float(rng.uniform(-24, -16)),
            seed=s,
        )
        for s in range(120)
    ]
    return Pools(
        room=[np.asarray(c, np.float32) for c in room],
        sounds=[np.asarray(c, np.float32) for c in sounds],
        cries=[np.asarray(c, np.float32) for c in cries],
        cry_gap=(0.05, 0.15),
    )


def corpus_pools(
    corpus: Path, crying: int = 150, other: int = 250, seed: int = 2
) -> Pools:
    """The synthetic room, with real corpus clips (decoded once) for the sounds and the cries."""
    rows = [
        line.split(",")
        for line in (corpus / "manifest.csv")
        .read_text(encoding="utf-8")
        .splitlines()[1:]
    ]
    rng = np.random.default_rng(seed)

    def pick(label: str, count: int) -> list[FloatArray]:
        paths = sorted(r[0] for r in rows if r[1] == label)
        chosen = rng.choice(len(paths), size=min(count, len(paths)), replace=False)
        return [
            audio.read_audio(corpus / paths[i], RATE).astype(np.float32) / 32768.0
            for i in sorted(chosen)
        ]

    room = synthetic_pools().room
    return Pools(
        room=room,
        sounds=pick("not_crying", other),
        cries=pick("crying", crying),
        cry_gap=(0.0, 0.3),
    )


@dataclass(frozen=True)
class Event:
    """A clip placed on the timeline at a sample position."""

    start: int
    clip: int  # index into sounds (kind "sound") or cries (kind "cry")
    kind: str

    def end(self, pools: Pools) -> int:
        """Sample position just after the clip."""
        clips = pools.cries if self.kind == "cry" else pools.sounds
        return self.start + int(clips[self.clip].shape[0])


@dataclass
class Timeline:
    """Where every clip goes, and the true cry episodes as (start, end) sample spans."""

    samples: int
    events: list[Event]
    episodes: list[tuple[int, int]]


def plan_timeline(
    pools: Pools,
    seconds: float,
    *,
    episodes_per_hour: float,
    episode_seconds: tuple[float, float],
    sounds_per_minute: float,
    seed: int = 3,
) -> Timeline:
    """Lay out cry episodes (log-uniform lengths, random quiet gaps) and other sounds between them."""
    rng = np.random.default_rng(seed)
    total = round(seconds * RATE)
    events: list[Event] = []
    episodes: list[tuple[int, int]] = []
    mean_gap = 3600.0 / episodes_per_hour
    position = round(rng.uniform(20.0, max(21.0, mean_gap / 2)) * RATE)
    low, high = (math.log(s) for s in episode_seconds)
    while True:
        length = math.exp(rng.uniform(low, high))
        calls, end = _cry_episode(pools, rng, position, length)
        if end + 20 * RATE > total:
            break
        events += calls
        episodes.append((position, end))
        position = end + round(max(30.0, rng.exponential(mean_gap)) * RATE)
    events += _sounds_between(pools, rng, total, episodes, sounds_per_minute)
    events.sort(key=lambda event: event.start)
    return Timeline(total, events, episodes)


def _cry_episode(
    pools: Pools, rng: np.random.Generator, start: int, length: float
) -> tuple[list[Event], int]:
    """Cry clips back to back (short breaths between) filling about `length` seconds."""
    calls, position = [], start
    while position - start < length * RATE:
        clip = int(rng.integers(len(pools.cries)))
        calls.append(Event(position, clip, "cry"))
        position += pools.cries[clip].shape[0]
        position += round(rng.uniform(*pools.cry_gap) * RATE)
    return calls, calls[-1].end(pools)


def _sounds_between(
    pools: Pools,
    rng: np.random.Generator,
    total: int,
    episodes: list[tuple[int, int]],
    per_minute: float,
) -> list[Event]:
    """Other sounds at random times, kept 10 s away from every episode."""
    events: list[Event] = []
    margin = 10 * RATE
    count = rng.poisson(per_minute * total / RATE / 60.0)
    for start in sorted(rng.integers(0, total - 10 * RATE, size=count)):
        clip = int(rng.integers(len(pools.sounds)))
        event = Event(int(start), clip, "sound")
        end = event.end(pools)
        if any(s - margin < end and start < e + margin for s, e in episodes):
            continue
        if events and events[-1].end(pools) > start:
            continue
        events.append(event)
    return events


class TimelineSource:
    """An AudioSource (duck-typed) rendering the timeline block by block into stamped chunks."""

    sample_rate = RATE
    description = "soak timeline"

    def __init__(
        self,
        engine: Engine,
        pools: Pools,
        timeline: Timeline,
        *,
        live: bool = False,
        speed: float | None = None,
        on_audio_second: Callable[[float], None] | None = None,
    ) -> None:
        """Offline (as fast as asked) unless `speed` paces it at that multiple of real time."""
        self.pools, self.timeline = pools, timeline
        self.live, self.speed = live, speed
        self._chunk = engine.sources.AudioChunk
        # Longest wait between two chunks handed out (no per-chunk history: constant memory).
        self.max_read_gap = 0.0
        self._last_read = 0.0
        self._on_audio_second = on_audio_second
        self._position = 0
        self._block: Int16Array = np.zeros(0, np.int16)
        self._block_start = 0
        self._next_event = 0
        self._began = 0.0

    async def open(self) -> None:
        """Start at the beginning."""
        self._began = self._last_read = time.monotonic()

    async def close(self) -> None:
        """Nothing to release."""

    async def read(self) -> Any:
        """The next 0.1 s chunk stamped on the fake clock, None at the end."""
        if self._position >= self.timeline.samples:
            return None
        offset = self._position - self._block_start
        if offset >= self._block.shape[0]:
            self._render(self._position)
            offset = 0
        samples = self._block[offset : offset + CHUNK]
        chunk = self._chunk(samples, EPOCH + self._position / RATE)
        self._position += samples.shape[0]
        if self.speed is not None:
            due = self._began + self._position / RATE / self.speed
            await asyncio.sleep(max(0.0, due - time.monotonic()))
        else:
            await asyncio.sleep(0)
        now = time.monotonic()
        self.max_read_gap = max(self.max_read_gap, now - self._last_read)
        self._last_read = now
        if self._on_audio_second is not None and self._position % (60 * RATE) < CHUNK:
            self._on_audio_second(self._position / RATE)
        return chunk

    def _render(self, start: int) -> None:
        """Mix room tone and every clip overlapping [start, start + BLOCK) into int16."""
        length = min(BLOCK, self.timeline.samples - start)
        room = self.pools.room[(start // BLOCK * 7919) % len(self.pools.room)]
        block = room[:length].copy()
        events = self.timeline.events
        while (
            self._next_event < len(events)
            and events[self._next_event].end(self.pools) <= start
        ):
            self._next_event += 1
        index = self._next_event
        while index < len(events) and events[index].start < start + length:
            event = events[index]
            clip = (self.pools.cries if event.kind == "cry" else self.pools.sounds)[
                event.clip
            ]
            lo, hi = max(start, event.start), min(start + length, event.end(self.pools))
            if lo < hi:
                block[lo - start : hi - start] += clip[
                    lo - event.start : hi - event.start
                ]
            index += 1
        self._block = np.clip(np.round(block * 32768.0), -32768, 32767).astype(np.int16)
        self._block_start = start


# --- running and scoring -----------------------------------------------------------------------


@dataclass
class Collected:
    """What came out of the pipeline (kept small: no per-window history)."""

    windows: int = 0
    episodes: list[tuple[float, float]] = field(default_factory=list)
    credited: float = 0.0
    max_probability: float = 0.0

    def __call__(self, result: Any) -> None:
        """on_result."""
        if result.end > result.start:
            self.windows += 1
            self.max_probability = max(self.max_probability, result.probability)
        if result.update.ended is not None:
            self.episodes.append((result.update.ended.start, result.update.ended.end))
        self.credited += sum(end - start for start, end in result.update.credited)


@dataclass(frozen=True)
class Score:
    """Measured episodes against the truth."""

    true_episodes: int
    found: int
    missed: int
    false_episodes: int
    split: int  # true episodes measured as more than one
    true_seconds: float
    measured_seconds: float
    max_start_error: float  # |measured - true| per matched episode, seconds
    max_end_error: float
    max_duration_error: float


def score(measured: list[tuple[float, float]], truth: list[tuple[int, int]]) -> Score:
    """Match measured episodes to true ones by overlap; edge and duration errors of the matches."""
    spans = [(EPOCH + s / RATE, EPOCH + e / RATE) for s, e in truth]
    used: set[int] = set()
    start_errors, end_errors, duration_errors = [0.0], [0.0], [0.0]
    found = split = 0
    for start, end in spans:
        hits = [
            i for i, (s, e) in enumerate(measured) if s < end + 1.0 and e > start - 1.0
        ]
        used.update(hits)
        if not hits:
            continue
        found += 1
        split += len(hits) > 1
        first, last = measured[hits[0]], measured[hits[-1]]
        start_errors.append(abs(first[0] - start))
        end_errors.append(abs(last[1] - end))
        duration = sum(measured[i][1] - measured[i][0] for i in hits)
        duration_errors.append(abs(duration - (end - start)))
    return Score(
        true_episodes=len(spans),
        found=found,
        missed=len(spans) - found,
        false_episodes=len(measured) - len(used),
        split=split,
        true_seconds=sum(e - s for s, e in spans),
        measured_seconds=sum(e - s for s, e in measured),
        max_start_error=max(start_errors),
        max_end_error=max(end_errors),
        max_duration_error=max(duration_errors),
    )


@dataclass(frozen=True)
class SoakResult:
    """Figures of one accelerated run."""

    audio_seconds: float
    wall_seconds: float
    cpu_seconds: float
    rss_warm: int
    rss_end: int
    rss_max: int
    rss_samples: list[tuple[float, int]]
    stats: Any
    score: Score
    credited_seconds: float
    windows: int
    expected_windows: int

    @property
    def rss_growth(self) -> int:
        """RSS at the end minus RSS after warm-up, bytes."""
        return self.rss_end - self.rss_warm

    @property
    def speed(self) -> float:
        """Audio seconds per wall second."""
        return self.audio_seconds / self.wall_seconds


async def soak(
    engine: Engine,
    model: Path,
    pools: Pools,
    timeline: Timeline,
    *,
    warm_up_seconds: float = WARM_UP_SECONDS,
) -> SoakResult:
    """Push the whole timeline through a Pipeline as fast as it goes; sample RSS every minute."""
    card, backend = engine.backends.load_model(model)
    samples: list[tuple[float, int]] = []

    def sample_rss(at: float) -> None:
        if at >= warm_up_seconds - 1e-6:
            samples.append((at, rss_bytes()))

    collected = Collected()
    source = at_model_rate(
        TimelineSource(engine, pools, timeline, on_audio_second=sample_rss),
        card,
        engine,
    )
    pipeline = engine.pipeline.Pipeline(
        source, card, backend, card.tracker_config(), collected
    )
    gc.collect()
    cpu, wall = time.process_time(), time.perf_counter()
    try:
        await source.open()
        await pipeline.run()
    finally:
        backend.close()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    gc.collect()
    end = rss_bytes()
    warm = samples[0][1] if samples else end
    return SoakResult(
        audio_seconds=timeline.samples / RATE,
        wall_seconds=wall,
        cpu_seconds=cpu,
        rss_warm=warm,
        rss_end=end,
        rss_max=max([end, *(rss for _, rss in samples)]),
        rss_samples=samples,
        stats=pipeline.stats,
        score=score(collected.episodes, timeline.episodes),
        credited_seconds=collected.credited,
        windows=collected.windows,
        expected_windows=expected_windows(timeline.samples, card.features),
    )


def expected_windows(samples: int, features: Any = None) -> int:
    """Windows a gap-free run of this many timeline samples gives (default features: 16 kHz)."""
    if features is None:
        patch, hop = 99 * 160 + 400, 8000
    else:
        samples = samples * features.sample_rate // RATE
        patch = features.patch_samples
        hop = features.patch_hop_frames * features.hop_length
    return 0 if samples < patch else (samples - patch) // hop + 1


class ResampledSource:
    """A source's audio resampled (libswresample, through PyAV) to another rate, restamped.

    Chunks are stamped by the samples handed out so far, so the resampler's filter delay never
    looks like a gap in the audio.
    """

    description = "soak timeline (resampled)"

    def __init__(self, inner: Any, rate: int, engine: Engine) -> None:
        """Wrap `inner` (which delivers int16 mono at its own rate)."""
        import av

        self.inner, self.sample_rate = inner, rate
        self._chunk = engine.sources.AudioChunk
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        self._start: float | None = None
        self._produced = 0
        self._flushed = False

    @property
    def live(self) -> bool:
        """Whether the wrapped source is live (paced, may drop) or a file-like one."""
        return bool(self.inner.live)

    async def open(self) -> None:
        """Open the wrapped source."""
        await self.inner.open()

    async def close(self) -> None:
        """Close the wrapped source."""
        await self.inner.close()

    async def read(self) -> Any:
        """The next resampled chunk; the resampler's tail after the last one; then None."""
        import av

        chunk = await self.inner.read()
        if chunk is None:
            if self._flushed:
                return None
            self._flushed = True
            frames = self._resampler.resample(None)
        else:
            if self._start is None:
                self._start = chunk.start
            frame = av.AudioFrame.from_ndarray(
                chunk.samples.reshape(1, -1), format="s16", layout="mono"
            )
            frame.sample_rate = self.inner.sample_rate
            frames = self._resampler.resample(frame)
        pieces = [frame.to_ndarray().reshape(-1) for frame in frames]
        samples = np.concatenate(pieces) if pieces else np.zeros(0, np.int16)
        start = (self._start or 0.0) + self._produced / self.sample_rate
        self._produced += samples.shape[0]
        return self._chunk(samples.astype(np.int16), start)


def at_model_rate(source: Any, card: Any, engine: Engine) -> Any:
    """The source itself, or resampled when the model wants another sample rate."""
    rate = card.features.sample_rate
    return (
        source if rate == source.sample_rate else ResampledSource(source, rate, engine)
    )


@dataclass(frozen=True)
class PacedResult:
    """Figures of a live, paced run."""

    audio_seconds: float
    wall_seconds: float
    windows: int
    expected_windows: int
    overruns: int
    max_read_gap: (
        float  # longest wait between two chunks handed to the pipeline, seconds
    )
    processed_seconds: float
    stats: Any


class SlowBackend:
    """A real backend that sleeps before every prediction (a much slower CPU)."""

    def __init__(self, inner: Any, seconds: float) -> None:
        """Wrap inner."""
        self.inner, self.seconds = inner, seconds
        self.name = f"slow {inner.name}"
        self.input_shape, self.output_shape = inner.input_shape, inner.output_shape

    def predict(self, patch: np.ndarray) -> Any:
        """Sleep, then predict."""
        time.sleep(self.seconds)
        return self.inner.predict(patch)

    def close(self) -> None:
        """Close the inner backend."""
        self.inner.close()


async def paced(
    engine: Engine,
    model: Path,
    pools: Pools,
    seconds: float,
    *,
    speed: float,
    slow_predict: float = 0.0,
    queue_seconds: float = 5.0,
) -> PacedResult:
    """A live source at `speed` x real time (1.0: normal speed) into a Pipeline."""
    card, backend = engine.backends.load_model(model)
    if slow_predict:
        backend = SlowBackend(backend, slow_predict)
    timeline = plan_timeline(
        pools,
        seconds,
        episodes_per_hour=60.0,
        episode_seconds=(5.0, 20.0),
        sounds_per_minute=2.0,
    )
    collected = Collected()
    timeline_source = TimelineSource(engine, pools, timeline, live=True, speed=speed)
    source = at_model_rate(timeline_source, card, engine)
    pipeline = engine.pipeline.Pipeline(
        source,
        card,
        backend,
        card.tracker_config(),
        collected,
        queue_seconds=queue_seconds,
    )
    wall = time.perf_counter()
    try:
        await source.open()
        await pipeline.run()
    finally:
        backend.close()
    wall = time.perf_counter() - wall
    stats = pipeline.stats
    return PacedResult(
        audio_seconds=timeline.samples / RATE,
        wall_seconds=wall,
        windows=collected.windows,
        expected_windows=expected_windows(timeline.samples, card.features),
        overruns=stats.overruns,
        max_read_gap=timeline_source.max_read_gap,
        processed_seconds=stats.audio_seconds,
        stats=stats,
    )


# --- printing ----------------------------------------------------------------------------------


def mib(value: float) -> str:
    """Bytes as MiB with sign."""
    return f"{value / 1048576:+.2f} MiB"


def print_soak(title: str, result: SoakResult, *, exact: bool) -> None:
    """Print one accelerated run."""
    s, stats = result.score, result.stats
    hours = result.audio_seconds / 3600
    print(f"{title}: {hours:.2f} h of audio")
    print(
        f"  throughput: {result.speed:,.0f}x real time ({result.wall_seconds:.1f} s wall), "
        f"CPU {result.cpu_seconds / result.audio_seconds * 1000:.2f} ms per audio second, "
        f"worker real-time factor {stats.real_time_factor:.5f}"
    )
    print(
        f"  windows {result.windows:,} (stats {stats.windows:,}), overruns {stats.overruns}, "
        f"inference errors {stats.inference_errors}, stalls {stats.stalls}, "
        f"inference {stats.inference_ms_mean:.3f} ms mean / {stats.inference_ms_p95:.3f} ms p95"
    )
    print(
        f"  RSS after warm-up {result.rss_warm / 1048576:.1f} MiB, at the end "
        f"{result.rss_end / 1048576:.1f} MiB: growth {mib(result.rss_growth)} "
        f"(max {mib(result.rss_max - result.rss_warm)}; limit +{RSS_LIMIT_BYTES / 1048576:.0f} MiB)"
    )
    if len(result.rss_samples) > 2:
        hourly = result.rss_samples[:: max(1, len(result.rss_samples) // 8)]
        print(
            "  RSS over time: "
            + ", ".join(f"{at / 3600:.1f} h {rss / 1048576:.1f}" for at, rss in hourly)
        )
    error = s.measured_seconds - s.true_seconds
    print(
        f"  episodes: {s.true_episodes} true, {s.found} found, {s.missed} missed, "
        f"{s.split} split, {s.false_episodes} false"
    )
    print(
        f"  cry minutes: measured {s.measured_seconds / 60:.3f}, "
        f"{'true' if exact else 'labelled'} {s.true_seconds / 60:.3f} "
        f"(error {error:+.2f} s, {error / max(s.true_episodes, 1):+.3f} s per episode); "
        f"credited {result.credited_seconds / 60:.3f}"
    )
    print(
        f"  worst per-episode error: start {s.max_start_error:.3f} s, end {s.max_end_error:.3f} s, "
        f"duration {s.max_duration_error:.3f} s (one hop = 0.5 s)"
    )


def print_paced(title: str, result: PacedResult) -> None:
    """Print one live run."""
    print(
        f"{title}: {result.audio_seconds:.0f} s of audio in {result.wall_seconds:.1f} s wall; "
        f"windows {result.windows}/{result.expected_windows}, overruns {result.overruns} "
        f"({max(0.0, result.audio_seconds - result.processed_seconds):.1f} s of audio dropped), "
        f"longest wait between chunks {result.max_read_gap * 1000:.0f} ms, "
        f"inference {result.stats.inference_ms_mean:.1f} ms mean"
    )


def main(argv: list[str] | None = None) -> None:
    """Run the soak and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    hours = float(os.environ.get("CRY_DETECTOR_SOAK_HOURS") or "24")
    parser.add_argument("--hours", type=float, default=hours)
    parser.add_argument("--corpus-hours", type=float, help="default: --hours")
    parser.add_argument("--realtime-seconds", type=float, default=120.0)
    parser.add_argument("--overrun-seconds", type=float, default=30.0)
    args = parser.parse_args(argv)
    engine = load_engine()
    print(
        f"Cry Detector soak, Python {sys.version.split()[0]}, "
        f"backends {engine.backends.available_backends()}"
    )
    asyncio.run(run_all(engine, args))


async def run_all(engine: Engine, args: argparse.Namespace) -> None:
    """The four runs."""
    pools = synthetic_pools()
    timeline = plan_timeline(
        pools,
        args.hours * 3600,
        episodes_per_hour=3.0,
        episode_seconds=(5.0, 300.0),
        sounds_per_minute=1.0,
    )
    result = await soak(engine, ENERGY_MODEL, pools, timeline)
    print_soak("exact (energy model, synthesised cries)", result, exact=True)
    corpus_hours = args.corpus_hours if args.corpus_hours is not None else args.hours
    if (CORPUS / "manifest.csv").is_file() and corpus_hours > 0:
        began = time.perf_counter()
        real = corpus_pools(CORPUS)
        print(
            f"corpus: decoded {len(real.cries)} crying and {len(real.sounds)} other clips "
            f"in {time.perf_counter() - began:.1f} s"
        )
        timeline = plan_timeline(
            real,
            corpus_hours * 3600,
            episodes_per_hour=3.0,
            episode_seconds=(10.0, 300.0),
            sounds_per_minute=1.0,
            seed=4,
        )
        result = await soak(engine, DEFAULT_MODEL, real, timeline)
        print_soak("corpus (default model, real clips)", result, exact=False)
    elif corpus_hours > 0:
        print(f"corpus: {CORPUS} not found, skipped")
    live = await paced(engine, ENERGY_MODEL, pools, args.realtime_seconds, speed=1.0)
    print_paced("realtime (live, normal speed)", live)
    slow = await paced(
        engine, ENERGY_MODEL, pools, args.overrun_seconds, speed=10.0, slow_predict=0.15
    )
    print_paced("overrun (live 10x, 150 ms per prediction)", slow)


if __name__ == "__main__":
    main()
