"""The batch sampler: every window once per pass, mined hard negatives more often."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from cry_training.train import BatchSampler


def _pass(sampler: BatchSampler, windows: int) -> Counter[int]:
    """Draw one whole pass worth of batches and count each index."""
    seen: Counter[int] = Counter()
    for _ in range(windows // sampler.batch_size):
        indices, _ = sampler.next()
        seen.update(int(i) for i in indices)
    return seen


def test_each_window_once_per_pass_with_balanced_weights() -> None:
    labels = np.array([0] * 30 + [1] * 10, np.int8)
    sampler = BatchSampler(labels, 8, "weights", seed=1)
    assert set(_pass(sampler, 40).values()) == {1}
    _, weights = sampler.next()
    assert all(
        np.isclose(weight, 40 / 60) or np.isclose(weight, 40 / 20) for weight in weights
    )


@pytest.mark.parametrize("balance", ["weights", "none"])
def test_emphasised_windows_come_repeats_more_times_per_pass(balance: str) -> None:
    labels = np.array([0] * 30 + [1] * 10, np.int8)
    sampler = BatchSampler(labels, 2, balance, seed=2)  # 2 divides every pass below
    _pass(sampler, 40)
    hard = np.array([3, 7, 11])
    sampler.emphasize(hard, 4)
    seen = _pass(sampler, 40 + 3 * 4)
    assert {seen[i] for i in hard} == {5}
    assert {seen[i] for i in range(40) if i not in hard} == {1}
    sampler.emphasize(np.array([5]), 2)  # a new mining replaces the old emphasis
    seen = _pass(sampler, 40 + 2)
    assert seen[5] == 3 and seen[3] == 1


def test_sampling_balance_draws_mined_negatives_more_often() -> None:
    labels = np.array([0] * 100 + [1] * 100, np.int8)
    sampler = BatchSampler(labels, 100, "sampling", seed=3)
    sampler.emphasize(np.array([0]), 99)  # index 0 is half of the negative pool now
    draws = Counter()
    for _ in range(40):
        indices, weights = sampler.next()
        assert (labels[indices] == 1).sum() == 50 and set(weights) == {1.0}
        draws.update(int(i) for i in indices)
    assert 0.4 < draws[0] / (40 * 50) < 0.6
