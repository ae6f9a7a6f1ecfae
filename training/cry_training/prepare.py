"""`cry-train prepare`: raw recordings -> fixed-length mono clips at one rate, plus manifest.csv.

The original author did this with `sox in.wav out.wav trim 0 5 vol 45 dB rate 22050`; here the
same happens for a whole folder (one sub-folder per label) or a manifest.csv, and every piece of
a long recording is kept, not only the first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
import math
from pathlib import Path
import re

from ._progress import progress_bar
from .audio import AudioError, apply_gain, probe, read_audio, write_audio
from .dataset import (
    MANIFEST_NAME,
    OWN_LICENSE,
    OWN_SOURCE,
    Clip,
    DatasetError,
    read_manifest,
    scan_label_folders,
    write_manifest,
)

Log = Callable[[str], None]
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class PrepareOptions:
    """How to cut and convert."""

    clip_seconds: float = 5.0  # 0 = keep whole files
    sample_rate: int = 16000
    gain_db: float = 0.0
    offset_seconds: float = 0.0
    min_seconds: float = 1.0  # a shorter last piece is dropped
    max_clips_per_file: int | None = None
    audio_format: str = "flac"  # flac | wav
    source: str = OWN_SOURCE  # for the folder layout
    license_text: str = OWN_LICENSE
    group_by: str = "file"  # folder layout: file | folder


def _safe(name: str) -> str:
    """A file-name-safe version of a name."""
    return _UNSAFE.sub("_", name).strip("_") or "clip"


def input_clips(input_path: Path, options: PrepareOptions) -> list[Clip]:
    """The recordings to prepare: manifest.csv (file or in the folder), else label folders."""
    if input_path.is_file():
        return read_manifest(input_path)
    if (input_path / MANIFEST_NAME).is_file():
        return read_manifest(input_path / MANIFEST_NAME)
    if not input_path.is_dir():
        raise DatasetError(f"{input_path}: no such folder or manifest")
    return scan_label_folders(
        input_path,
        source=options.source,
        license_text=options.license_text,
        group_by=options.group_by,
    )


def pieces(total: int, options: PrepareOptions) -> list[tuple[int, int]]:
    """(start, end) sample ranges of the clips cut from `total` samples."""
    rate = options.sample_rate
    start = round(options.offset_seconds * rate)
    if start >= total:
        return []
    if options.clip_seconds <= 0:
        return [(start, total)]
    length = round(options.clip_seconds * rate)
    minimum = round(options.min_seconds * rate)
    ranges = []
    for begin in range(start, total, length):
        end = min(begin + length, total)
        if end - begin >= max(minimum, 1):
            ranges.append((begin, end))
    if options.max_clips_per_file is not None:
        ranges = ranges[: options.max_clips_per_file]
    return ranges


def prepare(
    input_path: Path,
    output_dir: Path,
    options: PrepareOptions = PrepareOptions(),
    log: Log = print,
    progress: bool = True,
) -> list[Clip]:
    """Cut, convert and write every recording; write output_dir/manifest.csv; return the clips."""
    if options.audio_format not in ("flac", "wav"):
        raise ValueError(
            f"audio_format must be flac or wav, got {options.audio_format!r}"
        )
    recordings = input_clips(Path(input_path), options)
    output_dir = Path(output_dir)
    written: list[Clip] = []
    skipped = 0
    used: set[Path] = set()
    for recording in progress_bar(
        recordings, enabled=progress, desc="prepare", unit="file"
    ):
        try:
            written.extend(_prepare_one(recording, output_dir, options, used))
        except AudioError as err:
            skipped += 1
            log(f"skipped: {err}")
    write_manifest(output_dir / MANIFEST_NAME, written)
    log(
        f"{len(written)} clips from {len(recordings) - skipped} recordings -> {output_dir}"
        + (f" ({skipped} unreadable skipped)" if skipped else "")
    )
    return written


def _unique(path: Path, used: set[Path]) -> Path:
    """The path, or path with -2, -3, ... when another recording already took it."""
    candidate, number = path, 1
    while candidate in used:
        number += 1
        candidate = path.with_name(f"{path.stem}-{number}{path.suffix}")
    used.add(candidate)
    return candidate


def _prepare_one(
    recording: Clip, output_dir: Path, options: PrepareOptions, used: set[Path]
) -> list[Clip]:
    """Cut one recording into clips."""
    info = probe(recording.path)
    samples = read_audio(recording.path, options.sample_rate)
    if options.gain_db:
        samples = apply_gain(samples, options.gain_db)
    ranges = pieces(samples.size, options)
    folder = output_dir / _safe(recording.label) / _safe(recording.source)
    stem = _safe(recording.path.stem)
    digits = max(2, int(math.log10(max(len(ranges), 1))) + 1)
    clips = []
    for number, (start, end) in enumerate(ranges):
        name = (
            f"{stem}_{number:0{digits}d}.{options.audio_format}"
            if len(ranges) > 1
            else f"{stem}.{options.audio_format}"
        )
        path = _unique(folder / name, used)
        write_audio(path, samples[start:end], options.sample_rate)
        clips.append(
            replace(
                recording,
                path=path.resolve(),
                original_sample_rate=recording.original_sample_rate
                or info.sample_rate
                or None,
                seconds=(end - start) / options.sample_rate,
            )
        )
    return clips
