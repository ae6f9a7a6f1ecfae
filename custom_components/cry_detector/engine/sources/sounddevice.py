"""Audio from a local sound card through PortAudio (sounddevice, imported only when used)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import contextlib
import logging
import math
import time
from typing import Any

import numpy as np

from ..errors import DeviceNotFoundError, PortAudioMissingError, SourceError
from . import (
    AudioChunk,
    AudioSource,
    ChunkAssembler,
    InputDevice,
    Int16Array,
    chunk_size,
)

_LOGGER = logging.getLogger(__name__)

# Stamps this far from the clock (sound card clock drift, lost blocks) are re-anchored to now.
MAX_DRIFT_SECONDS = 2.0

# A block: (index of its first frame at the device rate, int16 samples (frames, channels)).
# None in the queue means the stream finished on its own: the device is gone.
_Block = tuple[int, Int16Array] | None


def _sounddevice() -> Any:
    """Import sounddevice; PortAudioMissingError when it or PortAudio is missing."""
    try:
        import sounddevice
    except (OSError, ImportError) as err:
        raise PortAudioMissingError(f"PortAudio is not available: {err}") from err
    return sounddevice


def _hostapi_name(sd: Any, index: int) -> str:
    """Return the host API's name (ALSA, PulseAudio, ...) or its number."""
    try:
        return str(sd.query_hostapis(index)["name"])
    except (sd.PortAudioError, IndexError, KeyError, TypeError, ValueError):
        return str(index)


def _as_device(sd: Any, info: Any) -> InputDevice:
    """Build an InputDevice from a sounddevice device dict."""
    return InputDevice(
        name=str(info["name"]),
        index=int(info["index"]),
        max_input_channels=int(info["max_input_channels"]),
        default_samplerate=float(info["default_samplerate"]),
        hostapi=_hostapi_name(sd, int(info["hostapi"])),
    )


def _query_input_devices(sd: Any) -> list[InputDevice]:
    """Return every device with at least one input channel."""
    try:
        devices = sd.query_devices()
    except sd.PortAudioError as err:
        raise SourceError(f"cannot list audio devices: {err}") from err
    return [
        _as_device(sd, info) for info in devices if int(info["max_input_channels"]) > 0
    ]


def list_input_devices() -> list[InputDevice]:
    """Return the capture devices PortAudio sees; PortAudioMissingError without PortAudio."""
    return _query_input_devices(_sounddevice())


def find_input_device(devices: list[InputDevice], name: str) -> InputDevice:
    """Pick a device by exact name, else by case-insensitive substring; DeviceNotFoundError."""
    for device in devices:
        if device.name == name:
            return device
    wanted = name.casefold()
    matches = [device for device in devices if wanted in device.name.casefold()]
    if not matches:
        known = ", ".join(device.name for device in devices) or "none"
        raise DeviceNotFoundError(
            f"no input device named {name!r} (available: {known})"
        )
    if len(matches) > 1:
        _LOGGER.debug(
            "%r matches %d devices, using %r", name, len(matches), matches[0].name
        )
    return matches[0]


def _default_input_device(sd: Any) -> InputDevice:
    """Return PortAudio's default input device; DeviceNotFoundError when there is none."""
    try:
        return _as_device(sd, sd.query_devices(kind="input"))
    except (sd.PortAudioError, ValueError, KeyError, TypeError) as err:
        raise DeviceNotFoundError(f"no default input device: {err}") from err


def _supports(sd: Any, device: InputDevice, channels: int, rate: float) -> bool:
    """Return whether PortAudio accepts these capture settings."""
    try:
        sd.check_input_settings(
            device=device.index, channels=channels, dtype="int16", samplerate=rate
        )
    except (sd.PortAudioError, ValueError):
        return False
    return True


class _Resampler:
    """int16 mono at one rate -> int16 mono at another (PyAV / libswresample)."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        """Remember the rates; the PyAV resampler is created on first use."""
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._resampler: Any = None

    def process(self, samples: Int16Array) -> Int16Array:
        """Resample one block (the resampler keeps its filter state between blocks)."""
        import av

        if self._resampler is None:
            self._resampler = av.AudioResampler(
                format="s16", layout="mono", rate=self.out_rate
            )
        frame = av.AudioFrame.from_ndarray(
            samples.reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = self.in_rate
        pieces = [
            out.to_ndarray().reshape(-1) for out in self._resampler.resample(frame)
        ]
        return (
            np.concatenate(pieces).astype(np.int16) if pieces else np.zeros(0, np.int16)
        )

    def reset(self) -> None:
        """Forget the filter state (after lost blocks)."""
        self._resampler = None


def _downmix(block: Int16Array) -> Int16Array:
    """Return mono int16 from (frames, channels) int16."""
    if block.ndim == 1:
        return block
    if block.shape[1] == 1:
        return block[:, 0].copy()
    mono: Int16Array = block.astype(np.int32).mean(axis=1).round().astype(np.int16)
    return mono


class SoundDeviceSource(AudioSource):
    """Capture from a sound card chosen by name, at the model rate or resampled to it."""

    def __init__(
        self,
        device_name: str | None,
        sample_rate: int = 16000,
        chunk_seconds: float = 0.1,
        *,
        clock: Callable[[], float] = time.time,
        queue_seconds: float = 2.0,
        stall_timeout: float = 2.0,
    ) -> None:
        """Describe the capture; nothing opens until open(). device_name None = system default."""
        self.device_name = device_name
        self.sample_rate = sample_rate
        self.chunk_seconds = chunk_seconds
        self.chunk_samples = chunk_size(sample_rate, chunk_seconds)
        self.queue_size = max(2, math.ceil(queue_seconds / chunk_seconds))
        self.stall_timeout = stall_timeout
        self.description = f"sound card {device_name or 'default'}"
        self.device: InputDevice | None = None
        self.device_rate = sample_rate
        self.channels = 1
        self.dropped_blocks = 0
        self.status_flags = 0
        self._clock = clock
        self._assembler = ChunkAssembler(sample_rate, self.chunk_samples)
        self._resampler: _Resampler | None = None
        self._queue: asyncio.Queue[_Block] = asyncio.Queue(self.queue_size)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stream: Any = None
        self._captured = 0
        self._expected = 0
        self._closing = False

    async def open(self) -> None:
        """Open and start the input stream.

        Raises PortAudioMissingError, DeviceNotFoundError or SourceError (PortAudio refused).
        """
        await self.close()
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue(self.queue_size)
        self._captured = self._expected = 0
        self._closing = False
        self._assembler = ChunkAssembler(self.sample_rate, self.chunk_samples)
        self._stream = await asyncio.to_thread(self._start_stream)

    def _start_stream(self) -> Any:
        """Choose the device, channels and rate, then start PortAudio (runs in a thread)."""
        sd = _sounddevice()
        if self.device_name is None:
            device = _default_input_device(sd)
        else:
            device = find_input_device(_query_input_devices(sd), self.device_name)
        self.device = device
        self.description = f"sound card {device.name}"
        self.channels = (
            1
            if _supports(sd, device, 1, device.default_samplerate)
            else min(2, device.max_input_channels)
        )
        if _supports(sd, device, self.channels, self.sample_rate):
            self.device_rate, self._resampler = self.sample_rate, None
        else:
            self.device_rate = round(device.default_samplerate)
            self._resampler = _Resampler(self.device_rate, self.sample_rate)
        _LOGGER.debug(
            "Opening %s (%s) at %d Hz, %d channel(s)",
            device.name,
            device.hostapi,
            self.device_rate,
            self.channels,
        )
        try:
            stream = sd.InputStream(
                device=device.index,
                channels=self.channels,
                samplerate=self.device_rate,
                dtype="int16",
                blocksize=max(1, round(self.device_rate * self.chunk_seconds)),
                callback=self._callback,
                finished_callback=self._finished,
            )
            stream.start()
        except (sd.PortAudioError, ValueError) as err:
            raise SourceError(f"cannot open input device {device.name}: {err}") from err
        return stream

    # -- PortAudio thread -----------------------------------------------------------------------

    def _callback(
        self, indata: Int16Array, frames: int, time_info: Any, status: Any
    ) -> None:
        """Hand a copy of the block to the event loop (PortAudio's thread: no waiting here)."""
        if status:
            self.status_flags += 1
        first, self._captured = self._captured, self._captured + frames
        self._to_loop((first, indata.copy()))

    def _finished(self) -> None:
        """The stream stopped; unless we closed it, the device is gone."""
        if not self._closing:
            self._to_loop(None)

    def _to_loop(self, block: _Block) -> None:
        """Schedule _enqueue on the loop; a closed loop means nobody listens any more."""
        if self._loop is None:
            return
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._enqueue, block)

    # -- event loop -----------------------------------------------------------------------------

    def _enqueue(self, block: _Block) -> None:
        """Queue a block; when the reader is behind, drop the oldest one and count it."""
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped_blocks += 1
        self._queue.put_nowait(block)

    async def read(self) -> AudioChunk | None:
        """Return the next chunk; SourceError(device_lost) when the device stops or vanishes."""
        if self._stream is None:
            raise RuntimeError("SoundDeviceSource.read() before open()")
        while (chunk := self._assembler.pop()) is None:
            self._accept(await self._next_block())
        return chunk

    async def _next_block(self) -> tuple[int, Int16Array]:
        """Wait for the next block from PortAudio."""
        try:
            async with asyncio.timeout(self.stall_timeout):
                block = await self._queue.get()
        except TimeoutError:
            block = None
        if block is None:
            raise SourceError(
                f"{self.description} stopped delivering audio", reason="device_lost"
            )
        return block

    def _accept(self, block: tuple[int, Int16Array]) -> None:
        """Downmix, resample and stamp a block; lost blocks shift the time base exactly."""
        first, samples = block
        mono = _downmix(samples)
        if not self._assembler.has_base:
            self._assembler.rebase(self._clock() - mono.shape[0] / self.device_rate)
        elif first != self._expected:
            missing = round(
                (first - self._expected) * self.sample_rate / self.device_rate
            )
            self._assembler.skip(missing)
            if self._resampler is not None:
                self._resampler.reset()
        self._expected = first + mono.shape[0]
        self._assembler.push(self._resampler.process(mono) if self._resampler else mono)
        drift = self._clock() - (
            self._assembler.next_start + self._assembler.buffered / self.sample_rate
        )
        if abs(drift) > MAX_DRIFT_SECONDS:
            _LOGGER.debug(
                "%s: stamps %.1f s off the clock, re-anchoring", self.description, drift
            )
            self._assembler.shift(drift)

    async def close(self) -> None:
        """Stop and close the stream; safe to call more than once."""
        stream, self._stream = self._stream, None
        self._closing = True
        if stream is not None:
            await asyncio.to_thread(_stop_stream, stream)
        while not self._queue.empty():
            self._queue.get_nowait()


def _stop_stream(stream: Any) -> None:
    """Stop and close a PortAudio stream, ignoring errors of a device that is already gone."""
    sd = _sounddevice()
    with contextlib.suppress(sd.PortAudioError):
        stream.stop()
    with contextlib.suppress(sd.PortAudioError):
        stream.close()
