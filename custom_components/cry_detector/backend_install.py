"""Pick the inference backend: install LiteRT on demand, else tflite_runtime, else NumPy."""

from __future__ import annotations

import asyncio

from homeassistant.core import HomeAssistant
from homeassistant.requirements import RequirementsNotFound, async_process_requirements
from homeassistant.util.hass_dict import HassKey

from .const import DOMAIN, LITERT_REQUIREMENT, LOGGER
from .engine.backends import available_backends
from .engine.errors import ModelError

DATA_BACKEND: HassKey[str] = HassKey(f"{DOMAIN}_backend")
DATA_BACKEND_LOCK: HassKey[asyncio.Lock] = HassKey(f"{DOMAIN}_backend_lock")


async def async_get_backend(hass: HomeAssistant) -> str:
    """Return the name of the best importable backend, installing LiteRT first if possible.

    Decided once per Home Assistant run; ModelError(backend_unavailable) when none works.
    """
    if (name := hass.data.get(DATA_BACKEND)) is not None:
        return name
    lock = hass.data.setdefault(DATA_BACKEND_LOCK, asyncio.Lock())
    async with lock:
        if (name := hass.data.get(DATA_BACKEND)) is not None:
            return name
        try:
            await async_process_requirements(hass, DOMAIN, [LITERT_REQUIREMENT])
        except RequirementsNotFound:
            LOGGER.info(
                "LiteRT (%s) cannot be installed here; using a fallback backend",
                LITERT_REQUIREMENT,
            )
        available = await hass.async_add_executor_job(available_backends)
        if not available:
            raise ModelError(
                "no inference backend: install ai-edge-litert or tflite",
                reason="backend_unavailable",
            )
        name = available[0]
        LOGGER.info("Cry Detector runs its models with the %s backend", name)
        hass.data[DATA_BACKEND] = name
        return name
