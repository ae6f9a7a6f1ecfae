"""Shared by the config flow and setup: sources from entry data, model loading, the probe."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
import dataclasses
import hashlib
import importlib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from homeassistant.core import HomeAssistant
from homeassistant.util import dt as dt_util
import numpy as np

from .backend_install import async_get_backend
from .const import (
    CONF_COOLDOWN_SECONDS,
    CONF_DEVICE,
    CONF_HOLD_SECONDS,
    CONF_INPUT,
    CONF_LOOP,
    CONF_MIN_CRY_SECONDS,
    CONF_MODEL_PATH,
    CONF_PATH,
    CONF_REALTIME,
    CONF_SENSITIVITY,
    CONF_SOURCE_TYPE,
    DEFAULT_MODEL,
    PROBE_SECONDS,
    PROBE_TIMEOUT,
    SourceType,
)
from .engine.backends import Backend, load_model
from .engine.card import ModelCard
from .engine.errors import CryDetectorError, NoAudioError, SourceError, redact_url
from .engine.features import patches
from .engine.sources import AudioSource, InputDevice
from .engine.sources.ffmpeg import FfmpegSource
from .engine.sources.file import FileSource
from .engine.tracker import TrackerConfig


class PathNotAllowedError(CryDetectorError):
    """A custom model path outside Home Assistant's allowlist."""

    reason = "path_not_allowed"


def model_path(data: Mapping[str, Any]) -> Path:
    """Return the model an entry uses: its custom path or the bundled default."""
    return Path(data.get(CONF_MODEL_PATH) or DEFAULT_MODEL)


def is_url(ffmpeg_input: str) -> bool:
    """Whether an FFmpeg input is a stream URL (else an ALSA device)."""
    return "://" in ffmpeg_input


def strip_credentials(url: str) -> str:
    """Return a URL without user info and with secret query values removed."""
    parts = urlsplit(redact_url(url))
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=host).geturl()


def source_unique_id(data: Mapping[str, Any]) -> str:
    """Return the unique id of an entry's audio source (one entry per source)."""
    source_type = SourceType(data[CONF_SOURCE_TYPE])
    if source_type is SourceType.MICROPHONE:
        return f"mic:{data[CONF_DEVICE]}"
    if source_type is SourceType.PULSE:
        return "pulse:default"
    if source_type is SourceType.FILE:
        return f"file:{data[CONF_PATH]}"
    ffmpeg_input: str = data[CONF_INPUT]
    if is_url(ffmpeg_input):
        digest = hashlib.sha256(strip_credentials(ffmpeg_input).encode()).hexdigest()
        return f"url:{digest[:16]}"
    return f"alsa:{ffmpeg_input}"


def describe_source(data: Mapping[str, Any]) -> str:
    """Return a short, credential-free description of an entry's source."""
    source_type = SourceType(data[CONF_SOURCE_TYPE])
    if source_type is SourceType.MICROPHONE:
        return str(data[CONF_DEVICE])
    if source_type is SourceType.PULSE:
        return "PulseAudio default input"
    if source_type is SourceType.FILE:
        return Path(data[CONF_PATH]).name
    return strip_credentials(data[CONF_INPUT])


def _sounddevice_module() -> Any:
    """Import the engine's PortAudio source module (imports sounddevice: run in an executor)."""
    return importlib.import_module(".engine.sources.sounddevice", __package__)


async def async_list_input_devices(hass: HomeAssistant) -> list[InputDevice]:
    """Return the PortAudio capture devices; PortAudioMissingError without PortAudio."""
    module = await hass.async_add_executor_job(_sounddevice_module)
    devices: list[InputDevice] = await hass.async_add_executor_job(
        module.list_input_devices
    )
    return devices


async def async_create_source(
    hass: HomeAssistant, data: Mapping[str, Any], sample_rate: int
) -> AudioSource:
    """Build (not open) the audio source an entry describes, delivering the model's rate."""
    source_type = SourceType(data[CONF_SOURCE_TYPE])
    if source_type is SourceType.MICROPHONE:
        module = await hass.async_add_executor_job(_sounddevice_module)
        source: AudioSource = module.SoundDeviceSource(
            data[CONF_DEVICE], sample_rate=sample_rate
        )
        return source
    if source_type is SourceType.PULSE:
        return FfmpegSource.for_pulse(sample_rate=sample_rate)
    if source_type is SourceType.FILE:
        return FileSource(
            data[CONF_PATH],
            sample_rate=sample_rate,
            realtime=data.get(CONF_REALTIME, False),
            loop=data.get(CONF_LOOP, False),
            start_time=dt_util.utcnow().timestamp(),
        )
    ffmpeg_input: str = data[CONF_INPUT]
    if is_url(ffmpeg_input):
        return FfmpegSource.for_url(ffmpeg_input, sample_rate=sample_rate)
    return FfmpegSource.for_alsa(ffmpeg_input, sample_rate=sample_rate)


def _load_model(path: Path, backend: str) -> tuple[ModelCard, Backend]:
    """Load a model and its card (blocking: file I/O and interpreter setup)."""
    return load_model(path, preferred=backend)


async def async_load_model(
    hass: HomeAssistant, path: Path
) -> tuple[ModelCard, Backend]:
    """Load a model with the best backend, in an executor."""
    backend = await async_get_backend(hass)
    return await hass.async_add_executor_job(_load_model, path, backend)


def check_model_path(hass: HomeAssistant, path: Path) -> None:
    """Refuse custom model paths Home Assistant may not read; ModelError if missing."""
    if not hass.config.is_allowed_path(str(path)):
        raise PathNotAllowedError(f"{path} is not in allowlist_external_dirs")


async def async_read_probe(source: AudioSource, seconds: float) -> np.ndarray:
    """Read about `seconds` of audio from an opened source; NoAudioError on silence or end."""
    wanted = round(seconds * source.sample_rate)
    pieces: list[np.ndarray] = []
    count = 0
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            while count < wanted:
                chunk = await source.read()
                if chunk is None:
                    break
                pieces.append(chunk.samples)
                count += chunk.samples.shape[0]
    except TimeoutError as err:
        raise NoAudioError(
            f"{source.description} delivered only {count} samples in {PROBE_TIMEOUT:g} s"
        ) from err
    samples = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int16)
    if not np.any(samples):
        raise NoAudioError(f"{source.description} delivered no audio (only silence)")
    return samples


def infer_once(samples: np.ndarray, card: ModelCard, backend: Backend) -> float:
    """Run the model on the first patch of the samples (padded to a patch); return P(cry)."""
    needed = card.features.patch_samples
    if samples.shape[0] < needed:
        samples = np.pad(samples, (0, needed - samples.shape[0]))
    first = patches(samples, card.features)[0]
    return float(backend.predict(first)[card.positive_index])


async def async_probe(
    hass: HomeAssistant, data: Mapping[str, Any], card: ModelCard, backend: Backend
) -> float:
    """Open the source, read ~1 s, close it and run one inference; return P(cry)."""
    source = await async_create_source(hass, data, card.features.sample_rate)
    try:
        await source.open()
        samples = await async_read_probe(source, PROBE_SECONDS)
    finally:
        await source.close()
    return await hass.async_add_executor_job(infer_once, samples, card, backend)


def tracker_config(card: ModelCard, options: Mapping[str, Any]) -> TrackerConfig:
    """Combine the card's tracker defaults with the entry options."""
    base = card.tracker_config()
    threshold = base.threshold
    if (sensitivity := options.get(CONF_SENSITIVITY)) is not None:
        threshold = 1.0 - float(sensitivity) / 100.0
    return dataclasses.replace(
        base,
        threshold=threshold,
        hysteresis=min(base.hysteresis, threshold / 2.0),
        min_cry_seconds=float(options.get(CONF_MIN_CRY_SECONDS, base.min_cry_seconds)),
        hold_seconds=float(options.get(CONF_HOLD_SECONDS, base.hold_seconds)),
        cooldown_seconds=float(
            options.get(CONF_COOLDOWN_SECONDS, base.cooldown_seconds)
        ),
    )


def default_options(card: ModelCard) -> dict[str, Any]:
    """Return the options a new entry starts with: the card's recommendations."""
    base = card.tracker_config()
    return {
        CONF_SENSITIVITY: round(100.0 * (1.0 - base.threshold)),
        CONF_MIN_CRY_SECONDS: base.min_cry_seconds,
        CONF_HOLD_SECONDS: base.hold_seconds,
        CONF_COOLDOWN_SECONDS: base.cooldown_seconds,
    }


def source_error(err: Exception) -> CryDetectorError:
    """Return engine errors as they are; wrap anything else as a SourceError."""
    if isinstance(err, CryDetectorError):
        return err
    return SourceError(f"audio source failed: {err!r}")
