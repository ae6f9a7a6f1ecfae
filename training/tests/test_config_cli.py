"""Configuration (YAML, the original author's flags, --set) and the command line."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
import subprocess
import sys

import pytest
import yaml

from cry_training.cli import build_parser, config_from_args, main
from cry_training.config import Config, ConfigError, load_config, save_config, set_value

DEFAULT_YAML = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"
ORIGINAL_COMMAND = [
    "train",
    "--data_dir=/data/clips",
    "--wanted_words=silence,crying",
    "--sample_rate=22050",
    "--clip_duration_ms=5000",
    "--how_many_training_steps=1000,200",
    "--learning_rate=0.001,0.0001",
    "--train_dir=/tmp/cry_train",
    "--window_size_ms=30",
]


def test_the_original_authors_flags_map_onto_the_config() -> None:
    args = build_parser().parse_args(ORIGINAL_COMMAND)
    config, notes = config_from_args(args)
    assert config.data.data_dir == "/data/clips"
    assert config.data.wanted_words == ["silence", "crying"]
    assert config.data.clip_duration_ms == 5000
    assert config.data.input_sample_rate == 22050
    assert config.training.how_many_training_steps == [1000, 200]
    assert config.training.learning_rate == [0.001, 0.0001]
    assert args.train_dir == Path("/tmp/cry_train")
    assert (
        config.feature_config().sample_rate == 16000
    )  # the card's rate; clips are resampled
    assert any("22050" in note for note in notes)
    assert any("window_size_ms" in note for note in notes)


def test_default_yaml_is_complete_and_valid() -> None:
    config = load_config(DEFAULT_YAML)
    config.check()
    assert config.data.data_dir == "../shared/data/cry-corpus"
    assert config.to_dict().keys() == Config().to_dict().keys()
    # The default model's features: the engine's, at 8 kHz on the same time and mel grid.
    features, engine_default = config.feature_config(), Config().feature_config()
    assert features.sample_rate == 8000
    assert features == replace(
        engine_default,
        sample_rate=8000,
        window_length=200,
        hop_length=80,
        fft_length=256,
    )
    assert features.hop_seconds == engine_default.hop_seconds
    assert features.patch_seconds == engine_default.patch_seconds
    # Stage 2 of two: it fine-tunes the 16 kHz model that base.yaml trains.
    assert config.training.init_from == "runs/base/best.keras"
    base = load_config(DEFAULT_YAML.with_name("base.yaml"))
    base.check()
    assert base.feature_config() == engine_default and not base.training.init_from
    assert base.to_dict().keys() == Config().to_dict().keys()


def test_yaml_flags_and_set_are_layered(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        "seed: 5\ntraining:\n  batch_size: 16\naugment:\n  copies: 3\n",
        encoding="utf-8",
    )
    args = build_parser().parse_args(
        [
            "train",
            "--config",
            str(tmp_path / "c.yaml"),
            "--data_dir",
            "d",
            "--batch_size",
            "8",
            "--set",
            "augment.copies=1",
            "--set",
            "split.holdout_sources=[esc50_fold4]",
        ]
    )
    config, _ = config_from_args(args)
    assert (config.seed, config.training.batch_size, config.augment.copies) == (5, 8, 1)
    assert config.split.holdout_sources == ["esc50_fold4"]


def test_resolved_config_round_trips(tmp_path: Path) -> None:
    config = Config()
    set_value(config, "model.blocks=[[8,2]]")
    set_value(config, "augment.snr_db=[5, 10]")
    save_config(config, tmp_path / "config.yaml")
    loaded = load_config(tmp_path / "config.yaml")
    assert loaded == config
    assert loaded.augment.snr_db == [5.0, 10.0]
    assert yaml.safe_load((tmp_path / "config.yaml").read_text(encoding="utf-8"))[
        "model"
    ]["blocks"] == [[8, 2]]


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("training.nonsense=1", "unknown config key 'training.nonsense'"),
        ("training.batch_size=big", "wrong type"),
        ("features.mel_bands=0", "mel_bands"),
        ("training.learning_rate=[0.1]", "same number of stages"),
        ("split.val_fraction=0.9", "below 1"),
        ("hard_negatives.pitch_factor=[0.7, 0.4]", "pitch_factor"),
        ("hard_negatives.pitched_cries=-1", "pitched_cries"),
        ("hard_negatives.mine_before_stages=[1]", "mine_before_stages"),
        ("hard_negatives.mine_before_stages=[3]", "stages 2..2"),
        ("hard_negatives.mining_threshold=1.0", "mining_threshold"),
        ("data.positive_window_floor_db=0", "positive_window_floor_db"),
        ("distill.teacher=yamnet", "teacher must be '' or 'aisfx'"),
        ("distill.weight=0", "weight in"),
        ("distill.folds=1", "folds >= 2"),
    ],
)
def test_bad_values_name_the_key(assignment: str, message: str) -> None:
    config = Config()

    def apply() -> None:
        set_value(config, assignment)
        config.check()

    with pytest.raises(ConfigError, match=message):
        apply()


def test_cli_reports_errors_with_exit_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "--train_dir", str(tmp_path / "run")]) == 2
    assert "no data" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                "--data_dir",
                str(tmp_path / "missing"),
                "--train_dir",
                str(tmp_path / "run"),
                "--set",
                "training.threads=1",
            ]
        )
        == 2
    )
    assert "no such data folder" in capsys.readouterr().err


def test_module_entry_point_prints_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cry_training", "train", "--help"],
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        },
        capture_output=True,
        text=True,
        check=True,
    )
    for flag in (
        "--wanted_words",
        "--how_many_training_steps",
        "--learning_rate",
        "--clip_duration_ms",
        "--config",
    ):
        assert flag in result.stdout
