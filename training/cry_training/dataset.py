"""Clips on disk: manifest.csv or a folder per label, and the split by group."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
import csv
from dataclasses import dataclass, replace
import hashlib
from pathlib import Path

from .audio import is_audio_file

MANIFEST_NAME = "manifest.csv"
MANIFEST_COLUMNS = (
    "path",
    "label",
    "source",
    "class",
    "group",
    "original_sample_rate",
    "seconds",
    "license",
)
SPLITS = ("train", "val", "test")
OWN_SOURCE = "own"
OWN_LICENSE = "own recording (private)"


class DatasetError(ValueError):
    """The data folder or its manifest is unusable."""


@dataclass(frozen=True)
class Clip:
    """One audio file and what it is."""

    path: Path  # absolute
    label: str
    source: str
    cls: str
    group: str
    original_sample_rate: int | None
    seconds: float | None
    license: str

    def row(self, root: Path) -> dict[str, str]:
        """Return the manifest row (path relative to root)."""
        try:
            relative = self.path.resolve().relative_to(root.resolve())
        except ValueError:
            relative = self.path.resolve()
        return {
            "path": relative.as_posix(),
            "label": self.label,
            "source": self.source,
            "class": self.cls,
            "group": self.group,
            "original_sample_rate": ""
            if self.original_sample_rate is None
            else str(self.original_sample_rate),
            "seconds": "" if self.seconds is None else f"{self.seconds:.3f}",
            "license": self.license,
        }


def _optional_int(text: str | None) -> int | None:
    """Parse an optional integer cell."""
    return int(float(text)) if text not in (None, "") else None


def _optional_float(text: str | None) -> float | None:
    """Parse an optional number cell."""
    return float(text) if text not in (None, "") else None


def read_manifest(path: Path) -> list[Clip]:
    """Read a manifest.csv (paths relative to its folder); DatasetError when malformed."""
    root = path.parent.resolve()
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = {"path", "label"} - set(reader.fieldnames or ())
            if missing:
                raise DatasetError(f"{path}: missing column(s) {sorted(missing)}")
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DatasetError(f"{path}: cannot read manifest: {err}") from err
    try:
        return [_clip_from_row(root, row) for row in rows]
    except ValueError as err:
        raise DatasetError(f"{path}: bad row: {err}") from err


def _clip_from_row(root: Path, row: dict[str, str]) -> Clip:
    """Build a Clip from one manifest row; missing optional cells get defaults."""
    relative = row["path"]
    if not relative or not row.get("label"):
        raise ValueError(f"empty path or label in {row}")
    source = row.get("source") or OWN_SOURCE
    return Clip(
        path=root / relative,
        label=row["label"],
        source=source,
        cls=row.get("class") or row["label"],
        group=row.get("group") or f"{source}:{Path(relative).stem}",
        original_sample_rate=_optional_int(row.get("original_sample_rate")),
        seconds=_optional_float(row.get("seconds")),
        license=row.get("license") or OWN_LICENSE,
    )


def scan_label_folders(
    root: Path,
    *,
    source: str = OWN_SOURCE,
    license_text: str = OWN_LICENSE,
    group_by: str = "file",
) -> list[Clip]:
    """List audio under root/<label>/** ; group = the file, or its first sub-folder ("folder")."""
    if group_by not in ("file", "folder"):
        raise DatasetError(f"group_by must be file or folder, got {group_by!r}")
    clips = []
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        if label_dir.name.startswith((".", "_")):
            continue
        for path in sorted(
            p for p in label_dir.rglob("*") if p.is_file() and is_audio_file(p)
        ):
            relative = path.relative_to(label_dir)
            key = (
                relative.parts[0]
                if group_by == "folder" and len(relative.parts) > 1
                else relative.with_suffix("").as_posix()
            )
            clips.append(
                Clip(
                    path.resolve(),
                    label_dir.name,
                    source,
                    label_dir.name,
                    f"{source}:{label_dir.name}/{key}",
                    None,
                    None,
                    license_text,
                )
            )
    return clips


def load_clips(data_dir: Path) -> list[Clip]:
    """Read data_dir/manifest.csv, or else scan the folder-per-label layout."""
    data_dir = Path(data_dir)
    if data_dir.is_file() and data_dir.suffix == ".csv":
        clips = read_manifest(data_dir)
    elif (data_dir / MANIFEST_NAME).is_file():
        clips = read_manifest(data_dir / MANIFEST_NAME)
    elif data_dir.is_dir():
        clips = scan_label_folders(data_dir)
    else:
        raise DatasetError(f"{data_dir}: no such data folder")
    if not clips:
        raise DatasetError(
            f"{data_dir}: no clips (want manifest.csv or <label>/ folders)"
        )
    return clips


def load_data_dirs(data_dirs: str) -> list[Clip]:
    """Clips of one or more comma-separated data folders (e.g. your recordings + the corpus)."""
    folders = [part.strip() for part in data_dirs.split(",") if part.strip()]
    if not folders:
        raise DatasetError("no data folder given")
    clips = [clip for folder in folders for clip in load_clips(Path(folder))]
    if len({clip.path for clip in clips}) != len(clips):
        raise DatasetError(f"the data folders {folders} list the same file twice")
    return clips


def write_manifest(path: Path, clips: Iterable[Clip]) -> None:
    """Write a manifest.csv with paths relative to its folder."""
    root = path.parent.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        for clip in clips:
            writer.writerow(clip.row(root))


def select_clips(
    clips: Sequence[Clip],
    *,
    positive_label: str,
    negative_label: str,
    wanted_words: Sequence[str] = (),
    sources: Sequence[str] = (),
) -> tuple[list[Clip], list[str]]:
    """Keep wanted labels/sources and map labels to binary; return (clips, warnings)."""
    present = {clip.label for clip in clips}
    if positive_label not in present:
        raise DatasetError(
            f"no clips labelled {positive_label!r} (labels: {sorted(present)})"
        )
    wanted = set(wanted_words) if wanted_words else present
    wanted.add(positive_label)
    warnings = [
        f"label {word!r} has no clips; the other labels are the negatives"
        for word in sorted(wanted - present)
    ]
    if wanted & present == {positive_label}:
        # e.g. --wanted_words=silence,crying on a crying/not_crying corpus
        wanted = present
    unknown = sorted(present - wanted)
    if unknown:
        warnings.append(f"labels not in wanted_words are left out: {unknown}")
    selected = [
        replace(
            clip,
            label=positive_label if clip.label == positive_label else negative_label,
        )
        for clip in clips
        if clip.label in wanted and (not sources or clip.source in sources)
    ]
    if not any(clip.label == negative_label for clip in selected):
        raise DatasetError(
            "no negative clips: add folders/labels other than the positive one"
        )
    return selected, warnings


def _rank(seed: int, group: str) -> str:
    """Stable pseudo-random order key for a group."""
    return hashlib.sha256(f"{seed}:{group}".encode()).hexdigest()


def assign_splits(
    clips: Sequence[Clip],
    *,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    holdout_sources: Sequence[str] = (),
) -> dict[Path, str]:
    """Split by GROUP within each source (never by clip); held-out sources go to test whole."""
    groups_by_source: dict[str, set[str]] = defaultdict(set)
    for clip in clips:
        groups_by_source[clip.source].add(clip.group)
    split_of_group: dict[str, str] = {}
    for source, groups in groups_by_source.items():
        ordered = sorted(groups, key=lambda group: _rank(seed, group))
        if source in holdout_sources:
            split_of_group.update(dict.fromkeys(ordered, "test"))
            continue
        n_test, n_val = _split_counts(len(ordered), val_fraction, test_fraction)
        for position, group in enumerate(ordered):
            split = (
                "test"
                if position < n_test
                else "val"
                if position < n_test + n_val
                else "train"
            )
            split_of_group.setdefault(
                group, split
            )  # a group shared by sources keeps one split
    return {clip.path: split_of_group[clip.group] for clip in clips}


def _split_counts(
    n_groups: int, val_fraction: float, test_fraction: float
) -> tuple[int, int]:
    """Groups for (test, val): rounded, at least one each when there are enough groups."""
    if n_groups < 3:
        return 0, 0
    n_test = max(1, round(n_groups * test_fraction)) if test_fraction > 0 else 0
    n_val = max(1, round(n_groups * val_fraction)) if val_fraction > 0 else 0
    while n_test + n_val >= n_groups:
        n_val -= 1
    return n_test, max(0, n_val)


def write_split(path: Path, clips: Sequence[Clip], splits: dict[Path, str]) -> None:
    """Write split.csv: the manifest columns (absolute paths) plus the split of each clip."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=(*MANIFEST_COLUMNS, "split"))
        writer.writeheader()
        for clip in clips:
            writer.writerow(
                {
                    **clip.row(path.parent),
                    "path": str(clip.path),
                    "split": splits[clip.path],
                }
            )


def read_split(path: Path) -> dict[Path, str]:
    """Read split.csv into {absolute path: split}."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            return {
                Path(row["path"]).resolve(): row["split"]
                for row in csv.DictReader(handle)
            }
    except (OSError, KeyError, csv.Error) as err:
        raise DatasetError(f"{path}: cannot read split file: {err}") from err


def source_summary(clips: Sequence[Clip]) -> list[dict[str, object]]:
    """Return one entry per source: name, license(s), clips, seconds, labels (for the card)."""
    by_source: dict[str, list[Clip]] = defaultdict(list)
    for clip in clips:
        by_source[clip.source].append(clip)
    summary: list[dict[str, object]] = []
    for source in sorted(by_source):
        members = by_source[source]
        licenses = sorted({clip.license for clip in members})
        summary.append(
            {
                "name": source,
                "license": licenses[0] if len(licenses) == 1 else "; ".join(licenses),
                "clips": len(members),
                "seconds": round(sum(clip.seconds or 0.0 for clip in members), 1),
                "labels": sorted({clip.label for clip in members}),
            }
        )
    return summary
