"""cry-train import: clips saved and labelled in Home Assistant become a training data folder."""

from __future__ import annotations

import csv
import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

from conftest import tiny_config
import numpy as np
from synth import NEGATIVE_KINDS, cry, negative

from cry_training._engine import backends, load_engine
from cry_training.cli import main
from cry_training.dataset import MANIFEST_COLUMNS, read_manifest
from cry_training.windows import clip_patches

RATE = 16000


def engine_clips() -> ModuleType:
    """The integration's clip writer (the very code Home Assistant runs)."""
    load_engine()
    return importlib.import_module("cry_detector_engine.clips")


def cry_sweep(seconds: float) -> np.ndarray:
    """A harmonic sweep around 450 Hz at about -12 dBFS."""
    time = np.arange(round(seconds * RATE)) / RATE
    pitch = 450.0 + 80.0 * np.sin(2 * np.pi * 1.5 * time)
    return 0.25 * np.sin(2 * np.pi * np.cumsum(pitch) / RATE)


def save_clip(
    clip: Path, label: str | None, seconds: float, audio: np.ndarray | None = None
) -> Path:
    """Save a clip (root/<entry>/<day>/<stem>) as Home Assistant does and label it."""
    clips = engine_clips()
    features = importlib.import_module("cry_detector_engine.features")
    signal = cry_sweep(seconds) if audio is None else audio
    job = clips.ClipJob(
        np.clip(signal * 32767.0, -32768, 32767).astype(np.int16),
        RATE,
        1_780_000_000.0,
        {
            "kind": "episode",
            "start": 1_780_000_000.0,
            "duration": seconds,
            "sample_rate": RATE,
            "label": None,
        },
    )
    written: Path = clips.write_clip(job, clip, features.FeatureConfig())
    if label is not None:
        clips.set_label(clip, label)
    return written


def save_labelled_nights(media: Path, entry: str, nights: int = 10) -> None:
    """Save 4 s clips as a parent would have labelled them: 2 cries and 2 near misses a night."""
    rng = np.random.default_rng(3)
    for night in range(nights):
        day = f"{entry}/2026-06-{night + 1:02d}"
        kind = NEGATIVE_KINDS[night % len(NEGATIVE_KINDS)]
        for number in range(2):
            save_clip(
                media / f"{day}/0{number}-00-00_episode", "crying", 4.0, cry(4.0, rng)
            )
            save_clip(
                media / f"{day}/0{number}-30-00_near_miss",
                "not_crying",
                4.0,
                negative(4.0, rng, kind),
            )


def test_import_builds_a_manifest_of_the_labelled_clips(tmp_path: Path) -> None:
    """Labelled clips are copied with a manifest; unlabelled and deleted ones are left out."""
    media = tmp_path / "media" / "cry_detector"
    save_clip(media / "entryA/2026-06-01/02-10-00_episode", "crying", 6.0)
    save_clip(media / "entryA/2026-06-01/03-00-00_episode", "not_crying", 4.0)
    save_clip(media / "entryA/2026-06-02/01-00-00_episode", "crying", 5.0)
    save_clip(media / "entryB/2026-06-02/01-00-00_episode", None, 5.0)
    deleted = save_clip(media / "entryB/2026-06-03/04-00-00_episode", None, 3.0)
    engine_clips().delete_clip(deleted.with_suffix(""))
    output = tmp_path / "data"

    assert main(["import", str(media), "--output", str(output)]) == 0

    with (output / "manifest.csv").open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == MANIFEST_COLUMNS
        rows = list(reader)
    assert len(rows) == 3
    clips = read_manifest(output / "manifest.csv")
    by_group = sorted((clip.group, clip.label, clip.seconds) for clip in clips)
    assert by_group == [
        ("own:entryA/2026-06-01", "crying", 6.0),
        ("own:entryA/2026-06-01", "not_crying", 4.0),
        ("own:entryA/2026-06-02", "crying", 5.0),
    ]
    for clip in clips:
        assert clip.path.is_file()
        assert clip.path.is_relative_to(output.resolve())
        assert clip.path.parent == output.resolve() / clip.label / "own"
        assert clip.source == "own"
        assert clip.original_sample_rate == RATE
        assert clip.cls == "own/episode"
    assert {row["path"].split("/")[0] for row in rows} == {"crying", "not_crying"}


def test_import_of_a_missing_folder_fails_cleanly(tmp_path: Path) -> None:
    """A wrong path is an error exit, not a traceback."""
    assert main(["import", str(tmp_path / "nope"), "--output", str(tmp_path)]) == 2


def test_imported_clips_train_export_and_load_in_the_engine(
    tensorflow: Any, tmp_path: Path
) -> None:
    """The loop: labelled clips -> import -> tiny training -> export -> the engine runs it."""
    from cry_training.export import export_run
    from cry_training.train import train

    media = tmp_path / "media" / "cry_detector"
    save_labelled_nights(media, "entryA")
    data = tmp_path / "data"
    assert main(["import", str(media), "--output", str(data)]) == 0
    run = tmp_path / "run"
    train(
        tiny_config(data, tmp_path / "cache"), run, log=lambda _: None, progress=False
    )
    model = tmp_path / "export" / "own.tflite"
    export_run(run, model, log=lambda _: None, progress=False, negative_hours=0.05)
    card, backend = backends.load_model(model)
    try:
        assert card.labels == ("not_crying", "crying")
        crying = card.labels.index(card.positive_label)
        rng = np.random.default_rng(11)

        def mean_score(audio: np.ndarray) -> float:
            patches = clip_patches(audio, card.features)
            return float(np.mean([backend.predict(patch)[crying] for patch in patches]))

        assert mean_score(cry(3.0, rng)) > mean_score(negative(3.0, rng, "noise"))
    finally:
        backend.close()
