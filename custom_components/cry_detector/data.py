"""Runtime data stored on the config entry."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from homeassistant.config_entries import ConfigEntry

from .engine.card import ModelCard

if TYPE_CHECKING:
    from .runtime import CryListener


@dataclass
class CryDetectorData:
    """What a loaded entry holds: the model and the listener running it."""

    card: ModelCard
    model_path: Path
    listener: CryListener


type CryDetectorConfigEntry = ConfigEntry[CryDetectorData]
