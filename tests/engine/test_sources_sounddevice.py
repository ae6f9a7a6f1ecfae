"""SoundDeviceSource against a fake `sounddevice` module: the only mock, standing in for the sound card."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
import sys
import threading
import time
import types
from typing import Any

import numpy as np
import pytest

from custom_components.cry_detector.engine.errors import (
    DeviceNotFoundError,
    PortAudioMissingError,
    SourceError,
)
from custom_components.cry_detector.engine.sources import (
    AudioChunk,
    InputDevice,
    SoundDeviceSource,
    list_input_devices,
)

from .audio import cry, to_int16


class FakePortAudioError(Exception):
    """Stands in for sounddevice.PortAudioError."""


class Status:
    """CallbackFlags stand-in: truthy when PortAudio reports an xrun."""

    def __init__(self, flagged: bool = False) -> None:
        """Set the flag."""
        self.flagged = flagged

    def __bool__(self) -> bool:
        """Whether any flag is set."""
        return self.flagged


@dataclass
class FakeCard:
    """One capture device: what it supports and the audio it 'hears' (float, at its default rate).

    hw: devices with two channels often refuse mono: min_channels.
    """

    name: str
    hostapi: int
    channels: int
    default_rate: float
    rates: tuple[int, ...]
    signal: np.ndarray
    min_channels: int = 1


class FakeInputStream:
    """Delivers the card's audio from a thread in blocks, like PortAudio, faster than real time."""

    def __init__(
        self,
        module: FakeSoundDevice,
        *,
        device: int,
        channels: int,
        samplerate: float,
        dtype: str,
        blocksize: int,
        callback: Callable[..., None],
        finished_callback: Callable[[], None],
    ) -> None:
        """Open the stream."""
        card = module.cards[device]
        if (
            samplerate not in card.rates
            or not card.min_channels <= channels <= card.channels
            or dtype != "int16"
        ):
            raise FakePortAudioError("Invalid sample rate")
        self.card, self.channels, self.blocksize = card, channels, blocksize
        self.rate = int(samplerate)
        self.callback, self.finished_callback = callback, finished_callback
        self.active = False
        self.closed = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.unplugged = threading.Event()
        self.silent_death = False
        self.overflow_every = 0
        self.delivered = 0
        module.streams.append(self)

    def start(self) -> None:
        """Start the callback thread."""
        self.active = True
        self._thread = threading.Thread(
            target=self._run, name="fake-portaudio", daemon=True
        )
        self._thread.start()

    def _audio(self) -> np.ndarray:
        """The card's signal at the stream rate, one column per channel."""
        if self.rate == self.card.default_rate:
            mono = self.card.signal
        else:
            positions = np.arange(
                round(self.card.signal.size * self.rate / self.card.default_rate)
            )
            mono = np.interp(
                positions * self.card.default_rate / self.rate,
                np.arange(self.card.signal.size),
                self.card.signal,
            )
        columns = [
            to_int16(mono * (1.0 if channel == 0 else 0.5))
            for channel in range(self.channels)
        ]
        return np.stack(columns, axis=1)

    def _run(self) -> None:
        """Call back block by block at module.speed x real time until stopped or unplugged."""
        audio = self._audio()
        position, count = 0, 0
        while not self._stop.is_set() and position < audio.shape[0]:
            if self.unplugged.is_set():
                if not self.silent_death:
                    self.active = False
                    self.finished_callback()
                return
            block = audio[position : position + self.blocksize]
            count += 1
            flagged = bool(self.overflow_every) and count % self.overflow_every == 0
            self.delivered += block.shape[0]
            self.callback(block, block.shape[0], None, Status(flagged))
            position += block.shape[0]
            time.sleep(block.shape[0] / self.rate / FakeSoundDevice.speed)
        self._stop.wait()

    def stop(self) -> None:
        """Stop the thread; PortAudio then calls the finished callback."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.active:
            self.active = False
            self.finished_callback()

    def close(self) -> None:
        """Close the stream."""
        self.closed = True


class FakeSoundDevice(types.ModuleType):
    """Module-shaped fake of sounddevice: query_devices, query_hostapis, check_input_settings, InputStream."""

    PortAudioError = FakePortAudioError
    speed = 20.0

    def __init__(self, cards: list[FakeCard], default_input: int = 0) -> None:
        """Hold the cards; index = position."""
        super().__init__("sounddevice")
        self.cards = cards
        self.default_input = default_input
        self.streams: list[FakeInputStream] = []
        self.clock_offset = 0.0

    def clock(self) -> float:
        """Wall clock as the card experiences it: 1000 s + the audio captured so far (+ offset)."""
        stream = self.streams[-1] if self.streams else None
        captured = stream.delivered / stream.rate if stream else 0.0
        return 1000.0 + captured + self.clock_offset

    def _info(self, index: int) -> dict[str, Any]:
        """A device dict as sounddevice returns it."""
        card = self.cards[index]
        return {
            "name": card.name,
            "index": index,
            "hostapi": card.hostapi,
            "max_input_channels": card.channels,
            "max_output_channels": 2,
            "default_samplerate": card.default_rate,
        }

    def query_devices(self, device: int | None = None, kind: str | None = None) -> Any:
        """All devices, one device, or the default input."""
        if kind == "input":
            if self.default_input < 0:
                raise FakePortAudioError("Error querying device -1")
            return self._info(self.default_input)
        if device is not None:
            return self._info(device)
        return [self._info(index) for index in range(len(self.cards))]

    def query_hostapis(self, index: int | None = None) -> Any:
        """Host APIs by index."""
        apis = [{"name": "ALSA"}, {"name": "PulseAudio"}]
        return apis if index is None else apis[index]

    def check_input_settings(
        self, device: int, channels: int, dtype: str, samplerate: float
    ) -> None:
        """Refuse what the card cannot do."""
        card = self.cards[device]
        if samplerate not in card.rates:
            raise FakePortAudioError("Invalid sample rate [PaErrorCode -9997]")
        if not card.min_channels <= channels <= card.channels:
            raise FakePortAudioError("Invalid number of channels [PaErrorCode -9998]")

    def InputStream(self, **kwargs: Any) -> FakeInputStream:  # noqa: N802
        """Open a stream on a card."""
        return FakeInputStream(self, **kwargs)


def tone(seconds: float, rate: float, hz: float = 440.0) -> np.ndarray:
    """A sine at -10 dBFS."""
    return np.asarray(
        0.3 * np.sin(2 * np.pi * hz * np.arange(round(seconds * rate)) / rate)
    )


@pytest.fixture
def cards() -> list[FakeCard]:
    """An output-only HDMI device, a 48 kHz-only USB mic, a 16 kHz-capable webcam, a stereo 44.1 kHz interface."""
    return [
        FakeCard(
            "HDA Intel PCH: HDMI 0 (hw:0,3)", 0, 0, 44100.0, (44100,), np.zeros(10)
        ),
        FakeCard(
            "USB PnP Sound Device: Audio (hw:1,0)",
            0,
            1,
            48000.0,
            (48000,),
            cry(4.0, 48000) + tone(4.0, 48000, 3000.0) * 0.1,
        ),
        FakeCard(
            "HD Pro Webcam C920: USB Audio (hw:2,0)",
            0,
            1,
            32000.0,
            (16000, 32000),
            tone(4.0, 32000),
        ),
        FakeCard(
            "Scarlett 2i2 USB",
            1,
            2,
            44100.0,
            (44100, 48000),
            tone(4.0, 44100),
            min_channels=2,
        ),
    ]


@pytest.fixture
def fake_sd(monkeypatch: pytest.MonkeyPatch, cards: list[FakeCard]) -> FakeSoundDevice:
    """Install the fake as `sounddevice`."""
    module = FakeSoundDevice(cards, default_input=1)
    monkeypatch.setitem(sys.modules, "sounddevice", module)
    return module


async def read_chunks(source: SoundDeviceSource, count: int) -> list[AudioChunk]:
    """Read count chunks."""
    chunks = []
    for _ in range(count):
        chunk = await source.read()
        assert chunk is not None
        chunks.append(chunk)
    return chunks


def test_missing_portaudio_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        sys.modules, "sounddevice", None
    )  # import fails like a missing wheel
    with pytest.raises(PortAudioMissingError) as caught:
        list_input_devices()
    assert caught.value.reason == "portaudio_missing"


def test_real_sounddevice_without_portaudio_is_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    try:
        import sounddevice  # noqa: F401
    except OSError:
        pass
    else:
        pytest.skip("PortAudio is installed here")
    with pytest.raises(PortAudioMissingError):
        list_input_devices()


async def test_open_without_portaudio_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", None)
    with pytest.raises(PortAudioMissingError):
        await SoundDeviceSource("USB").open()


def test_lists_only_capture_devices_with_host_api(fake_sd: FakeSoundDevice) -> None:
    devices = list_input_devices()
    assert [d.name for d in devices] == [c.name for c in fake_sd.cards[1:]]
    assert devices[0] == InputDevice(
        "USB PnP Sound Device: Audio (hw:1,0)", 1, 1, 48000.0, "ALSA"
    )
    assert devices[2].hostapi == "PulseAudio"


@pytest.mark.parametrize(
    ("wanted", "index"),
    [
        ("HD Pro Webcam C920: USB Audio (hw:2,0)", 2),  # exact
        ("scarlett", 3),  # case-insensitive substring
        ("USB", 1),  # several match: the first
        (None, 1),  # system default
    ],
)
async def test_device_is_chosen_by_name(
    fake_sd: FakeSoundDevice, wanted: str | None, index: int
) -> None:
    source = SoundDeviceSource(wanted, clock=fake_sd.clock)
    async with source:
        assert source.device is not None and source.device.index == index
        assert (await source.read()) is not None


async def test_unknown_device_names_the_available_ones(
    fake_sd: FakeSoundDevice,
) -> None:
    with pytest.raises(DeviceNotFoundError) as caught:
        await SoundDeviceSource("Blue Yeti").open()
    assert caught.value.reason == "device_not_found"
    assert "Scarlett 2i2 USB" in str(caught.value)
    assert not fake_sd.streams


async def test_no_default_device(fake_sd: FakeSoundDevice) -> None:
    fake_sd.default_input = -1
    with pytest.raises(DeviceNotFoundError):
        await SoundDeviceSource(None).open()


async def test_48k_only_mic_is_resampled_to_16k(fake_sd: FakeSoundDevice) -> None:
    source = SoundDeviceSource("USB PnP", clock=fake_sd.clock)
    async with source:
        assert (source.device_rate, source.channels) == (48000, 1)
        chunks = await read_chunks(source, 30)
    assert fake_sd.streams[0].rate == 48000 and fake_sd.streams[0].closed
    assert all(
        c.samples.shape == (1600,) and c.samples.dtype == np.int16 for c in chunks
    )
    assert [c.start - chunks[0].start for c in chunks] == pytest.approx(
        [0.1 * i for i in range(30)]
    )
    assert chunks[0].start == pytest.approx(
        1000.0
    )  # stamped when its first sample was captured
    audio = np.concatenate([c.samples for c in chunks]).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(audio.size)))
    freqs = np.fft.rfftfreq(audio.size, 1 / 16000)
    assert freqs[np.argmax(np.where(freqs > 2000, spectrum, 0))] == pytest.approx(
        3000.0, abs=2.0
    )
    assert (
        280.0 < freqs[np.argmax(np.where(freqs < 2000, spectrum, 0))] < 640.0
    )  # the cry's fundamental


async def test_device_supporting_the_model_rate_is_not_resampled(
    fake_sd: FakeSoundDevice,
) -> None:
    source = SoundDeviceSource("C920", clock=fake_sd.clock)
    async with source:
        assert source.device_rate == 16000
        chunks = await read_chunks(source, 10)
    expected = to_int16(tone(4.0, 32000)[::2][:16000])
    np.testing.assert_array_equal(np.concatenate([c.samples for c in chunks]), expected)


async def test_stereo_interface_is_downmixed(fake_sd: FakeSoundDevice) -> None:
    source = SoundDeviceSource("Scarlett", clock=fake_sd.clock)
    async with source:
        assert (source.channels, source.device_rate) == (2, 44100)
        chunks = await read_chunks(source, 10)
    audio = np.concatenate([c.samples for c in chunks[2:]]).astype(np.float64) / 32768
    assert np.sqrt(np.mean(audio**2)) == pytest.approx(
        0.3 * 0.75 / np.sqrt(2), rel=0.02
    )


async def test_unplugged_device_raises_device_lost(fake_sd: FakeSoundDevice) -> None:
    source = SoundDeviceSource("USB PnP", clock=fake_sd.clock)
    async with source:
        await read_chunks(source, 3)
        fake_sd.streams[0].unplugged.set()
        with pytest.raises(SourceError) as caught:
            await read_chunks(source, 1000)
    assert caught.value.reason == "device_lost"


async def test_device_that_stops_calling_back_raises_device_lost(
    fake_sd: FakeSoundDevice,
) -> None:
    source = SoundDeviceSource("USB PnP", stall_timeout=0.3, clock=fake_sd.clock)
    async with source:
        await read_chunks(source, 3)
        fake_sd.streams[0].silent_death = True
        fake_sd.streams[0].unplugged.set()
        with pytest.raises(SourceError) as caught:
            await read_chunks(source, 1000)
    assert caught.value.reason == "device_lost"


async def test_reader_falling_behind_drops_oldest_blocks_with_exact_time(
    fake_sd: FakeSoundDevice,
) -> None:
    source = SoundDeviceSource("C920", queue_seconds=0.5, clock=fake_sd.clock)
    async with source:
        first = await source.read()
        # meanwhile the card delivers its whole 4 s at 20x: the 0.5 s queue overflows
        await asyncio.to_thread(time.sleep, 0.2)
        rest = await read_chunks(source, 5)
    assert source.dropped_blocks > 0
    assert first is not None
    starts = [first.start] + [c.start for c in rest]
    assert all(
        round((start - first.start) * 16000) % 1600 == 0 for start in starts
    )  # on the sample grid
    signal = to_int16(tone(4.0, 32000)[::2])
    for (
        chunk
    ) in rest:  # each chunk's samples are the audio at its stamp: nothing shifted
        offset = round((chunk.start - first.start) * 16000)
        np.testing.assert_array_equal(chunk.samples, signal[offset : offset + 1600])


async def test_stamps_follow_the_clock_when_it_jumps(fake_sd: FakeSoundDevice) -> None:
    source = SoundDeviceSource("C920", clock=fake_sd.clock)
    async with source:
        before = await read_chunks(source, 3)
        fake_sd.clock_offset = (
            5.0  # e.g. NTP stepped the clock, or the card's clock drifted
        )
        after = await read_chunks(source, 12)
    starts = [c.start for c in before + after]
    steps = np.diff(starts)
    assert np.count_nonzero(np.abs(steps - 0.1) > 1e-6) == 1
    assert steps.max() == pytest.approx(5.1, abs=0.25)


async def test_xrun_flags_are_counted(fake_sd: FakeSoundDevice) -> None:
    source = SoundDeviceSource("C920", clock=fake_sd.clock)
    async with source:
        fake_sd.streams[0].overflow_every = 2
        await read_chunks(source, 6)
    assert source.status_flags >= 2


async def test_close_twice_and_reopen(fake_sd: FakeSoundDevice) -> None:
    source = SoundDeviceSource("C920", clock=fake_sd.clock)
    try:
        await source.open()
        await source.close()
        await source.close()
        await source.open()
        assert (await source.read()) is not None
    finally:
        await source.close()
    assert all(stream.closed for stream in fake_sd.streams)
    assert len(fake_sd.streams) == 2
