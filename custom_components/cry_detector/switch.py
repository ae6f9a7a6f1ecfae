"""Switch: listening on or off (off closes the audio source: privacy)."""

from __future__ import annotations

from typing import Any

from homeassistant.components.switch import SwitchEntity, SwitchEntityDescription
from homeassistant.const import STATE_OFF, EntityCategory, Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.restore_state import RestoreEntity, async_get

from .const import DOMAIN
from .data import CryDetectorConfigEntry
from .entity import CryDetectorEntity

PARALLEL_UPDATES = 0

LISTENING = SwitchEntityDescription(
    key="listening",
    translation_key="listening",
    entity_category=EntityCategory.CONFIG,
)


def restored_listening(hass: HomeAssistant, entry: CryDetectorConfigEntry) -> bool:
    """Return whether listening was on before the restart (read before the source opens)."""
    entity_id = er.async_get(hass).async_get_entity_id(
        Platform.SWITCH, DOMAIN, f"{entry.entry_id}_{LISTENING.key}"
    )
    if (
        entity_id is None
        or (stored := async_get(hass).last_states.get(entity_id)) is None
    ):
        return True
    return stored.state.state != STATE_OFF


async def async_setup_entry(
    hass: HomeAssistant,
    entry: CryDetectorConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the listening switch of an entry."""
    async_add_entities([CryListeningSwitch(entry, LISTENING)])


class CryListeningSwitch(CryDetectorEntity, SwitchEntity, RestoreEntity):
    """Turns capture on and off; its state survives restarts."""

    @property
    def available(self) -> bool:
        """Always controllable."""
        return True

    @property
    def is_on(self) -> bool:
        """Whether the detector listens."""
        return self.listener.listening

    def _fingerprint(self) -> tuple[Any, ...]:
        """The listening flag decides the state."""
        return (self.is_on,)

    async def async_turn_on(self, **kwargs: Any) -> None:
        """Start listening."""
        await self.listener.async_set_listening(True)

    async def async_turn_off(self, **kwargs: Any) -> None:
        """Stop listening and close the source."""
        await self.listener.async_set_listening(False)
