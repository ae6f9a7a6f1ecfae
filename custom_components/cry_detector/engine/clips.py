"""Cry clips: keep recent audio, cut episodes (with pre/post-roll) and save them for review.

A TeeSource wraps the pipeline's AudioSource and keeps a ring buffer of recent chunks; a
ClipRecorder watches the window results and, once the post-roll has arrived, hands out ClipJobs;
write_clip() (blocking: run it in a worker thread) saves a job as FLAC + JSON sidecar + PNG
spectrogram; enforce_retention() deletes the oldest clips first.
"""

from __future__ import annotations

from collections import deque
import contextlib
from dataclasses import dataclass, field
import errno
import json
from pathlib import Path
import struct
from typing import TYPE_CHECKING, Any
import zlib

import numpy as np
import numpy.typing as npt

from .features import FeatureConfig, log_mel
from .sources import AudioChunk, AudioSource

if TYPE_CHECKING:
    from .pipeline import WindowResult
    from .tracker import Episode

Int16Array = npt.NDArray[np.int16]

CLIP_SUFFIX = ".flac"
SIDECAR_SUFFIX = ".json"
SPECTROGRAM_SUFFIX = ".png"
KIND_EPISODE = "episode"
KIND_NEAR_MISS = "near_miss"
LABELS = ("crying", "not_crying")
# Windows below the threshold but above this fraction of it count as near misses.
NEAR_MISS_FRACTION = 0.6
SPECTROGRAM_ROW_PIXELS = 3


class ClipStorageFullError(OSError):
    """The disk holding the clips is full."""


@dataclass(frozen=True)
class ClipConfig:
    """How clips are cut and how often near misses are kept."""

    pre_roll: float = 3.0
    post_roll: float = 2.0
    max_seconds: float = 120.0
    threshold: float = 0.5
    near_miss_interval: float = 3600.0


@dataclass(frozen=True)
class ClipJob:
    """Audio and metadata of one clip, ready to be written."""

    samples: Int16Array
    sample_rate: int
    start: float
    metadata: dict[str, Any]


@dataclass
class _Pending:
    """A clip waiting for its post-roll."""

    kind: str
    start: float
    end: float
    event_start: float
    event_end: float
    peak: float


class TeeSource(AudioSource):
    """An AudioSource that passes another one's chunks through and remembers recent ones."""

    def __init__(self, inner: AudioSource, keep_seconds: float) -> None:
        """Wrap `inner`; keep at least `keep_seconds` of its latest audio."""
        self.inner = inner
        self.sample_rate = inner.sample_rate
        self.description = inner.description
        self.live = inner.live
        self.keep_seconds = keep_seconds
        self._chunks: deque[AudioChunk] = deque()
        self._kept = 0.0

    @property
    def last_error(self) -> object:
        """The wrapped source's last error, if it reports one."""
        return getattr(self.inner, "last_error", None)

    @property
    def latest(self) -> float | None:
        """Epoch time just after the newest kept sample."""
        if not self._chunks:
            return None
        return self._chunks[-1].end(self.sample_rate)

    async def open(self) -> None:
        """Open the wrapped source."""
        await self.inner.open()

    async def close(self) -> None:
        """Close the wrapped source and forget the audio."""
        self._chunks.clear()
        self._kept = 0.0
        await self.inner.close()

    async def read(self) -> AudioChunk | None:
        """Return the wrapped source's next chunk, remembering it."""
        chunk = await self.inner.read()
        if chunk is not None:
            self.remember(chunk)
        return chunk

    def remember(self, chunk: AudioChunk) -> None:
        """Add a chunk to the ring buffer; drop the oldest beyond keep_seconds."""
        self._chunks.append(chunk)
        self._kept += chunk.duration(self.sample_rate)
        while (
            self._chunks
            and self._kept - self._chunks[0].duration(self.sample_rate)
            >= self.keep_seconds
        ):
            self._kept -= self._chunks.popleft().duration(self.sample_rate)

    def audio_between(self, start: float, end: float) -> tuple[float, Int16Array]:
        """Return (epoch time of the first sample, samples) of the kept audio in [start, end)."""
        rate = self.sample_rate
        pieces: list[Int16Array] = []
        first: float | None = None
        for chunk in self._chunks:
            chunk_end = chunk.end(rate)
            if chunk_end <= start or chunk.start >= end:
                continue
            begin = max(0, round((start - chunk.start) * rate))
            stop = min(chunk.samples.shape[0], round((end - chunk.start) * rate))
            if stop <= begin:
                continue
            if first is None:
                first = chunk.start + begin / rate
            pieces.append(chunk.samples[begin:stop])
        if not pieces or first is None:
            return start, np.zeros(0, dtype=np.int16)
        return first, np.concatenate(pieces)


@dataclass
class ClipRecorder:
    """Turn window results into ClipJobs for episodes and (rate-limited) near misses."""

    tee: TeeSource
    config: ClipConfig
    model: dict[str, str]
    _pending: list[_Pending] = field(default_factory=list)
    _windows: deque[tuple[float, float, float]] = field(
        default_factory=lambda: deque(maxlen=2000)
    )
    _in_episode: bool = False
    _last_near_miss: float | None = None

    def feed(self, result: WindowResult) -> list[ClipJob]:
        """Take one window result; return the clips whose post-roll is complete."""
        update = result.update
        if result.end > result.start:
            self._windows.append((result.start, result.end, result.probability))
        if update.started is not None:
            self._in_episode = True
        if (ended := update.ended) is not None:
            self._in_episode = False
            self._add(KIND_EPISODE, ended.start, ended.end, ended.peak_probability)
        elif (
            not self._in_episode
            and not update.crying
            and result.end > result.start
            and self._is_near_miss(result)
        ):
            self._last_near_miss = result.end
            self._add(KIND_NEAR_MISS, result.start, result.end, result.probability)
        return self._ready(final=False)

    def flush(self, ended: Episode | None = None) -> list[ClipJob]:
        """The source ended (closing `ended`, if any): return every pending clip as it is."""
        if ended is not None:
            self._in_episode = False
            self._add(KIND_EPISODE, ended.start, ended.end, ended.peak_probability)
        return self._ready(final=True)

    def _is_near_miss(self, result: WindowResult) -> bool:
        """Whether a window is just below the threshold and none was kept recently."""
        threshold = self.config.threshold
        if not NEAR_MISS_FRACTION * threshold <= result.probability < threshold:
            return False
        last = self._last_near_miss
        return last is None or result.end - last >= self.config.near_miss_interval

    def _add(
        self, kind: str, event_start: float, event_end: float, peak: float
    ) -> None:
        """Queue a clip around an event."""
        start = event_start - self.config.pre_roll
        end = min(event_end + self.config.post_roll, start + self.config.max_seconds)
        self._pending.append(_Pending(kind, start, end, event_start, event_end, peak))

    def _ready(self, *, final: bool) -> list[ClipJob]:
        """Cut the pending clips whose audio is all there (all of them when final)."""
        latest = self.tee.latest
        jobs: list[ClipJob] = []
        waiting: list[_Pending] = []
        for pending in self._pending:
            if final or (latest is not None and latest >= pending.end):
                if (job := self._cut(pending)) is not None:
                    jobs.append(job)
            else:
                waiting.append(pending)
        self._pending = waiting
        return jobs

    def _cut(self, pending: _Pending) -> ClipJob | None:
        """Build the job of a pending clip (None when no audio is left)."""
        first, samples = self.tee.audio_between(pending.start, pending.end)
        if samples.shape[0] == 0:
            return None
        rate = self.tee.sample_rate
        end = first + samples.shape[0] / rate
        windows = [
            [round(start - first, 3), round(probability, 4)]
            for start, stop, probability in self._windows
            if stop > first and start < end
        ]
        metadata: dict[str, Any] = {
            "kind": pending.kind,
            "start": first,
            "end": end,
            "duration": round(end - first, 3),
            "event_start": pending.event_start,
            "event_end": pending.event_end,
            "pre_roll": round(pending.event_start - first, 3),
            "post_roll": round(end - pending.event_end, 3),
            "peak_probability": round(pending.peak, 4),
            "threshold": self.config.threshold,
            "windows": windows,
            "sample_rate": rate,
            "model": dict(self.model),
            "label": None,
        }
        return ClipJob(samples, rate, first, metadata)


def clip_files(clip: Path) -> tuple[Path, Path, Path]:
    """Return the (audio, sidecar, spectrogram) paths of a clip."""
    return (
        clip.with_suffix(CLIP_SUFFIX),
        clip.with_suffix(SIDECAR_SUFFIX),
        clip.with_suffix(SPECTROGRAM_SUFFIX),
    )


def encode_flac(samples: Int16Array, sample_rate: int, path: Path) -> None:
    """Write mono int16 samples as a FLAC file with PyAV."""
    import av  # heavy import, only needed when saving

    with av.open(str(path), "w", format="flac") as container:
        stream = container.add_stream("flac", rate=sample_rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples, dtype=np.int16).reshape(1, -1),
            format="s16",
            layout="mono",
        )
        frame.sample_rate = sample_rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    """Return one PNG chunk."""
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def grayscale_png(pixels: npt.NDArray[np.uint8]) -> bytes:
    """Encode a 2-D uint8 array (rows top to bottom) as an 8-bit grayscale PNG."""
    height, width = pixels.shape
    raw = b"".join(b"\x00" + row.tobytes() for row in pixels)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(raw, 6))
        + _png_chunk(b"IEND", b"")
    )


def spectrogram_png(samples: Int16Array, features: FeatureConfig) -> bytes:
    """Render a log-mel spectrogram (low frequencies at the bottom) as a PNG."""
    mel = np.asarray(log_mel(samples, features), dtype=np.float64)
    if mel.size == 0:
        mel = np.zeros((1, features.mel_bands))
    low, high = np.percentile(mel, 5), np.max(mel)
    scaled = np.clip((mel - low) / max(high - low, 1e-6), 0.0, 1.0)
    image = (255.0 * scaled.T[::-1]).astype(np.uint8)
    return grayscale_png(np.repeat(image, SPECTROGRAM_ROW_PIXELS, axis=0))


def write_clip(job: ClipJob, clip: Path, features: FeatureConfig) -> Path:
    """Save a job as clip.flac, clip.json and clip.png (blocking); return the FLAC path.

    Raises ClipStorageFullError when the disk is full (partial files are removed).
    """
    audio, sidecar, picture = clip_files(clip)
    try:
        clip.parent.mkdir(parents=True, exist_ok=True)
        encode_flac(job.samples, job.sample_rate, audio)
        picture.write_bytes(spectrogram_png(job.samples, features))
        sidecar.write_text(json.dumps(job.metadata, indent=1), encoding="utf-8")
    except OSError as err:
        for path in (audio, sidecar, picture):
            path.unlink(missing_ok=True)
        if err.errno == errno.ENOSPC:
            raise ClipStorageFullError(
                errno.ENOSPC, f"no space left for clips in {clip.parent}"
            ) from err
        raise
    return audio


def read_sidecar(clip: Path) -> dict[str, Any]:
    """Return a clip's sidecar (empty when missing or unreadable)."""
    try:
        data = json.loads(clip.with_suffix(SIDECAR_SUFFIX).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def set_label(clip: Path, label: str | None) -> None:
    """Write a label ("crying", "not_crying" or None) into a clip's sidecar."""
    data = read_sidecar(clip)
    data["label"] = label
    sidecar = clip.with_suffix(SIDECAR_SUFFIX)
    partial = sidecar.with_suffix(".json.part")
    partial.write_text(json.dumps(data, indent=1), encoding="utf-8")
    partial.replace(sidecar)


def delete_clip(clip: Path) -> None:
    """Delete a clip's files (and its day folder once empty)."""
    for path in clip_files(clip):
        path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        clip.parent.rmdir()


def list_clips(root: Path) -> list[Path]:
    """Return every clip (FLAC path) under root, oldest first (day folder, then time name)."""
    if not root.is_dir():
        return []
    return sorted(
        root.rglob(f"*{CLIP_SUFFIX}"),
        key=lambda path: (path.parent.name, path.name, str(path)),
    )


def _clip_bytes(clip: Path) -> int:
    """Return the size of a clip's files on disk."""
    total = 0
    for path in clip_files(clip):
        with contextlib.suppress(OSError):
            total += path.stat().st_size
    return total


def enforce_retention(
    root: Path, *, max_age_seconds: float, max_bytes: int, now: float
) -> list[Path]:
    """Delete clips older than max_age_seconds, then the oldest until under max_bytes."""
    deleted: list[Path] = []
    kept: list[tuple[Path, int]] = []
    for clip in list_clips(root):
        start = read_sidecar(clip).get("start")
        age = now - (start if isinstance(start, (int, float)) else clip.stat().st_mtime)
        if age > max_age_seconds:
            delete_clip(clip)
            deleted.append(clip)
        else:
            kept.append((clip, _clip_bytes(clip)))
    total = sum(size for _, size in kept)
    for clip, size in kept:
        if total <= max_bytes:
            break
        delete_clip(clip)
        deleted.append(clip)
        total -= size
    return deleted
