"""The city as config: its facts (name, time zone, map), catalogue, zones, agencies (and
which answers for each hazard) and devices, loaded and cross-checked.

`load_city` collects every problem it finds (file, line, what is wrong) and raises them
together, so `pantau check-config` shows an operator the whole list at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from pantau.catalogue import Catalogue, DeviceKind, load_catalogue
from pantau.cityfacts import CityFacts, load_city_facts
from pantau.devices import (
    AgenciesFile,
    Agency,
    Device,
    DeviceModel,
    DevicesFile,
    default_config_dir,
    in_service_from,
)
from pantau.errors import ConfigError, ConfigErrors
from pantau.incidents import Hazard
from pantau.yamlconf import LocatedYaml, load_model
from pantau.zoneindex import ZoneIndex
from pantau.zones import ZoneSet, load_zones

T = TypeVar("T")

# Kinds that must carry Siaga levels (their main metric is a water level to warn on).
KINDS_WITH_LEVELS = frozenset({"water_level_station"})


@dataclass(frozen=True, slots=True)
class City:
    config_dir: Path
    facts: CityFacts
    catalogue: Catalogue
    zones: ZoneSet
    agencies: dict[str, Agency]
    hazard_agency: Mapping[Hazard, str]  # the one agency that answers for each hazard
    devices: dict[str, Device]
    index: ZoneIndex  # point -> zone lookups and the zone hierarchy


def city_zones(config_dir: Path, facts: CityFacts) -> ZoneSet:
    """The zones of config/zones/kelurahan.geojson, the kota named by config/city.yaml."""
    return load_zones(
        config_dir / "zones" / "kelurahan.geojson",
        kota_id=facts.kota_id,
        kota_name=facts.display_name,
    )


def load_agencies(path: Path) -> tuple[dict[str, Agency], dict[Hazard, str]]:
    """config/agencies.yaml: the agencies, and the one that answers for each hazard."""
    model, doc = load_model(path, AgenciesFile)
    agencies = {
        aid: Agency(id=aid, name=a.name, short=a.short, responsibilities=a.responsibilities)
        for aid, a in model.agencies.items()
    }
    known = ", ".join(sorted(agencies))
    errors = [
        doc.error(("hazards", hazard.value), f"unknown agency {agency!r} (known: {known})")
        for hazard, agency in model.hazards.items()
        if agency not in agencies
    ]
    # Every hazard needs one: an incident nobody answers for would reach no crew.
    errors += [
        doc.error(("hazards",), f"no agency answers for {hazard.value!r}")
        for hazard in Hazard
        if hazard not in model.hazards
    ]
    if errors:
        raise ConfigErrors(errors)
    return agencies, dict(model.hazards)


def _senml_errors(
    doc: LocatedYaml,
    here: tuple[str | int, ...],
    m: DeviceModel,
    kind: DeviceKind | None,
    senml_names: dict[str, str],
) -> list[ConfigError]:
    """A SenML base name names one device; aliases name metrics of its kind."""
    errors = []
    if m.senml_name is not None:
        other = senml_names.setdefault(m.senml_name, m.id)
        if other != m.id:
            errors.append(
                doc.error(
                    (*here, "senml_name"), f"SenML name {m.senml_name!r} is also device {other!r}'s"
                )
            )
    if kind is not None:
        errors += [
            doc.error(
                (*here, "senml_aliases", alias),
                f"{metric!r} is not a metric of a {m.kind} "
                f"(expected one of {', '.join(kind.metrics)})",
            )
            for alias, metric in m.senml_aliases.items()
            if metric not in kind.metrics
        ]
    return errors


def load_city(config_dir: Path | None = None) -> City:
    config_dir = config_dir or default_config_dir()
    errors: list[ConfigError] = []

    def attempt(load: Callable[[], T]) -> T | None:
        try:
            return load()
        except ConfigErrors as err:
            errors.extend(err.errors)
        except ConfigError as err:
            errors.append(err)
        return None

    facts = attempt(lambda: load_city_facts(config_dir / "city.yaml"))
    catalogue_doc = attempt(lambda: load_catalogue(config_dir / "catalogue.yaml"))
    agencies_doc = attempt(lambda: load_agencies(config_dir / "agencies.yaml"))
    zones = None if facts is None else attempt(lambda: city_zones(config_dir, facts))
    devices_doc = attempt(lambda: load_model(config_dir / "devices.yaml", DevicesFile))
    if (
        facts is None
        or catalogue_doc is None
        or agencies_doc is None
        or zones is None
        or devices_doc is None
    ):
        raise ConfigErrors(errors)

    catalogue, _ = catalogue_doc
    agencies, hazard_agency = agencies_doc
    devices_file, doc = devices_doc
    models = devices_file.devices
    lons = np.array([m.location[0] for m in models])
    lats = np.array([m.location[1] for m in models])
    index = ZoneIndex(zones)
    kelurahan = [index.kelurahan[k] if k >= 0 else None for k in index.kelurahan_of(lons, lats)]
    devices: dict[str, Device] = {}
    senml_names: dict[str, str] = {}  # SenML base name -> device id: one device each
    for i, (m, kel) in enumerate(zip(models, kelurahan, strict=True)):
        here = ("devices", i)
        kind = catalogue.kinds.get(m.kind)
        if m.id in devices:
            errors.append(doc.error((*here, "id"), f"duplicate device id {m.id!r}"))
        if kind is None:
            known = ", ".join(sorted(catalogue.kinds))
            errors.append(doc.error((*here, "kind"), f"unknown kind {m.kind!r} (known: {known})"))
        if m.agency not in agencies:
            known = ", ".join(sorted(agencies))
            errors.append(
                doc.error((*here, "agency"), f"unknown agency {m.agency!r} (known: {known})")
            )
        if kel is None:
            errors.append(
                doc.error(
                    (*here, "location"),
                    f"device {m.id!r} at {list(m.location)} lies outside every kelurahan",
                )
            )
        if m.kind in KINDS_WITH_LEVELS and m.levels is None:
            errors.append(doc.error(here, f"a {m.kind} needs `levels` (Siaga alert/danger)"))
        errors += _senml_errors(doc, here, m, kind, senml_names)
        if kind is None or kel is None or kel.parent_id is None:
            continue
        devices[m.id] = Device(
            id=m.id,
            kind=m.kind,
            agency=m.agency,
            lon=m.location[0],
            lat=m.location[1],
            name=m.name,
            kelurahan_id=kel.id,
            kecamatan_id=kel.parent_id,
            metrics=kind.metrics,
            levels=m.levels,
            in_service_from=in_service_from(m.commissioned),
            gateway=m.gateway,
            uploads_every_s=m.uploads_every_s,
            senml_name=m.senml_name,
            senml_aliases=tuple(m.senml_aliases.items()),
        )
    if errors:
        raise ConfigErrors(errors)
    return City(
        config_dir=config_dir,
        facts=facts,
        catalogue=catalogue,
        zones=zones,
        agencies=agencies,
        hazard_agency=hazard_agency,
        devices=devices,
        index=index,
    )
