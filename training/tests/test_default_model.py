"""The bundled default model: loads in the engine, small, honest card (sources, licences, limits)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cry_training._engine import backends, card as engine_card
from cry_training.config import load_config
from cry_training.dataset import assign_splits, read_manifest
from cry_training.evaluate import score_clips

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "custom_components" / "cry_detector" / "models" / "default.tflite"
CORPUS = REPO.parent / "shared" / "data" / "cry-corpus"
DEFAULT_YAML = REPO / "training" / "configs" / "default.yaml"

pytestmark = pytest.mark.skipif(not MODEL.is_file(), reason="no bundled model yet")


@pytest.fixture(scope="module")
def card() -> engine_card.ModelCard:
    return engine_card.load_card(engine_card.card_path_for(MODEL))


def test_default_model_loads_with_the_numpy_backend_and_is_small(
    card: engine_card.ModelCard,
) -> None:
    loaded_card, backend = backends.load_model(MODEL, preferred="numpy")
    try:
        probabilities = backend.predict(np.zeros((100, 40), np.float32))
    finally:
        backend.close()
    assert loaded_card == card
    assert probabilities.shape == (2,) and abs(float(probabilities.sum()) - 1.0) < 1e-5
    assert MODEL.stat().st_size <= 250_000
    assert 1_000_000 <= card.metrics["model"]["macs"] <= 3_000_000
    # The features of training/configs/default.yaml: the engine's grid at 8 kHz.
    assert card.features == load_config(DEFAULT_YAML).feature_config()
    assert card.features.sample_rate == 8000
    assert card.training["config"]["features"] == load_config(DEFAULT_YAML).features


def test_card_lists_every_source_with_its_licence_and_the_limits(
    card: engine_card.ModelCard,
) -> None:
    sources = {
        entry["name"]: entry["license"] for entry in card.training["data_sources"]
    }
    assert {
        "donateacry",
        "esc50_fold4",
        "deeply_nonverbal",
        "fsdd",
        "speech_commands",
        "librosa_data",
    } <= set(sources)
    assert all(licence for licence in sources.values())
    text = " ".join(card.limitations)
    assert (
        "non-commercial" in text
        and "esc50_fold4" in text
        and "deeply_nonverbal" in text
    )
    assert "8 kHz" in text and "over 2 years" in text
    for name in ("test", "validation", "parity"):
        assert name in card.metrics
    assert card.metrics["test"]["clip_level"]["roc_auc"] is not None


@pytest.mark.skipif(not (CORPUS / "manifest.csv").is_file(), reason="cry corpus absent")
def test_card_sources_match_the_corpus_and_cries_outscore_negatives(
    card: engine_card.ModelCard,
) -> None:
    clips = read_manifest(CORPUS / "manifest.csv")
    corpus_sources = {clip.source: clip.license for clip in clips}
    card_sources = {
        entry["name"]: entry["license"] for entry in card.training["data_sources"]
    }
    assert set(card_sources) == set(corpus_sources)
    assert card_sources["esc50_fold4"] == corpus_sources["esc50_fold4"]
    splits = assign_splits(
        clips, seed=card.training["seed"], val_fraction=0.15, test_fraction=0.15
    )
    held_out = [clip for clip in clips if splits[clip.path] == "test"]
    cries = [clip for clip in held_out if clip.label == "crying"][:8]
    others = [
        clip
        for clip in held_out
        if clip.label != "crying" and clip.source == "esc50_fold4"
    ][:8]
    _, backend = backends.load_model(MODEL)
    try:
        cry_scores = [item.score for item in score_clips(cries, card, backend)]
        other_scores = [item.score for item in score_clips(others, card, backend)]
    finally:
        backend.close()
    assert np.median(cry_scores) > card.threshold > np.median(other_scores)
