"""Source failures while running: unavailable entities, a repair issue, retries, recovery."""

from __future__ import annotations

import asyncio
from datetime import timedelta
import logging
from pathlib import Path

from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
)

from custom_components.cry_detector.const import DOMAIN
from custom_components.cry_detector.runtime import CryListener
from tests.engine.audio import write_audio

from .conftest import OPTIONS, file_data, recording
from .fake_sounddevice import FakeSoundCard
from .test_entities import CRYING, LISTENING, MINUTES, value


async def wait_until(condition: object, timeout: float = 10.0) -> None:
    """Poll a zero-argument callable until it returns true (real time: audio is real time)."""
    assert callable(condition)
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.05)


async def retry_now(hass: HomeAssistant, listener: CryListener) -> None:
    """Wait until the listener backs off, then fire its retry timer."""
    await wait_until(lambda: listener.next_retry is not None)
    assert listener.next_retry is not None
    due = listener.next_retry
    async_fire_time_changed(hass, due + timedelta(seconds=1))
    await wait_until(lambda: listener.next_retry != due)
    await hass.async_block_till_done()


async def test_lost_source_raises_issue_and_recovers(
    hass: HomeAssistant,
    issue_registry: ir.IssueRegistry,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A source that disappears: unavailable + issue (logged once); back again: all cleared."""
    wav = write_audio(tmp_path / "loop.wav", recording(1.0, ()))
    entry = MockConfigEntry(
        domain=DOMAIN,
        title="Nursery",
        data=file_data(wav, realtime=True, loop=True),
        options=OPTIONS,
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    listener: CryListener = entry.runtime_data.listener
    await wait_until(lambda: listener.stats is not None and listener.stats.windows > 0)
    assert value(hass, CRYING) != STATE_UNAVAILABLE

    caplog.set_level(logging.INFO, logger="custom_components.cry_detector")
    wav.unlink()
    await wait_until(lambda: listener.failure is not None)
    await hass.async_block_till_done()
    assert value(hass, CRYING) == STATE_UNAVAILABLE
    assert value(hass, MINUTES) == STATE_UNAVAILABLE
    assert value(hass, LISTENING) == "on"
    issue = issue_registry.async_get_issue(DOMAIN, listener.issue_id)
    assert issue is not None
    assert issue.translation_key == "source_failed"
    assert issue.severity is ir.IssueSeverity.ERROR

    # Retries keep failing quietly while the file is missing.
    await retry_now(hass, listener)
    await retry_now(hass, listener)
    assert caplog.text.count("is unavailable") == 1

    write_audio(wav, recording(1.0, ()))
    await retry_now(hass, listener)
    await wait_until(lambda: listener.failure is None)
    await hass.async_block_till_done()
    assert issue_registry.async_get_issue(DOMAIN, listener.issue_id) is None
    assert value(hass, MINUTES) == "0.0"
    assert caplog.text.count("is available again") == 1
    await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()


async def test_silent_stream_is_reported_by_the_watchdog(
    hass: HomeAssistant,
    issue_registry: ir.IssueRegistry,
    socket_enabled: None,
    tmp_path: Path,
) -> None:
    """An FFmpeg stream that stops delivering: after the stall time, unavailable + issue."""
    from aiohttp import web

    from custom_components.cry_detector.const import CONF_INPUT, CONF_MODEL_PATH

    from .conftest import CRY_MODEL

    write_audio(tmp_path / "stream.wav", recording(3.0, ()))
    app = web.Application()
    app.router.add_static("/", tmp_path)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    entry = MockConfigEntry(
        domain=DOMAIN,
        title="Camera",
        data={
            "source_type": "ffmpeg",
            CONF_INPUT: f"http://user:pw@127.0.0.1:{port}/stream.wav",
            CONF_MODEL_PATH: str(CRY_MODEL),
        },
        options=OPTIONS,
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    listener: CryListener = entry.runtime_data.listener
    await wait_until(lambda: listener.stats is not None and listener.stats.windows > 0)

    await runner.cleanup()  # the camera goes away; FFmpeg keeps retrying by itself
    await asyncio.sleep(0.5)
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=25))
    await hass.async_block_till_done()
    assert listener.failure is not None
    assert value(hass, "binary_sensor.camera_crying") == STATE_UNAVAILABLE
    issue = issue_registry.async_get_issue(DOMAIN, listener.issue_id)
    assert issue is not None and issue.translation_key == "stream_unreachable"
    assert "pw" not in str(issue.translation_placeholders)
    await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()


def microphone_entry() -> MockConfigEntry:
    """An entry listening to the fake sound card's USB microphone."""
    from custom_components.cry_detector.const import CONF_DEVICE, CONF_MODEL_PATH

    from .conftest import CRY_MODEL

    return MockConfigEntry(
        domain=DOMAIN,
        title="Nursery",
        unique_id="mic:USB Baby Mic",
        data={
            "source_type": "microphone",
            CONF_DEVICE: "USB Baby Mic",
            CONF_MODEL_PATH: str(CRY_MODEL),
        },
        options=OPTIONS,
    )


async def test_unplugged_microphone(
    hass: HomeAssistant, issue_registry: ir.IssueRegistry, sound_card: FakeSoundCard
) -> None:
    """Unplugging the mic raises device_lost; plugging it back in recovers on the next retry."""
    entry = microphone_entry()
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    listener: CryListener = entry.runtime_data.listener
    await wait_until(lambda: listener.stats is not None and listener.stats.windows > 0)
    assert len(sound_card.open_streams) == 1

    sound_card.unplug()
    await wait_until(lambda: listener.failure is not None)
    await hass.async_block_till_done()
    issue = issue_registry.async_get_issue(DOMAIN, listener.issue_id)
    assert issue is not None and issue.translation_key == "device_lost"
    assert value(hass, CRYING) == STATE_UNAVAILABLE
    assert not sound_card.open_streams

    # Still unplugged at the first retry: the issue names the missing device now.
    await retry_now(hass, listener)
    await wait_until(
        lambda: (
            (found := issue_registry.async_get_issue(DOMAIN, listener.issue_id))
            is not None
            and found.translation_key == "device_not_found"
        )
    )

    # A driver bug while reopening is reported as well, and retried.
    sound_card.replug()
    sound_card.fail_start = RuntimeError("driver bug")
    await retry_now(hass, listener)
    await wait_until(
        lambda: (
            (found := issue_registry.async_get_issue(DOMAIN, listener.issue_id))
            is not None
            and found.translation_key == "source_failed"
        )
    )

    sound_card.fail_start = None
    await retry_now(hass, listener)
    await wait_until(lambda: listener.failure is None)
    await hass.async_block_till_done()
    assert issue_registry.async_get_issue(DOMAIN, listener.issue_id) is None
    assert value(hass, CRYING) == "off"
    assert len(sound_card.open_streams) == 1
    await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    assert not sound_card.open_streams


async def test_microphone_without_portaudio_at_setup(
    hass: HomeAssistant, issue_registry: ir.IssueRegistry
) -> None:
    """A microphone entry on a system without PortAudio: not ready, with a repair issue."""
    entry = microphone_entry()
    entry.add_to_hass(hass)
    assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_RETRY
    issue = issue_registry.async_get_issue(DOMAIN, f"source_{entry.entry_id}")
    assert issue is not None and issue.translation_key == "portaudio_missing"


async def test_live_crying_from_the_microphone(
    hass: HomeAssistant, sound_card: FakeSoundCard
) -> None:
    """Crying into the (fake) microphone turns the binary sensor on in real time."""
    from custom_components.cry_detector.const import CONF_MIN_CRY_SECONDS
    from tests.engine.audio import to_int16

    sound_card.audio = to_int16(recording(8.0, ((0.2, 7.0),)))
    entry = microphone_entry()
    entry.add_to_hass(hass)
    hass.config_entries.async_update_entry(
        entry, options={**OPTIONS, CONF_MIN_CRY_SECONDS: 1.0}
    )
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    await wait_until(lambda: hass.states.get(CRYING).state == "on")  # type: ignore[union-attr]
    state = hass.states.get(CRYING)
    assert state is not None and "episode_start" in state.attributes

    await hass.services.async_call(
        "switch", "turn_off", {"entity_id": LISTENING}, blocking=True
    )
    assert not sound_card.open_streams  # privacy: the microphone is closed
    assert value(hass, CRYING) == STATE_UNAVAILABLE
    assert value(hass, "sensor.nursery_cry_episodes_today") == "1"
    await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
