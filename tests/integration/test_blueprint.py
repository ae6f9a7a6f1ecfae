"""The notification blueprint runs in a real Home Assistant automation engine."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
import shutil

from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.automation import DOMAIN as AUTOMATION_DOMAIN
from homeassistant.core import HomeAssistant, ServiceCall
from homeassistant.helpers import device_registry as dr, entity_registry as er
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
    async_mock_service,
)

BLUEPRINT = (
    Path(__file__).parents[2]
    / "blueprints"
    / "automation"
    / "cry_detector"
    / "notify_when_crying.yaml"
)
SENSOR = "binary_sensor.nursery_crying"


@pytest.fixture
async def phone(hass: HomeAssistant) -> str:
    """Register a mobile_app device named 'Pixel' and return its device id."""
    entry = MockConfigEntry(domain="mobile_app", title="Pixel")
    entry.add_to_hass(hass)
    device = dr.async_get(hass).async_get_or_create(
        config_entry_id=entry.entry_id,
        identifiers={("mobile_app", "pixel")},
        name="Pixel",
    )
    return device.id


@pytest.fixture(autouse=True)
def nursery_sensor(hass: HomeAssistant) -> None:
    """Register the crying sensor on a device named 'Nursery', as the integration does."""
    entry = MockConfigEntry(domain="cry_detector", title="Nursery")
    entry.add_to_hass(hass)
    device = dr.async_get(hass).async_get_or_create(
        config_entry_id=entry.entry_id,
        identifiers={("cry_detector", "x")},
        name="Nursery",
    )
    er.async_get(hass).async_get_or_create(
        "binary_sensor",
        "cry_detector",
        "x_crying",
        suggested_object_id="nursery_crying",
        device_id=device.id,
    )


async def _setup_automation(hass: HomeAssistant, phone: str, **inputs: object) -> None:
    """Install the blueprint into the config dir and create an automation from it."""
    target = Path(hass.config.path("blueprints/automation/cry_detector"))
    await hass.async_add_executor_job(lambda: target.mkdir(parents=True, exist_ok=True))
    await hass.async_add_executor_job(shutil.copy, BLUEPRINT, target / BLUEPRINT.name)
    blueprint_input = {
        "crying_sensor": SENSOR,
        "crying_for": {"seconds": 30},
        "notify_devices": [phone],
        "light": {"entity_id": "light.nursery"},
        **inputs,
    }
    assert await async_setup_component(
        hass,
        AUTOMATION_DOMAIN,
        {
            AUTOMATION_DOMAIN: {
                "id": "cry_notify",
                "use_blueprint": {
                    "path": f"cry_detector/{BLUEPRINT.name}",
                    "input": blueprint_input,
                },
            }
        },
    )
    await hass.async_block_till_done()


async def _cry(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, seconds: int
) -> None:
    """Turn the crying sensor on for some seconds, then off."""
    hass.states.async_set(SENSOR, "on")
    await hass.async_block_till_done()
    freezer.tick(timedelta(seconds=seconds))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    hass.states.async_set(SENSOR, "off")
    await hass.async_block_till_done()


async def test_notifies_once_per_cooldown_and_turns_on_light(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, phone: str
) -> None:
    """A cry of 30 s notifies the phone and dims the light on; a second cry in cooldown does not."""
    freezer.move_to(dt_util.parse_datetime("2026-11-23 20:00:00+00:00"))
    hass.states.async_set(SENSOR, "off")
    notifications: list[ServiceCall] = async_mock_service(
        hass, "notify", "mobile_app_pixel"
    )
    lights: list[ServiceCall] = async_mock_service(hass, "light", "turn_on")
    await _setup_automation(hass, phone)

    await _cry(hass, freezer, 10)
    assert notifications == []

    await _cry(hass, freezer, 31)
    assert len(notifications) == 1
    assert notifications[0].data["title"] == "Crying"
    assert notifications[0].data["message"] == "Nursery has been crying for 0.5 min."
    assert len(lights) == 1
    assert lights[0].data["brightness_pct"] == 20

    freezer.tick(timedelta(minutes=5))
    await _cry(hass, freezer, 31)
    assert len(notifications) == 1

    freezer.tick(timedelta(minutes=15))
    await _cry(hass, freezer, 31)
    assert len(notifications) == 2


async def test_quiet_hours_silence_notifications(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, phone: str
) -> None:
    """No notification inside quiet hours that wrap midnight."""
    await hass.config.async_set_time_zone("UTC")
    freezer.move_to(dt_util.parse_datetime("2026-11-23 23:30:00+00:00"))
    hass.states.async_set(SENSOR, "off")
    notifications = async_mock_service(hass, "notify", "mobile_app_pixel")
    await _setup_automation(hass, phone, quiet_start="22:00:00", quiet_end="06:00:00")

    await _cry(hass, freezer, 31)
    assert notifications == []

    freezer.move_to(dt_util.parse_datetime("2026-11-24 07:00:00+00:00"))
    await _cry(hass, freezer, 31)
    assert len(notifications) == 1
