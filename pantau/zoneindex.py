"""Which zones a point lies in: the city's one spatial index (`City.index`).

A `ZoneIndex` holds the city's kota -> kecamatan -> kelurahan hierarchy plus optional
extra zones (drainage catchments, road corridors) from `config/zones/extra.geojson`.

Border rule. Boundaries count as inside (a point on a kelurahan's edge intersects it).
A point covered by more than one kelurahan - exactly on a shared border, or in a sliver
where the source polygons overlap - belongs to the one that comes first in
`ZoneSet.kelurahan` (smallest id). Its kecamatan and kota follow from that kelurahan's
parents, never from testing the dissolved polygons, so every point has one consistent
chain. Extra zones are tested on their own and may overlap anything.

Speed. Point-in-polygon on the 19,000-vertex kelurahan layer goes through a grid:
cells that no kelurahan boundary crosses are labelled once with their kelurahan (or
"outside"), and only points in boundary cells are tested exactly against the prepared
polygons. Building shapely Points per lookup costs more than the test itself, so both
paths use the `*_xy` predicates on raw coordinates. The grid costs about half a second to
build, so it is built on the first lookup of a stream; a few points looked up before it
exists (placing the registry's devices at load time) take the exact test directly.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import shapely
from shapely.errors import GEOSException
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from pantau.devices import Device
from pantau.errors import ConfigError
from pantau.zones import Zone, ZoneSet

if TYPE_CHECKING:
    from pantau.city import City

EARTH_RADIUS_M = 6_371_008.8  # mean radius (IUGG)
M_PER_DEG = EARTH_RADIUS_M * math.pi / 180.0
GRID_CELL_DEG = 0.00025  # ~28 m: 9% of cells need the exact test; finer builds slower
# Below this many points, a lookup before the grid exists tests the polygons directly.
EXACT_BATCH_MAX = 2_000
OUTSIDE = -1
_BOUNDARY = -2  # grid label: a kelurahan boundary crosses the cell, test exactly

IntArray = npt.NDArray[np.intp]
FloatArray = npt.NDArray[np.floating[Any]]


class ExtraLevel(StrEnum):
    CATCHMENT = "catchment"
    CORRIDOR = "corridor"


@dataclass(frozen=True, slots=True, kw_only=True)
class ExtraZone:
    """A catchment or a road corridor; its geometry is a polygon (corridors buffered)."""

    id: str
    name: str
    level: ExtraLevel
    parent_id: str | None
    geometry: BaseGeometry
    width_m: float | None = None  # corridors: full width of the buffered band


AnyZone = Zone | ExtraZone


def buffer_metres(geometry: BaseGeometry, distance_m: float, origin: tuple[float, float]) -> Any:
    """Buffer lon/lat `geometry` by `distance_m` metres, flat caps, round joins.

    Buffers in an equirectangular projection centred on `origin` (lon, lat): over a
    city 20 km across, its scale error is far below a metre. Flat caps, because a
    corridor ends where it is drawn.
    """
    lon0, lat0 = origin
    kx = M_PER_DEG * math.cos(math.radians(lat0))

    def to_m(xy: FloatArray) -> FloatArray:
        return np.column_stack(((xy[:, 0] - lon0) * kx, (xy[:, 1] - lat0) * M_PER_DEG))

    def to_deg(xy: FloatArray) -> FloatArray:
        return np.column_stack((xy[:, 0] / kx + lon0, xy[:, 1] / M_PER_DEG + lat0))

    metric = shapely.transform(geometry, to_m)
    band = shapely.buffer(metric, distance_m, cap_style="flat", join_style="round")
    return shapely.transform(band, to_deg)


_EXTRA_KEYS = frozenset({"id", "name", "level", "width_m", "parent_id"})
_GEOMETRY_TYPES = {
    ExtraLevel.CATCHMENT: ("Polygon", "MultiPolygon"),
    ExtraLevel.CORRIDOR: ("LineString", "MultiLineString"),
}


def load_extra_zones(path: Path, zones: ZoneSet) -> tuple[ExtraZone, ...]:
    """Catchments and corridors from a GeoJSON FeatureCollection, validated.

    Each feature's properties: `id`, `name`, `level` ("catchment" | "corridor"),
    `width_m` (corridors only, > 0) and optional `parent_id`: a kota / kecamatan /
    kelurahan id or an extra zone defined earlier in the file (so no cycles).
    Errors name the file and the feature index.
    """
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(path, None, f"cannot read GeoJSON: {err}") from err
    features = doc.get("features") if isinstance(doc, dict) else None
    if not isinstance(features, list):
        raise ConfigError(path, None, "not a GeoJSON FeatureCollection (no `features` list)")
    known = set(zones.by_id())
    origin = _origin(zones)
    extras: list[ExtraZone] = []
    for i, feature in enumerate(features):
        extra = _extra_zone(path, i, feature, known=known, zones=zones, origin=origin)
        known.add(extra.id)
        extras.append(extra)
    return tuple(extras)


def _extra_zone(
    path: Path,
    i: int,
    feature: object,
    *,
    known: set[str],
    zones: ZoneSet,
    origin: tuple[float, float],
) -> ExtraZone:
    def fail(problem: str) -> ConfigError:
        return ConfigError(path, None, f"feature {i}{label}: {problem}")

    label = ""
    if not isinstance(feature, dict) or not isinstance(feature.get("properties"), dict):
        raise fail("not a GeoJSON Feature with a `properties` object")
    props: dict[str, Any] = feature["properties"]
    if isinstance(props.get("id"), str):
        label = f" ({props['id']!r})"
    unknown = sorted(set(props) - _EXTRA_KEYS)
    if unknown:
        raise fail(f"unknown properties {unknown} (allowed: {sorted(_EXTRA_KEYS)})")
    for key in ("id", "name", "level"):
        if not isinstance(props.get(key), str) or not props[key].strip():
            raise fail(f"`{key}` must be a non-empty string")
    zone_id: str = props["id"]
    if zone_id in known:
        raise fail(f"id {zone_id!r} is already a zone id")
    try:
        level = ExtraLevel(props["level"])
    except ValueError:
        raise fail(
            f"level {props['level']!r} is not one of {[lv.value for lv in ExtraLevel]}"
        ) from None
    parent_id = props.get("parent_id")
    if parent_id is not None and (not isinstance(parent_id, str) or parent_id not in known):
        raise fail(
            f"parent_id {parent_id!r} is neither a kota/kecamatan/kelurahan id "
            "nor an extra zone defined earlier in the file"
        )
    width_m = props.get("width_m")
    width: float | None = None
    if level is ExtraLevel.CORRIDOR:
        if (
            isinstance(width_m, bool)
            or not isinstance(width_m, int | float)
            or not math.isfinite(width_m)
            or width_m <= 0
        ):
            raise fail(f"a corridor needs `width_m` > 0 (metres), got {width_m!r}")
        width = float(width_m)
    elif width_m is not None:
        raise fail("`width_m` is only for corridors")

    try:
        geometry = shape(feature["geometry"])
    except (KeyError, TypeError, ValueError, AttributeError, GEOSException) as err:
        raise fail(f"bad geometry: {err!r}") from err
    allowed = _GEOMETRY_TYPES[level]
    if geometry.geom_type not in allowed or geometry.is_empty:
        raise fail(f"a {level} needs a non-empty {' or '.join(allowed)}, got {geometry.geom_type}")
    lons, lats = shapely.get_coordinates(geometry).T
    if not (np.all(np.abs(lons) <= 180) and np.all(np.abs(lats) <= 90)):
        raise fail("coordinates must be [lon, lat] in degrees (WGS 84)")
    if level is ExtraLevel.CATCHMENT and not geometry.is_valid:
        # Not repaired silently: the fix changes which area is meant; the operator decides.
        raise fail(f"invalid polygon: {shapely.is_valid_reason(geometry)}")
    if width is not None:
        geometry = buffer_metres(geometry, width / 2.0, origin)
    if not geometry.intersects(zones.kota.geometry):
        raise fail(f"lies entirely outside {zones.kota.name} (lon/lat swapped?)")
    shapely.prepare(geometry)
    return ExtraZone(
        id=zone_id,
        name=props["name"],
        level=level,
        parent_id=parent_id,
        geometry=geometry,
        width_m=width,
    )


def _origin(zones: ZoneSet) -> tuple[float, float]:
    xmin, ymin, xmax, ymax = zones.kota.geometry.bounds
    return (xmin + xmax) / 2.0, (ymin + ymax) / 2.0


class _Polygons:
    """The kelurahan polygons, prepared, with the exact point test and the border rule."""

    def __init__(self, geometries: Sequence[BaseGeometry]) -> None:
        self.geometries = np.array(geometries, dtype=object)
        for g in self.geometries:
            shapely.prepare(g)
        self.bounds = shapely.bounds(self.geometries)

    def exact(self, lons: FloatArray, lats: FloatArray) -> IntArray:
        """Exact test on prepared polygons; the smallest index wins (the border rule)."""
        out = np.full(len(lons), OUTSIDE, dtype=np.intp)
        # Highest index first, so lower indices overwrite: first match in ZoneSet order.
        for i in range(len(self.geometries) - 1, -1, -1):
            xmin, ymin, xmax, ymax = self.bounds[i]
            near = np.flatnonzero((lons >= xmin) & (lons <= xmax) & (lats >= ymin) & (lats <= ymax))
            if near.size:
                hit = shapely.intersects_xy(self.geometries[i], lons[near], lats[near])
                out[near[hit]] = i
        return out


class _KelurahanGrid:
    """Point -> kelurahan index through a regular lon/lat grid with exact boundary cells.

    A cell that no polygon boundary crosses lies wholly inside one kelurahan (or none),
    so its centre's answer holds for all its points. Boundary cells are found by
    sampling every boundary at half a cell and flagging the 3x3 block around each
    sample: a boundary between two samples is within a quarter cell of one, so any cell
    it crosses is flagged, and so is any cell a rounding error could swap in.
    """

    def __init__(self, polygons: _Polygons, cell_deg: float) -> None:
        self.geometries = polygons.geometries
        self.bounds = polygons.bounds
        self.exact = polygons.exact
        self.x0 = float(self.bounds[:, 0].min()) - cell_deg
        self.y0 = float(self.bounds[:, 1].min()) - cell_deg
        self.cell = cell_deg
        self.nx = int((self.bounds[:, 2].max() - self.x0) / cell_deg) + 2
        self.ny = int((self.bounds[:, 3].max() - self.y0) / cell_deg) + 2

        ix, iy = np.meshgrid(np.arange(self.nx), np.arange(self.ny), indexing="ij")
        cx = self.x0 + (ix.ravel() + 0.5) * cell_deg
        cy = self.y0 + (iy.ravel() + 0.5) * cell_deg
        labels = self.exact(cx, cy).reshape(self.nx, self.ny)

        edges = shapely.segmentize(shapely.boundary(self.geometries), cell_deg / 2.0)
        coords, owner = shapely.get_coordinates(edges, return_index=True)
        sx, sy = self._cells(coords[:, 0], coords[:, 1])
        cells, owners = [], []
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                cx_ = np.clip(sx + dx, 0, self.nx - 1)
                cy_ = np.clip(sy + dy, 0, self.ny - 1)
                cells.append(cx_ * self.ny + cy_)
                owners.append(owner)
        n = len(self.geometries)
        keys = np.unique(np.concatenate(cells) * n + np.concatenate(owners))  # (cell, kel)
        pair_cells, pair_kels = (keys // n).tolist(), (keys % n).tolist()
        flat_labels = labels.ravel().tolist()
        # Candidates of a boundary cell: the kelurahan whose boundary crosses it, plus the
        # one holding its centre (which may cover the whole cell without a boundary in it).
        groups: dict[int, set[int]] = {}
        for cell, kel in zip(pair_cells, pair_kels, strict=True):
            groups.setdefault(cell, {flat_labels[cell]}).add(kel)
        self._candidates: dict[int, tuple[int, ...]] = {
            cell: tuple(sorted(kels - {OUTSIDE})) for cell, kels in groups.items()
        }
        flagged = np.zeros(self.nx * self.ny, dtype=bool)
        flagged[keys // n] = True
        labels[flagged.reshape(self.nx, self.ny)] = _BOUNDARY
        self.labels: IntArray = labels
        self._labels_list: list[list[int]] = labels.tolist()  # scalar lookups avoid numpy
        self.boundary_fraction = float(flagged.mean())

    def _cells(self, lons: FloatArray, lats: FloatArray) -> tuple[IntArray, IntArray]:
        return (
            np.floor((lons - self.x0) / self.cell).astype(np.intp),
            np.floor((lats - self.y0) / self.cell).astype(np.intp),
        )

    def lookup(self, lons: FloatArray, lats: FloatArray) -> IntArray:
        fx = (lons - self.x0) / self.cell
        fy = (lats - self.y0) / self.cell
        # Compare before casting: NaN and inf fail the test instead of overflowing.
        inside = np.flatnonzero((fx >= 0) & (fx < self.nx) & (fy >= 0) & (fy < self.ny))
        out = np.full(len(lons), OUTSIDE, dtype=np.intp)
        out[inside] = self.labels[fx[inside].astype(np.intp), fy[inside].astype(np.intp)]
        edge = np.flatnonzero(out == _BOUNDARY)
        if edge.size:
            out[edge] = self.exact(lons[edge], lats[edge])
        return out

    def lookup_one(self, lon: float, lat: float) -> int:
        fx = (lon - self.x0) / self.cell
        fy = (lat - self.y0) / self.cell
        if not (0.0 <= fx < self.nx and 0.0 <= fy < self.ny):  # also False for NaN
            return OUTSIDE
        label = self._labels_list[int(fx)][int(fy)]
        if label != _BOUNDARY:
            return label
        for i in self._candidates[int(fx) * self.ny + int(fy)]:
            if shapely.intersects_xy(self.geometries[i], lon, lat):
                return i
        return OUTSIDE


class ZoneIndex:
    """Point-in-zone lookups and the zone hierarchy for the rule engine."""

    def __init__(
        self, zones: ZoneSet, extras: Sequence[ExtraZone] = (), *, cell_deg: float = GRID_CELL_DEG
    ) -> None:
        self.zones = zones
        self.extras = tuple(extras)
        self.kelurahan: tuple[Zone, ...] = zones.kelurahan
        self._polygons = _Polygons([z.geometry for z in zones.kelurahan])
        self._cell_deg = cell_deg
        self._built: _KelurahanGrid | None = None
        self._extra_geoms = np.array([z.geometry for z in self.extras], dtype=object)
        for g in self._extra_geoms:
            shapely.prepare(g)
        self._extra_tree = shapely.STRtree(self._extra_geoms)
        self._by_id: dict[str, AnyZone] = {**zones.by_id(), **{z.id: z for z in self.extras}}
        if len(self._by_id) != len(zones.all()) + len(self.extras):
            raise ValueError("extra zone ids collide with each other or with the ZoneSet")
        # Chain per kelurahan index, built once: lookups only slice tuples.
        self._chains: list[tuple[AnyZone, ...]] = [
            tuple(reversed(self._chain(z.id))) for z in zones.kelurahan
        ]
        children: dict[str, list[AnyZone]] = {zid: [] for zid in self._by_id}
        for zone in self._by_id.values():
            if zone.parent_id is not None:
                children[zone.parent_id].append(zone)
        self._children = {zid: tuple(kids) for zid, kids in children.items()}

    @classmethod
    def for_city(cls, city: City, extra_geojson: Path | None = None) -> ZoneIndex:
        """The city's index (`city.index`, shared), grid built; with extras from
        `extra_geojson` or, when it exists, `<config>/zones/extra.geojson`, a new one."""
        path = extra_geojson or city.config_dir / "zones" / "extra.geojson"
        index = (
            city.index
            if extra_geojson is None and not path.exists()
            else cls(city.zones, load_extra_zones(path, city.zones))
        )
        index.build()  # a stage looks up points in its hot path: build the grid at start
        return index

    def build(self) -> None:
        """Build the grid now rather than on the first lookup."""
        self._grid  # noqa: B018 - the property builds it

    @property
    def _grid(self) -> _KelurahanGrid:
        if self._built is None:
            self._built = _KelurahanGrid(self._polygons, self._cell_deg)
        return self._built

    @property
    def boundary_fraction(self) -> float:
        """Share of grid cells that need the exact test (for benchmarks and tuning)."""
        return self._grid.boundary_fraction

    # Point lookups

    def zones_at(self, lon: float, lat: float) -> tuple[AnyZone, ...]:
        """Every zone containing the point: kota, kecamatan, kelurahan, then extras in
        file order; () outside the city and every extra zone."""
        kel = self._grid.lookup_one(lon, lat)
        chain: tuple[AnyZone, ...] = self._chains[kel] if kel != OUTSIDE else ()
        if not self.extras:
            return chain
        hits = sorted(self._extra_tree.query(shapely.points(lon, lat)).tolist())
        extra = tuple(
            self.extras[i] for i in hits if shapely.intersects_xy(self._extra_geoms[i], lon, lat)
        )
        return chain + extra

    def kelurahan_at(self, lon: float, lat: float) -> Zone | None:
        """The kelurahan containing the point; None outside the city."""
        k = int(self.kelurahan_of([lon], [lat])[0])
        return self.kelurahan[k] if k != OUTSIDE else None

    def kelurahan_of(self, lons: npt.ArrayLike, lats: npt.ArrayLike) -> IntArray:
        """Index into `self.kelurahan` of each point's kelurahan; -1 outside (and NaN)."""
        x = np.asarray(lons, dtype=np.float64)
        y = np.asarray(lats, dtype=np.float64)
        if x.shape != y.shape or x.ndim != 1:
            raise ValueError(f"lons and lats must be 1-D of one length, got {x.shape}, {y.shape}")
        if self._built is None and len(x) <= EXACT_BATCH_MAX:
            return self._polygons.exact(x, y)
        return self._grid.lookup(x, y)

    def zone_ids_of(self, lons: npt.ArrayLike, lats: npt.ArrayLike) -> list[tuple[str, ...]]:
        """`zones_at` ids for a batch of points, vectorised."""
        x = np.asarray(lons, dtype=np.float64)
        y = np.asarray(lats, dtype=np.float64)
        kel = self.kelurahan_of(x, y)
        chains = [tuple(z.id for z in chain) for chain in self._chains]
        ids = [chains[k] if k != OUTSIDE else () for k in kel.tolist()]
        for extra, geometry in zip(self.extras, self._extra_geoms, strict=True):
            for j in np.flatnonzero(shapely.intersects_xy(geometry, x, y)).tolist():
                ids[j] = (*ids[j], extra.id)
        return ids

    def device_zones(self, city: City) -> dict[str, tuple[str, ...]]:
        """Zone ids of every registered device, from its location (compute once)."""
        devices = list(city.devices.values())
        ids = self.zone_ids_of([d.lon for d in devices], [d.lat for d in devices])
        return {d.id: zone_ids for d, zone_ids in zip(devices, ids, strict=True)}

    # Hierarchy

    def zone(self, zone_id: str) -> AnyZone:
        try:
            return self._by_id[zone_id]
        except KeyError:
            raise KeyError(f"unknown zone id {zone_id!r}") from None

    def children(self, zone_id: str) -> tuple[AnyZone, ...]:
        """Direct children: kecamatan of the kota, kelurahan of a kecamatan, and extra
        zones whose parent_id names it."""
        self.zone(zone_id)
        return self._children[zone_id]

    def ancestors(self, zone_id: str) -> tuple[AnyZone, ...]:
        """The zone itself, then its parent, up to the root."""
        return self._chain(zone_id)

    def _chain(self, zone_id: str) -> tuple[AnyZone, ...]:
        chain = [self.zone(zone_id)]
        while chain[-1].parent_id is not None:
            chain.append(self.zone(chain[-1].parent_id))
        return tuple(chain)

    def members(
        self, zone_id: str, devices: Iterable[Device] | Mapping[str, Device]
    ) -> tuple[Device, ...]:
        """The devices whose location lies in `zone_id` (as `zones_at` says), in input order."""
        self.zone(zone_id)
        listed = list(devices.values() if isinstance(devices, Mapping) else devices)
        ids = self.zone_ids_of([d.lon for d in listed], [d.lat for d in listed])
        return tuple(d for d, zone_ids in zip(listed, ids, strict=True) if zone_id in zone_ids)
