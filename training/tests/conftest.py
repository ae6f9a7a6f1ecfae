"""Shared fixtures: a synthesised data set and (with TensorFlow) one tiny trained, exported model."""

from __future__ import annotations

from pathlib import Path
import sys
from typing import Any

import pytest

# Importable without installing the package (e.g. from an environment without TensorFlow,
# where the TensorFlow tests skip and the rest still run).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synth import make_dataset

from cry_training.config import Config, set_value

TINY_OVERRIDES = (
    "model.first_filters=8",
    "model.blocks=[[16,2],[16,2]]",
    "model.dropout=0.0",
    "augment.copies=1",
    "training.how_many_training_steps=[200,60]",
    "training.learning_rate=[0.003,0.0005]",
    "training.batch_size=32",
    "training.eval_step_interval=65",
    "split.val_fraction=0.2",
    "split.test_fraction=0.2",
    "hard_negatives.mine_before_stages=[2]",
    "hard_negatives.mining_threshold=0.3",
)


def tiny_config(data_dir: Path, cache_dir: Path) -> Config:
    """A config small enough to train in seconds."""
    config = Config()
    config.data.data_dir = str(data_dir)
    config.cache_dir = str(cache_dir)
    for assignment in TINY_OVERRIDES:
        set_value(config, assignment)
    return config


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 synthetic babies and 10 negative recordings, 2 clips of 4 s each."""
    return make_dataset(
        tmp_path_factory.mktemp("data"), groups=10, clips_per_group=2, seconds=4.0
    )


@pytest.fixture(scope="session")
def tensorflow() -> Any:
    """Skip when TensorFlow is absent."""
    return pytest.importorskip("tensorflow")


@pytest.fixture(scope="session")
def trained_run(
    tensorflow: Any, dataset: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A tiny DS-CNN trained on the synthetic set (about 10 s)."""
    from cry_training.train import train

    root = tmp_path_factory.mktemp("run")
    train(
        tiny_config(dataset, root / "cache"),
        root / "train",
        log=lambda _: None,
        progress=False,
    )
    return root / "train"


@pytest.fixture(scope="session")
def exported_model(trained_run: Path) -> Path:
    """The tiny run exported (tflite + card), evaluated on its test split."""
    from cry_training.export import export_run

    output = trained_run.parent / "export" / "tiny.tflite"
    # Six minutes of replayed negatives: the 24 h default takes minutes even for a tiny model.
    export_run(
        trained_run, output, log=lambda _: None, progress=False, negative_hours=0.1
    )
    return output
