"""Synthesised test audio: room tone, speech-like bursts, music, door knocks and cry-like sweeps."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
Int16Array = npt.NDArray[np.int16]


def _rng(seed: int) -> np.random.Generator:
    """Return a seeded generator."""
    return np.random.default_rng(seed)


def _scale_to_dbfs(signal: FloatArray, level_dbfs: float) -> FloatArray:
    """Scale a signal so its RMS is level_dbfs (full scale = 1.0)."""
    rms = float(np.sqrt(np.mean(signal * signal))) if signal.size else 0.0
    if rms == 0.0:
        return signal
    scaled: FloatArray = signal * (10.0 ** (level_dbfs / 20.0) / rms)
    return scaled


def room_tone(
    seconds: float, rate: int = 16000, level_dbfs: float = -55.0, seed: int = 0
) -> FloatArray:
    """Pinkish background noise (1/f spectrum) at a given RMS level."""
    count = round(seconds * rate)
    spectrum = np.fft.rfft(_rng(seed).normal(size=count))
    freqs = np.fft.rfftfreq(count, 1.0 / rate)
    spectrum /= np.sqrt(np.maximum(freqs, 20.0))
    return _scale_to_dbfs(np.fft.irfft(spectrum, n=count), level_dbfs)


def harmonic_tone(
    f0: FloatArray, rate: int, max_hz: float = 3800.0, rolloff: float = 0.7
) -> FloatArray:
    """Sum of harmonics of a time-varying fundamental f0 (Hz per sample), each below max_hz."""
    phase = 2.0 * np.pi * np.cumsum(f0) / rate
    signal = np.zeros_like(f0)
    harmonic = 1
    while harmonic * float(f0.min()) < max_hz:
        audible = harmonic * f0 < max_hz
        signal += np.where(
            audible, rolloff ** (harmonic - 1) * np.sin(harmonic * phase), 0.0
        )
        harmonic += 1
    return signal


def cry(
    seconds: float,
    rate: int = 16000,
    *,
    low_hz: float = 300.0,
    high_hz: float = 600.0,
    level_dbfs: float = -20.0,
    seed: int = 0,
) -> FloatArray:
    """Cry-like call: fundamental sweeping low_hz -> high_hz -> low_hz with harmonics and a voiced envelope."""
    count = round(seconds * rate)
    t = np.arange(count) / rate
    sweep = 0.5 - 0.5 * np.cos(2.0 * np.pi * t / max(seconds, 1e-9))
    jitter = 1.0 + 0.01 * _rng(seed).standard_normal(count).cumsum() / np.sqrt(count)
    f0 = (low_hz + (high_hz - low_hz) * sweep) * jitter
    envelope = np.minimum(1.0, np.minimum(t, seconds - t) / 0.05)
    return _scale_to_dbfs(harmonic_tone(f0, rate) * envelope, level_dbfs)


def cry_bout(
    seconds: float, rate: int = 16000, level_dbfs: float = -20.0, seed: int = 0
) -> FloatArray:
    """Crying as it comes: ~1 s calls separated by short inhalation pauses, filling `seconds`."""
    rng = _rng(seed)
    out = np.zeros(round(seconds * rate))
    position = 0
    while position < out.size:
        call = cry(
            rng.uniform(0.8, 1.2),
            rate,
            low_hz=rng.uniform(280, 340),
            high_hz=rng.uniform(520, 620),
            level_dbfs=level_dbfs,
            seed=int(rng.integers(1 << 30)),
        )
        call = call[: out.size - position]
        out[position : position + call.size] = call
        position += call.size + round(rng.uniform(0.05, 0.15) * rate)
    return out


def speech_like(
    seconds: float, rate: int = 16000, level_dbfs: float = -25.0, seed: int = 0
) -> FloatArray:
    """Adult-voice-like bursts: 100-220 Hz fundamental, formant-ish rolloff, 4 Hz syllables."""
    rng = _rng(seed)
    count = round(seconds * rate)
    t = np.arange(count) / rate
    f0 = 140.0 + 40.0 * np.sin(2.0 * np.pi * 0.7 * t + rng.uniform(0, 6.28))
    voiced = harmonic_tone(f0, rate, rolloff=0.85)
    syllables = (
        np.clip(np.sin(2.0 * np.pi * 4.0 * t + rng.uniform(0, 6.28)), 0.0, None) ** 2
    )
    words = (np.sin(2.0 * np.pi * 0.5 * t + rng.uniform(0, 6.28)) > -0.3).astype(
        np.float64
    )
    return _scale_to_dbfs(voiced * syllables * words, level_dbfs)


def music(
    seconds: float, rate: int = 16000, level_dbfs: float = -25.0, seed: int = 0
) -> FloatArray:
    """A chord progression of harmonic notes, half a second per chord."""
    rng = _rng(seed)
    count = round(seconds * rate)
    out = np.zeros(count)
    chord_samples = rate // 2
    for start in range(0, count, chord_samples):
        root = 110.0 * 2.0 ** (int(rng.integers(0, 12)) / 12.0)
        length = min(chord_samples, count - start)
        decay = np.exp(-np.arange(length) / (0.3 * rate))
        for ratio in (1.0, 1.26, 1.5):
            f0 = np.full(length, root * ratio)
            out[start : start + length] += harmonic_tone(f0, rate, rolloff=0.5) * decay
    return _scale_to_dbfs(out, level_dbfs)


def door_knocks(
    seconds: float,
    rate: int = 16000,
    knock_times: Sequence[float] = (0.2, 0.45, 0.7),
    level_dbfs: float = -20.0,
    seed: int = 0,
) -> FloatArray:
    """Short decaying broadband impulses with a low wooden resonance."""
    rng = _rng(seed)
    out = np.zeros(round(seconds * rate))
    length = round(0.08 * rate)
    t = np.arange(length) / rate
    knock = (rng.normal(size=length) * 0.3 + np.sin(2 * np.pi * 180.0 * t)) * np.exp(
        -t / 0.015
    )
    for at in knock_times:
        begin = round(at * rate)
        piece = knock[: max(0, out.size - begin)]
        out[begin : begin + piece.size] += piece
    peak = float(np.max(np.abs(out))) or 1.0
    scaled: FloatArray = out / peak * 10.0 ** (level_dbfs / 20.0) * 3.0
    return scaled


def place(
    track: FloatArray, sound: FloatArray, at_seconds: float, rate: int = 16000
) -> FloatArray:
    """Add sound into track starting at at_seconds (clipped at the track's end); returns track."""
    begin = round(at_seconds * rate)
    piece = sound[: max(0, track.size - begin)]
    track[begin : begin + piece.size] += piece
    return track


def scene(
    seconds: float,
    cries: Sequence[tuple[float, float]] = (),
    rate: int = 16000,
    seed: int = 0,
    distractors: bool = True,
) -> FloatArray:
    """Room tone plus (optionally) speech, music and knocks, with cry bouts at the given intervals."""
    track = room_tone(seconds, rate, seed=seed)
    if distractors:
        rng = _rng(seed + 1)
        for at in (float(t) for t in np.arange(1.0, seconds - 4.0, 15.0)):
            kind = int(rng.integers(0, 3))
            if any(start - 5.0 < at < end + 1.0 for start, end in cries):
                continue
            if kind == 0:
                place(track, speech_like(3.0, rate, seed=int(at)), at, rate)
            elif kind == 1:
                place(track, music(3.0, rate, seed=int(at)), at, rate)
            else:
                place(track, door_knocks(1.0, rate, seed=int(at)), at, rate)
    for number, (start, end) in enumerate(cries):
        place(track, cry_bout(end - start, rate, seed=seed + 100 + number), start, rate)
    return track


def to_int16(signal: npt.ArrayLike) -> Int16Array:
    """Convert float [-1, 1) audio to int16 with clipping."""
    values = np.asarray(signal, dtype=np.float64)
    return np.clip(np.round(values * 32768.0), -32768, 32767).astype(np.int16)


def write_audio(path: Path, signal: npt.ArrayLike, rate: int = 16000) -> Path:
    """Write int16 or float audio (1-D mono or (channels, n)) as WAV (pcm_s16le) or FLAC by suffix."""
    values = np.asarray(signal)
    samples = values if values.dtype == np.int16 else to_int16(values)
    planar = samples.reshape(1, -1) if samples.ndim == 1 else samples
    layout = {1: "mono", 2: "stereo"}[planar.shape[0]]
    codec = {".wav": "pcm_s16le", ".flac": "flac"}[path.suffix.lower()]
    interleaved = np.ascontiguousarray(planar.T).reshape(1, -1)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        assert isinstance(stream, av.audio.stream.AudioStream)
        frame = av.AudioFrame.from_ndarray(interleaved, format="s16", layout=layout)
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def read_audio(path: Path, rate: int = 16000) -> Int16Array:
    """Decode a whole file to int16 mono at rate (reference for checks)."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
    pieces: list[Int16Array] = []
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            frame.pts = None
            pieces.extend(_samples(out) for out in resampler.resample(frame))
    pieces.extend(_samples(out) for out in resampler.resample(None))
    return np.concatenate(pieces).astype(np.int16)


def _samples(frame: av.AudioFrame) -> Int16Array:
    """Return a packed s16 mono frame's samples."""
    return np.asarray(frame.to_ndarray(), dtype=np.int16).reshape(-1)
