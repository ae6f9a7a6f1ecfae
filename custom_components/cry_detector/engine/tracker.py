"""Turn per-window cry probabilities into crying episodes and exact cry time."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
import math

from .features import is_finite_number, short_repr

# Window starts further than this from the previous window's end are a gap (or a clock jump).
GAP_TOLERANCE_SECONDS = 1e-3
# Slack for comparing durations computed from epoch floats (about 4 ulps at 1.7e9 s).
TIME_EPSILON = 1e-6
# Slack so that a smoothed mean equal to the threshold counts as on despite rounding.
PROBABILITY_EPSILON = 1e-9


def _check_number(
    name: str, value: object, low: float, high: float, *, high_open: bool = False
) -> None:
    """Require a finite number in [low, high] (or [low, high)); raise ValueError naming it."""
    if (
        not is_finite_number(value)
        or value < low
        or value > high
        or (high_open and value == high)
    ):
        bracket = ")" if high_open else "]"
        raise ValueError(
            f"{name} must be a number in [{low:g}, {high:g}{bracket}, got {short_repr(value)}"
        )


@dataclass(frozen=True)
class TrackerConfig:
    """How probabilities become episodes (live-tunable options)."""

    threshold: float = 0.5
    hysteresis: float = 0.1
    smoothing_windows: int = 2
    min_cry_seconds: float = 2.0
    hold_seconds: float = 4.0
    cooldown_seconds: float = 0.0

    def __post_init__(self) -> None:
        """Validate ranges; raise ValueError naming the field."""
        _check_number("threshold", self.threshold, 0.0, 1.0, high_open=True)
        if self.threshold <= 0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold!r}")
        _check_number(
            "hysteresis", self.hysteresis, 0.0, self.threshold, high_open=True
        )
        if (
            isinstance(self.smoothing_windows, bool)
            or not isinstance(self.smoothing_windows, int)
            or not 1 <= self.smoothing_windows <= 1000
        ):
            raise ValueError(
                f"smoothing_windows must be an integer in [1, 1000], got {short_repr(self.smoothing_windows)}"
            )
        for name in ("min_cry_seconds", "hold_seconds", "cooldown_seconds"):
            _check_number(name, getattr(self, name), 0.0, 86400.0)

    @property
    def off_threshold(self) -> float:
        """Smoothed probability below which a run or episode counts as paused."""
        return self.threshold - self.hysteresis


@dataclass(frozen=True)
class Episode:
    """One crying episode: [start, end) in epoch seconds and its highest window probability."""

    start: float
    end: float
    peak_probability: float

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.end - self.start


@dataclass(frozen=True)
class TrackerUpdate:
    """What one window changed."""

    probability: float
    smoothed: float
    crying: bool
    started: Episode | None
    ended: Episode | None
    credited: tuple[tuple[float, float], ...]


class EpisodeTracker:
    """Smooth window probabilities, find episodes, credit cry time exactly once."""

    def __init__(self, config: TrackerConfig) -> None:
        """Start idle with nothing credited."""
        self._config = config
        self._history: deque[float] = deque(maxlen=config.smoothing_windows)
        self._last_end: float | None = None
        self._run_start: float | None = None
        self._run_peak = 0.0
        self._episode_start: float | None = None
        self._last_positive_end = 0.0
        self._episode_peak = 0.0
        self._last_episode_end: float | None = None
        self._total = 0.0

    @property
    def config(self) -> TrackerConfig:
        """The live configuration."""
        return self._config

    @config.setter
    def config(self, config: TrackerConfig) -> None:
        """Apply new options; the open episode, pending run and totals are kept."""
        self._config = config
        self._history = deque(self._history, maxlen=config.smoothing_windows)

    @property
    def crying(self) -> bool:
        """Whether an episode is open."""
        return self._episode_start is not None

    @property
    def current_episode(self) -> Episode | None:
        """The open episode so far (end = end of its last crying window), if any."""
        if self._episode_start is None:
            return None
        return Episode(self._episode_start, self._last_positive_end, self._episode_peak)

    @property
    def total_cry_seconds(self) -> float:
        """Sum of all credited intervals (= sum of episode durations so far)."""
        return self._total

    def update(self, start: float, end: float, probability: float) -> TrackerUpdate:
        """Feed the probability of the window representing [start, end)."""
        if not (math.isfinite(start) and math.isfinite(end)) or end < start:
            raise ValueError(
                f"window [{start!r}, {end!r}) is not a finite forward interval"
            )
        if not math.isfinite(probability):
            raise ValueError(f"probability must be finite, got {probability!r}")
        probability = min(1.0, max(0.0, probability))
        credited: list[tuple[float, float]] = []
        ended = self._handle_gap(start)
        self._last_end = end
        self._history.append(probability)
        smoothed = sum(self._history) / len(self._history)
        started = None
        if self._episode_start is not None:
            ended = (
                self._continue_episode(end, probability, smoothed, credited) or ended
            )
        else:
            started = self._advance_run(start, end, probability, smoothed, credited)
        return TrackerUpdate(
            probability, smoothed, self.crying, started, ended, tuple(credited)
        )

    def shift_time(self, offset: float) -> None:
        """Move every remembered time by offset: the clock was corrected under unbroken audio.

        The next window then continues the last one: an open episode, a pending run, smoothing
        and the cooldown go on, and the jump itself is never credited. Intervals credited before
        stay as they were (each second of audio is credited once, on the clock of its time).
        """
        if not math.isfinite(offset):
            raise ValueError(f"offset must be finite, got {offset!r}")
        if self._last_end is not None:
            self._last_end += offset
        if self._run_start is not None:
            self._run_start += offset
        if self._episode_start is not None:
            self._episode_start += offset
            self._last_positive_end += offset
        if self._last_episode_end is not None:
            self._last_episode_end += offset

    def flush(self) -> TrackerUpdate:
        """Close the open episode at its last crying window and forget the pending run."""
        ended = self._end_episode() if self._episode_start is not None else None
        self._reset_run()
        self._last_end = None
        return TrackerUpdate(0.0, 0.0, False, None, ended, ())

    def _handle_gap(self, start: float) -> Episode | None:
        """On a gap or clock jump, restart smoothing and runs; end an episode paused too long."""
        if (
            self._last_end is None
            or abs(start - self._last_end) <= GAP_TOLERANCE_SECONDS
        ):
            return None
        jumped_back = start < self._last_end
        self._reset_run()
        if self._episode_start is None:
            return None
        pause = start - self._last_positive_end
        if jumped_back or pause >= self._config.hold_seconds - TIME_EPSILON:
            return self._end_episode()
        return None

    def _continue_episode(
        self,
        end: float,
        probability: float,
        smoothed: float,
        credited: list[tuple[float, float]],
    ) -> Episode | None:
        """Credit a crying window (and the pause before it) or end the episode after hold."""
        if smoothed >= self._config.off_threshold - PROBABILITY_EPSILON:
            if end > self._last_positive_end:
                self._credit(self._last_positive_end, end, credited)
                self._last_positive_end = end
            self._episode_peak = max(self._episode_peak, probability)
            return None
        if end - self._last_positive_end >= self._config.hold_seconds - TIME_EPSILON:
            return self._end_episode()
        return None

    def _advance_run(
        self,
        start: float,
        end: float,
        probability: float,
        smoothed: float,
        credited: list[tuple[float, float]],
    ) -> Episode | None:
        """Grow or break the pending run; confirm an episode once it lasts min_cry_seconds."""
        if self._run_start is None:
            if (
                smoothed < self._config.threshold - PROBABILITY_EPSILON
                or self._in_cooldown(start)
            ):
                return None
            self._run_start, self._run_peak = start, probability
        elif smoothed < self._config.off_threshold - PROBABILITY_EPSILON:
            self._run_start = None
            return None
        else:
            self._run_peak = max(self._run_peak, probability)
        run_start = self._run_start
        if end - run_start < self._config.min_cry_seconds - TIME_EPSILON:
            return None
        self._run_start = None
        if self._in_cooldown(run_start):
            return None
        self._episode_start, self._last_positive_end = run_start, end
        self._episode_peak = self._run_peak
        self._credit(run_start, end, credited)
        return Episode(run_start, end, self._run_peak)

    def _in_cooldown(self, time: float) -> bool:
        """Whether a run may not begin at this time."""
        if self._last_episode_end is None:
            return False
        return (
            time < self._last_episode_end + self._config.cooldown_seconds - TIME_EPSILON
        )

    def _credit(
        self, start: float, end: float, credited: list[tuple[float, float]]
    ) -> None:
        """Record a final cry interval."""
        credited.append((start, end))
        self._total += end - start

    def _end_episode(self) -> Episode:
        """Close the open episode at the end of its last crying window."""
        assert self._episode_start is not None
        episode = Episode(
            self._episode_start, self._last_positive_end, self._episode_peak
        )
        self._episode_start = None
        self._last_episode_end = episode.end
        return episode

    def _reset_run(self) -> None:
        """Forget smoothing history and the pending run."""
        self._history.clear()
        self._run_start = None
