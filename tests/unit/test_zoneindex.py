"""ZoneIndex on the real Kota Tangerang kelurahan polygons."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely

from pantau.city import City
from pantau.errors import ConfigError
from pantau.zoneindex import ExtraLevel, ZoneIndex, load_extra_zones
from pantau.zones import Zone

EARTH_RADIUS_M = 6_371_008.8


@pytest.fixture(scope="module")
def index(city: City) -> ZoneIndex:
    return ZoneIndex.for_city(city)


def ids(zones: tuple[Any, ...]) -> list[str]:
    return [z.id for z in zones]


def destination(
    lon: float, lat: float, bearing_deg: float, distance_m: float
) -> tuple[float, float]:
    """Great-circle destination point: independent of the index's equirectangular buffer."""
    d = distance_m / EARTH_RADIUS_M
    b, p1, l1 = math.radians(bearing_deg), math.radians(lat), math.radians(lon)
    p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(b))
    l2 = l1 + math.atan2(
        math.sin(b) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2)
    )
    return math.degrees(l2), math.degrees(p2)


def bearing(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    p1, p2, dl = math.radians(lat1), math.radians(lat2), math.radians(lon2 - lon1)
    y = math.sin(dl) * math.cos(p2)
    x = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return math.degrees(math.atan2(y, x))


def write_extras(path: Path, features: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def feature(geometry: dict[str, Any], **props: Any) -> dict[str, Any]:
    return {"type": "Feature", "properties": props, "geometry": geometry}


def line(*points: tuple[float, float]) -> dict[str, Any]:
    return {"type": "LineString", "coordinates": [list(p) for p in points]}


def square(lon: float, lat: float, half: float) -> dict[str, Any]:
    ring = [
        [lon - half, lat - half],
        [lon + half, lat - half],
        [lon + half, lat + half],
        [lon - half, lat + half],
        [lon - half, lat - half],
    ]
    return {"type": "Polygon", "coordinates": [ring]}


# Point lookups


def plain_point_in_polygon(city: City, lons: np.ndarray, lats: np.ndarray) -> list[Zone | None]:
    """The border rule written the plain way: the first kelurahan (by id) that intersects."""
    result: list[Zone | None] = [None] * len(lons)
    for zone in city.zones.kelurahan:
        for i in np.flatnonzero(shapely.intersects_xy(zone.geometry, lons, lats)):
            if result[i] is None:
                result[i] = zone
    return result


def test_sukasari_is_in_kecamatan_tangerang_not_karawaci(index: ZoneIndex) -> None:
    # The simplified kecamatan layer puts this point in Karawaci; the dissolved
    # kelurahan (what Pantau uses) put it in Sukasari, kecamatan Tangerang.
    assert ids(index.zones_at(106.63, -6.18)) == ["kota-tangerang", "kec-tangerang", "kel-sukasari"]


@pytest.mark.parametrize(
    ("lon", "lat"),
    [(106.80, -6.20), (106.50, -6.18), (106.63, -6.30), (0.0, 0.0), (math.nan, -6.18)],
)
def test_outside_the_city_is_in_no_zone(index: ZoneIndex, lon: float, lat: float) -> None:
    assert index.zones_at(lon, lat) == ()
    assert index.kelurahan_of(np.array([lon]), np.array([lat])).tolist() == [-1]


def test_batch_equals_per_point_and_a_plain_polygon_test(index: ZoneIndex, city: City) -> None:
    xmin, ymin, xmax, ymax = city.zones.kota.geometry.bounds
    rng = np.random.default_rng(20260101)
    lons = rng.uniform(xmin, xmax, 10_000)
    lats = rng.uniform(ymin, ymax, 10_000)
    batch = index.kelurahan_of(lons, lats)
    single = [
        index.zones_at(lon, lat) for lon, lat in zip(lons.tolist(), lats.tolist(), strict=True)
    ]
    assert [ids(z)[-1] if z else None for z in single] == [
        index.kelurahan[k].id if k >= 0 else None for k in batch.tolist()
    ]
    # Independent reference: a plain polygon-by-polygon test, no grid.
    reference = plain_point_in_polygon(city, lons, lats)
    assert [z.id if z else None for z in reference] == [
        index.kelurahan[k].id if k >= 0 else None for k in batch.tolist()
    ]
    inside = int((batch >= 0).sum())
    assert 3_000 < inside < 7_000  # the city fills about half of its bounding box
    assert len({k for k in batch.tolist() if k >= 0}) > 90  # nearly every kelurahan hit
    # Every point in a kelurahan has its kecamatan and the kota, in that order.
    for zones in single:
        if zones:
            kota, kec, kel = zones
            assert (kel.parent_id, kec.parent_id, kota.parent_id) == (kec.id, kota.id, None)


def test_points_near_borders_match_a_plain_polygon_test(index: ZoneIndex, city: City) -> None:
    # Random points are mostly far from borders; the grid's shortcuts are tested here,
    # within ~30 m of a boundary, where a missed boundary cell would answer wrongly.
    edges = shapely.segmentize(shapely.boundary([z.geometry for z in index.kelurahan]), 1e-4)
    coords = shapely.get_coordinates(edges)
    rng = np.random.default_rng(11)
    picked = coords[rng.choice(len(coords), 20_000, replace=False)]
    lons = picked[:, 0] + rng.uniform(-3e-4, 3e-4, len(picked))
    lats = picked[:, 1] + rng.uniform(-3e-4, 3e-4, len(picked))
    batch = [index.kelurahan[k].id if k >= 0 else None for k in index.kelurahan_of(lons, lats)]
    reference = [z.id if z else None for z in plain_point_in_polygon(city, lons, lats)]
    assert batch == reference
    single = [index.zones_at(x, y) for x, y in zip(lons[:2000], lats[:2000], strict=True)]
    assert [ids(z)[-1] if z else None for z in single] == batch[:2000]


def test_points_on_shared_borders_resolve_to_the_first_kelurahan(
    index: ZoneIndex, city: City
) -> None:
    # Vertices present in two kelurahan rings lie exactly on both borders.
    geoms = [z.geometry for z in index.kelurahan]
    owners: dict[tuple[float, float], set[int]] = {}
    for i, g in enumerate(geoms):
        for x, y in shapely.get_coordinates(g).tolist():
            owners.setdefault((x, y), set()).add(i)
    shared = [(xy, sorted(o)) for xy, o in owners.items() if len(o) > 1]
    assert len(shared) > 1_000
    rng = np.random.default_rng(7)
    picked = [shared[j] for j in rng.choice(len(shared), 300, replace=False)]
    lons = np.array([xy[0] for xy, _ in picked])
    lats = np.array([xy[1] for xy, _ in picked])
    batch = index.kelurahan_of(lons, lats).tolist()
    for (xy, kels), k in zip(picked, batch, strict=True):
        covering = [i for i in kels if shapely.intersects_xy(geoms[i], *xy)]
        assert k == min(covering)
        assert index.zones_at(*xy)[2] is index.kelurahan[k]


def test_batch_rejects_mismatched_shapes(index: ZoneIndex) -> None:
    with pytest.raises(ValueError, match="1-D of one length"):
        index.kelurahan_of(np.zeros(3), np.zeros(2))


def test_every_device_is_in_the_kelurahan_the_city_says(index: ZoneIndex, city: City) -> None:
    zones = index.device_zones(city)
    assert zones.keys() == city.devices.keys()
    for device in city.devices.values():
        assert zones[device.id] == ("kota-tangerang", device.kecamatan_id, device.kelurahan_id)


# Hierarchy


def test_hierarchy(index: ZoneIndex, city: City) -> None:
    assert ids(index.children("kota-tangerang")) == [z.id for z in city.zones.kecamatan]
    assert len(index.children("kota-tangerang")) == 13
    assert sum(len(index.children(k.id)) for k in city.zones.kecamatan) == 104
    assert "kel-sukasari" in ids(index.children("kec-tangerang"))
    assert index.children("kel-sukasari") == ()
    assert ids(index.ancestors("kel-sukasari")) == [
        "kel-sukasari",
        "kec-tangerang",
        "kota-tangerang",
    ]
    with pytest.raises(KeyError, match="kel-atlantis"):
        index.ancestors("kel-atlantis")


def test_members(index: ZoneIndex, city: City) -> None:
    per_kecamatan = Counter(d.kecamatan_id for d in city.devices.values())
    kec, expected = per_kecamatan.most_common(1)[0]
    members = index.members(kec, city.devices)
    assert len(members) == expected
    assert all(d.kecamatan_id == kec for d in members)
    assert len(index.members("kota-tangerang", city.devices.values())) == len(city.devices)


# Extra zones


def test_extras_order_hierarchy_and_members(city: City, tmp_path: Path) -> None:
    path = write_extras(
        tmp_path / "extra.geojson",
        [
            feature(
                square(106.63, -6.18, 0.003),
                id="das-sukasari",
                name="Catchment Sukasari",
                level="catchment",
                parent_id="kec-tangerang",
            ),
            feature(
                line((106.625, -6.18), (106.635, -6.18)),
                id="cor-test",
                name="Test corridor",
                level="corridor",
                width_m=40,
                parent_id="das-sukasari",
            ),
        ],
    )
    index = ZoneIndex.for_city(city, path)
    assert ids(index.zones_at(106.63, -6.18)) == [
        "kota-tangerang",
        "kec-tangerang",
        "kel-sukasari",
        "das-sukasari",
        "cor-test",
    ]
    assert ids(index.zones_at(106.632, -6.182)) == [
        "kota-tangerang",
        "kec-tangerang",
        "kel-sukasari",
        "das-sukasari",
    ]
    assert ids(index.ancestors("cor-test")) == [
        "cor-test",
        "das-sukasari",
        "kec-tangerang",
        "kota-tangerang",
    ]
    assert "das-sukasari" in ids(index.children("kec-tangerang"))
    assert index.zone("cor-test").level is ExtraLevel.CORRIDOR
    inside = [d for d in city.devices.values() if abs(d.lon - 106.63) < 0.003]
    inside = [d for d in inside if abs(d.lat + 6.18) < 0.003]
    assert {d.id for d in index.members("das-sukasari", city.devices)} == {d.id for d in inside}
    zones = index.device_zones(city)
    assert all(zones[d.id][-1] == "das-sukasari" for d in inside)


@pytest.mark.parametrize("width_m", [12.0, 30.0, 200.0])
@pytest.mark.parametrize(
    "ends",
    [
        ((106.600, -6.200), (106.620, -6.200)),  # east-west
        ((106.650, -6.150), (106.650, -6.170)),  # north-south
        ((106.680, -6.220), (106.700, -6.205)),  # diagonal
    ],
)
def test_corridor_width_in_metres(
    city: City,
    tmp_path: Path,
    width_m: float,
    ends: tuple[tuple[float, float], tuple[float, float]],
) -> None:
    path = write_extras(
        tmp_path / "extra.geojson",
        [feature(line(*ends), id="cor", name="c", level="corridor", width_m=width_m)],
    )
    index = ZoneIndex.for_city(city, path)
    (lon1, lat1), (lon2, lat2) = ends
    mid = ((lon1 + lon2) / 2, (lat1 + lat2) / 2)
    along = bearing(*mid, lon2, lat2)
    half = width_m / 2
    for side in (-90.0, 90.0):
        near = destination(*mid, along + side, 0.8 * half)
        far = destination(*mid, along + side, 1.2 * half)
        assert "cor" in ids(index.zones_at(*near)), (side, near)
        assert "cor" not in ids(index.zones_at(*far)), (side, far)
    # Flat caps: the corridor stops where the line is drawn.
    past_end = destination(lon2, lat2, bearing(lon1, lat1, lon2, lat2), 0.5 * half)
    assert "cor" not in ids(index.zones_at(*past_end))


def _corridor(**overrides: Any) -> dict[str, Any]:
    props: dict[str, Any] = {"id": "cor-x", "name": "x", "level": "corridor", "width_m": 30}
    props.update(overrides)
    return feature(line((106.62, -6.18), (106.64, -6.18)), **props)


OK_CATCHMENT = feature(square(106.63, -6.18, 0.003), id="das-a", name="a", level="catchment")


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        (_corridor(level="river"), "level 'river' is not one of"),
        (_corridor(width_m=None), "needs `width_m` > 0"),
        (_corridor(width_m=-5), "needs `width_m` > 0"),
        (_corridor(width_m="30"), "needs `width_m` > 0"),
        (_corridor(colour="red"), "unknown properties ['colour']"),
        (_corridor(id=""), "`id` must be a non-empty string"),
        (_corridor(id="das-a"), "id 'das-a' is already a zone id"),
        (_corridor(id="kel-sukasari"), "id 'kel-sukasari' is already a zone id"),
        (_corridor(parent_id="kec-atlantis"), "parent_id 'kec-atlantis' is neither"),
        (
            feature(square(106.63, -6.18, 0.001), id="d", name="d", level="catchment", width_m=5),
            "`width_m` is only for corridors",
        ),
        (
            feature(square(106.63, -6.18, 0.001), id="d", name="d", level="corridor", width_m=5),
            "a corridor needs a non-empty LineString or MultiLineString, got Polygon",
        ),
        (
            feature(
                {
                    "type": "Polygon",
                    "coordinates": [
                        [
                            [106.62, -6.17],
                            [106.64, -6.19],
                            [106.64, -6.17],
                            [106.62, -6.19],
                            [106.62, -6.17],
                        ]
                    ],
                },
                id="d",
                name="d",
                level="catchment",
            ),
            "invalid polygon: Self-intersection",
        ),
        (
            feature(
                line((-6.18, 106.62), (-6.18, 106.64)),
                id="c",
                name="c",
                level="corridor",
                width_m=10,
            ),
            "coordinates must be [lon, lat]",
        ),
        (
            feature(
                line((107.5, -6.18), (107.6, -6.18)), id="c", name="c", level="corridor", width_m=10
            ),
            "lies entirely outside Kota Tangerang",
        ),
        (
            feature(
                {"type": "LineString", "coordinates": "nope"},
                id="c",
                name="c",
                level="corridor",
                width_m=10,
            ),
            "bad geometry",
        ),
    ],
)
def test_bad_extra_zones_name_file_and_feature(
    city: City, tmp_path: Path, bad: dict[str, Any], problem: str
) -> None:
    path = write_extras(tmp_path / "extra.geojson", [OK_CATCHMENT, bad])
    with pytest.raises(ConfigError) as caught:
        load_extra_zones(path, city.zones)
    message = str(caught.value)
    assert message.startswith(f"{path}: feature 1")
    assert problem in message


@pytest.mark.parametrize(
    ("text", "problem"),
    [("{not json", "cannot read GeoJSON"), ('{"type": "Feature"}', "no `features` list")],
)
def test_unreadable_extra_file_names_the_file(
    city: City, tmp_path: Path, text: str, problem: str
) -> None:
    path = tmp_path / "extra.geojson"
    path.write_text(text)
    with pytest.raises(ConfigError, match=problem) as caught:
        load_extra_zones(path, city.zones)
    assert caught.value.path == path
