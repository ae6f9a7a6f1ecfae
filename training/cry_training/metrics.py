"""Detection metrics: ROC, recall at a false-positive rate, episodes through the engine tracker."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
import math
from typing import Any

import numpy as np
import numpy.typing as npt

from ._engine import tracker as engine_tracker

TrackerConfig = engine_tracker.TrackerConfig
ArrayLike = npt.ArrayLike


def _split_scores(
    scores: ArrayLike, labels: ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Return (positive scores, negative scores)."""
    values = np.asarray(scores, dtype=np.float64)
    truth = np.asarray(labels).astype(bool)
    if values.shape != truth.shape:
        raise ValueError(f"{values.shape[0]} scores but {truth.shape[0]} labels")
    return values[truth], values[~truth]


def roc_auc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count half); nan without both classes."""
    positives, negatives = _split_scores(scores, labels)
    if positives.size == 0 or negatives.size == 0:
        return math.nan
    ordered = np.sort(negatives)
    below = np.searchsorted(ordered, positives, side="left")
    not_above = np.searchsorted(ordered, positives, side="right")
    wins = below.sum() + 0.5 * (not_above - below).sum()
    return float(wins / (positives.size * negatives.size))


def roc_curve(
    scores: ArrayLike, labels: ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Return (false positive rates, true positive rates, thresholds), score >= threshold."""
    positives, negatives = _split_scores(scores, labels)
    thresholds = np.unique(np.concatenate((positives, negatives)))[::-1]
    thresholds = np.concatenate(([np.inf], thresholds))
    tpr = np.array(
        [(positives >= t).mean() if positives.size else 0.0 for t in thresholds]
    )
    fpr = np.array(
        [(negatives >= t).mean() if negatives.size else 0.0 for t in thresholds]
    )
    return fpr, tpr, thresholds


def recall_at_fpr(
    scores: ArrayLike, labels: ArrayLike, max_fpr: float
) -> tuple[float, float]:
    """Best recall with false-positive rate <= max_fpr; returns (recall, threshold used)."""
    positives, negatives = _split_scores(scores, labels)
    if positives.size == 0 or negatives.size == 0:
        return math.nan, math.nan
    ordered = np.sort(negatives)[::-1]
    allowed = math.floor(max_fpr * negatives.size + 1e-9)
    # Scores strictly above the (allowed+1)-th highest negative keep at most `allowed` FPs.
    threshold = float(ordered[allowed]) if allowed < ordered.size else -math.inf
    return float((positives > threshold).mean()), threshold


@dataclass(frozen=True)
class ThresholdCounts:
    """Confusion counts at one threshold."""

    threshold: float
    true_positives: int
    false_positives: int
    positives: int
    negatives: int

    @property
    def recall(self) -> float:
        """TP / positives."""
        return self.true_positives / self.positives if self.positives else math.nan

    @property
    def precision(self) -> float:
        """TP / predicted positives."""
        predicted = self.true_positives + self.false_positives
        return self.true_positives / predicted if predicted else math.nan

    @property
    def false_positive_rate(self) -> float:
        """FP / negatives."""
        return self.false_positives / self.negatives if self.negatives else math.nan


def counts_at(
    scores: ArrayLike, labels: ArrayLike, threshold: float
) -> ThresholdCounts:
    """Confusion counts with score >= threshold meaning positive."""
    positives, negatives = _split_scores(scores, labels)
    return ThresholdCounts(
        threshold,
        int((positives >= threshold).sum()),
        int((negatives >= threshold).sum()),
        int(positives.size),
        int(negatives.size),
    )


def count_episodes(
    probabilities: Iterable[float], hop_seconds: float, config: TrackerConfig
) -> int:
    """Episodes the engine's tracker finds in one contiguous run of window probabilities."""
    tracker = engine_tracker.EpisodeTracker(config)
    episodes = 0
    for index, probability in enumerate(probabilities):
        update = tracker.update(
            index * hop_seconds, (index + 1) * hop_seconds, float(probability)
        )
        episodes += update.started is not None
    return episodes


@dataclass(frozen=True)
class SelectionScore:
    """How a checkpoint would behave deployed, at its best threshold."""

    threshold: float
    false_alarms_per_hour: float
    episode_recall: float
    meets_target: bool

    def key(self) -> tuple[bool, float, float]:
        """Sort key: meeting the false-alarm target first, then recall, then fewer alarms.

        Below the target the order is fewer alarms first, then recall.
        """
        recall = 0.0 if math.isnan(self.episode_recall) else self.episode_recall
        alarms = (
            math.inf
            if math.isnan(self.false_alarms_per_hour)
            else self.false_alarms_per_hour
        )
        if self.meets_target:
            return (True, recall, -alarms)
        return (False, -alarms, recall)


def tracker_for(threshold: float, settings: dict[str, float]) -> TrackerConfig:
    """A TrackerConfig from selection settings; hysteresis is capped below the threshold."""
    values: dict[str, Any] = dict(settings)
    values["hysteresis"] = min(values.get("hysteresis", 0.1), threshold * 0.5)
    if "smoothing_windows" in values:
        values["smoothing_windows"] = int(values["smoothing_windows"])
    return TrackerConfig(threshold=threshold, **values)


def stream_scores(
    negative_runs: Sequence[npt.NDArray[np.float32]],
    positive_runs: Sequence[npt.NDArray[np.float32]],
    hop_seconds: float,
    *,
    thresholds: Sequence[float],
    settings: dict[str, float],
    max_false_alarms_per_hour: float,
) -> list[SelectionScore]:
    """Score each threshold the way deployment would see it.

    False episodes per hour on the negative runs played back to back, and the fraction of
    positive runs (clips) in which the tracker starts an episode.
    """
    stream = np.concatenate(negative_runs) if negative_runs else np.zeros(0, np.float32)
    hours = stream.size * hop_seconds / 3600.0
    results = []
    for threshold in thresholds:
        config = tracker_for(threshold, settings)
        false_alarms = count_episodes(stream, hop_seconds, config)
        rate = false_alarms / hours if hours > 0 else math.nan
        found = sum(
            count_episodes(run, hop_seconds, config) > 0 for run in positive_runs
        )
        recall = found / len(positive_runs) if positive_runs else math.nan
        results.append(
            SelectionScore(
                threshold, rate, recall, bool(rate <= max_false_alarms_per_hour)
            )
        )
    return results


def best_threshold(scores: Sequence[SelectionScore]) -> SelectionScore:
    """The threshold a deployment would pick: meets the target, then most recall.

    Among thresholds that tie, the middle one of the plateau (margin on both sides).
    """
    best = max(score.key() for score in scores)
    tied = sorted((s for s in scores if s.key() == best), key=lambda s: s.threshold)
    return tied[len(tied) // 2]
