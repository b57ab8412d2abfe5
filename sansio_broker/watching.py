"""When the cross-process watcher checks for other processes' commits: a schedule, as data.

SQLite tells a connection that *another* connection committed through
``PRAGMA data_version`` (its own commits never change it). Nothing pushes
that news, so one watcher per broker polls it, and this module decides
when: the adapter runs the query and sleeps, the schedule only answers "how
long until the next check" (or ``None``: stop). Time (a monotonic ``now``
in seconds) and randomness come in from the adapter, so every decision is
unit-tested without a clock, a thread or a database.

The trade-off it encodes: a wake-up across processes waits, at worst, for
the sleep in progress, while each check costs CPU (the query is a few
microseconds; waking a thread from a sleep costs far more, tens to a
couple of hundred microseconds depending on the machine). So:

* **Burst after activity.** Right after something happened (a check saw a
  change, a waiter started waiting, this process committed), more is likely
  to follow (a reply to the message just written, the next of a batch), so
  check every ``burst_interval`` for ``burst_window``.
* **Back off when idle.** Then stretch the interval by ``growth`` per quiet
  check up to ``idle_ceiling``, which bounds both the worst-case wake-up of
  an idle waiter (about ``idle_ceiling * (1 + jitter)`` plus one check) and
  the idle cost (``1 / idle_ceiling`` checks a second, however many wait).
* **Jitter.** Each sleep is scaled by a factor within ``1 ± jitter`` drawn
  from the injected random source, so processes started together do not
  check (and contend for the file) in lockstep.
* **No waiters, no checks.** With nobody waiting the schedule is stopped
  and a broker costs nothing; a waiter starting restarts it.

The states and what moves them are :data:`WATCH_TRANSITIONS` (every pair is
listed: no event is ever refused, since a watcher must never fail on a
late report); :func:`mermaid` draws it. A check may happen early (an
adapter woken by some other hint) or late (a busy thread): the schedule
only needs to hear about it, with the time it happened.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass

from .config import Config
from .errors import ConfigError, InvalidInputError


class WatchState(enum.Enum):
    """How often the watcher checks ``PRAGMA data_version``."""

    __hash__ = object.__hash__

    STOPPED = "stopped"
    """Nobody waits: no checks at all, so an idle broker costs nothing."""
    BURST = "burst"
    """Something just happened: check every ``burst_interval`` until ``burst_window`` has passed quietly."""
    BACKING_OFF = "backing off"
    """Quiet since the burst: each quiet check stretches the interval by ``growth``, up to ``idle_ceiling``."""


class WatchEvent(enum.Enum):
    """What the adapter reports to the schedule."""

    __hash__ = object.__hash__

    WAITER_STARTED = "waiter started"
    """A caller began waiting (:meth:`WatchSchedule.activity`): restarts a stopped schedule."""
    LOCAL_COMMIT = "local commit"
    """This process committed (:meth:`WatchSchedule.local_commit`): a reply may follow, but it
    starts nothing when nobody waits."""
    CHANGED = "changed"
    """A check saw ``data_version`` move: another process committed."""
    QUIET_IN_WINDOW = "quiet in window"
    """A check saw nothing, and the burst window is still open."""
    QUIET = "quiet"
    """A check saw nothing, and no burst window is open."""
    IDLE = "idle"
    """The last waiter left (:meth:`WatchSchedule.idle`)."""


STOPPED = WatchState.STOPPED
BURST = WatchState.BURST
BACKING_OFF = WatchState.BACKING_OFF

_E = WatchEvent

WATCH_TRANSITIONS: dict[tuple[WatchState, WatchEvent], WatchState] = {
    (STOPPED, _E.WAITER_STARTED): BURST,
    (STOPPED, _E.LOCAL_COMMIT): STOPPED,  # nobody waits for a reply
    (STOPPED, _E.CHANGED): STOPPED,  # a check already running when the last waiter left
    (STOPPED, _E.QUIET_IN_WINDOW): STOPPED,
    (STOPPED, _E.QUIET): STOPPED,
    (STOPPED, _E.IDLE): STOPPED,
    (BURST, _E.WAITER_STARTED): BURST,
    (BURST, _E.LOCAL_COMMIT): BURST,
    (BURST, _E.CHANGED): BURST,
    (BURST, _E.QUIET_IN_WINDOW): BURST,
    (BURST, _E.QUIET): BACKING_OFF,
    (BURST, _E.IDLE): STOPPED,
    (BACKING_OFF, _E.WAITER_STARTED): BURST,
    (BACKING_OFF, _E.LOCAL_COMMIT): BURST,
    (BACKING_OFF, _E.CHANGED): BURST,
    # Only a clock running backwards brings the window back: keep backing off.
    (BACKING_OFF, _E.QUIET_IN_WINDOW): BACKING_OFF,
    (BACKING_OFF, _E.QUIET): BACKING_OFF,
    (BACKING_OFF, _E.IDLE): STOPPED,
}
"""``{(state, event): next state}``, for every pair: a watcher never refuses a report."""

_OPENS_WINDOW = frozenset({_E.WAITER_STARTED, _E.LOCAL_COMMIT, _E.CHANGED})
"""Events that (when they leave the schedule running) open a new burst window from ``now``."""


@dataclass(frozen=True, slots=True)
class WatchSettings:
    """The schedule's knobs, in seconds (``growth`` and ``jitter`` are factors).

    The defaults aim at the wake-up and idle-cost targets of issue 11:

    * ``idle_ceiling=0.006``: an idle waiter (idle for 1 s, long past the
      burst) is woken within ``0.006 * 1.2 = 7.2 ms`` of another process's
      commit plus one check and one claim, below SimpleBroker's watcher's
      median (about 10 ms), at about 167 checks a second however many wait.
      The idle cost is that rate times the CPU of one check including the
      thread's wake-up: 20-60 µs where waking a thread is cheap (0.3-1% of
      a core), but 70-190 µs measured on a 2-core VM (about 2%). A larger
      ceiling divides the idle cost and multiplies the worst-case latency
      by the same factor; no ceiling meets a 1% budget and a 10 ms bound
      where a check costs over 80 µs.
    * ``burst_interval=0.001`` for ``burst_window=0.05``: about 50 checks
      after each activity, so a reply written by another process within
      50 ms of our message is seen within about a millisecond.
    * ``growth=1.5``: from 1 ms the ceiling is reached in 5 quiet checks
      (1.5, 2.25, 3.4, 5.1, then 6 ms), about 12 ms after the window closed.
    * ``jitter=0.2``: sleeps vary within ±20%, enough to spread processes
      started together, small enough to keep the latency bound.
    """

    burst_interval: float = 0.001
    burst_window: float = 0.05
    idle_ceiling: float = 0.006
    growth: float = 1.5
    jitter: float = 0.2

    def __post_init__(self) -> None:
        for key in ("burst_interval", "burst_window", "idle_ceiling"):
            _check_number(key, getattr(self, key), "a finite number of seconds > 0", lambda v: v > 0)
        _check_number("growth", self.growth, "a finite factor > 1", lambda v: v > 1)
        _check_number("jitter", self.jitter, "a finite fraction >= 0 and < 1", lambda v: 0 <= v < 1)
        if self.burst_interval > self.idle_ceiling:
            raise ConfigError(
                "burst_interval",
                self.burst_interval,
                f"at most idle_ceiling ({self.idle_ceiling!r}): bursts check more often than idle back-off",
            )

    @classmethod
    def from_config(cls, config: Config) -> WatchSettings:
        """The polling schedule ``config`` asks for (``BROKER_MAX_INTERVAL``,
        ``BROKER_BURST_SLEEP``, ``BROKER_JITTER_FACTOR``); a burst never
        checks less often than the idle ceiling."""
        ceiling = config.watch_max_interval
        return cls(
            burst_interval=min(config.watch_burst_sleep, ceiling), idle_ceiling=ceiling, jitter=config.watch_jitter
        )

    @property
    def backoff_checks(self) -> int:
        """Quiet checks after the burst window until the interval reaches ``idle_ceiling``.

        The least ``n`` with ``burst_interval * growth**n >= idle_ceiling``;
        the schedule multiplies step by step, so rounding may take it one
        check more. Documentation and tests use it to bound the back-off.
        """
        return max(0, math.ceil(math.log(self.idle_ceiling / self.burst_interval) / math.log(self.growth)))


def _check_number(key: str, value: object, expected: str, valid: Callable[[float], bool]) -> None:
    """Refuse ``value`` unless it is a finite real number (not a bool) that ``valid`` accepts."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(key, value, expected)
    try:
        number = float(value)
    except OverflowError:  # an int beyond any float
        raise ConfigError(key, value, expected) from None
    if not math.isfinite(number) or not valid(number):
        raise ConfigError(key, value, expected)


class WatchSchedule:
    """One broker's watcher schedule: told what happened, answers how long to sleep.

    ``random`` returns floats in ``[0, 1)`` (the adapter passes
    ``random.random``; tests pass a script); it is called once per answer
    that is not ``None``. Every method taking ``now`` returns the delay in
    seconds from ``now`` until the next check, or ``None``: no check is due
    until a waiter starts (:meth:`activity`).

    Not thread-safe: an adapter calling it from several threads (the
    watcher's, and those where waiters start) holds one lock around it. When
    a call returns a delay shorter than the sleep in progress (a waiter
    started during a long back-off sleep), the adapter may wake the watcher
    early; if it does not, the worst case is one sleep of the back-off.
    """

    __slots__ = ("_burst_until", "_interval", "_random", "_state", "settings")

    def __init__(self, settings: WatchSettings | None = None, *, random: Callable[[], float]) -> None:
        self.settings = settings if settings is not None else WatchSettings()
        self._random = random
        self._state = STOPPED
        self._interval = self.settings.burst_interval
        self._burst_until = -math.inf

    @property
    def state(self) -> WatchState:
        """Where the schedule is in :data:`WATCH_TRANSITIONS`."""
        return self._state

    @property
    def interval(self) -> float | None:
        """The current interval before jitter, or ``None`` when stopped."""
        return None if self._state is STOPPED else self._interval

    def activity(self, now: float) -> float:
        """A caller began waiting at ``now``: (re)start a burst; the first check is due soon.

        Never ``None``: a waiter exists. The adapter calls :meth:`idle` when
        the last waiter leaves.
        """
        self._move(WatchEvent.WAITER_STARTED, now)  # always to BURST
        return self._delay()

    def local_commit(self, now: float) -> float | None:
        """This process committed at ``now``: while anyone waits, burst again (a reply may follow).

        With nobody waiting it changes nothing and returns ``None``, so the
        adapter can report every commit without counting waiters itself.
        """
        return self._step(WatchEvent.LOCAL_COMMIT, now)

    def checked(self, now: float, changed: bool) -> float | None:
        """A check finished at ``now``; ``changed``: did ``data_version`` move since the last one?

        A change opens a new burst window; a quiet check keeps bursting
        inside the window and otherwise stretches the interval. ``None``
        when the schedule was stopped meanwhile (a check already running
        when the last waiter left): the watcher goes to sleep for good.
        """
        if changed:
            event = WatchEvent.CHANGED
        elif now < self._burst_until:
            event = WatchEvent.QUIET_IN_WINDOW
        else:
            event = WatchEvent.QUIET
        return self._step(event, now)

    def idle(self) -> None:
        """The last waiter left: stop checking until :meth:`activity`."""
        self._move(WatchEvent.IDLE, -math.inf)

    def _step(self, event: WatchEvent, now: float) -> float | None:
        """Move through the table; answer ``None`` if that stopped the schedule, else the next delay."""
        return None if self._move(event, now) is STOPPED else self._delay()

    def _move(self, event: WatchEvent, now: float) -> WatchState:
        """Take the table's transition for ``event`` and set the interval the new state implies."""
        state = self._state = WATCH_TRANSITIONS[(self._state, event)]
        settings = self.settings
        if state is not STOPPED:  # a stopped schedule keeps no window and no interval
            if event in _OPENS_WINDOW:
                self._burst_until = now + settings.burst_window
                self._interval = settings.burst_interval
            elif state is BACKING_OFF:
                self._interval = min(self._interval * settings.growth, settings.idle_ceiling)
        return state

    def _delay(self) -> float:
        """The current interval scaled by a jitter factor in ``[1 - jitter, 1 + jitter]`` (exactly 1 at 0)."""
        draw = self._random()
        if not 0.0 <= draw < 1.0:
            raise InvalidInputError(f"the watch schedule's random source returned {draw!r}: expected [0, 1)")
        return self._interval * (1.0 + self.settings.jitter * (2.0 * draw - 1.0))


def mermaid() -> str:
    """:data:`WATCH_TRANSITIONS` as a Mermaid ``stateDiagram-v2`` (events sharing an edge share its label)."""
    lines = ["stateDiagram-v2"]
    lines += [f'    state "{state.value}" as {state.name}' for state in WatchState]
    lines.append(f"    [*] --> {STOPPED.name}")
    edges: dict[tuple[WatchState, WatchState], list[str]] = {}
    for (source, event), target in WATCH_TRANSITIONS.items():
        edges.setdefault((source, target), []).append(event.value)
    lines += [f"    {source.name} --> {target.name}: {', '.join(names)}" for (source, target), names in edges.items()]
    return "\n".join(lines) + "\n"
