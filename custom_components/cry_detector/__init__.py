"""The Cry Detector integration: tells parents when and how much their baby cries."""

from __future__ import annotations

from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ConfigEntryError, ConfigEntryNotReady
from homeassistant.helpers import config_validation as cv, issue_registry as ir
from homeassistant.helpers.typing import ConfigType

from .const import DOMAIN
from .data import CryDetectorConfigEntry, CryDetectorData
from .engine.errors import CryDetectorError, SourceError
from .engine.sources import AudioSource
from .helpers import (
    async_create_source,
    async_load_model,
    describe_source,
    model_path,
    tracker_config,
)
from .runtime import CryListener
from .services import async_setup_services
from .switch import restored_listening

CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)

PLATFORMS: list[Platform] = [
    Platform.BINARY_SENSOR,
    Platform.EVENT,
    Platform.NUMBER,
    Platform.SENSOR,
    Platform.SWITCH,
]


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Register the clip actions (available even before an entry is set up)."""
    async_setup_services(hass)
    return True


async def async_setup_entry(hass: HomeAssistant, entry: CryDetectorConfigEntry) -> bool:
    """Load the model, open the source (unless listening is off) and start listening."""
    path = model_path(entry.data)
    try:
        card, backend = await async_load_model(hass, path)
    except CryDetectorError as err:
        raise ConfigEntryError(
            translation_domain=DOMAIN,
            translation_key="model_failed",
            translation_placeholders={"model": path.name, "error": str(err)},
        ) from err
    listener = CryListener(
        hass, entry, card, backend, tracker_config(card, entry.options)
    )
    # Runs on unload and on any failure below: stops the source, then closes the model.
    entry.async_on_unload(listener.async_shutdown)
    listener.listening = restored_listening(hass, entry)
    if listener.listening:
        try:
            source = await _async_open_source(hass, entry, card.features.sample_rate)
        except SourceError as err:
            listener.async_report_failure(err)
            raise ConfigEntryNotReady(
                translation_domain=DOMAIN,
                translation_key="source_failed",
                translation_placeholders={
                    "source": describe_source(entry.data),
                    "error": str(err),
                },
            ) from err
        listener.async_start(source)
    ir.async_delete_issue(hass, DOMAIN, listener.issue_id)
    entry.runtime_data = CryDetectorData(card, path, listener)
    entry.async_on_unload(entry.add_update_listener(_async_options_updated))
    entry.async_on_unload(listener.async_track_midnight())
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    return True


async def _async_open_source(
    hass: HomeAssistant, entry: CryDetectorConfigEntry, sample_rate: int
) -> AudioSource:
    """Build and open the entry's source at the model's rate (closed again if opening fails)."""
    source = await async_create_source(hass, entry.data, sample_rate)
    try:
        await source.open()
    except BaseException:
        await source.close()
        raise
    return source


async def _async_options_updated(
    hass: HomeAssistant, entry: CryDetectorConfigEntry
) -> None:
    """Apply new detection options live (no reload: today's totals and the episode stay)."""
    data = entry.runtime_data
    data.listener.set_tracker_config(tracker_config(data.card, entry.options))


async def async_unload_entry(
    hass: HomeAssistant, entry: CryDetectorConfigEntry
) -> bool:
    """Stop listening first (the last episode still ends in the entities), then unload them.

    The model is closed afterwards by the listener's on-unload shutdown.
    """
    await entry.runtime_data.listener.async_stop()
    return await hass.config_entries.async_unload_platforms(entry, PLATFORMS)


async def async_remove_entry(
    hass: HomeAssistant, entry: CryDetectorConfigEntry
) -> None:
    """Delete the entry's repair issue."""
    ir.async_delete_issue(hass, DOMAIN, f"source_{entry.entry_id}")
