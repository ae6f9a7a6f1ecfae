"""The aiSFX teacher: checkpoint reader, network, front end, probe and the soft targets."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
import pickle
import zipfile

import numpy as np
import pytest

from cry_training import teacher
from cry_training._engine import features as engine_features
from cry_training.config import DistillConfig
from cry_training.dataset import Clip
from cry_training.windows import WindowPlan, build_windows, clip_patches

RNG = np.random.default_rng(11)


def _small_state(widths: tuple[int, ...] = (2, 4, 8)) -> teacher.StateDict:
    """A random state dict of the same layout as aiSFX's, narrower."""
    state: teacher.StateDict = {}
    channels = 1
    for block, width in enumerate(widths, start=1):
        for conv in (1, 2):
            name = f"conv_block{block}"
            shape = (width, channels, 3, 3)
            state[f"{name}.conv{conv}.weight"] = RNG.normal(0, 0.5, shape).astype(
                np.float32
            )
            channels = width
            norm = {
                "weight": RNG.uniform(0.5, 1.5, width),
                "bias": RNG.normal(0, 0.1, width),
                "running_mean": RNG.normal(0, 0.1, width),
                "running_var": RNG.uniform(0.5, 2, width),
            }
            for part, values in norm.items():
                state[f"{name}.bn{conv}.{part}"] = values.astype(np.float32)
    return state


def _reference_embedding(block: np.ndarray, state: teacher.StateDict) -> np.ndarray:
    """The PyTorch EmbeddingNet's arithmetic, written out in NumPy (channels first)."""
    x = block[None].astype(np.float64)
    blocks = teacher.block_count(state)
    for index in range(1, blocks + 1):
        for conv in (1, 2):
            weight = state[f"conv_block{index}.conv{conv}.weight"].astype(np.float64)
            padded = np.pad(x, ((0, 0), (1, 1), (1, 1)))
            out = np.zeros((weight.shape[0], *x.shape[1:]))
            for dy in range(3):
                for dx in range(3):
                    window = padded[:, dy : dy + x.shape[1], dx : dx + x.shape[2]]
                    out += np.einsum("oc,chw->ohw", weight[:, :, dy, dx], window)
            name = f"conv_block{index}.bn{conv}"
            gamma, beta, mean, var = (
                state[f"{name}.{p}"][:, None, None] for p in teacher.NORM_PARTS
            )
            x = np.maximum(0, (out - mean) / np.sqrt(var + 1e-5) * gamma + beta)
        if index < blocks:
            c, h, w = x.shape
            x = (
                x[:, : h // 2 * 2, : w // 2 * 2]
                .reshape(c, h // 2, 2, w // 2, 2)
                .max(axis=(2, 4))
            )
    return x.mean(axis=2).max(axis=1)


def _write_checkpoint(path: Path, payload: bytes, storages: dict[str, bytes]) -> None:
    """A torch-style zip: archive/data.pkl plus archive/data/<key>."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
        for key, data in storages.items():
            archive.writestr(f"archive/data/{key}", data)


def test_keras_network_matches_the_reference_arithmetic(tensorflow: object) -> None:
    state = _small_state()
    model = teacher.embedding_model(state)
    block = RNG.uniform(0, 1, (teacher.BLOCK_FRAMES, teacher.MEL_BANDS)).astype(
        np.float32
    )
    got = model.predict(block[None, :, :, None], verbose=0)[0]
    np.testing.assert_allclose(
        got, _reference_embedding(block, state), rtol=1e-4, atol=1e-5
    )


def test_the_installed_aisfx_checkpoint_loads_without_torch(tensorflow: object) -> None:
    path = teacher.installed_checkpoint()
    state = teacher.load_state_dict(path)
    assert teacher.block_count(state) == 4
    assert state["conv_block4.conv2.weight"].shape == (512, 512, 3, 3)
    model = teacher.Teacher.from_checkpoint(path)
    seconds = np.arange(3 * 8000) / 8000
    cry_like = 0.3 * sum(np.sin(2 * np.pi * 450 * k * seconds) / k for k in range(1, 6))
    noise = 0.1 * RNG.normal(size=seconds.size)
    first = model.embed(cry_like, 8000, [1.0, 1.5])
    again = model.embed(cry_like, 8000, [1.0, 1.5])
    other = model.embed(noise, 8000, [1.0])
    assert first.shape == (2, 512)
    np.testing.assert_array_equal(first, again)
    assert np.linalg.norm(first[0] - other[0]) > 0.1 * np.linalg.norm(first[0])


def test_a_checkpoint_that_calls_code_is_refused(tmp_path: Path) -> None:
    class Exploit:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.pth"
    _write_checkpoint(path, pickle.dumps(Exploit(), protocol=2), {})
    with pytest.raises(teacher.TeacherError, match="not a plain state dict"):
        teacher.load_state_dict(path)
    (tmp_path / "junk.pth").write_bytes(b"not a zip")
    with pytest.raises(teacher.TeacherError, match="not a readable checkpoint"):
        teacher.load_state_dict(tmp_path / "junk.pth")


def test_a_state_dict_of_the_wrong_shape_is_refused(tmp_path: Path) -> None:
    state = _small_state()
    state["conv_block2.conv1.weight"] = state["conv_block2.conv1.weight"][:, :1]
    with pytest.raises(teacher.TeacherError, match=r"conv_block2\.conv1"):
        teacher.check_state_dict(state)
    with pytest.raises(teacher.TeacherError, match="no conv_block"):
        teacher.check_state_dict({})


def test_the_teacher_hears_only_what_an_8_khz_phone_records() -> None:
    seconds = np.arange(16000 * 2) / 16000
    low = 0.3 * np.sin(2 * np.pi * 1000 * seconds)
    high = 0.3 * np.sin(2 * np.pi * 6000 * seconds)  # above the 4 kHz every cry lacks
    alone = teacher.spectrogram(low, 16000)
    with_high = teacher.spectrogram(low + high, 16000)
    assert alone.shape[1] == teacher.MEL_BANDS and alone.max() > 0.3
    # (the first and last frame see the resampler's edge transient)
    np.testing.assert_allclose(with_high[1:-1], alone[1:-1], atol=0.01)
    top = teacher.spectrogram(high + 1e-6 * low, 16000)
    assert not np.allclose(
        top, alone, atol=0.01
    )  # what does pass differs: the check can fail


def test_blocks_are_centred_on_the_windows_and_zero_outside() -> None:
    fps = teacher.SAMPLE_RATE / teacher.HOP_LENGTH
    spec = np.tile(
        np.arange(200, dtype=np.float32)[:, None] + 1, (1, teacher.MEL_BANDS)
    )
    blocks = teacher.blocks_for_windows(spec, [100 / fps, 0.0])
    assert blocks.shape == (2, teacher.BLOCK_FRAMES, teacher.MEL_BANDS)
    assert blocks[0, 0, 0] == 51 and blocks[0, -1, 0] == 150  # frames 50..149
    assert (blocks[1, :50] == 0).all() and blocks[1, 50, 0] == 1


def test_the_probe_learns_a_balanced_linear_rule_and_cross_fits_by_group() -> None:
    x = RNG.normal(size=(600, 20)).astype(np.float32)
    y = (x[:, 0] - 0.5 * x[:, 1] > 1.0).astype(int)  # about 1 in 5 positive
    probe = teacher.Probe.fit(x, y, l2=1.0)
    predicted = probe.predict(x) > 0.5
    assert (predicted[y == 1]).mean() > 0.9 and (~predicted[y == 0]).mean() > 0.9
    groups = [f"g{i % 30}" for i in range(600)]
    crossed = teacher.cross_fitted(x, y, groups, folds=3, l2=1.0)
    held = np.array([teacher.fold_of(g, 3) == 0 for g in groups])
    alone = teacher.Probe.fit(x[~held], y[~held], l2=1.0).predict(x[held])
    np.testing.assert_allclose(crossed[held], alone, rtol=1e-5)
    with pytest.raises(ValueError, match="both classes"):
        teacher.Probe.fit(x[:5], np.zeros(5), l2=1.0)


def test_targets_mix_the_label_and_keep_it_where_no_teacher_spoke() -> None:
    mixed = teacher.mix_targets([1, 0, 1], [0.2, 0.9, np.nan], 0.5)
    np.testing.assert_allclose(mixed, [0.6, 0.45, 1.0])


def test_soft_targets_line_up_with_the_training_windows(tensorflow: object) -> None:
    config = engine_features.FeatureConfig(
        sample_rate=8000, window_length=200, hop_length=80, fft_length=256
    )
    seconds = np.arange(4 * 8000) / 8000
    audio = {
        "cry": (
            0.3 * np.sin(2 * np.pi * 450 * seconds) * (seconds < 2.5)
            + 1e-4 * RNG.normal(size=seconds.size)
        ).astype(np.float32),
        "hum": (0.1 * np.sin(2 * np.pi * 100 * seconds)).astype(np.float32),
    }
    clips = [
        Clip(
            Path(f"/d/{name}{i}.flac"),
            "crying" if name == "cry" else "not_crying",
            "s",
            "c",
            f"{name}{i}",
            8000,
            4.0,
            "CC0",
        )
        for i in range(4)
        for name in ("cry", "hum")
    ]
    plan = WindowPlan(config, "crying", copies=1, positive_floor_db=20.0)
    windows = build_windows(
        clips, plan, lambda c: audio[c.path.stem[:3]], lambda a, _: np.pad(a, (0, 4000))
    )
    model = teacher.Teacher(teacher.embedding_model(_small_state()), "test")
    targets, auc = teacher.teacher_targets(
        clips,
        windows,
        plan,
        lambda c: audio[c.path.stem[:3]],
        teacher=model,
        distill=DistillConfig(teacher="aisfx", folds=2, l2=1.0),
    )
    assert (
        targets.shape == windows.labels.shape
        and targets.min() >= 0
        and targets.max() <= 1
    )
    per_clip = clip_patches(audio["cry"], config).shape[0]
    extra = (
        windows.window_index >= per_clip
    )  # the padded copy's extra window: no teacher
    assert extra.any()
    np.testing.assert_array_equal(targets[extra], windows.labels[extra])
    soft = ~extra
    positive = windows.labels[soft] == 1
    assert (targets[soft][positive] >= 0.5).all() and (
        targets[soft][~positive] <= 0.5
    ).all()
    assert 0 <= auc <= 1


def test_without_aisfx_installed_the_error_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(teacher.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(teacher.TeacherError, match="pip install --no-deps aisfx"):
        teacher.installed_checkpoint()


def test_a_zip_without_a_state_dict_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "list.pth"
    buffer = io.BytesIO()
    pickle.dump([1, 2, 3], buffer, protocol=2)
    _write_checkpoint(path, buffer.getvalue(), {})
    with pytest.raises(teacher.TeacherError, match="no state dict"):
        teacher.load_state_dict(path)


def test_a_distilled_training_records_its_teacher(
    tensorflow: object, dataset: Path, tmp_path: Path
) -> None:
    from conftest import tiny_config

    from cry_training.config import set_value
    from cry_training.export import export_run
    from cry_training.train import prepare_data, train

    config = tiny_config(dataset, tmp_path / "cache")
    set_value(config, "distill.teacher=aisfx")
    set_value(config, "distill.folds=2")
    lines: list[str] = []
    (tmp_path / "prepared").mkdir()
    data = prepare_data(config, tmp_path / "prepared", lines.append, progress=False)
    assert data.train_targets is not None
    assert data.train_targets.shape == data.train.labels.shape
    positive = data.train.labels == 1
    # the teacher agrees with the labels on this easy set, but not to the last digit
    assert data.train_targets[positive].mean() > 0.75
    assert data.train_targets[~positive].mean() < 0.25
    assert not np.isin(data.train_targets, [0.0, 1.0]).all()
    assert any("cross-fitted probe clip ROC-AUC" in line for line in lines)
    # cached per clip: the 8 kHz fine-tune after a 16 kHz stage reuses them
    assert any((tmp_path / "cache" / "teacher").glob("*.npy"))

    train(config, tmp_path / "run", log=lambda _: None, progress=False)
    output = tmp_path / "export" / "distilled.tflite"
    export_run(
        tmp_path / "run", output, log=lambda _: None, progress=False, evaluate=False
    )
    card = json.loads(output.with_suffix(".json").read_text(encoding="utf-8"))
    record = card["training"]["teacher"]
    assert record["license"] == "MIT" and record["weight"] == 0.5
    assert 0.5 < record["probe_clip_roc_auc_crossfitted"] <= 1.0


def test_teacher_probe_scores_a_split_with_the_teacher_alone(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cry_training.cli import main

    output = tmp_path / "probe.json"
    status = main(
        [
            "teacher-probe",
            "--split_file",
            str(trained_run / "split.csv"),
            "--cache_dir",
            str(tmp_path / "cache"),
            "--output",
            str(output),
            "--no-progress",
        ]
    )
    assert status == 0
    assert "teacher probe on test" in capsys.readouterr().out
    result = json.loads(output.read_text(encoding="utf-8"))
    assert result["positives"] > 0 and result["negatives"] > 0
    assert (
        result["roc_auc"] > 0.9
    )  # synthetic cries are easy for a sound-effects embedding
    missing = tmp_path / "missing.pth"
    status = main(
        [
            "teacher-probe",
            "--split_file",
            str(trained_run / "split.csv"),
            "--checkpoint",
            str(missing),
        ]
    )
    assert status == 2
    assert "missing.pth" in capsys.readouterr().err
