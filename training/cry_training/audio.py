"""Audio files in and out: decode anything FFmpeg reads to mono float32 at a given rate."""

from __future__ import annotations

from dataclasses import dataclass
import math
from pathlib import Path
import wave

import av
import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]

AUDIO_EXTENSIONS = frozenset(
    {
        ".wav",
        ".flac",
        ".mp3",
        ".ogg",
        ".oga",
        ".opus",
        ".m4a",
        ".aac",
        ".webm",
        ".mp4",
        ".3gp",
        ".caf",
        ".aif",
        ".aiff",
        ".wma",
        ".amr",
    }
)
INT16_MAX = 32767
FULL_SCALE_MAX = INT16_MAX / 32768.0


class AudioError(Exception):
    """An audio file cannot be read or written."""


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds before conversion."""

    sample_rate: int
    channels: int
    seconds: float


def is_audio_file(path: Path) -> bool:
    """Whether the name has an audio extension (hidden files excluded)."""
    return path.suffix.lower() in AUDIO_EXTENSIONS and not path.name.startswith(".")


def probe(path: Path) -> AudioInfo:
    """Return the native sample rate, channel count and duration of the first audio stream."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.audio[0]
            rate = int(stream.codec_context.sample_rate or stream.rate or 0)
            channels = int(stream.codec_context.channels or 1)
            duration = (
                float(stream.duration * stream.time_base)
                if stream.duration is not None and stream.time_base is not None
                else float(container.duration or 0) / av.time_base
            )
    except (av.error.FFmpegError, IndexError, OSError) as err:
        raise AudioError(f"{path}: cannot read audio: {err}") from err
    return AudioInfo(rate, channels, duration)


def read_audio(
    path: Path, sample_rate: int, max_seconds: float | None = None
) -> FloatArray:
    """Decode the first audio stream to mono float32 in [-1, 1) at sample_rate (channel mean)."""
    limit = None if max_seconds is None else math.ceil(max_seconds * sample_rate)
    chunks: list[FloatArray] = []
    total = 0
    try:
        with av.open(str(path)) as container:
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="fltp", rate=sample_rate)
            for frame in container.decode(stream):
                for converted in resampler.resample(frame):
                    total += _append_mono(chunks, converted)
                if limit is not None and total >= limit:
                    break
            else:
                for converted in resampler.resample(None):
                    total += _append_mono(chunks, converted)
    except (av.error.FFmpegError, IndexError, OSError) as err:
        raise AudioError(f"{path}: cannot decode audio: {err}") from err
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    return samples[:limit] if limit is not None else samples


def resample(samples: npt.ArrayLike, rate: int, target: int) -> FloatArray:
    """Mono float audio from rate to target through libswresample (PyAV)."""
    values = np.ascontiguousarray(np.asarray(samples, dtype=np.float32).reshape(1, -1))
    if rate == target or values.size == 0:
        return values[0].copy()
    frame = av.AudioFrame.from_ndarray(values, format="flt", layout="mono")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="flt", layout="mono", rate=target)
    parts = [
        f.to_ndarray().reshape(-1)
        for f in (*resampler.resample(frame), *resampler.resample(None))
    ]
    return (
        np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
    )


def _append_mono(chunks: list[FloatArray], frame: av.AudioFrame) -> int:
    """Append the channel mean of a planar float frame; return its length."""
    planes = frame.to_ndarray()  # (channels, samples) for planar formats
    mono = planes.mean(axis=0, dtype=np.float64).astype(np.float32)
    chunks.append(mono)
    return int(mono.shape[0])


def to_int16(samples: npt.ArrayLike) -> npt.NDArray[np.int16]:
    """Scale float [-1, 1) to int16 with rounding and clipping."""
    values = np.asarray(samples, dtype=np.float64) * 32768.0
    return np.clip(np.round(values), -32768, INT16_MAX).astype(np.int16)


def write_audio(path: Path, samples: npt.ArrayLike, sample_rate: int) -> None:
    """Write mono 16-bit audio: .wav with the standard library, .flac through FFmpeg."""
    pcm = to_int16(samples)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".wav":
        with wave.open(str(path), "wb") as output:
            output.setnchannels(1)
            output.setsampwidth(2)
            output.setframerate(sample_rate)
            output.writeframes(pcm.astype("<i2").tobytes())
    elif suffix == ".flac":
        _write_flac(path, pcm, sample_rate)
    else:
        raise AudioError(
            f"{path}: can write .wav or .flac, not {suffix or 'no suffix'}"
        )


def _write_flac(path: Path, pcm: npt.NDArray[np.int16], sample_rate: int) -> None:
    """Encode int16 mono samples as FLAC."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("flac", rate=sample_rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(
            pcm.reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = sample_rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def apply_gain(samples: npt.ArrayLike, gain_db: float) -> FloatArray:
    """Multiply by 10^(gain/20) and clip to full scale (like `sox vol N dB`)."""
    values = np.asarray(samples, dtype=np.float32) * np.float32(
        10.0 ** (gain_db / 20.0)
    )
    return np.clip(values, -1.0, FULL_SCALE_MAX).astype(np.float32)
