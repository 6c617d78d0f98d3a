"""The message stream of a scenario, without a broker: what every device sends, when.

`iter_messages` is a pure function of (city, scenario, start, topic root): the same
inputs give byte-identical payloads in the same order (sorted by simulated time, then
device id), whatever reads them and however fast. Unit tests and benchmarks use it
directly; publisher.run_scenario sends the same stream over MQTT.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from pantau.catalogue import Catalogue
from pantau.city import City
from pantau.readings import Reading
from pantau.topics import Topics
from pantau.wire import (
    NATIVE_CONTENT_TYPE,
    SENML_CONTENT_TYPE,
    Sample,
    encode_native,
    encode_senml,
)
from simulators.faults import MessageContext, malformed
from simulators.fleet import (
    BOOLEAN_METRICS,
    DECIMALS,
    DeviceTrack,
    UnitChoice,
    build_tracks,
    main_metrics,
)
from simulators.reasons import Reason
from simulators.scenario import (
    DELAYS,
    ClockSkew,
    Drift,
    Dropout,
    Fault,
    Malformed,
    Scenario,
    Spike,
    StoreAndForward,
    Stuck,
    UplinkOutage,
)
from simulators.seeding import Stream, device_rng

ALL_REASONS = tuple(Reason)


@dataclass(frozen=True, slots=True, kw_only=True)
class SimMessage:
    """One MQTT publish of a device (through its gateway)."""

    sim_time: datetime  # true simulated time of sending (device clocks may be skewed)
    # True simulated time of the measurement: sim_time unless the message was held back
    # (store and forward, an uplink outage).
    taken_at: datetime
    device_id: str  # the sending device; its gateway publishes the message
    gateway_id: str
    topic: str
    payload: bytes
    content_type: str  # application/json or application/senml+json
    seq: int  # the device's uplink counter (only the native form carries it)
    expected_reason: str | None  # dead-letter reason, None when every reading is valid
    expected_rejections: int  # dead letters ingest emits for this message
    faults: tuple[str, ...]  # fault kinds that shaped this message, for tests and logs
    # The valid readings, kept compact: Reading objects are built on demand because
    # most consumers (the publisher, benchmarks) only need the keys.
    reading_time: datetime  # device time of the readings (skew included)
    metrics: tuple[str, ...]  # empty when nothing in the message is valid
    values: tuple[float, ...]  # canonical units, as ingest converts them
    units: tuple[str, ...]  # canonical units

    @property
    def readings(self) -> tuple[Reading, ...]:
        """What ingest must store for this message."""
        seq = None if self.content_type == SENML_CONTENT_TYPE else self.seq
        return tuple(
            Reading(
                device_id=self.device_id,
                metric=m,
                value=v,
                unit=u,
                time=self.reading_time,
                seq=seq,
            )
            for m, v, u in zip(self.metrics, self.values, self.units, strict=True)
        )


class FleetStream:
    """Iterates a scenario's messages; counts what dropouts swallowed on the way."""

    def __init__(
        self,
        city: City,
        scenario: Scenario,
        *,
        topics: Topics | None = None,
        start: datetime | None = None,
        noisy: bool = True,
    ) -> None:
        """`noisy=False`: perfect instruments (faults still apply), for testkit.truth."""
        # Device clocks tick in whole seconds (exact in both payload forms).
        when = (scenario.start if start is None else start).replace(microsecond=0)
        self.scenario = replace(scenario, start=when)
        self.city = city
        self.topics = topics or Topics()
        self.dropped = 0  # messages not sent because of a dropout fault
        self.tracks = build_tracks(city, self.scenario, noisy=noisy)

    def __iter__(self) -> Iterator[SimMessage]:
        return self._messages()

    def _messages(self) -> Iterator[SimMessage]:
        scenario, city, topics = self.scenario, self.city, self.topics
        self.dropped = 0
        catalogue = city.catalogue
        peers: dict[str, list[str]] = {}
        for device_id in sorted(city.devices):
            peers.setdefault(city.devices[device_id].kind, []).append(device_id)
        devs = [
            _DeviceState.of(t, scenario, city, topics=topics, peers=peers[t.device.kind])
            for t in self.tracks
        ]
        offsets = np.concatenate([np.asarray(t.offsets_s, dtype=np.int64) for t in self.tracks])
        owner = np.concatenate(
            [np.full(len(t.offsets_s), i, dtype=np.int64) for i, t in enumerate(self.tracks)]
        )
        index = np.concatenate([np.arange(len(t.offsets_s)) for t in self.tracks])
        # When each report leaves (store-and-forward, an uplink outage hold it back);
        # its readings keep the time they were taken.
        sends = np.concatenate(
            [_send_offsets(t.offsets_s, d.faults) for t, d in zip(self.tracks, devs, strict=True)]
        )
        order = np.lexsort((owner, offsets, sends))  # by send time, sample time, device id
        start_s = int(scenario.start.timestamp())
        senml_share = scenario.senml_fraction
        base_rate = scenario.malformed_rate
        no_labels: tuple[str, ...] = ()

        for send, off, d, j in zip(
            sends[order].tolist(),
            offsets[order].tolist(),
            owner[order].tolist(),
            index[order].tolist(),
            strict=True,
        ):
            dev = devs[d]
            track = dev.track
            device_id = track.device.id
            seq = track.first_seq + j
            sim_time = datetime.fromtimestamp(start_s + send, UTC)
            active = [f for f in dev.faults if f.active(off)] if dev.faults else None
            labels = tuple(sorted({_label(f) for f in active})) if active else no_labels
            if active and "dropout" in labels:
                self.dropped += 1
                continue
            senml = dev.mix[j] < senml_share

            rate, reasons = base_rate, ALL_REASONS
            if active:
                for f in active:
                    if isinstance(f, Malformed) and f.rate > rate:
                        rate, reasons = f.rate, f.reasons
            if rate and dev.bad[j] < rate:
                reason = reasons[min(int(dev.reason[j] * len(reasons)), len(reasons) - 1)]
                yield dev.malformed(
                    reason,
                    j,
                    seq=seq,
                    sim_time=sim_time,
                    taken_at=datetime.fromtimestamp(start_s + off, UTC),
                    senml=senml,
                    labels=labels,
                    topics=topics,
                    catalogue=catalogue,
                )
                continue

            taken_at = sim_time if send == off else datetime.fromtimestamp(start_s + off, UTC)
            device_time = taken_at
            refused = False
            if active:
                for f in active:
                    if isinstance(f, ClockSkew):
                        device_time = datetime.fromtimestamp(start_s + off + f.offset_s, UTC)
                        refused = f.refused
                samples, values = dev.faulty_samples(j, off, active)
            else:
                samples = list(map(Sample, dev.metrics, dev.sent_rows[j], dev.sent_units))
                values = dev.canonical_rows[j]
            if senml:
                payload = encode_senml(device_id, device_time, samples)
            else:
                payload = encode_native(device_id, seq, device_time, samples)
            yield SimMessage(
                sim_time=sim_time,
                taken_at=taken_at,
                device_id=device_id,
                gateway_id=track.gateway_id,
                topic=dev.topic,
                payload=payload,
                content_type=SENML_CONTENT_TYPE if senml else NATIVE_CONTENT_TYPE,
                seq=seq,
                expected_reason=Reason.BAD_TIMESTAMP.value if refused else None,
                expected_rejections=len(samples) if refused else 0,
                faults=labels,
                reading_time=device_time,
                metrics=() if refused else dev.metrics,
                values=() if refused else values,
                units=() if refused else dev.units,
            )


def iter_messages(
    city: City,
    scenario: Scenario,
    *,
    topics: Topics | None = None,
    start: datetime | None = None,
) -> Iterator[SimMessage]:
    """Every message of the scenario in send order; `start` moves the scenario in time."""
    return iter(FleetStream(city, scenario, topics=topics, start=start))


def _label(f: Fault) -> str:
    return {
        Dropout: "dropout",
        Stuck: "stuck",
        Spike: "spike",
        Drift: "drift",
        ClockSkew: "clock_skew",
        Malformed: "malformed",
        StoreAndForward: "store_and_forward",
        UplinkOutage: "uplink_outage",
    }[type(f)]


def _send_offsets(offsets_s: list[int], faults: tuple[Fault, ...]) -> np.ndarray:
    """Seconds after the start at which each report is sent (a delay fault holds it)."""
    taken = np.asarray(offsets_s, dtype=np.int64)
    send = taken.copy()
    for f in faults:
        if not isinstance(f, DELAYS):
            continue
        held = (taken >= f.start_s) & (taken < f.end_s)
        if isinstance(f, StoreAndForward):
            upload = [math.ceil(f.upload_at(float(t))) for t in taken[held].tolist()]
            send[held] = np.maximum(send[held], np.asarray(upload, dtype=np.int64))
        else:
            send[held] = np.maximum(send[held], math.ceil(f.end_s))
    return send


@dataclass(slots=True)
class _DeviceState:
    """Per-device draws, payload plan and fault bookkeeping while streaming."""

    track: DeviceTrack
    topic: str
    faults: tuple[Fault, ...]
    metrics: tuple[str, ...]
    units: tuple[str, ...]  # canonical units, per metric
    sent_units: tuple[str | None, ...]  # the unit the device writes, per metric
    sent_rows: list[tuple[Any, ...]]  # per report: the values as the device writes them
    canonical_rows: list[tuple[float, ...]]  # per report: those values converted back
    mix: list[float]
    bad: list[float]
    reason: list[float]
    variant: list[float]
    spike: list[float]
    sign: list[float]
    numeric_main: str
    other_id: str
    ghost_id: str
    spans: dict[str, tuple[float, float]]

    @classmethod
    def of(
        cls,
        track: DeviceTrack,
        scenario: Scenario,
        city: City,
        *,
        topics: Topics,
        peers: list[str],
    ) -> _DeviceState:
        """`peers`: registered devices of the same kind, sorted, including this one."""
        d = track.device
        n = len(track.offsets_s)
        mix = device_rng(scenario.seed, d.id, Stream.MIX).random(n).tolist()
        mal = device_rng(scenario.seed, d.id, Stream.MALFORMED).random((3, n)).tolist()
        flt = device_rng(scenario.seed, d.id, Stream.FAULTS).random((2, n)).tolist()
        # Another registered device for device_mismatch: the next one of the same kind.
        other = peers[(peers.index(d.id) + 1) % len(peers)]
        if other == d.id:
            other = next(k for k in sorted(city.devices) if k != d.id)
        ghost = f"ghost-{d.id}"[:64]
        while ghost in city.devices:
            ghost = f"x{ghost}"[:64]
        spans = {
            m: (city.catalogue.metrics[m].valid_min, city.catalogue.metrics[m].valid_max)
            for m in d.metrics
        }
        sent_columns: list[list[Any]] = []
        sent_units: list[str | None] = []
        canonical_columns: list[list[float]] = []
        for m in d.metrics:
            sent, unit, back = _as_sent(m, np.asarray(track.values[m]), track.units[m])
            sent_columns.append(sent)
            sent_units.append(unit)
            canonical_columns.append(back)
        return cls(
            track=track,
            topic=topics.sensor_up(d.id),
            faults=tuple(f for f in scenario.faults if d.id in f.devices),
            metrics=d.metrics,
            units=tuple(city.catalogue.metrics[m].unit for m in d.metrics),
            sent_units=tuple(sent_units),
            sent_rows=list(zip(*sent_columns, strict=True)),
            canonical_rows=list(zip(*canonical_columns, strict=True)),
            mix=mix,
            bad=mal[0],
            reason=mal[1],
            variant=mal[2],
            spike=flt[0],
            sign=flt[1],
            numeric_main=next(m for m in main_metrics(d) if m not in BOOLEAN_METRICS),
            other_id=other,
            ghost_id=ghost,
            spans=spans,
        )

    def malformed(
        self,
        reason: Reason,
        j: int,
        *,
        seq: int,
        sim_time: datetime,
        taken_at: datetime,
        senml: bool,
        labels: tuple[str, ...],
        topics: Topics,
        catalogue: Catalogue,
    ) -> SimMessage:
        """Report `j` replaced by a message with one defect of the given reason."""
        track, main = self.track, self.numeric_main
        ctx = MessageContext(
            device_id=track.device.id,
            kind_metrics=track.device.metrics,
            other_device_id=self.other_id,
            ghost_device_id=self.ghost_id,
            seq=seq,
            time=sim_time,
            sample=Sample(main, track.values[main][j], catalogue.metrics[main].unit),
            senml=senml,
        )
        bad = malformed(reason, self.variant[j], ctx, topics, catalogue)
        return SimMessage(
            sim_time=sim_time,
            taken_at=taken_at,
            device_id=track.device.id,
            gateway_id=track.gateway_id,
            topic=bad.topic,
            payload=bad.payload,
            content_type=bad.content_type,
            seq=seq,
            expected_reason=bad.reason.value,
            expected_rejections=1,
            faults=(*labels, f"malformed:{bad.variant}"),
            reading_time=sim_time,
            metrics=(),
            values=(),
            units=(),
        )

    def faulty_samples(
        self, j: int, offset_s: int, active: list[Fault]
    ) -> tuple[list[Sample], tuple[float, ...]]:
        samples: list[Sample] = []
        values: list[float] = []
        for m in self.metrics:
            value = self.apply(m, self.track.values[m][j], j, offset_s, active)
            sent, unit, back = _as_sent(m, np.array([value]), self.track.units[m])
            samples.append(Sample(m, sent[0], unit))
            values.append(back[0])
        return samples, tuple(values)

    def apply(self, metric: str, value: float, j: int, offset_s: int, active: list[Fault]) -> float:
        """The value after the signal faults active at this report."""
        lo, hi = self.spans[metric]
        decimals = DECIMALS[metric]
        boolean = metric in BOOLEAN_METRICS
        for f in active:
            if isinstance(f, Stuck) and _targets(f.metrics, metric, self.track):
                first = _first_report(self.track.offsets_s, f.start_s)
                value = self.track.values[metric][first]
            elif isinstance(f, Drift) and not boolean and _targets(f.metrics, metric, self.track):
                hours = (offset_s - f.start_s) / 3600.0
                value = round(min(max(value + f.rate_per_hour * hours, lo), hi), decimals)
            elif (
                isinstance(f, Spike)
                and not boolean
                and _targets(f.metrics, metric, self.track)
                and self.spike[j] < f.probability
            ):
                jump = f.magnitude if f.magnitude is not None else 0.4 * (hi - lo)
                jump = jump if self.sign[j] < 0.5 else -jump
                if not lo <= value + jump <= hi:  # spike the other way rather than clip
                    jump = -jump
                value = round(min(max(value + jump, lo), hi), decimals)
        return value


def _as_sent(
    metric: str, canonical: np.ndarray, choice: UnitChoice
) -> tuple[list[Any], str | None, list[float]]:
    """Values as the device writes them (its unit, its precision; ints and booleans as
    such) and the same values converted back to canonical units the way ingest does."""
    if metric in BOOLEAN_METRICS:
        flags = canonical >= 0.5
        return flags.tolist(), None, flags.astype(np.float64).tolist()
    sent = (
        canonical if choice.factor == 1.0 else np.round(canonical / choice.factor, choice.decimals)
    )
    if choice.decimals == 0:
        as_int = sent.astype(np.int64)
        return as_int.tolist(), choice.unit, (as_int * choice.factor).tolist()
    return sent.tolist(), choice.unit, (sent * choice.factor).tolist()


def _targets(metrics: frozenset[str] | None, metric: str, track: DeviceTrack) -> bool:
    return metric in metrics if metrics is not None else metric in main_metrics(track.device)


def _first_report(offsets: list[int], start_s: float) -> int:
    return min(int(np.searchsorted(offsets, start_s)), len(offsets) - 1)
