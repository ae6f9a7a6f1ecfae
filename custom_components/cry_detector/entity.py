"""Base entity: one device per entry, pushed updates from the listener (no polling)."""

from __future__ import annotations

from typing import Any

from homeassistant.core import callback
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.entity import Entity, EntityDescription

from .const import DOMAIN, FAST_SENSOR_INTERVAL
from .data import CryDetectorConfigEntry
from .helpers import describe_source
from .runtime import CryListener


class CryDetectorEntity(Entity):
    """An entity of one Cry Detector entry; writes its state only when it changes."""

    _attr_has_entity_name = True
    _attr_should_poll = False
    # Write at most once per FAST_SENSOR_INTERVAL (live diagnostic values).
    _throttled = False

    def __init__(
        self, entry: CryDetectorConfigEntry, description: EntityDescription
    ) -> None:
        """Bind the entity to its entry's listener and device."""
        self.entity_description = description
        self.entry = entry
        self.listener: CryListener = entry.runtime_data.listener
        card = entry.runtime_data.card
        self._attr_unique_id = f"{entry.entry_id}_{description.key}"
        self._attr_device_info = DeviceInfo(
            identifiers={(DOMAIN, entry.entry_id)},
            name=entry.title,
            manufacturer="Cry Detector",
            model=card.name,
            sw_version=card.version,
            hw_version=describe_source(entry.data),
        )
        self._written: tuple[Any, ...] | None = None
        self._written_at = 0.0

    async def async_added_to_hass(self) -> None:
        """Follow the listener."""
        await super().async_added_to_hass()
        self.async_on_remove(self.listener.async_add_listener(self._handle_update))

    @property
    def available(self) -> bool:
        """Whether the audio source works."""
        return self.listener.available

    def _fingerprint(self) -> tuple[Any, ...]:
        """Return what the written state depends on (compared before writing)."""
        return (self.available,)

    @callback
    def _handle_update(self) -> None:
        """Write the state if it changed (throttled entities: at most once per interval)."""
        fingerprint = (self.available, *self._fingerprint())
        if fingerprint == self._written:
            return
        now = self.hass.loop.time()
        if (
            self._throttled
            and self._written is not None
            and fingerprint[0] == self._written[0]
            and now - self._written_at < FAST_SENSOR_INTERVAL
        ):
            return
        self._written, self._written_at = fingerprint, now
        self.async_write_ha_state()
