"""The fleet: every device's reporting schedule and fault-free signal for a scenario.

The physics runs on one 60 s grid for the whole city (rain, drains, sumps, gates,
traffic); each device then samples it at its own reporting times (a fixed phase
within its interval) and adds its own measurement noise from its own random
stream (seeding.py). Faults and payload forms are applied later, per message
(messages.py), so they never change the underlying signal.

Devices talk through gateways, one per kecamatan (see publisher.py); the gateway
sits at the kecamatan's centre and a device's signal strength falls with distance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pantau.catalogue import Catalogue
from pantau.city import City
from pantau.devices import Device
from simulators import drainage, traffic
from simulators.drainage import Channel, RainGrid, Sump
from simulators.geo import FloatArray, LocalFrame
from simulators.scenario import Scenario
from simulators.seeding import Stream, device_rng
from simulators.weather import rain_mm_h

STEP_S = 60  # physics step; no device reports more often
TIP_MM = 0.1  # tipping-bucket resolution: a 1-minute rate comes in 6 mm/h steps
DECIMALS = {
    "water_level": 1,
    "rainfall_rate": 1,
    "flow": 3,
    "pump_running": 0,
    "gate_opening": 0,
    "traffic_flow": 0,
    "speed": 1,
    "occupancy": 1,
    "road_roughness": 2,
    "pothole_index": 3,
    "battery": 1,
    "rssi": 0,
}
# Devices from different vendors send some metrics in other accepted units:
# (unit, share of devices, decimals in that unit).
ALTERNATIVE_UNITS = {
    "water_level": (("mm", 0.15, 0), ("m", 0.15, 3)),
    "flow": (("l/s", 0.2, 0),),
}
HEALTH_METRICS = frozenset({"battery", "rssi"})
BOOLEAN_METRICS = frozenset({"pump_running"})


def gateway_id(kecamatan_id: str) -> str:
    return f"gw-{kecamatan_id.removeprefix('kec-')}"


@dataclass(frozen=True, slots=True)
class UnitChoice:
    unit: str
    factor: float  # to the canonical unit
    decimals: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceTrack:
    """One device in one scenario: when it reports and what it would say."""

    device: Device
    gateway_id: str
    offsets_s: list[int]  # report times, seconds after the scenario start
    values: dict[str, list[float]]  # metric -> canonical value per report, fault-free
    units: dict[str, UnitChoice]  # metric -> the unit this device sends
    first_seq: int  # devices keep counting across runs; the scenario sees a slice


def main_metrics(device: Device) -> tuple[str, ...]:
    return tuple(m for m in device.metrics if m not in HEALTH_METRICS)


@dataclass(frozen=True, slots=True)
class _World:
    """The city-wide physics of one scenario on the STEP_S grid."""

    frame: LocalFrame
    epoch: FloatArray  # epoch seconds of each step
    local: FloatArray  # the same on the city's wall clock (traffic.local_seconds)
    rain_at: FloatArray  # (steps, devices) rain at each device, mm/h
    xs: FloatArray  # device positions, km
    ys: FloatArray
    column: dict[str, int]  # device id -> column in rain_at / xs / ys
    gateways: dict[str, tuple[float, float]]  # kecamatan id -> gateway position, km


def build_tracks(city: City, scenario: Scenario, *, noisy: bool = True) -> list[DeviceTrack]:
    """Schedules and fault-free signals of every device, sorted by device id.

    `noisy=False` gives what a perfect instrument would report (the ground truth's view,
    testkit.truth); the noise streams are drawn all the same, so everything else —
    phases, profiles, the random walk of a road's wear — is identical.
    """
    devices = [city.devices[k] for k in sorted(city.devices)]
    kota = city.zones.kota.geometry
    frame = LocalFrame(kota.centroid.x, kota.centroid.y)
    steps = int(scenario.duration_s // STEP_S) + 1
    offsets = np.arange(steps, dtype=np.float64) * STEP_S
    xs, ys = frame.to_km(np.array([d.lon for d in devices]), np.array([d.lat for d in devices]))
    epoch = scenario.start.timestamp() + offsets
    world = _World(
        frame=frame,
        epoch=epoch,
        local=traffic.local_seconds(epoch, city.facts.time_zone),
        rain_at=rain_mm_h(scenario.cells, frame, offsets, xs, ys),
        xs=xs,
        ys=ys,
        column={d.id: i for i, d in enumerate(devices)},
        gateways=_gateway_points(city, frame),
    )
    grid_rain: FloatArray | None = None
    grid = RainGrid(np.zeros(0), np.zeros(0))
    if scenario.cells:
        west, south, east, north = kota.bounds
        x0, y0 = frame.point_km(west, south)
        x1, y1 = frame.point_km(east, north)
        grid = RainGrid.covering(x0, y0, x1, y1)
        grid_rain = rain_mm_h(scenario.cells, frame, offsets, grid.x_km, grid.y_km)
    rngs = {d.id: device_rng(scenario.seed, d.id, Stream.PROFILE) for d in devices}
    hydro = _hydrology(devices, world, grid, grid_rain, rngs)
    return [
        _track(city, scenario, d, world, hydro=hydro.get(d.id, {}), rng=rngs[d.id], noisy=noisy)
        for d in devices
    ]


def _hydrology(
    devices: Sequence[Device],
    world: _World,
    grid: RainGrid,
    grid_rain: FloatArray | None,
    rngs: dict[str, np.random.Generator],
) -> dict[str, dict[str, FloatArray]]:
    """Per hydro device, its metrics on the step grid: one runoff per channel, then the
    response of each kind (level, sump and pump, gate, flow)."""
    hydro = [d for d in devices if d.kind in _CHANNEL_OF_KIND]
    channels = [
        _CHANNEL_OF_KIND[d.kind](
            d, world.xs[world.column[d.id]], world.ys[world.column[d.id]], rngs[d.id]
        )
        for d in hydro
    ]
    steps = world.epoch.size
    runoff = drainage.runoff_mm_h(channels, grid, grid_rain, STEP_S)
    depth = drainage.depth_cm(channels, runoff, world.epoch)
    col = {d.id: i for i, d in enumerate(hydro)}
    out: dict[str, dict[str, FloatArray]] = {}

    pumps = [d for d in hydro if d.kind == "pump_station"]
    cols = [col[d.id] for d in pumps]
    level, running = drainage.pump_house(
        [_sump(rngs[d.id]) for d in pumps],
        runoff[:, cols] if runoff.size else runoff,
        steps,
        STEP_S,
    )
    for i, d in enumerate(pumps):
        out[d.id] = {"water_level": level[:, i], "pump_running": running[:, i] * 1.0}

    gates = [d for d in hydro if d.kind == "flood_gate"]
    cols = [col[d.id] for d in gates]
    opening = drainage.gate_opening_pct(depth[:, cols], [channels[i] for i in cols], STEP_S)
    for i, d in enumerate(gates):
        out[d.id] = {"water_level": depth[:, cols[i]], "gate_opening": opening[:, i]}

    meters = [d for d in hydro if d.kind == "flow_meter"]
    cols = [col[d.id] for d in meters]
    capacity = np.array([rngs[d.id].uniform(8.0, 45.0) for d in meters])
    flow = drainage.flow_m3s(depth[:, cols], [channels[i] for i in cols], capacity)
    for i, d in enumerate(meters):
        out[d.id] = {"flow": flow[:, i]}

    for d in hydro:
        if d.kind == "water_level_station":
            out[d.id] = {"water_level": depth[:, col[d.id]]}
    return out


def _track(
    city: City,
    scenario: Scenario,
    d: Device,
    world: _World,
    *,
    hydro: dict[str, FloatArray],
    rng: np.random.Generator,
    noisy: bool,
) -> DeviceTrack:
    interval = int(city.catalogue.kinds[d.kind].report_every_s)
    phase = int(rng.integers(0, interval))
    first_seq = int(rng.integers(0, 50_000))
    report_offsets = list(range(phase, int(scenario.duration_s), interval))
    at = _At(
        idx=np.array(report_offsets, dtype=np.int64) // STEP_S,
        epoch=world.epoch,
        local=world.local,
        rain=world.rain_at[:, world.column[d.id]],
        interval_s=float(interval),
        gateway_km=world.gateways[d.kecamatan_id],
        here_km=(float(world.xs[world.column[d.id]]), float(world.ys[world.column[d.id]])),
    )
    noise = _Noise(device_rng(scenario.seed, d.id, Stream.NOISE), noisy)
    signals = _signals(d, at, hydro, rng, noise)
    return DeviceTrack(
        device=d,
        gateway_id=gateway_id(d.kecamatan_id),
        offsets_s=report_offsets,
        values={m: _finish(city.catalogue, m, signals[m]) for m in d.metrics},
        units={m: _unit_choice(city.catalogue, m, rng) for m in d.metrics},
        first_seq=first_seq,
    )


@dataclass(frozen=True, slots=True)
class _At:
    """Where and when one device samples the world."""

    idx: np.ndarray  # step index of each report
    epoch: FloatArray
    local: FloatArray  # epoch on the city's wall clock
    rain: FloatArray  # rain at the device on the step grid
    interval_s: float
    gateway_km: tuple[float, float]
    here_km: tuple[float, float]


def _finish(catalogue: Catalogue, metric: str, raw: FloatArray) -> list[float]:
    spec = catalogue.metrics[metric]
    clipped = np.clip(np.round(raw, DECIMALS[metric]), spec.valid_min, spec.valid_max)
    values: list[float] = clipped.tolist()
    return values


def _unit_choice(catalogue: Catalogue, metric: str, rng: np.random.Generator) -> UnitChoice:
    spec = catalogue.metrics[metric]
    draw = rng.random()
    for unit, share, decimals in ALTERNATIVE_UNITS.get(metric, ()):
        if draw < share and unit in spec.factors:
            return UnitChoice(unit, spec.factors[unit], decimals)
        draw -= share
    return UnitChoice(spec.unit, 1.0, DECIMALS[metric])


class _Noise:
    """Measurement noise, or none: a perfect instrument draws the same numbers and
    ignores them, so the draws of everything after stay the same."""

    def __init__(self, rng: np.random.Generator, noisy: bool) -> None:
        self.rng = rng
        self.noisy = noisy

    def normal(self, mean: float, sigma: float, n: int) -> FloatArray:
        drawn: FloatArray = self.rng.normal(mean, sigma, n)
        return drawn if self.noisy else np.full(n, mean)

    def poisson(self, lam: FloatArray) -> FloatArray:
        """A count with mean `lam`; the mean itself when noiseless."""
        drawn: FloatArray = self.rng.poisson(lam).astype(np.float64)
        return drawn if self.noisy else np.asarray(lam, dtype=np.float64)

    def walk(self, sigma: float, n: int) -> FloatArray:
        """A random walk of the thing measured (not of the instrument): always drawn."""
        steps: FloatArray = self.rng.normal(0.0, sigma, n)
        return np.cumsum(steps)


def _signals(
    d: Device,
    at: _At,
    hydro: dict[str, FloatArray],
    rng: np.random.Generator,
    noise: _Noise,
) -> dict[str, FloatArray]:
    """Each metric of the device at its report times, with measurement noise."""
    idx, epoch, rain, interval_s = at.idx, at.epoch, at.rain, at.interval_s
    n = idx.size
    t = epoch[idx]
    out: dict[str, FloatArray] = {}
    if "water_level" in hydro:
        sigma = 0.5 if d.kind == "pump_station" else 0.3
        out["water_level"] = hydro["water_level"][idx] + noise.normal(0.0, sigma, n)
    if "pump_running" in hydro:
        out["pump_running"] = hydro["pump_running"][idx]
    if "gate_opening" in hydro:
        out["gate_opening"] = hydro["gate_opening"][idx]
    if "flow" in hydro:
        out["flow"] = hydro["flow"][idx] * (1.0 + noise.normal(0.0, 0.03, n))
    if d.kind == "rain_gauge":
        tips = noise.poisson(rain[idx] / 60.0 / TIP_MM)
        out["rainfall_rate"] = tips * TIP_MM * 60.0
    if d.kind == "traffic_counter":
        road = traffic.Road(
            lanes=int(rng.choice([2, 4, 4, 6])),
            capacity_per_lane_h=rng.uniform(1500.0, 1900.0),
            free_speed_kmh=rng.uniform(40.0, 70.0),
            peak_ratio=rng.uniform(0.8, 1.15),
            morning_bias=rng.uniform(0.8, 1.2),
        )
        state = traffic.traffic(at.local[idx], rain[idx], road)
        counted = noise.poisson(state.flow_veh_h * interval_s / 3600.0)
        out["traffic_flow"] = counted.astype(np.float64) * 3600.0 / interval_s
        out["speed"] = np.clip(state.speed_kmh + noise.normal(0.0, 1.5, n), 0.0, None)
        out["occupancy"] = state.occupancy_pct * (1.0 + noise.normal(0.0, 0.05, n))
    if d.kind == "road_surface":
        hours = (t - epoch[0]) / 3600.0
        wear = rng.uniform(0.001, 0.004) * hours  # m/km per hour, faster when wet
        wear = wear + 0.0005 * np.cumsum(rain[idx]) * interval_s / 3600.0
        walk = noise.walk(0.01, n)
        iri = rng.uniform(2.0, 9.0) + wear + walk
        out["road_roughness"] = iri + noise.normal(0.0, 0.15, n)
        out["pothole_index"] = 0.03 * (iri - 4.0) + noise.normal(0.0, 0.01, n)
    if "battery" in d.metrics:
        days = (t - epoch[0]) / 86400.0
        start = rng.uniform(40.0, 100.0)
        out["battery"] = start - rng.uniform(0.2, 1.5) * days + noise.normal(0.0, 0.1, n)
    if "rssi" in d.metrics:
        km = math.hypot(at.here_km[0] - at.gateway_km[0], at.here_km[1] - at.gateway_km[1])
        mean = -55.0 - 25.0 * math.log10(1.0 + km / 0.2) + rng.normal(0.0, 5.0)
        fade = 0.03 * rain[idx]  # heavy rain attenuates even sub-GHz links a little
        out["rssi"] = np.clip(mean - fade + noise.normal(0.0, 2.5, n), -135.0, -40.0)
    return out


def _gateway_points(city: City, frame: LocalFrame) -> dict[str, tuple[float, float]]:
    out: dict[str, tuple[float, float]] = {}
    for kec in city.zones.kecamatan:
        c = (
            kec.geometry.representative_point()
            if not kec.geometry.contains(kec.geometry.centroid)
            else kec.geometry.centroid
        )
        out[kec.id] = frame.point_km(float(c.x), float(c.y))
    return out


# --- channels per hydro kind (random traits from the device's PROFILE stream) --------


def _tide(lat: float, rng: np.random.Generator) -> tuple[float, float]:
    """Semi-diurnal tide felt by drains near the coast (north of ~6.15 S)."""
    amplitude = 10.0 * float(np.clip((lat + 6.15) / 0.05, 0.0, 1.0))
    return amplitude, float(rng.uniform(0.0, 2 * math.pi))


def _channel(
    d: Device,
    *,
    x: float,
    y: float,
    rng: np.random.Generator,
    bankfull: float,
    alert: float,
    catchment_km: float,
) -> Channel:
    tide, phase = _tide(d.lat, rng)
    return Channel(
        x_km=float(x),
        y_km=float(y),
        bankfull_cm=bankfull,
        base_cm=bankfull * rng.uniform(0.15, 0.3),
        alert_cm=alert,
        design_runoff_mm_h=rng.uniform(9.0, 14.0),
        catchment_km=catchment_km,
        reservoir_min=12.0 + 2.0 * catchment_km + rng.uniform(0.0, 5.0),
        tide_cm=tide,
        tide_phase=phase,
    )


def _station_channel(d: Device, x: float, y: float, rng: np.random.Generator) -> Channel:
    assert d.levels is not None  # load_city guarantees levels for level stations
    bank = d.levels.bankfull_cm
    # Bigger channels drain longer catchments: 150 cm ~ 2 km, 400 cm ~ 8 km.
    length = 2.0 + 6.0 * (bank - 150.0) / 250.0 + rng.uniform(-0.5, 0.5)
    return _channel(
        d, x=x, y=y, rng=rng, bankfull=bank, alert=d.levels.alert_cm, catchment_km=max(length, 1.0)
    )


def _synthetic_channel(d: Device, x: float, y: float, rng: np.random.Generator) -> Channel:
    bank = float(rng.uniform(200.0, 400.0))
    length = 2.0 + 6.0 * (bank - 150.0) / 250.0
    return _channel(d, x=x, y=y, rng=rng, bankfull=bank, alert=0.6 * bank, catchment_km=length)


def _sump_channel(d: Device, x: float, y: float, rng: np.random.Generator) -> Channel:
    # Only the runoff of this channel is used (the sump has its own levels).
    length = float(rng.uniform(1.5, 3.0))
    return _channel(d, x=x, y=y, rng=rng, bankfull=400.0, alert=240.0, catchment_km=length)


def _sump(rng: np.random.Generator) -> Sump:
    on = float(rng.uniform(180.0, 220.0))
    off = float(rng.uniform(60.0, 90.0))
    return Sump(
        top_cm=400.0,
        on_cm=on,
        off_cm=off,
        dry_inflow_cm_min=float(rng.uniform(0.3, 0.8)),
        runoff_gain=0.3,
        pump_cm_min=float(rng.uniform(3.0, 5.0)),
        start_cm=float(rng.uniform(off, on)),
        start_running=bool(rng.random() < 0.3),
    )


_CHANNEL_OF_KIND = {
    "water_level_station": _station_channel,
    "flow_meter": _synthetic_channel,
    "flood_gate": _synthetic_channel,
    "pump_station": _sump_channel,
}


def tracks_by_id(tracks: Sequence[DeviceTrack]) -> dict[str, DeviceTrack]:
    return {t.device.id: t for t in tracks}
