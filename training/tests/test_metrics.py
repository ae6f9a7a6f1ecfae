"""Metrics on known inputs: ROC-AUC, recall at FPR, counts, tracker episodes, selection."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from cry_training.metrics import (
    SelectionScore,
    best_threshold,
    count_episodes,
    counts_at,
    recall_at_fpr,
    roc_auc,
    roc_curve,
    stream_scores,
    tracker_for,
)

SETTINGS = {
    "hysteresis": 0.1,
    "smoothing_windows": 2,
    "min_cry_seconds": 2.0,
    "hold_seconds": 4.0,
}


def _brute_force_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    pairs = list(itertools.product(scores[labels == 1], scores[labels == 0]))
    return sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)


def test_auc_known_values_and_ties() -> None:
    assert roc_auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert roc_auc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    assert roc_auc([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1]) == 0.5
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    assert math.isnan(roc_auc([0.1, 0.2], [1, 1]))
    rng = np.random.default_rng(0)
    scores = np.round(rng.random(60), 1)
    labels = rng.integers(0, 2, 60)
    assert roc_auc(scores, labels) == pytest.approx(_brute_force_auc(scores, labels))


def test_roc_curve_goes_from_origin_to_one() -> None:
    fpr, tpr, thresholds = roc_curve([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(0.75)
    assert thresholds[0] == np.inf


def test_recall_at_fpr_never_exceeds_the_allowed_false_positives() -> None:
    negatives = np.linspace(0.0, 0.99, 100)  # 100 negatives
    positives = np.array([0.995, 0.985, 0.975, 0.5])
    scores = np.concatenate((negatives, positives))
    labels = np.concatenate((np.zeros(100), np.ones(4)))
    recall_1, threshold_1 = recall_at_fpr(
        scores, labels, 0.01
    )  # 1 false positive allowed
    assert threshold_1 == pytest.approx(0.98)
    assert recall_1 == 0.5
    recall_5, _ = recall_at_fpr(scores, labels, 0.05)
    assert recall_5 == 0.75
    assert recall_at_fpr(scores, labels, 1.0)[0] == 1.0
    # No false positive at all: only the cry above the highest negative (0.99) counts.
    assert recall_at_fpr(scores, labels, 0.0) == (0.25, pytest.approx(0.99))


def test_counts_at_threshold() -> None:
    counts = counts_at([0.9, 0.6, 0.4, 0.7, 0.1], [1, 1, 1, 0, 0], 0.5)
    assert (counts.true_positives, counts.false_positives) == (2, 1)
    assert counts.recall == pytest.approx(2 / 3)
    assert counts.precision == pytest.approx(2 / 3)
    assert counts.false_positive_rate == 0.5


def test_episodes_need_min_cry_seconds_and_merge_within_hold() -> None:
    config = tracker_for(0.5, SETTINGS)
    assert count_episodes([0.9] * 3, 0.5, config) == 0  # 1.5 s < 2 s
    assert count_episodes([0.9] * 4, 0.5, config) == 1
    pause = [0.0] * 6  # 3 s < hold 4 s: same episode
    assert count_episodes([0.9] * 4 + pause + [0.9] * 4, 0.5, config) == 1
    long_pause = [0.0] * 12
    # Smoothing over 2 windows: the first window after a pause averages 0.45 and cannot start a run.
    assert count_episodes([0.9] * 4 + long_pause + [0.9] * 4, 0.5, config) == 1
    assert count_episodes([0.9] * 4 + long_pause + [0.9] * 5, 0.5, config) == 2


def test_selection_prefers_meeting_the_alarm_target_then_recall() -> None:
    negatives = [
        np.array([0.0] * 700 + [0.7] * 6 + [0.0] * 14, np.float32)
    ]  # one 0.7 run: 6 min
    positives = [np.array([0.95] * 8, np.float32), np.array([0.75] * 8, np.float32)]
    scores = stream_scores(
        negatives,
        positives,
        0.5,
        thresholds=[0.5, 0.6, 0.8, 0.9],
        settings=SETTINGS,
        max_false_alarms_per_hour=1.0,
    )
    by_threshold = {s.threshold: s for s in scores}
    assert by_threshold[0.5].false_alarms_per_hour == pytest.approx(10.0)
    assert by_threshold[0.5].episode_recall == 1.0
    assert (
        by_threshold[0.8].false_alarms_per_hour == 0.0
        and by_threshold[0.8].episode_recall == 0.5
    )
    assert best_threshold(scores).threshold in (0.8, 0.9)
    assert best_threshold(scores).meets_target


def test_without_a_feasible_threshold_the_fewest_alarms_win() -> None:
    scores = [
        SelectionScore(0.5, 30.0, 1.0, False),
        SelectionScore(0.9, 5.0, 0.2, False),
    ]
    assert best_threshold(scores).threshold == 0.9


def test_tracker_for_caps_hysteresis_below_low_thresholds() -> None:
    assert tracker_for(0.1, SETTINGS).hysteresis == pytest.approx(0.05)
    assert tracker_for(0.9, SETTINGS).hysteresis == pytest.approx(0.1)
