"""Saving cry clips of one entry: where they go, when they are written, how long they stay."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from homeassistant.core import HomeAssistant, callback
from homeassistant.util import dt as dt_util

from .const import (
    CLIP_NEAR_MISS_INTERVAL,
    CLIP_POST_ROLL_SECONDS,
    CLIP_PRE_ROLL_SECONDS,
    CLIPS_FOLDER,
    CONF_CLIP_MAX_MB,
    CONF_CLIP_RETENTION_DAYS,
    CONF_SAVE_CLIPS,
    DEFAULT_CLIP_MAX_MB,
    DEFAULT_CLIP_RETENTION_DAYS,
    LOGGER,
)
from .data import CryDetectorConfigEntry
from .engine.card import ModelCard
from .engine.clips import (
    CLIP_SUFFIX,
    ClipConfig,
    ClipJob,
    ClipRecorder,
    ClipStorageFullError,
    TeeSource,
    enforce_retention,
    write_clip,
)
from .engine.pipeline import WindowResult
from .engine.sources import AudioSource
from .engine.tracker import Episode

# Extra audio kept beyond the longest clip, so a clip's start is still there when it is cut.
TEE_MARGIN_SECONDS = 10.0
SECONDS_PER_DAY = 86400.0


def clips_root(hass: HomeAssistant) -> Path:
    """The folder holding every entry's clips (inside the local media folder)."""
    media = hass.config.media_dirs.get("local") or hass.config.path("media")
    return Path(media) / CLIPS_FOLDER


def entry_clips_dir(hass: HomeAssistant, entry_id: str) -> Path:
    """The folder holding one entry's clips."""
    return clips_root(hass) / entry_id


class ClipSaver:
    """Keeps recent audio of an entry and saves its episodes (when the option is on)."""

    def __init__(
        self,
        hass: HomeAssistant,
        entry: CryDetectorConfigEntry,
        card: ModelCard,
        threshold: float,
    ) -> None:
        """Read the options; nothing is kept or saved while they say off."""
        self.hass = hass
        self.entry = entry
        self.card = card
        self.directory = entry_clips_dir(hass, entry.entry_id)
        self.paused = False
        self.saved: list[Path] = []
        self._threshold = threshold
        self._tee: TeeSource | None = None
        self._recorder: ClipRecorder | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.apply_options(entry.options, threshold)

    @property
    def enabled(self) -> bool:
        """Whether clips are saved."""
        return bool(self.entry.options.get(CONF_SAVE_CLIPS)) and not self.paused

    def _config(self) -> ClipConfig:
        """The clip settings for the current threshold."""
        return ClipConfig(
            pre_roll=CLIP_PRE_ROLL_SECONDS,
            post_roll=CLIP_POST_ROLL_SECONDS,
            threshold=self._threshold,
            near_miss_interval=CLIP_NEAR_MISS_INTERVAL,
        )

    def _keep_seconds(self) -> float:
        """How much audio the tee keeps (none while saving is off: privacy)."""
        if not self.enabled:
            return 0.0
        config = self._config()
        return config.pre_roll + config.max_seconds + TEE_MARGIN_SECONDS

    @callback
    def apply_options(self, options: Mapping[str, Any], threshold: float) -> None:
        """Apply new options live (turning saving on again also lifts a disk-full pause)."""
        self.paused = False
        self._threshold = threshold
        if self._tee is not None:
            self._tee.keep_seconds = self._keep_seconds()
        if self._recorder is not None:
            self._recorder.config = self._config()

    def wrap(self, source: AudioSource) -> AudioSource:
        """Return the source the pipeline should read: a tee that remembers recent audio."""
        self._tee = TeeSource(source, self._keep_seconds())
        self._recorder = ClipRecorder(
            self._tee,
            self._config(),
            {"name": self.card.name, "version": self.card.version},
        )
        return self._tee

    @callback
    def on_result(self, result: WindowResult) -> None:
        """Feed a window result; save the clips it completes."""
        if self._recorder is None or not self.enabled:
            return
        for job in self._recorder.feed(result):
            self._async_save(job)

    @callback
    def on_end(self, ended: Episode | None) -> None:
        """The source ended (closing `ended`): save what is pending with the audio there is."""
        if self._recorder is not None and self.enabled:
            for job in self._recorder.flush(ended):
                self._async_save(job)
        self._tee = self._recorder = None

    @callback
    def _async_save(self, job: ClipJob) -> None:
        """Write a clip in a worker thread."""
        task = self.entry.async_create_background_task(
            self.hass, self._async_write(job), name=f"save clip {self.entry.title}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _clip_path(self, job: ClipJob) -> Path:
        """Return a free path (without suffix) for a clip: <day>/<time>_<kind>."""
        local = dt_util.as_local(dt_util.utc_from_timestamp(job.start))
        day = self.directory / local.date().isoformat()
        stem = f"{local:%H-%M-%S}_{job.metadata['kind']}"
        clip = day / stem
        number = 1
        while clip.with_suffix(CLIP_SUFFIX).exists():
            number += 1
            clip = day / f"{stem}_{number}"
        return clip

    def _write(self, job: ClipJob) -> Path:
        """Write a clip and apply the retention limits (blocking)."""
        audio = write_clip(job, self._clip_path(job), self.card.features)
        self.enforce_retention()
        return audio

    def enforce_retention(self) -> list[Path]:
        """Delete this entry's clips beyond the retention limits (blocking)."""
        options = self.entry.options
        days = float(options.get(CONF_CLIP_RETENTION_DAYS, DEFAULT_CLIP_RETENTION_DAYS))
        megabytes = float(options.get(CONF_CLIP_MAX_MB, DEFAULT_CLIP_MAX_MB))
        return enforce_retention(
            self.directory,
            max_age_seconds=days * SECONDS_PER_DAY,
            max_bytes=round(megabytes * 1_000_000),
            now=dt_util.utcnow().timestamp(),
        )

    @callback
    def async_start_retention(self) -> None:
        """Apply the retention limits in the background (also while saving is off)."""
        task = self.entry.async_create_background_task(
            self.hass,
            self._async_retention(),
            name=f"clip retention {self.entry.title}",
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _async_retention(self) -> None:
        """Delete expired clips; a failure is logged, never raised."""
        try:
            await self.hass.async_add_executor_job(self.enforce_retention)
        except OSError as err:
            LOGGER.warning(
                "Could not delete old clips of %s: %s", self.entry.title, err
            )

    async def _async_write(self, job: ClipJob) -> None:
        """Save one clip; a full disk pauses saving (logged once), nothing crashes."""
        try:
            audio = await self.hass.async_add_executor_job(self._write, job)
        except ClipStorageFullError as err:
            if not self.paused:
                LOGGER.warning("Saving clips is paused: %s", err)
            self.paused = True
            if self._tee is not None:
                self._tee.keep_seconds = 0.0
            return
        except OSError as err:
            LOGGER.warning("Could not save a clip of %s: %s", self.entry.title, err)
            return
        self.saved.append(audio)
        LOGGER.debug("Saved clip %s", audio)

    async def async_wait(self) -> None:
        """Wait until every clip being written is on disk."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))
