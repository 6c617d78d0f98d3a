"""Simulated field crews answering their incidents through the API, in simulated time.

Each incident goes to the crew it was routed to (a crew on shift, or the agency's
supervisor). A crew acknowledges 2-12 minutes after the incident opened (one in five is
slow: 20-40), dispatches itself a minute later, is on site 15 minutes after the
acknowledgement and resolves 30-150 minutes after opening (at least 20 minutes after
acknowledging, and 5-20 minutes after the condition cleared: an incident whose
condition is still active at the end stays open, the crew on site). A supervisor
acknowledges and resolves but sends no crew, so it neither dispatches nor goes on site.
Delays come from a `Random` seeded per incident by its dedup key: the same incidents
give the same answers.

The crews act only through the HTTP API (`demo.apiserver`), with crew (or
supervisor) tokens signed by the API's key; the API's `ManualClock` is set to each
action's simulated time first, so the timeline, the SLA checks and the KPIs carry the
crews' times.
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from random import Random

from sqlalchemy import select

from api.context import ApiContext
from api.principal import Principal, Role
from api.security import issue_token
from pantau.clock import ManualClock
from pantau.incidents import ConditionState, DedupKey
from pantau.store import incident_from_row
from pantau.store.models import IncidentRow
from pantau.store.types import Incident

from .apiserver import HttpApi

M = timedelta(minutes=1)
SEED = 4
RESOLVE_CODE = "receded"
RESOLVE_NOTE = "air surut"


@dataclass(frozen=True, slots=True)
class Answer:
    """How one crew answers one incident."""

    incident_id: int
    crew: str
    opened_at: datetime
    ack_after: timedelta
    resolve_after: timedelta | None  # None: the condition is still active, the crew stays
    by_supervisor: bool = False  # an agency supervisor (the roster's): sends no crew

    @property
    def acknowledged_at(self) -> datetime:
        return self.opened_at + self.ack_after

    @property
    def resolved_at(self) -> datetime | None:
        return None if self.resolve_after is None else self.opened_at + self.resolve_after


@dataclass(frozen=True, slots=True)
class Step:
    at: datetime
    incident_id: int
    crew: str
    action: str  # acknowledge, dispatch, on-site, resolve
    body: tuple[tuple[str, str], ...] = ()


def all_incidents(ctx: ApiContext) -> list[Incident]:
    """Every incident in the store, oldest id first."""
    with ctx.readers() as session:
        return [
            incident_from_row(r)
            for r in session.scalars(select(IncidentRow).order_by(IncidentRow.id))
        ]


def plan_answers(
    incidents: Iterable[Incident],
    crew_of: Callable[[Incident], str | None],
    seed: int = SEED,
    *,
    supervisors: Collection[str] = frozenset(),
) -> list[Answer]:
    """The answers to the incidents that `crew_of` routes to someone, in id order;
    `supervisors` are the roster's supervisor ids (they answer without a crew)."""
    answers = []
    seen: Counter[DedupKey] = Counter()
    for inc in sorted(incidents, key=lambda i: (i.opened_at, i.id)):
        # One generator per incident, seeded by what the incident is (its dedup key and
        # how many of that key came before), not by its id or opening second, which
        # follow the order readings reached the rules: the same storm gets the same
        # answers on every run.
        k = inc.key
        rng = Random(f"{seed}:{k.rule_id}:{k.zone_id}:{k.hazard.value}:{seen[k]}")
        seen[k] += 1
        slow = rng.random() < 0.2
        ack = rng.randint(20, 40) * M if slow else rng.randint(2, 12) * M
        resolve: timedelta | None = max(ack + 20 * M, rng.randint(30, 150) * M)
        # "Receded" only once the data says so: a crew resolves 5-20 minutes after the
        # condition cleared at the earliest, and stays while it is still active.
        if inc.condition_state is ConditionState.ACTIVE:
            resolve = None
        elif inc.condition_state is ConditionState.CLEARED and resolve is not None:
            resolve = max(resolve, inc.condition_at - inc.opened_at + rng.randint(5, 20) * M)
        crew = crew_of(inc)
        if crew is not None:
            answers.append(Answer(inc.id, crew, inc.opened_at, ack, resolve, crew in supervisors))
    return sorted(answers, key=lambda a: a.incident_id)


def steps(answers: Iterable[Answer]) -> list[Step]:
    """Every API call the answers make, in simulated-time order."""
    out: list[Step] = []
    for a in answers:
        out.append(Step(a.acknowledged_at, a.incident_id, a.crew, "acknowledge"))
        if not a.by_supervisor:
            body = (("crew_id", a.crew),)
            out.append(Step(a.acknowledged_at + M, a.incident_id, a.crew, "dispatch", body))
            out.append(Step(a.acknowledged_at + 15 * M, a.incident_id, a.crew, "on-site"))
        if a.resolved_at is not None:
            resolve_body = (("code", RESOLVE_CODE), ("note", RESOLVE_NOTE))
            out.append(Step(a.resolved_at, a.incident_id, a.crew, "resolve", resolve_body))
    return sorted(out, key=lambda s: (s.at, s.incident_id))


def principal_of(ctx: ApiContext, crew: str) -> Principal:
    """The crew's own principal, or the agency supervisor's for a supervisor address."""
    roster = {c.id: c for c in ctx.roster.crews}
    if crew in roster:
        c = roster[crew]
        return Principal(
            subject=crew, role=Role.CREW, agency=c.agency, kecamatan=c.kecamatan, crew_id=crew
        )
    agency = next(a for a, s in ctx.roster.supervisors.items() if s == crew)
    return Principal(subject=crew, role=Role.SUPERVISOR, agency=agency)


def token_for(ctx: ApiContext, who: Principal) -> str:
    # The API takes tokens of existing users only: the simulated ones become users
    # (with a password nobody knows) the first time.
    session = ctx.accounts.session_of(who.subject)
    if session is None:
        ctx.accounts.create_user(
            who.subject,
            secrets.token_urlsafe(16),
            who.role,
            agency=who.agency,
            kecamatan=who.kecamatan,
            crew_id=who.crew_id,
        )
    version = 0 if session is None else session.version
    # Issued at wall time: token expiry is checked against the wall clock.
    return issue_token(who, ctx.signing_key, datetime.now(UTC), timedelta(hours=1), version)


def answer(api: HttpApi, ctx: ApiContext, clock: ManualClock, answers: Iterable[Answer]) -> int:
    """Make every call of `answers` through the API at its simulated time; the number of
    calls. Raises `ApiCallError` on the first one the API refuses."""
    tokens: dict[str, str] = {}
    calls = 0
    for step in steps(answers):
        if step.crew not in tokens:
            tokens[step.crew] = token_for(ctx, principal_of(ctx, step.crew))
        clock.set(step.at)
        api.post(f"/incidents/{step.incident_id}/{step.action}", tokens[step.crew], dict(step.body))
        calls += 1
    return calls
