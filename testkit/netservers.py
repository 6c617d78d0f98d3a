"""LoRaWAN network-server events shaped as ChirpStack v4 and The Things Stack v3 publish
them (field names, nesting, omitted defaults, upper-case DevEUIs in TTS), for the tests
and the bridge benchmark. Written from the servers' published formats; no values of
theirs are needed beyond the shapes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pantau.wire import rfc3339


def chirpstack_topic(dev_eui: str, event: str, application: str = "app-1") -> str:
    return f"application/{application}/device/{dev_eui}/event/{event}"


def _device_info(dev_eui: str) -> dict[str, Any]:
    return {
        "tenantId": "52f14cd4-c6f1-4fbd-8f87-4025e1d49242",
        "tenantName": "Kota Tangerang",
        "applicationId": "17c82e96-be03-4f38-aef3-f83d48582d97",
        "applicationName": "drainage",
        "deviceProfileId": "14855bf7-d10d-4aee-b618-ebfcb64dc7ad",
        "deviceProfileName": "level-sensor",
        "deviceName": f"dev-{dev_eui[-4:]}",
        "devEui": dev_eui,
        "deviceClassEnabled": "CLASS_A",
        "tags": {},
    }


def chirpstack_up(
    dev_eui: str,
    when: datetime,
    f_cnt: int,
    obj: dict[str, Any] | None,
    radio: Sequence[tuple[int, float]] = ((-97, 7.25),),
) -> bytes:
    body: dict[str, Any] = {
        "deduplicationId": str(uuid.uuid4()),
        "time": rfc3339(when),
        "deviceInfo": _device_info(dev_eui),
        "devAddr": "00bcb929",
        "adr": True,
        "dr": 5,
        "fPort": 2,
        "data": "AXgAWA==",
        "rxInfo": [
            {
                "gatewayId": f"0016c001ff10d3f{i}",
                "uplinkId": 4217106255 + i,
                "rssi": rssi,
                "snr": snr,
                "channel": 2,
                "location": {},
                "context": "EFwMtA==",
                "metadata": {"region_common_name": "AS923"},
                "crcStatus": "CRC_OK",
            }
            for i, (rssi, snr) in enumerate(radio)
        ],
        "txInfo": {
            "frequency": 923200000,
            "modulation": {
                "lora": {"bandwidth": 125000, "spreadingFactor": 7, "codeRate": "CR_4_5"}
            },
        },
    }
    if f_cnt:  # proto3 JSON leaves a 0 out
        body["fCnt"] = f_cnt
    if obj is not None:
        body["object"] = obj
    return json.dumps(body).encode()


def chirpstack_join(dev_eui: str, when: datetime) -> bytes:
    return json.dumps(
        {
            "deduplicationId": str(uuid.uuid4()),
            "time": rfc3339(when),
            "deviceInfo": _device_info(dev_eui),
            "devAddr": "01497ecc",
        }
    ).encode()


def chirpstack_status(dev_eui: str, when: datetime, battery: float, margin: int) -> bytes:
    return json.dumps(
        {
            "deduplicationId": str(uuid.uuid4()),
            "time": rfc3339(when),
            "deviceInfo": _device_info(dev_eui),
            "margin": margin,
            "batteryLevel": battery,
        }
    ).encode()


def tts_topic(device_id: str, event: str, application: str = "drainage@tangerang") -> str:
    return f"v3/{application}/devices/{device_id}/{event}"


def _ids(device_id: str, dev_eui: str) -> dict[str, Any]:
    return {
        "device_id": device_id,
        "application_ids": {"application_id": "drainage"},
        "dev_eui": dev_eui.upper(),
        "join_eui": "800000000000000C",
        "dev_addr": "00BCB929",
    }


def tts_up(
    device_id: str,
    dev_eui: str,
    when: datetime,
    f_cnt: int,
    decoded: dict[str, Any] | None,
    radio: Sequence[tuple[int, float]] = ((-35, 5.0),),
) -> bytes:
    at = rfc3339(when)
    up: dict[str, Any] = {
        "session_key_id": "AXA50tHUGUucuzS/bCGMNw==",
        "f_port": 1,
        "frm_payload": "gkHe",
        "rx_metadata": [
            {
                "gateway_ids": {"gateway_id": f"gtw{i}", "eui": f"9C5C8E00001A05C{i}"},
                "time": at,
                "timestamp": 2463457000,
                "rssi": rssi,
                "channel_rssi": rssi,
                "snr": snr,
                "uplink_token": "ChIKEAoEZ3R3MRIInFyOAAAaBcQQ6L3Vlgk=",
                "channel_index": 2,
            }
            for i, (rssi, snr) in enumerate(radio)
        ],
        "settings": {
            "data_rate": {"lora": {"bandwidth": 125000, "spreading_factor": 7}},
            "data_rate_index": 5,
            "coding_rate": "4/6",
            "frequency": "923200000",
            "timestamp": 2463457000,
            "time": at,
        },
        "received_at": at,
    }
    if f_cnt:  # TTS omits fields at their default too
        up["f_cnt"] = f_cnt
    if decoded is not None:
        up["decoded_payload"] = decoded
    return json.dumps(
        {
            "end_device_ids": _ids(device_id, dev_eui),
            "correlation_ids": ["as:up:01E0WZGT6Y7657CPFPE5WEYDSQ"],
            "received_at": at,
            "uplink_message": up,
        }
    ).encode()


def tts_join(device_id: str, dev_eui: str, when: datetime) -> bytes:
    return json.dumps(
        {
            "end_device_ids": _ids(device_id, dev_eui),
            "correlation_ids": ["as:up:01E191YN5F2HMBQCBCVRF731VY"],
            "received_at": rfc3339(when),
            "join_accept": {
                "session_key_id": "AXBSH1Pk6Z0G166RlH16CQ==",
                "received_at": rfc3339(when),
            },
        }
    ).encode()
