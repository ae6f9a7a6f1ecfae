"""Tests for the episode tracker: hand-computed sequences and invariants under fuzzing."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
import itertools
from typing import Any

from hypothesis import given, settings, strategies as st
import pytest

from custom_components.cry_detector.engine.tracker import (
    Episode,
    EpisodeTracker,
    TrackerConfig,
    TrackerUpdate,
)

T0 = 1_700_000_000.0  # real epoch seconds: the arithmetic must survive their magnitude
HOP = 0.5
CRY, QUIET, BREATH = 0.9, 0.0, 0.1
CRISP = TrackerConfig(
    smoothing_windows=1
)  # no smoothing delay: edges fall on window edges


@dataclass
class Run:
    """Everything a tracker reported while fed a sequence."""

    tracker: EpisodeTracker
    updates: list[TrackerUpdate] = field(default_factory=list)
    clock: float = T0

    def feed(self, probabilities: list[float], hop: float = HOP) -> list[TrackerUpdate]:
        """Feed consecutive windows of length hop."""
        new = []
        for probability in probabilities:
            new.append(self.tracker.update(self.clock, self.clock + hop, probability))
            self.clock += hop
        self.updates += new
        return new

    def skip(self, seconds: float) -> None:
        """Leave a gap in time (no windows)."""
        self.clock += seconds

    def flush(self) -> TrackerUpdate:
        """Flush and record."""
        update = self.tracker.flush()
        self.updates.append(update)
        return update

    @property
    def started(self) -> list[Episode]:
        """Episodes confirmed, relative to T0."""
        return [shift(u.started) for u in self.updates if u.started]

    @property
    def ended(self) -> list[Episode]:
        """Episodes finished, relative to T0."""
        return [shift(u.ended) for u in self.updates if u.ended]

    @property
    def credited(self) -> list[tuple[float, float]]:
        """All credited intervals, relative to T0."""
        return [(s - T0, e - T0) for u in self.updates for s, e in u.credited]


def shift(episode: Episode) -> Episode:
    """The episode with times relative to T0."""
    return Episode(episode.start - T0, episode.end - T0, episode.peak_probability)


def seconds(n: float) -> list[float]:
    """Quiet windows covering n seconds."""
    return [0.0] * round(n / HOP)


def cry(n: float, probability: float = CRY) -> list[float]:
    """Windows covering n seconds at one probability."""
    return [probability] * round(n / HOP)


def merged(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Merge touching intervals, for readable comparisons."""
    result: list[tuple[float, float]] = []
    for start, end in intervals:
        if result and abs(result[-1][1] - start) < 1e-6:
            result[-1] = (result[-1][0], end)
        else:
            result.append((start, end))
    return result


def approx_episodes(episodes: list[tuple[float, float]]) -> list[tuple[Any, Any]]:
    """pytest.approx for (start, end) pairs (tolerant of epoch float rounding)."""
    return [
        (pytest.approx(s, abs=1e-6), pytest.approx(e, abs=1e-6)) for s, e in episodes
    ]


def spans(episodes: list[Episode]) -> list[tuple[float, float]]:
    """(start, end) pairs of episodes."""
    return [(e.start, e.end) for e in episodes]


# --- hand-computed sequences ----------------------------------------------------------------


def test_clean_ten_second_cry() -> None:
    """2 s quiet, 10 s cry, 6 s quiet: one episode [2, 12), confirmed at 4 s, 10 s credited."""
    run = Run(EpisodeTracker(CRISP))
    run.feed(seconds(2) + cry(10) + seconds(6))
    confirming = run.updates[
        7
    ]  # window [3.5, 4.0): the run [2, 4) reaches min_cry_seconds
    assert confirming.started is not None
    assert (
        shift(confirming.started).start,
        shift(confirming.started).end,
    ) == approx_episodes([(2, 4)])[0]
    assert [(s - T0, e - T0) for s, e in confirming.credited] == approx_episodes(
        [(2, 4)]
    )
    assert run.updates[6].crying is False and confirming.crying is True
    # it ends once the pause reaches hold_seconds (window ending at 16 s), back-dated to 12 s
    ending = run.updates[31]
    assert ending.ended is not None and not ending.crying
    assert spans(run.ended) == approx_episodes([(2, 12)])
    assert run.ended[0].peak_probability == CRY
    assert merged(run.credited) == approx_episodes([(2, 12)])
    assert run.tracker.total_cry_seconds == pytest.approx(10.0)


def test_smoothing_delays_both_edges_by_one_window() -> None:
    """With 2-window smoothing and hysteresis the 10 s cry is [2.5, 12.5): still 10 s."""
    run = Run(EpisodeTracker(TrackerConfig()))
    updates = run.feed(seconds(2) + cry(10) + seconds(6))
    assert updates[4].smoothed == pytest.approx(0.45)  # [0, 0.9]: below 0.5, no run yet
    assert updates[24].smoothed == pytest.approx(
        0.45
    )  # [0.9, 0]: above off 0.4, still crying
    assert spans(run.started) == approx_episodes([(2.5, 4.5)])
    assert spans(run.ended) == approx_episodes([(2.5, 12.5)])
    assert run.tracker.total_cry_seconds == pytest.approx(10.0)


def test_breath_pauses_shorter_than_hold_stay_in_one_episode() -> None:
    """3 s cry, 1.5 s breath, 3 s cry, 2 s breath, 2 s cry: one 11.5 s episode, pauses credited."""
    run = Run(EpisodeTracker(CRISP))
    run.feed(cry(3) + cry(1.5, BREATH) + cry(3) + cry(2, BREATH) + cry(2) + seconds(5))
    assert spans(run.ended) == approx_episodes([(0, 11.5)])
    assert merged(run.credited) == approx_episodes([(0, 11.5)])
    # the held pause is credited in one piece when crying resumes, never before
    resumed = run.updates[9]  # window [4.5, 5.0)
    assert [(s - T0, e - T0) for s, e in resumed.credited] == approx_episodes(
        [(3.0, 5.0)]
    )
    assert all(not u.credited for u in run.updates[6:9])
    assert run.tracker.total_cry_seconds == pytest.approx(11.5)


def test_pause_longer_than_hold_splits_into_two_episodes() -> None:
    """3 s cry, 5 s pause, 3 s cry: two episodes, the pause is not credited."""
    run = Run(EpisodeTracker(CRISP))
    run.feed(cry(3) + seconds(5) + cry(3) + seconds(5))
    assert spans(run.ended) == approx_episodes([(0, 3), (8, 11)])
    assert run.updates[13].ended is not None  # window [6.5, 7.0): the pause reached 4 s
    assert merged(run.credited) == approx_episodes([(0, 3), (8, 11)])
    assert run.tracker.total_cry_seconds == pytest.approx(6.0)


def test_pause_of_exactly_hold_seconds_ends_the_episode() -> None:
    """A pause that reaches hold_seconds ends it; one window shorter does not."""
    split = Run(EpisodeTracker(CRISP))
    split.feed(cry(3) + seconds(4) + cry(3) + seconds(5))
    assert len(split.ended) == 2
    joined = Run(EpisodeTracker(CRISP))
    joined.feed(cry(3) + seconds(3.5) + cry(3) + seconds(5))
    assert spans(joined.ended) == approx_episodes([(0, 9.5)])


def test_hysteresis_prevents_flapping() -> None:
    """Alternating 0.55/0.45 is one 10 s episode with hysteresis, nothing without it."""
    flapping = [0.55, 0.45] * 10 + seconds(5)
    steady = Run(EpisodeTracker(CRISP))
    steady.feed(flapping)
    assert spans(steady.ended) == approx_episodes([(0, 10)])
    assert steady.tracker.total_cry_seconds == pytest.approx(10.0)
    # without hysteresis every 0.45 breaks the run before it lasts min_cry_seconds
    twitchy = Run(EpisodeTracker(replace(CRISP, hysteresis=0.0)))
    twitchy.feed(flapping)
    assert twitchy.ended == [] and twitchy.credited == []


def test_hysteresis_does_not_start_a_run() -> None:
    """Values between off (0.4) and on (0.5) never start crying by themselves."""
    run = Run(EpisodeTracker(CRISP))
    run.feed(cry(10, 0.45))
    assert run.started == [] and run.tracker.total_cry_seconds == 0.0


def test_blip_shorter_than_min_cry_is_ignored() -> None:
    """1.5 s of crying is not an episode and credits nothing."""
    run = Run(EpisodeTracker(CRISP))
    run.feed(seconds(1) + cry(1.5) + seconds(6))
    run.flush()
    assert run.started == [] and run.ended == [] and run.credited == []
    assert run.tracker.total_cry_seconds == 0.0


def test_run_of_exactly_min_cry_seconds_is_an_episode() -> None:
    """2.0 s of crying (= min_cry_seconds) counts."""
    run = Run(EpisodeTracker(CRISP))
    run.feed(cry(2) + seconds(6))
    assert spans(run.ended) == approx_episodes([(0, 2)])


def test_probability_equal_to_threshold_counts_as_on() -> None:
    """== threshold is on, and smoothed == off threshold still counts as crying."""
    on = Run(EpisodeTracker(TrackerConfig()))
    on.feed(cry(3, 0.5) + cry(2, 0.4) + seconds(6))
    assert spans(on.ended) == approx_episodes([(0, 5)])
    below = Run(EpisodeTracker(TrackerConfig()))
    below.feed(cry(3, 0.4999) + seconds(6))
    assert below.started == []


def test_cooldown_blocks_new_episodes_until_it_passes() -> None:
    """After an episode ending at 3 s, a 10 s cooldown ignores crying until 13 s."""
    run = Run(EpisodeTracker(replace(CRISP, hold_seconds=1.0, cooldown_seconds=10.0)))
    run.feed(cry(3) + seconds(2) + cry(4) + seconds(3) + cry(4) + seconds(2))
    # [0,3) episode; [5,9) inside the cooldown; [12,16): may only begin at 13
    assert spans(run.ended) == approx_episodes([(0, 3), (13, 16)])
    assert run.tracker.total_cry_seconds == pytest.approx(6.0)


def test_flush_mid_episode_ends_it_at_the_last_crying_window() -> None:
    """Flush closes the open episode; a held pause is not credited."""
    run = Run(EpisodeTracker(CRISP))
    run.feed(cry(5) + cry(1, BREATH))
    assert run.tracker.crying
    assert run.tracker.current_episode is not None
    assert shift(run.tracker.current_episode).end == pytest.approx(5.0)
    update = run.flush()
    assert update.ended is not None and not update.crying and update.credited == ()
    assert spans(run.ended) == approx_episodes([(0, 5)])
    closed = run.tracker  # a fresh name: mypy keeps the narrowing from before the flush
    assert not closed.crying and closed.current_episode is None
    assert run.tracker.total_cry_seconds == pytest.approx(5.0)
    assert run.flush().ended is None  # nothing left to close


def test_flush_forgets_a_pending_run() -> None:
    """A run cut by a flush must start over."""
    run = Run(EpisodeTracker(CRISP))
    run.feed(cry(1.5))
    assert run.flush().ended is None
    run.feed(cry(1.5) + seconds(5))
    assert run.started == []


def test_reconfigure_mid_episode_keeps_episode_and_totals() -> None:
    """New options apply from the next window; the open episode and total stay."""
    run = Run(EpisodeTracker(CRISP))
    run.feed(cry(3))
    before = run.tracker.current_episode
    run.tracker.config = replace(
        CRISP, hold_seconds=1.0, smoothing_windows=3, threshold=0.8
    )
    assert run.tracker.current_episode == before and run.tracker.crying
    assert run.tracker.total_cry_seconds == pytest.approx(3.0)
    run.feed(cry(1))  # 0.9 > 0.7: still crying under the new thresholds
    run.feed(seconds(1))  # the new 1 s hold ends it (the old 4 s would not)
    assert spans(run.ended) == approx_episodes([(0, 4)])
    assert run.tracker.total_cry_seconds == pytest.approx(4.0)
    assert run.tracker.config.hold_seconds == 1.0


def test_short_gap_inside_an_episode_counts_as_a_pause() -> None:
    """Missing windows (overrun) shorter than hold are credited like a pause."""
    run = Run(EpisodeTracker(CRISP))
    run.feed(cry(3))
    run.skip(2.0)
    run.feed(cry(2) + seconds(5))
    assert spans(run.ended) == approx_episodes([(0, 7)])
    assert run.tracker.total_cry_seconds == pytest.approx(7.0)


def test_long_gap_ends_the_episode_at_the_last_crying_window() -> None:
    """A gap of hold_seconds or more ends the episode; crying after it is a new run."""
    run = Run(EpisodeTracker(CRISP))
    run.feed(cry(3))
    run.skip(6.0)
    first = run.feed(cry(3) + seconds(5))[0]
    assert first.ended is not None and shift(first.ended).end == pytest.approx(3.0)
    assert spans(run.ended) == approx_episodes([(0, 3), (9, 12)])


def test_gap_breaks_a_pending_run() -> None:
    """Two 1.5 s bursts separated by a gap are not one 2 s run."""
    run = Run(EpisodeTracker(CRISP))
    run.feed(cry(1.5))
    run.skip(1.0)
    run.feed(cry(1.5) + seconds(5))
    assert run.started == []


def test_clock_jump_backwards_closes_the_episode() -> None:
    """Time going backwards cannot extend an episode into the past."""
    run = Run(EpisodeTracker(CRISP))
    run.feed(cry(3))
    run.skip(-10.0)
    assert run.feed([CRY])[0].ended is not None
    assert spans(run.ended) == approx_episodes([(0, 3)])


def test_peak_probability_and_started_episode() -> None:
    """The started episode is provisional (ends at the confirming window), ended has the final peak."""
    run = Run(EpisodeTracker(CRISP))
    run.feed([0.6, 0.7, 0.6, 0.6, 0.95, 0.6, *seconds(5)])
    assert run.started == [Episode(pytest.approx(0.0), pytest.approx(2.0), 0.7)]  # type: ignore[arg-type]
    assert run.ended[0].peak_probability == 0.95
    assert run.ended[0].duration == pytest.approx(3.0)


def test_update_validates_its_input() -> None:
    """Backward windows and NaN probabilities are errors; probabilities are clipped to [0, 1]."""
    tracker = EpisodeTracker(CRISP)
    with pytest.raises(ValueError, match="window"):
        tracker.update(T0 + 1, T0, 0.5)
    with pytest.raises(ValueError, match="probability"):
        tracker.update(T0, T0 + 1, float("nan"))
    assert tracker.update(T0, T0 + 1, 1.7).probability == 1.0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("threshold", 0.0),
        ("threshold", 1.0),
        ("threshold", float("nan")),
        ("hysteresis", -0.1),
        ("hysteresis", 0.5),
        ("smoothing_windows", 0),
        ("smoothing_windows", 2.0),
        ("min_cry_seconds", -1.0),
        ("hold_seconds", float("inf")),
        ("cooldown_seconds", "5"),
    ],
)
def test_config_rejects_bad_values(field: str, value: object) -> None:
    """Each bad option raises ValueError naming it."""
    with pytest.raises(ValueError, match=field):
        TrackerConfig(**{field: value})  # type: ignore[arg-type]


# --- invariants under fuzzing --------------------------------------------------------------

CONFIGS = st.builds(
    TrackerConfig,
    threshold=st.sampled_from([0.3, 0.5, 0.7]),
    hysteresis=st.sampled_from([0.0, 0.1, 0.2]),
    smoothing_windows=st.integers(1, 4),
    min_cry_seconds=st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.3]),
    hold_seconds=st.sampled_from([0.0, 0.5, 1.0, 4.0]),
    cooldown_seconds=st.sampled_from([0.0, 1.0, 5.0]),
)
WINDOWS = st.lists(
    st.tuples(
        st.sampled_from([0.1, 0.25, 0.5, 0.5, 0.5, 1.0, 0.0]),  # window length
        st.sampled_from([0.0] * 8 + [0.3, 2.0, 7.0]),  # gap before it
        st.floats(0.0, 1.0) | st.sampled_from([0.0, 0.4, 0.5, 0.6, 1.0]),  # probability
        st.booleans(),  # flush after it (rare via filter below)
    ),
    max_size=120,
)


def check_invariants(updates: list[TrackerUpdate], tracker: EpisodeTracker) -> None:
    """Credited time: ordered, disjoint, inside episodes, equal to the episodes' total."""
    credited = [interval for u in updates for interval in u.credited]
    ended = [u.ended for u in updates if u.ended]
    started = [u.started for u in updates if u.started]
    for (start, end), (next_start, _) in itertools.pairwise(credited):
        assert start <= end <= next_start + 1e-9
    assert sum(e - s for s, e in credited) == pytest.approx(
        tracker.total_cry_seconds, abs=1e-6
    )
    durations = sum(e.duration for e in ended)
    if tracker.current_episode is not None:
        durations += tracker.current_episode.duration
    assert durations == pytest.approx(tracker.total_cry_seconds, abs=1e-6)
    assert len(started) - len(ended) == (1 if tracker.crying else 0)
    for start, end in credited:
        owners = [
            *ended,
            *([tracker.current_episode] if tracker.current_episode else []),
        ]
        assert any(e.start - 1e-9 <= start and end <= e.end + 1e-9 for e in owners)
    for episode, began in zip(ended, started, strict=False):
        assert episode.start == began.start
        assert episode.duration >= 0


@settings(max_examples=300, deadline=None)
@given(config=CONFIGS, windows=WINDOWS)
def test_credited_time_equals_episode_time_and_never_overlaps(
    config: TrackerConfig, windows: list[tuple[float, float, float, bool]]
) -> None:
    """For any probabilities, window lengths, gaps and flushes the accounting is exact."""
    tracker, updates, clock = EpisodeTracker(config), [], T0
    for length, gap, probability, flush in windows:
        clock += gap
        updates.append(tracker.update(clock, clock + length, probability))
        assert updates[-1].crying == tracker.crying
        clock += length
        if flush and probability > 0.95:
            updates.append(tracker.flush())
        check_invariants(updates, tracker)
    updates.append(tracker.flush())
    check_invariants(updates, tracker)
    assert not tracker.crying
    ended = [u.ended for u in updates if u.ended]
    for episode in ended:
        assert episode.duration >= config.min_cry_seconds - 1e-6
    for earlier, later in itertools.pairwise(ended):
        assert later.start >= earlier.end + config.cooldown_seconds - 1e-6


@settings(max_examples=150, deadline=None)
@given(
    configs=st.lists(CONFIGS, min_size=2, max_size=4),
    probabilities=st.lists(st.floats(0.0, 1.0), max_size=150),
    switch_every=st.integers(1, 40),
)
def test_reconfiguring_keeps_the_accounting_exact(
    configs: list[TrackerConfig], probabilities: list[float], switch_every: int
) -> None:
    """Live option changes never break credited == episode time or overlap."""
    tracker, updates = EpisodeTracker(configs[0]), []
    for index, probability in enumerate(probabilities):
        if index % switch_every == 0:
            tracker.config = configs[(index // switch_every) % len(configs)]
        updates.append(
            tracker.update(T0 + index * HOP, T0 + (index + 1) * HOP, probability)
        )
        check_invariants(updates, tracker)
    updates.append(tracker.flush())
    check_invariants(updates, tracker)
