"""The cross-process watcher's polling schedule, stepped by hand.

Every test scripts the clock (``now`` values) and the random source: no
sleeps, no threads, no database. ``Draws`` records how often the schedule
asked for randomness, so tests also pin *when* it draws (once per delay).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sansio_broker import ConfigError, InvalidInputError
from sansio_broker.driver import WATCH_TRANSITIONS, WatchEvent, WatchSchedule, WatchSettings, WatchState
from sansio_broker.watching import BACKING_OFF, BURST, STOPPED, mermaid

MS = 0.001
ALMOST_ONE = math.nextafter(1.0, 0.0)
EXACT = WatchSettings(jitter=0.0)  # the defaults without jitter: every delay is the interval itself


class Draws:
    """A scripted random source: returns ``values`` in turn (then repeats the last), counting calls."""

    def __init__(self, values: Iterable[float] = (0.5,)) -> None:
        self.values = list(values)
        self.calls = 0

    def __call__(self) -> float:
        value = self.values[min(self.calls, len(self.values) - 1)]
        self.calls += 1
        return value


def schedule(config: WatchSettings = EXACT, draws: Iterable[float] = (0.5,)) -> tuple[WatchSchedule, Draws]:
    source = Draws(draws)
    return WatchSchedule(config, random=source), source


def ms(tick: int) -> float:
    """``tick`` milliseconds, computed so that ``ms(50) == 0.05`` exactly (no accumulated sums)."""
    return tick / 1000


# ------------------------------------------------------------------ the whole sequence
def test_a_change_bursts_then_backs_off_to_the_ceiling() -> None:
    watch, draws = schedule()
    assert watch.state is STOPPED and watch.interval is None
    assert watch.activity(ms(0)) == 1 * MS  # a waiter starts: burst from now
    delays = []
    states = []
    for tick in range(1, 50):  # checks every millisecond, quiet, inside the 50 ms window
        delays.append(watch.checked(ms(tick), changed=False))
        states.append(watch.state)
    assert delays == [1 * MS] * 49 and states == [BURST] * 49
    assert watch.checked(ms(50), changed=True) == 1 * MS  # another process committed: a new window
    assert watch.state is BURST
    for tick in range(51, 100):
        assert watch.checked(ms(tick), changed=False) == 1 * MS
    # The window (50 ms from the change at 50 ms) closes at 100 ms: back off by 1.5 up to 6 ms.
    now = ms(100)
    backoff = []
    for _ in range(8):
        delay = watch.checked(now, changed=False)
        assert delay is not None
        backoff.append(delay)
        now += delay
    assert backoff == pytest.approx([1.5 * MS, 2.25 * MS, 3.375 * MS, 5.0625 * MS] + [6 * MS] * 4, rel=1e-12)
    assert backoff[4:] == [EXACT.idle_ceiling] * 4  # capped exactly, not approached
    assert watch.state is BACKING_OFF and watch.interval == EXACT.idle_ceiling
    assert EXACT.backoff_checks == 5  # as counted above: 1.5, 2.25, 3.375, 5.0625, 6
    assert draws.calls == 1 + 49 + 1 + 49 + 8  # one draw per delay answered


def test_the_window_is_measured_from_the_last_activity_not_from_each_check() -> None:
    watch, _ = schedule()
    watch.activity(ms(0))
    assert watch.checked(ms(49), changed=False) == 1 * MS  # a late check, still inside the window
    assert watch.checked(ms(50), changed=False) == 1.5 * MS  # the window is over at 50 ms exactly
    assert watch.state is BACKING_OFF


def test_a_check_long_after_the_window_backs_off_one_step_at_a_time() -> None:
    watch, _ = schedule()
    watch.activity(ms(0))
    # The watcher thread was starved for a second: the back-off still grows one step per check.
    assert watch.checked(1.0, changed=False) == 1.5 * MS
    assert watch.checked(2.0, changed=False) == pytest.approx(2.25 * MS)


# ------------------------------------------------------------------ back to burst
def test_a_change_during_back_off_returns_to_burst_with_a_new_window() -> None:
    watch, _ = schedule()
    watch.activity(ms(0))
    for now in (ms(50), ms(60), ms(70), ms(80), ms(90), ms(100)):
        watch.checked(now, changed=False)
    assert watch.state is BACKING_OFF and watch.interval == EXACT.idle_ceiling
    assert watch.checked(ms(200), changed=True) == 1 * MS
    assert watch.state is BURST and watch.interval == 1 * MS
    assert watch.checked(ms(249), changed=False) == 1 * MS  # the new window runs to 250 ms
    assert watch.checked(ms(251), changed=False) == 1.5 * MS  # and the back-off starts over from the burst
    assert watch.state is BACKING_OFF


@pytest.mark.parametrize("report", ["activity", "local_commit"])
def test_this_process_activity_during_back_off_returns_to_burst(report: str) -> None:
    watch, _ = schedule()
    watch.activity(ms(0))
    watch.checked(ms(50), changed=False)
    watch.checked(ms(60), changed=False)
    assert watch.state is BACKING_OFF
    assert getattr(watch, report)(ms(70)) == 1 * MS
    assert watch.state is BURST
    assert watch.checked(ms(119), changed=False) == 1 * MS
    assert watch.checked(ms(121), changed=False) == 1.5 * MS  # (70 ms + 50 ms rounds just above 0.12)


def test_activity_during_a_burst_extends_the_window() -> None:
    watch, _ = schedule()
    watch.activity(ms(0))
    assert watch.activity(ms(30)) == 1 * MS
    assert watch.local_commit(ms(60)) == 1 * MS
    assert watch.checked(ms(109), changed=False) == 1 * MS
    assert watch.checked(ms(111), changed=False) == 1.5 * MS


# ------------------------------------------------------------------ stopping
def test_a_new_schedule_is_stopped_until_a_waiter_starts() -> None:
    watch, draws = schedule()
    assert watch.state is STOPPED and watch.interval is None
    assert watch.local_commit(ms(0)) is None  # a commit with nobody waiting starts nothing
    assert watch.checked(ms(1), changed=True) is None
    assert watch.state is STOPPED and draws.calls == 0
    assert watch.activity(ms(2)) == 1 * MS
    assert watch.state is BURST and watch.interval == 1 * MS


@pytest.mark.parametrize("ticks_before_idle", [1, 200], ids=["in-burst", "backing-off"])
def test_no_waiters_stop_the_checks(ticks_before_idle: int) -> None:
    watch, draws = schedule()
    watch.activity(ms(0))
    now = ms(0)
    for tick in range(1, ticks_before_idle + 1):
        now = ms(tick)
        watch.checked(now, changed=False)
    assert watch.state is (BURST if ticks_before_idle < 50 else BACKING_OFF)
    calls = draws.calls
    watch.idle()
    assert watch.state is STOPPED and watch.interval is None
    # A check already running when the last waiter left reports afterwards: the watcher stops.
    assert watch.checked(now + MS, changed=True) is None
    assert watch.checked(now + 2 * MS, changed=False) is None
    assert watch.local_commit(now + 3 * MS) is None
    watch.idle()
    assert watch.state is STOPPED and draws.calls == calls  # no delay, no draw


def test_activity_restarts_a_stopped_schedule_with_a_fresh_window() -> None:
    watch, _ = schedule()
    watch.activity(ms(0))
    for now in (ms(50), ms(60), ms(70)):
        watch.checked(now, changed=False)
    watch.idle()
    assert watch.activity(ms(1000)) == 1 * MS  # back at the burst interval, not the old back-off
    assert watch.state is BURST
    assert watch.checked(ms(1049), changed=False) == 1 * MS
    assert watch.checked(ms(1051), changed=False) == 1.5 * MS


# ------------------------------------------------------------------ jitter
def test_jitter_scales_each_delay_within_its_bounds() -> None:
    config = WatchSettings(jitter=0.2)
    watch, _ = schedule(config, draws=[0.0, ALMOST_ONE, 0.5, 0.25])
    assert watch.activity(ms(0)) == 1 * MS * 0.8  # the lowest draw: 1 - jitter, exactly
    highest = watch.checked(ms(1), changed=False)
    # The highest draw: 1 + jitter at most (rounding may reach it exactly).
    assert highest is not None and highest <= 1 * MS * 1.2
    assert highest == pytest.approx(1 * MS * 1.2, rel=1e-12)
    assert watch.checked(ms(2), changed=False) == 1 * MS  # a draw of 0.5 is a factor of 1
    assert watch.checked(ms(3), changed=False) == pytest.approx(0.9 * MS, rel=1e-12)
    assert watch.interval == 1 * MS  # jitter scales the sleep, never the schedule's own interval


def test_jitter_applies_at_the_ceiling_too() -> None:
    watch, _ = schedule(WatchSettings(jitter=0.2), draws=[0.5] * 6 + [0.0, ALMOST_ONE])
    watch.activity(ms(0))
    now = ms(50)
    for _ in range(5):
        watch.checked(now, changed=False)
        now += 1.0
    assert watch.interval == 0.006
    assert watch.checked(now, changed=False) == 0.006 * 0.8
    top = watch.checked(now + 1.0, changed=False)
    assert top is not None and 0.006 * 1.19 < top <= 0.006 * 1.2


@pytest.mark.parametrize("draw", [0.0, 0.123, 0.5, 0.999, ALMOST_ONE])
def test_zero_jitter_is_exact_whatever_the_draw(draw: float) -> None:
    watch, draws = schedule(EXACT, draws=[draw])
    assert watch.activity(ms(0)) == EXACT.burst_interval
    assert watch.checked(ms(50), changed=False) == EXACT.burst_interval * EXACT.growth
    assert draws.calls == 2  # still drawn: a scripted source stays in step whatever the jitter


@pytest.mark.parametrize("draw", [1.0, -0.1, 2.0, math.nan, math.inf])
def test_a_random_source_outside_zero_one_is_refused(draw: float) -> None:
    watch, _ = schedule(WatchSettings(), draws=[draw])
    with pytest.raises(InvalidInputError, match=r"random source returned .*: expected \[0, 1\)"):
        watch.activity(ms(0))


# ------------------------------------------------------------------ settings
def test_the_defaults_and_why() -> None:
    defaults = WatchSettings()
    assert dataclasses.astuple(defaults) == (0.001, 0.05, 0.006, 1.5, 0.2)
    # An idle waiter's worst case (one full jittered sleep at the ceiling) stays well under the
    # ~10 ms median of SimpleBroker's watcher, leaving room for the check and the claim.
    assert defaults.idle_ceiling * (1 + defaults.jitter) <= 0.0075
    # The idle cost is one check per ceiling, whatever the number of waiters: ~167 a second.
    assert 1 / defaults.idle_ceiling == pytest.approx(166.7, abs=0.1)
    # A burst is about 50 checks; the back-off reaches the ceiling within 5 more.
    assert defaults.burst_window / defaults.burst_interval == pytest.approx(50)
    assert defaults.backoff_checks == 5
    assert WatchSchedule(random=Draws()).settings == defaults  # no settings: the defaults


def test_settings_are_frozen() -> None:
    config = WatchSettings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.jitter = 0.5  # type: ignore[misc]


def test_integers_and_edge_values_are_accepted() -> None:
    config = WatchSettings(burst_interval=1, burst_window=2, idle_ceiling=1, growth=2, jitter=0)
    assert config.backoff_checks == 0  # already at the ceiling
    watch, _ = schedule(config)
    watch.activity(0.0)
    assert watch.checked(2.0, changed=False) == 1  # growth is capped by the ceiling at once
    assert WatchSettings(jitter=math.nextafter(1.0, 0.0)).jitter < 1


NOT_NUMBERS: list[object] = [None, "1", True, False, [1], 1j, 10**400]  # the last: an int beyond any float


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        *[
            (key, value, "a finite number of seconds > 0")
            for key in ("burst_interval", "burst_window", "idle_ceiling")
            for value in [0, 0.0, -0.001, -1, math.nan, math.inf, -math.inf, *NOT_NUMBERS]
        ],
        *[("growth", value, "a finite factor > 1") for value in [1, 1.0, 0.5, 0, -2, math.nan, math.inf, *NOT_NUMBERS]],
        *[
            ("jitter", value, "a finite fraction >= 0 and < 1")
            for value in [1, 1.0, 1.5, -0.01, -math.inf, math.nan, math.inf, *NOT_NUMBERS]
        ],
    ],
    ids=lambda item: repr(item)[:12] if not isinstance(item, str) else item.split(" ")[0],
)
def test_bad_settings_are_refused_naming_the_key(key: str, value: object, expected: str) -> None:
    # A burst_interval large enough to pass its own check would still exceed the ceiling:
    # test it against a ceiling that cannot be the reason.
    others = {"idle_ceiling": 10.0} if key == "burst_interval" else {}
    with pytest.raises(ConfigError) as info:
        WatchSettings(**{key: value, **others})  # type: ignore[arg-type]
    error = info.value
    assert (error.key, error.expected) == (key, expected)
    assert error.value is value
    assert isinstance(error, ValueError)
    assert str(error).startswith(f"invalid configuration {key}=")


def test_a_burst_slower_than_the_ceiling_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"burst_interval=0\.01: expected at most idle_ceiling \(0\.005\)"):
        WatchSettings(burst_interval=0.01, idle_ceiling=0.005)
    WatchSettings(burst_interval=0.005, idle_ceiling=0.005)  # equal: allowed (no back-off at all)


# ------------------------------------------------------------------ the table
ALL_PAIRS = list(itertools.product(WatchState, WatchEvent))


def _id(pair: tuple[WatchState, WatchEvent]) -> str:
    return f"{pair[0].name}-{pair[1].name}"


def test_the_table_lists_every_pair() -> None:
    assert set(WATCH_TRANSITIONS) == set(ALL_PAIRS)  # a watcher never refuses a report
    assert all(WATCH_TRANSITIONS[(state, WatchEvent.IDLE)] is STOPPED for state in WatchState)
    assert all(WATCH_TRANSITIONS[(state, WatchEvent.WAITER_STARTED)] is BURST for state in WatchState)
    # Only a waiter leaves STOPPED; nothing but IDLE enters it.
    assert {
        event for (state, event), target in WATCH_TRANSITIONS.items() if state is STOPPED and target is not STOPPED
    } == {WatchEvent.WAITER_STARTED}
    assert {
        event for (state, event), target in WATCH_TRANSITIONS.items() if state is not STOPPED and target is STOPPED
    } == {WatchEvent.IDLE}


def _enter(state: WatchState) -> WatchSchedule:
    """A schedule in ``state``, whose burst window ran from 0 to 50 ms."""
    watch, _ = schedule()
    watch.activity(0.0)
    if state is STOPPED:
        watch.idle()
    elif state is BACKING_OFF:
        watch.checked(1.0, changed=False)
    assert watch.state is state
    return watch


def _report(watch: WatchSchedule, event: WatchEvent) -> float | None:
    """Make the schedule see ``event``: at 2 s, or inside the old window (10 ms) for QUIET_IN_WINDOW."""
    if event is WatchEvent.WAITER_STARTED:
        return watch.activity(2.0)
    if event is WatchEvent.LOCAL_COMMIT:
        return watch.local_commit(2.0)
    if event is WatchEvent.CHANGED:
        return watch.checked(2.0, changed=True)
    if event is WatchEvent.QUIET_IN_WINDOW:
        return watch.checked(0.01, changed=False)  # in BACKING_OFF: a clock that ran backwards
    if event is WatchEvent.QUIET:
        return watch.checked(2.0, changed=False)
    watch.idle()
    return None


@pytest.mark.parametrize("pair", ALL_PAIRS, ids=_id)
def test_the_schedule_follows_the_table(pair: tuple[WatchState, WatchEvent]) -> None:
    state, event = pair
    watch = _enter(state)
    before = watch.interval
    delay = _report(watch, event)
    target = WATCH_TRANSITIONS[pair]
    assert watch.state is target
    if target is STOPPED:
        assert delay is None and watch.interval is None
    elif target is BURST:
        assert delay == watch.interval == EXACT.burst_interval
    else:
        assert before is not None
        assert delay == watch.interval == min(before * EXACT.growth, EXACT.idle_ceiling)


def test_the_diagram_draws_every_transition() -> None:
    lines = mermaid().splitlines()
    assert lines[0] == "stateDiagram-v2"
    assert f"    [*] --> {STOPPED.name}" in lines
    for state in WatchState:
        assert f'    state "{state.value}" as {state.name}' in lines
    edges = {}
    for line in lines:
        if " --> " in line and not line.lstrip().startswith("[*]"):
            arrow, label = line.strip().split(": ")
            source, target = arrow.split(" --> ")
            for name in label.split(", "):
                edges[(WatchState[source], WatchEvent(name))] = WatchState[target]
    assert edges == WATCH_TRANSITIONS
    assert mermaid().endswith("\n")


# ------------------------------------------------------------------ properties
seconds = st.floats(min_value=1e-5, max_value=0.5, allow_nan=False)
configs = st.builds(
    lambda burst, ratio, window, growth, jitter: WatchSettings(
        burst_interval=burst, burst_window=window, idle_ceiling=burst * ratio, growth=growth, jitter=jitter
    ),
    burst=seconds,
    ratio=st.floats(min_value=1.0, max_value=1000.0),
    window=st.floats(min_value=1e-5, max_value=2.0),
    growth=st.floats(min_value=1.01, max_value=4.0),
    jitter=st.floats(min_value=0.0, max_value=0.99),
)
draws = st.lists(st.floats(min_value=0.0, max_value=1.0, exclude_max=True), min_size=1, max_size=50)
actions = st.lists(
    st.one_of(
        st.tuples(st.just("check"), st.floats(min_value=0.0, max_value=1.0), st.booleans()),
        st.tuples(st.just("activity"), st.floats(min_value=0.0, max_value=1.0), st.just(False)),
        st.tuples(st.just("commit"), st.floats(min_value=0.0, max_value=1.0), st.just(False)),
        st.tuples(st.just("idle"), st.just(0.0), st.just(False)),
    ),
    max_size=200,
)


@settings(max_examples=300, deadline=None)
@given(config=configs, random_values=draws, script=actions)
def test_every_delay_lies_between_the_jittered_burst_and_the_jittered_ceiling(
    config: WatchSettings, random_values: list[float], script: list[tuple[str, float, bool]]
) -> None:
    watch, _ = schedule(config, random_values)
    low = config.burst_interval * (1 - config.jitter)
    high = config.idle_ceiling * (1 + config.jitter)
    now = 0.0
    for action, elapsed, changed in script:
        now += elapsed
        if action == "check":
            delay = watch.checked(now, changed)
        elif action == "activity":
            delay = watch.activity(now)
        elif action == "commit":
            delay = watch.local_commit(now)
        else:
            watch.idle()
            delay = None
        if watch.state is STOPPED:
            assert delay is None and watch.interval is None
        else:
            assert delay is not None and low <= delay <= high
            interval = watch.interval
            assert interval is not None and config.burst_interval <= interval <= config.idle_ceiling
            if watch.state is BURST:
                assert interval == config.burst_interval


@settings(max_examples=300, deadline=None)
@given(config=configs, random_values=draws, quiet_gaps=st.lists(st.floats(min_value=0.0, max_value=0.1), max_size=30))
def test_the_ceiling_is_reached_after_a_bounded_number_of_idle_checks(
    config: WatchSettings, random_values: list[float], quiet_gaps: list[float]
) -> None:
    watch, _ = schedule(config, random_values)
    watch.activity(0.0)
    now = 0.0
    for gap in quiet_gaps:  # quiet checks at any times inside or past the window
        now += gap
        watch.checked(now, changed=False)
    now = max(now, config.burst_window)  # the window is over from here on
    previous = watch.interval
    assert previous is not None
    checks = 0
    while watch.interval != config.idle_ceiling and checks <= config.backoff_checks:
        watch.checked(now, changed=False)
        checks += 1
        interval = watch.interval
        assert watch.state is BACKING_OFF and interval is not None
        assert previous <= interval <= config.idle_ceiling  # the back-off never shrinks
        previous = interval
        now += interval
    # Within backoff_checks quiet checks past the window (one more for rounding), at the ceiling.
    assert watch.interval == config.idle_ceiling, (checks, config.backoff_checks)
    assert checks <= config.backoff_checks + 1
    watch.checked(now + 1.0, changed=False)
    assert watch.interval == config.idle_ceiling  # and it stays there


@settings(max_examples=200, deadline=None)
@given(config=configs)
def test_backoff_checks_counts_the_growth_steps(config: WatchSettings) -> None:
    steps = config.backoff_checks
    assert steps >= 0
    # The least n with burst_interval * growth**n >= idle_ceiling (within rounding).
    assert config.burst_interval * config.growth**steps >= config.idle_ceiling * (1 - 1e-9)
    if steps:
        assert config.burst_interval * config.growth ** (steps - 1) < config.idle_ceiling * (1 + 1e-9)
