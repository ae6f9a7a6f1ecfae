"""Per-day cry accounting: credited cry intervals split at local midnights (DST-safe)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo

# Days kept besides the newest: enough for "today" right after midnight.
KEEP_DAYS = 2


def next_local_midnight(day: date, tz: tzinfo) -> float:
    """Return the epoch time at which the local day after `day` begins."""
    return datetime.combine(day + timedelta(days=1), time(), tzinfo=tz).timestamp()


def local_date(timestamp: float, tz: tzinfo) -> date:
    """Return the local calendar date of an epoch time."""
    return datetime.fromtimestamp(timestamp, tz).date()


def split_at_midnights(
    start: float, end: float, tz: tzinfo
) -> list[tuple[date, float]]:
    """Split [start, end) into (local date, seconds) pieces at each local midnight."""
    pieces: list[tuple[date, float]] = []
    while start < end:
        day = local_date(start, tz)
        # max(): a midnight that does not exist (DST gap at 00:00) must still move forward.
        boundary = max(next_local_midnight(day, tz), start + 1e-6)
        piece_end = min(end, boundary)
        pieces.append((day, piece_end - start))
        start = piece_end
    return pieces


@dataclass
class DayTotals:
    """Cry seconds and episodes of one local day."""

    seconds: float = 0.0
    episodes: int = 0


@dataclass
class CryLedger:
    """Accumulates credited cry time per local date; an episode counts on every day it touches."""

    days: dict[date, DayTotals] = field(default_factory=dict)
    _episode_days: set[date] = field(default_factory=set)

    def totals(self, day: date) -> DayTotals:
        """Return the totals of a day (zero when nothing was recorded)."""
        return self.days.get(day, DayTotals())

    def credit(self, start: float, end: float, tz: tzinfo) -> None:
        """Add a final cry interval of the open episode."""
        for day, seconds in split_at_midnights(start, end, tz):
            totals = self.days.setdefault(day, DayTotals())
            totals.seconds += seconds
            if day not in self._episode_days:
                self._episode_days.add(day)
                totals.episodes += 1
        self._prune()

    def end_episode(self) -> None:
        """Close the open episode: the next credit starts a new one."""
        self._episode_days.clear()

    def restore(
        self, day: date, *, seconds: float | None = None, episodes: int | None = None
    ) -> None:
        """Seed a day with values saved before a restart (added to anything already counted)."""
        totals = self.days.setdefault(day, DayTotals())
        if seconds is not None:
            totals.seconds += seconds
        if episodes is not None:
            totals.episodes += episodes
        self._prune()

    def _prune(self) -> None:
        """Forget all but the newest few days."""
        for day in sorted(self.days)[:-KEEP_DAYS]:
            del self.days[day]
