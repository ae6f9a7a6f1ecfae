"""A prediction stuck in native code: reported as a model issue, then a fresh model takes over."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
import threading
from unittest.mock import patch

from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir
from homeassistant.util import dt as dt_util
import numpy as np
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
)

from custom_components.cry_detector import runtime
from custom_components.cry_detector.const import DOMAIN, ISSUE_MODEL
from custom_components.cry_detector.engine.backends import Backend
from tests.engine.audio import write_audio

from .conftest import OPTIONS, file_data, recording


class StuckBackend:
    """A real backend whose next prediction hangs until released (a wedged native call)."""

    def __init__(self, inner: Backend) -> None:
        """Wrap the real backend."""
        self.inner = inner
        self.name = inner.name
        self.input_shape = inner.input_shape
        self.output_shape = inner.output_shape
        self.release = threading.Event()
        self.entered = threading.Event()

    def predict(self, patch: np.ndarray) -> np.ndarray:
        """Hang until released, then answer like the real model."""
        self.entered.set()
        self.release.wait(timeout=60)
        return self.inner.predict(patch)

    def close(self) -> None:
        """Must not be called while stuck: closing would block on the interpreter's lock."""
        raise AssertionError("a stuck backend was closed")


async def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll until condition() holds."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.05)


async def test_stuck_prediction_restarts_with_a_fresh_model(
    hass: HomeAssistant, tmp_path: Path, issue_registry: ir.IssueRegistry
) -> None:
    """Stuck > stall time: model issue raised, the model reloaded, listening resumes, issue cleared."""
    wav = write_audio(tmp_path / "nursery.wav", recording(6.0, ()))
    entry = MockConfigEntry(
        domain=DOMAIN,
        title="Nursery",
        data=file_data(wav, realtime=True, loop=True),
        options=OPTIONS,
    )
    entry.add_to_hass(hass)
    with patch.object(runtime, "INFERENCE_STALL_SECONDS", 0.3):
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        listener = entry.runtime_data.listener
        stuck = StuckBackend(listener.backend)
        await listener.async_stop()
        listener.backend = stuck
        listener.async_start()
        try:
            await wait_until(stuck.entered.is_set)
            await wait_until(
                lambda: listener.stats is not None and listener.stats.stalled
            )

            async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=25))
            await wait_until(lambda: listener.backend is not stuck)
            issue = issue_registry.async_get_issue(DOMAIN, listener.issue_id)
            assert issue is not None and issue.translation_key == ISSUE_MODEL

            await wait_until(
                lambda: listener.stats is not None and listener.stats.windows >= 2
            )
            await hass.async_block_till_done()
            assert issue_registry.async_get_issue(DOMAIN, listener.issue_id) is None
            assert listener.available
        finally:
            stuck.release.set()
        assert await hass.config_entries.async_unload(entry.entry_id)
        await hass.async_block_till_done()
