"""Clock steps (NTP, a wrong RTC corrected) under running audio: nothing lost, nothing double-counted.

Stamps come from the source's clock. When it jumps, live sources move their time base with it and
mark the next chunk `restamped`; the pipeline then shifts the tracker's time instead of treating
the jump as a gap, so an open episode goes on and the jump itself is never credited.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

from hypothesis import given, settings, strategies as st
import numpy as np
import pytest

from custom_components.cry_detector.engine.backends import Backend, load_model
from custom_components.cry_detector.engine.card import ModelCard
from custom_components.cry_detector.engine.pipeline import Pipeline, WindowResult
from custom_components.cry_detector.engine.sources import (
    AudioChunk,
    ChunkAssembler,
    FileSource,
)
from custom_components.cry_detector.engine.tracker import (
    EpisodeTracker,
    TrackerConfig,
    TrackerUpdate,
)

from .audio import room_tone, scene, to_int16, write_audio
from .test_pipeline import ListSource
from .test_tracker import CRISP, T0, Run, approx_episodes, cry, seconds, spans

MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "models"
RATE = 16000
HOUR = 3600.0


# --- tracker ---------------------------------------------------------------------------------


def shifted_run(offset: float) -> Run:
    """3 s of crying, the clock stepped by offset, 2 s more crying, then quiet."""
    run = Run(EpisodeTracker(CRISP))
    run.feed(cry(3))
    run.tracker.shift_time(offset)
    run.clock += offset
    run.feed(cry(2) + seconds(5))
    return run


@pytest.mark.parametrize("offset", [HOUR, 3.0, -3.0, -HOUR])
def test_clock_step_inside_an_episode_keeps_one_episode(offset: float) -> None:
    """Forwards or backwards, short or long: one 5 s episode, 5 s credited, the jump never."""
    run = shifted_run(offset)
    assert len(run.started) == 1
    assert spans(run.ended) == approx_episodes([(offset, offset + 5)])
    assert run.tracker.total_cry_seconds == pytest.approx(5.0)
    assert sum(e - s for s, e in run.credited) == pytest.approx(5.0)
    assert run.credited[0] == pytest.approx(
        (0.0, 2.0)
    )  # credited before the step: as it was


def test_unmarked_jump_is_a_gap_not_a_clock_step() -> None:
    """Without shift_time the same jump is a pause (3 s credited) or a split (two episodes)."""
    short = Run(EpisodeTracker(CRISP))
    short.feed(cry(3))
    short.skip(3.0)
    short.feed(cry(2) + seconds(5))
    assert short.tracker.total_cry_seconds == pytest.approx(8.0)
    long = Run(EpisodeTracker(CRISP))
    long.feed(cry(3))
    long.skip(HOUR)
    long.feed(cry(2) + seconds(5))
    assert len(long.ended) == 2


def test_clock_step_inside_a_pending_run_keeps_the_run() -> None:
    """1.5 s + 1 s of crying across a step is one 2.5 s run: an episode from the run's start."""
    run = Run(EpisodeTracker(CRISP))
    run.feed(seconds(1) + cry(1.5))
    run.tracker.shift_time(-HOUR)
    run.clock -= HOUR
    run.feed(cry(1) + seconds(5))
    assert spans(run.ended) == approx_episodes([(1 - HOUR, 3.5 - HOUR)])


def test_cooldown_counts_audio_time_across_a_step_back() -> None:
    """A step back by an hour neither extends nor cuts the cooldown."""
    config = TrackerConfig(smoothing_windows=1, hold_seconds=1.0, cooldown_seconds=5.0)
    run = Run(EpisodeTracker(config))
    run.feed(cry(3) + seconds(1))  # episode (0, 3) ends at 4
    run.tracker.shift_time(-HOUR)
    run.clock -= HOUR
    run.feed(seconds(1) + cry(3))  # starts at 5 - HOUR: still inside the cooldown
    run.feed(seconds(2) + cry(3) + seconds(2))  # starts at 10 - HOUR: after it
    assert spans(run.ended) == approx_episodes([(0, 3), (10 - HOUR, 13 - HOUR)])


def test_shift_time_refuses_nonsense() -> None:
    """A step must be a finite number of seconds."""
    tracker = EpisodeTracker(CRISP)
    with pytest.raises(ValueError, match="finite"):
        tracker.shift_time(float("nan"))


STEPS = st.lists(
    st.tuples(
        st.floats(0.0, 1.0) | st.sampled_from([0.0, 0.5, 0.9, 1.0]),  # probability
        st.sampled_from(
            [0.0] * 6 + [1.0, -1.0, 7.5, -7.5, 1e5, -1e5]
        ),  # clock step before
    ),
    max_size=150,
)


def totals(updates: list[TrackerUpdate]) -> tuple[float, list[float]]:
    """Credited seconds and the episode durations of a run."""
    credited = sum(e - s for u in updates for s, e in u.credited)
    return credited, [u.ended.duration for u in updates if u.ended]


@settings(max_examples=200, deadline=None)
@given(windows=STEPS, smoothing=st.integers(1, 3), cooldown=st.sampled_from([0.0, 3.0]))
def test_clock_steps_never_change_what_is_counted(
    windows: list[tuple[float, float]], smoothing: int, cooldown: float
) -> None:
    """Any steps between windows: exactly the cry time and episodes of the run without them."""
    config = TrackerConfig(smoothing_windows=smoothing, cooldown_seconds=cooldown)
    steady, stepped = EpisodeTracker(config), EpisodeTracker(config)
    steady_updates, stepped_updates = [], []
    offset = 0.0
    for index, (probability, step) in enumerate(windows):
        start = T0 + index * 0.5
        steady_updates.append(steady.update(start, start + 0.5, probability))
        if step:
            stepped.shift_time(step)
            offset += step
        stepped_updates.append(
            stepped.update(start + offset, start + offset + 0.5, probability)
        )
    steady_updates.append(steady.flush())
    stepped_updates.append(stepped.flush())
    steady_total, steady_episodes = totals(steady_updates)
    stepped_total, stepped_episodes = totals(stepped_updates)
    assert stepped_total == pytest.approx(steady_total, abs=1e-6)
    assert stepped_episodes == pytest.approx(steady_episodes, abs=1e-6)
    assert stepped.total_cry_seconds == pytest.approx(
        steady.total_cry_seconds, abs=1e-6
    )


# --- sources ---------------------------------------------------------------------------------


def test_assembler_marks_the_chunk_after_a_shift() -> None:
    """shift() restamps the next chunk; skip() (lost samples) or rebase() never do."""
    assembler = ChunkAssembler(RATE, 1600)
    assembler.rebase(100.0)
    assembler.push(np.ones(1600 * 5, np.int16))
    assert not assembler.pop().restamped  # type: ignore[union-attr]
    assembler.shift(50.0)
    shifted = assembler.pop()
    assert shifted is not None and shifted.restamped
    assert shifted.start == pytest.approx(150.1)
    assert not assembler.pop().restamped  # type: ignore[union-attr]
    assembler.shift(-50.0)
    assembler.skip(1600)  # samples were lost too: a gap, not a pure clock step
    assembler.push(np.ones(1600, np.int16))
    assert not assembler.pop().restamped  # type: ignore[union-attr]


@pytest.mark.parametrize("step", [HOUR, -HOUR])
async def test_realtime_file_follows_a_clock_step_without_bursting_or_pausing(
    tmp_path: Path, step: float
) -> None:
    """The audio goes on at its pace; its stamps jump with the clock, once."""
    samples = (np.arange(RATE * 3) % 3000).astype(np.int16)
    path = write_audio(tmp_path / "ramp.wav", samples, RATE)
    now = [500.0]
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    chunks: list[AudioChunk] = []
    async with FileSource(
        path, realtime=True, clock=lambda: now[0], sleep=fake_sleep
    ) as source:
        while (chunk := await source.read()) is not None:
            chunks.append(chunk)
            if len(chunks) == 10:
                now[0] += step
    np.testing.assert_array_equal(np.concatenate([c.samples for c in chunks]), samples)
    assert [c.restamped for c in chunks].count(True) == 1 and chunks[10].restamped
    assert chunks[10].start == pytest.approx(chunks[9].start + 0.1 + step)
    assert np.diff([c.start for c in chunks[10:]]) == pytest.approx(0.1)
    assert max(sleeps) == pytest.approx(0.1)  # neither waiting out the hour nor rushing
    assert len(sleeps) == len(chunks)


async def test_small_clock_jitter_is_not_a_step(tmp_path: Path) -> None:
    """A consumer late by a second keeps the stamps (no restamp below 2 s)."""
    path = write_audio(tmp_path / "room.wav", room_tone(2.0), RATE)
    now = [500.0]

    async def fake_sleep(seconds: float) -> None:
        now[0] += seconds

    async with FileSource(
        path, realtime=True, clock=lambda: now[0], sleep=fake_sleep
    ) as source:
        first = await source.read()
        now[0] += 1.0
        rest = [await source.read() for _ in range(5)]
    assert first is not None and all(c is not None and not c.restamped for c in rest)
    assert [c.start for c in rest if c] == pytest.approx(
        [500.1 + 0.1 * i for i in range(5)]
    )


# --- pipeline --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def energy() -> Iterator[tuple[ModelCard, Backend]]:
    """The hand-wired cry-band energy model (tests/fixtures/make_energy_model.py)."""
    card, backend = load_model(MODELS / "energy_cry.tflite")
    yield card, backend
    backend.close()


async def run_realtime(
    path: Path, card: ModelCard, backend: Backend, step: float, step_at: float
) -> tuple[list[WindowResult], Pipeline]:
    """Play the file as a live source on a fake clock that steps once at audio time step_at."""
    now = [5000.0]
    stepped = [False]

    async def quick_sleep(seconds: float) -> None:
        now[0] += seconds
        if not stepped[0] and now[0] >= 5000.0 + step_at:
            stepped[0] = True
            now[0] += step
        await asyncio.sleep(seconds / 100)

    results: list[WindowResult] = []
    async with FileSource(
        path, realtime=True, clock=lambda: now[0], sleep=quick_sleep
    ) as source:
        pipeline = Pipeline(
            source,
            card,
            backend,
            card.tracker_config(),
            results.append,
            queue_seconds=60.0,  # live, but never dropping on a busy test machine
        )
        await pipeline.run()
    return results, pipeline


def episodes_of(results: list[WindowResult]) -> list[tuple[float, float]]:
    """(start, end) of every finished episode."""
    return [
        (r.update.ended.start, r.update.ended.end) for r in results if r.update.ended
    ]


@pytest.mark.parametrize("step", [HOUR, 3.0, -HOUR])
async def test_pipeline_counts_an_episode_across_a_clock_step_once(
    tmp_path: Path, energy: tuple[ModelCard, Backend], step: float
) -> None:
    """Cry 4-16 s, the clock steps at 9 s: one 12 s episode, every window as without the step."""
    card, backend = energy
    samples = to_int16(scene(22.0, cries=[(4.0, 16.0)], seed=3, distractors=False))
    path = write_audio(tmp_path / "cry.wav", samples, RATE)
    steady, steady_pipeline = await run_realtime(path, card, backend, 0.0, 1e9)
    stepped, pipeline = await run_realtime(path, card, backend, step, 9.0)

    assert [r.probability for r in stepped] == pytest.approx(
        [r.probability for r in steady], abs=1e-6
    )  # the features were not restarted at the step
    (steady_episode,) = episodes_of(steady)
    assert steady_episode[0] - 5000.0 == pytest.approx(4.0, abs=0.5)
    assert steady_episode[1] - 5000.0 == pytest.approx(16.0, abs=0.5)
    (episode,) = episodes_of(stepped)
    assert episode[1] - episode[0] == pytest.approx(
        steady_episode[1] - steady_episode[0], abs=1e-6
    )
    assert episode[0] == pytest.approx(steady_episode[0] + step, abs=1e-6)
    credited = sum(e - s for r in stepped for s, e in r.update.credited)
    assert credited == pytest.approx(episode[1] - episode[0], abs=1e-6)
    assert pipeline.tracker.total_cry_seconds == pytest.approx(
        steady_pipeline.tracker.total_cry_seconds, abs=1e-6
    )
    assert (pipeline.stats.restamps, steady_pipeline.stats.restamps) == (1, 0)
    assert pipeline.stats.overruns == 0
    ends = [r.end for r in stepped if r.end > r.start]
    jumps = np.diff(ends) - 0.5
    assert np.count_nonzero(np.abs(jumps) > 1e-3) == 1


async def test_unmarked_stamp_jump_is_still_a_gap(
    energy: tuple[ModelCard, Backend],
) -> None:
    """A source that jumps without saying so (restamped False) gets a gap: features restart."""
    card, backend = energy
    samples = to_int16(scene(6.0, cries=[(0.5, 6.0)], seed=4, distractors=False))
    chunks = [
        AudioChunk(samples[i : i + 1600], (0.0 if i < 48000 else 100.0) + i / RATE)
        for i in range(0, samples.size, 1600)
    ]
    marked = [
        AudioChunk(c.samples, c.start, restamped=c.start >= 100.0 and i == 30)
        for i, c in enumerate(chunks)
    ]
    counts = []
    for stream in (chunks, marked):
        results: list[WindowResult] = []
        pipeline = Pipeline(
            ListSource(stream),
            card,
            backend,
            card.tracker_config(),
            results.append,
            backpressure=True,
        )
        await pipeline.run()
        counts.append(len([r for r in results if r.end > r.start]))
    # 3 s + 3 s: a gap costs the second part its first second of windows; a restamp costs none
    assert counts == [4 + 4, 10]
