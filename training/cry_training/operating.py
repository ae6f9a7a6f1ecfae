"""`cry-train operating-points`: what each threshold and tracker setting costs and buys.

The window probabilities of two streams are computed once through the engine's Pipeline (the
cries inserted among the negatives, and the negatives replayed for `negative_hours`); then the
engine's EpisodeTracker is replayed offline for every combination of threshold, smoothing,
minimum cry duration, hysteresis and hold. The frontier answers "how many cries do I miss for
at most N false episodes a day, with the cry minutes still right?" for the split it is run on
(validation to choose, test to report).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
import itertools
import math
from typing import Any

import numpy as np
import numpy.typing as npt

from ._engine import engine_module
from .dataset import Clip
from .evaluate import (
    Variation,
    _stream_plan,
    detection_tolerance,
    play_plan,
    replay_plan,
    replay_variation,
    stream_metrics,
)

tracker_module = engine_module("tracker")

THRESHOLDS = (0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995)
SMOOTHING = (1, 2, 3, 4)
MIN_CRY_SECONDS = (1.0, 2.0, 3.0, 4.0)
# How far below the threshold an open episode may dip (capped at half the threshold, as the
# integration caps it) and how long a pause it bridges: wider ones merge the bursts of one
# bout, and the false triggers of one noisy minute, into one episode.
HYSTERESIS = (0.1, 0.25, 0.4)
HOLD_SECONDS = (4.0, 8.0)
CEILINGS_PER_DAY = (1.0, 5.0, 24.0, 100.0)
# The recommendation: fewest false episodes per 24 h among the settings that meet the default
# model's targets for finding cries (episode recall >= 98 %) and counting their minutes
# (error <= 5 %): what the integration is for (when and how much the baby cries) comes first.
MIN_EPISODE_RECALL = 0.98
MAX_CRY_MINUTE_ERROR = 0.05


@dataclass(frozen=True)
class Captured:
    """Window results of one stream: (start, end, probability) rows, cry intervals, negatives."""

    windows: npt.NDArray[np.float64]
    cries: list[tuple[float, float]]
    negative_seconds: float
    # idle_trimmed() windows by (below, head, tail): settings differing only in minimum cry
    # share one.
    trimmed: dict[tuple[float, int, int], npt.NDArray[np.float64]] = field(
        default_factory=dict, compare=False, repr=False
    )


def capture(
    plan: Sequence[tuple[Clip, bool]],
    card: Any,
    backend: Any,
    vary: Variation | None = None,
) -> Captured:
    """Play a plan through the Pipeline and keep every window's probability."""
    rows: list[tuple[float, float, float]] = []

    def on_result(result: Any) -> None:
        if result.end > result.start:  # not the end-of-stream flush
            rows.append((result.start, result.end, result.probability))

    source = play_plan(plan, card, backend, card.tracker_config(), on_result, vary=vary)
    windows = np.array(rows, dtype=np.float64).reshape(-1, 3)
    return Captured(windows, source.cries, source.negative_seconds)


def episodes(windows: npt.NDArray[np.float64], config: Any) -> list[Any]:
    """Replay the engine's tracker over captured windows."""
    tracker = tracker_module.EpisodeTracker(config)
    found = []
    for start, end, probability in windows:
        update = tracker.update(float(start), float(end), float(probability))
        if update.ended is not None:
            found.append(update.ended)
    last = tracker.flush().ended
    return [*found, last] if last is not None else found


def idle_trimmed(
    windows: npt.NDArray[np.float64], below: float, head: int, tail: int
) -> npt.NDArray[np.float64]:
    """The windows with the idle middle of every long run of probabilities under `below` cut out.

    Of a run longer than head + tail windows, the first `head` (an open episode's hold runs out,
    a pending run breaks) and the last `tail` (the smoothing history) are kept, and later windows
    move earlier to stay contiguous. For a tracker whose off threshold is at least `below`,
    whose hold and smoothing fit in `head` and `tail`, and without cooldown, the episodes are the
    same in number and length; only their times move. The 24 h replay then takes up to half
    as long (captured streams have no gaps, so none is cut out).
    """
    low = windows[:, 2] < below
    cut = np.zeros(len(windows), dtype=bool)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], low.astype(np.int8), [0]))))
    for start, end in zip(edges[::2], edges[1::2], strict=True):
        if end - start > head + tail:
            cut[start + head : end - tail] = True
    if not cut.any():
        return windows
    hop = np.diff(windows[:, 0], prepend=windows[0, 0])
    removed = np.cumsum(np.where(cut, hop, 0.0))
    kept = windows[~cut].copy()
    kept[:, :2] -= removed[~cut, None]
    return kept


def _trim_for(
    long: Captured, config: Any, hop_seconds: float
) -> npt.NDArray[np.float64]:
    """The long stream trimmed as far as this tracker config allows."""
    head = math.ceil(config.hold_seconds / hop_seconds) + config.smoothing_windows + 2
    # Just under the off threshold: the tracker counts a mean within rounding of it as on.
    key = (config.off_threshold - 1e-6, head, config.smoothing_windows)
    if key not in long.trimmed:
        long.trimmed[key] = idle_trimmed(long.windows, *key)
    return long.trimmed[key]


def point(card: Any, short: Captured, long: Captured, config: Any) -> dict[str, Any]:
    """Figures of one tracker config on both streams (the short one scored like `evaluate`)."""
    tolerance = detection_tolerance(card.features, config)
    found = stream_metrics(
        episodes(short.windows, config), short.cries, short.negative_seconds, tolerance
    )
    long_windows = (
        _trim_for(long, config, card.features.patch_hop_seconds)
        if config.cooldown_seconds == 0
        else long.windows
    )
    false_long = len(episodes(long_windows, config))
    hours = long.negative_seconds / 3600.0
    return {
        "threshold": config.threshold,
        "smoothing_windows": config.smoothing_windows,
        "min_cry_seconds": config.min_cry_seconds,
        "hysteresis": config.hysteresis,
        "hold_seconds": config.hold_seconds,
        "episode_recall": found["episode_recall"],
        "cry_minute_error": found["cry_minute_error"],
        "false_episodes_per_24h": round(false_long * 24.0 / hours, 2)
        if hours
        else None,
    }


def operating_points(
    card: Any,
    backend: Any,
    clips: Sequence[Clip],
    *,
    negative_hours: float = 24.0,
    seed: int = 0,
) -> dict[str, Any]:
    """Every (threshold, smoothing, min cry, hysteresis, hold) point, the frontier, the choice."""
    positive = card.positive_label
    negatives = [c for c in clips if c.label != positive]
    cries = [c for c in clips if c.label == positive]
    short = capture(_stream_plan(negatives, cries, seed), card, backend)
    long = capture(
        replay_plan(negatives, negative_hours, seed),
        card,
        backend,
        replay_variation(card.features.sample_rate, seed),
    )
    points = [
        point(
            card,
            short,
            long,
            card.tracker_config(
                threshold=threshold,
                hysteresis=min(hysteresis, threshold / 2),
                smoothing_windows=smoothing,
                min_cry_seconds=min_cry,
                hold_seconds=hold,
            ),
        )
        for threshold, smoothing, min_cry, hysteresis, hold in itertools.product(
            THRESHOLDS, SMOOTHING, MIN_CRY_SECONDS, HYSTERESIS, HOLD_SECONDS
        )
    ]
    return {
        "negative_hours": round(long.negative_seconds / 3600.0, 3),
        "cries": len(short.cries),
        "card_point": point(card, short, long, card.tracker_config()),
        "recommended": recommend(points),
        "frontier": frontier(points),
        "points": points,
    }


def recommend(
    points: Sequence[dict[str, Any]],
    min_recall: float = MIN_EPISODE_RECALL,
    max_cry_minute_error: float = MAX_CRY_MINUTE_ERROR,
) -> dict[str, Any]:
    """Fewest false episodes per 24 h with recall and cry minutes good enough; else best recall."""
    good = [
        p
        for p in points
        if p["episode_recall"] >= min_recall
        and p["cry_minute_error"] <= max_cry_minute_error
    ]
    rule = {
        "min_episode_recall": min_recall,
        "max_cry_minute_error": max_cry_minute_error,
    }
    if good:
        chosen = min(
            good,
            key=lambda p: (
                p["false_episodes_per_24h"],
                -p["episode_recall"],
                p["cry_minute_error"],
            ),
        )
        return {**chosen, "rule": {**rule, "met": True}}
    chosen = max(
        points, key=lambda p: (p["episode_recall"], -p["false_episodes_per_24h"])
    )
    return {**chosen, "rule": {**rule, "met": False}}


def frontier(
    points: Sequence[dict[str, Any]],
    max_cry_minute_error: float = MAX_CRY_MINUTE_ERROR,
) -> list[dict[str, Any]]:
    """For each ceiling of false episodes per 24 h: the best episode recall, cry minutes right.

    A setting that finds cries by merging them with their neighbours into one long episode
    counts the minutes wrong; it is no answer, so points over the cry-minute error are left out.
    """
    best = []
    for ceiling in CEILINGS_PER_DAY:
        allowed = [
            p
            for p in points
            if p["false_episodes_per_24h"] <= ceiling
            and p["cry_minute_error"] <= max_cry_minute_error
        ]
        if allowed:
            chosen = max(
                allowed,
                key=lambda p: (p["episode_recall"], -p["cry_minute_error"]),
            )
            best.append({"max_false_episodes_per_24h": ceiling, **chosen})
    return best


def table_lines(result: dict[str, Any]) -> list[str]:
    """The card's point and the frontier as text."""

    def row(p: dict[str, Any]) -> str:
        return (
            f"threshold {p['threshold']:<5} smoothing {p['smoothing_windows']} "
            f"min cry {p['min_cry_seconds']:.0f} s hysteresis {p['hysteresis']:g} "
            f"hold {p['hold_seconds']:g} s: episode recall {p['episode_recall']:.3f}, "
            f"cry-minute error {p['cry_minute_error']:.3f}, "
            f"{p['false_episodes_per_24h']:g} false episodes per 24 h"
        )

    rule = result["recommended"]["rule"]
    lines = [
        f"{result['cries']} inserted cries; {result['negative_hours']} h of replayed negatives",
        "card: " + row(result["card_point"]),
        (
            f"recommended (recall >= {rule['min_episode_recall']:g}, cry-minute error <= "
            f"{rule['max_cry_minute_error']:g}, then fewest false episodes"
            f"{'' if rule['met'] else '; none qualifies: best recall'}): "
        )
        + row(result["recommended"]),
    ]
    found = {p["max_false_episodes_per_24h"]: p for p in result["frontier"]}
    lines += [
        f"<= {ceiling:g}/24 h with cry-minute error <= {rule['max_cry_minute_error']:g}: "
        + (row(found[ceiling]) if ceiling in found else "none")
        for ceiling in CEILINGS_PER_DAY
    ]
    return lines
