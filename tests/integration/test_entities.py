"""Entities fed by real audio: snapshots, cry accounting, midnight and DST, events, controls."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
import time
from zoneinfo import ZoneInfo

from freezegun.api import FrozenDateTimeFactory
from homeassistant.const import (
    ATTR_ENTITY_ID,
    STATE_OFF,
    STATE_ON,
    STATE_UNAVAILABLE,
    STATE_UNKNOWN,
)
from homeassistant.core import Event, EventStateChangedData, HomeAssistant, State
from homeassistant.helpers import device_registry as dr, entity_registry as er
from homeassistant.helpers.event import async_track_state_change_event
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
)
from syrupy.assertion import SnapshotAssertion

from custom_components.cry_detector.const import CONF_SENSITIVITY, DOMAIN
from custom_components.cry_detector.daily import next_local_midnight

from .conftest import CRY_END, CRY_START, setup_entry

CRYING = "binary_sensor.nursery_crying"
MINUTES = "sensor.nursery_cry_minutes_today"
EPISODES = "sensor.nursery_cry_episodes_today"
LAST_DURATION = "sensor.nursery_last_cry_duration"
LAST_STARTED = "sensor.nursery_last_cry_started"
PROBABILITY = "sensor.nursery_cry_probability"
LEVEL = "sensor.nursery_sound_level"
EVENT = "event.nursery_cry"
LISTENING = "switch.nursery_listening"
SENSITIVITY = "number.nursery_sensitivity"

# Detection is window-based (0.5 s hops, 1 s patches, smoothing): allow this much slack.
SLACK_SECONDS = 1.6


def enable_all_entities(
    entity_registry: er.EntityRegistry, entry: MockConfigEntry
) -> None:
    """Pre-register the disabled-by-default entities as enabled."""
    entity_registry.async_get_or_create(
        "sensor",
        DOMAIN,
        f"{entry.entry_id}_cry_probability",
        config_entry=entry,
        suggested_object_id="nursery_cry_probability",
    )


def record_states(hass: HomeAssistant, entity_id: str) -> list[State]:
    """Collect every new state an entity writes."""
    states: list[State] = []

    def _collect(event: Event[EventStateChangedData]) -> None:
        if (new := event.data["new_state"]) is not None:
            states.append(new)

    async_track_state_change_event(hass, entity_id, _collect)
    return states


def value(hass: HomeAssistant, entity_id: str) -> str:
    """Return an entity's state string."""
    state = hass.states.get(entity_id)
    assert state is not None, entity_id
    return state.state


async def test_snapshot(
    hass: HomeAssistant,
    entity_registry: er.EntityRegistry,
    snapshot: SnapshotAssertion,
    freezer: FrozenDateTimeFactory,
    mock_config_entry: MockConfigEntry,
) -> None:
    """Every entity's registry entry and state after a recording with one cry."""
    device_registry = dr.async_get(hass)
    freezer.move_to("2026-06-01 08:00:00+00:00")
    mock_config_entry.add_to_hass(hass)
    enable_all_entities(entity_registry, mock_config_entry)
    await setup_entry(hass, mock_config_entry)
    device = device_registry.async_get_device_by_identifier(
        (DOMAIN, mock_config_entry.entry_id), mock_config_entry.entry_id
    )
    assert device == snapshot(name="device")
    entries = er.async_entries_for_config_entry(
        entity_registry, mock_config_entry.entry_id
    )
    assert len(entries) == 10
    for entity_entry in sorted(entries, key=lambda item: item.entity_id):
        assert entity_entry.disabled_by is None
        assert entity_entry == snapshot(name=f"{entity_entry.entity_id}-entry")
        assert hass.states.get(entity_entry.entity_id) == snapshot(
            name=f"{entity_entry.entity_id}-state"
        )


async def test_probability_disabled_by_default(
    hass: HomeAssistant,
    entity_registry: er.EntityRegistry,
    init_integration: MockConfigEntry,
) -> None:
    """The probability sensor is a disabled diagnostic; sound level is enabled."""
    probability = entity_registry.async_get(PROBABILITY)
    assert probability is not None
    assert probability.disabled_by is er.RegistryEntryDisabler.INTEGRATION
    assert hass.states.get(PROBABILITY) is None
    level = entity_registry.async_get(LEVEL)
    assert level is not None and level.disabled_by is None


async def test_one_cry_is_counted(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    mock_config_entry: MockConfigEntry,
) -> None:
    """The 10 s cry becomes one episode of about 10 s, in the sensors and in two events."""
    freezer.move_to("2026-06-01 08:00:00+00:00")
    start = dt_util.utcnow()
    crying = record_states(hass, CRYING)
    events = record_states(hass, EVENT)
    await setup_entry(hass, mock_config_entry)

    episode = mock_config_entry.runtime_data.listener.last_episode
    assert episode is not None
    assert episode.duration == pytest.approx(CRY_END - CRY_START, abs=SLACK_SECONDS)
    assert float(value(hass, MINUTES)) == pytest.approx(episode.duration / 60, abs=0.01)
    assert value(hass, EPISODES) == "1"
    assert float(value(hass, LAST_DURATION)) == pytest.approx(episode.duration, abs=0.1)
    started = dt_util.parse_datetime(value(hass, LAST_STARTED))
    assert started is not None
    assert (started - start).total_seconds() == pytest.approx(
        CRY_START, abs=SLACK_SECONDS
    )

    assert [state.state for state in crying if state.state in (STATE_ON, STATE_OFF)][
        -2:
    ] == [STATE_ON, STATE_OFF]
    on_state = next(state for state in crying if state.state == STATE_ON)
    episode_start = dt_util.parse_datetime(on_state.attributes["episode_start"])
    assert episode_start is not None
    assert abs((episode_start - started).total_seconds()) < 1
    assert on_state.attributes["peak_probability"] >= 0.5

    fired = [
        state.attributes["event_type"]
        for state in events
        if state.state != STATE_UNKNOWN
    ]
    assert fired == ["cry_started", "cry_stopped"]
    stopped = events[-1].attributes
    assert stopped["duration"] == pytest.approx(episode.duration, abs=0.1)
    assert stopped["peak_probability"] == pytest.approx(
        episode.peak_probability, abs=0.001
    )


async def test_live_sensors_are_throttled(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry
) -> None:
    """Sound level writes at most about once per second of real time (60 windows here)."""
    levels = record_states(hass, LEVEL)
    began = time.monotonic()
    await setup_entry(hass, mock_config_entry)
    elapsed = time.monotonic() - began
    stats = mock_config_entry.runtime_data.listener.stats
    assert stats is not None and stats.windows >= 55
    numeric = [state for state in levels if state.state != STATE_UNAVAILABLE]
    assert 1 <= len(numeric) <= elapsed + 2


@pytest.mark.parametrize(
    "local_start",
    [
        "2026-06-01 23:59:50",  # an ordinary midnight
        "2026-03-28 23:59:50",  # into the 23-hour day (spring forward)
        "2026-10-25 23:59:50",  # out of the 25-hour day (fall back)
    ],
)
async def test_episode_across_midnight_is_split(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    mock_config_entry: MockConfigEntry,
    local_start: str,
) -> None:
    """Cry time before local midnight stays on that day; the rest counts for the new day."""
    await hass.config.async_set_time_zone("Europe/Berlin")
    berlin = ZoneInfo("Europe/Berlin")
    begin = datetime.fromisoformat(local_start).replace(tzinfo=berlin)
    freezer.move_to(begin)
    await setup_entry(hass, mock_config_entry)
    episode = mock_config_entry.runtime_data.listener.last_episode
    assert episode is not None
    midnight = next_local_midnight(begin.date(), berlin)
    assert episode.start < midnight < episode.end

    before = midnight - episode.start
    assert float(value(hass, MINUTES)) == pytest.approx(round(before / 60, 2))
    assert value(hass, EPISODES) == "1"

    freezer.move_to(dt_util.utc_from_timestamp(midnight + 1))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    after = episode.end - midnight
    assert float(value(hass, MINUTES)) == pytest.approx(round(after / 60, 2))
    assert value(hass, EPISODES) == "1"

    # The next midnight (23 or 25 hours later on DST days) resets to zero.
    following = next_local_midnight(begin.date() + timedelta(days=1), berlin)
    freezer.move_to(dt_util.utc_from_timestamp(following + 1))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    assert value(hass, MINUTES) == "0.0"
    assert value(hass, EPISODES) == "0"


@pytest.mark.parametrize(
    "local_start",
    ["2026-03-29 01:59:52", "2026-10-25 02:59:52"],
)
async def test_episode_across_dst_change_counts_real_time(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    mock_config_entry: MockConfigEntry,
    local_start: str,
) -> None:
    """A cry while the clocks change counts its real duration, all on the same day."""
    await hass.config.async_set_time_zone("Europe/Berlin")
    begin = datetime.fromisoformat(local_start).replace(
        tzinfo=ZoneInfo("Europe/Berlin")
    )
    freezer.move_to(begin)
    await setup_entry(hass, mock_config_entry)
    episode = mock_config_entry.runtime_data.listener.last_episode
    assert episode is not None
    assert float(value(hass, MINUTES)) == pytest.approx(round(episode.duration / 60, 2))
    assert value(hass, EPISODES) == "1"


async def test_listening_switch_pauses_capture(
    hass: HomeAssistant, tmp_path: Path
) -> None:
    """Turning listening off closes the source; live entities go unavailable, totals stay."""
    from tests.engine.audio import write_audio

    from .conftest import OPTIONS, file_data, recording

    wav = write_audio(tmp_path / "loop.wav", recording(4.0, ()))
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
    assert value(hass, LISTENING) == STATE_ON
    assert value(hass, CRYING) == STATE_OFF
    # Turning on what is on changes nothing; options reach the running pipeline.
    task = listener.task
    await hass.services.async_call(
        "switch", "turn_on", {ATTR_ENTITY_ID: LISTENING}, blocking=True
    )
    assert listener.task is task
    hass.config_entries.async_update_entry(
        entry, options={**OPTIONS, CONF_SENSITIVITY: 90}
    )
    await hass.async_block_till_done()
    pipeline = listener._pipeline
    assert pipeline is not None
    assert pipeline.tracker.config.threshold == pytest.approx(0.1)

    await hass.services.async_call(
        "switch", "turn_off", {ATTR_ENTITY_ID: LISTENING}, blocking=True
    )
    assert value(hass, LISTENING) == STATE_OFF
    assert not listener.running
    assert not listener.task
    assert value(hass, CRYING) == STATE_UNAVAILABLE
    assert value(hass, LEVEL) == STATE_UNAVAILABLE
    assert value(hass, MINUTES) == "0.0"

    await hass.services.async_call(
        "switch", "turn_on", {ATTR_ENTITY_ID: LISTENING}, blocking=True
    )
    assert value(hass, LISTENING) == STATE_ON
    assert listener.task is not None
    await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()


async def test_sensitivity_number(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    """The number mirrors the sensitivity option; setting it updates the option and tracker."""
    assert value(hass, SENSITIVITY) == "50.0"
    await hass.services.async_call(
        "number",
        "set_value",
        {ATTR_ENTITY_ID: SENSITIVITY, "value": 72},
        blocking=True,
    )
    await hass.async_block_till_done()
    assert init_integration.options[CONF_SENSITIVITY] == 72
    listener = init_integration.runtime_data.listener
    assert listener.tracker_config.threshold == pytest.approx(0.28)
    assert value(hass, SENSITIVITY) == "72.0"
