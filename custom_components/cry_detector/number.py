"""Number: detection sensitivity, mirroring the sensitivity option."""

from __future__ import annotations

from typing import Any

from homeassistant.components.number import (
    NumberEntity,
    NumberEntityDescription,
    NumberMode,
)
from homeassistant.const import PERCENTAGE, EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .const import CONF_SENSITIVITY, MAX_SENSITIVITY, MIN_SENSITIVITY
from .data import CryDetectorConfigEntry
from .entity import CryDetectorEntity

PARALLEL_UPDATES = 0

SENSITIVITY = NumberEntityDescription(
    key="sensitivity",
    translation_key="sensitivity",
    entity_category=EntityCategory.CONFIG,
    native_min_value=MIN_SENSITIVITY,
    native_max_value=MAX_SENSITIVITY,
    native_step=1,
    native_unit_of_measurement=PERCENTAGE,
    mode=NumberMode.SLIDER,
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: CryDetectorConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the sensitivity number of an entry."""
    async_add_entities([CrySensitivityNumber(entry, SENSITIVITY)])


class CrySensitivityNumber(CryDetectorEntity, NumberEntity):
    """Higher sensitivity = lower probability threshold; stored in the entry options."""

    @property
    def available(self) -> bool:
        """Always adjustable."""
        return True

    @property
    def native_value(self) -> float:
        """The sensitivity option in percent."""
        default = 100.0 * (1.0 - self.entry.runtime_data.card.threshold)
        return float(self.entry.options.get(CONF_SENSITIVITY, round(default)))

    def _fingerprint(self) -> tuple[Any, ...]:
        """The option decides the state."""
        return (self.native_value,)

    async def async_set_native_value(self, value: float) -> None:
        """Store the new sensitivity; the options listener applies it live."""
        self.hass.config_entries.async_update_entry(
            self.entry, options={**self.entry.options, CONF_SENSITIVITY: round(value)}
        )
