"""Diagnostics: configuration with credentials redacted, model card, backend, stats."""

from __future__ import annotations

from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator
from syrupy.assertion import SnapshotAssertion
from syrupy.filters import props

from custom_components.cry_detector.diagnostics import (
    async_get_config_entry_diagnostics,
)

from .conftest import setup_entry

# Timings vary from run to run.
VOLATILE = props("inference_ms_mean", "inference_ms_p95", "real_time_factor")


async def test_diagnostics(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    snapshot: SnapshotAssertion,
    mock_config_entry: MockConfigEntry,
) -> None:
    """Diagnostics after one recording, through the real HTTP endpoint."""
    await setup_entry(hass, mock_config_entry)
    diagnostics = await get_diagnostics_for_config_entry(
        hass, hass_client, mock_config_entry
    )
    assert diagnostics == snapshot(exclude=VOLATILE)
    stats = diagnostics["stats"]
    assert isinstance(stats, dict)
    assert isinstance(stats["inference_ms_mean"], float)
    recent = diagnostics["recent_probabilities"]
    assert isinstance(recent, list) and len(recent) == 20


async def test_stream_credentials_are_redacted(hass: HomeAssistant) -> None:
    """A stream URL's user name, password and token never reach diagnostics."""
    from custom_components.cry_detector.const import DOMAIN

    from .conftest import CRY_MODEL, OPTIONS

    entry = MockConfigEntry(
        domain=DOMAIN,
        title="Camera",
        data={
            "source_type": "ffmpeg",
            "input": "rtsp://parent:hunter2@10.0.0.5/live?token=abc123",
            "model_path": str(CRY_MODEL),
        },
        options=OPTIONS,
    )
    entry.add_to_hass(hass)
    # Not set up (no camera here): build the runtime data the way setup does, minus the source.
    from custom_components.cry_detector.data import CryDetectorData
    from custom_components.cry_detector.helpers import async_load_model, tracker_config
    from custom_components.cry_detector.runtime import CryListener

    card, backend = await async_load_model(hass, CRY_MODEL)
    entry.runtime_data = CryDetectorData(
        card,
        CRY_MODEL,
        CryListener(hass, entry, card, backend, tracker_config(card, OPTIONS)),
    )
    diagnostics = await async_get_config_entry_diagnostics(hass, entry)
    text = str(diagnostics)
    assert "hunter2" not in text and "parent" not in text and "abc123" not in text
    assert (
        diagnostics["entry"]["data"]["input"]
        == "rtsp://***:***@10.0.0.5/live?token=***"
    )
    assert diagnostics["stats"] is None
    await hass.async_add_executor_job(backend.close)
