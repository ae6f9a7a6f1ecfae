"""Evaluation on known inputs, through the engine's features, Pipeline and tracker.

A rule "model" (tonal patch -> 0.95, noisy patch -> 0.05) makes every figure predictable.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cry_training._engine import card as engine_card, features
from cry_training.audio import write_audio
from cry_training.dataset import Clip
from cry_training.evaluate import (
    EvalOptions,
    evaluate_backend,
    replay_plan,
    replay_variation,
    summary_lines,
    write_report,
)

RATE = 16000


class RuleBackend:
    """Positive when the patch is tonal (large spread across mel bands)."""

    name = "rule"
    input_shape = (1, 100, 40, 1)
    output_shape = (1, 2)

    def __init__(self) -> None:
        """Count the calls."""
        self.calls = 0

    def predict(self, patch: np.ndarray) -> np.ndarray:
        """Return (not crying, crying) probabilities for one patch."""
        self.calls += 1
        positive = 0.95 if float(np.std(patch)) > 3.0 else 0.05
        return np.array([1 - positive, positive], np.float32)

    def close(self) -> None:
        """Nothing to release."""


def _card(threshold: float = 0.5) -> engine_card.ModelCard:
    return engine_card.ModelCard(
        format_version=1,
        name="rule",
        version="1",
        created="2026-11-23",
        features=features.FeatureConfig(),
        input_shape=(1, 100, 40, 1),
        labels=("not_crying", "crying"),
        positive_label="crying",
        threshold=threshold,
        tracker={"min_cry_seconds": 2.0, "hold_seconds": 4.0, "smoothing_windows": 2.0},
    )


def _clip(folder: Path, name: str, audio: np.ndarray, label: str, cls: str) -> Clip:
    path = folder / f"{name}.flac"
    write_audio(path, audio, RATE)
    return Clip(path, label, "known", cls, name, RATE, audio.size / RATE, "CC0")


def _tone(seconds: float, hz: float) -> np.ndarray:
    return 0.3 * np.sin(2 * np.pi * hz * np.arange(int(seconds * RATE)) / RATE)


def _noise_alarm_cries(
    folder: Path,
    seed: int,
    *,
    noises: tuple[int, float],
    alarm_seconds: float,
    cries: tuple[int, float],
) -> list[Clip]:
    """Noise clips (count, seconds each), one 1 kHz tonal alarm and 500 Hz tonal cries."""
    rng = np.random.default_rng(seed)
    clips = [
        _clip(
            folder,
            f"noise{i}",
            0.1 * rng.normal(size=round(noises[1] * RATE)),
            "not_crying",
            "noise",
        )
        for i in range(noises[0])
    ]
    clips.append(
        _clip(folder, "alarm", _tone(alarm_seconds, 1000), "not_crying", "alarm")
    )
    count, seconds = cries
    names = ["cry"] if count == 1 else [f"cry{i}" for i in range(count)]
    return clips + [
        _clip(folder, name, _tone(seconds, 500), "crying", "cry") for name in names
    ]


@pytest.fixture(scope="module")
def known_clips(tmp_path_factory: pytest.TempPathFactory) -> list[Clip]:
    folder = tmp_path_factory.mktemp("known")
    rng = np.random.default_rng(0)
    clips = [
        _clip(
            folder, f"noise{i}", 0.1 * rng.normal(size=5 * RATE), "not_crying", "noise"
        )
        for i in range(6)
    ]
    clips += [
        _clip(folder, f"beep{i}", _tone(1.5, 1000), "not_crying", "beep")
        for i in range(2)
    ]
    clips += [
        _clip(folder, f"cry{i}", _tone(4.0, 500), "crying", "cry") for i in range(4)
    ]
    return clips


def test_known_inputs_give_known_metrics(known_clips: list[Clip]) -> None:
    backend = RuleBackend()
    result = evaluate_backend(
        _card(), backend, known_clips, EvalOptions(progress=False)
    )
    level, at = result["clip_level"], result["at_threshold"]
    assert (level["positives"], level["negatives"]) == (4, 8)
    assert level["roc_auc"] == pytest.approx(
        (4 * 6 + 0.5 * 4 * 2) / 32
    )  # beeps tie with cries
    assert (
        level["recall_at_1pct_fpr"] == 0.0
    )  # any positive threshold lets a beep through
    assert level["recall_above_every_negative"] == 0.0  # the beeps score like the cries
    assert (at["true_positives"], at["false_positives"]) == (4, 2)
    assert (
        at["precision"] == pytest.approx(4 / 6, abs=1e-4)
        and at["false_positive_rate"] == 0.25
    )
    rows = {row["class"]: row for row in result["per_class"]}
    assert rows["beep"]["detected"] == 2 and rows["noise"]["detected"] == 0
    assert result["per_class"][0]["class"] == "beep"  # false positives come first
    stream = result["stream"]
    # 1.5 s beeps are shorter than min_cry_seconds: clip false positives but no false episode.
    assert stream["false_episodes"] == 0 and stream["false_episodes_per_hour"] == 0.0
    assert stream["negative_hours"] == pytest.approx((6 * 5 + 2 * 1.5) / 3600, abs=1e-4)
    assert (
        stream["inserted_cries"],
        stream["detected_cries"],
        stream["episode_recall"],
    ) == (4, 4, 1.0)
    # Four 4 s cries; the tracker's cry time is within a window or two of each.
    assert stream["cry_seconds"] == pytest.approx(16.0, abs=0.01)
    assert 0.0 <= stream["cry_minute_error"] <= 0.25
    assert stream["cry_minute_error"] == pytest.approx(
        abs(stream["tracked_cry_seconds"] - 16.0) / 16.0, abs=1e-3
    )
    assert result["backend"] == "rule"
    json.dumps(result, allow_nan=False)
    assert any(
        "ROC-AUC 0.875" in line for line in summary_lines({"model": "rule", **result})
    )


def test_a_long_tonal_negative_is_one_false_episode(tmp_path: Path) -> None:
    clips = _noise_alarm_cries(
        tmp_path, 1, noises=(3, 10.0), alarm_seconds=8.0, cries=(1, 4.0)
    )
    result = evaluate_backend(
        _card(), RuleBackend(), clips, EvalOptions(progress=False, seed=3)
    )
    stream = result["stream"]
    hours = 38 / 3600  # 3 x 10 s noise + 8 s alarm
    assert (stream["false_episodes"], stream["detected_cries"]) == (1, 1)
    assert stream["false_episodes_per_hour"] == pytest.approx(1 / hours, rel=1e-3)
    assert 6.0 <= stream["false_cry_seconds"] <= 8.5


def test_long_stream_replays_the_negatives_with_variation(tmp_path: Path) -> None:
    """The long stream fills the hours with varied passes and attributes each false episode."""
    clips = _noise_alarm_cries(
        tmp_path, 2, noises=(3, 10.0), alarm_seconds=8.0, cries=(1, 4.0)
    )
    hours = 0.1  # 360 s: 10 passes of the 38 s of negatives
    result = evaluate_backend(
        _card(), RuleBackend(), clips, EvalOptions(progress=False, negative_hours=hours)
    )
    long = result["long_stream"]
    assert long["passes"] == 10 and long["negative_clips"] == 4
    assert long["negative_hours"] == pytest.approx(380 / 3600, abs=1e-3)
    # The 8 s alarm is one false episode each time it plays tonal enough for the rule after
    # its gain and noise floor (a loud floor at low gain hides it), never two in a row here.
    plan = replay_plan([c for c in clips if c.label != "crying"], hours, 0)
    alarms = [i for i, (clip, _) in enumerate(plan) if clip.cls == "alarm"]
    assert len(alarms) == 10 and all(i - 1 not in alarms for i in alarms)
    vary, alarm = replay_variation(RATE, 0), (_tone(8.0, 1000) * 32767).astype(np.int16)
    runs = sum(
        all(
            float(np.std(patch)) > 3.0
            for patch in features.patches(vary(alarm, i), features.FeatureConfig())
        )
        for i in alarms
    )
    assert 5 <= runs < 10  # the variation matters
    assert long["false_episodes"] == runs
    assert long["by_class"] == {"known/alarm": runs}
    assert long["false_episodes_per_24h"] == pytest.approx(
        runs * 24 / (380 / 3600), rel=1e-3
    )
    assert any(
        f"long stream: {runs} false episodes" in line
        for line in summary_lines({"model": "rule", **result})
    )
    json.dumps(result, allow_nan=False)


def test_replays_differ_in_level_and_noise_but_keep_length() -> None:
    """Each replayed clip gets its own gain and noise floor; the same index gives the same audio."""
    vary = replay_variation(RATE, seed=0)
    clean = (_tone(1.0, 500) * 32767).astype(np.int16)
    first, second = vary(clean, 0), vary(clean, 1)
    assert first.shape == clean.shape == second.shape
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(first, vary(clean, 0))
    silent = vary(np.zeros(RATE, np.int16), 5)
    assert 0 < np.abs(silent).max() < 200  # a noise floor, not silence


def test_report_png_is_written(known_clips: list[Clip], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    result = evaluate_backend(
        _card(), RuleBackend(), known_clips, EvalOptions(progress=False)
    )
    write_report(result, tmp_path / "report.png")
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
