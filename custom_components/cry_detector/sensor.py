"""Sensors: cry minutes and episodes today, the last cry, live probability and sound level."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Self

from homeassistant.components.sensor import (
    RestoreSensor,
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorExtraStoredData,
    SensorStateClass,
)
from homeassistant.const import PERCENTAGE, EntityCategory, UnitOfTime
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.typing import StateType
from homeassistant.util import dt as dt_util

from .data import CryDetectorConfigEntry
from .entity import CryDetectorEntity
from .runtime import CryListener

PARALLEL_UPDATES = 0

UNIT_DBFS = "dBFS"


@dataclass(frozen=True, kw_only=True)
class CrySensorDescription(SensorEntityDescription):
    """Describes a Cry Detector sensor."""

    value_fn: Callable[[CryListener], StateType | datetime]
    available_fn: Callable[[CryListener], bool] = lambda listener: listener.available
    # Today's totals: restored after a restart when saved today.
    daily: str | None = None
    restore: bool = False
    throttled: bool = False


def _minutes_today(listener: CryListener) -> float:
    """Return today's cry minutes."""
    return round(listener.today_totals().seconds / 60.0, 2)


def _last_duration(listener: CryListener) -> float | None:
    """Return the duration of the last finished episode in seconds."""
    episode = listener.last_episode
    return round(episode.duration, 1) if episode is not None else None


def _probability(listener: CryListener) -> float | None:
    """Return the latest window probability in percent."""
    if listener.probability is None:
        return None
    return round(listener.probability * 100.0)


def _level(listener: CryListener) -> float | None:
    """Return the latest sound level in whole dBFS."""
    if listener.level_dbfs is None:
        return None
    return round(listener.level_dbfs)


def _live(listener: CryListener) -> bool:
    """Whether live values are meaningful."""
    return listener.live


SENSORS: tuple[CrySensorDescription, ...] = (
    CrySensorDescription(
        key="cry_minutes_today",
        translation_key="cry_minutes_today",
        device_class=SensorDeviceClass.DURATION,
        native_unit_of_measurement=UnitOfTime.MINUTES,
        state_class=SensorStateClass.TOTAL_INCREASING,
        suggested_display_precision=1,
        value_fn=_minutes_today,
        daily="seconds",
    ),
    CrySensorDescription(
        key="cry_episodes_today",
        translation_key="cry_episodes_today",
        state_class=SensorStateClass.TOTAL_INCREASING,
        value_fn=lambda listener: listener.today_totals().episodes,
        daily="episodes",
    ),
    CrySensorDescription(
        key="last_cry_duration",
        translation_key="last_cry_duration",
        device_class=SensorDeviceClass.DURATION,
        native_unit_of_measurement=UnitOfTime.SECONDS,
        suggested_display_precision=0,
        value_fn=_last_duration,
        restore=True,
    ),
    CrySensorDescription(
        key="last_cry_started",
        translation_key="last_cry_started",
        device_class=SensorDeviceClass.TIMESTAMP,
        value_fn=lambda listener: listener.last_started,
        restore=True,
    ),
    CrySensorDescription(
        key="cry_probability",
        translation_key="cry_probability",
        native_unit_of_measurement=PERCENTAGE,
        state_class=SensorStateClass.MEASUREMENT,
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
        value_fn=_probability,
        available_fn=_live,
        throttled=True,
    ),
    CrySensorDescription(
        key="sound_level",
        translation_key="sound_level",
        native_unit_of_measurement=UNIT_DBFS,
        state_class=SensorStateClass.MEASUREMENT,
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=_level,
        available_fn=_live,
        throttled=True,
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: CryDetectorConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the sensors of an entry."""
    async_add_entities(
        CryDailySensor(entry, description)
        if description.daily
        else CryRestoreSensor(entry, description)
        if description.restore
        else CrySensor(entry, description)
        for description in SENSORS
    )


class CrySensor(CryDetectorEntity, SensorEntity):
    """A sensor computed from the listener's state."""

    entity_description: CrySensorDescription

    def __init__(
        self, entry: CryDetectorConfigEntry, description: CrySensorDescription
    ) -> None:
        """Set up the sensor."""
        super().__init__(entry, description)
        self._throttled = description.throttled

    @property
    def available(self) -> bool:
        """Whether the value means something now."""
        return self.entity_description.available_fn(self.listener)

    @property
    def native_value(self) -> StateType | datetime:
        """Return the value."""
        return self.entity_description.value_fn(self.listener)

    def _fingerprint(self) -> tuple[Any, ...]:
        """The value decides the state."""
        return (self.native_value,)


class CryRestoreSensor(CrySensor, RestoreSensor):
    """A last-cry sensor that shows its saved value until the next cry."""

    _restored: StateType | datetime = None

    async def async_added_to_hass(self) -> None:
        """Restore the saved value."""
        await super().async_added_to_hass()
        if (data := await self.async_get_last_sensor_data()) is not None:
            value = data.native_value
            if isinstance(value, (int, float, datetime)):
                self._restored = value

    @property
    def native_value(self) -> StateType | datetime:
        """Return the live value, else the restored one."""
        value = self.entity_description.value_fn(self.listener)
        return self._restored if value is None else value


@dataclass
class DailyExtraStoredData(SensorExtraStoredData):
    """A daily total with the local date it belongs to."""

    day: date | None = None
    total: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """Serialise, with the day and the exact total."""
        return {
            **super().as_dict(),
            "day": self.day.isoformat() if self.day is not None else None,
            "total": self.total,
        }

    @classmethod
    def from_dict(cls, restored: dict[str, Any]) -> Self | None:
        """Deserialise; None when the data is not a daily total."""
        base = SensorExtraStoredData.from_dict(restored)
        day = dt_util.parse_date(str(restored.get("day")))
        total = restored.get("total")
        if base is None or day is None or not isinstance(total, (int, float)):
            return None
        return cls(base.native_value, base.native_unit_of_measurement, day, total)


class CryDailySensor(CrySensor, RestoreSensor):
    """Today's cry minutes or episodes: resets at local midnight, survives restarts."""

    @property
    def extra_restore_state_data(self) -> DailyExtraStoredData:
        """Save the value with its date and exact total."""
        totals = self.listener.today_totals()
        total: float = getattr(totals, self.entity_description.daily or "")
        return DailyExtraStoredData(
            self.native_value,
            self.native_unit_of_measurement,
            self.listener.today(),
            total,
        )

    async def async_added_to_hass(self) -> None:
        """Add today's saved total to the listener's ledger (other days are dropped)."""
        await super().async_added_to_hass()
        if (extra := await self.async_get_last_extra_data()) is None:
            return
        if (data := DailyExtraStoredData.from_dict(extra.as_dict())) is None:
            return
        assert data.day is not None and data.total is not None
        if self.entity_description.daily == "seconds":
            self.listener.restore_day(data.day, seconds=float(data.total))
        else:
            self.listener.restore_day(data.day, episodes=int(data.total))
