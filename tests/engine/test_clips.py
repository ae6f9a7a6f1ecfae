"""Clip engine: ring buffer, episode and near-miss cutting, PNG spectrograms, retention."""

from __future__ import annotations

import json
from pathlib import Path
import struct
import zlib

import numpy as np
import pytest

from custom_components.cry_detector.engine.clips import (
    KIND_EPISODE,
    KIND_NEAR_MISS,
    ClipConfig,
    ClipRecorder,
    TeeSource,
    enforce_retention,
    list_clips,
    spectrogram_png,
)
from custom_components.cry_detector.engine.features import FeatureConfig
from custom_components.cry_detector.engine.pipeline import WindowResult
from custom_components.cry_detector.engine.sources import AudioChunk, AudioSource
from custom_components.cry_detector.engine.tracker import Episode, TrackerUpdate

from .audio import cry_bout, room_tone, to_int16

RATE = 16000
CHUNK = 1600  # 0.1 s
T0 = 1_780_000_000.0


class ArraySource(AudioSource):
    """Plays an int16 array in 0.1 s chunks stamped from T0."""

    def __init__(self, samples: np.ndarray) -> None:
        """Hold the samples."""
        self.samples = samples
        self.sample_rate = RATE
        self.description = "array"
        self.live = False
        self.position = 0
        self.closed = False

    async def open(self) -> None:
        """Nothing to open."""

    async def read(self) -> AudioChunk | None:
        """Return the next chunk."""
        if self.position >= self.samples.shape[0]:
            return None
        part = self.samples[self.position : self.position + CHUNK]
        chunk = AudioChunk(part, T0 + self.position / RATE)
        self.position += CHUNK
        return chunk

    async def close(self) -> None:
        """Remember the close."""
        self.closed = True


def ramp(seconds: float) -> np.ndarray:
    """Samples whose value is their index modulo 30000 (easy to locate)."""
    return (np.arange(round(seconds * RATE)) % 30000).astype(np.int16)


async def play(tee: TeeSource) -> None:
    """Read a tee to its end."""
    await tee.open()
    while await tee.read() is not None:
        pass


async def test_tee_passes_audio_and_keeps_the_latest() -> None:
    """Chunks pass through unchanged; at least keep_seconds (not much more) are kept exactly."""
    samples = ramp(10.0)
    inner = ArraySource(samples)
    tee = TeeSource(inner, keep_seconds=3.0)
    await tee.open()
    passed = []
    while (chunk := await tee.read()) is not None:
        passed.append(chunk.samples)
    assert np.array_equal(np.concatenate(passed), samples)
    assert tee.latest == pytest.approx(T0 + 10.0)
    first, kept = tee.audio_between(T0 + 7.05, T0 + 9.55)
    assert first == pytest.approx(T0 + 7.05)
    assert np.array_equal(kept, samples[round(7.05 * RATE) : round(9.55 * RATE)])
    first, kept = tee.audio_between(T0, T0 + 10.0)  # older audio is gone
    assert 3.0 <= kept.shape[0] / RATE <= 3.1
    assert first == pytest.approx(T0 + 10.0 - kept.shape[0] / RATE)
    await tee.close()
    assert inner.closed
    assert tee.latest is None


def result(
    start: float,
    probability: float,
    *,
    crying: bool = False,
    started: Episode | None = None,
    ended: Episode | None = None,
) -> WindowResult:
    """A 0.5 s window result."""
    update = TrackerUpdate(probability, probability, crying, started, ended, ())
    return WindowResult(T0 + start, T0 + start + 0.5, probability, -30.0, update)


async def test_episode_clip_waits_for_post_roll() -> None:
    """An ended episode becomes a clip once its post-roll has arrived, with pre-roll."""
    tee = TeeSource(ArraySource(ramp(20.0)), keep_seconds=60.0)
    await play(tee)
    recorder = ClipRecorder(tee, ClipConfig(), {"name": "m", "version": "1"})
    assert (
        recorder.feed(
            result(5.0, 0.9, crying=True, started=Episode(T0 + 5, T0 + 5.5, 0.9))
        )
        == []
    )
    episode = Episode(T0 + 5.0, T0 + 12.0, 0.97)
    jobs = recorder.feed(result(12.0, 0.1, ended=episode))
    assert len(jobs) == 1
    job = jobs[0]
    assert job.metadata["kind"] == KIND_EPISODE
    assert job.start == pytest.approx(T0 + 2.0)
    assert job.samples.shape[0] == 12 * RATE  # 3 s + 7 s + 2 s
    assert job.metadata["peak_probability"] == 0.97
    assert job.metadata["windows"] == [[3.0, 0.9], [10.0, 0.1]]


async def test_episode_clip_pending_until_audio_arrives() -> None:
    """Before the post-roll is buffered nothing is cut; flush() cuts with what there is."""
    tee = TeeSource(ArraySource(ramp(13.0)), keep_seconds=60.0)
    await play(tee)
    recorder = ClipRecorder(tee, ClipConfig(), {"name": "m", "version": "1"})
    assert recorder.feed(result(12.0, 0.1, ended=Episode(T0 + 5, T0 + 12, 0.9))) == []
    (job,) = recorder.flush()
    assert job.samples.shape[0] == 11 * RATE
    assert job.metadata["post_roll"] == pytest.approx(1.0)


async def test_near_misses_are_rate_limited() -> None:
    """Windows just below the threshold give one sample per interval; low ones give none."""
    tee = TeeSource(ArraySource(ramp(40.0)), keep_seconds=60.0)
    await play(tee)
    config = ClipConfig(threshold=0.5, near_miss_interval=20.0)
    recorder = ClipRecorder(tee, config, {"name": "m", "version": "1"})
    kinds = []
    for start, probability in ((2.0, 0.2), (5.0, 0.45), (10.0, 0.4), (26.0, 0.35)):
        kinds += [
            job.metadata["kind"] for job in recorder.feed(result(start, probability))
        ]
    assert kinds == [KIND_NEAR_MISS, KIND_NEAR_MISS]


def png_size(png: bytes) -> tuple[int, int]:
    """Return (width, height) of a PNG after checking its chunks' CRCs."""
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    position, size = 8, (0, 0)
    while position < len(png):
        (length,) = struct.unpack(">I", png[position : position + 4])
        body = png[position + 4 : position + 8 + length]
        (crc,) = struct.unpack(
            ">I", png[position + 8 + length : position + 12 + length]
        )
        assert zlib.crc32(body) == crc
        if body[:4] == b"IHDR":
            size = struct.unpack(">II", body[4:12])
        if body[:4] == b"IDAT":
            assert len(zlib.decompress(body[4:])) == size[1] * (size[0] + 1)
        position += 12 + length
    return size


def test_spectrogram_png_shows_the_cry_band() -> None:
    """One column per feature frame, 3 rows per mel band; the cry is brighter than the room."""
    features = FeatureConfig()
    audio = room_tone(4.0, RATE, level_dbfs=-50.0)
    audio[RATE : 3 * RATE] += cry_bout(2.0, RATE, level_dbfs=-18.0)
    png = spectrogram_png(to_int16(audio), features)
    width, height = png_size(png)
    assert height == 3 * features.mel_bands
    assert width == pytest.approx(4.0 * RATE / features.hop_length, abs=3)


def write_fake(folder: Path, name: str, start: float, size: int) -> Path:
    """A clip of `size` bytes with a sidecar."""
    folder.mkdir(parents=True, exist_ok=True)
    audio = folder / f"{name}.flac"
    audio.write_bytes(b"\0" * size)
    audio.with_suffix(".json").write_text(json.dumps({"start": start}))
    return audio


def test_retention_deletes_old_then_oldest(tmp_path: Path) -> None:
    """Age first, then the oldest clips until the total fits; sidecars and empty days go too."""
    now = T0
    ancient = write_fake(
        tmp_path / "e" / "2026-01-01", "01-00-00_episode", now - 40 * 86400, 10
    )
    older = write_fake(
        tmp_path / "e" / "2026-06-01", "01-00-00_episode", now - 3600, 400
    )
    newer = write_fake(tmp_path / "e" / "2026-06-01", "02-00-00_episode", now - 60, 400)
    newest = write_fake(tmp_path / "e" / "2026-06-02", "00-30-00_episode", now, 400)
    deleted = enforce_retention(
        tmp_path, max_age_seconds=30 * 86400, max_bytes=1000, now=now
    )
    assert deleted == [ancient, older]
    assert not ancient.parent.exists()
    assert not older.with_suffix(".json").exists()
    assert list_clips(tmp_path) == [newer, newest]
