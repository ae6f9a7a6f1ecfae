"""Event entity: cry_started and cry_stopped, with duration and peak probability."""

from __future__ import annotations

from typing import Any

from homeassistant.components.event import EventEntity, EventEntityDescription
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .const import EVENT_CRY_STARTED, EVENT_CRY_STOPPED
from .data import CryDetectorConfigEntry
from .entity import CryDetectorEntity

PARALLEL_UPDATES = 0

EVENTS = EventEntityDescription(
    key="cry",
    translation_key="cry",
    event_types=[EVENT_CRY_STARTED, EVENT_CRY_STOPPED],
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: CryDetectorConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the event entity of an entry."""
    async_add_entities([CryEvent(entry, EVENTS)])


class CryEvent(CryDetectorEntity, EventEntity):
    """Fires when an episode starts and when it ends."""

    async def async_added_to_hass(self) -> None:
        """Follow the listener's episode events."""
        await super().async_added_to_hass()
        self.async_on_remove(self.listener.async_add_event_listener(self._handle_event))

    @callback
    def _handle_event(self, event_type: str, attributes: dict[str, Any]) -> None:
        """Record and publish an episode event."""
        self._trigger_event(event_type, attributes)
        self.async_write_ha_state()
