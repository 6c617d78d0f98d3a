"""`pantau bridge lorawan`: uplinks of a LoRaWAN network server -> Pantau.

One network server per bridge process (config/lorawan.yaml names it): ChirpStack v4 or
The Things Stack v3, read from its own broker (bridges.source). Per event
(bridges.lorawan_events):

- uplink: the DevEUI names a registry device; the decoded payload's fields become
  readings by the map of the device's kind (`fields:`), plus the best gateway's RSSI
  (the catalogue's `rssi`, when the kind reports it), as a SenML pack on
  `{root}/sensors/{device}/up`. RSSI, SNR, frame counter and gateway count go to
  InfluxDB (`device_link`); a frame-counter jump is a data-quality event
  (`data_quality`, kind `frame_counter_gap`, cause `lorawan`) with how many uplinks
  never arrived;
- join: the device's retained status becomes `online` (reason `joined`), and its
  frame counter starts again (no gap is counted across a join);
- status (ChirpStack): `online` with battery, margin and power source; the battery
  is a reading when the kind reports `battery`.

Unknown DevEUIs, broken JSON, missing fields and unreadable values are dead-lettered
with the reason; fields the kind does not map are left alone (a codec reports more
than Pantau needs).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from bridges.lorawan_events import PARSERS, DeviceStatus, Join, Uplink, normal_eui
from bridges.mapping import KindFields, check_fields, mapped
from bridges.outputs import Value, gap_line, link_line, senml_pack, status
from bridges.relay import Translation
from bridges.source import SourceBroker
from pantau.city import City
from pantau.deadletter import Rejection
from pantau.devices import Device
from pantau.errors import ConfigError, ConfigErrors, RejectedInput
from pantau.topics import Topics
from pantau.yamlconf import load_model

MAX_EVENT_BYTES = 64 * 1024  # a LoRaWAN event is a few KiB at most


class NetworkServer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="shown as the status gateway")
    kind: Literal["chirpstack", "tts"]
    broker: SourceBroker


class LorawanFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    network_server: NetworkServer
    devices: dict[str, str] = Field(description="DevEUI -> registry device id")
    fields: KindFields = Field(description="device kind -> decoded field -> metric")


def load_lorawan(path: Path, city: City) -> LorawanFile:
    """Read and check config/lorawan.yaml; every problem with its file and line."""
    config, doc = load_model(path, LorawanFile)
    errors: list[ConfigError] = check_fields(config.fields, city.catalogue, doc, "fields")
    owners: dict[str, str] = {}
    for eui, device_id in config.devices.items():
        try:
            key = normal_eui(eui, f"{eui!r}")
        except RejectedInput as err:
            errors.append(doc.error(("devices", eui), err.detail))
            continue
        if device_id not in city.devices:
            errors.append(doc.error(("devices", eui), f"{device_id!r} is not in the registry"))
        if key in owners:
            errors.append(doc.error(("devices", eui), f"DevEUI given twice ({owners[key]})"))
        owners[key] = device_id
    if errors:
        raise ConfigErrors(errors)
    return config


@dataclass(slots=True)
class _Counter:
    f_cnt: int
    time: datetime


class LorawanTranslator:
    def __init__(self, config: LorawanFile, city: City, topics: Topics) -> None:
        self._server = config.network_server
        self._parse, self._filters = PARSERS[self._server.kind]
        self._devices: dict[str, Device] = {
            normal_eui(eui, "DevEUI"): city.devices[d] for eui, d in config.devices.items()
        }
        self._fields = config.fields
        self._topics = topics
        self._counters: dict[str, _Counter] = {}  # per device: the last frame counter
        self.gaps = 0

    @property
    def filters(self) -> tuple[str, ...]:
        return self._filters

    @property
    def name(self) -> str:
        return self._server.name

    def translate(self, topic: str, payload: bytes, received_at: datetime) -> Translation:
        out = Translation()
        try:
            if len(payload) > MAX_EVENT_BYTES:
                raise RejectedInput("too_large", f"{len(payload)} bytes, limit {MAX_EVENT_BYTES}")
            event = self._parse(topic, payload)
            if event is None:
                return out  # an event Pantau does not use
            device = self._devices.get(event.dev_eui)
            if device is None:
                raise RejectedInput(
                    "unknown_device", f"DevEUI {event.dev_eui} is not in config/lorawan.yaml"
                )
        except RejectedInput as err:
            out.rejections.append(Rejection(err.reason, err.detail, topic, payload, received_at))
            return out
        if isinstance(event, Join):
            self._counters.pop(device.id, None)  # a join starts the frame counter again
            out.publishes.append(
                status(
                    self._topics,
                    device,
                    "online",
                    event.time,
                    via=self._server.name,
                    reason="joined",
                    dev_addr=event.dev_addr,
                )
            )
        elif isinstance(event, DeviceStatus):
            self._device_status(device, event, out)
        else:
            self._uplink(
                device,
                event,
                out,
                lambda err: Rejection(err.reason, err.detail, topic, payload, received_at),
            )
        return out

    def _device_status(self, device: Device, event: DeviceStatus, out: Translation) -> None:
        out.publishes.append(
            status(
                self._topics,
                device,
                "online",
                event.time,
                via=self._server.name,
                reason="device status",
                battery=event.battery,
                margin=event.margin,
                external_power=event.external_power,
            )
        )
        if event.battery is not None and "battery" in device.metrics:
            out.publishes.append(
                senml_pack(
                    self._topics, device.id, event.time, [Value("battery", event.battery, "%")]
                )
            )

    def _uplink(
        self,
        device: Device,
        up: Uplink,
        out: Translation,
        refuse: Callable[[RejectedInput], Rejection],
    ) -> None:
        values: list[Value] = []
        fields = self._fields.get(device.kind, {})
        for name, raw in _flat(up.decoded or {}):
            try:
                value = mapped(fields, name, raw)
            except RejectedInput as err:
                out.rejections.append(refuse(err))
                continue
            if value is not None:
                values.append(value)
        if up.rssi is not None and "rssi" in device.metrics:
            values.append(Value("rssi", up.rssi, "dBm"))
        if up.decoded is None:  # the link health is still worth keeping
            out.rejections.append(
                refuse(
                    RejectedInput(
                        "invalid_payload",
                        "the network server decoded nothing (no payload codec / formatter?)",
                    )
                )
            )
        if values:
            out.publishes.append(senml_pack(self._topics, device.id, up.time, values))
        link = link_line(
            device,
            self._server.name,
            up.time,
            {"rssi": up.rssi, "snr": up.snr, "f_cnt": up.f_cnt, "gateways": up.gateways},
        )
        if link is not None:
            out.lines.append(link)
        gap = self._frame_gap(device, up)
        if gap is not None:
            out.lines.append(gap)

    def _frame_gap(self, device: Device, up: Uplink) -> str | None:
        """Uplinks the network server never got: the frame counter jumped. A lower
        counter with a newer time is a restarted device (new baseline); with an older or
        equal time, a redelivered copy (ignored)."""
        last = self._counters.get(device.id)
        if last is None or (up.f_cnt < last.f_cnt and up.time > last.time):
            self._counters[device.id] = _Counter(up.f_cnt, up.time)
            return None
        if up.f_cnt <= last.f_cnt:
            return None
        missing = up.f_cnt - last.f_cnt - 1
        line = None
        if missing > 0:
            self.gaps += 1
            line = gap_line(
                device.id,
                "frame_counter_gap",
                "lorawan",
                missing=missing,
                after=last.f_cnt,
                next_=up.f_cnt,
                since=last.time,
                when=up.time,
            )
        last.f_cnt, last.time = up.f_cnt, max(last.time, up.time)
        return line


def _flat(decoded: dict[str, object], prefix: str = "", depth: int = 0) -> list[tuple[str, object]]:
    """Nested decoded objects as dotted names (`{"sump": {"level": 1}}` -> `sump.level`)."""
    out: list[tuple[str, object]] = []
    for key, value in decoded.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and depth < 4:
            out += _flat(value, f"{name}.", depth + 1)
        else:
            out.append((name, value))
    return out


def default_path(config_dir: Path) -> Path:
    return config_dir / "lorawan.yaml"


def environ() -> dict[str, str]:
    return dict(os.environ)
