"""Restart behaviour: today's totals, the last cry and the listening switch are restored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import STATE_OFF, STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant, State
from homeassistant.helpers import entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    mock_restore_cache,
    mock_restore_cache_with_extra_data,
)

from custom_components.cry_detector.const import DOMAIN
from tests.engine.audio import write_audio

from .conftest import OPTIONS, file_data, recording, setup_entry
from .test_entities import (
    CRYING,
    EPISODES,
    LAST_DURATION,
    LAST_STARTED,
    LISTENING,
    MINUTES,
    value,
)

TODAY = "2026-06-01"


def daily_extra(
    native: float, unit: str | None, day: str, total: float
) -> dict[str, Any]:
    """Extra restore data as the daily sensors save it."""
    return {
        "native_value": native,
        "native_unit_of_measurement": unit,
        "day": day,
        "total": total,
    }


@pytest.mark.parametrize(
    ("day", "restored"),
    [(TODAY, True), ("2026-05-31", False)],
)
async def test_todays_totals_survive_a_restart(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    mock_config_entry: MockConfigEntry,
    day: str,
    restored: bool,
) -> None:
    """Saved totals count again only when they were saved today; nothing is double-counted."""
    freezer.move_to(f"{TODAY} 08:00:00+00:00")
    mock_restore_cache_with_extra_data(
        hass,
        [
            (State(MINUTES, "5.0"), daily_extra(5.0, "min", day, 300.0)),
            (State(EPISODES, "2"), daily_extra(2, None, day, 2)),
        ],
    )
    await setup_entry(hass, mock_config_entry)
    episode = mock_config_entry.runtime_data.listener.last_episode
    assert episode is not None
    seconds = episode.duration + (300.0 if restored else 0.0)
    assert float(value(hass, MINUTES)) == pytest.approx(round(seconds / 60, 2))
    assert value(hass, EPISODES) == ("3" if restored else "1")


async def test_foreign_restore_data_is_ignored(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    mock_config_entry: MockConfigEntry,
) -> None:
    """Extra data without a day (an older format) is not trusted."""
    freezer.move_to(f"{TODAY} 08:00:00+00:00")
    mock_restore_cache_with_extra_data(
        hass,
        [
            (
                State(MINUTES, "5.0"),
                {"native_value": 5.0, "native_unit_of_measurement": "min"},
            )
        ],
    )
    await setup_entry(hass, mock_config_entry)
    episode = mock_config_entry.runtime_data.listener.last_episode
    assert episode is not None
    assert float(value(hass, MINUTES)) == pytest.approx(round(episode.duration / 60, 2))


async def test_last_cry_is_restored_until_the_next(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, tmp_path: Path
) -> None:
    """Without a new cry the last cry's duration and start come from before the restart."""
    freezer.move_to(f"{TODAY} 08:00:00+00:00")
    mock_restore_cache_with_extra_data(
        hass,
        [
            (
                State(LAST_DURATION, "12.0"),
                {"native_value": 12.0, "native_unit_of_measurement": "s"},
            ),
            (
                State(LAST_STARTED, "2026-06-01T06:30:00+00:00"),
                {
                    "native_value": {
                        "__type": "<class 'datetime.datetime'>",
                        "isoformat": "2026-06-01T06:30:00+00:00",
                    },
                    "native_unit_of_measurement": None,
                },
            ),
        ],
    )
    quiet = write_audio(tmp_path / "quiet.wav", recording(6.0, ()))
    entry = MockConfigEntry(
        domain=DOMAIN, title="Nursery", data=file_data(quiet), options=OPTIONS
    )
    await setup_entry(hass, entry)
    assert entry.runtime_data.listener.last_episode is None
    assert value(hass, LAST_DURATION) == "12.0"
    assert value(hass, LAST_STARTED) == "2026-06-01T06:30:00+00:00"
    assert value(hass, MINUTES) == "0.0"


async def test_listening_off_survives_a_restart(
    hass: HomeAssistant, entity_registry: er.EntityRegistry, tmp_path: Path
) -> None:
    """With listening off before the restart, setup never opens the source (privacy)."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        title="Nursery",
        # The file does not exist: opening it would fail setup, so this proves nothing opened.
        data=file_data(tmp_path / "not-there.wav"),
        options=OPTIONS,
    )
    entry.add_to_hass(hass)
    entity_registry.async_get_or_create(
        "switch",
        DOMAIN,
        f"{entry.entry_id}_listening",
        config_entry=entry,
        suggested_object_id="nursery_listening",
    )
    mock_restore_cache(hass, [State(LISTENING, STATE_OFF)])
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    listener = entry.runtime_data.listener
    assert not listener.listening and listener.task is None
    assert value(hass, LISTENING) == STATE_OFF
    assert value(hass, CRYING) == STATE_UNAVAILABLE
    assert value(hass, MINUTES) == "0.0"
