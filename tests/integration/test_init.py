"""Setup, unload, reload and removal through Home Assistant's real loader; no leaks."""

from __future__ import annotations

import os
from pathlib import Path
import shutil
import threading

from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
)

from custom_components.cry_detector.const import (
    CONF_MODEL_PATH,
    CONF_SENSITIVITY,
    DOMAIN,
)
from tests.engine.audio import write_audio

from .conftest import (
    CRY_MODEL,
    OPTIONS,
    file_data,
    recording,
    setup_entry,
    state_of,
    wait_for_listener,
)

POOL_THREADS = ("SyncWorker", "ImportExecutor", "waitpid-", "ThreadPoolExecutor")


def own_threads() -> set[threading.Thread]:
    """Threads other than Home Assistant's executor pools (which outlive an entry)."""
    return {
        thread
        for thread in threading.enumerate()
        if not thread.name.startswith(POOL_THREADS)
    }


def child_processes() -> set[int]:
    """Process ids of this process's children (FFmpeg would show up here)."""
    children: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        text = (task / "children").read_text().split()
        children.update(int(pid) for pid in text)
    return children


async def test_setup_and_unload(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry
) -> None:
    """An entry loads, processes its recording and unloads without leaving threads behind."""
    threads_before = own_threads()
    children_before = child_processes()
    await setup_entry(hass, mock_config_entry)
    assert mock_config_entry.state is ConfigEntryState.LOADED
    data = mock_config_entry.runtime_data
    assert data.listener.backend.name == "litert"
    assert data.listener.stats is not None and data.listener.stats.windows > 0

    assert await hass.config_entries.async_unload(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    assert state_of(mock_config_entry) is ConfigEntryState.NOT_LOADED
    assert not own_threads() - threads_before
    assert child_processes() <= children_before


async def test_unload_while_listening_stops_everything(
    hass: HomeAssistant, tmp_path: Path
) -> None:
    """Unloading a live (looping, real-time) source stops its task, thread and file."""
    wav = write_audio(tmp_path / "loop.wav", recording(4.0, ()))
    entry = MockConfigEntry(
        domain=DOMAIN,
        title="Loop",
        data=file_data(wav, realtime=True, loop=True),
        options=OPTIONS,
    )
    threads_before = own_threads()
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    listener = entry.runtime_data.listener
    assert listener.task is not None and not listener.task.done()
    assert listener.running
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    assert listener.task is None and not listener.running
    assert not own_threads() - threads_before


async def test_reload_keeps_todays_totals(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    """A reload restores today's minutes and episodes from the entities' saved state."""
    minutes = hass.states.get("sensor.nursery_cry_minutes_today")
    episodes = hass.states.get("sensor.nursery_cry_episodes_today")
    assert minutes is not None and float(minutes.state) > 0
    assert episodes is not None and episodes.state == "1"

    await hass.config_entries.async_reload(init_integration.entry_id)
    await hass.async_block_till_done()
    await wait_for_listener(init_integration)
    # The recording is played again after the reload: its cry counts a second time.
    after = hass.states.get("sensor.nursery_cry_minutes_today")
    assert after is not None
    assert float(after.state) == pytest.approx(2 * float(minutes.state), abs=0.02)
    episodes = hass.states.get("sensor.nursery_cry_episodes_today")
    assert episodes is not None and episodes.state == "2"


async def test_invalid_model_is_a_setup_error(
    hass: HomeAssistant, cry_wav: Path, tmp_path: Path
) -> None:
    """A broken model fails setup for good (ConfigEntryError), with a translated reason."""
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"not a flatbuffer at all")
    shutil.copy(CRY_MODEL.with_suffix(".json"), broken.with_suffix(".json"))
    entry = MockConfigEntry(
        domain=DOMAIN,
        title="Nursery",
        data={**file_data(cry_wav), CONF_MODEL_PATH: str(broken)},
        options=OPTIONS,
    )
    entry.add_to_hass(hass)
    assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_ERROR
    assert entry.reason is not None and "broken.tflite" in entry.reason
    assert entry.error_reason_translation_key == "model_failed"


async def test_missing_card_is_a_setup_error(
    hass: HomeAssistant, cry_wav: Path, tmp_path: Path
) -> None:
    """A model without its card cannot be set up."""
    lone = tmp_path / "lone.tflite"
    shutil.copy(CRY_MODEL, lone)
    entry = MockConfigEntry(
        domain=DOMAIN,
        title="Nursery",
        data={**file_data(cry_wav), CONF_MODEL_PATH: str(lone)},
        options=OPTIONS,
    )
    entry.add_to_hass(hass)
    assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_ERROR


async def test_source_not_ready_raises_issue_and_recovers(
    hass: HomeAssistant,
    issue_registry: ir.IssueRegistry,
    tmp_path: Path,
    freezer: FrozenDateTimeFactory,
) -> None:
    """A source that cannot open yet: retry later with a repair issue; success deletes it."""
    wav = tmp_path / "later.wav"
    entry = MockConfigEntry(
        domain=DOMAIN, title="Nursery", data=file_data(wav), options=OPTIONS
    )
    entry.add_to_hass(hass)
    assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_RETRY
    assert entry.error_reason_translation_key == "source_failed"
    issue = issue_registry.async_get_issue(DOMAIN, f"source_{entry.entry_id}")
    assert issue is not None and issue.translation_key == "source_failed"
    assert issue.translation_placeholders is not None
    assert issue.translation_placeholders["name"] == "Nursery"

    write_audio(wav, recording())
    freezer.tick(60)
    async_fire_time_changed(hass)
    await hass.async_block_till_done(wait_background_tasks=True)
    assert state_of(entry) is ConfigEntryState.LOADED
    await wait_for_listener(entry)
    assert issue_registry.async_get_issue(DOMAIN, f"source_{entry.entry_id}") is None


async def test_remove_entry_deletes_issue(
    hass: HomeAssistant, issue_registry: ir.IssueRegistry, tmp_path: Path
) -> None:
    """Removing an entry stuck in retry removes its repair issue."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        title="Nursery",
        data=file_data(tmp_path / "nope.wav"),
        options=OPTIONS,
    )
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    assert (
        issue_registry.async_get_issue(DOMAIN, f"source_{entry.entry_id}") is not None
    )
    await hass.config_entries.async_remove(entry.entry_id)
    await hass.async_block_till_done()
    assert issue_registry.async_get_issue(DOMAIN, f"source_{entry.entry_id}") is None


async def test_options_apply_live_without_reload(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    """Changing options updates the tracker in place; the loaded runtime data stays."""
    data = init_integration.runtime_data
    hass.config_entries.async_update_entry(
        init_integration, options={**OPTIONS, CONF_SENSITIVITY: 80}
    )
    await hass.async_block_till_done()
    assert init_integration.runtime_data is data
    assert data.listener.tracker_config.threshold == pytest.approx(0.2)
    state = hass.states.get("sensor.nursery_cry_minutes_today")
    assert state is not None and state.state != STATE_UNAVAILABLE


async def test_unload_ffmpeg_source_leaves_no_process(
    hass: HomeAssistant, wav_server: str
) -> None:
    """An FFmpeg source's subprocess is gone after unload."""
    children_before = child_processes()
    entry = MockConfigEntry(
        domain=DOMAIN,
        title="Camera",
        data={
            "source_type": "ffmpeg",
            "input": f"http://{wav_server}/stream.wav",
            CONF_MODEL_PATH: str(CRY_MODEL),
        },
        options=OPTIONS,
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert state_of(entry) is ConfigEntryState.LOADED
    listener = entry.runtime_data.listener
    assert listener.running
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    assert child_processes() <= children_before
    assert not listener.running
