"""Operating points: the offline tracker replay matches the live stream; the frontier is right."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from test_evaluate import RuleBackend, _card, _noise_alarm_cries

from cry_training._engine import engine_module
from cry_training.dataset import Clip
from cry_training.evaluate import EvalOptions, evaluate_backend
from cry_training.operating import (
    Captured,
    _trim_for,
    episodes,
    frontier,
    operating_points,
    recommend,
    table_lines,
)

RATE = 16000
TrackerConfig = engine_module("tracker").TrackerConfig


@pytest.fixture
def clips(tmp_path: Path) -> list[Clip]:
    return _noise_alarm_cries(
        tmp_path, 4, noises=(4, 8.0), alarm_seconds=2.0, cries=(3, 8.0)
    )


def test_offline_tracker_replay_matches_the_live_stream(clips: list[Clip]) -> None:
    card = _card(threshold=0.5)
    live = evaluate_backend(
        card, RuleBackend(), clips, EvalOptions(progress=False, negative_hours=0.05)
    )
    result = operating_points(card, RuleBackend(), clips, negative_hours=0.05)
    mine = result["card_point"]
    assert mine["episode_recall"] == live["stream"]["episode_recall"]
    assert mine["cry_minute_error"] == pytest.approx(
        live["stream"]["cry_minute_error"], abs=1e-4
    )
    long = live["long_stream"]
    assert mine["false_episodes_per_24h"] == pytest.approx(
        long["false_episodes_per_24h"], rel=1e-3
    )
    assert result["cries"] == 3


def test_frontier_is_the_best_recall_under_each_ceiling(clips: list[Clip]) -> None:
    result = operating_points(_card(), RuleBackend(), clips, negative_hours=0.05)
    points = result["points"]
    assert len(points) == 7 * 4 * 4 * 3 * 2
    assert {(p["hysteresis"], p["hold_seconds"]) for p in points} == {
        (hysteresis, hold) for hysteresis in (0.1, 0.25, 0.4) for hold in (4.0, 8.0)
    }
    # The 2 s alarm (tonal windows for at most 3 s) is a false episode at min cry 1 s, never at
    # 4 s; the 8 s cries count at every setting the rule passes.
    for p in points:
        if p["threshold"] < 0.95:  # the rule says 0.95 in float32: just below 0.95
            assert p["episode_recall"] == 1.0
            if p["min_cry_seconds"] == 1.0:
                assert p["false_episodes_per_24h"] > 0
            if p["min_cry_seconds"] == 4.0:
                assert p["false_episodes_per_24h"] == 0
    for best in result["frontier"]:
        ceiling = best["max_false_episodes_per_24h"]
        allowed = [
            p
            for p in points
            if p["false_episodes_per_24h"] <= ceiling and p["cry_minute_error"] <= 0.05
        ]
        assert best["false_episodes_per_24h"] <= ceiling
        assert best["cry_minute_error"] <= 0.05
        assert best["episode_recall"] == max(p["episode_recall"] for p in allowed)
    assert (
        result["frontier"][0]["episode_recall"] == 1.0
    )  # longer min cry drops the alarm
    assert any("<= 1/24 h" in line for line in table_lines(result))


def _p(
    threshold: float, recall: float, error: float, per_day: float
) -> dict[str, float]:
    return {
        "threshold": threshold,
        "smoothing_windows": 1,
        "min_cry_seconds": 1.0,
        "hysteresis": 0.1,
        "hold_seconds": 4.0,
        "episode_recall": recall,
        "cry_minute_error": error,
        "false_episodes_per_24h": per_day,
    }


def test_recommendation_is_the_fewest_false_episodes_within_the_rule() -> None:
    points = [
        _p(0.5, 1.0, 0.02, 300.0),
        _p(0.9, 0.95, 0.08, 40.0),
        _p(0.95, 0.92, 0.09, 40.0),  # same false episodes, lower recall
        _p(0.98, 0.85, 0.05, 2.0),  # too few cries found
        _p(0.99, 0.93, 0.30, 1.0),  # cry minutes too far off
    ]
    chosen = recommend(points, min_recall=0.9, max_cry_minute_error=0.1)
    assert chosen["threshold"] == 0.9 and chosen["rule"]["met"] is True
    # By default the targets: recall >= 0.98 and cry-minute error <= 5 %.
    assert recommend(points)["threshold"] == 0.5
    fallback = recommend(points, min_recall=0.99, max_cry_minute_error=0.01)
    assert fallback["threshold"] == 0.5 and fallback["rule"]["met"] is False


def test_frontier_leaves_out_settings_that_miscount_the_minutes() -> None:
    points = [
        _p(0.9, 1.0, 0.60, 3.0),  # finds every cry by merging it with its neighbours
        _p(0.99, 0.8, 0.04, 4.0),
        _p(0.995, 0.7, 0.02, 0.0),
    ]
    by_ceiling = {p["max_false_episodes_per_24h"]: p for p in frontier(points)}
    assert by_ceiling[1.0]["threshold"] == 0.995
    assert by_ceiling[5.0]["threshold"] == 0.99
    assert frontier(points, max_cry_minute_error=1.0)[1]["threshold"] == 0.9


@pytest.mark.parametrize("seed", range(4))
def test_idle_trimming_keeps_every_episode(seed: int) -> None:
    # Bursts of high probabilities between long quiet stretches, 0.5 s hop, 1 s windows.
    rng = np.random.default_rng(seed)
    levels = np.where(rng.random(4000) < 0.02, 1.0, 0.0)
    levels = np.convolve(levels, np.ones(rng.integers(1, 12)), mode="same").clip(0, 1)
    probabilities = (levels * rng.uniform(0.6, 1.0, levels.size)).clip(0, 1)
    probabilities += rng.uniform(0, 0.3, levels.size) * (levels == 0)
    starts = np.arange(levels.size) * 0.5
    windows = np.column_stack([starts, starts + 1.0, probabilities])
    long = Captured(windows, [], 2000.0)
    for threshold, hysteresis, smoothing, hold in [
        (0.8, 0.1, 1, 4.0),
        (0.95, 0.6, 3, 8.0),
        (0.9, 0.3, 2, 0.5),
    ]:
        config = TrackerConfig(
            threshold=threshold,
            hysteresis=hysteresis,
            smoothing_windows=smoothing,
            min_cry_seconds=1.0,
            hold_seconds=hold,
        )
        trimmed = _trim_for(long, config, 0.5)
        assert len(trimmed) < len(windows)
        longer_cry = dataclasses.replace(config, min_cry_seconds=3.0)
        assert _trim_for(long, longer_cry, 0.5) is trimmed  # trimmed once, shared
        full = episodes(windows, config)
        kept = episodes(trimmed, config)
        assert [round(e.duration, 6) for e in kept] == [
            round(e.duration, 6) for e in full
        ]
        assert [round(e.peak_probability, 6) for e in kept] == [
            round(e.peak_probability, 6) for e in full
        ]
