"""Home Assistant restarting in the middle of a cry: every second of crying is counted once.

A restart is simulated the way the harness allows: the states (with the daily sensors' extra
data) are dumped into the restore cache as at shutdown, the entry is unloaded, and set up again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_mock_restore_state_shutdown_restart,
)

from custom_components.cry_detector.const import DOMAIN
from tests.engine.audio import write_audio

from .conftest import OPTIONS, file_data, recording, setup_entry, wait_for_listener

TODAY = "2026-06-01"
MINUTES = "sensor.nursery_cry_minutes_today"
EPISODES = "sensor.nursery_cry_episodes_today"
CRYING = "binary_sensor.nursery_crying"


def state(hass: HomeAssistant, entity_id: str) -> str:
    """An entity's state string."""
    current = hass.states.get(entity_id)
    assert current is not None, entity_id
    return current.state


async def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll until condition() holds (real-time audio)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.05)


async def restart(hass: HomeAssistant, entry: MockConfigEntry) -> float:
    """Save the states as at shutdown, stop the entry, start it again from the saved states.

    Returns the cry seconds of today that were saved.
    """
    saved = await async_mock_restore_state_shutdown_restart(hass)
    extra = saved.last_states[MINUTES].extra_data
    assert extra is not None
    total = float(extra.as_dict()["total"])
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return total


async def test_restart_mid_episode_counts_each_second_once(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, tmp_path: Path
) -> None:
    """Crying 4-12 s when HA stops at 12 s; still crying for 6 s after it starts again."""
    freezer.move_to(f"{TODAY} 08:00:00+00:00")
    wav = write_audio(tmp_path / "nursery.wav", recording(12.0, ((4.0, 12.0),)))
    entry = MockConfigEntry(
        domain=DOMAIN, title="Nursery", data=file_data(wav), options=OPTIONS
    )
    await setup_entry(hass, entry)
    before = entry.runtime_data.listener.today_totals()
    assert before.episodes == 1 and before.seconds == pytest.approx(8.0, abs=1.6)

    write_audio(wav, recording(12.0, ((0.0, 6.0),)))  # what the microphone hears next
    assert await restart(hass, entry) == pytest.approx(before.seconds, abs=1e-9)
    await wait_for_listener(entry)
    listener = entry.runtime_data.listener
    after = listener.last_episode
    assert after is not None and after.duration == pytest.approx(6.0, abs=1.6)
    totals = listener.today_totals()
    # restored + new, nothing twice; the cut splits the cry into two episodes
    assert totals.seconds == pytest.approx(before.seconds + after.duration, abs=1e-6)
    assert totals.episodes == 2
    assert float(state(hass, MINUTES)) == pytest.approx(round(totals.seconds / 60, 2))
    assert state(hass, EPISODES) == "2"
    await hass.config_entries.async_unload(entry.entry_id)


async def test_restart_while_a_live_episode_is_open(
    hass: HomeAssistant, tmp_path: Path
) -> None:
    """A live source is stopped mid-episode: the saved total is what had been credited, no more.

    The restored day then only grows by new crying (none here: the room is quiet afterwards).
    """
    wav = write_audio(tmp_path / "nursery.wav", recording(20.0, ((0.5, 20.0),)))
    entry = MockConfigEntry(
        domain=DOMAIN,
        title="Nursery",
        data=file_data(wav, realtime=True, loop=True),
        options=OPTIONS,
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    listener = entry.runtime_data.listener
    began = asyncio.get_running_loop().time()
    await wait_until(lambda: listener.crying and listener.today_totals().seconds >= 2.0)
    await hass.async_block_till_done()
    assert state(hass, CRYING) == "on"

    write_audio(wav, recording(6.0, ()))
    saved = await restart(hass, entry)
    elapsed = asyncio.get_running_loop().time() - began
    assert 2.0 <= saved <= elapsed  # never more than the cry that really happened
    listener = entry.runtime_data.listener
    await wait_until(lambda: listener.stats is not None and listener.stats.windows >= 4)
    totals = listener.today_totals()
    assert totals.episodes == 1  # the restored one; the quiet room adds none
    assert totals.seconds == pytest.approx(saved, abs=1e-9)
    assert float(state(hass, MINUTES)) == pytest.approx(round(saved / 60, 2))
    await hass.config_entries.async_unload(entry.entry_id)


async def test_finished_episode_is_saved_before_any_shutdown(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    tmp_path: Path,
    hass_storage: dict[str, Any],
) -> None:
    """A crash (no clean shutdown) keeps every finished episode: its end writes the restore states."""
    freezer.move_to(f"{TODAY} 08:00:00+00:00")
    wav = write_audio(tmp_path / "nursery.wav", recording(14.0, ((2.0, 6.0),)))
    entry = MockConfigEntry(
        domain=DOMAIN, title="Nursery", data=file_data(wav), options=OPTIONS
    )
    await setup_entry(hass, entry)
    await hass.async_block_till_done()
    totals = entry.runtime_data.listener.today_totals()
    assert totals.episodes == 1 and totals.seconds > 0

    saved = {
        item["state"]["entity_id"]: item
        for item in hass_storage["core.restore_state"]["data"]
    }
    minutes = saved[MINUTES]
    assert minutes["extra_data"]["total"] == pytest.approx(totals.seconds)
    assert saved[EPISODES]["extra_data"]["total"] == 1
    await hass.config_entries.async_unload(entry.entry_id)
