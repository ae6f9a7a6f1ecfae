"""A fake `sounddevice` module: the only mock in these tests (there is no sound card here).

It behaves like PortAudio from sounddevice's side: device queries, settings checks, and an
InputStream whose own thread calls the callback with int16 blocks in real time, taken from the
audio the test gives the card, and calls finished_callback when the card is unplugged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
import sys
import threading
import time
import types
from typing import Any

import numpy as np
import numpy.typing as npt

RATE = 16000


class PortAudioError(Exception):
    """What sounddevice raises for PortAudio failures."""


@dataclass
class FakeSoundCard:
    """The machine's capture devices and what their microphones hear."""

    devices: list[str] = field(default_factory=lambda: ["USB Baby Mic", "Webcam"])
    audio: npt.NDArray[np.int16] = field(
        default_factory=lambda: np.zeros(RATE, dtype=np.int16)
    )
    plugged: bool = True
    fail_start: BaseException | None = None
    streams: list[FakeInputStream] = field(default_factory=list)

    @property
    def open_streams(self) -> list[FakeInputStream]:
        """Streams started and not closed."""
        return [stream for stream in self.streams if stream.active]

    def unplug(self) -> None:
        """Pull the microphone out: devices vanish and running streams finish."""
        self.plugged = False
        for stream in self.open_streams:
            stream.finish()

    def replug(self) -> None:
        """Plug it back in."""
        self.plugged = True

    def module(self) -> types.ModuleType:
        """Return a module object with sounddevice's API bound to this card."""
        module = types.ModuleType("sounddevice")
        module.PortAudioError = PortAudioError  # type: ignore[attr-defined]
        module.query_devices = self.query_devices  # type: ignore[attr-defined]
        module.query_hostapis = self.query_hostapis  # type: ignore[attr-defined]
        module.check_input_settings = self.check_input_settings  # type: ignore[attr-defined]
        module.InputStream = self.input_stream  # type: ignore[attr-defined]
        return module

    def _infos(self) -> list[dict[str, Any]]:
        """Device dicts as sounddevice returns them (plus an output-only device)."""
        names = self.devices if self.plugged else []
        infos = [
            {
                "name": name,
                "index": index,
                "max_input_channels": 1,
                "default_samplerate": float(RATE),
                "hostapi": 0,
            }
            for index, name in enumerate(names)
        ]
        infos.append(
            {
                "name": "HDMI output",
                "index": len(infos),
                "max_input_channels": 0,
                "default_samplerate": 48000.0,
                "hostapi": 0,
            }
        )
        return infos

    def query_devices(self, device: Any = None, kind: str | None = None) -> Any:
        """All devices, or the default input device with kind='input'."""
        infos = self._infos()
        if kind == "input":
            inputs = [info for info in infos if info["max_input_channels"] > 0]
            if not inputs:
                raise PortAudioError("no default input device")
            return inputs[0]
        return infos

    def query_hostapis(self, index: int) -> dict[str, Any]:
        """One host API."""
        return {"name": "ALSA"}

    def check_input_settings(
        self, device: int, channels: int, dtype: str, samplerate: float
    ) -> None:
        """Accept mono or stereo int16 at 16 kHz only."""
        if samplerate != RATE or channels > 2:
            raise PortAudioError("invalid sample rate")

    def input_stream(self, **kwargs: Any) -> FakeInputStream:
        """Create a stream (like sounddevice.InputStream)."""
        if not self.plugged:
            raise PortAudioError("device unavailable")
        stream = FakeInputStream(self, **kwargs)
        self.streams.append(stream)
        return stream


class FakeInputStream:
    """Calls `callback` from its own thread with blocks of the card's audio, in real time."""

    def __init__(
        self,
        card: FakeSoundCard,
        *,
        device: int,
        channels: int,
        samplerate: float,
        dtype: str,
        blocksize: int,
        callback: Callable[..., None],
        finished_callback: Callable[[], None],
    ) -> None:
        """Remember the settings."""
        self.card = card
        self.device = device
        self.channels = channels
        self.blocksize = blocksize
        self.callback = callback
        self.finished_callback = finished_callback
        self.active = False
        self.closed = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start delivering blocks."""
        if self.card.fail_start is not None:
            raise self.card.fail_start
        self.active = True
        self._thread = threading.Thread(
            target=self._run, name="fake-portaudio", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        """Deliver blocks until stopped (looping the card's audio)."""
        position = 0
        audio = self.card.audio
        started = time.monotonic()
        blocks = 0
        while not self._stop.is_set():
            take = np.take(
                audio, np.arange(position, position + self.blocksize), mode="wrap"
            )
            position = (position + self.blocksize) % audio.shape[0]
            block = np.repeat(take.reshape(-1, 1), self.channels, axis=1)
            self.callback(block, self.blocksize, None, None)
            blocks += 1
            due = started + blocks * self.blocksize / RATE
            self._stop.wait(max(0.0, due - time.monotonic()))

    def finish(self) -> None:
        """The device went away: stop delivering and report the end."""
        self._halt()
        self.finished_callback()

    def _halt(self) -> None:
        """Stop and join the delivery thread."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self.active = False

    def stop(self) -> None:
        """Stop delivering."""
        self._halt()

    def close(self) -> None:
        """Close the stream."""
        self._halt()
        self.closed = True


def install(card: FakeSoundCard) -> None:
    """Make `import sounddevice` return the card's module."""
    sys.modules["sounddevice"] = card.module()
