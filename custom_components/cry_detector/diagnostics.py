"""Diagnostics: configuration (credentials redacted), model card, backend, pipeline stats."""

from __future__ import annotations

import dataclasses
from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.core import HomeAssistant

from .const import CONF_INPUT, CONF_MODEL_PATH, CONF_PATH
from .data import CryDetectorConfigEntry
from .engine.errors import redact_url

TO_REDACT = {CONF_MODEL_PATH, CONF_PATH}


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: CryDetectorConfigEntry
) -> dict[str, Any]:
    """Return diagnostics for a config entry."""
    data = entry.runtime_data
    listener = data.listener
    entry_data = dict(entry.data)
    if CONF_INPUT in entry_data:
        entry_data[CONF_INPUT] = redact_url(entry_data[CONF_INPUT])
    stats = listener.stats
    totals = listener.today_totals()
    return {
        "entry": {
            "title": entry.title,
            "data": async_redact_data(entry_data, TO_REDACT),
            "options": dict(entry.options),
        },
        "model": {
            "bundled": CONF_MODEL_PATH not in entry.data,
            "card": data.card.to_dict(),
        },
        "backend": data.listener.backend.name,
        "tracker": dataclasses.asdict(listener.tracker_config),
        "listener": {
            "listening": listener.listening,
            "running": listener.running,
            "failure": str(listener.failure) if listener.failure else None,
            "next_retry": listener.next_retry,
            "crying": listener.crying,
            "cry_seconds_today": round(totals.seconds, 2),
            "episodes_today": totals.episodes,
        },
        "stats": dataclasses.asdict(stats) if stats is not None else None,
        "recent_probabilities": list(listener.recent_probabilities),
    }
