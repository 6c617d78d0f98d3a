"""The city's own facts (config/city.yaml): its name, local time zone, who speaks for it
in public alerts, and where its map is centred.

Nothing in code names the city: another city runs Pantau by swapping config/.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pantau.yamlconf import load_model
from pantau.zones import slug


class MapView(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    zoom: int = Field(ge=1, le=20, description="web-map zoom level showing the whole city")


class CityFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="short name; the kota zone is kota-<slug>")
    display_name: str = Field(min_length=1, description="the name people read")
    government: str = Field(min_length=1, description="who issues public alerts (CAP)")
    cap_sender: str = Field(min_length=3, description="CAP <sender>: the city's address")
    time_zone: str = Field(description="IANA (tz database) Area/City name")
    map: MapView

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError) as err:
            raise ValueError(f"unknown IANA time zone {name!r} (an Area/City name)") from err
        return name


@dataclass(frozen=True, slots=True)
class CityFacts:
    name: str
    display_name: str
    government: str
    cap_sender: str
    time_zone: ZoneInfo  # shifts, KPI calendar periods and local times shown to people
    map: MapView

    @property
    def slug(self) -> str:
        return slug(self.name)

    @property
    def kota_id(self) -> str:
        return f"kota-{self.slug}"

    def local(self, when: datetime) -> datetime:
        """`when` (tz-aware) on the city's clock."""
        return when.astimezone(self.time_zone)


def load_city_facts(path: Path) -> CityFacts:
    """Read config/city.yaml; errors name the file and line."""
    model, _ = load_model(path, CityFile)
    return CityFacts(
        name=model.name,
        display_name=model.display_name,
        government=model.government,
        cap_sender=model.cap_sender,
        time_zone=ZoneInfo(model.time_zone),
        map=model.map,
    )
