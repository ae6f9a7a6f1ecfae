"""Cry clips on real Home Assistant: saved with pre/post-roll, retained, browsed, labelled."""

from __future__ import annotations

from datetime import timedelta
import json
from pathlib import Path
import time
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.components import media_source
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ServiceValidationError
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
import numpy as np
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from custom_components.cry_detector.const import (
    CONF_CLIP_MAX_MB,
    CONF_CLIP_RETENTION_DAYS,
    CONF_SAVE_CLIPS,
    DOMAIN,
)
from custom_components.cry_detector.engine import clips as clips_engine
from custom_components.cry_detector.engine.clips import read_sidecar
from tests.engine.audio import read_audio, write_audio

from .conftest import (
    CRY_END,
    CRY_START,
    OPTIONS,
    RATE,
    file_data,
    recording,
    setup_entry,
)

SLACK_SECONDS = 1.6


@pytest.fixture
def media_dir(hass: HomeAssistant, tmp_path: Path) -> Path:
    """A local media folder for the test."""
    folder = tmp_path / "media"
    folder.mkdir()
    hass.config.media_dirs = {"local": str(folder)}
    return folder


def clip_entry(cry_wav: Path, **options: Any) -> MockConfigEntry:
    """An entry playing the cry recording with clip saving on."""
    return MockConfigEntry(
        domain=DOMAIN,
        title="Nursery",
        entry_id="01KCRYDETECT0RCLIPSENTRY00",
        unique_id=f"file:{cry_wav}",
        data=file_data(cry_wav),
        options={**OPTIONS, CONF_SAVE_CLIPS: True, **options},
    )


async def run_entry(hass: HomeAssistant, entry: MockConfigEntry) -> list[Path]:
    """Set up the entry, play its recording, wait for the clips; return the FLAC files."""
    await setup_entry(hass, entry)
    await entry.runtime_data.listener.clips.async_wait()
    return sorted(Path(hass.config.media_dirs["local"]).rglob("*.flac"))


def rms(samples: np.ndarray) -> float:
    """Root mean square of int16 samples."""
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


def episode_clips(clips: list[Path]) -> list[Path]:
    """Only the episode clips (not the near misses)."""
    return [clip for clip in clips if read_sidecar(clip).get("kind") == "episode"]


async def test_episode_clip_saved(
    hass: HomeAssistant, media_dir: Path, cry_wav: Path
) -> None:
    """One episode: a FLAC with 3 s pre-roll and 2 s post-roll, sidecar and spectrogram."""
    entry = clip_entry(cry_wav)
    clips = episode_clips(await run_entry(hass, entry))
    assert len(clips) == 1
    clip = clips[0]
    assert clip.parent.parent == media_dir / DOMAIN / entry.entry_id
    sidecar = read_sidecar(clip)
    assert sidecar["label"] is None
    assert sidecar["model"]["name"]
    assert sidecar["pre_roll"] == pytest.approx(3.0, abs=0.01)
    assert sidecar["post_roll"] == pytest.approx(2.0, abs=0.01)
    assert sidecar["peak_probability"] >= 0.5
    episode = sidecar["event_end"] - sidecar["event_start"]
    assert episode == pytest.approx(CRY_END - CRY_START, abs=2 * SLACK_SECONDS)
    assert sidecar["duration"] == pytest.approx(episode + 5.0, abs=0.01)
    probabilities = [probability for _, probability in sidecar["windows"]]
    assert max(probabilities) == pytest.approx(sidecar["peak_probability"], abs=0.01)
    samples = read_audio(clip)
    assert samples.shape[0] == pytest.approx(sidecar["duration"] * RATE, abs=2)
    # The first 3 s are the quiet room before the cry: far quieter than the cry itself.
    assert rms(samples[: 2 * RATE]) * 5 < rms(samples[4 * RATE : 8 * RATE])
    png = clip.with_suffix(".png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


async def test_clips_off_by_default(
    hass: HomeAssistant, media_dir: Path, init_integration: MockConfigEntry
) -> None:
    """Without the option nothing is written and no audio is kept."""
    await init_integration.runtime_data.listener.clips.async_wait()
    assert not list(media_dir.rglob("*"))


def fake_clip(day_dir: Path, stem: str, start: float, size: int) -> Path:
    """Put a clip of `size` bytes (FLAC + sidecar) into a day folder; return its FLAC path."""
    day_dir.mkdir(parents=True, exist_ok=True)
    audio = day_dir / f"{stem}.flac"
    audio.write_bytes(b"\0" * size)
    sidecar = {"kind": "episode", "start": start, "label": "crying"}
    audio.with_suffix(".json").write_text(json.dumps(sidecar), encoding="utf-8")
    return audio


async def test_retention_by_age(
    hass: HomeAssistant, media_dir: Path, cry_wav: Path
) -> None:
    """Clips older than the retention period are deleted when a new one is saved."""
    entry = clip_entry(cry_wav, **{CONF_CLIP_RETENTION_DAYS: 7})
    folder = media_dir / DOMAIN / entry.entry_id
    now = time.time()
    old = fake_clip(folder / "2020-01-01", "08-00-00_episode", now - 8 * 86400, 10)
    recent = fake_clip(folder / "2020-01-02", "08-00-00_episode", now - 6 * 86400, 10)
    clips = await run_entry(hass, entry)
    assert not old.exists()
    assert not old.parent.exists()  # the emptied day folder goes too
    assert recent in clips
    assert len(episode_clips(clips)) == 2


async def test_retention_by_size(
    hass: HomeAssistant, media_dir: Path, cry_wav: Path
) -> None:
    """Over the size limit the oldest clips go first; the new clip stays."""
    entry = clip_entry(cry_wav, **{CONF_CLIP_MAX_MB: 1.0})
    folder = media_dir / DOMAIN / entry.entry_id
    now = time.time()
    old = [
        fake_clip(folder / "2020-01-01", f"0{hour}-00-00_episode", now - 3600, 300_000)
        for hour in range(1, 5)
    ]
    clips = await run_entry(hass, entry)
    new = [clip for clip in clips if clip not in old]
    assert new
    total = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
    assert total <= 1_000_000
    kept = [clip.exists() for clip in old]
    assert kept == sorted(kept)  # only the oldest were deleted
    assert not kept[0]


async def test_disk_full_pauses_saving(
    hass: HomeAssistant,
    media_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A full disk (a real ENOSPC from /dev/full) is logged once and pauses saving."""

    def encode_to_full_disk(samples: np.ndarray, rate: int, path: Path) -> None:
        path.write_bytes(b"")
        with Path("/dev/full").open("wb") as full:
            full.write(samples.tobytes())
            full.flush()

    monkeypatch.setattr(clips_engine, "encode_flac", encode_to_full_disk)
    wav = write_audio(
        tmp_path / "two.wav", recording(40.0, ((5.0, 12.0), (25.0, 32.0)))
    )
    entry = clip_entry(wav)
    await run_entry(hass, entry)
    listener = entry.runtime_data.listener
    assert listener.clips.paused
    assert not listener.clips.enabled
    assert not [path for path in media_dir.rglob("*") if path.is_file()]
    assert caplog.text.count("Saving clips is paused") == 1
    assert listener.last_episode is not None  # detection went on
    assert entry.state is ConfigEntryState.LOADED


async def test_options_turn_saving_on_live(
    hass: HomeAssistant, media_dir: Path, init_integration: MockConfigEntry
) -> None:
    """The options flow offers the clip settings; saving is applied without a reload."""
    listener = init_integration.runtime_data.listener
    assert not listener.clips.enabled
    result = await hass.config_entries.options.async_init(init_integration.entry_id)
    schema = result["data_schema"]
    assert schema is not None
    schema_keys = {str(key) for key in schema.schema}
    assert {CONF_SAVE_CLIPS, CONF_CLIP_RETENTION_DAYS, CONF_CLIP_MAX_MB} <= schema_keys
    options = {
        **OPTIONS,
        CONF_SAVE_CLIPS: True,
        CONF_CLIP_RETENTION_DAYS: 10,
        CONF_CLIP_MAX_MB: 100,
    }
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], options
    )
    await hass.async_block_till_done()
    assert init_integration.options == options
    assert init_integration.runtime_data.listener is listener
    assert listener.clips.enabled


async def browse(hass: HomeAssistant, identifier: str = "") -> Any:
    """Browse the cry clips media source."""
    suffix = f"/{identifier}" if identifier else ""
    return await media_source.async_browse_media(
        hass, f"media-source://{DOMAIN}{suffix}"
    )


async def test_media_source(
    hass: HomeAssistant,
    media_dir: Path,
    cry_wav: Path,
    hass_client: ClientSessionGenerator,
    hass_client_no_auth: ClientSessionGenerator,
) -> None:
    """Clips are browsable (entry, day, clip with spectrogram) and playable."""
    assert await async_setup_component(hass, "media_source", {})
    entry = clip_entry(cry_wav)
    clip = episode_clips(await run_entry(hass, entry))[0]
    root = await browse(hass)
    assert [child.title for child in root.children] == ["Nursery"]
    days = await browse(hass, root.children[0].identifier)
    assert [child.title for child in days.children] == [clip.parent.name]
    day = await browse(hass, days.children[0].identifier)
    item = next(child for child in day.children if "cry" in child.title)
    assert item.can_play
    assert item.identifier == f"{entry.entry_id}/{clip.parent.name}/{clip.stem}"
    resolved = await media_source.async_resolve_media(hass, item.media_content_id, None)
    assert resolved.mime_type == "audio/flac"
    client = await hass_client()
    response = await client.get(resolved.url)
    assert response.status == 200
    assert await response.read() == clip.read_bytes()
    anonymous = await hass_client_no_auth()
    assert (await anonymous.get(resolved.url)).status == 401
    thumbnail = await anonymous.get(item.thumbnail)  # signed: works without a token
    assert thumbnail.status == 200
    assert await thumbnail.read() == clip.with_suffix(".png").read_bytes()
    assert (await client.get("/api/cry_detector/clips/x/../secrets.flac")).status == 404
    with pytest.raises(media_source.Unresolvable):
        await media_source.async_resolve_media(
            hass, f"media-source://{DOMAIN}/{entry.entry_id}/2020-01-01/nope", None
        )


async def test_label_and_delete(
    hass: HomeAssistant, media_dir: Path, cry_wav: Path
) -> None:
    """label_clip writes the label into the sidecar or deletes the clip; bad clips are refused."""
    entry = clip_entry(cry_wav)
    clip = episode_clips(await run_entry(hass, entry))[0]
    content_id = (
        f"media-source://{DOMAIN}/{entry.entry_id}/{clip.parent.name}/{clip.stem}"
    )
    await hass.services.async_call(
        DOMAIN, "label_clip", {"clip": content_id, "label": "not_crying"}, blocking=True
    )
    assert read_sidecar(clip)["label"] == "not_crying"
    await hass.services.async_call(
        DOMAIN, "label_clip", {"clip": str(clip), "label": "crying"}, blocking=True
    )
    assert read_sidecar(clip)["label"] == "crying"
    assert read_sidecar(clip)["windows"]  # the rest of the sidecar is kept
    with pytest.raises(ServiceValidationError) as outside:
        await hass.services.async_call(
            DOMAIN,
            "label_clip",
            {"clip": str(cry_wav), "label": "crying"},
            blocking=True,
        )
    assert outside.value.translation_key == "clip_outside_folder"
    await hass.services.async_call(
        DOMAIN, "label_clip", {"clip": content_id, "label": "delete"}, blocking=True
    )
    assert not clip.exists()
    assert not clip.with_suffix(".json").exists()
    assert not clip.with_suffix(".png").exists()
    with pytest.raises(ServiceValidationError) as missing:
        await hass.services.async_call(
            DOMAIN, "label_clip", {"clip": content_id, "label": "crying"}, blocking=True
        )
    assert missing.value.translation_key == "clip_not_found"


async def test_delete_all_clips(
    hass: HomeAssistant, media_dir: Path, cry_wav: Path
) -> None:
    """One action deletes every clip of every entry."""
    entry = clip_entry(cry_wav)
    assert await run_entry(hass, entry)
    fake_clip(
        media_dir / DOMAIN / "other-entry" / "2020-01-01", "08-00-00_episode", 0, 5
    )
    await hass.services.async_call(DOMAIN, "delete_all_clips", {}, blocking=True)
    assert not (media_dir / DOMAIN).exists()
    await hass.services.async_call(DOMAIN, "delete_all_clips", {}, blocking=True)


async def test_retention_runs_at_setup_and_midnight_even_when_off(
    hass: HomeAssistant,
    media_dir: Path,
    init_integration: MockConfigEntry,
    freezer: FrozenDateTimeFactory,
) -> None:
    """Expired clips go at setup and at every midnight, also with saving turned off."""
    folder = media_dir / DOMAIN / init_integration.entry_id
    now = dt_util.utcnow().timestamp()
    expired = fake_clip(folder / "2020-01-01", "08-00-00_episode", now - 31 * 86400, 5)
    aging = fake_clip(folder / "2020-01-02", "08-00-00_episode", now - 29.5 * 86400, 5)
    await hass.config_entries.async_reload(init_integration.entry_id)
    await hass.async_block_till_done()
    await init_integration.runtime_data.listener.clips.async_wait()
    assert not expired.exists()
    assert aging.exists()
    listener = init_integration.runtime_data.listener
    tomorrow = dt_util.now().date() + timedelta(days=1)
    # A day past the next midnight: the clip is then over 30 days old whatever the hour now.
    freezer.move_to(dt_util.start_of_local_day(tomorrow) + timedelta(days=1, seconds=1))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    await listener.clips.async_wait()
    assert not aging.exists()
