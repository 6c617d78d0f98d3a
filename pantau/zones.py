"""Zones: the kota -> kecamatan -> kelurahan hierarchy built from real boundaries.

Kelurahan polygons come from the BPS / OCHA HDX COD-AB 2020 layer. Kecamatan are
derived by dissolving their kelurahan, not read from the coarse simplified layer,
which puts border points in the wrong kecamatan (see the data README).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import shapely
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from pantau.errors import ConfigError


class ZoneLevel(StrEnum):
    KOTA = "kota"
    KECAMATAN = "kecamatan"
    KELURAHAN = "kelurahan"


@dataclass(frozen=True, slots=True, kw_only=True)
class Zone:
    id: str  # stable slug: "kel-<village>", "kec-<district>", "kota-<city>"
    name: str
    level: ZoneLevel
    code: str  # the source's official code (BPS)
    parent_id: str | None
    geometry: BaseGeometry


def slug(name: str) -> str:
    """ASCII slug for ids and topics: 'Karang Tengah' -> 'karang-tengah'."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")


@dataclass(frozen=True, slots=True)
class ZoneSet:
    """All zones of a city. Point lookups are `pantau.zoneindex.ZoneIndex`'s (`City.index`)."""

    kota: Zone
    kecamatan: tuple[Zone, ...]
    kelurahan: tuple[Zone, ...]

    def all(self) -> tuple[Zone, ...]:
        return (self.kota, *self.kecamatan, *self.kelurahan)

    def by_id(self) -> dict[str, Zone]:
        return {z.id: z for z in self.all()}


def load_zones(kelurahan_geojson: Path, *, kota_id: str, kota_name: str) -> ZoneSet:
    """Kelurahan from a BPS/HDX GeoJSON file, kecamatan and kota dissolved from them
    (the kota's id and name come from config/city.yaml, see pantau.cityfacts)."""
    try:
        doc: dict[str, Any] = json.loads(kelurahan_geojson.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(kelurahan_geojson, None, f"cannot read GeoJSON: {err}") from err
    features = doc.get("features")
    if not isinstance(features, list) or not features:
        raise ConfigError(kelurahan_geojson, None, "no features in the FeatureCollection")

    kelurahan: list[Zone] = []
    parts: dict[str, list[tuple[str, BaseGeometry]]] = defaultdict(list)
    kec_codes: dict[str, str] = {}
    seen: set[str] = set()
    for i, feature in enumerate(features):
        props = feature.get("properties") or {}
        try:
            village, district = str(props["village"]), str(props["district"])
            village_code, district_code = str(props["village_code"]), str(props["district_code"])
            geometry = shapely.make_valid(shape(feature["geometry"]))
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ConfigError(kelurahan_geojson, None, f"feature {i}: {err!r}") from err
        kel_id = f"kel-{slug(village)}"
        if kel_id in seen:  # two villages with one name: disambiguate by district
            kel_id = f"kel-{slug(district)}-{slug(village)}"
        seen.add(kel_id)
        kec_id = f"kec-{slug(district)}"
        kec_codes[kec_id] = district_code
        kelurahan.append(
            Zone(
                id=kel_id,
                name=village,
                level=ZoneLevel.KELURAHAN,
                code=village_code,
                parent_id=kec_id,
                geometry=geometry,
            )
        )
        parts[kec_id].append((district, geometry))

    kecamatan = tuple(
        Zone(
            id=kec_id,
            name=geoms[0][0],
            level=ZoneLevel.KECAMATAN,
            code=kec_codes[kec_id],
            parent_id=kota_id,
            geometry=shapely.union_all([g for _, g in geoms]),
        )
        for kec_id, geoms in sorted(parts.items())
    )
    kota = Zone(
        id=kota_id,
        name=kota_name,
        level=ZoneLevel.KOTA,
        code="",
        parent_id=None,
        geometry=shapely.union_all([z.geometry for z in kecamatan]),
    )
    for zone in (kota, *kecamatan, *kelurahan):
        shapely.prepare(zone.geometry)
    return ZoneSet(kota, kecamatan, tuple(sorted(kelurahan, key=lambda z: z.id)))
