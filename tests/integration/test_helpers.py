"""Source identities, descriptions, tracker options and the one-shot inference."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from homeassistant.core import HomeAssistant
import numpy as np
import pytest

from custom_components.cry_detector.backend_install import async_get_backend
from custom_components.cry_detector.config_flow import _error_key
from custom_components.cry_detector.const import (
    CONF_COOLDOWN_SECONDS,
    CONF_DEVICE,
    CONF_HOLD_SECONDS,
    CONF_INPUT,
    CONF_MIN_CRY_SECONDS,
    CONF_PATH,
    CONF_SENSITIVITY,
    CONF_SOURCE_TYPE,
)
from custom_components.cry_detector.engine.backends import load_model
from custom_components.cry_detector.engine.errors import (
    CryDetectorError,
    ModelError,
    SourceError,
)
from custom_components.cry_detector.helpers import (
    default_options,
    describe_source,
    infer_once,
    model_path,
    source_unique_id,
    strip_credentials,
    tracker_config,
)
from tests.engine.audio import cry_bout, to_int16

from .conftest import CRY_MODEL


@pytest.mark.parametrize(
    ("data", "unique_id", "description"),
    [
        (
            {CONF_SOURCE_TYPE: "microphone", CONF_DEVICE: "USB Baby Mic"},
            "mic:USB Baby Mic",
            "USB Baby Mic",
        ),
        ({CONF_SOURCE_TYPE: "pulse"}, "pulse:default", "PulseAudio default input"),
        ({CONF_SOURCE_TYPE: "ffmpeg", CONF_INPUT: "hw:1,0"}, "alsa:hw:1,0", "hw:1,0"),
        (
            {CONF_SOURCE_TYPE: "file", CONF_PATH: "/media/night.wav"},
            "file:/media/night.wav",
            "night.wav",
        ),
    ],
)
def test_source_identity(
    data: dict[str, str], unique_id: str, description: str
) -> None:
    """Every source type has a stable unique id and a readable description."""
    assert source_unique_id(data) == unique_id
    assert describe_source(data) == description


def test_stream_identity_ignores_credentials() -> None:
    """A stream's unique id and description never contain its credentials."""
    with_user = {
        CONF_SOURCE_TYPE: "ffmpeg",
        CONF_INPUT: "rtsp://a:b@cam.local/s?token=x",
    }
    other_user = {
        CONF_SOURCE_TYPE: "ffmpeg",
        CONF_INPUT: "rtsp://c:d@cam.local/s?token=y",
    }
    assert source_unique_id(with_user) == source_unique_id(other_user)
    assert source_unique_id(with_user).startswith("url:")
    assert describe_source(with_user) == "rtsp://cam.local/s?token=***"
    assert strip_credentials("http://cam.local/a") == "http://cam.local/a"


def test_model_path_defaults_to_bundled() -> None:
    """No custom model means the bundled one."""
    assert model_path({}).name == "default.tflite"
    assert model_path({"model_path": "/config/m.tflite"}) == Path("/config/m.tflite")


def test_options_map_to_tracker_config() -> None:
    """Sensitivity is 100 * (1 - threshold); hysteresis stays below the threshold."""
    card, backend = load_model(CRY_MODEL)
    backend.close()
    defaults = default_options(card)
    assert tracker_config(card, defaults) == card.tracker_config()
    assert tracker_config(card, {}) == card.tracker_config()
    config = tracker_config(
        card,
        {
            CONF_SENSITIVITY: 99,
            CONF_MIN_CRY_SECONDS: 0.5,
            CONF_HOLD_SECONDS: 1,
            CONF_COOLDOWN_SECONDS: 10,
        },
    )
    assert config.threshold == pytest.approx(0.01)
    assert 0 < config.hysteresis < config.threshold
    assert (config.min_cry_seconds, config.hold_seconds, config.cooldown_seconds) == (
        0.5,
        1.0,
        10.0,
    )


def test_infer_once_pads_short_audio() -> None:
    """Half a second of crying is padded to one model patch and gives a probability."""
    card, backend = load_model(CRY_MODEL)
    try:
        short = to_int16(cry_bout(0.5, 16000, level_dbfs=-18.0))
        probability = infer_once(short, card, backend)
        silence = infer_once(np.zeros(16000 * 2, dtype=np.int16), card, backend)
    finally:
        backend.close()
    assert 0.0 <= probability <= 1.0
    assert 0.0 <= silence <= 1.0


def test_unknown_reasons_fall_back_to_their_family() -> None:
    """A reason without its own message uses the generic one of its error family."""
    assert _error_key(SourceError("x", reason="something_new")) == "source_failed"
    assert _error_key(ModelError("x", reason="something_new")) == "invalid_model"
    assert _error_key(CryDetectorError("x")) == "invalid_model"
    assert _error_key(SourceError("x", reason="no_audio")) == "no_audio"


async def test_backend_is_chosen_once(
    hass: HomeAssistant, caplog: pytest.LogCaptureFixture
) -> None:
    """Concurrent setups decide the backend once (LiteRT here) and log it once."""
    caplog.set_level(logging.INFO, logger="custom_components.cry_detector")
    first, second = await asyncio.gather(
        async_get_backend(hass), async_get_backend(hass)
    )
    assert first == second == "litert"
    assert await async_get_backend(hass) == "litert"
    assert caplog.text.count("runs its models with the litert backend") == 1
