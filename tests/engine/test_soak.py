"""The soak benchmark (benchmarks/soak.py) as a test: short by default, a full day on request.

CRY_DETECTOR_SOAK_HOURS=24 scripts/run python -m pytest -q tests/engine/test_soak.py -s
runs the exact soak for 24 hours of audio (a few minutes); the default is a quarter of an hour.
"""

from __future__ import annotations

from dataclasses import replace
import itertools
import os
from pathlib import Path

import pytest

from benchmarks import soak
from custom_components.cry_detector.engine import (
    backends,
    card as card_module,
    pipeline,
    sources,
)

HOURS = float(os.environ.get("CRY_DETECTOR_SOAK_HOURS") or "0.2")
ENGINE = soak.Engine(backends=backends, pipeline=pipeline, sources=sources)
HOP = 0.5
# The energy model calls a 1.015 s patch crying once 45 % of it is cry, so a measured edge can lie
# up to 0.058 s beyond the window grid's half second: per episode allow one hop plus that.
EDGE = HOP + 0.1


@pytest.fixture(scope="module")
def pools() -> soak.Pools:
    """The synthetic clips (room tone, distractors, cry calls)."""
    return soak.synthetic_pools()


def plan(pools: soak.Pools, hours: float) -> soak.Timeline:
    """Frequent episodes on short runs (so there are some), the benchmark's mix on long ones."""
    short = hours < 2
    return soak.plan_timeline(
        pools,
        hours * 3600,
        episodes_per_hour=20.0 if short else 3.0,
        episode_seconds=(5.0, 60.0 if short else 300.0),
        sounds_per_minute=1.0,
    )


def test_the_timeline_holds_what_it_promises(pools: soak.Pools) -> None:
    timeline = plan(pools, 0.25)
    assert len(timeline.episodes) >= 3
    cries = [e for e in timeline.events if e.kind == "cry"]
    for start, end in timeline.episodes:
        inside = [e for e in cries if start <= e.start < end]
        assert inside[0].start == start and inside[-1].end(pools) == end
    sounds = [e for e in timeline.events if e.kind == "sound"]
    assert sounds
    for sound in sounds:  # other sounds keep 10 s away from crying
        assert all(
            sound.end(pools) <= s - 10 * soak.RATE or sound.start >= e + 10 * soak.RATE
            for s, e in timeline.episodes
        )


async def test_soak_memory_and_cry_minutes(pools: soak.Pools) -> None:
    timeline = plan(pools, HOURS)
    result = await soak.soak(
        ENGINE,
        soak.ENERGY_MODEL,
        pools,
        timeline,
        warm_up_seconds=min(soak.WARM_UP_SECONDS, HOURS * 3600 / 5),
    )
    soak.print_soak("exact soak", result, exact=True)
    assert result.rss_growth < soak.RSS_LIMIT_BYTES
    stats, score = result.stats, result.score
    assert stats.overruns == 0 and stats.inference_errors == 0
    assert result.windows == stats.windows == result.expected_windows
    assert result.expected_windows == soak.expected_windows(timeline.samples)
    assert score.found == score.true_episodes == len(timeline.episodes)
    assert score.false_episodes == score.split == 0
    assert score.max_duration_error <= EDGE
    assert score.max_start_error <= EDGE and score.max_end_error <= EDGE
    # in total: within one hop per episode
    assert abs(score.measured_seconds - score.true_seconds) <= HOP * score.true_episodes
    assert result.credited_seconds == pytest.approx(score.measured_seconds, abs=1e-3)


async def test_a_model_at_another_rate_gets_seamless_resampled_audio(
    pools: soak.Pools,
) -> None:
    """16 kHz timeline -> 8 kHz chunks: half the samples, stamped back to back, no gap."""
    timeline = plan(pools, 0.01)  # 36 s
    energy = card_module.load_card(card_module.card_path_for(soak.ENERGY_MODEL))
    features = replace(
        energy.features,
        sample_rate=8000,
        window_length=200,
        hop_length=80,
        fft_length=256,
    )
    card = replace(energy, features=features)
    source = soak.at_model_rate(
        soak.TimelineSource(ENGINE, pools, timeline), card, ENGINE
    )
    assert source.sample_rate == 8000 and source.live is False  # as the timeline
    chunks = []
    await source.open()
    try:
        while (chunk := await source.read()) is not None:
            chunks.append(chunk)
    finally:
        await source.close()
    total = sum(chunk.samples.shape[0] for chunk in chunks)
    assert abs(total - timeline.samples // 2) <= 1
    for before, after in itertools.pairwise(chunks):
        assert after.start == pytest.approx(
            before.start + before.samples.shape[0] / 8000, abs=1e-6
        )
    assert soak.expected_windows(timeline.samples, card.features) == (
        (timeline.samples // 2 - card.features.patch_samples) // 4000 + 1
    )


async def test_normal_speed_drops_no_window(pools: soak.Pools) -> None:
    result = await soak.paced(ENGINE, soak.ENERGY_MODEL, pools, 3.0, speed=1.0)
    soak.print_paced("realtime", result)
    assert result.overruns == 0
    assert result.windows == result.expected_windows == 4
    assert result.wall_seconds >= 2.9  # it really was paced


async def test_slow_backend_overruns_are_counted_and_the_reader_never_waits(
    pools: soak.Pools,
) -> None:
    result = await soak.paced(
        ENGINE,
        soak.ENERGY_MODEL,
        pools,
        4.0,
        speed=10.0,
        slow_predict=0.4,
        queue_seconds=1.0,
    )
    soak.print_paced("overrun", result)
    assert result.overruns > 0
    assert result.windows < result.expected_windows
    # a chunk every 10 ms: a reader waiting for a 400 ms prediction would show it here
    assert result.max_read_gap < 0.2
    assert result.processed_seconds + 0.1 * result.overruns == pytest.approx(4.0)


@pytest.fixture(scope="module")
def corpus() -> soak.Pools:
    """A few real clips, decoded once (skips without the corpus)."""
    if not (soak.CORPUS / "manifest.csv").is_file():
        pytest.skip("cry corpus not available")
    return soak.corpus_pools(soak.CORPUS, crying=12, other=20)


async def test_default_model_on_corpus_audio_runs_clean(corpus: soak.Pools) -> None:
    """Real clips through the bundled model: healthy pipeline; accuracy is only reported."""
    assert Path(soak.DEFAULT_MODEL).is_file()
    timeline = soak.plan_timeline(
        corpus,
        480.0,
        episodes_per_hour=20.0,
        episode_seconds=(10.0, 60.0),
        sounds_per_minute=2.0,
        seed=4,
    )
    result = await soak.soak(
        ENGINE, soak.DEFAULT_MODEL, corpus, timeline, warm_up_seconds=120.0
    )
    soak.print_soak("corpus (default model)", result, exact=False)
    assert result.stats.overruns == 0 and result.stats.inference_errors == 0
    assert result.windows == result.expected_windows
    assert result.score.true_episodes > 0
