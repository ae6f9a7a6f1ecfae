"""FileSource: PyAV decoding of real WAV/FLAC files into stamped fixed-size chunks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from custom_components.cry_detector.engine.errors import SourceError
from custom_components.cry_detector.engine.sources import AudioChunk, FileSource

from .audio import cry, read_audio, room_tone, to_int16, write_audio


async def read_all(source: FileSource, limit: int = 100_000) -> list[AudioChunk]:
    """Read chunks until the source ends (or limit chunks)."""
    chunks: list[AudioChunk] = []
    while len(chunks) < limit and (chunk := await source.read()) is not None:
        chunks.append(chunk)
    return chunks


async def open_and_read_all(source: FileSource) -> list[AudioChunk]:
    """Open the source and read it to the end."""
    await source.open()
    return await read_all(source)


@pytest.fixture
def ramp_wav(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A 16 kHz WAV whose samples are a known sequence (2.345 s: not a whole number of chunks)."""
    samples = (np.arange(37520) * 7 % 20000 - 10000).astype(np.int16)
    return write_audio(tmp_path / "ramp.wav", samples, 16000), samples


async def test_wav_at_model_rate_is_bit_exact_with_stamped_chunks(
    ramp_wav: tuple[Path, np.ndarray],
) -> None:
    path, samples = ramp_wav
    async with FileSource(path, start_time=1000.0) as source:
        chunks = await read_all(source)
    assert [c.samples.shape[0] for c in chunks[:-1]] == [1600] * 23
    assert chunks[-1].samples.shape[0] == 37520 - 23 * 1600
    np.testing.assert_array_equal(np.concatenate([c.samples for c in chunks]), samples)
    assert all(c.samples.dtype == np.int16 and c.samples.ndim == 1 for c in chunks)
    assert [c.start for c in chunks] == pytest.approx(
        [1000.0 + 0.1 * i for i in range(24)], abs=1e-9
    )
    assert chunks[-1].end(16000) == pytest.approx(1000.0 + 37520 / 16000)


async def test_flac_decodes_like_the_reference_decoder(tmp_path: Path) -> None:
    signal = cry(1.5, 16000) + room_tone(1.5, 16000, seed=3)
    path = write_audio(tmp_path / "cry.flac", signal, 16000)
    async with FileSource(path, chunk_seconds=0.25) as source:
        chunks = await read_all(source)
    decoded = np.concatenate([c.samples for c in chunks])
    np.testing.assert_array_equal(decoded, to_int16(signal))  # FLAC is lossless
    assert {c.samples.shape[0] for c in chunks} == {4000}


@pytest.mark.parametrize(
    ("rate", "suffix"), [(44100, ".flac"), (8000, ".wav"), (48000, ".wav")]
)
async def test_resampling_to_16k_keeps_duration_and_pitch(
    tmp_path: Path, rate: int, suffix: str
) -> None:
    seconds, tone_hz = 3.0, 440.0
    tone = 0.5 * np.sin(2 * np.pi * tone_hz * np.arange(round(seconds * rate)) / rate)
    path = write_audio(tmp_path / f"tone{suffix}", tone, rate)
    async with FileSource(path) as source:
        decoded = np.concatenate([c.samples for c in await read_all(source)])
    assert abs(decoded.shape[0] - 48000) <= 2
    np.testing.assert_array_equal(decoded, read_audio(path, 16000))
    spectrum = np.abs(np.fft.rfft(decoded[4000:44000].astype(np.float64)))
    assert np.argmax(spectrum) * 16000 / 40000 == pytest.approx(tone_hz, abs=1.0)


async def test_stereo_is_downmixed(tmp_path: Path) -> None:
    left = to_int16(0.4 * np.ones(16000))
    right = to_int16(-0.2 * np.ones(16000))
    path = write_audio(tmp_path / "stereo.wav", np.stack([left, right]), 16000)
    async with FileSource(path) as source:
        decoded = np.concatenate([c.samples for c in await read_all(source)])
    assert decoded.shape == (16000,)
    assert np.median(decoded) == pytest.approx(0.1 * 32768, abs=2)


async def test_loop_mode_restarts_with_continuous_time(
    ramp_wav: tuple[Path, np.ndarray],
) -> None:
    path, samples = ramp_wav
    async with FileSource(path, loop=True, start_time=5.0) as source:
        chunks = await read_all(source, limit=60)  # 6 s from a 2.345 s file
        loops = source.loops_completed
    decoded = np.concatenate([c.samples for c in chunks])
    np.testing.assert_array_equal(decoded[: 2 * samples.size], np.tile(samples, 2))
    assert all(c.samples.shape[0] == 1600 for c in chunks)
    assert [c.start for c in chunks] == pytest.approx(
        [5.0 + 0.1 * i for i in range(60)], abs=1e-9
    )
    assert loops == 2


async def test_realtime_paces_with_the_injected_clock(
    ramp_wav: tuple[Path, np.ndarray],
) -> None:
    path, _ = ramp_wav
    now = [500.0]
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    source = FileSource(
        path, realtime=True, start_time=0.0, clock=lambda: now[0], sleep=fake_sleep
    )
    async with source:
        first = await source.read()
        now[0] += (
            0.35  # the consumer was busy: the next chunks are already due, no sleep
        )
        late = [await source.read() for _ in range(3)]
        rest = await read_all(source)
    assert first is not None and first.start == 500.0
    assert sleeps[0] == pytest.approx(0.1)
    assert len(sleeps) == 1 + len(rest)
    assert [c.start for c in late if c] == pytest.approx([500.1, 500.2, 500.3])
    assert now[0] == pytest.approx(
        500.0 + 37520 / 16000
    )  # ends when the audio's end is due


async def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(SourceError) as caught:
        await FileSource(tmp_path / "nope.wav").open()
    assert caught.value.reason == "file_not_found"


@pytest.mark.parametrize(
    "content", [b"", b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk", bytes(range(256)) * 40]
)
async def test_undecodable_file_is_reported(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.wav"
    path.write_bytes(content)
    source = FileSource(path)
    with pytest.raises(SourceError) as caught:
        await open_and_read_all(source)
    await source.close()
    assert caught.value.reason == "decode_error"


async def test_read_before_open_is_a_programming_error(
    ramp_wav: tuple[Path, np.ndarray],
) -> None:
    with pytest.raises(RuntimeError):
        await FileSource(ramp_wav[0]).read()
