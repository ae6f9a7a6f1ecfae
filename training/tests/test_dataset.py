"""Manifests, the folder layout, label selection and the split by group."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from cry_training.audio import write_audio
from cry_training.dataset import (
    Clip,
    DatasetError,
    assign_splits,
    load_clips,
    load_data_dirs,
    read_manifest,
    read_split,
    scan_label_folders,
    select_clips,
    source_summary,
    write_split,
)

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "data" / "cry-corpus"


def _clips(
    n_groups: int, per_group: int, source: str = "s", label: str = "crying"
) -> list[Clip]:
    return [
        Clip(
            Path(f"/d/{source}/{g}_{i}.flac"),
            label,
            source,
            label,
            f"{source}:{g}",
            None,
            1.0,
            "CC0",
        )
        for g in range(n_groups)
        for i in range(per_group)
    ]


def _groups_by_split(clips: list[Clip], splits: dict[Path, str]) -> dict[str, set[str]]:
    result: dict[str, set[str]] = defaultdict(set)
    for clip in clips:
        result[splits[clip.path]].add(clip.group)
    return result


def test_split_never_divides_a_group_and_is_seeded() -> None:
    clips = _clips(40, 3) + _clips(20, 5, source="t", label="not_crying")
    splits = assign_splits(clips, seed=1, val_fraction=0.15, test_fraction=0.15)
    groups = _groups_by_split(clips, splits)
    assert not (
        groups["train"] & groups["val"]
        or groups["train"] & groups["test"]
        or groups["val"] & groups["test"]
    )
    per_source = {
        s: {
            split: len({g for g in groups[split] if g.startswith(s)})
            for split in groups
        }
        for s in "st"
    }
    assert per_source["s"] == {"train": 28, "val": 6, "test": 6}
    assert per_source["t"] == {"train": 14, "val": 3, "test": 3}
    assert assign_splits(clips, seed=1, val_fraction=0.15, test_fraction=0.15) == splits
    assert assign_splits(clips, seed=2, val_fraction=0.15, test_fraction=0.15) != splits


def test_held_out_sources_go_to_test_whole_and_tiny_sources_train() -> None:
    clips = (
        _clips(10, 2)
        + _clips(8, 2, source="held", label="n")
        + _clips(1, 9, source="one", label="n")
    )
    splits = assign_splits(
        clips, seed=0, val_fraction=0.2, test_fraction=0.2, holdout_sources=["held"]
    )
    assert {splits[c.path] for c in clips if c.source == "held"} == {"test"}
    assert {splits[c.path] for c in clips if c.source == "one"} == {"train"}
    assert sorted(splits[c.path] for c in clips if c.source == "s").count("test") == 4


def test_split_file_round_trip(tmp_path: Path) -> None:
    clips = _clips(10, 2)
    splits = assign_splits(clips, seed=0, val_fraction=0.2, test_fraction=0.2)
    write_split(tmp_path / "split.csv", clips, splits)
    assert read_split(tmp_path / "split.csv") == {
        c.path.resolve(): s for c, s in ((c, splits[c.path]) for c in clips)
    }
    assert [c.group for c in load_clips(tmp_path / "split.csv")] == [
        c.group for c in clips
    ]


def test_folder_layout_groups_by_file_or_by_first_folder(tmp_path: Path) -> None:
    for name in (
        "crying/baby_a/1.wav",
        "crying/baby_a/2.wav",
        "crying/baby_b/1.wav",
        "silence/room.flac",
    ):
        write_audio(tmp_path / name, [0.0] * 400, 16000)
    (tmp_path / "_background_noise_").mkdir()
    by_file = scan_label_folders(tmp_path)
    by_folder = scan_label_folders(tmp_path, group_by="folder", source="mine")
    assert [c.label for c in by_file] == ["crying", "crying", "crying", "silence"]
    assert len({c.group for c in by_file}) == 4
    assert [c.group for c in by_folder][:3] == [
        "mine:crying/baby_a",
        "mine:crying/baby_a",
        "mine:crying/baby_b",
    ]
    assert load_clips(tmp_path) == by_file


def test_wanted_words_of_the_original_command_work_on_any_labels() -> None:
    clips = (
        _clips(3, 1)
        + _clips(3, 1, source="n", label="not_crying")
        + _clips(2, 1, source="m", label="music")
    )
    selected, notes = select_clips(
        clips,
        positive_label="crying",
        negative_label="not_crying",
        wanted_words=["silence", "crying"],
    )
    assert len(selected) == len(clips)
    assert {c.label for c in selected} == {"crying", "not_crying"}
    assert any("silence" in note for note in notes)
    only, _ = select_clips(
        clips,
        positive_label="crying",
        negative_label="not_crying",
        wanted_words=["crying", "music"],
    )
    assert {c.source for c in only} == {"s", "m"}
    with pytest.raises(DatasetError, match="no negative"):
        select_clips(_clips(2, 1), positive_label="crying", negative_label="not_crying")


def test_source_summary_lists_licenses() -> None:
    clips = [
        *_clips(2, 1),
        Clip(Path("/x.wav"), "n", "mix", "n", "g", None, 2.0, "CC BY-NC 3.0"),
        Clip(Path("/y.wav"), "n", "mix", "n", "h", None, 3.0, "CC0"),
    ]
    summary = {entry["name"]: entry for entry in source_summary(clips)}
    assert summary["mix"]["license"] == "CC BY-NC 3.0; CC0"
    assert summary["mix"]["clips"] == 2
    assert summary["mix"]["seconds"] == 5.0


@pytest.mark.skipif(not (CORPUS / "manifest.csv").is_file(), reason="cry corpus absent")
def test_real_corpus_splits_by_group() -> None:
    clips = read_manifest(CORPUS / "manifest.csv")
    splits = assign_splits(clips, seed=20261123, val_fraction=0.15, test_fraction=0.15)
    groups = _groups_by_split(clips, splits)
    assert not (
        groups["train"] & groups["val"]
        or groups["train"] & groups["test"]
        or groups["val"] & groups["test"]
    )
    cries = [c for c in clips if c.label == "crying"]
    assert {splits[c.path] for c in cries} == {"train", "val", "test"}
    assert all(c.path.is_file() for c in clips[:20])


def test_several_data_folders_are_merged(dataset: Path, tmp_path: Path) -> None:
    write_audio(tmp_path / "mine" / "crying" / "night.wav", [0.0] * 400, 16000)
    write_audio(tmp_path / "mine" / "tv" / "show.wav", [0.0] * 400, 16000)
    clips = load_data_dirs(f"{tmp_path / 'mine'}, {dataset}")
    assert len(clips) == 2 + len(load_clips(dataset))
    assert {c.source for c in clips} >= {"own", "synth_cry"}
    with pytest.raises(DatasetError, match="same file twice"):
        load_data_dirs(f"{dataset},{dataset}")
