"""Model inputs: clips -> (augmented) audio -> the ENGINE's patches(), cached on disk."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ._engine import engine_dir, features as engine_features
from .audio import read_audio
from .augment import Augmenter
from .dataset import Clip

FloatArray = npt.NDArray[np.float32]
FeatureConfig = engine_features.FeatureConfig
CACHE_FORMAT = 3


def fit_to_patch(samples: npt.ArrayLike, config: FeatureConfig) -> FloatArray:
    """Zero-pad a clip shorter than one patch on both sides (centred); longer clips unchanged.

    Training and evaluation use the same rule, so a 0.5 s clip scores the same way in both.
    """
    values = np.asarray(samples, dtype=np.float32)
    missing = config.patch_samples - values.size
    if missing <= 0:
        return values
    before = missing // 2
    return np.pad(values, (before, missing - before))


def clip_patches(samples: npt.ArrayLike, config: FeatureConfig) -> FloatArray:
    """Normalised model patches of a clip, exactly as the engine computes them."""
    return engine_features.patches(fit_to_patch(samples, config), config)


@dataclass
class WindowSet:
    """Patches with their labels and where they come from."""

    patches: FloatArray  # (n, patch_frames, mel_bands)
    labels: npt.NDArray[np.int8]  # 1 = positive
    clip_index: npt.NDArray[np.int32]  # index into `paths`
    window_index: npt.NDArray[np.int32]  # position of the patch in its clip
    copy: npt.NDArray[np.int8]  # 0 = clean, k = k-th augmented copy
    paths: list[str]

    def __len__(self) -> int:
        """Number of patches."""
        return int(self.labels.shape[0])

    def save(self, path: Path) -> None:
        """Write atomically as .npz."""
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(
            temporary,
            patches=self.patches,
            labels=self.labels,
            clip_index=self.clip_index,
            window_index=self.window_index,
            copy=self.copy,
            paths=np.asarray(self.paths, dtype=str),
        )
        temporary.replace(path)

    @classmethod
    def load(cls, path: Path) -> WindowSet:
        """Read a set written by save()."""
        with np.load(path) as data:
            return cls(
                data["patches"],
                data["labels"],
                data["clip_index"],
                data["window_index"],
                data["copy"],
                [str(item) for item in data["paths"]],
            )


def _empty(config: FeatureConfig, paths: list[str]) -> WindowSet:
    """A set with no patches."""
    return WindowSet(
        np.zeros((0, config.patch_frames, config.mel_bands), np.float32),
        np.zeros(0, np.int8),
        np.zeros(0, np.int32),
        np.zeros(0, np.int32),
        np.zeros(0, np.int8),
        paths,
    )


def clip_identity(clip: Clip) -> str:
    """What names a clip independently of where the data folder lives (for seeding)."""
    return f"{clip.label}/{clip.source}/{clip.group}/{clip.path.name}"


def clip_rng(seed: int, identity: str, copy: int) -> np.random.Generator:
    """A generator that depends only on (seed, clip, copy): order- and location-independent."""
    digest = int.from_bytes(hashlib.sha256(identity.encode()).digest()[:8], "little")
    return np.random.default_rng([seed, digest, copy])


@dataclass(frozen=True)
class WindowPlan:
    """How to turn one split's clips into windows."""

    config: FeatureConfig
    positive_label: str
    copies: int = 0  # augmented copies besides the clean one
    max_windows: int | None = None  # per clip and copy
    max_seconds: float | None = None  # use at most this much of each clip
    seed: int = 0
    # Positive windows this many dB below the clip's loudest are left out (None: kept).
    positive_floor_db: float | None = None


def window_levels(
    samples: npt.ArrayLike, config: FeatureConfig
) -> npt.NDArray[np.float64]:
    """The level (dBFS) of the audio under each of clip_patches()'s windows."""
    values = fit_to_patch(samples, config)
    count = engine_features.patch_count(values.size, config)
    step = config.patch_hop_frames * config.hop_length
    return np.array(
        [
            engine_features.dbfs(values[i * step : i * step + config.patch_samples])
            for i in range(count)
        ]
    )


def loud_windows(
    samples: npt.ArrayLike, config: FeatureConfig, floor_db: float
) -> npt.NDArray[np.bool_]:
    """Which windows are within floor_db of the clip's loudest window."""
    return loud_levels(window_levels(samples, config), floor_db)


def loud_levels(
    levels: npt.NDArray[np.float64], floor_db: float
) -> npt.NDArray[np.bool_]:
    """Which of these window levels are within floor_db of the loudest."""
    if levels.size == 0:
        return np.zeros(0, dtype=bool)
    return np.asarray(levels >= levels.max() - floor_db)


def build_windows(
    clips: Sequence[Clip],
    plan: WindowPlan,
    load: Callable[[Clip], FloatArray],
    augmenter: Augmenter | None = None,
    progress: Callable[[int], Any] | None = None,
) -> WindowSet:
    """Compute patches for every clip (and augmented copies) with the engine's features."""
    paths = [str(clip.path) for clip in clips]
    parts: list[tuple[FloatArray, int, int, int, npt.NDArray[np.int64]]] = []
    for index, clip in enumerate(clips):
        clean = load(clip)
        label = int(clip.label == plan.positive_label)
        # Measured on the clean clip: the same windows stay in every augmented copy.
        loud = (
            loud_windows(clean, plan.config, plan.positive_floor_db)
            if label and plan.positive_floor_db is not None
            else None
        )
        for copy in range(plan.copies + 1 if augmenter is not None else 1):
            rng = clip_rng(plan.seed, clip_identity(clip), copy)
            audio = clean if copy == 0 else augmenter(clean, rng)  # type: ignore[misc]
            patches = clip_patches(audio, plan.config)
            positions = np.arange(patches.shape[0])
            if loud is not None:  # a copy may have a window more (time shift): left out
                positions = positions[: loud.size][loud[: positions.size]]
                patches = patches[positions]
            if plan.max_windows is not None and positions.size > plan.max_windows:
                positions = np.sort(
                    rng.choice(positions, plan.max_windows, replace=False)
                )
                patches = patches[positions]
            parts.append((patches, label, index, copy, positions))
        if progress is not None:
            progress(1)
    if not parts:
        return _empty(plan.config, paths)
    counts = [part[0].shape[0] for part in parts]
    return WindowSet(
        np.concatenate([part[0] for part in parts]).astype(np.float32),
        np.repeat([part[1] for part in parts], counts).astype(np.int8),
        np.repeat([part[2] for part in parts], counts).astype(np.int32),
        np.concatenate([part[4] for part in parts]).astype(np.int32),
        np.repeat([part[3] for part in parts], counts).astype(np.int8),
        paths,
    )


def concatenate_windows(first: WindowSet, second: WindowSet) -> WindowSet:
    """One set holding both (the second's clip indices shifted past the first's paths)."""
    return WindowSet(
        np.concatenate((first.patches, second.patches)),
        np.concatenate((first.labels, second.labels)),
        np.concatenate(
            (first.clip_index, second.clip_index + np.int32(len(first.paths)))
        ),
        np.concatenate((first.window_index, second.window_index)),
        np.concatenate((first.copy, second.copy)),
        [*first.paths, *second.paths],
    )


def engine_features_digest() -> str:
    """Hash of the engine's features.py: a change there invalidates cached patches."""
    return hashlib.sha256((engine_dir() / "features.py").read_bytes()).hexdigest()[:16]


def cache_key(clips: Sequence[Clip], plan: WindowPlan, extra: dict[str, Any]) -> str:
    """A digest of everything the windows depend on."""
    description = {
        "format": CACHE_FORMAT,
        "engine_features": engine_features_digest(),
        "features": plan.config.to_dict(),
        "clips": [[str(c.path), c.label] for c in clips],
        "plan": [
            plan.positive_label,
            plan.copies,
            plan.max_windows,
            plan.max_seconds,
            plan.seed,
            *([] if plan.positive_floor_db is None else [plan.positive_floor_db]),
        ],
        "extra": extra,
    }
    text = json.dumps(description, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def cached(path: Path | None, build: Callable[[], WindowSet]) -> tuple[WindowSet, bool]:
    """Load the set from path when present, else build and save it; (set, was_cached)."""
    if path is not None and path.is_file():
        try:
            return WindowSet.load(path), True
        except (OSError, ValueError, KeyError):
            path.unlink(missing_ok=True)  # a torn or stale file: rebuild it
    windows = build()
    if path is not None:
        windows.save(path)
    return windows, False


def make_loader(
    sample_rate: int, max_seconds: float | None
) -> Callable[[Clip], FloatArray]:
    """Return clip -> mono float32 audio at the feature rate (first max_seconds)."""

    def load(clip: Clip) -> FloatArray:
        return read_audio(clip.path, sample_rate, max_seconds)

    return load
