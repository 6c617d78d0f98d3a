"""The incidents a change list amounts to, for comparing streams delivered differently.

A store opens an incident on ACTIVE and keeps it through RECOVERING; so per dedup key:
how many times the key became ACTIVE from a state without an open incident, and the
highest severity it had while open. Two streams "give the same incidents" when these
agree key for key (none extra, none missing).
"""

from __future__ import annotations

from collections.abc import Iterable

from pantau.incidents import ConditionChange, ConditionState, DedupKey, Severity

S = ConditionState
_OPEN = (S.ACTIVE, S.RECOVERING)


def incidents(changes: Iterable[ConditionChange]) -> dict[DedupKey, tuple[int, Severity | None]]:
    """Key -> (ACTIVE openings, max severity while open), for keys that opened."""
    state: dict[DedupKey, ConditionState] = {}
    out: dict[DedupKey, tuple[int, Severity | None]] = {}
    for c in changes:
        was = state.get(c.key, S.CLEARED)
        state[c.key] = c.state
        if c.state not in _OPEN:
            continue
        openings, worst = out.get(c.key, (0, None))
        if c.state is S.ACTIVE and was not in _OPEN:
            openings += 1
        if c.severity is not None and (worst is None or c.severity > worst):
            worst = c.severity
        out[c.key] = (openings, worst)
    return out
