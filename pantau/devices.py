"""The device registry: every sensor the city owns, where it is and who answers for it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from pantau.incidents import Hazard
from pantau.topics import DEVICE_ID_PATTERN

# When a device or camera went into service. KPIs count its availability only from then
# (api.kpi_queries): a device installed mid-month is not "down" for the days before it.
Commissioned = Annotated[
    AwareDatetime | date | None,
    Field(
        default=None,
        description="when it went into service (a date: 00:00 UTC of it); none: before "
        "any period a KPI is asked for",
    ),
]


def in_service_from(commissioned: datetime | date | None) -> datetime | None:
    if commissioned is None or isinstance(commissioned, datetime):
        return None if commissioned is None else commissioned.astimezone(UTC)
    return datetime(commissioned.year, commissioned.month, commissioned.day, tzinfo=UTC)


class Levels(BaseModel):
    """Siaga levels of a water-level station, in cm above the channel bed.

    Indonesian flood warning uses Siaga IV (normal) .. Siaga I (awas); Pantau keeps the
    two an operator acts on: `alert_cm` (Siaga II, waspada) and `danger_cm` (Siaga I, awas),
    plus the bank-full depth that bounds what the sensor can see.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    alert_cm: float = Field(gt=0, description="Siaga II (waspada): crews prepare")
    danger_cm: float = Field(gt=0, description="Siaga I (awas): flooding imminent")
    bankfull_cm: float = Field(gt=0, description="depth at which the channel overtops")

    @model_validator(mode="after")
    def _ordered(self) -> Levels:
        if not self.alert_cm < self.danger_cm <= self.bankfull_cm:
            raise ValueError("levels must satisfy alert_cm < danger_cm <= bankfull_cm")
        return self


class DeviceModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=DEVICE_ID_PATTERN)
    kind: str = Field(description="a device kind from the catalogue")
    agency: str = Field(description="agency id from agencies.yaml")
    location: tuple[float, float] = Field(description="[lon, lat] in WGS 84")
    name: str = Field(default="", description="human label, e.g. the street or channel")
    levels: Levels | None = Field(default=None, description="water-level stations only")
    commissioned: Commissioned = None
    gateway: str | None = Field(
        default=None,
        pattern=DEVICE_ID_PATTERN,
        description="the gateway it reports through: its source of event time (rules)",
    )
    uploads_every_s: float | None = Field(
        default=None,
        gt=0,
        description="store-and-forward: it uploads its readings in batches this often (s)",
    )
    senml_name: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9\-:./_]*$",
        description="the SenML base name the device sends (RFC 8428 4.5.1), e.g. "
        "urn:dev:ow:10e2073a01080063:",
    )
    senml_aliases: dict[str, str] = Field(
        default_factory=dict,
        description="SenML name (after the base name, or whole) -> a metric of its kind",
    )


class AgencyModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    short: str = Field(min_length=1)
    responsibilities: str = Field(min_length=1)


class AgenciesFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    agencies: dict[str, AgencyModel]
    hazards: dict[Hazard, str] = Field(description="hazard -> the agency that answers for it")


class DevicesFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    devices: list[DeviceModel] = Field(min_length=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class Device:
    """A registered device with its zones resolved once, at load."""

    id: str
    kind: str
    agency: str
    lon: float
    lat: float
    name: str
    kelurahan_id: str
    kecamatan_id: str
    metrics: tuple[str, ...]
    levels: Levels | None
    in_service_from: datetime | None = None  # None: in service before any period asked about
    # Where its event time comes from (rules.engine): its gateway when it has one, and
    # how long its readings may wait on the device before an upload.
    gateway: str | None = None
    uploads_every_s: float | None = None
    senml_name: str | None = None
    senml_aliases: tuple[tuple[str, str], ...] = ()  # SenML name -> metric


@dataclass(frozen=True, slots=True, kw_only=True)
class Agency:
    id: str
    name: str
    short: str
    responsibilities: str


def default_config_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "config"
