"""Binary sensor: is the baby crying right now."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from homeassistant.components.binary_sensor import (
    BinarySensorEntity,
    BinarySensorEntityDescription,
)

try:
    from homeassistant.components.binary_sensor.const import BinarySensorDeviceClass
except ImportError:  # Home Assistant before 2025.5 keeps it in the package
    from homeassistant.components.binary_sensor import (  # type: ignore[attr-defined,no-redef,unused-ignore]
        BinarySensorDeviceClass,
    )
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.util import dt as dt_util

from .data import CryDetectorConfigEntry
from .entity import CryDetectorEntity
from .runtime import CryListener

PARALLEL_UPDATES = 0


def _episode_attributes(listener: CryListener) -> dict[str, Any]:
    """Return the open episode's start and peak probability (empty when not crying)."""
    episode = listener.current_episode
    if episode is None:
        return {}
    return {
        "episode_start": dt_util.utc_from_timestamp(episode.start).isoformat(),
        "peak_probability": round(episode.peak_probability, 2),
    }


@dataclass(frozen=True, kw_only=True)
class CryBinarySensorDescription(BinarySensorEntityDescription):
    """Describes a Cry Detector binary sensor."""

    is_on_fn: Callable[[CryListener], bool]
    attributes_fn: Callable[[CryListener], dict[str, Any]]


BINARY_SENSORS: tuple[CryBinarySensorDescription, ...] = (
    CryBinarySensorDescription(
        key="crying",
        translation_key="crying",
        device_class=BinarySensorDeviceClass.SOUND,
        is_on_fn=lambda listener: listener.crying,
        attributes_fn=_episode_attributes,
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: CryDetectorConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the binary sensors of an entry."""
    async_add_entities(
        CryBinarySensor(entry, description) for description in BINARY_SENSORS
    )


class CryBinarySensor(CryDetectorEntity, BinarySensorEntity):
    """On while an episode is open."""

    entity_description: CryBinarySensorDescription
    _unrecorded_attributes = frozenset({"peak_probability"})

    @property
    def available(self) -> bool:
        """Only meaningful while listening to a working source."""
        return self.listener.live

    @property
    def is_on(self) -> bool:
        """Whether the baby is crying."""
        return self.entity_description.is_on_fn(self.listener)

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        """Episode start and peak probability while crying."""
        return self.entity_description.attributes_fn(self.listener)

    def _fingerprint(self) -> tuple[Any, ...]:
        """State and attributes decide what is written."""
        return (self.is_on, self.extra_state_attributes)
