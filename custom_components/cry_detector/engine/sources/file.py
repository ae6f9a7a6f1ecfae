"""Audio from a file decoded with PyAV (WAV, FLAC, MP3, anything FFmpeg reads)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
import logging
from pathlib import Path
import threading
import time

import av
from av.audio.frame import AudioFrame
import numpy as np

from ..errors import SourceError
from . import AudioChunk, AudioSource, ChunkAssembler, Int16Array, chunk_size

_LOGGER = logging.getLogger(__name__)

# Decode at least this much audio per trip to the decoding thread (fewer thread hops).
DECODE_BLOCK_SECONDS = 1.0
# Realtime mode: when the clock is this far from the audio's stamps (it was stepped), the stamps
# follow it (a restamp) instead of the audio bursting ahead or pausing to catch up.
MAX_DRIFT_SECONDS = 2.0


def _open_error(path: Path, err: Exception) -> SourceError:
    """Translate an open failure into a SourceError with a stable reason."""
    if isinstance(err, FileNotFoundError | IsADirectoryError):
        return SourceError(f"audio file {path} not found", reason="file_not_found")
    return SourceError(f"cannot decode audio file {path}: {err}", reason="decode_error")


class _Decoder:
    """One pass over a file: PyAV demux + decode + resample to s16 mono (runs in a thread)."""

    def __init__(self, path: Path, sample_rate: int) -> None:
        """Open the file and its first audio stream."""
        self._lock = threading.Lock()
        self._path = path
        try:
            self._container = av.open(str(path), mode="r")
        except (av.FFmpegError, OSError, UnicodeDecodeError) as err:
            raise _open_error(path, err) from err
        if not self._container.streams.audio:
            self._container.close()
            raise SourceError(f"{path} has no audio stream", reason="decode_error")
        self._frames: Iterator[AudioFrame] = self._container.decode(
            self._container.streams.audio[0]
        )
        self._resampler = av.AudioResampler(
            format="s16", layout="mono", rate=sample_rate
        )
        self._finished = False

    def decode(self, min_samples: int) -> Int16Array | None:
        """Return at least min_samples resampled samples (less at the end), None once done."""
        with self._lock:
            if self._finished:
                return None
            pieces: list[Int16Array] = []
            count = 0
            while count < min_samples and not self._finished:
                frame = self._next_frame()
                for out in self._resampler.resample(frame):
                    samples = out.to_ndarray().reshape(-1).astype(np.int16, copy=False)
                    pieces.append(samples)
                    count += samples.shape[0]
            return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int16)

    def _next_frame(self) -> AudioFrame | None:
        """Return the next decoded frame, or None (flush) at the end of the file."""
        try:
            frame = next(self._frames)
        except StopIteration:
            self._finished = True
            return None
        except av.FFmpegError as err:
            raise SourceError(
                f"cannot decode audio file {self._path}: {err}", reason="decode_error"
            ) from err
        frame.pts = None  # the resampler needs no timing; broken pts must not upset it
        return frame

    def close(self) -> None:
        """Close the container (waits for a decode in progress)."""
        with self._lock:
            self._finished = True
            self._container.close()


def _open_decoder(path: Path, sample_rate: int) -> _Decoder:
    """Open a decoder for an existing regular file (blocking: runs in a thread)."""
    if not path.is_file():
        raise SourceError(f"audio file {path} not found", reason="file_not_found")
    return _Decoder(path, sample_rate)


class FileSource(AudioSource):
    """Decode a file into chunks, as fast as asked (scans) or paced in real time (demo, tests)."""

    def __init__(
        self,
        path: str | Path,
        sample_rate: int = 16000,
        chunk_seconds: float = 0.1,
        *,
        realtime: bool = False,
        loop: bool = False,
        start_time: float = 0.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """Describe the file; nothing is opened until open().

        Fast mode stamps chunks start_time + samples/rate; realtime mode takes its time base
        from clock() at open() and sleeps (through `sleep`) until each chunk's end is due; when
        the clock jumps, the stamps follow it like a live source's would (chunk.restamped).
        """
        self.path = Path(path)
        self.sample_rate = sample_rate
        self.chunk_samples = chunk_size(sample_rate, chunk_seconds)
        self.realtime = realtime
        self.live = realtime
        self.loop = loop
        self.start_time = start_time
        self.description = f"file {self.path.name}"
        self.loops_completed = 0
        self._clock = clock
        self._sleep = sleep
        self._assembler = ChunkAssembler(sample_rate, self.chunk_samples)
        self._decoder: _Decoder | None = None
        self._ended = False
        self._pass_samples = 0

    async def open(self) -> None:
        """Open the file; SourceError(file_not_found | decode_error) when it cannot be read."""
        await self.close()
        self._decoder = await asyncio.to_thread(
            _open_decoder, self.path, self.sample_rate
        )
        self._assembler.rebase(self._clock() if self.realtime else self.start_time)
        self._ended = False
        self._pass_samples = 0
        self.loops_completed = 0

    async def read(self) -> AudioChunk | None:
        """Return the next chunk (the last one may be shorter), None at the end of the file."""
        if self._decoder is None:
            raise RuntimeError("FileSource.read() before open()")
        while self._assembler.buffered < self.chunk_samples and not self._ended:
            await self._decode_more()
        if self.realtime:
            self._follow_clock()
        chunk = self._assembler.pop(partial=self._ended)
        if chunk is not None and self.realtime:
            delay = chunk.end(self.sample_rate) - self._clock()
            if delay > 0:
                await self._sleep(delay)
        return chunk

    def _follow_clock(self) -> None:
        """Move the time base to the clock when it was stepped (realtime mode)."""
        drift = self._clock() - self._assembler.next_start
        if abs(drift) > MAX_DRIFT_SECONDS:
            _LOGGER.debug(
                "%s: clock %.1f s off the audio, re-anchoring", self.description, drift
            )
            self._assembler.shift(drift)

    async def _decode_more(self) -> None:
        """Decode the next block; at the end of the file stop or start over (loop)."""
        assert self._decoder is not None
        block = max(self.chunk_samples, round(DECODE_BLOCK_SECONDS * self.sample_rate))
        samples = await asyncio.to_thread(self._decoder.decode, block)
        if samples is not None:
            self._assembler.push(samples)
            self._pass_samples += samples.shape[0]
            return
        if not self.loop or self._pass_samples == 0:
            self._ended = True
            return
        old, self._decoder = self._decoder, None
        await asyncio.to_thread(old.close)
        self._decoder = await asyncio.to_thread(_Decoder, self.path, self.sample_rate)
        self._pass_samples = 0
        self.loops_completed += 1

    async def close(self) -> None:
        """Close the file."""
        decoder, self._decoder = self._decoder, None
        if decoder is not None:
            await asyncio.to_thread(decoder.close)
