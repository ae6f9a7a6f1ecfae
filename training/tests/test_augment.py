"""Augmentation: measured SNR, band limits, reverberation decay, gain, shift, reproducibility."""

from __future__ import annotations

import numpy as np
import pytest
from synth import cry

from cry_training.augment import (
    Augmenter,
    band_limit,
    fit_background,
    mix_at_snr,
    pitch_shift,
    reverberate,
    rms,
    synthetic_background,
    synthetic_impulse_response,
    time_shift,
)
from cry_training.config import AugmentConfig

RATE = 16000


def _band_power(samples: np.ndarray, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(samples)) ** 2
    freqs = np.fft.rfftfreq(samples.size, 1 / RATE)
    return float(spectrum[(freqs >= low) & (freqs < high)].sum())


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 10.0, 25.0])
def test_background_is_mixed_at_the_requested_snr(snr_db: float) -> None:
    rng = np.random.default_rng(0)
    signal = cry(2.0, rng)
    background = synthetic_background(signal.size, RATE, rng, "pink")
    mixed = mix_at_snr(signal, background, snr_db)
    added = mixed - signal
    assert 20 * np.log10(rms(signal) / rms(added)) == pytest.approx(snr_db, abs=1e-3)


def test_silent_signals_get_an_audible_background_not_an_infinite_one() -> None:
    silent = np.zeros(RATE, np.float32)
    mixed = mix_at_snr(silent, np.ones(RATE, np.float32), 20.0)
    assert 0 < rms(mixed) < 1e-3


@pytest.mark.parametrize("kind", ["white", "pink", "brown", "fan"])
def test_synthetic_backgrounds_have_unit_level_and_their_colour(kind: str) -> None:
    noise = synthetic_background(RATE * 2, RATE, np.random.default_rng(1), kind)
    assert rms(noise) == pytest.approx(1.0, rel=1e-3)
    low, high = _band_power(noise, 100, 500), _band_power(noise, 4000, 8000)
    per_hz_ratio = (low / 400) / (high / 4000)
    expected = {
        "white": (0.5, 2),
        "pink": (5, 30),
        "brown": (100, 1e5),
        "fan": (10, 1e6),
    }[kind]
    assert expected[0] < per_hz_ratio < expected[1]


def test_band_limit_keeps_the_pass_band_and_removes_the_rest() -> None:
    noise = synthetic_background(RATE * 2, RATE, np.random.default_rng(2), "white")
    filtered = band_limit(noise, RATE, highpass_hz=300.0, lowpass_hz=2000.0)
    assert _band_power(filtered, 600, 1500) / _band_power(
        noise, 600, 1500
    ) == pytest.approx(1.0, rel=1e-6)
    assert _band_power(filtered, 3000, 8000) / _band_power(noise, 3000, 8000) < 1e-6
    assert _band_power(filtered, 20, 200) / _band_power(noise, 20, 200) < 1e-3


def test_impulse_response_decays_by_60_db_over_rt60() -> None:
    response = synthetic_impulse_response(RATE, 0.5, 6.0, np.random.default_rng(3))
    assert response[0] == 1.0 and response.size == RATE // 2
    early = rms(response[200:1800])
    late = rms(response[-1600:])
    decay_db = 20 * np.log10(early / late)
    assert decay_db == pytest.approx(
        60 * (0.45 - 0.0625) / 0.5, abs=3
    )  # segment centres
    tail_energy = float(np.sum(response[1:] ** 2))
    assert 10 * np.log10(1 / tail_energy) == pytest.approx(6.0, abs=0.01)


def test_reverberation_smears_a_click_and_keeps_the_level() -> None:
    click = np.zeros(RATE, np.float32)
    click[1000] = 0.5
    wet = reverberate(
        click, synthetic_impulse_response(RATE, 0.4, 0.0, np.random.default_rng(4))
    )
    assert rms(wet) == pytest.approx(rms(click), rel=1e-4)
    assert rms(wet[3000:6000]) > 0.01 * rms(
        wet[1000:1100]
    )  # energy long after the click


def test_time_shift_and_background_fitting() -> None:
    audio = np.arange(10, dtype=np.float32)
    assert time_shift(audio, 3).tolist() == [0, 0, 0, *range(10)]
    assert time_shift(audio, -4).tolist() == list(range(4, 10))
    rng = np.random.default_rng(5)
    assert fit_background(np.arange(3, dtype=np.float32), 8, rng).size == 8
    crop = fit_background(np.arange(100, dtype=np.float32), 10, rng)
    assert np.all(np.diff(crop) == 1)


def test_augmenter_is_reproducible_bounded_and_uses_corpus_backgrounds() -> None:
    config = AugmentConfig(
        background_probability=1.0,
        synthetic_background_probability=0.0,
        snr_db=[0.0, 0.0],
        gain_db=[0.0, 0.0],
        reverb_probability=0.0,
        band_limit_probability=0.0,
        time_shift_ms=0.0,
    )
    tone = 0.1 * np.sin(2 * np.pi * 3000 * np.arange(RATE) / RATE).astype(np.float32)
    augmenter = Augmenter(config, RATE, lambda: [tone, np.zeros(RATE, np.float32)])
    signal = cry(1.0, np.random.default_rng(6))
    first = augmenter(signal, np.random.default_rng(7))
    assert len(augmenter.backgrounds) == 1  # the silent recording is not a background
    np.testing.assert_array_equal(first, augmenter(signal, np.random.default_rng(7)))
    assert _band_power(first - signal, 2900, 3100) > 0.9 * _band_power(
        first - signal, 0, 8000
    )
    loud = Augmenter(AugmentConfig(gain_db=[30.0, 30.0]), RATE)(
        signal, np.random.default_rng(8)
    )
    assert (
        loud.min() >= -1.0 and loud.max() <= 32767 / 32768
    )  # clipped like a converter
    assert np.mean(np.abs(loud) > 0.99) > 0.01


@pytest.mark.parametrize("kind", ["synthetic", "corpus"])
def test_a_clip_shorter_than_the_shift_keeps_at_least_half_its_audio(kind: str) -> None:
    """A 0.1 s word shifted earlier by up to 250 ms is never emptied (it once crashed)."""
    config = AugmentConfig(
        background_probability=1.0,
        synthetic_background_probability=1.0 if kind == "synthetic" else 0.0,
        reverb_probability=0.0,
        band_limit_probability=0.0,
        time_shift_ms=250.0,
    )
    noise = np.random.default_rng(1).normal(size=RATE).astype(np.float32) * 0.1
    augmenter = Augmenter(config, RATE, lambda: [noise])
    word = cry(0.1, np.random.default_rng(2))
    sizes = {augmenter(word, np.random.default_rng(seed)).size for seed in range(40)}
    assert min(sizes) >= word.size - word.size // 2
    assert max(sizes) > word.size  # shifted later too


def test_pitch_shift_lowers_every_frequency_by_the_factor_and_slows_down() -> None:
    time = np.arange(RATE) / RATE
    tone = np.sin(2 * np.pi * 500.0 * time).astype(np.float32)
    lowered = pitch_shift(tone, 0.5)
    assert lowered.dtype == np.float32
    assert lowered.size == pytest.approx(2 * tone.size, abs=2)
    spectrum = np.abs(np.fft.rfft(lowered))
    peak_hz = np.argmax(spectrum) * RATE / lowered.size
    assert peak_hz == pytest.approx(250.0, abs=2.0)
    assert rms(lowered) == pytest.approx(rms(tone), rel=0.01)
    assert pitch_shift(np.zeros(1, np.float32), 0.5).size == 1
