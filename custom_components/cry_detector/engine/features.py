"""Log-mel features: batch and streaming front end, patches, normalisation and levels."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from functools import lru_cache
import math
from typing import Any, TypeGuard

import numpy as np
from numpy.lib.stride_tricks import as_strided, sliding_window_view
import numpy.typing as npt

from .errors import ModelCardError

FloatArray = npt.NDArray[np.float32]

FEATURE_TYPES = ("log_mel",)
NORMALIZATIONS = ("patch_mean", "none")
DBFS_FLOOR = -120.0
INT16_SCALE = 1.0 / 32768.0


def _hz_to_mel(hz: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Convert Hz to HTK mel."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def _mel_to_hz(mel: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Convert HTK mel to Hz."""
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def short_repr(value: object, limit: int = 80) -> str:
    """Return a repr short enough for an error message (safe for huge ints)."""
    try:
        text = repr(value)
    except ValueError:  # int too large for str()
        text = f"<{type(value).__name__} too large to show>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_finite_number(value: object) -> TypeGuard[int | float]:
    """Return whether value is an int or float (bool excluded) that is finite as a float."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # int beyond float range
        return False


def _fail(name: str, requirement: str, value: object) -> ModelCardError:
    """Build the error for one bad feature field."""
    return ModelCardError(
        f"features.{name} must be {requirement}, got {short_repr(value)}"
    )


def _check_int(name: str, value: object, low: int, high: int) -> None:
    """Require an int (not bool) in [low, high]."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not low <= value <= high
    ):
        raise _fail(name, f"an integer in [{low}, {high}]", value)


def _check_float(name: str, value: object, low: float, high: float) -> None:
    """Require a finite number (not bool) in [low, high]."""
    if not is_finite_number(value) or not low <= value <= high:
        raise _fail(name, f"a number in [{low:g}, {high:g}]", value)


@dataclass(frozen=True)
class FeatureConfig:
    """Feature parameters shared by training and inference (the card's `features`)."""

    type: str = "log_mel"
    sample_rate: int = 16000
    window_length: int = 400
    hop_length: int = 160
    fft_length: int = 512
    mel_bands: int = 40
    fmin_hz: float = 60.0
    fmax_hz: float = 3800.0
    log_floor: float = 1e-10
    patch_frames: int = 100
    patch_hop_frames: int = 50
    normalization: str = "patch_mean"

    def __post_init__(self) -> None:
        """Validate types and ranges; raise ModelCardError naming the field."""
        if self.type not in FEATURE_TYPES:
            raise _fail("type", f"one of {list(FEATURE_TYPES)}", self.type)
        _check_int("sample_rate", self.sample_rate, 1000, 384000)
        _check_int("fft_length", self.fft_length, 16, 65536)
        _check_int("window_length", self.window_length, 16, self.fft_length)
        _check_int("hop_length", self.hop_length, 1, self.window_length)
        _check_int("mel_bands", self.mel_bands, 1, 512)
        _check_float("fmin_hz", self.fmin_hz, 0.0, self.sample_rate / 2)
        _check_float("fmax_hz", self.fmax_hz, 0.0, self.sample_rate / 2)
        if self.fmax_hz <= self.fmin_hz:
            raise _fail(
                "fmax_hz", f"greater than fmin_hz ({self.fmin_hz:g})", self.fmax_hz
            )
        _check_float("log_floor", self.log_floor, 1e-30, 1.0)
        _check_int("patch_frames", self.patch_frames, 1, 100000)
        _check_int("patch_hop_frames", self.patch_hop_frames, 1, self.patch_frames)
        if self.normalization not in NORMALIZATIONS:
            raise _fail(
                "normalization", f"one of {list(NORMALIZATIONS)}", self.normalization
            )
        empty = np.flatnonzero(_mel_filterbank(self).sum(axis=1) == 0)
        if empty.size:
            raise _fail(
                "mel_bands",
                f"small enough that every band covers an FFT bin (band {int(empty[0])} is empty)",
                self.mel_bands,
            )

    @property
    def hop_seconds(self) -> float:
        """Seconds between frames."""
        return self.hop_length / self.sample_rate

    @property
    def patch_seconds(self) -> float:
        """Seconds of audio one patch spans (its frames' hops)."""
        return self.patch_frames * self.hop_seconds

    @property
    def patch_hop_seconds(self) -> float:
        """Seconds between consecutive patches (the interval each patch represents)."""
        return self.patch_hop_frames * self.hop_seconds

    @property
    def patch_samples(self) -> int:
        """Samples one patch is computed from."""
        return (self.patch_frames - 1) * self.hop_length + self.window_length

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready card `features` object."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> FeatureConfig:
        """Build from a card `features` object; missing keys take defaults, unknown keys fail."""
        if not isinstance(data, dict):
            raise ModelCardError(
                f"features must be an object, got {type(data).__name__}"
            )
        known = {field.name for field in fields(cls)}
        unknown = sorted(str(key) for key in data if key not in known)
        if unknown:
            raise ModelCardError(f"features has unknown field(s) {unknown}")
        for name in ("type", "normalization"):
            if name in data and not isinstance(data[name], str):
                raise _fail(name, "a string", data[name])
        values = dict(data)
        for name in ("fmin_hz", "fmax_hz", "log_floor"):
            if isinstance(values.get(name), int) and is_finite_number(values[name]):
                values[name] = float(values[name])
        try:
            return cls(**values)
        except TypeError as err:  # comparisons of odd types inside validation
            raise ModelCardError(f"features: {err}") from err


@lru_cache(maxsize=16)
def _mel_filterbank(config: FeatureConfig) -> npt.NDArray[np.float64]:
    """Return triangular HTK mel filters, shape (mel_bands, fft_length // 2 + 1)."""
    edges_hz = _mel_to_hz(
        np.linspace(
            _hz_to_mel(config.fmin_hz), _hz_to_mel(config.fmax_hz), config.mel_bands + 2
        )
    )
    bins_hz = (
        np.arange(config.fft_length // 2 + 1) * config.sample_rate / config.fft_length
    )
    lower, centre, upper = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    rising = (bins_hz - lower) / (centre - lower)
    falling = (upper - bins_hz) / (upper - centre)
    filters: npt.NDArray[np.float64] = np.maximum(0.0, np.minimum(rising, falling))
    filters.setflags(write=False)
    return filters


def mel_filterbank(config: FeatureConfig) -> npt.NDArray[np.float64]:
    """Return the (cached, read-only) mel filterbank for a config."""
    return _mel_filterbank(config)


@lru_cache(maxsize=16)
def _mel_weights(config: FeatureConfig) -> tuple[int, int, npt.NDArray[np.float64]]:
    """Return (first bin, end bin, contiguous (bins, mel_bands) weights) of the non-zero bins.

    Only about half of the FFT bins fall inside fmin..fmax: squaring and multiplying just those
    gives the same sums (the others are exact zeros) at half the cost.
    """
    filters = _mel_filterbank(config)
    used = np.flatnonzero(filters.any(axis=0))
    first, end = (int(used[0]), int(used[-1]) + 1) if used.size else (0, 1)
    weights = np.ascontiguousarray(filters[:, first:end].T)
    weights.setflags(write=False)
    return first, end, weights


@lru_cache(maxsize=16)
def _hann(window_length: int) -> npt.NDArray[np.float64]:
    """Return a periodic Hann window."""
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(window_length) / window_length)
    window.setflags(write=False)
    return window


def to_float(samples: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Return mono samples as float64 in [-1, 1): int16 is scaled by 1/32768."""
    array = np.asarray(samples)
    if array.ndim != 1:
        raise ValueError(f"expected 1-D mono samples, got shape {array.shape}")
    if array.dtype == np.int16:
        return array.astype(np.float64) * INT16_SCALE
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float64, copy=False)
    raise TypeError(f"expected int16 or float samples, got {array.dtype}")


# Frames transformed at once: small enough that every buffer stays in the CPU cache and is
# reused (fresh multi-megabyte arrays cost more in page faults than the FFT itself).
BLOCK_FRAMES = 64


class _LogMelKernel:
    """Turns (n, window_length) sample frames into (n, mel_bands) log-mel rows, block by block."""

    def __init__(self, config: FeatureConfig) -> None:
        """Allocate the block buffers once."""
        self.config = config
        self.first, self.end, self.weights = _mel_weights(config)
        self.window = _hann(config.window_length)
        # The window is written straight into the zero-padded FFT buffer (window <= fft).
        self.padded = np.zeros((BLOCK_FRAMES, config.fft_length))
        self.spectrum = np.empty(
            (BLOCK_FRAMES, config.fft_length // 2 + 1), dtype=np.complex128
        )
        self.power = np.empty((BLOCK_FRAMES, self.end - self.first))
        self.mel = np.empty((BLOCK_FRAMES, config.mel_bands))

    def rows(self, frames: npt.NDArray[np.float64]) -> FloatArray:
        """Return the log-mel rows of every frame."""
        rows = np.empty((frames.shape[0], self.config.mel_bands), dtype=np.float32)
        for start in range(0, frames.shape[0], BLOCK_FRAMES):
            block = frames[start : start + BLOCK_FRAMES]
            self._block(block, rows[start : start + block.shape[0]])
        return rows

    def _block(self, frames: npt.NDArray[np.float64], out: FloatArray) -> None:
        """Write the log-mel rows of up to BLOCK_FRAMES frames into out."""
        count = frames.shape[0]
        padded, power, mel = self.padded[:count], self.power[:count], self.mel[:count]
        np.multiply(frames, self.window, out=padded[:, : self.config.window_length])
        spectrum = np.fft.rfft(padded, out=self.spectrum[:count])
        used = spectrum[:, self.first : self.end]  # only bins inside fmin..fmax
        np.multiply(used.real, used.real, out=power)
        power += used.imag * used.imag
        np.matmul(power, self.weights, out=mel)
        mel += self.config.log_floor
        np.log(mel, out=out)


def _frame_count(n_samples: int, config: FeatureConfig) -> int:
    """Return how many complete frames n_samples hold."""
    if n_samples < config.window_length:
        return 0
    return (n_samples - config.window_length) // config.hop_length + 1


def _log_mel_float(
    samples: npt.NDArray[np.float64], kernel: _LogMelKernel
) -> FloatArray:
    """Return log-mel rows of every complete frame of float samples."""
    config = kernel.config
    count = _frame_count(samples.shape[0], config)
    if count == 0:
        return np.zeros((0, config.mel_bands), dtype=np.float32)
    samples = np.ascontiguousarray(samples)
    step = samples.strides[0]
    # as_strided directly: sliding_window_view's checks cost more than a block's FFT.
    frames = as_strided(
        samples,
        shape=(count, config.window_length),
        strides=(step * config.hop_length, step),
        writeable=False,
    )
    return kernel.rows(frames)


def log_mel(samples: npt.ArrayLike, config: FeatureConfig) -> FloatArray:
    """Return (frames, mel_bands) float32 log-mel features of int16 or float [-1, 1) audio."""
    return _log_mel_float(to_float(samples), _LogMelKernel(config))


class LogMelFrontend:
    """Streaming twin of log_mel: any chunking gives the batch frames."""

    def __init__(self, config: FeatureConfig) -> None:
        """Start with no buffered samples."""
        self.config = config
        self._kernel = _LogMelKernel(config)
        # Chunks not yet turned into frames, joined only when frames are due.
        self._pending: list[npt.NDArray[np.float64]] = []
        self._pending_samples = 0

    def process(self, samples: npt.ArrayLike, min_frames: int = 1) -> FloatArray:
        """Append samples; return the log-mel rows of every frame now complete.

        With min_frames > 1, fewer complete frames stay buffered (no rows returned) until
        min_frames are ready: one computation per patch hop instead of one per 0.1 s chunk
        costs far less Python overhead and gives the same rows.
        """
        chunk = to_float(samples)
        if chunk.size:
            # to_float may return the caller's own float64 array: keep a copy of it.
            self._pending.append(chunk.copy() if chunk is samples else chunk)
            self._pending_samples += chunk.shape[0]
        count = _frame_count(self._pending_samples, self.config)
        if count < max(1, min_frames):
            return np.zeros((0, self.config.mel_bands), dtype=np.float32)
        buffered = np.concatenate(self._pending)
        rows = _log_mel_float(buffered, self._kernel)
        tail = buffered[count * self.config.hop_length :]
        self._pending, self._pending_samples = [tail], tail.shape[0]
        return rows

    def reset(self) -> None:
        """Forget buffered samples (after a gap in the audio)."""
        self._pending, self._pending_samples = [], 0

    @property
    def buffered_samples(self) -> int:
        """Samples held back until the next frame is complete."""
        return self._pending_samples


def normalize_patch(patch: npt.ArrayLike, config: FeatureConfig) -> FloatArray:
    """Return the patch normalised as the config says, as float32."""
    values = np.asarray(patch, dtype=np.float32)
    if config.normalization == "patch_mean":
        mean = float(values.mean(dtype=np.float64))
        return (values - mean).astype(np.float32)
    return values.copy()


class PatchAssembler:
    """Collect frames into normalised (patch_frames, mel_bands) model patches."""

    def __init__(self, config: FeatureConfig) -> None:
        """Start with no buffered frames."""
        self.config = config
        self._frames = np.zeros((0, config.mel_bands), dtype=np.float32)

    def push(self, frames: npt.ArrayLike) -> list[FloatArray]:
        """Append frames; return every patch now complete, oldest first."""
        rows = np.asarray(frames, dtype=np.float32).reshape(-1, self.config.mel_bands)
        if rows.shape[0] == 0:
            return []
        buffered = np.concatenate((self._frames, rows)) if self._frames.size else rows
        size, step = self.config.patch_frames, self.config.patch_hop_frames
        count = (
            0 if buffered.shape[0] < size else (buffered.shape[0] - size) // step + 1
        )
        result = [
            normalize_patch(buffered[k * step : k * step + size], self.config)
            for k in range(count)
        ]
        self._frames = buffered[count * step :].copy()
        return result

    def reset(self) -> None:
        """Forget buffered frames."""
        self._frames = np.zeros((0, self.config.mel_bands), dtype=np.float32)

    @property
    def buffered_frames(self) -> int:
        """Frames held back until the next patch is complete."""
        return int(self._frames.shape[0])

    @property
    def frames_wanted(self) -> int:
        """Frames still missing before the next patch is complete."""
        return max(1, self.config.patch_frames - self.buffered_frames)


class PatchStream:
    """Samples in, normalised patches out, as the pipeline runs the front end.

    Frames are computed only once the assembler's next patch is due (one computation per patch
    hop, not per chunk); any chunking gives the batch `patches()`.
    """

    def __init__(self, config: FeatureConfig) -> None:
        """Start with nothing buffered."""
        self.frontend = LogMelFrontend(config)
        self.assembler = PatchAssembler(config)

    def push(self, samples: npt.ArrayLike) -> list[FloatArray]:
        """Append samples; return every patch now complete, oldest first."""
        rows = self.frontend.process(samples, self.assembler.frames_wanted)
        return self.assembler.push(rows)

    def reset(self) -> None:
        """Forget buffered samples and frames (after a gap in the audio)."""
        self.frontend.reset()
        self.assembler.reset()


def patch_count(n_samples: int, config: FeatureConfig) -> int:
    """Return how many patches patches() cuts from n_samples of audio."""
    frames = _frame_count(n_samples, config)
    if frames < config.patch_frames:
        return 0
    return (frames - config.patch_frames) // config.patch_hop_frames + 1


def patches(samples: npt.ArrayLike, config: FeatureConfig) -> FloatArray:
    """Return (n, patch_frames, mel_bands) normalised patches of a whole recording."""
    frames = log_mel(samples, config)
    size, step = config.patch_frames, config.patch_hop_frames
    if frames.shape[0] < size:
        return np.zeros((0, size, config.mel_bands), dtype=np.float32)
    windows = sliding_window_view(frames, size, axis=0)[::step]  # (n, bands, size)
    return np.stack([normalize_patch(window.T, config) for window in windows])


def dbfs(samples: npt.ArrayLike) -> float:
    """Return the RMS level in dBFS (full-scale square = 0, sine = -3.01), floor -120."""
    values = to_float(samples)
    if values.size == 0:
        return DBFS_FLOOR
    mean_square = float(np.mean(values * values))
    if mean_square <= 0.0:
        return DBFS_FLOOR
    return max(DBFS_FLOOR, 10.0 * math.log10(mean_square))
