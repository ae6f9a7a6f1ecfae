"""Tests for the log-mel front end: golden values, streaming, 8k/16k and gain invariance."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import av
from hypothesis import HealthCheck, given, settings, strategies as st
import numpy as np
import numpy.typing as npt
import pytest

from custom_components.cry_detector.engine.errors import ModelCardError
from custom_components.cry_detector.engine.features import (
    DBFS_FLOOR,
    FeatureConfig,
    LogMelFrontend,
    PatchAssembler,
    PatchStream,
    dbfs,
    log_mel,
    mel_filterbank,
    normalize_patch,
    patch_count,
    patches,
)

SR = 16000
CONFIG = FeatureConfig()
Array = npt.NDArray[np.float64]


def htk_mel(hz: float) -> float:
    """HTK mel, written out independently of the engine."""
    return 2595.0 * float(np.log10(1.0 + hz / 700.0))


def htk_hz(mel: float) -> float:
    """Inverse HTK mel."""
    return float(700.0 * (10.0 ** (mel / 2595.0) - 1.0))


def band_edges_hz(config: FeatureConfig) -> list[float]:
    """The mel_bands + 2 band edge frequencies, computed independently."""
    low, high = htk_mel(config.fmin_hz), htk_mel(config.fmax_hz)
    step = (high - low) / (config.mel_bands + 1)
    return [htk_hz(low + i * step) for i in range(config.mel_bands + 2)]


def cry_like(seconds: float, rng: np.random.Generator, peak: float = 0.5) -> Array:
    """A harmonic sweep (f0 330..570 Hz, harmonics < 3.4 kHz) with 3 Hz pulsing, plus faint noise."""
    t = np.arange(int(seconds * SR)) / SR
    f0 = 450.0 + 120.0 * np.sin(2 * np.pi * 0.4 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    voiced = sum((1.0 / k) * np.sin(k * phase) * (k * f0 < 3400.0) for k in range(1, 9))
    signal = voiced * (1.0 + 0.5 * np.sin(2 * np.pi * 3.0 * t))
    signal = peak * signal / np.max(np.abs(signal))
    noisy = signal + rng.standard_normal(t.size) * peak * 2e-3
    return np.asarray(noisy, dtype=np.float64)


def sine(freq: float, amplitude: float, seconds: float) -> Array:
    """A pure tone."""
    return amplitude * np.sin(2 * np.pi * freq * np.arange(int(seconds * SR)) / SR)


def resample(samples: Array, src_rate: int, dst_rate: int) -> Array:
    """Resample with FFmpeg's libswresample through PyAV (what an FFmpeg source does)."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=dst_rate)
    frame = av.AudioFrame.from_ndarray(
        samples.astype(np.float32).reshape(1, -1), format="flt", layout="mono"
    )
    frame.sample_rate = src_rate
    out = [*resampler.resample(frame), *resampler.resample(None)]
    return np.concatenate([f.to_ndarray().reshape(-1) for f in out]).astype(np.float64)


def via_8k(samples: Array) -> Array:
    """Down to 8 kHz and back up to 16 kHz, trimmed to the original length."""
    result = resample(resample(samples, SR, 8000), 8000, SR)
    assert abs(result.size - samples.size) <= 4
    return result[: samples.size]


def stream(
    samples: Array | npt.NDArray[np.int16], sizes: list[int]
) -> npt.NDArray[np.float32]:
    """Run the streaming front end over consecutive chunks of the given sizes (cycled)."""
    frontend = LogMelFrontend(CONFIG)
    rows, position, index = [], 0, 0
    while position < samples.size:
        size = sizes[index % len(sizes)]
        rows.append(frontend.process(samples[position : position + size]))
        position, index = position + size, index + 1
    return np.concatenate(rows)


# --- golden values -------------------------------------------------------------------------


def test_filterbank_edges_and_peaks() -> None:
    """Every triangle lives strictly between its own edges and peaks near 1 at its centre."""
    bank = mel_filterbank(CONFIG)
    bins_hz = np.arange(CONFIG.fft_length // 2 + 1) * SR / CONFIG.fft_length
    edges = band_edges_hz(CONFIG)
    assert bank.shape == (40, 257)
    assert edges[0] == pytest.approx(60.0) and edges[-1] == pytest.approx(3800.0)
    for band in range(CONFIG.mel_bands):
        nonzero = bins_hz[bank[band] > 0]
        assert nonzero.size >= 1
        assert nonzero.min() > edges[band] and nonzero.max() < edges[band + 2]
        # the weight at the bin nearest the centre is 1 - distance / half-width
        centre = edges[band + 1]
        nearest = int(np.argmin(np.abs(bins_hz - centre)))
        half_width = (
            (edges[band + 2] - centre)
            if bins_hz[nearest] > centre
            else (centre - edges[band])
        )
        assert bank[band, nearest] == pytest.approx(
            1 - abs(bins_hz[nearest] - centre) / half_width
        )
    # nothing below 60 Hz or above 3800 Hz: band-limited for 8 kHz telephone audio
    assert not bank[:, (bins_hz < 60) | (bins_hz > 3800)].any()
    assert bank.max() <= 1.0


def test_filterbank_is_cached_and_read_only() -> None:
    """The filterbank is computed once per config and cannot be altered by callers."""
    assert mel_filterbank(CONFIG) is mel_filterbank(FeatureConfig())
    with pytest.raises(ValueError, match="read-only"):
        mel_filterbank(CONFIG)[0, 0] = 5.0


def test_overlapping_triangles_sum_to_one_between_centres() -> None:
    """Adjacent HTK triangles cross-fade: between the first and last centre the weights sum to 1."""
    bank = mel_filterbank(CONFIG)
    bins_hz = np.arange(257) * SR / 512
    edges = band_edges_hz(CONFIG)
    inner = (bins_hz >= edges[1]) & (bins_hz <= edges[-2])
    np.testing.assert_allclose(bank[:, inner].sum(axis=0), 1.0, atol=1e-9)


def test_1khz_sine_lands_in_the_band_centred_nearest_1khz() -> None:
    """A 1 kHz tone peaks in the band whose centre is nearest 1 kHz (HTK mel(1000) ~ 1000)."""
    features = log_mel(sine(1000.0, 0.5, 1.0), CONFIG)
    centres = band_edges_hz(CONFIG)[1:-1]
    expected_band = int(np.argmin([abs(c - 1000.0) for c in centres]))
    assert features.shape == (98, 40)  # (16000 - 400) // 160 + 1
    assert (features.argmax(axis=1) == expected_band).all()
    # the tone's band is far above the (unrelated) bands near 3.5 kHz: > 60 dB of power
    assert (features[:, expected_band] - features[:, -1] > np.log(1e6)).all()


def test_one_cell_matches_a_naive_dft() -> None:
    """One log-mel cell equals a textbook DFT + triangle + log written out in the test."""
    amplitude, frame_index, band = 0.5, 7, 17
    tone = sine(1000.0, amplitude, 0.2)
    start = frame_index * 160
    n = np.arange(400)
    frame = tone[start : start + 400] * (0.5 - 0.5 * np.cos(2 * np.pi * n / 400))
    k = np.arange(257)[:, None]
    dft = (frame[None, :] * np.exp(-2j * np.pi * k * n[None, :] / 512)).sum(axis=1)
    power = np.abs(dft) ** 2
    # hand check: 1 kHz is exactly bin 32 and the periodic Hann sums to 200, so |X|^2 = (100 A)^2
    assert power[32] == pytest.approx((100 * amplitude) ** 2, rel=1e-9)
    lower, centre, upper = band_edges_hz(CONFIG)[band : band + 3]
    bins_hz = np.arange(257) * SR / 512
    weights = np.clip(
        np.minimum(
            (bins_hz - lower) / (centre - lower), (upper - bins_hz) / (upper - centre)
        ),
        0,
        None,
    )
    expected = np.log((weights * power).sum() + 1e-10)
    assert log_mel(tone, CONFIG)[frame_index, band] == pytest.approx(expected, abs=1e-5)


def test_silence_sits_at_the_log_floor() -> None:
    """Digital silence gives log(floor) everywhere."""
    features = log_mel(np.zeros(SR, dtype=np.int16), CONFIG)
    np.testing.assert_allclose(features, np.log(1e-10), rtol=1e-6)


def test_int16_is_scaled_by_1_over_32768() -> None:
    """int16 input equals the same float samples divided by 32768."""
    ints = (np.random.default_rng(3).standard_normal(4000) * 3000).astype(np.int16)
    np.testing.assert_allclose(
        log_mel(ints, CONFIG),
        log_mel(ints.astype(np.float32) / 32768.0, CONFIG),
        atol=1e-5,
    )


def test_frame_count_and_short_input() -> None:
    """Frame i covers [i*hop, i*hop + window): no padding, short input gives no frames."""
    assert log_mel(np.zeros(399, np.float32), CONFIG).shape == (0, 40)
    assert log_mel(np.zeros(400, np.float32), CONFIG).shape == (1, 40)
    assert log_mel(np.zeros(559, np.float32), CONFIG).shape == (1, 40)
    assert log_mel(np.zeros(560, np.float32), CONFIG).shape == (2, 40)
    assert log_mel(np.zeros(400, np.float32), CONFIG).dtype == np.float32


@pytest.mark.parametrize(
    ("samples", "error"),
    [
        (np.zeros((2, 400), np.float32), ValueError),
        (np.zeros(400, np.int32), TypeError),
    ],
)
def test_rejects_bad_sample_arrays(
    samples: npt.NDArray[Any], error: type[Exception]
) -> None:
    """Only 1-D int16 or float audio is accepted."""
    with pytest.raises(error):
        log_mel(samples, CONFIG)


# --- streaming -----------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 7, 160, 401, 1600])
def test_streaming_equals_batch_for_fixed_chunks(chunk: int) -> None:
    """Any chunk size gives exactly the batch frames."""
    samples = (cry_like(0.6, np.random.default_rng(chunk)) * 32767).astype(np.int16)
    batch = log_mel(samples, CONFIG)
    streamed = stream(samples, [chunk])
    assert streamed.shape == batch.shape
    np.testing.assert_allclose(streamed, batch, rtol=0, atol=1e-5)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sizes=st.lists(
        st.integers(min_value=0, max_value=3000), min_size=1, max_size=12
    ).filter(any)
)
def test_streaming_equals_batch_for_random_splits(sizes: list[int]) -> None:
    """Random chunkings (including empty chunks) give the batch frames."""
    samples = cry_like(1.0, np.random.default_rng(7))
    np.testing.assert_allclose(
        stream(samples, sizes), log_mel(samples, CONFIG), rtol=0, atol=1e-5
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sizes=st.lists(st.integers(min_value=1, max_value=4000), min_size=1, max_size=6))
def test_patch_stream_gives_the_batch_patches_computing_once_per_patch(
    sizes: list[int],
) -> None:
    """Frames computed only once a patch is due (min_frames) give exactly the batch patches."""
    samples = (cry_like(4.3, np.random.default_rng(3)) * 32767).astype(np.int16)
    stream = PatchStream(CONFIG)
    computed = stream.frontend.process  # count the computations PatchStream asks for
    calls: list[int] = []

    def counting(chunk: npt.ArrayLike, min_frames: int = 1) -> npt.NDArray[np.float32]:
        rows = computed(chunk, min_frames)
        calls.append(rows.shape[0])
        return rows

    stream.frontend.process = counting  # type: ignore[method-assign]
    produced, position, index = [], 0, 0
    while position < samples.size:
        size = sizes[index % len(sizes)]
        produced += stream.push(samples[position : position + size])
        position, index = position + size, index + 1
    computations = sum(1 for count in calls if count)
    np.testing.assert_allclose(
        np.stack(produced), patches(samples, CONFIG), rtol=0, atol=1e-5
    )
    assert computations <= len(produced)  # never more than once per patch


def test_frontend_defers_until_min_frames_and_keeps_everything() -> None:
    """Below min_frames nothing is computed or lost; reaching it returns every frame."""
    samples = cry_like(0.6, np.random.default_rng(2))  # 58 frames
    frontend = LogMelFrontend(CONFIG)
    assert frontend.process(samples[:4000], min_frames=50).shape == (0, 40)
    assert frontend.buffered_samples == 4000
    rows = frontend.process(samples[4000:], min_frames=50)
    np.testing.assert_allclose(rows, log_mel(samples, CONFIG), rtol=0, atol=1e-5)
    assert frontend.buffered_samples == samples.size - rows.shape[0] * 160


def test_frontend_keeps_a_copy_of_the_callers_buffer() -> None:
    """A caller reusing its float64 buffer after process() does not change the features."""
    samples = cry_like(0.5, np.random.default_rng(4))
    buffer = samples[:3000].copy()
    frontend = LogMelFrontend(CONFIG)
    frontend.process(buffer, min_frames=100)
    buffer[:] = 0.0
    np.testing.assert_allclose(
        frontend.process(samples[3000:]), log_mel(samples, CONFIG), rtol=0, atol=1e-5
    )


def test_long_audio_is_computed_in_blocks_with_the_same_rows() -> None:
    """Rows past several internal blocks match the rows of the same frames computed alone."""
    samples = cry_like(3.0, np.random.default_rng(8))  # 298 frames: several blocks
    whole = log_mel(samples, CONFIG)
    for frame in (0, 63, 64, 65, 200, 297):
        start = frame * CONFIG.hop_length
        alone = log_mel(samples[start : start + CONFIG.window_length], CONFIG)
        np.testing.assert_allclose(whole[frame], alone[0], rtol=0, atol=1e-5)


def test_frontend_reset_starts_a_fresh_frame_grid() -> None:
    """After reset the buffered tail is dropped: output equals batch of the new audio only."""
    frontend = LogMelFrontend(CONFIG)
    frontend.process(np.ones(700, np.float32) * 0.1)
    assert frontend.buffered_samples == 700 - 2 * 160
    frontend.reset()
    fresh = cry_like(0.3, np.random.default_rng(1))
    np.testing.assert_allclose(
        frontend.process(fresh), log_mel(fresh, CONFIG), atol=1e-5
    )


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(min_value=1, max_value=140), min_size=1, max_size=8))
def test_patch_assembler_equals_batch_patches(sizes: list[int]) -> None:
    """Pushing frames in any grouping yields the batch patches, in order."""
    samples = cry_like(3.2, np.random.default_rng(11))
    frames = log_mel(samples, CONFIG)
    assembler, produced, position, index = PatchAssembler(CONFIG), [], 0, 0
    while position < len(frames):
        size = sizes[index % len(sizes)]
        produced += assembler.push(frames[position : position + size])
        position, index = position + size, index + 1
    expected = patches(samples, CONFIG)
    assert expected.shape == (5, 100, 40)  # 318 frames: patches at 0, 50, ..., 200
    np.testing.assert_array_equal(np.stack(produced), expected)
    assert assembler.buffered_frames == len(frames) - 5 * 50


def test_patch_k_covers_frames_k_times_hop() -> None:
    """Patch k is frames [k*50, k*50 + 100) minus their mean."""
    samples = cry_like(2.0, np.random.default_rng(5))
    frames, result = log_mel(samples, CONFIG), patches(samples, CONFIG)
    for k in range(len(result)):
        window = frames[k * 50 : k * 50 + 100]
        np.testing.assert_allclose(result[k], window - window.mean(), atol=1e-5)
    assert patches(samples[:8000], CONFIG).shape == (0, 100, 40)


@pytest.mark.parametrize("n_samples", [0, 399, 400, 15999, 16239, 16240, 24240, 24241])
def test_patch_count_is_how_many_patches_are_cut(n_samples: int) -> None:
    """patch_count() says how many patches patches() returns, without computing them."""
    samples = np.zeros(n_samples, np.float32)
    assert patch_count(n_samples, CONFIG) == patches(samples, CONFIG).shape[0]


def test_assembler_reset_drops_frames() -> None:
    """After reset a patch needs patch_frames new frames."""
    assembler = PatchAssembler(CONFIG)
    assert assembler.push(np.zeros((99, 40), np.float32)) == []
    assembler.reset()
    assert assembler.push(np.zeros((99, 40), np.float32)) == []
    assert len(assembler.push(np.zeros((1, 40), np.float32))) == 1


def test_normalize_patch_modes() -> None:
    """patch_mean removes the mean of the whole patch; none leaves values alone."""
    patch = np.arange(12, dtype=np.float32).reshape(3, 4) - 20.0
    centred = normalize_patch(patch, CONFIG)
    assert centred.dtype == np.float32
    assert float(centred.mean()) == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(centred, patch + 14.5)
    np.testing.assert_array_equal(
        normalize_patch(patch, replace(CONFIG, normalization="none")), patch
    )


# --- invariances -----------------------------------------------------------------------------


def test_8k_sourced_cry_gives_nearly_the_same_patches() -> None:
    """A cry-like sweep through 8 kHz and back is nearly unchanged below 3.8 kHz."""
    cry = cry_like(3.0, np.random.default_rng(2))
    direct, narrow = patches(cry, CONFIG), patches(via_8k(cry), CONFIG)
    difference = np.abs(direct - narrow)
    assert difference.mean() < 0.05  # natural-log units; patch values spread over ~15
    # the bands that hold the cry (< 3.4 kHz) are practically identical
    assert np.percentile(difference[:, :, :37], 99) < 0.05


def test_band_limiting_is_what_makes_8k_and_16k_agree() -> None:
    """Wideband noise through 8 kHz: small change with fmax 3800, large with fmax 8000."""
    noise = np.random.default_rng(4).standard_normal(3 * SR) * 0.1
    narrow_noise = via_8k(noise)
    wideband = replace(CONFIG, fmax_hz=8000.0)
    limited_error = np.abs(
        patches(noise, CONFIG) - patches(narrow_noise, CONFIG)
    ).mean()
    wideband_error = np.abs(
        patches(noise, wideband) - patches(narrow_noise, wideband)
    ).mean()
    assert limited_error < 0.05
    assert wideband_error > 2.0
    assert wideband_error > 50 * limited_error


@pytest.mark.parametrize(
    ("gain_db", "peak", "noise_rms"),
    [(45.0, 0.004, 2e-4), (-45.0, 0.5, 0.02)],
)
def test_normalised_patches_are_gain_invariant(
    gain_db: float, peak: float, noise_rms: float
) -> None:
    """A 45 dB louder or quieter recording gives the same normalised patches."""
    recording = cry_like(2.0, np.random.default_rng(6), peak=peak)
    recording += (
        np.random.default_rng(8).standard_normal(recording.size) * noise_rms
    )  # room noise
    gain = 10.0 ** (gain_db / 20.0)
    scaled = recording * gain
    assert np.abs(scaled).max() < 1.0  # no clipping
    quietest = min(log_mel(scaled, CONFIG).min(), log_mel(recording, CONFIG).min())
    assert quietest > np.log(1e-10 * 100)  # every cell at least 100x above the floor
    np.testing.assert_allclose(
        patches(scaled, CONFIG), patches(recording, CONFIG), atol=0.02
    )
    # the raw log-mel shifts by 2 ln(gain) = 10.4: the mean removal is what cancels it
    raw_shift = log_mel(scaled, CONFIG) - log_mel(recording, CONFIG)
    assert float(np.median(raw_shift)) == pytest.approx(2 * np.log(gain), abs=0.01)


# --- levels -----------------------------------------------------------------------------------


def test_dbfs_reference_levels() -> None:
    """Full-scale sine -3.01 dBFS, full-scale square 0, -20 dB sine -23.01, silence the floor."""
    assert dbfs(sine(1000.0, 1.0, 1.0)) == pytest.approx(-3.0103, abs=1e-3)
    assert dbfs(sine(1000.0, 0.1, 1.0)) == pytest.approx(-23.0103, abs=1e-3)
    assert dbfs(np.sign(sine(250.0, 1.0, 1.0) + 1e-9)) == pytest.approx(0.0, abs=1e-6)
    int_sine = np.round(sine(1000.0, 32767.0, 1.0)).astype(np.int16)
    assert dbfs(int_sine) == pytest.approx(-3.0106, abs=1e-3)
    assert dbfs(np.zeros(1600, np.int16)) == DBFS_FLOOR == -120.0
    assert dbfs(np.zeros(0, np.float32)) == DBFS_FLOOR
    assert dbfs(np.full(100, 1e-9)) == DBFS_FLOOR  # -180 dB clamps to the floor


# --- config -----------------------------------------------------------------------------------


def test_config_defaults_and_derived_times() -> None:
    """Defaults follow the feature table: 10 ms hop, 1 s patches every 0.5 s."""
    assert CONFIG.to_dict() == {
        "type": "log_mel",
        "sample_rate": 16000,
        "window_length": 400,
        "hop_length": 160,
        "fft_length": 512,
        "mel_bands": 40,
        "fmin_hz": 60.0,
        "fmax_hz": 3800.0,
        "log_floor": 1e-10,
        "patch_frames": 100,
        "patch_hop_frames": 50,
        "normalization": "patch_mean",
    }
    assert CONFIG.hop_seconds == pytest.approx(0.01)
    assert CONFIG.patch_seconds == pytest.approx(1.0)
    assert CONFIG.patch_hop_seconds == pytest.approx(0.5)
    assert FeatureConfig.from_dict(CONFIG.to_dict()) == CONFIG
    assert FeatureConfig.from_dict({}) == CONFIG
    assert FeatureConfig.from_dict({"fmin_hz": 50}).fmin_hz == 50.0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("type", "mfcc"),
        ("type", 3),
        ("sample_rate", 0),
        ("sample_rate", 16000.0),
        ("sample_rate", True),
        ("window_length", 1024),
        ("hop_length", 0),
        ("hop_length", 401),
        ("fft_length", "512"),
        ("mel_bands", 0),
        ("mel_bands", 200),
        ("fmin_hz", -1.0),
        ("fmax_hz", 9000.0),
        ("fmax_hz", 50.0),
        ("fmax_hz", float("nan")),
        ("log_floor", 0.0),
        ("patch_frames", 0),
        ("patch_hop_frames", 101),
        ("normalization", "per_band"),
        ("normalization", None),
    ],
)
def test_config_rejects_bad_values_naming_the_field(field: str, value: object) -> None:
    """from_dict and the constructor both raise ModelCardError naming the field."""
    with pytest.raises(ModelCardError, match=rf"features\.{field}\b") as caught:
        FeatureConfig.from_dict({field: value})
    assert caught.value.reason == "invalid_card"
    with pytest.raises(ModelCardError, match=rf"features\.{field}\b"):
        FeatureConfig(**{field: value})  # type: ignore[arg-type]


def test_config_rejects_unknown_keys_and_non_objects() -> None:
    """Typos and non-objects fail clearly."""
    with pytest.raises(ModelCardError, match="mel_band"):
        FeatureConfig.from_dict({"mel_band": 40})
    with pytest.raises(ModelCardError, match="must be an object"):
        FeatureConfig.from_dict([1, 2])


def test_config_error_for_an_int_too_large_to_print() -> None:
    """Even a 5000-digit integer gives a ModelCardError, not an OverflowError or ValueError."""
    for field in ("sample_rate", "fmax_hz"):
        with pytest.raises(
            ModelCardError, match=rf"features\.{field}.*too large to show"
        ):
            FeatureConfig.from_dict({field: 10**5000})
