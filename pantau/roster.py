"""The crew roster (config/crews.yaml): crews, their shifts and kecamatan, and each
agency's supervisor, checked against the city. Shift times are the city's local time
(config/city.yaml); the agency that answers for a hazard is config/agencies.yaml's.

Loaded here, in the kernel, because the rules (routing alerts) and the API (crew
accounts, scopes) both read it; `rules.routing.Router` decides who gets an incident.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from pantau.city import City
from pantau.errors import ConfigError, ConfigErrors
from pantau.incidents import Hazard
from pantau.yamlconf import load_model

CREW_ID_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"  # also an MQTT topic level
_CLOCK = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ShiftModel(_Strict):
    start: str = Field(pattern=_CLOCK.pattern, description="HH:MM local time, inclusive")
    end: str = Field(pattern=_CLOCK.pattern, description="HH:MM local, exclusive; may wrap")


class SupervisorModel(_Strict):
    id: str = Field(pattern=CREW_ID_PATTERN, description="alert address (crew id)")
    name: str = Field(min_length=1)


class CrewModel(_Strict):
    id: str = Field(pattern=CREW_ID_PATTERN)
    agency: str = Field(description="agency id from config/agencies.yaml")
    shift: str = Field(description="a name from `shifts`")
    kecamatan: list[str] = Field(min_length=1, description="kecamatan zone ids covered")


class CrewsFile(_Strict):
    shifts: dict[str, ShiftModel] = Field(min_length=1)
    supervisors: dict[str, SupervisorModel] = Field(description="agency id -> supervisor")
    crews: list[CrewModel]


@dataclass(frozen=True, slots=True)
class Shift:
    name: str
    start: time
    end: time

    def covers(self, local: time) -> bool:
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end  # wraps past midnight


@dataclass(frozen=True, slots=True, kw_only=True)
class Crew:
    id: str
    agency: str
    shift: Shift
    kecamatan: frozenset[str]


@dataclass(frozen=True, slots=True)
class Roster:
    crews: tuple[Crew, ...]
    supervisors: dict[str, str]  # agency id -> supervisor's crew id
    time_zone: ZoneInfo  # the city's: shift times are on its clock
    hazard_agency: Mapping[Hazard, str]  # the city's: who answers for each hazard

    def local_time(self, at: datetime) -> time:
        """`at` (tz-aware) as a time of day on the city's clock, to compare with shifts."""
        return at.astimezone(self.time_zone).time()

    @property
    def addresses(self) -> frozenset[str]:
        """Every id an alert can go to (crews and supervisors)."""
        return frozenset(c.id for c in self.crews) | frozenset(self.supervisors.values())


def _clock(text: str) -> time:
    hh, mm = text.split(":")
    return time(int(hh), int(mm))


def load_roster(city: City, path: Path | None = None) -> Roster:
    """Read config/crews.yaml (or `path`) and check it against the city; every problem
    is raised at once with its file and line."""
    model, doc = load_model(path or city.config_dir / "crews.yaml", CrewsFile)
    errors: list[ConfigError] = []
    kecamatan = {z.id for z in city.zones.kecamatan}
    shifts = {n: Shift(n, _clock(s.start), _clock(s.end)) for n, s in model.shifts.items()}
    for name, s in model.shifts.items():
        if s.start == s.end:
            errors.append(doc.error(("shifts", name), "a shift cannot start and end at once"))
    for agency in model.supervisors:
        if agency not in city.agencies:
            errors.append(doc.error(("supervisors", agency), f"unknown agency {agency!r}"))
    for agency in sorted(set(city.agencies) - set(model.supervisors)):
        errors.append(doc.error(("supervisors",), f"agency {agency!r} has no supervisor"))
    seen_ids = set(s.id for s in model.supervisors.values())
    covered: dict[tuple[str, str, str], str] = {}
    crews: list[Crew] = []
    for i, c in enumerate(model.crews):
        here = ("crews", i)
        if c.id in seen_ids:
            errors.append(doc.error((*here, "id"), f"duplicate crew id {c.id!r}"))
        seen_ids.add(c.id)
        if c.agency not in city.agencies:
            errors.append(doc.error((*here, "agency"), f"unknown agency {c.agency!r}"))
        if c.shift not in shifts:
            known = ", ".join(shifts)
            errors.append(doc.error((*here, "shift"), f"unknown shift {c.shift!r} ({known})"))
            continue
        for j, kec in enumerate(c.kecamatan):
            if kec not in kecamatan:
                errors.append(doc.error((*here, "kecamatan", j), f"unknown kecamatan {kec!r}"))
            other = covered.setdefault((c.agency, c.shift, kec), c.id)
            if other != c.id:
                errors.append(
                    doc.error(
                        (*here, "kecamatan", j),
                        f"{kec} on {c.shift} is already covered by {other!r}",
                    )
                )
        crews.append(
            Crew(id=c.id, agency=c.agency, shift=shifts[c.shift], kecamatan=frozenset(c.kecamatan))
        )
    if errors:
        raise ConfigErrors(errors)
    supervisors = {agency: s.id for agency, s in model.supervisors.items()}
    return Roster(tuple(crews), supervisors, city.facts.time_zone, city.hazard_agency)
