"""The engine is loaded by path as `cry_detector_engine`: one implementation of the features."""

from __future__ import annotations

from pathlib import Path
import shutil
import subprocess
import sys

import numpy as np

from cry_training import _engine
from cry_training.windows import clip_patches, fit_to_patch

TRAINING = Path(__file__).resolve().parents[1]
REPO_ENGINE = TRAINING.parent / "custom_components" / "cry_detector" / "engine"


def _env(**extra: str) -> dict[str, str]:
    """Environment for a child Python that can import cry_training (installed or not)."""
    return {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(TRAINING), **extra}


def test_engine_is_the_repository_folder_without_home_assistant() -> None:
    assert _engine.engine_dir() == REPO_ENGINE.resolve()
    assert sys.modules["cry_detector_engine"].__file__ == str(
        REPO_ENGINE.resolve() / "__init__.py"
    )
    assert _engine.features.__name__ == "cry_detector_engine.features"
    assert Path(_engine.features.__file__).parent == REPO_ENGINE.resolve()
    code = "import sys, cry_training._engine; print('homeassistant' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "False"


def test_training_patches_are_the_engine_patches() -> None:
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.normal(size=16000 * 3)).astype(np.float32)
    config = _engine.features.FeatureConfig()
    expected = _engine.features.patches(audio, config)
    np.testing.assert_array_equal(clip_patches(audio, config), expected)
    assert expected.shape == (4, 100, 40)  # (298 frames - 100) // 50 + 1


def test_short_clips_are_centred_in_one_patch() -> None:
    config = _engine.features.FeatureConfig()
    short = np.ones(1000, np.float32)
    padded = fit_to_patch(short, config)
    assert padded.size == config.patch_samples
    start = int(np.flatnonzero(padded)[0])
    assert abs(start - (padded.size - short.size - start)) <= 1
    assert clip_patches(short, config).shape == (1, 100, 40)


def test_env_var_points_at_another_engine_copy(tmp_path: Path) -> None:
    copy = tmp_path / "engine_copy"
    shutil.copytree(REPO_ENGINE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "marker.py").write_text("VALUE = 42\n", encoding="utf-8")
    code = (
        "from cry_training._engine import engine_dir, engine_module;"
        "print(engine_dir()); print(engine_module('marker').VALUE)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=_env(CRY_DETECTOR_ENGINE=str(copy)),
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.split() == [str(copy.resolve()), "42"]


def test_missing_engine_is_a_clear_error(tmp_path: Path, monkeypatch: object) -> None:
    import pytest

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    monkeypatch.setenv(_engine.ENV_VAR, str(tmp_path / "nowhere"))
    monkeypatch.setattr(_engine, "__file__", str(tmp_path / "a" / "b" / "c.py"))
    with pytest.raises(_engine.EngineNotFoundError, match="CRY_DETECTOR_ENGINE"):
        _engine.engine_dir()


def test_augmented_windows_do_not_depend_on_where_the_data_lives(
    tmp_path: Path,
) -> None:
    from cry_training.augment import Augmenter
    from cry_training.config import AugmentConfig
    from cry_training.dataset import Clip
    from cry_training.windows import WindowPlan, build_windows

    rng = np.random.default_rng(4)
    audio = (0.1 * rng.normal(size=16000 * 4)).astype(np.float32)
    config = _engine.features.FeatureConfig()
    plan = WindowPlan(config, "crying", copies=2, max_windows=3, seed=9)
    augmenter = Augmenter(AugmentConfig(), 16000)
    results = []
    for root in ("/data/a", "/elsewhere/b"):
        clip = Clip(
            Path(root) / "crying" / "x.flac", "crying", "s", "c", "g", None, 4.0, "CC0"
        )
        results.append(build_windows([clip], plan, lambda _: audio, augmenter))
    np.testing.assert_array_equal(results[0].patches, results[1].patches)
    assert results[0].copy.tolist().count(2) == 3


def test_quiet_windows_of_a_cry_are_left_out_and_negatives_keep_all() -> None:
    from cry_training.dataset import Clip
    from cry_training.windows import (
        WindowPlan,
        build_windows,
        clip_patches,
        window_levels,
    )

    rng = np.random.default_rng(5)
    config = _engine.features.FeatureConfig()
    loud = 0.3 * np.sin(2 * np.pi * 450 * np.arange(3 * 16000) / 16000)
    pause = 0.003 * rng.normal(
        size=3 * 16000
    )  # 40 dB down: the room between two bursts
    audio = np.concatenate([loud, pause]).astype(np.float32)
    levels = window_levels(audio, config)
    assert levels.shape[0] == clip_patches(audio, config).shape[0] == 10
    assert levels[0] > -15 and levels[-1] < -50
    plan = WindowPlan(config, "crying", positive_floor_db=20.0)
    clips = {
        label: Clip(Path(f"/d/{label}/x.flac"), label, "s", "c", "g", None, 6.0, "CC0")
        for label in ("crying", "not_crying")
    }
    sets = {
        label: build_windows([clip], plan, lambda _: audio)
        for label, clip in clips.items()
    }
    kept = sets["crying"].window_index
    assert kept.tolist() == [i for i in range(10) if levels[i] >= levels.max() - 20]
    assert kept.tolist() == list(
        range(6)
    )  # the windows reaching into the pause stay, the pause goes
    np.testing.assert_array_equal(
        sets["crying"].patches, clip_patches(audio, config)[kept]
    )
    assert sets["not_crying"].window_index.tolist() == list(range(10))
    longer = WindowPlan(config, "crying", copies=1, positive_floor_db=20.0)
    shifted = build_windows(
        [clips["crying"]], longer, lambda _: audio, lambda a, _: np.pad(a, (0, 8000))
    )
    assert shifted.window_index[shifted.copy == 1].tolist() == list(range(6))
