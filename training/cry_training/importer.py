"""Import the clips Home Assistant saved (and you labelled) as a training data folder."""

from __future__ import annotations

from dataclasses import dataclass
import json
from pathlib import Path
import shutil
from typing import Any

from .dataset import MANIFEST_NAME, OWN_LICENSE, OWN_SOURCE, Clip, write_manifest

LABELS = ("crying", "not_crying")
CLIP_SUFFIX = ".flac"


@dataclass(frozen=True)
class ImportSummary:
    """What an import found: clips written per label and clips skipped (unlabelled)."""

    clips: list[Clip]
    unlabelled: int

    def counts(self) -> dict[str, int]:
        """Clips per label."""
        counts = dict.fromkeys(LABELS, 0)
        for clip in self.clips:
            counts[clip.label] += 1
        return counts


def _sidecar(audio: Path) -> dict[str, Any]:
    """Read a clip's JSON sidecar (empty when missing or broken)."""
    try:
        data = json.loads(audio.with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _number(value: object) -> float | None:
    """A JSON number, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def import_clips(clips_dir: Path, output: Path) -> ImportSummary:
    """Copy the labelled clips under clips_dir (<entry>/<day>/<clip>.flac) into output.

    Writes output/<label>/own/<entry>_<day>_<clip>.flac and output/manifest.csv; the group is
    <entry>/<day> so one night's clips never straddle train and test.
    """
    clips: list[Clip] = []
    unlabelled = 0
    for audio in sorted(clips_dir.rglob(f"*{CLIP_SUFFIX}")):
        relative = audio.relative_to(clips_dir).parts
        if len(relative) < 3:
            continue
        entry, day = relative[-3], relative[-2]
        sidecar = _sidecar(audio)
        label = sidecar.get("label")
        if label not in LABELS:
            unlabelled += 1
            continue
        target = output / str(label) / OWN_SOURCE / f"{entry}_{day}_{audio.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(audio, target)
        rate = _number(sidecar.get("sample_rate"))
        clips.append(
            Clip(
                path=target.resolve(),
                label=str(label),
                source=OWN_SOURCE,
                cls=f"{OWN_SOURCE}/{sidecar.get('kind') or 'clip'}",
                group=f"{OWN_SOURCE}:{entry}/{day}",
                original_sample_rate=None if rate is None else int(rate),
                seconds=_number(sidecar.get("duration")),
                license=OWN_LICENSE,
            )
        )
    write_manifest(output / MANIFEST_NAME, clips)
    return ImportSummary(clips, unlabelled)
