"""Day accounting: cry intervals split at local midnights, DST days, episodes per day."""

from __future__ import annotations

from datetime import date, datetime, timedelta
import itertools
from zoneinfo import ZoneInfo

from hypothesis import given, settings, strategies as st
import pytest

from custom_components.cry_detector.daily import (
    CryLedger,
    DayTotals,
    local_date,
    next_local_midnight,
    split_at_midnights,
)

BERLIN = ZoneInfo("Europe/Berlin")
SANTIAGO = ZoneInfo("America/Santiago")  # DST changes at midnight: 00:00 may not exist


def at(tz: ZoneInfo, wall_time: str) -> float:
    """Epoch seconds of a local wall time like '2026-06-01 12:00:00'."""
    return datetime.fromisoformat(wall_time).replace(tzinfo=tz).timestamp()


def test_interval_within_one_day() -> None:
    """An interval inside a day stays whole."""
    start = at(BERLIN, "2026-06-01 12:00:00")
    assert split_at_midnights(start, start + 90, BERLIN) == [(date(2026, 6, 1), 90)]


def test_interval_across_midnight() -> None:
    """An interval spanning midnight is split exactly at local midnight."""
    start = at(BERLIN, "2026-06-01 23:59:30")
    pieces = split_at_midnights(start, start + 75, BERLIN)
    assert pieces == [(date(2026, 6, 1), 30), (date(2026, 6, 2), 45)]


@pytest.mark.parametrize(
    ("day", "hours"),
    [(date(2026, 3, 29), 23), (date(2026, 10, 25), 25), (date(2026, 6, 1), 24)],
)
def test_dst_days_have_their_real_length(day: date, hours: int) -> None:
    """A whole local day credits its real length: 23 h in spring, 25 h in autumn."""
    start = datetime(day.year, day.month, day.day, tzinfo=BERLIN).timestamp()
    end = next_local_midnight(day, BERLIN)
    assert split_at_midnights(start - 60, end + 60, BERLIN) == [
        (day - timedelta(days=1), 60),
        (day, hours * 3600),
        (day + timedelta(days=1), 60),
    ]


def test_interval_across_the_dst_jump_stays_on_its_day() -> None:
    """01:59 CET -> 03:01 CEST is two real minutes, all on 29 March."""
    start = at(BERLIN, "2026-03-29 01:59:00")
    assert split_at_midnights(start, start + 120, BERLIN) == [(date(2026, 3, 29), 120)]
    assert local_date(start + 120, BERLIN) == date(2026, 3, 29)


def test_missing_midnight_moves_forward() -> None:
    """Where 00:00 does not exist (DST at midnight) the split still ends and sums up."""
    day = date(2026, 9, 5)  # Chile springs forward 00:00 -> 01:00 on 6 September 2026
    start = next_local_midnight(day, SANTIAGO) - 30
    pieces = split_at_midnights(start, start + 90, SANTIAGO)
    assert sum(seconds for _, seconds in pieces) == pytest.approx(90)
    assert [piece_day for piece_day, _ in pieces] == [day, day + timedelta(days=1)]


@settings(max_examples=200, deadline=None)
@given(
    start=st.floats(1.7e9, 1.9e9),
    length=st.floats(0.0, 3 * 86400.0),
    zone=st.sampled_from(
        ["Europe/Berlin", "America/Santiago", "Pacific/Chatham", "UTC"]
    ),
)
def test_split_keeps_every_second(start: float, length: float, zone: str) -> None:
    """Pieces sum to the interval, lie on consecutive dates, and only the first/last are partial."""
    tz = ZoneInfo(zone)
    pieces = split_at_midnights(start, start + length, tz)
    assert sum(seconds for _, seconds in pieces) == pytest.approx(length, abs=1e-3)
    days = [day for day, _ in pieces]
    assert days == sorted(set(days))
    for earlier, later in itertools.pairwise(days):
        assert later - earlier == timedelta(days=1)
    assert all(seconds > 0 for _, seconds in pieces)


def test_ledger_counts_an_episode_on_each_day_it_touches() -> None:
    """An episode across midnight counts once per day; its seconds split between them."""
    ledger = CryLedger()
    start = at(BERLIN, "2026-10-24 23:59:00")
    ledger.credit(start, start + 40, BERLIN)
    ledger.credit(start + 40, start + 90, BERLIN)
    ledger.credit(start + 90, start + 100, BERLIN)
    ledger.end_episode()
    ledger.credit(start + 200, start + 210, BERLIN)
    assert ledger.totals(date(2026, 10, 24)) == DayTotals(60, 1)
    assert ledger.totals(date(2026, 10, 25)) == DayTotals(50, 2)
    assert ledger.totals(date(2026, 10, 26)) == DayTotals(0, 0)


def test_ledger_restore_adds_and_prunes_old_days() -> None:
    """Restored totals add to counted ones; only the newest days are kept."""
    ledger = CryLedger()
    ledger.restore(date(2026, 1, 1), seconds=30.0, episodes=1)
    ledger.restore(date(2026, 1, 2), seconds=10.0)
    ledger.credit(
        at(BERLIN, "2026-01-02 08:00:00"), at(BERLIN, "2026-01-02 08:00:05"), BERLIN
    )
    ledger.restore(date(2026, 1, 2), episodes=3)
    assert ledger.totals(date(2026, 1, 2)) == DayTotals(15.0, 4)
    ledger.restore(date(2026, 1, 3), seconds=1.0)
    assert date(2026, 1, 1) not in ledger.days
    assert set(ledger.days) == {date(2026, 1, 2), date(2026, 1, 3)}
