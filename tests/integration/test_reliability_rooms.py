"""Reliability with several entries: three rooms at once, unloading one, 50 reloads without leaks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import gc
import os
from pathlib import Path
import threading

from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.cry_detector.const import CONF_MODEL_PATH, DOMAIN
from custom_components.cry_detector.engine.pipeline import WORKER_THREAD_NAME
from custom_components.cry_detector.runtime import CryListener
from tests.engine.audio import write_audio

from .conftest import (
    CRY_MODEL,
    OPTIONS,
    file_data,
    recording,
    state_of,
    wait_for_listener,
)
from .test_init import child_processes, own_threads

# Detection is window-based (0.5 s hops, 1 s patches): allow this much per episode.
SLACK_SECONDS = 1.6
RELOADS = 50
ROOMS: dict[str, tuple[tuple[float, float], ...]] = {
    "Nursery": ((8.0, 18.0),),
    "Bedroom": (),
    "Playroom": ((3.0, 9.0), (16.0, 26.0)),
}


def open_descriptors() -> int:
    """Number of file descriptors this process holds."""
    return sum(1 for _ in Path(f"/proc/{os.getpid()}/fd").iterdir())


def state(hass: HomeAssistant, entity_id: str) -> str:
    """An entity's state string."""
    current = hass.states.get(entity_id)
    assert current is not None, entity_id
    return current.state


def windows(listener: CryListener) -> int:
    """Windows the listener's pipeline has processed so far."""
    stats = listener.stats
    return stats.windows if stats is not None else 0


def pipeline_threads() -> list[threading.Thread]:
    """Pipeline worker threads alive now."""
    return [t for t in threading.enumerate() if t.name == WORKER_THREAD_NAME]


async def wait_until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    """Poll until condition() holds (audio runs in real time)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


def room_entry(title: str, data: dict[str, object]) -> MockConfigEntry:
    """An entry for one room."""
    return MockConfigEntry(
        domain=DOMAIN,
        title=title,
        unique_id=f"{title}:{data.get('path') or data.get('input')}",
        data=data,
        options=dict(OPTIONS),
    )


async def set_up(hass: HomeAssistant, entries: list[MockConfigEntry]) -> None:
    """Add and set up entries one after another, as a user adding rooms would."""
    for entry in entries:
        entry.add_to_hass(hass)
        assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()


async def test_three_rooms_count_their_own_cries(
    hass: HomeAssistant, tmp_path: Path
) -> None:
    """Each room's file, totals, entities and pipeline are its own."""
    entries = [
        room_entry(
            title,
            file_data(write_audio(tmp_path / f"{title}.wav", recording(30.0, cries))),
        )
        for title, cries in ROOMS.items()
    ]
    await set_up(hass, entries)
    for entry in entries:
        await wait_for_listener(entry)
    for entry, cries in zip(entries, ROOMS.values(), strict=True):
        listener = entry.runtime_data.listener
        totals = listener.today_totals()
        assert totals.episodes == len(cries), entry.title
        truth = sum(end - start for start, end in cries)
        assert abs(totals.seconds - truth) <= SLACK_SECONDS * max(1, len(cries))
        assert listener.stats is not None and listener.stats.windows == 58
        slug = entry.title.lower()
        episodes = hass.states.get(f"sensor.{slug}_cry_episodes_today")
        assert episodes is not None and episodes.state == str(len(cries))
        minutes = hass.states.get(f"sensor.{slug}_cry_minutes_today")
        assert minutes is not None
        assert float(minutes.state) == pytest.approx(round(totals.seconds / 60, 2))
    for entry in entries:
        assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()


async def test_unloading_one_room_leaves_the_others_listening(
    hass: HomeAssistant, tmp_path: Path
) -> None:
    """Live (looping, real-time) rooms: one unloaded; the other two keep processing audio."""
    entries = [
        room_entry(
            title,
            file_data(
                write_audio(tmp_path / f"{title}.wav", recording(4.0, ())),
                realtime=True,
                loop=True,
            ),
        )
        for title in ROOMS
    ]
    await set_up(hass, entries)
    listeners: list[CryListener] = [entry.runtime_data.listener for entry in entries]
    await wait_until(lambda: all(windows(listener) > 0 for listener in listeners))
    assert len(pipeline_threads()) == 3
    nursery, bedroom, playroom = entries

    assert await hass.config_entries.async_unload(bedroom.entry_id)
    await hass.async_block_till_done()
    assert state_of(bedroom) is ConfigEntryState.NOT_LOADED
    assert listeners[1].task is None and not listeners[1].running
    assert state(hass, "binary_sensor.bedroom_crying") == STATE_UNAVAILABLE
    assert len(pipeline_threads()) == 2
    before = [windows(listeners[i]) for i in (0, 2)]
    await wait_until(
        lambda: all(
            windows(listeners[i]) >= before[n] + 2 for n, i in enumerate((0, 2))
        )
    )
    for entry in (nursery, playroom):
        assert state_of(entry) is ConfigEntryState.LOADED
        assert entry.runtime_data.listener.running
        assert state(hass, f"binary_sensor.{entry.title.lower()}_crying") == "off"

    for entry in (nursery, playroom):
        assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    assert not pipeline_threads()


async def reload_until_running(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    """Reload an entry and wait until its new pipeline runs."""
    assert await hass.config_entries.async_reload(entry.entry_id)
    await wait_until(lambda: entry.runtime_data.listener.running)


async def test_fifty_reloads_leak_no_thread_process_or_descriptor(
    hass: HomeAssistant, tmp_path: Path, wav_server: str
) -> None:
    """A live file room and an FFmpeg stream room reloaded 50 times each."""
    loop_wav = write_audio(tmp_path / "loop.wav", recording(4.0, ()))
    entries = [
        room_entry("Nursery", file_data(loop_wav, realtime=True, loop=True)),
        room_entry(
            "Camera",
            {
                "source_type": "ffmpeg",
                "input": f"http://{wav_server}/stream.wav",
                CONF_MODEL_PATH: str(CRY_MODEL),
            },
        ),
    ]
    await set_up(hass, entries)
    for (
        entry
    ) in entries:  # warm up: executor pools, imports, the server's first clients
        await reload_until_running(hass, entry)
    for entry in entries:
        assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    threads, descriptors, children = (
        own_threads(),
        open_descriptors(),
        child_processes(),
    )

    for entry in entries:
        assert await hass.config_entries.async_setup(entry.entry_id)
    for _ in range(RELOADS):
        await asyncio.gather(*(reload_until_running(hass, e) for e in entries))
        assert len(pipeline_threads()) <= 2
        assert len(child_processes() - children) <= 1  # at most the one FFmpeg
    for entry in entries:
        assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()

    assert not own_threads() - threads
    assert not child_processes() - children
    # Closed transports give their descriptors back when collected; allow for a slow machine.
    await wait_until(
        lambda: gc.collect() >= 0 and open_descriptors() <= descriptors, timeout=20.0
    )
