"""Audio sources: fixed-size mono int16 chunks at the model's sample rate, stamped in epoch seconds."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from .ffmpeg import FfmpegSource
    from .file import FileSource
    from .sounddevice import SoundDeviceSource, list_input_devices

Int16Array = npt.NDArray[np.int16]

__all__ = [
    "AudioChunk",
    "AudioSource",
    "ChunkAssembler",
    "FfmpegSource",
    "FileSource",
    "InputDevice",
    "SoundDeviceSource",
    "chunk_size",
    "list_input_devices",
]


@dataclass(frozen=True)
class AudioChunk:
    """Mono int16 samples and the epoch time of the first one.

    `restamped` is True when the samples directly follow the previous chunk's although `start`
    jumped: the source moved its time base to follow the clock (NTP step, drift). Consumers shift
    their time by the jump instead of treating it as a gap in the audio.
    """

    samples: Int16Array
    start: float
    restamped: bool = False

    def duration(self, sample_rate: int) -> float:
        """Return the chunk's length in seconds."""
        return int(self.samples.shape[0]) / sample_rate

    def end(self, sample_rate: int) -> float:
        """Return the epoch time just after the last sample."""
        return self.start + self.duration(sample_rate)


@dataclass(frozen=True)
class InputDevice:
    """One PortAudio capture device."""

    name: str
    index: int
    max_input_channels: int
    default_samplerate: float
    hostapi: str


class AudioSource(ABC):
    """Async source of AudioChunks; use as `async with source:` or open()/read()/close().

    `live` is True when audio arrives in real time (a pipeline that falls behind must drop
    audio), False for offline sources read as fast as possible (a pipeline waits for them).
    """

    sample_rate: int
    description: str
    live: bool = True

    @abstractmethod
    async def open(self) -> None:
        """Start delivering audio; raise a SourceError subclass when that is impossible."""

    @abstractmethod
    async def read(self) -> AudioChunk | None:
        """Return the next chunk, or None when the source has ended."""

    @abstractmethod
    async def close(self) -> None:
        """Stop and release everything; safe to call more than once."""

    async def __aenter__(self) -> Self:
        """Open the source."""
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the source."""
        await self.close()


def chunk_size(sample_rate: int, chunk_seconds: float) -> int:
    """Return samples per chunk; ValueError unless it is at least one sample."""
    if not sample_rate > 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate!r}")
    samples = round(sample_rate * chunk_seconds)
    if samples < 1:
        raise ValueError(f"chunk_seconds {chunk_seconds!r} is shorter than one sample")
    return samples


class ChunkAssembler:
    """Cut a stream of int16 pieces into fixed-size chunks stamped from a time base.

    Chunk start = base + (samples since the base) / rate, so no clock jitter enters the stamps;
    `rebase()` starts a new time base (after a restart: a gap), `shift()` moves it under unbroken
    audio (the next chunk is marked restamped).
    """

    def __init__(self, sample_rate: int, chunk_samples: int) -> None:
        """Start empty with no time base."""
        self.sample_rate = sample_rate
        self.chunk_samples = chunk_samples
        self._pieces: list[Int16Array] = []
        self._buffered = 0
        self._base: float | None = None
        self._emitted = 0
        self._shifted = False
        self._skipped = False

    @property
    def has_base(self) -> bool:
        """Whether a time base is set."""
        return self._base is not None

    @property
    def buffered(self) -> int:
        """Samples waiting for a chunk."""
        return self._buffered

    @property
    def next_start(self) -> float:
        """Epoch time of the next sample to come out."""
        if self._base is None:
            raise RuntimeError("no time base")
        return self._base + self._emitted / self.sample_rate

    def rebase(self, base: float) -> None:
        """Start a new time base at `base` for the next sample; drop buffered samples."""
        self._pieces.clear()
        self._buffered = 0
        self._base = base
        self._emitted = 0
        self._shifted = False
        self._skipped = False

    def shift(self, seconds: float) -> None:
        """Move the time base (keep buffered samples); used to catch up with the wall clock."""
        if self._base is None:
            raise RuntimeError("no time base")
        self._base += seconds
        self._shifted = True

    def skip(self, missing: int) -> None:
        """Account for `missing` lost samples: drop the buffered ones, keep the time base exact."""
        self._emitted += self._buffered + missing
        self._pieces.clear()
        self._buffered = 0
        self._skipped = True

    def push(self, samples: Int16Array) -> None:
        """Append samples."""
        if samples.shape[0]:
            self._pieces.append(samples)
            self._buffered += samples.shape[0]

    def pop(self, *, partial: bool = False) -> AudioChunk | None:
        """Return the next full chunk (or, with partial, whatever is left), else None."""
        if self._base is None:
            return None
        want = self.chunk_samples
        if self._buffered < want:
            if not partial or self._buffered == 0:
                return None
            want = self._buffered
        joined = (
            self._pieces[0] if len(self._pieces) == 1 else np.concatenate(self._pieces)
        )
        samples, rest = joined[:want], joined[want:]
        self._pieces = [rest] if rest.shape[0] else []
        self._buffered = rest.shape[0]
        chunk = AudioChunk(
            np.ascontiguousarray(samples),
            self.next_start,
            restamped=self._shifted and not self._skipped,
        )
        self._shifted = self._skipped = False
        self._emitted += want
        return chunk


def __getattr__(name: str) -> Any:
    """Import the concrete sources lazily (sounddevice and av stay unimported until used)."""
    if name == "FileSource":
        from .file import FileSource

        return FileSource
    if name == "FfmpegSource":
        from .ffmpeg import FfmpegSource

        return FfmpegSource
    if name in ("SoundDeviceSource", "list_input_devices"):
        from . import sounddevice as module

        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
