"""LoRaWAN network-server events -> one common shape (Uplink, Join, DeviceStatus).

Two network servers, read as their integrations publish them (JSON):

- ChirpStack v4, MQTT integration:
  `application/{application id}/device/{DevEUI}/event/{up|join|status}`, the protobuf
  JSON mapping of integration.proto's UplinkEvent (`deduplicationId`, `time`,
  `deviceInfo.devEui`, `fCnt`, `fPort`, `object` when a codec is configured,
  `rxInfo[].rssi / .snr`), JoinEvent (`devAddr`) and StatusEvent (`margin`,
  `externalPowerSource`, `batteryLevelUnavailable`, `batteryLevel` in %).
- The Things Stack v3, MQTT server:
  `v3/{application id}@{tenant}/devices/{device id}/{up|join}`, with
  `end_device_ids.dev_eui`, `received_at`, `uplink_message.f_cnt`, `.decoded_payload`
  (from the payload formatter), `.rx_metadata[].rssi / .snr`; `join_accept`.

Both omit fields at their default (a frame counter 0 is absent). Anything else a
network server publishes on those topics is refused with the reason (RejectedInput).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pantau.errors import RejectedInput

MAX_GATEWAYS = 64  # rx metadata entries looked at (a real uplink has a handful)


@dataclass(frozen=True, slots=True)
class Uplink:
    dev_eui: str  # 16 lower-case hex digits
    time: datetime
    f_cnt: int
    f_port: int | None
    decoded: dict[str, Any] | None  # None: the network server decoded nothing
    rssi: float | None  # best over the receiving gateways
    snr: float | None
    gateways: int


@dataclass(frozen=True, slots=True)
class Join:
    dev_eui: str
    time: datetime
    dev_addr: str | None


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    dev_eui: str
    time: datetime
    battery: float | None  # % (None: the device cannot tell)
    margin: int | None  # demodulation SNR margin, dB
    external_power: bool


Event = Uplink | Join | DeviceStatus


def normal_eui(value: Any, what: str) -> str:
    if not isinstance(value, str) or len(value) != 16:
        raise RejectedInput("invalid_payload", f"{what} must be a DevEUI of 16 hex digits")
    try:
        int(value, 16)
    except ValueError as err:
        raise RejectedInput("invalid_payload", f"{what} {value!r} is not hexadecimal") from err
    return value.lower()


def _json_object(payload: bytes) -> dict[str, Any]:
    try:
        body = json.loads(payload.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise RejectedInput("malformed_json", str(err)[:200]) from err
    if not isinstance(body, dict):
        raise RejectedInput("invalid_payload", "the event must be a JSON object")
    return body


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def _object(body: dict[str, Any], key: str) -> dict[str, Any]:
    value = body.get(key)
    if not isinstance(value, dict):
        raise RejectedInput("invalid_payload", f"`{key}` must be an object")
    return value


def _time(value: Any, what: str) -> datetime:
    if not isinstance(value, str):
        raise RejectedInput("bad_timestamp", f"`{what}` must be an RFC 3339 time")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as err:
        raise RejectedInput("bad_timestamp", f"`{what}` {value[:40]!r} is not RFC 3339") from err
    if parsed.tzinfo is None:
        raise RejectedInput("bad_timestamp", f"`{what}` {value[:40]!r} has no UTC offset")
    return parsed.astimezone(UTC)


def _counter(value: Any, what: str) -> int:
    if value is None:
        return 0  # proto3 JSON leaves a 0 out
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32:
        raise RejectedInput("invalid_payload", f"`{what}` must be a 32-bit unsigned integer")
    return value


def _radio(entries: Any, what: str) -> tuple[float | None, float | None, int]:
    """Best RSSI and best SNR over the gateways that heard the uplink, and how many."""
    if entries is None:
        return None, None, 0
    if not isinstance(entries, list):
        raise RejectedInput("invalid_payload", f"`{what}` must be a list")
    rssi: float | None = None
    snr: float | None = None
    for entry in entries[:MAX_GATEWAYS]:
        if not isinstance(entry, dict):
            raise RejectedInput("invalid_payload", f"`{what}` entries must be objects")
        r, s = _finite(entry.get("rssi")), _finite(entry.get("snr"))
        rssi = r if rssi is None or (r is not None and r > rssi) else rssi
        snr = s if snr is None or (s is not None and s > snr) else snr
    return rssi, snr, len(entries)


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value) if abs(value) < 1e300 else math.inf
    return number if math.isfinite(number) else None


def _decoded(value: Any, what: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise RejectedInput("invalid_payload", f"`{what}` must be an object")
    return value


# --- ChirpStack v4 ------------------------------------------------------------------------
CHIRPSTACK_FILTERS = tuple(
    f"application/+/device/+/event/{event}" for event in ("up", "join", "status")
)


def chirpstack_event(topic: str, payload: bytes) -> Event | None:
    """None for an event type Pantau does not use (ack, txack, log, location...)."""
    parts = topic.split("/")
    if len(parts) != 6 or parts[0] != "application" or parts[2] != "device" or parts[4] != "event":
        raise RejectedInput("unexpected_topic", f"{topic[:120]!r} is no ChirpStack event topic")
    kind = parts[5]
    if kind not in ("up", "join", "status"):
        return None
    topic_eui = normal_eui(parts[3], "the topic's DevEUI")
    body = _json_object(payload)
    info = _object(body, "deviceInfo")
    eui = normal_eui(info.get("devEui"), "deviceInfo.devEui")
    if eui != topic_eui:
        raise RejectedInput(
            "device_mismatch", f"deviceInfo.devEui {eui} on the topic of {topic_eui}"
        )
    when = _time(body.get("time"), "time")
    if kind == "join":
        addr = body.get("devAddr")
        return Join(eui, when, addr if isinstance(addr, str) else None)
    if kind == "status":
        level = _finite(body.get("batteryLevel"))
        unavailable = body.get("batteryLevelUnavailable") is True
        margin = body.get("margin")
        return DeviceStatus(
            eui,
            when,
            None if unavailable else (level if level is not None else 0.0),
            margin if isinstance(margin, int) and not isinstance(margin, bool) else None,
            body.get("externalPowerSource") is True,
        )
    rssi, snr, gateways = _radio(body.get("rxInfo"), "rxInfo")
    port = body.get("fPort")
    return Uplink(
        dev_eui=eui,
        time=when,
        f_cnt=_counter(body.get("fCnt"), "fCnt"),
        f_port=port if isinstance(port, int) and not isinstance(port, bool) else None,
        decoded=_decoded(body.get("object"), "object"),
        rssi=rssi,
        snr=snr,
        gateways=gateways,
    )


# --- The Things Stack v3 ------------------------------------------------------------------
TTS_FILTERS = ("v3/+/devices/+/up", "v3/+/devices/+/join")


def tts_event(topic: str, payload: bytes) -> Event | None:
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != "v3" or parts[2] != "devices":
        raise RejectedInput("unexpected_topic", f"{topic[:120]!r} is no The Things Stack topic")
    kind = parts[4]
    if kind not in ("up", "join"):
        return None
    body = _json_object(payload)
    ids = _object(body, "end_device_ids")
    if ids.get("device_id") != parts[3]:
        raise RejectedInput(
            "device_mismatch",
            f"end_device_ids.device_id {str(ids.get('device_id'))[:64]!r} on the topic of "
            f"{parts[3][:64]!r}",
        )
    eui = normal_eui(ids.get("dev_eui"), "end_device_ids.dev_eui")
    when = _time(body.get("received_at"), "received_at")
    if kind == "join":
        _object(body, "join_accept")
        addr = ids.get("dev_addr")
        return Join(eui, when, addr if isinstance(addr, str) else None)
    up = _object(body, "uplink_message")
    rssi, snr, gateways = _radio(up.get("rx_metadata"), "uplink_message.rx_metadata")
    port = up.get("f_port")
    return Uplink(
        dev_eui=eui,
        time=when,
        f_cnt=_counter(up.get("f_cnt"), "uplink_message.f_cnt"),
        f_port=port if isinstance(port, int) and not isinstance(port, bool) else None,
        decoded=_decoded(up.get("decoded_payload"), "uplink_message.decoded_payload"),
        rssi=rssi,
        snr=snr,
        gateways=gateways,
    )


PARSERS = {"chirpstack": (chirpstack_event, CHIRPSTACK_FILTERS), "tts": (tts_event, TTS_FILTERS)}
