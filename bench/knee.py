"""The load sweep's rules, without measuring: which rates to offer, when a point is a
failure, where a consumer's curve stops and why, and the tables that say so.

A consumer's curve starts at a rate and doubles it until the consumer fails (loses a
reading, or is still storing more than `MAX_LAG_S` after publishing ended): that point
is its knee. The doubling also stops when the publishers, not the consumer, are what
limits the offer (the cap): the curve then says so, and the consumer's figure is a
lower bound. Pure functions of measured points, so they are unit-tested.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bench.ingest_report import markdown_table

PANTAU_NATIVE = "Pantau native"
NODERED = "Node-RED"
PANTAU_SENML = "Pantau SenML"

MAX_LAG_S = 5.0  # still storing this long after publishing ended: the consumer failed
PUSH_SHORT = 0.9  # publishers got under 90 % of the offer into the broker: publisher-bound
CAP_STEP = 1.1  # a cap within 10 % above the last doubling is not worth a point of its own
MAX_HALVINGS = 4  # a consumer failing at its first rate is offered half, this many times


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadPoint:
    system: str
    offered: float  # readings/s
    readings_per_message: int
    planned_s: float
    sent: int  # readings in the lines the pacers were given
    stored: int
    seconds: float  # first write until the last reading was stored (or waiting stopped)
    achieved: float  # readings/s the pacers actually wrote
    publish_s: float  # first write until every publisher had its last PUBACK
    gave_up: bool = False  # waiting stopped while the count was still rising: not a loss
    failures: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()  # the consumer's first distinct error lines, when lost
    cpu: dict[str, float] = field(default_factory=dict)  # cores over the point

    @property
    def lost(self) -> bool:
        """Fewer (or more) readings stored than sent once the count settled, or a
        publisher that failed."""
        return bool(self.failures) or (not self.gave_up and self.stored != self.sent)

    @property
    def throughput(self) -> float:
        """Sustained readings/s; meaningless (and never reported) when `lost`."""
        return self.stored / self.seconds if self.seconds > 0 else 0.0

    @property
    def offer_s(self) -> float:
        return self.sent / self.offered

    @property
    def pushed(self) -> float:
        """Readings/s the publishers got into the broker (last PUBACK included)."""
        return self.sent / self.publish_s if self.publish_s > 0 else 0.0

    @property
    def lag_s(self) -> float:
        """How long after publishing ended (the offer's end, or the last PUBACK if the
        publishers ran late) the last reading was stored: the consumer's own delay."""
        return self.seconds - max(self.offer_s, self.publish_s)

    @property
    def lagged(self) -> bool:
        return not self.lost and (self.gave_up or self.lag_s > MAX_LAG_S)

    @property
    def failed(self) -> bool:
        return self.lost or self.lagged

    @property
    def publisher_bound(self) -> bool:
        return self.pushed < PUSH_SHORT * self.offered


def ladder(start: float, cap: float, max_points: int) -> list[float]:
    """Offered rates: `start` doubled while under `cap`, then `cap` itself as the top
    point (unless the last doubling is already within `CAP_STEP` of it)."""
    if start <= 0 or cap <= 0:
        raise ValueError("rates must be positive")
    rates: list[float] = []
    rate = min(start, cap)
    while len(rates) < max_points:
        rates.append(rate)
        if rate >= cap:
            break
        rate = cap if rate * 2 > cap else rate * 2
        if rate == cap and rates[-1] * CAP_STEP >= cap:
            break
    return rates


@dataclass(frozen=True, slots=True)
class Curve:
    """One consumer's points, by rising offer, and why the doubling stopped."""

    system: str
    points: tuple[LoadPoint, ...]
    cap: float  # readings/s the publishers can push: the ladder's top
    cap_source: str  # what the cap was measured as
    stop: str  # why the doubling stopped, in words
    consumer_stopped: bool  # True: the consumer failed (its knee); False: cap or error
    error: str | None = None  # a point raised: the curve is incomplete

    @property
    def best(self) -> LoadPoint | None:
        """The highest lossless sustained point: kept up (lag <= MAX_LAG_S), lost nothing."""
        ok = [p for p in self.points if not p.failed]
        return max(ok, key=lambda p: p.throughput, default=None)

    @property
    def knee(self) -> LoadPoint | None:
        """The first failing point, when the consumer (not the cap) stopped the curve."""
        return next((p for p in self.points if p.failed), None)


def stop_after(
    point: LoadPoint, last: bool, cap: float, cap_source: str
) -> tuple[str, bool] | None:
    """(why the doubling stops after `point`, whether the consumer stopped it), or None to
    go on to the next rate."""
    if point.lost:
        return f"knee at {point.offered:,.0f}/s offered: {loss_text(point)}", True
    if point.lagged:
        return f"knee at {point.offered:,.0f}/s offered: {lag_text(point)}", True
    if point.publisher_bound:
        return (
            f"publishers, not the consumer: they pushed {point.pushed:,.0f}/s of the "
            f"{point.offered:,.0f}/s offered and the consumer kept up",
            False,
        )
    if last:
        return (
            f"cap, not the consumer: {cap:,.0f}/s is what the publishers push ({cap_source}) "
            "and the consumer kept up there",
            False,
        )
    return None


@dataclass(frozen=True, slots=True)
class Ladder:
    system: str
    start: float  # first offered readings/s
    cap: float  # what the publishers can push
    cap_source: str


def sweep(
    ladders: Sequence[Ladder],
    max_points: int,
    measure: Callable[[str, float], LoadPoint],
    progress: Callable[[str], None],
) -> list[Curve]:
    """Each consumer's curve, step by step (one point of each consumer still in the
    sweep per step, in `ladders` order). A consumer leaves after the point that stops it
    (`stop_after`). One that fails at its first rate is offered half of it, up to
    `MAX_HALVINGS` times, so its curve has a lossless point below the knee. A point that
    raises ends that curve with the error; the others go on."""
    queue = {lad.system: ladder(lad.start, lad.cap, max_points) for lad in ladders}
    points: dict[str, list[LoadPoint]] = {lad.system: [] for lad in ladders}
    halvings = dict.fromkeys(queue, 0)
    done: dict[str, Curve] = {}

    def end(lad: Ladder, reason: str, by_consumer: bool, error: str | None = None) -> None:
        progress(f"  {lad.system} stops: {reason}")
        mine = tuple(points[lad.system])
        done[lad.system] = Curve(
            lad.system, mine, lad.cap, lad.cap_source, reason, by_consumer, error
        )

    while any(queue[lad.system] and lad.system not in done for lad in ladders):
        for lad in ladders:
            system = lad.system
            if system in done or not queue[system]:
                continue
            rate = queue[system].pop(0)
            last = not queue[system]
            progress(f"load: {system} at {rate:,.0f} readings/s offered")
            try:
                p = measure(system, rate)
            except Exception as err:
                end(lad, f"error at {rate:,.0f}/s offered", False, repr(err)[:300])
                continue
            points[system].append(p)
            progress(
                f"  {p.stored:,}/{p.sent:,} in {p.seconds:.2f} s, pushed {p.pushed:,.0f}/s,"
                f" lag {p.lag_s:.2f} s -> "
                + ("FAILED" if p.failed else f"{p.throughput:,.0f} readings/s")
            )
            failing = [q for q in points[system] if q.failed]
            if failing and len(failing) < len(points[system]):  # a pass below a failure
                knee = min(failing, key=lambda q: q.offered)
                stop = stop_after(knee, last, lad.cap, lad.cap_source)
                assert stop is not None  # a failed point always stops
                end(lad, *stop)
            elif p.failed and halvings[system] < MAX_HALVINGS:
                halvings[system] += 1
                queue[system] = [rate / 2]
                progress(f"  {system} failed at its first rate: halving to {rate / 2:,.0f}/s")
            elif (stop := stop_after(p, last, lad.cap, lad.cap_source)) is not None:
                end(lad, *stop)
    for lad in ladders:  # a ladder cut short by max_points
        if lad.system not in done:
            end(lad, f"the plan's {max_points} points, below the cap", False)
    return [done[lad.system] for lad in ladders]


def lag_text(p: LoadPoint) -> str:
    if p.gave_up:
        return (
            f"lagged: {p.stored:,} of {p.sent:,} stored {p.lag_s:.0f} s after publishing "
            f"ended (limit {MAX_LAG_S:g} s; waiting stopped, the count still rising)"
        )
    return f"lagged {p.lag_s:.1f} s behind the publishers (limit {MAX_LAG_S:g} s)"


def loss_text(p: LoadPoint) -> str:
    if p.failures:
        return f"publisher failed: {p.failures[0]}"
    if p.stored < p.sent:
        return f"LOST {p.sent - p.stored:,} of {p.sent:,}"
    return f"{p.stored - p.sent:,} EXTRA"


def throughput_cell(p: LoadPoint) -> str:
    if p.lost:
        return "FAILED: " + loss_text(p)
    if p.lagged:
        return f"{p.throughput:,.0f} (lagged: knee)"
    return f"{p.throughput:,.0f}"


def load_table(points: Sequence[LoadPoint]) -> str:
    rows = [
        [
            p.system,
            f"{p.offered:,.0f}",
            f"{p.pushed:,.0f}",
            f"{p.sent:,}",
            f"{p.stored:,}",
            f"{p.seconds:.2f}",
            f"{p.lag_s:.2f}",
            throughput_cell(p),
            f"{p.cpu.get('ingest', p.cpu.get('node-red', float('nan'))):.2f}",
        ]
        for p in points
    ]
    header = [
        "consumer",
        "offered /s",
        "pushed /s",
        "sent",
        "stored",
        "s to last stored",
        "lag s",
        "sustained readings/s",
        "consumer cores",
    ]
    notes = [
        f"- {p.system} at {p.offered:,.0f}/s: the consumer's first errors: "
        + "; ".join(f"`{e}`" for e in p.errors)
        for p in points
        if p.lost and p.errors
    ]
    return "\n".join([markdown_table(header, rows), *(["", *notes] if notes else [])])


def knee_table(curves: Sequence[Curve]) -> str:
    rows = []
    for c in curves:
        best = c.best
        rows.append(
            [
                c.system,
                "none" if best is None else f"**{best.throughput:,.0f}**",
                "" if best is None else f"{best.offered:,.0f}",
                f"{c.cap:,.0f}",
                c.stop if c.error is None else f"ERROR: {c.error}",
            ]
        )
    header = [
        "consumer",
        "highest lossless sustained readings/s",
        "at offered /s",
        "cap /s",
        "the doubling stopped at",
    ]
    return markdown_table(header, rows)
