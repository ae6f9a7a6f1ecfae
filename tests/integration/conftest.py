"""Fixtures for tests that run the integration inside a real Home Assistant.

Audio is real: synthesised WAV files read by the engine's FileSource (or played by the fake
sound card), run through the real pipeline and a real .tflite model whose crying probability
rises with energy in the 300-600 Hz cry band.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Generator
from pathlib import Path
import sys
from typing import Any

from aiohttp import web
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
import numpy as np
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.syrupy import HomeAssistantSnapshotExtension
from syrupy.assertion import SnapshotAssertion

from custom_components.cry_detector.const import (
    CONF_COOLDOWN_SECONDS,
    CONF_HOLD_SECONDS,
    CONF_LOOP,
    CONF_MIN_CRY_SECONDS,
    CONF_MODEL_PATH,
    CONF_PATH,
    CONF_REALTIME,
    CONF_SENSITIVITY,
    CONF_SOURCE_TYPE,
    DOMAIN,
    SourceType,
)
from tests.engine.audio import cry_bout, room_tone, to_int16, write_audio

from .fake_sounddevice import FakeSoundCard, install

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MODELS = FIXTURES / "models"
CRY_MODEL = MODELS / "energy_cry.tflite"
RATE = 16000

# A 30 s recording: quiet room, a 10 s cry bout from 8 s to 18 s, quiet room again.
CRY_START, CRY_END, RECORDING_SECONDS = 8.0, 18.0, 30.0

OPTIONS: dict[str, Any] = {
    CONF_SENSITIVITY: 50,
    CONF_MIN_CRY_SECONDS: 2.0,
    CONF_HOLD_SECONDS: 4.0,
    CONF_COOLDOWN_SECONDS: 0.0,
}


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Let Home Assistant load custom_components/ in every integration test."""


@pytest.fixture
def snapshot(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    """Snapshots in Home Assistant's format, stored in snapshots/."""
    return snapshot.use_extension(HomeAssistantSnapshotExtension)


@pytest.fixture(autouse=True)
def no_portaudio() -> Generator[None]:
    """Make sure no test sees a sound card unless it asks for the fake one."""
    saved = sys.modules.pop("sounddevice", None)
    yield
    sys.modules.pop("sounddevice", None)
    if saved is not None:
        sys.modules["sounddevice"] = saved


@pytest.fixture
def sound_card() -> FakeSoundCard:
    """A fake sound card whose microphone hears a looping cry recording."""
    card = FakeSoundCard(audio=to_int16(recording()))
    install(card)
    return card


@pytest.fixture(autouse=True)
def allow_test_paths(hass: HomeAssistant, tmp_path: Path) -> None:
    """Let the integration read the fixture models and the test's files."""
    hass.config.allowlist_external_dirs = {str(MODELS), str(tmp_path)}


def recording(
    seconds: float = RECORDING_SECONDS,
    cries: tuple[tuple[float, float], ...] = ((CRY_START, CRY_END),),
) -> np.ndarray:
    """Quiet room tone with cry bouts at the given times."""
    track = room_tone(seconds, RATE, level_dbfs=-50.0)
    for number, (start, end) in enumerate(cries):
        begin = round(start * RATE)
        bout = cry_bout(end - start, RATE, level_dbfs=-18.0, seed=number)
        track[begin : begin + bout.shape[0]] += bout
    return track


@pytest.fixture
def cry_wav(tmp_path: Path) -> Path:
    """The standard recording as a WAV file."""
    return write_audio(tmp_path / "nursery.wav", recording())


@pytest.fixture
def silent_wav(tmp_path: Path) -> Path:
    """A file of digital silence."""
    return write_audio(tmp_path / "silence.wav", np.zeros(2 * RATE, dtype=np.int16))


def file_data(
    path: Path, *, realtime: bool = False, loop: bool = False
) -> dict[str, Any]:
    """Entry data for the hidden file source with the cry model."""
    return {
        CONF_SOURCE_TYPE: SourceType.FILE.value,
        CONF_PATH: str(path),
        CONF_LOOP: loop,
        CONF_REALTIME: realtime,
        CONF_MODEL_PATH: str(CRY_MODEL),
    }


@pytest.fixture
def mock_config_entry(cry_wav: Path) -> MockConfigEntry:
    """An entry that plays the recording once, as fast as the pipeline runs."""
    return MockConfigEntry(
        domain=DOMAIN,
        title="Nursery",
        entry_id="01KCRYDETECT0RTESTENTRY000",
        unique_id=f"file:{cry_wav}",
        data=file_data(cry_wav),
        options=dict(OPTIONS),
    )


async def setup_entry(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    """Set up an entry and wait until a finite source has been played to its end."""
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    await wait_for_listener(entry)


def state_of(entry: MockConfigEntry) -> ConfigEntryState:
    """Return an entry's state (a call, so type checkers do not narrow it across awaits)."""
    state: ConfigEntryState = entry.state
    return state


async def wait_for_listener(entry: MockConfigEntry) -> None:
    """Wait for the entry's background task to end (a file source played to its end)."""
    task = entry.runtime_data.listener.task
    if task is not None:
        await asyncio.wait_for(asyncio.shield(task), 60)


@pytest.fixture
async def init_integration(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry
) -> MockConfigEntry:
    """The standard entry, set up and with its recording processed."""
    await setup_entry(hass, mock_config_entry)
    return mock_config_entry


@pytest.fixture
async def wav_server(socket_enabled: None, tmp_path: Path) -> AsyncGenerator[str]:
    """A local HTTP server that serves the cry recording; yields its base URL."""
    write_audio(tmp_path / "stream.wav", recording())
    app = web.Application()
    app.router.add_static("/", tmp_path)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"127.0.0.1:{port}"
    await runner.cleanup()
