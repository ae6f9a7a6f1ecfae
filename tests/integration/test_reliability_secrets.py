"""A stream URL's credentials never reach Home Assistant's log, entry state or repair issue."""

from __future__ import annotations

import logging

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.cry_detector.const import CONF_MODEL_PATH, DOMAIN

from .conftest import CRY_MODEL, OPTIONS

SECRETS = ("nanny42", "hunter2", "s3cr3t")


@pytest.mark.usefixtures("socket_enabled")
async def test_unreachable_stream_with_credentials_is_logged_redacted(
    hass: HomeAssistant,
    issue_registry: ir.IssueRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    entry = MockConfigEntry(
        domain=DOMAIN,
        title="Camera",
        data={
            "source_type": "ffmpeg",
            # nothing listens on port 1: FFmpeg really runs and fails
            "input": "http://nanny42:hunter2@127.0.0.1:1/live?token=s3cr3t",
            CONF_MODEL_PATH: str(CRY_MODEL),
        },
        options=OPTIONS,
    )
    entry.add_to_hass(hass)
    assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_RETRY
    issue = issue_registry.async_get_issue(DOMAIN, f"source_{entry.entry_id}")
    assert issue is not None
    texts = [
        caplog.text,
        entry.reason or "",
        str(issue.translation_placeholders),
    ]
    assert "***" in caplog.text  # the URL was mentioned, redacted
    for text in texts:
        for secret in SECRETS:
            assert secret not in text
    await hass.config_entries.async_remove(entry.entry_id)
    await hass.async_block_till_done()
