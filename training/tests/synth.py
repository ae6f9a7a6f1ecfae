"""Synthetic audio for the tests: cry-like harmonic sweeps and nursery-like negatives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from cry_training.audio import write_audio
from cry_training.dataset import Clip, write_manifest

RATE = 16000
FloatArray = npt.NDArray[np.float32]


def cry(seconds: float, rng: np.random.Generator, rate: int = RATE) -> FloatArray:
    """Bursts of a harmonic tone (f0 350-550 Hz, rising then falling, vibrato) with breaths."""
    time = np.arange(int(seconds * rate)) / rate
    burst = rng.uniform(0.7, 1.2)
    phase_in_burst = (time % (burst + 0.25)) / burst
    envelope = np.where(
        phase_in_burst < 1.0, np.sin(np.pi * np.clip(phase_in_burst, 0, 1)) ** 0.5, 0.0
    )
    f0 = rng.uniform(350, 550) * (
        1 + 0.25 * np.sin(np.pi * np.clip(phase_in_burst, 0, 1))
    )
    f0 = f0 * (1 + 0.03 * np.sin(2 * np.pi * rng.uniform(5, 8) * time))
    phase = 2 * np.pi * np.cumsum(f0) / rate
    tone = sum(np.sin(k * phase) / k for k in range(1, 7))
    signal = envelope * tone + 0.01 * rng.normal(size=time.size)
    return np.asarray(0.3 * signal / np.max(np.abs(signal)), dtype=np.float32)


def negative(
    seconds: float, rng: np.random.Generator, kind: str, rate: int = RATE
) -> FloatArray:
    """Nursery negatives: noise machine, fan hum, low speech-like buzz, knocks, room tone."""
    n = int(seconds * rate)
    time = np.arange(n) / rate
    if kind == "noise":
        signal = rng.normal(size=n)
    elif kind == "hum":
        signal = (
            np.sin(2 * np.pi * 100 * time)
            + 0.5 * np.sin(2 * np.pi * 50 * time)
            + 0.3 * rng.normal(size=n)
        )
    elif kind == "speech":
        f0 = rng.uniform(90, 160) * (1 + 0.1 * np.sin(2 * np.pi * 3 * time))
        phase = 2 * np.pi * np.cumsum(f0) / rate
        syllables = (np.sin(2 * np.pi * rng.uniform(3, 5) * time) > 0).astype(float)
        signal = syllables * sum(np.sin(k * phase) / k**1.5 for k in range(1, 12))
    elif kind == "knock":
        signal = np.zeros(n)
        for start in rng.integers(0, n - 800, size=6):
            signal[start : start + 800] += rng.normal(size=800) * np.exp(
                -np.arange(800) / 120
            )
    else:  # room tone
        signal = 0.01 * rng.normal(size=n)
    return np.asarray(
        0.2 * signal / max(np.max(np.abs(signal)), 1e-9), dtype=np.float32
    )


NEGATIVE_KINDS = ("noise", "hum", "speech", "knock", "room")


def make_dataset(
    root: Path,
    groups: int = 10,
    clips_per_group: int = 2,
    seconds: float = 2.0,
    seed: int = 7,
) -> Path:
    """Write a manifest.csv dataset: `groups` babies and `groups` negative recordings."""
    rng = np.random.default_rng(seed)
    clips = []
    for group in range(groups):
        for number in range(clips_per_group):
            path = root / "crying" / "synth" / f"baby{group}_{number}.flac"
            write_audio(path, cry(seconds, rng), RATE)
            clips.append(
                Clip(
                    path,
                    "crying",
                    "synth_cry",
                    "infant_cry",
                    f"baby{group}",
                    8000,
                    seconds,
                    "CC0-1.0",
                )
            )
        kind = NEGATIVE_KINDS[group % len(NEGATIVE_KINDS)]
        for number in range(clips_per_group):
            path = root / "not_crying" / "synth" / f"{kind}{group}_{number}.flac"
            write_audio(path, negative(seconds, rng, kind), RATE)
            clips.append(
                Clip(
                    path,
                    "not_crying",
                    "synth_negative",
                    kind,
                    f"{kind}{group}",
                    16000,
                    seconds,
                    "CC BY-NC 3.0",
                )
            )
    write_manifest(root / "manifest.csv", clips)
    return root
