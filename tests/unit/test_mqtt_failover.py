"""Broker addresses and protocol in MqttSettings, the failover client's node order,
and payloads told apart without an MQTT 5 content type."""

from __future__ import annotations

import socket
from datetime import UTC, datetime

import cbor2
import paho.mqtt.client as mqtt
import pytest
from pydantic import ValidationError

from pantau.decoding import RawReading, decode
from pantau.errors import RejectedInput
from pantau.mqtt_failover import FailoverClient
from pantau.settings import MqttProtocol, MqttSettings, Settings, parse_address
from pantau.wire import Sample, encode_native, encode_senml

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def test_hosts_come_from_the_environment_comma_separated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PANTAU_MQTT__HOSTS", "a.example:1883, b.example:2883,c.example")
    monkeypatch.setenv("PANTAU_MQTT__PROTOCOL", "3.1.1")
    mqtt_settings = Settings().mqtt
    assert mqtt_settings.addresses() == [
        ("a.example", 1883),
        ("b.example", 2883),
        ("c.example", 1883),  # no port: PANTAU_MQTT__PORT
    ]
    assert mqtt_settings.protocol is MqttProtocol.V311
    assert mqtt_settings.describe() == ("a.example:1883,b.example:2883,c.example:1883 (MQTT 3.1.1)")


def test_without_hosts_the_one_address_form_applies() -> None:
    assert MqttSettings(host="broker", port=1884).addresses() == [("broker", 1884)]
    assert MqttSettings().protocol is MqttProtocol.V5


@pytest.mark.parametrize(
    ("address", "expected"),
    [("[::1]:1884", ("::1", 1884)), ("[fe80::2]", ("fe80::2", 1883)), ("h:1", ("h", 1))],
)
def test_addresses_parse(address: str, expected: tuple[str, int]) -> None:
    assert parse_address(address) == expected


@pytest.mark.parametrize("bad", ["a:0", "a:70000", "a:x", ":1883", "a b:1883"])
def test_a_bad_address_is_refused_naming_it(bad: str) -> None:
    with pytest.raises(ValidationError, match=f"broker address '{bad}'"):
        MqttSettings(hosts=[bad])


def test_a_bad_protocol_is_refused() -> None:
    with pytest.raises(ValidationError, match="protocol"):
        MqttSettings.model_validate({"protocol": "4"})


def test_the_protocol_and_session_flag_reach_paho() -> None:
    v311 = FailoverClient(MqttSettings(protocol=MqttProtocol.V311), "c1", clean=False)
    assert (v311.protocol, v311.v5) == (mqtt.MQTTv311, False)
    # 3.1.1 carries the persistent session in the client (clean_session), not per connect
    assert v311._clean_session is False
    v5 = FailoverClient(MqttSettings(), "c2", clean=False)
    assert (v5.protocol, v5.v5) == (mqtt.MQTTv5, True)


def _closed_ports(n: int) -> list[int]:
    """Ports nothing listens on (bound, then released)."""
    ports = []
    for _ in range(n):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(int(s.getsockname()[1]))
    return ports


def test_each_reconnect_goes_to_the_next_node_round_the_list() -> None:
    ports = _closed_ports(3)
    hosts = [f"127.0.0.1:{p}" for p in ports]
    client = FailoverClient(MqttSettings(hosts=hosts), "c3", clean=True)
    with pytest.raises(OSError, match="cannot reach any broker") as info:
        client.connect_any()
    for host in hosts:  # every node was tried once, in order
        assert host in str(info.value)
    assert str(info.value).index(hosts[0]) < str(info.value).index(hosts[2])
    tried = []
    for _ in range(4):
        with pytest.raises(OSError):
            client.reconnect()
        tried.append(client.port)
    assert tried == [ports[0], ports[1], ports[2], ports[0]]
    assert client.failovers == 6  # every attempt after the very first


def test_payloads_without_a_content_type_are_told_apart_by_their_first_byte() -> None:
    """MQTT 3.1.1 has no content type: native JSON, SenML JSON and SenML CBOR."""
    samples = [Sample("battery", 87.0, "%")]
    cbor = cbor2.dumps([{-2: "dev-1/", -3: NOW.timestamp(), 0: "battery", 1: "%", 2: 87}])
    for payload in (
        encode_native("dev-1", 1, NOW, samples),
        encode_senml("dev-1", NOW, samples),
        cbor,
    ):
        (reading,) = decode("dev-1", payload, NOW, None)
        assert isinstance(reading, RawReading)
        assert (reading.metric, reading.value, reading.time) == ("battery", 87, NOW)
    # a content type still wins: CBOR declared as JSON is not sniffed
    with pytest.raises(RejectedInput) as info:
        decode("dev-1", cbor, NOW, "application/json")
    assert info.value.reason == "malformed_json"
