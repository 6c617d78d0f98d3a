"""Rule state: the hold/hysteresis machine of one series and the verdict of one dedup key.

Everything here moves on event time handed in by the caller; nothing reads a clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pantau.incidents import ConditionChange, ConditionState, DedupKey, Evidence, Severity

S = ConditionState
# The members as plain names: an Enum member looked up on its class costs ~0.3 us on
# Python 3.11 (measured), and the hold machine runs for every reading of every rule.
CLEARED, NO_DATA, PENDING = S.CLEARED, S.NO_DATA, S.PENDING
ACTIVE, RECOVERING = S.ACTIVE, S.RECOVERING

# Which state of several devices speaks for the zone: the most alarming one.
_RANK = {S.CLEARED: 0, S.NO_DATA: 1, S.PENDING: 2, S.RECOVERING: 3, S.ACTIVE: 4}


def worst(states: list[ConditionState]) -> ConditionState:
    return max(states, key=_RANK.__getitem__, default=S.CLEARED)


@dataclass(slots=True)
class Debounce:
    """Hysteresis with hold times (Frigate's inertia / loitering idea).

    CLEARED -breach-> PENDING -breach held `raise_for`-> ACTIVE -clear-> RECOVERING
    -clear held `clear_for`-> CLEARED. A PENDING that reaches the clear level falls back
    to CLEARED; a RECOVERING that stops clearing goes back to ACTIVE. Between the raise
    and the clear level (neither `breaching` nor `clearing`) the state and its hold
    clock stay: the breach lasts from crossing the raise level until the clear level.
    """

    raise_for: timedelta
    clear_for: timedelta
    state: ConditionState = S.CLEARED
    since: datetime | None = None

    def update(self, at: datetime, *, breaching: bool, clearing: bool) -> ConditionState:
        state = self.state
        if state is CLEARED or state is NO_DATA:
            if breaching:
                self._enter(PENDING, at)
            elif state is NO_DATA:
                self._enter(CLEARED, at)  # data is back and says all is well
        elif state is PENDING:
            if clearing:
                self._enter(CLEARED, at)
        elif state is ACTIVE:
            if clearing:
                self._enter(RECOVERING, at)
        elif state is RECOVERING and not clearing:
            self._enter(ACTIVE, at)
        # Holds are judged at every update, so a zero hold passes straight through.
        state = self.state
        if state is PENDING and self.since is not None:
            if at - self.since >= self.raise_for:
                self._enter(ACTIVE, at)
        elif state is RECOVERING and self.since is not None and at - self.since >= self.clear_for:
            self._enter(CLEARED, at)
        return self.state

    def force(self, state: ConditionState, at: datetime) -> None:
        self._enter(state, at)

    def _enter(self, state: ConditionState, at: datetime) -> None:
        self.state = state
        self.since = at


@dataclass(slots=True)
class KeyTracker:
    """What was last said about one dedup key, and the episode's evidence.

    An episode starts when the key leaves CLEARED and ends when it returns; its
    `first_at` stays fixed so re-emitting ACTIVE (after a rebuild) is idempotent.
    """

    key: DedupKey
    metric: str
    higher_is_worse: bool = True
    state: ConditionState = S.CLEARED
    severity: Severity | None = None
    first_at: datetime | None = None
    peak: float | None = None
    devices: set[str] = field(default_factory=set)
    last: ConditionChange | None = None  # the latest change said about this key

    def settle(
        self,
        at: datetime,
        state: ConditionState,
        severity: Severity | None,
        *,
        devices: tuple[str, ...] = (),
        value: float | None = None,
        reason: str | Callable[[], str],
    ) -> ConditionChange | None:
        """Record the key's verdict at `at`; a change when state or severity moved.

        `reason` may be a function: it is only called when there is a change to word
        (most readings change nothing)."""
        if state in (S.PENDING, S.ACTIVE, S.RECOVERING):
            if self.first_at is None:
                self.first_at = at
            self.devices.update(devices)
            if value is not None and (
                self.peak is None
                or (value > self.peak if self.higher_is_worse else value < self.peak)
            ):
                self.peak = value
        else:
            severity = None
        if state is self.state and severity == self.severity:
            return None
        if state is S.CLEARED and self.state is S.CLEARED:
            return None
        self.state, self.severity = state, severity
        evidence = None
        if self.first_at is not None:
            evidence = Evidence(
                device_ids=tuple(sorted(self.devices)),
                metric=self.metric,
                peak_value=self.peak if self.peak is not None else 0.0,
                first_at=self.first_at,
                last_at=at,
            )
        change = ConditionChange(
            key=self.key,
            state=state,
            severity=severity,
            at=at,
            evidence=evidence,
            reason=reason if isinstance(reason, str) else reason(),
        )
        self.last = change
        if state in (S.CLEARED, S.NO_DATA):
            self.first_at, self.peak = None, None
            self.devices = set()
        return change

    @property
    def open(self) -> bool:
        state = self.state
        return state is not CLEARED and state is not NO_DATA
