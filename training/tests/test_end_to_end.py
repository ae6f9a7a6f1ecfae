"""End to end: train a tiny model on synthesised audio, export, load in the engine, evaluate.

Skipped when TensorFlow is absent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest import TINY_OVERRIDES, tiny_config
import numpy as np
import pytest
from synth import cry, negative

from cry_training._engine import backends, card as engine_card, numpy_backend
from cry_training.cli import EXIT_REFUSED, main
from cry_training.dataset import load_clips, read_split
from cry_training.evaluate import EvalOptions, evaluate_clips
from cry_training.export import ExportError, build_card, export_keras, parity_report
from cry_training.windows import clip_patches


def test_training_writes_a_run_selected_by_false_alarms(trained_run: Path) -> None:
    for name in (
        "best.keras",
        "last.keras",
        "config.yaml",
        "split.csv",
        "history.json",
        "selection.json",
        "summary.json",
    ):
        assert (trained_run / name).is_file(), name
    history = json.loads((trained_run / "history.json").read_text(encoding="utf-8"))
    assert [entry["step"] for entry in history] == [
        65,
        130,
        195,
        200,
        260,
    ]  # every 65 steps + stage ends
    assert all(
        "false_alarms_per_hour" in entry and "episode_recall" in entry
        for entry in history
    )
    selection = json.loads((trained_run / "selection.json").read_text(encoding="utf-8"))
    assert 0 < selection["threshold"] < 1
    best_key = max(
        (e["meets_target"], e["episode_recall"]) for e in history if e["meets_target"]
    )
    assert (selection["meets_target"], selection["episode_recall"]) == best_key
    assert history[-1]["loss"] < history[0]["loss"]
    splits = read_split(trained_run / "split.csv")
    groups: dict[str, set[str]] = {}
    for clip in load_clips(trained_run / "split.csv"):
        groups.setdefault(clip.group, set()).add(splits[clip.path.resolve()])
    assert all(len(found) == 1 for found in groups.values())  # no group in two splits


def test_exported_model_runs_in_the_engine_with_every_backend(
    exported_model: Path,
) -> None:
    card, backend = backends.load_model(exported_model)
    backend.close()
    assert card.labels == ("not_crying", "crying") and card.input_shape == (
        1,
        100,
        40,
        1,
    )
    assert set(
        numpy_backend.NumpyTfliteModel(exported_model.read_bytes()).operator_names
    ) <= set(numpy_backend.supported_ops())
    rng = np.random.default_rng(11)
    patches = np.concatenate(
        [
            clip_patches(cry(2.0, rng), card.features),
            clip_patches(negative(2.0, rng, "speech"), card.features),
        ]
    )
    import keras

    keras_out = np.asarray(
        keras.models.load_model(exported_model.parent.parent / "train" / "best.keras")(
            patches[..., None], training=False
        )
    )
    for name in backends.available_backends():
        if name == "tflite_runtime":
            continue
        runtime = backends.load_backend(exported_model, card, preferred=name)
        outputs = np.stack([runtime.predict(patch) for patch in patches])
        runtime.close()
        np.testing.assert_allclose(outputs, keras_out, atol=1e-4, err_msg=name)
        assert np.allclose(outputs.sum(axis=1), 1.0, atol=1e-5)


def test_card_records_sources_licences_metrics_and_limits(exported_model: Path) -> None:
    card = engine_card.load_card(exported_model.with_suffix(".json"))
    sources = {entry["name"]: entry for entry in card.training["data_sources"]}
    assert sources["synth_negative"]["license"] == "CC BY-NC 3.0"
    assert sources["synth_cry"]["clips"] == 20
    assert any(
        "non-commercial" in text and "synth_negative" in text
        for text in card.limitations
    )
    metrics = card.metrics
    assert metrics["model"]["bytes"] == exported_model.stat().st_size
    assert metrics["model"]["macs"] > 0 and metrics["parity"]["patches"] > 0
    assert (
        max(v for k, v in metrics["parity"].items() if k.startswith("max_abs")) <= 1e-4
    )
    test = metrics["test"]
    assert test["clip_level"]["positives"] > 0 and test["clip_level"]["negatives"] > 0
    assert test["clip_level"]["roc_auc"] >= 0.9
    assert (
        card.threshold
        == json.loads(
            (exported_model.parent.parent / "train" / "selection.json").read_text()
        )["threshold"]
    )
    assert card.training["config"]["model"]["first_filters"] == 8
    assert card.name == "tiny"  # no export.name in the config: the file's name
    long = test["long_stream"]
    assert long["negative_hours"] >= 0.1 and long["passes"] >= 1
    assert long["false_episodes_per_24h"] == pytest.approx(
        long["false_episodes"] * 24 / long["negative_hours"], rel=0.01
    )
    (mined,) = card.training["hard_negative_mining"]
    assert (mined["stage"], mined["step"], mined["repeats"]) == (2, 200, 4)
    assert 0 <= mined["mined"] <= mined["negatives"]


def test_operating_points_cli_on_the_exported_model(
    exported_model: Path, trained_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = trained_run.parent / "points.json"
    status = main(
        [
            "operating-points",
            "--model",
            str(exported_model),
            "--split_file",
            str(trained_run / "split.csv"),
            "--split",
            "test",
            "--negative_hours",
            "0.05",
            "--output",
            str(output),
        ]
    )
    assert status == 0
    printed = capsys.readouterr().out
    assert "card: threshold" in printed and "h of replayed negatives" in printed
    result = json.loads(output.read_text(encoding="utf-8"))
    card = engine_card.load_card(exported_model.with_suffix(".json"))
    assert result["card_point"]["threshold"] == card.threshold
    assert result["cries"] > 0 and len(result["points"]) == 7 * 4 * 4 * 3 * 2


def test_export_takes_the_validation_operating_point(
    exported_model: Path, trained_run: Path, tmp_path: Path
) -> None:
    points = tmp_path / "points-val.json"
    args = [
        "--model",
        str(exported_model),
        "--split_file",
        str(trained_run / "split.csv"),
    ]
    assert (
        main(
            [
                "operating-points",
                *args,
                "--split",
                "val",
                "--negative_hours",
                "0.02",
                "--output",
                str(points),
            ]
        )
        == 0
    )
    chosen = json.loads(points.read_text(encoding="utf-8"))["recommended"]
    output = tmp_path / "tuned.tflite"
    export = [
        "export",
        "--train_dir",
        str(trained_run),
        "--output",
        str(output),
        "--no-progress",
    ]
    assert (
        main([*export, "--negative_hours", "0", "--operating_point", str(points)]) == 0
    )
    card = engine_card.load_card(output.with_suffix(".json"))
    assert card.threshold == chosen["threshold"]
    tracker = card.tracker_config()
    assert tracker.smoothing_windows == chosen["smoothing_windows"]
    assert tracker.min_cry_seconds == chosen["min_cry_seconds"]
    assert tracker.hysteresis == chosen["hysteresis"]
    assert tracker.hold_seconds == chosen["hold_seconds"]
    assert (
        card.metrics["validation_operating_point"]["rule"]["min_episode_recall"] == 0.98
    )
    assert "operating-points" in card.metrics["notes"]["validation_operating_point"]
    last = tmp_path / "last.tflite"
    export[export.index(str(output))] = str(last)
    assert main([*export, "--negative_hours", "0", "--checkpoint", "last"]) == 0
    history = json.loads((trained_run / "history.json").read_text(encoding="utf-8"))
    last_card = engine_card.load_card(last.with_suffix(".json"))
    assert last_card.training["checkpoint"] == "last"
    assert last_card.training["selected_step"] == history[-1]["step"] == 260
    assert last_card.threshold == history[-1]["threshold"]
    export[export.index(str(last))] = str(output)
    test_points = tmp_path / "points-test.json"
    assert (
        main(
            [
                "operating-points",
                *args,
                "--split",
                "test",
                "--negative_hours",
                "0.01",
                "--output",
                str(test_points),
            ]
        )
        == 0
    )
    refused = tmp_path / "refused.tflite"
    export[export.index(str(output))] = str(refused)
    assert main([*export, "--operating_point", str(test_points)]) == EXIT_REFUSED
    assert not refused.exists()  # test-split points never choose the card's settings


def test_evaluate_on_all_synthetic_clips(
    exported_model: Path, dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = evaluate_clips(
        exported_model,
        load_clips(dataset),
        EvalOptions(progress=False, backend="numpy"),
    )
    assert result["backend"] == "numpy"
    assert result["clip_level"]["roc_auc"] >= 0.95
    assert result["stream"]["inserted_cries"] == 20
    assert result["stream"]["episode_recall"] >= 0.8
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(exported_model),
                "--data",
                str(dataset),
                "--json",
                "--no-progress",
                "--sources",
                "synth_cry,synth_negative",
            ]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    assert printed["clip_level"]["clips"] == 40


def test_export_refuses_operators_the_numpy_backend_cannot_run(
    tensorflow: Any, tmp_path: Path
) -> None:
    import keras

    inputs = keras.Input((100, 40, 1), batch_size=1)
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same")(inputs)
    x = keras.layers.Lambda(lambda t: keras.ops.cumsum(t, axis=1))(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    config = tiny_config(tmp_path, tmp_path)
    card = build_card(
        config, labels=["not_crying", "crying"], threshold=0.5, training={}, metrics={}
    )
    output = tmp_path / "out" / "bad.tflite"
    with pytest.raises(ExportError, match="CUMSUM"):
        export_keras(
            model, output, card, np.zeros((2, 100, 40), np.float32), log=lambda _: None
        )
    assert not output.exists() and not output.with_suffix(".json").exists()


def test_parity_failure_refuses_the_export(exported_model: Path) -> None:
    import keras

    card, _ = engine_card.load_card(exported_model.with_suffix(".json")), None
    model = keras.models.load_model(
        exported_model.parent.parent / "train" / "best.keras"
    )

    def drifting(inputs: Any, training: bool = False) -> Any:
        return np.asarray(model(inputs, training=training)) + 1e-3

    patches = np.load(exported_model.parent.parent / "train" / "heldout_patches.npy")
    assert (
        parity_report(exported_model, card, model, patches)["patches"]
        == patches.shape[0]
    )
    with pytest.raises(ExportError, match="disagree"):
        parity_report(exported_model, card, drifting, patches)


def test_cli_train_accepts_the_original_command_and_is_reproducible(
    tensorflow: Any, dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    histories = []
    for attempt in range(2):
        run = tmp_path / f"run{attempt}"
        argv = [
            "train",
            f"--data_dir={dataset}",
            "--wanted_words=silence,crying",
            "--sample_rate=22050",
            "--clip_duration_ms=3000",
            "--how_many_training_steps=24,8",
            "--learning_rate=0.003,0.0003",
            f"--train_dir={run}",
            "--eval_step_interval=16",
            "--set",
            f"cache_dir={tmp_path / 'cache'}",
            *(
                arg
                for item in TINY_OVERRIDES
                if not item.startswith("training.")
                for arg in ("--set", item)
            ),
        ]
        assert main(argv) == 0
        histories.append(json.loads((run / "history.json").read_text(encoding="utf-8")))
    output = capsys.readouterr()
    assert "label 'silence' has no clips" in output.out
    assert "loss=" in output.err and "step" in output.err  # the progress bar
    assert histories[0] == histories[1]
    assert [entry["step"] for entry in histories[0]] == [16, 24, 32]


def test_fine_tuning_starts_from_the_given_weights(
    trained_run: Path, dataset: Path, tmp_path: Path
) -> None:
    import keras

    from cry_training.config import set_value
    from cry_training.train import train

    config = tiny_config(dataset, trained_run.parent.parent / "cache")
    set_value(config, f"training.init_from={trained_run / 'best.keras'}")
    set_value(config, "training.how_many_training_steps=[1]")
    set_value(config, "training.learning_rate=[0.000000001]")
    set_value(config, "hard_negatives.mine_before_stages=[]")
    lines: list[str] = []
    train(config, tmp_path / "tuned", log=lines.append, progress=False)
    start = keras.models.load_model(trained_run / "best.keras").get_weights()
    tuned = keras.models.load_model(tmp_path / "tuned" / "last.keras").get_weights()
    # One step at a vanishing rate: the kernels are the given ones (BatchNorm statistics move).
    assert all(
        np.allclose(a, b, atol=1e-5)
        for a, b in zip(start, tuned, strict=True)
        if a.ndim > 1
    )
    assert any("weights initialised from" in line for line in lines)
