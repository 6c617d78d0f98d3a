"""Scenarios: a YAML file says when, how long, which weather and which faults.

Example (see simulators/scenarios/ for complete ones)::

    name: storm-karawaci
    description: Two-hour convective storm over Karawaci.
    start: 2026-01-14T08:30:00Z        # UTC (15:30 on the demo city's clock)
    duration: 2h                        # 90s, 45m, 2h, 1d, 1h30m; at most 2d
    seed: 7
    senml_fraction: 0.3                 # share of messages sent as SenML, rest native
    malformed_rate: 0.002               # share of all messages that are malformed
    storm_cells:
      - name: core
        over: kec-karawaci              # a zone id, or [lon, lat]
        at: 35m                         # when the centre passes over it
        heading_deg: 45                 # direction of travel, 0 north, 90 east
        speed_kmh: 8
        radius_km: 4                    # e-folding radius of the rain footprint
        peak_mm_h: 110
        begins: 5m
        ends: 1h45m
    faults:
      - kind: stuck                     # dropout | stuck | spike | drift | clock_skew | malformed
                                        # | store_and_forward (every: 10m) | uplink_outage
        devices: [wl-cimone-015]        # or a group: kinds and/or zone
        from: 30m
        until: 1h30m

Offsets (`at`, `begins`, `from`, ...) are from the scenario start, so a run can move
the whole scenario in time (see simclock.anchored_start) and keep its shape.
Cross-checks against the city (zone ids, device ids, kinds, metrics) report the
file and line, like every other config error.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from pantau.city import City
from pantau.errors import ConfigError, ConfigErrors
from pantau.yamlconf import LocatedYaml, load_model
from pantau.zones import Zone
from simulators.reasons import Reason

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"
MAX_DURATION = timedelta(days=2)

# Clock skews must be unambiguous whatever the lag of a run behind the wall clock
# (at most a day + the scenario, see simclock.anchored_start): readings skewed within
# VALID_SKEW stay valid for ingest (<= 300 s ahead, <= 7 days old); skews beyond
# BAD_SKEW_* are always refused as bad_timestamp.
VALID_SKEW = (-86400.0, 240.0)
BAD_SKEW_AHEAD = 4 * 86400.0
BAD_SKEW_BEHIND = -8 * 86400.0

_DURATION = re.compile(r"^\s*([+-])?\s*((?:\d+(?:\.\d+)?\s*[dhms]\s*)+)$")
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([dhms])")
_UNIT_S = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(value: object) -> float:
    """Seconds from `90`, `90s`, `45m`, `1h30m`, `2d`, `-1d` (a bare number is seconds)."""
    if isinstance(value, bool):
        raise ValueError("a duration, e.g. 90s, 45m, 2h or 1h30m")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
        match = _DURATION.fullmatch(value)
        if match:
            seconds = sum(float(n) * _UNIT_S[u] for n, u in _PART.findall(match.group(2)))
            return -seconds if match.group(1) == "-" else seconds
    raise ValueError(f"{value!r} is not a duration (e.g. 90s, 45m, 2h, 1h30m, -1d)")


Seconds = Annotated[float, BeforeValidator(parse_duration)]
ZoneOrPoint = str | tuple[float, float]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class StormCellModel(_Strict):
    name: str = Field(min_length=1, description="label for logs")
    over: ZoneOrPoint = Field(description="zone id (its centre) or [lon, lat] the cell crosses")
    at: Seconds = Field(ge=0, description="offset at which the cell centre is over `over`")
    heading_deg: float = Field(ge=0, lt=360, description="direction of travel, 0 north, 90 east")
    speed_kmh: float = Field(ge=0, le=80)
    radius_km: float = Field(gt=0, le=60, description="e-folding radius of the footprint")
    peak_mm_h: float = Field(gt=0, le=300, description="centre intensity at maturity")
    begins: Seconds = Field(ge=0)
    ends: Seconds = Field(gt=0)

    @model_validator(mode="after")
    def _life(self) -> StormCellModel:
        if not self.begins <= self.at <= self.ends:
            raise ValueError("a cell needs begins <= at <= ends")
        if self.begins == self.ends:
            raise ValueError("a cell needs begins < ends")
        return self


class _FaultBase(_Strict):
    devices: list[str] = Field(default_factory=list, description="explicit device ids")
    kinds: list[str] = Field(default_factory=list, description="group: device kinds")
    zone: str | None = Field(default=None, description="group: devices in this zone")
    from_: Seconds = Field(default=0.0, alias="from", ge=0)
    until: Seconds | None = Field(default=None, description="default: the scenario end")

    @model_validator(mode="after")
    def _targets(self) -> _FaultBase:
        if self.devices and (self.kinds or self.zone):
            raise ValueError("give either `devices` or a group (`kinds` and/or `zone`)")
        if not (self.devices or self.kinds or self.zone):
            raise ValueError("a fault needs `devices`, `kinds` or `zone`")
        if self.until is not None and self.until <= self.from_:
            raise ValueError("`until` must be after `from`")
        return self


class DropoutModel(_FaultBase):
    kind: Literal["dropout"]


class StuckModel(_FaultBase):
    kind: Literal["stuck"]
    metrics: list[str] | None = Field(default=None, description="default: the main metrics")


class SpikeModel(_FaultBase):
    kind: Literal["spike"]
    metrics: list[str] | None = None
    probability: float = Field(default=0.1, gt=0, le=1, description="per message")
    magnitude: float | None = Field(
        default=None, gt=0, description="jump in canonical units; default 40 % of valid span"
    )


class DriftModel(_FaultBase):
    kind: Literal["drift"]
    metrics: list[str] | None = None
    rate_per_hour: float = Field(description="canonical units per hour, signed")


class ClockSkewModel(_FaultBase):
    kind: Literal["clock_skew"]
    offset: Seconds = Field(description="device clock minus true time, e.g. 90s or 5d")

    @field_validator("offset")
    @classmethod
    def _unambiguous(cls, offset: float) -> float:
        lo, hi = VALID_SKEW
        if lo <= offset <= hi or offset >= BAD_SKEW_AHEAD or offset <= BAD_SKEW_BEHIND:
            return offset
        raise ValueError(
            f"offset {offset:g}s is ambiguous: use {lo:g}..{hi:g}s (readings stay valid) or "
            f">= {BAD_SKEW_AHEAD:g}s / <= {BAD_SKEW_BEHIND:g}s (bad_timestamp)"
        )


class StoreAndForwardModel(_FaultBase):
    """A logger that keeps its readings and uploads them in a batch every `every`."""

    kind: Literal["store_and_forward"]
    every: Seconds = Field(gt=0, description="upload interval, e.g. 10m")


class UplinkOutageModel(_FaultBase):
    """The uplink (a gateway) is down from `from` to `until`; the devices keep their
    readings and deliver the backlog when it is back. Unlike `dropout`, nothing is lost."""

    kind: Literal["uplink_outage"]


class MalformedModel(_FaultBase):
    kind: Literal["malformed"]
    rate: float = Field(default=1.0, gt=0, le=1, description="share of messages malformed")
    reasons: list[Reason] = Field(default_factory=lambda: list(Reason), min_length=1)


FaultModel = Annotated[
    DropoutModel
    | StuckModel
    | SpikeModel
    | DriftModel
    | ClockSkewModel
    | MalformedModel
    | StoreAndForwardModel
    | UplinkOutageModel,
    Field(discriminator="kind"),
]
_FAULT: TypeAdapter[FaultModel] = TypeAdapter(FaultModel)
_FAULT_KINDS = frozenset(
    {
        "dropout",
        "stuck",
        "spike",
        "drift",
        "clock_skew",
        "malformed",
        "store_and_forward",
        "uplink_outage",
    }
)


class ScenarioFile(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")
    description: str = Field(min_length=1)
    start: datetime = Field(description="UTC start, e.g. 2026-01-14T08:30:00Z")
    duration: Seconds = Field(gt=0, le=MAX_DURATION.total_seconds())
    seed: int = Field(ge=0)
    senml_fraction: float = Field(default=0.3, ge=0, le=1)
    malformed_rate: float = Field(default=0.0, ge=0, le=0.5)
    storm_cells: list[StormCellModel] = Field(default_factory=list)
    # Validated per fault in scenario_from_model: pydantic puts a discriminated union's
    # tag into error locations, which would hide the line of the offending key.
    faults: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("start")
    @classmethod
    def _utc(cls, start: datetime) -> datetime:
        if start.tzinfo is None:
            raise ValueError("start needs a UTC offset, e.g. 2026-01-14T08:30:00Z")
        return start.astimezone(UTC)


# --- the validated scenario ----------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class StormCell:
    """A rain cell moving in a straight line; positions are [lon, lat] degrees."""

    name: str
    lon: float  # where the centre is at offset `at_s`
    lat: float
    at_s: float
    heading_deg: float
    speed_kmh: float
    radius_km: float
    peak_mm_h: float
    begins_s: float
    ends_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultWindow:
    devices: frozenset[str]
    start_s: float
    end_s: float

    def active(self, offset_s: float) -> bool:
        return self.start_s <= offset_s < self.end_s


@dataclass(frozen=True, slots=True, kw_only=True)
class Dropout(FaultWindow):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Stuck(FaultWindow):
    metrics: frozenset[str] | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Spike(FaultWindow):
    metrics: frozenset[str] | None
    probability: float
    magnitude: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Drift(FaultWindow):
    metrics: frozenset[str] | None
    rate_per_hour: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ClockSkew(FaultWindow):
    offset_s: float

    @property
    def refused(self) -> bool:
        return not VALID_SKEW[0] <= self.offset_s <= VALID_SKEW[1]


@dataclass(frozen=True, slots=True, kw_only=True)
class Malformed(FaultWindow):
    rate: float
    reasons: tuple[Reason, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreAndForward(FaultWindow):
    every_s: float

    def upload_at(self, offset_s: float) -> float:
        """When a reading taken at `offset_s` leaves the device: the next upload."""
        return self.start_s + math.ceil((offset_s - self.start_s) / self.every_s) * self.every_s


@dataclass(frozen=True, slots=True, kw_only=True)
class UplinkOutage(FaultWindow):
    pass


Fault = Dropout | Stuck | Spike | Drift | ClockSkew | Malformed | StoreAndForward | UplinkOutage
# Faults that delay a message (its readings keep their device time) instead of changing it.
DELAYS = (StoreAndForward, UplinkOutage)


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    name: str
    description: str
    start: datetime
    duration_s: float
    seed: int
    senml_fraction: float
    malformed_rate: float
    cells: tuple[StormCell, ...]
    faults: tuple[Fault, ...]

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.duration_s)


def load_scenario(path: Path, city: City) -> Scenario:
    """Validate a scenario file against its schema and against the city."""
    model, doc = load_model(path, ScenarioFile)
    return scenario_from_model(model, city, doc)


def scenario_from_model(model: ScenarioFile, city: City, doc: LocatedYaml | None) -> Scenario:
    errors: list[ConfigError] = []

    def error(loc: tuple[str | int, ...], problem: str) -> None:
        if doc is None:
            errors.append(ConfigError("<scenario>", None, problem))
        else:
            errors.append(doc.error(loc, problem))

    zones = city.zones.by_id()
    cells: list[StormCell] = []
    for i, c in enumerate(model.storm_cells):
        where = _place(c.over, zones)
        if where is None:
            error(("storm_cells", i, "over"), f"unknown zone id {c.over!r}{_known(zones)}")
            continue
        cells.append(
            StormCell(
                name=c.name,
                lon=where[0],
                lat=where[1],
                at_s=c.at,
                heading_deg=c.heading_deg,
                speed_kmh=c.speed_kmh,
                radius_km=c.radius_km,
                peak_mm_h=c.peak_mm_h,
                begins_s=c.begins,
                ends_s=c.ends,
            )
        )

    faults: list[Fault] = []
    for i, raw in enumerate(model.faults):
        try:
            f = _FAULT.validate_python(raw)
        except ValidationError as err:
            for e in err.errors():
                loc = tuple(p for p in e["loc"] if isinstance(p, str | int))
                if e["type"] in {"union_tag_invalid", "union_tag_not_found"}:
                    loc = ("kind",)
                elif loc and loc[0] in _FAULT_KINDS:
                    loc = loc[1:]  # drop the discriminator's tag
                msg = "unknown key" if e["type"] == "extra_forbidden" else str(e["msg"])
                error(("faults", i, *loc), msg)
            continue
        targets = _targets(f, city, partial(_fault_error, error, i))
        if targets is None:
            continue
        metrics = getattr(f, "metrics", None)
        if metrics is not None:
            offered = {m for d in targets for m in city.devices[d].metrics}
            for j, m in enumerate(metrics):
                if m not in offered:
                    error(("faults", i, "metrics", j), f"no targeted device reports {m!r}")
        faults.append(_fault(f, frozenset(targets), model.duration))
    if errors:
        raise ConfigErrors(errors)
    return Scenario(
        name=model.name,
        description=model.description,
        start=model.start,
        duration_s=model.duration,
        seed=model.seed,
        senml_fraction=model.senml_fraction,
        malformed_rate=model.malformed_rate,
        cells=tuple(cells),
        faults=tuple(faults),
    )


def _fault_error(
    error: Callable[[tuple[str | int, ...], str], None],
    i: int,
    loc: tuple[str | int, ...],
    problem: str,
) -> None:
    error(("faults", i, *loc), problem)


def _fault(f: _FaultBase, devices: frozenset[str], duration_s: float) -> Fault:
    start, end = f.from_, duration_s if f.until is None else f.until
    metrics = getattr(f, "metrics", None)
    mset = None if metrics is None else frozenset(metrics)
    match f:
        case DropoutModel():
            return Dropout(devices=devices, start_s=start, end_s=end)
        case StuckModel():
            return Stuck(devices=devices, start_s=start, end_s=end, metrics=mset)
        case SpikeModel():
            return Spike(
                devices=devices,
                start_s=start,
                end_s=end,
                metrics=mset,
                probability=f.probability,
                magnitude=f.magnitude,
            )
        case DriftModel():
            return Drift(
                devices=devices,
                start_s=start,
                end_s=end,
                metrics=mset,
                rate_per_hour=f.rate_per_hour,
            )
        case ClockSkewModel():
            return ClockSkew(devices=devices, start_s=start, end_s=end, offset_s=f.offset)
        case StoreAndForwardModel():
            return StoreAndForward(devices=devices, start_s=start, end_s=end, every_s=f.every)
        case UplinkOutageModel():
            return UplinkOutage(devices=devices, start_s=start, end_s=end)
        case MalformedModel():
            return Malformed(
                devices=devices, start_s=start, end_s=end, rate=f.rate, reasons=tuple(f.reasons)
            )
    raise AssertionError(f"unhandled fault model {type(f).__name__}")


def _place(over: ZoneOrPoint, zones: dict[str, Zone]) -> tuple[float, float] | None:
    if isinstance(over, tuple):
        return over
    zone = zones.get(over)
    if zone is None:
        return None
    geometry = zone.geometry
    centre = geometry.centroid
    if not geometry.contains(centre):  # a crescent-shaped zone: use a point inside it
        centre = geometry.representative_point()
    return float(centre.x), float(centre.y)


def _targets(
    f: _FaultBase, city: City, error: Callable[[tuple[str | int, ...], str], None]
) -> list[str] | None:
    ok = True
    for j, d in enumerate(f.devices):
        if d not in city.devices:
            error(("devices", j), f"unknown device id {d!r}")
            ok = False
    for j, k in enumerate(f.kinds):
        if k not in city.catalogue.kinds:
            error(("kinds", j), f"unknown device kind {k!r}")
            ok = False
    zone_ids: set[str] | None = None
    if f.zone is not None:
        zones = city.zones.by_id()
        if f.zone not in zones:
            error(("zone",), f"unknown zone id {f.zone!r}{_known(zones)}")
            ok = False
        else:
            zone_ids = {f.zone}
    if not ok:
        return None
    if f.devices:
        return sorted(set(f.devices))
    chosen = [
        d.id
        for d in city.devices.values()
        if (not f.kinds or d.kind in f.kinds)
        and (zone_ids is None or zone_ids & {d.kelurahan_id, d.kecamatan_id, city.zones.kota.id})
    ]
    if not chosen:
        error(("kinds",) if f.kinds else ("zone",), "selects no device")
        return None
    return sorted(chosen)


def _known(zones: dict[str, Zone]) -> str:
    kecamatan = sorted(z for z in zones if z.startswith("kec-"))
    return f" (kecamatan: {', '.join(kecamatan)}; kelurahan ids start with kel-)"


def scenario_paths(directory: Path = SCENARIO_DIR) -> list[Path]:
    return sorted(directory.glob("*.yaml"))


def find_scenario(name_or_path: str, directory: Path = SCENARIO_DIR) -> Path:
    """A path as given, or a scenario name from simulators/scenarios/."""
    path = Path(name_or_path)
    if path.exists():
        return path
    named = directory / f"{name_or_path.removesuffix('.yaml')}.yaml"
    if named.exists():
        return named
    known = ", ".join(p.stem for p in scenario_paths(directory))
    raise ConfigError(path, None, f"no such scenario file or name (known: {known})")
