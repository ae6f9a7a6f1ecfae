"""Sources deliver the model's sample rate (the bundled model listens at 8 kHz)."""

from __future__ import annotations

import json
from pathlib import Path
import shutil

from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.cry_detector.const import (
    CONF_DEVICE,
    CONF_INPUT,
    CONF_MODEL_PATH,
    CONF_PATH,
    CONF_SOURCE_TYPE,
    DOMAIN,
    SourceType,
)
from custom_components.cry_detector.engine.backends import load_model
from custom_components.cry_detector.helpers import async_create_source, async_probe

from .conftest import CRY_MODEL, OPTIONS, file_data, setup_entry
from .fake_sounddevice import FakeSoundCard

EPISODES = "sensor.nursery_cry_episodes_today"
RATE_8K = {
    "sample_rate": 8000,
    "window_length": 200,
    "hop_length": 80,
    "fft_length": 256,
}


@pytest.fixture
def model_8k(tmp_path: Path) -> Path:
    """The cry-band energy model with an 8 kHz card (same 25 ms / 10 ms / mel grid)."""
    model = shutil.copy(CRY_MODEL, tmp_path / "energy_8k.tflite")
    card = json.loads(CRY_MODEL.with_suffix(".json").read_text(encoding="utf-8"))
    card["features"].update(RATE_8K)
    (tmp_path / "energy_8k.json").write_text(json.dumps(card), encoding="utf-8")
    return Path(model)


@pytest.mark.parametrize(
    "data",
    [
        {CONF_SOURCE_TYPE: SourceType.PULSE.value},
        {CONF_SOURCE_TYPE: SourceType.FFMPEG.value, CONF_INPUT: "rtsp://cam/stream"},
        {CONF_SOURCE_TYPE: SourceType.FFMPEG.value, CONF_INPUT: "hw:1,0"},
        {CONF_SOURCE_TYPE: SourceType.FILE.value, CONF_PATH: "/tmp/x.wav"},
    ],
)
async def test_every_source_is_built_at_the_requested_rate(
    hass: HomeAssistant, data: dict[str, str]
) -> None:
    for rate in (8000, 16000):
        source = await async_create_source(hass, data, rate)
        assert source.sample_rate == rate


async def test_the_microphone_is_resampled_to_the_model_rate(
    hass: HomeAssistant, sound_card: FakeSoundCard
) -> None:
    data = {CONF_SOURCE_TYPE: SourceType.MICROPHONE.value, CONF_DEVICE: "USB Baby Mic"}
    source = await async_create_source(hass, data, 8000)
    assert source.sample_rate == 8000
    await source.open()
    try:
        chunk = await source.read()
    finally:
        await source.close()
    assert chunk is not None and chunk.samples.shape[0] == 800  # 0.1 s at 8 kHz


async def test_an_8_khz_model_hears_the_cry_in_a_16_khz_file(
    hass: HomeAssistant, cry_wav: Path, model_8k: Path
) -> None:
    """The file is resampled for the model: before, the pipeline refused the 16 kHz source."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        title="Nursery",
        unique_id=f"file:{cry_wav}",
        data={**file_data(cry_wav), CONF_MODEL_PATH: str(model_8k)},
        options=dict(OPTIONS),
    )
    await setup_entry(hass, entry)
    assert entry.runtime_data.card.features.sample_rate == 8000
    assert hass.states.get(EPISODES).state == "1"


async def test_the_config_flow_probe_reads_at_the_model_rate(
    hass: HomeAssistant, cry_wav: Path, model_8k: Path
) -> None:
    card, backend = load_model(model_8k)
    try:
        probability = await async_probe(hass, file_data(cry_wav), card, backend)
    finally:
        backend.close()
    assert 0.0 <= probability <= 1.0
