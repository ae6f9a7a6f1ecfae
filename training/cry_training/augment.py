"""Nursery-like augmentation in the waveform domain (the features are computed afterwards).

A cry reaches a baby monitor through a room (reverberation), over a white-noise machine, a fan,
speech, TV or music (background mixing at a range of SNRs), through a cheap microphone
(band-limiting) at an unknown level (gain), at any moment (time shift). Every function takes a
`numpy.random.Generator`, so a seed reproduces the whole augmented set.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import math

import numpy as np
import numpy.typing as npt

from .audio import FULL_SCALE_MAX, apply_gain
from .config import AugmentConfig

FloatArray = npt.NDArray[np.float32]

# Signals quieter than this have no meaningful "signal power" for an SNR (digital silence).
SILENT_RMS = 1e-4
SYNTHETIC_KINDS = ("white", "pink", "brown", "fan")


def _uniform(rng: np.random.Generator, low_high: Sequence[float]) -> float:
    """Draw from [low, high]."""
    return float(rng.uniform(low_high[0], low_high[1]))


def rms(samples: npt.ArrayLike) -> float:
    """Root mean square (0 for empty input)."""
    values = np.asarray(samples, dtype=np.float64)
    return float(np.sqrt(np.mean(values * values))) if values.size else 0.0


def _shaped_noise(
    length: int, sample_rate: int, rng: np.random.Generator, exponent: float
) -> FloatArray:
    """Gaussian noise with a power spectrum proportional to 1/f^exponent, unit RMS."""
    spectrum = rng.normal(size=length // 2 + 1) + 1j * rng.normal(size=length // 2 + 1)
    freqs = np.fft.rfftfreq(length, 1.0 / sample_rate)
    spectrum *= 1.0 / np.maximum(freqs, 20.0) ** (exponent / 2.0)
    spectrum[0] = 0.0
    noise = np.fft.irfft(spectrum, n=length)
    return (noise / max(rms(noise), 1e-12)).astype(np.float32)


def synthetic_background(
    length: int, sample_rate: int, rng: np.random.Generator, kind: str | None = None
) -> FloatArray:
    """White / pink / brown noise (noise machines) or a fan (low hum + blade tone + airflow)."""
    kind = kind or SYNTHETIC_KINDS[int(rng.integers(len(SYNTHETIC_KINDS)))]
    if kind == "white":
        return _shaped_noise(length, sample_rate, rng, 0.0)
    if kind == "pink":
        return _shaped_noise(length, sample_rate, rng, 1.0)
    if kind == "brown":
        return _shaped_noise(length, sample_rate, rng, 2.0)
    if kind != "fan":
        raise ValueError(f"unknown background kind {kind!r}")
    time = np.arange(length) / sample_rate
    mains = float(rng.choice([50.0, 60.0]))
    blade = float(rng.uniform(20.0, 120.0))
    hum = sum(
        np.sin(2 * np.pi * freq * time + rng.uniform(0, 2 * np.pi)) * amplitude
        for freq, amplitude in (
            (mains, 0.4),
            (2 * mains, 0.3),
            (blade, 0.3),
            (2 * blade, 0.15),
        )
    )
    airflow = _shaped_noise(length, sample_rate, rng, 1.5)
    fan = np.asarray(hum) + airflow
    return (fan / max(rms(fan), 1e-12)).astype(np.float32)


def fit_background(
    background: npt.ArrayLike, length: int, rng: np.random.Generator
) -> FloatArray:
    """Crop a random stretch of the background, or tile it when it is too short."""
    values = np.asarray(background, dtype=np.float32)
    if values.size == 0:
        return np.zeros(length, np.float32)
    if values.size < length:
        values = np.tile(values, math.ceil(length / values.size) + 1)
    start = int(rng.integers(0, values.size - length + 1))
    return values[start : start + length].copy()


def mix_at_snr(
    signal: npt.ArrayLike, background: npt.ArrayLike, snr_db: float
) -> FloatArray:
    """Add the background scaled so that signal power / background power = snr_db."""
    sig = np.asarray(signal, dtype=np.float32)
    bg = np.asarray(background, dtype=np.float32)
    level = rms(bg)
    if level < 1e-12:
        return sig.copy()
    target = max(rms(sig), SILENT_RMS) * 10.0 ** (-snr_db / 20.0)
    return (sig + bg * np.float32(target / level)).astype(np.float32)


def band_limit(
    samples: npt.ArrayLike, sample_rate: int, highpass_hz: float, lowpass_hz: float
) -> FloatArray:
    """Zero-phase band-pass in the frequency domain with half-octave raised-cosine edges."""
    values = np.asarray(samples, dtype=np.float32)
    if values.size == 0:
        return values.copy()
    freqs = np.fft.rfftfreq(values.size, 1.0 / sample_rate)
    octaves_high = np.log2(np.maximum(freqs, 1e-3) / lowpass_hz)
    octaves_low = np.log2(np.maximum(freqs, 1e-3) / highpass_hz)
    gain = _edge(-octaves_high) * _edge(octaves_low)
    return np.fft.irfft(np.fft.rfft(values) * gain, n=values.size).astype(np.float32)


def _edge(octaves: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """1 above +0.25 octave, 0 below -0.25, raised cosine in between."""
    position = np.clip((octaves + 0.25) / 0.5, 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * position)


def synthetic_impulse_response(
    sample_rate: int,
    rt60_seconds: float,
    direct_to_reverb_db: float,
    rng: np.random.Generator,
) -> FloatArray:
    """A room: a direct impulse, then exponentially decaying noise (-60 dB after rt60)."""
    length = max(2, int(rt60_seconds * sample_rate))
    time = np.arange(length) / sample_rate
    tail = rng.normal(size=length) * np.exp(-6.907755 * time / rt60_seconds)  # ln(1000)
    # A couple of milliseconds of silence before the first reflections.
    tail[: max(1, int(0.002 * sample_rate))] = 0.0
    tail_energy = float(np.sum(tail * tail))
    wanted_energy = 10.0 ** (-direct_to_reverb_db / 10.0)
    tail *= math.sqrt(wanted_energy / max(tail_energy, 1e-12))
    tail[0] = 1.0
    return np.asarray(tail, dtype=np.float32)


def reverberate(samples: npt.ArrayLike, impulse_response: npt.ArrayLike) -> FloatArray:
    """Convolve (FFT) and keep the original length; the level is restored to the dry RMS."""
    dry = np.asarray(samples, dtype=np.float32)
    response = np.asarray(impulse_response, dtype=np.float64)
    if dry.size == 0:
        return dry.copy()
    size = 1 << math.ceil(math.log2(dry.size + response.size - 1))
    wet = np.fft.irfft(np.fft.rfft(dry, size) * np.fft.rfft(response, size), size)[
        : dry.size
    ]
    scale = rms(dry) / max(rms(wet), 1e-12)
    return (wet * scale).astype(np.float32)


def pitch_shift(samples: npt.ArrayLike, factor: float) -> FloatArray:
    """Resample so every frequency is multiplied by factor (< 1: lower and slower)."""
    values = np.asarray(samples, dtype=np.float32)
    if values.size < 2 or factor <= 0:
        return values.copy()
    positions = np.arange(0.0, values.size - 1, factor)
    lowered = np.interp(positions, np.arange(values.size), values)
    return np.asarray(lowered, dtype=np.float32)


def time_shift(samples: npt.ArrayLike, shift: int) -> FloatArray:
    """Shift later by `shift` samples (prepend silence) or earlier (drop the start)."""
    values = np.asarray(samples, dtype=np.float32)
    if shift > 0:
        return np.concatenate((np.zeros(shift, np.float32), values))
    return values[-shift:].copy() if shift < 0 else values.copy()


class Augmenter:
    """Turn a clean clip into a nursery-like one, drawing every parameter from an rng."""

    def __init__(
        self,
        config: AugmentConfig,
        sample_rate: int,
        backgrounds: Sequence[FloatArray] | Callable[[], Sequence[FloatArray]] = (),
    ) -> None:
        """Keep the config and the background pool (corpus negatives), or a loader for it."""
        self.config = config
        self.sample_rate = sample_rate
        self._source = backgrounds
        self._backgrounds: list[FloatArray] | None = None

    @property
    def backgrounds(self) -> list[FloatArray]:
        """The non-silent background recordings (loaded on first use)."""
        if self._backgrounds is None:
            pool = self._source() if callable(self._source) else self._source
            self._backgrounds = [bg for bg in pool if rms(bg) > SILENT_RMS]
        return self._backgrounds

    def background(self, length: int, rng: np.random.Generator) -> FloatArray:
        """A background stretch: a corpus negative, or a synthetic noise machine / fan."""
        use_synthetic = (
            not self.backgrounds
            or rng.random() < self.config.synthetic_background_probability
        )
        if use_synthetic:
            return synthetic_background(length, self.sample_rate, rng)
        chosen = self.backgrounds[int(rng.integers(len(self.backgrounds)))]
        return fit_background(chosen, length, rng)

    def __call__(self, samples: npt.ArrayLike, rng: np.random.Generator) -> FloatArray:
        """Return an augmented copy: shift, reverb, background, band limit, gain (each maybe)."""
        config = self.config
        max_shift = int(config.time_shift_ms * self.sample_rate / 1000.0)
        shift = int(rng.integers(-max_shift, max_shift + 1)) if max_shift else 0
        # Dropping the start never takes more than half a clip (a short word stays a word).
        audio = time_shift(samples, max(shift, -(np.asarray(samples).size // 2)))
        if rng.random() < config.reverb_probability:
            response = synthetic_impulse_response(
                self.sample_rate,
                _uniform(rng, config.rt60_seconds),
                _uniform(rng, config.direct_to_reverb_db),
                rng,
            )
            audio = reverberate(audio, response)
        if rng.random() < config.background_probability:
            audio = mix_at_snr(
                audio, self.background(audio.size, rng), _uniform(rng, config.snr_db)
            )
        if rng.random() < config.band_limit_probability:
            audio = band_limit(
                audio,
                self.sample_rate,
                _uniform(rng, config.highpass_hz),
                min(_uniform(rng, config.lowpass_hz), self.sample_rate / 2.0),
            )
        peak = float(np.max(np.abs(audio))) if audio.size else 0.0
        if peak > FULL_SCALE_MAX:  # mixing may overshoot; the gain below sets the level
            audio = audio * np.float32(FULL_SCALE_MAX / peak)
        return apply_gain(audio, _uniform(rng, config.gain_db))
