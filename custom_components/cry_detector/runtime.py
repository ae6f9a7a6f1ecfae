"""The per-entry listener: runs the engine pipeline, keeps today's totals, feeds the entities."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir, restore_state
from homeassistant.helpers.event import async_call_later, async_track_point_in_time
from homeassistant.util import dt as dt_util

from .clips import ClipSaver
from .const import (
    CONF_REALTIME,
    CONF_SOURCE_TYPE,
    DOMAIN,
    EVENT_CRY_STARTED,
    EVENT_CRY_STOPPED,
    ISSUE_GENERIC,
    ISSUE_MODEL,
    ISSUE_REASONS,
    LOGGER,
    RECENT_PROBABILITIES,
    RETRY_DELAYS,
    SourceType,
)
from .daily import CryLedger, DayTotals
from .data import CryDetectorConfigEntry
from .engine.backends import Backend
from .engine.card import ModelCard
from .engine.errors import CryDetectorError, ModelError, SourceError
from .engine.pipeline import Pipeline, PipelineStats, WindowResult
from .engine.sources import AudioSource
from .engine.tracker import Episode, TrackerConfig, TrackerUpdate
from .helpers import async_create_source, async_load_model, source_error

LIVE_QUEUE_SECONDS = 5.0
FAST_FILE_QUEUE_SECONDS = 3600.0
# No window result for this long while listening: the source is treated as failed.
STALL_SECONDS = 20.0
INFERENCE_STALL_SECONDS = (
    10.0  # a prediction running longer is stuck (pipeline stats.stalled)
)

type EventCallback = Callable[[str, dict[str, Any]], None]


def _episode_attributes(episode: Episode) -> dict[str, Any]:
    """Return the event attributes of an episode."""
    return {
        "duration": round(episode.duration, 1),
        "peak_probability": round(episode.peak_probability, 3),
    }


class CryListener:
    """Owns the audio source and pipeline of one entry; entities read its state."""

    def __init__(
        self,
        hass: HomeAssistant,
        entry: CryDetectorConfigEntry,
        card: ModelCard,
        backend: Backend,
        tracker_config: TrackerConfig,
    ) -> None:
        """Start idle; async_start() begins listening."""
        self.hass = hass
        self.entry = entry
        self.card = card
        self.backend = backend
        self.ledger = CryLedger()
        self.listening = True
        self.failure: CryDetectorError | None = None
        self.running = False
        self.crying = False
        self.probability: float | None = None
        self.level_dbfs: float | None = None
        self.current_episode: Episode | None = None
        self.last_episode: Episode | None = None
        self.last_started: datetime | None = None
        self.recent_probabilities: deque[float] = deque(maxlen=RECENT_PROBABILITIES)
        self.last_stats: PipelineStats | None = None
        self.next_retry: datetime | None = None
        self._tracker_config = tracker_config
        self._pipeline: Pipeline | None = None
        self._task: asyncio.Task[None] | None = None
        self._listeners: list[CALLBACK_TYPE] = []
        self._event_listeners: list[EventCallback] = []
        self._last_result = 0.0
        self._delivered = False
        self._cancel_watchdog: CALLBACK_TYPE | None = None
        self._cancel_midnight: CALLBACK_TYPE = lambda: None
        self._source_type = SourceType(entry.data[CONF_SOURCE_TYPE])
        self.clips = ClipSaver(hass, entry, card, tracker_config.threshold)

    # -- state for entities ---------------------------------------------------------------------

    @property
    def available(self) -> bool:
        """Whether the source works (or is deliberately paused)."""
        return self.failure is None

    @property
    def live(self) -> bool:
        """Whether live values (crying, probability, level) mean something right now."""
        return self.listening and self.available and self.running

    @property
    def tracker_config(self) -> TrackerConfig:
        """The tracker settings in use."""
        return self._tracker_config

    @property
    def stats(self) -> PipelineStats | None:
        """Pipeline statistics (of the running pipeline, else the last one)."""
        if self._pipeline is not None:
            return self._pipeline.stats
        return self.last_stats

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The background task running the source (None while stopped)."""
        return self._task

    @staticmethod
    def today() -> date:
        """Today's date in Home Assistant's time zone."""
        return dt_util.now().date()

    def today_totals(self) -> DayTotals:
        """Cry seconds and episodes of today."""
        return self.ledger.totals(self.today())

    @callback
    def async_add_listener(self, update: CALLBACK_TYPE) -> CALLBACK_TYPE:
        """Call `update` whenever the state changes; return a remover."""
        self._listeners.append(update)
        return lambda: self._listeners.remove(update)

    @callback
    def async_add_event_listener(self, handler: EventCallback) -> CALLBACK_TYPE:
        """Call `handler(event_type, attributes)` when an episode starts or stops."""
        self._event_listeners.append(handler)
        return lambda: self._event_listeners.remove(handler)

    @callback
    def async_track_midnight(self) -> CALLBACK_TYPE:
        """Refresh the entities and expire old clips now and at every local midnight.

        Returns a canceller.
        """

        @callback
        def _midnight(_now: datetime) -> None:
            self._notify()
            self.clips.async_start_retention()
            _schedule()

        def _schedule() -> None:
            midnight = dt_util.start_of_local_day(self.today() + timedelta(days=1))
            self._cancel_midnight = async_track_point_in_time(
                self.hass, _midnight, midnight
            )

        _schedule()
        self.clips.async_start_retention()
        return self._async_cancel_midnight

    @callback
    def _async_cancel_midnight(self) -> None:
        """Stop the midnight refresh."""
        self._cancel_midnight()

    @callback
    def _notify(self) -> None:
        """Tell every entity to refresh."""
        for update in list(self._listeners):
            update()

    # -- control --------------------------------------------------------------------------------

    @callback
    def async_start(self, source: AudioSource | None = None) -> None:
        """Start listening in a background task (with an already opened source, if given)."""
        if self._task is not None and not self._task.done():
            return
        self._task = self.entry.async_create_background_task(
            self.hass, self._async_run(source), name=f"{DOMAIN} {self.entry.title}"
        )

    async def async_stop(self) -> None:
        """Stop listening: cancel the task; source, worker thread and subprocess end with it."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        await asyncio.wait([task])

    async def async_shutdown(self) -> None:
        """Stop listening for good and release the model (entry unload or failed setup)."""
        await self.async_stop()
        await self.clips.async_wait()
        stats = self.last_stats
        if stats is not None and stats.stalled:
            # A prediction stuck in native code holds the backend; closing would block a worker.
            LOGGER.warning(
                "%s: model still busy at unload, left to finish", self.entry.title
            )
            return
        await self.hass.async_add_executor_job(self.backend.close)

    async def async_set_listening(self, listening: bool) -> None:
        """Turn capture on or off (off closes the source: privacy)."""
        if listening == self.listening:
            return
        self.listening = listening
        if listening:
            self.async_start()
        else:
            await self.async_stop()
            self._clear_failure()
        self._notify()

    @callback
    def set_tracker_config(self, config: TrackerConfig) -> None:
        """Apply new tracker settings live (keeps the open episode and today's totals)."""
        self._tracker_config = config
        self.clips.apply_options(self.entry.options, config.threshold)
        if self._pipeline is not None:
            self._pipeline.set_tracker_config(config)
        self._notify()

    # -- the background task --------------------------------------------------------------------

    async def _async_run(self, source: AudioSource | None) -> None:
        """Open, run and reopen the source with backoff until stopped or the file ends."""
        attempt = 0
        while True:
            self._delivered = False
            try:
                if source is None:
                    source = await async_create_source(
                        self.hass, self.entry.data, self.card.features.sample_rate
                    )
                    await source.open()
                await self._async_run_pipeline(source)
            except (CryDetectorError, OSError) as err:
                self.async_report_failure(source_error(err))
            except Exception as err:  # noqa: BLE001 - a bug must not silently end listening
                LOGGER.exception(
                    "Unexpected error while listening to %s", self.entry.title
                )
                self.async_report_failure(source_error(err))
            else:
                if self._source_type is SourceType.FILE:
                    return
                self.async_report_failure(
                    SourceError(
                        f"{source.description} stopped delivering audio",
                        reason="device_lost",
                    )
                )
            finally:
                if source is not None:
                    await source.close()
                    source = None
            if self._delivered:
                attempt = 0
            delay = RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)]
            attempt += 1
            LOGGER.debug("Retrying %s in %.0f s", self.entry.title, delay)
            await self._async_sleep(delay)

    async def _async_sleep(self, delay: float) -> None:
        """Wait on a Home Assistant timer (so tests can move time forward)."""
        woken: asyncio.Future[None] = self.hass.loop.create_future()

        @callback
        def _wake(_now: datetime) -> None:
            if not woken.done():
                woken.set_result(None)

        cancel = async_call_later(self.hass, delay, _wake)
        self.next_retry = dt_util.utcnow() + timedelta(seconds=delay)
        try:
            await woken
        finally:
            self.next_retry = None
            cancel()

    def _queue_seconds(self) -> float:
        """Backlog the pipeline may hold: a file read faster than real time must never drop."""
        if self._source_type is SourceType.FILE and not self.entry.data.get(
            CONF_REALTIME
        ):
            return FAST_FILE_QUEUE_SECONDS
        return LIVE_QUEUE_SECONDS

    async def _async_run_pipeline(self, source: AudioSource) -> None:
        """Run one pipeline on an opened source until it ends; flush the tracker after."""
        pipeline = Pipeline(
            self.clips.wrap(source),
            self.card,
            self.backend,
            self._tracker_config,
            self._on_result,
            queue_seconds=self._queue_seconds(),
            stall_seconds=INFERENCE_STALL_SECONDS,
        )
        self._pipeline = pipeline
        self.running = True
        self._notify()
        self._start_watchdog(source)
        try:
            await pipeline.run()
        finally:
            self._stop_watchdog()
            self._pipeline = None
            self.last_stats = pipeline.stats
            self.running = False
            flushed = pipeline.tracker.flush()
            self._apply(flushed)
            self.clips.on_end(flushed.ended)
            self.probability = self.level_dbfs = None
            self._notify()

    # -- results --------------------------------------------------------------------------------

    @callback
    def _on_result(self, result: WindowResult) -> None:
        """Handle one window result (on the event loop)."""
        self._last_result = dt_util.utcnow().timestamp()
        self._delivered = True
        self._clear_failure()
        self.probability = result.probability
        self.level_dbfs = result.level_dbfs
        if (
            result.end > result.start
        ):  # not the zero-length flush at the end of a source
            self.recent_probabilities.append(round(result.probability, 4))
        self._apply(result.update)
        self.clips.on_result(result)
        self._notify()
        if result.update.ended is not None:
            self._save_totals()

    @callback
    def _save_totals(self) -> None:
        """Write the restore states now, so a crash keeps every finished episode.

        Home Assistant dumps them only every 15 minutes and at a clean shutdown; an episode end
        is rare (a few a night), so writing then costs little.
        """
        self.entry.async_create_background_task(
            self.hass,
            restore_state.async_get(self.hass).async_dump_states(),
            f"{DOMAIN} save totals",
        )

    @callback
    def _apply(self, update: TrackerUpdate) -> None:
        """Book a tracker update: episode ends first, then starts, then credited cry time."""
        if (ended := update.ended) is not None:
            self.ledger.end_episode()
            self.last_episode = ended
            self.current_episode = None
            self._fire(EVENT_CRY_STOPPED, _episode_attributes(ended))
        if (started := update.started) is not None:
            self.current_episode = started
            self.last_started = dt_util.utc_from_timestamp(started.start)
            self._fire(EVENT_CRY_STARTED, _episode_attributes(started))
        time_zone = dt_util.get_default_time_zone()
        for start, end in update.credited:
            self.ledger.credit(start, end, time_zone)
        if (episode := self.current_episode) is not None and update.crying:
            self.current_episode = Episode(
                episode.start,
                max([episode.end, *(end for _, end in update.credited)]),
                max(episode.peak_probability, update.probability),
            )
        self.crying = update.crying

    @callback
    def _fire(self, event_type: str, attributes: dict[str, Any]) -> None:
        """Pass an episode event to the event entities."""
        for handler in list(self._event_listeners):
            handler(event_type, attributes)

    # -- availability ---------------------------------------------------------------------------

    @callback
    def async_report_failure(self, err: CryDetectorError) -> None:
        """Mark the source failed: entities unavailable, a repair issue, one log line."""
        if self.failure is None:
            LOGGER.warning("%s is unavailable: %s", self.entry.title, err)
        self.failure = err
        reason = err.reason if err.reason in ISSUE_REASONS else ISSUE_GENERIC
        if isinstance(err, ModelError):
            reason = ISSUE_MODEL
        ir.async_create_issue(
            self.hass,
            DOMAIN,
            self.issue_id,
            is_fixable=False,
            severity=ir.IssueSeverity.ERROR,
            translation_key=reason,
            translation_placeholders={"name": self.entry.title, "error": str(err)},
        )
        self._notify()

    @callback
    def _clear_failure(self) -> None:
        """Recover from a failure: log once, delete the repair issue."""
        if self.failure is None:
            return
        LOGGER.info("%s is available again", self.entry.title)
        self.failure = None
        ir.async_delete_issue(self.hass, DOMAIN, self.issue_id)
        self._notify()

    @property
    def issue_id(self) -> str:
        """The id of this entry's source repair issue."""
        return f"source_{self.entry.entry_id}"

    @callback
    def _start_watchdog(self, source: AudioSource) -> None:
        """Treat STALL_SECONDS without results as a failed source (FFmpeg retries by itself)."""
        self._last_result = dt_util.utcnow().timestamp()

        @callback
        def _check(now: datetime) -> None:
            idle = now.timestamp() - self._last_result
            if idle >= STALL_SECONDS - 0.5:
                error = self._stall_error(source, idle)
                self.async_report_failure(error)
                if isinstance(error, ModelError):
                    self._restart_stalled_model()
                    return
                idle = 0.0
            idle = min(max(idle, 0.0), STALL_SECONDS - 1.0)
            self._cancel_watchdog = async_call_later(
                self.hass, STALL_SECONDS - idle, _check
            )

        self._cancel_watchdog = async_call_later(self.hass, STALL_SECONDS, _check)

    @callback
    def _restart_stalled_model(self) -> None:
        """Leave a prediction stuck in native code behind: a fresh backend, a fresh worker."""
        self.entry.async_create_background_task(
            self.hass, self._async_restart_stalled_model(), f"{DOMAIN} restart model"
        )

    async def _async_restart_stalled_model(self) -> None:
        """Load the model again and restart listening; the stuck backend is never closed."""
        LOGGER.warning("%s: restarting the stuck model", self.entry.title)
        try:
            _card, backend = await async_load_model(
                self.hass, self.entry.runtime_data.model_path
            )
        except CryDetectorError as err:
            self.async_report_failure(err)
            return
        self.backend = backend  # closing the stuck one would block on its lock
        await self.async_stop()
        self.async_start()

    def _stall_error(self, source: AudioSource, idle: float) -> CryDetectorError:
        """Why no results came for `idle` seconds: a stuck model, or a silent source."""
        stats = self.stats
        if stats is not None and stats.stalled:
            return ModelError(f"inference has not returned for {idle:.0f} s")
        reason = (
            "stream_unreachable"
            if self._source_type is SourceType.FFMPEG
            else "no_audio"
        )
        last_error = getattr(source, "last_error", None)
        return SourceError(
            f"{source.description}: no audio for {idle:.0f} s"
            + (f" ({last_error})" if last_error else ""),
            reason=reason,
        )

    @callback
    def _stop_watchdog(self) -> None:
        """Cancel the stall check."""
        if self._cancel_watchdog is not None:
            self._cancel_watchdog()
            self._cancel_watchdog = None

    def restore_day(
        self, day: date, *, seconds: float | None = None, episodes: int | None = None
    ) -> None:
        """Seed today's totals from a restored entity state (only today's values count)."""
        if day == self.today():
            self.ledger.restore(day, seconds=seconds, episodes=episodes)
