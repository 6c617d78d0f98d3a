"""The paho speed-ups behave exactly like stock paho on the bytes that matter."""

from __future__ import annotations

import socket
from typing import Any

import paho.mqtt._packet as paho_packet  # noqa: PLC2701 - what mqtt_fast replaces
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.exception import MalformedPacket
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from pantau.mqtt_fast import (
    BufferedSocket,
    LeanProperties,
    install_lean_properties,
    lean_decode_publish,
    paho_decode_publish,
)


def _publish_props() -> bytes:
    props: Any = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.ContentType = "application/senml+json"
    props.UserProperty = [("reason", "x"), ("a", "b")]
    props.MessageExpiryInterval = 30
    packed: bytes = props.pack()
    return packed


def test_lean_properties_decode_like_stock_paho() -> None:
    data = _publish_props() + b"payload"
    stock: Any = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    lean: Any = LeanProperties(PacketTypes.PUBLISH)
    assert stock.unpack(data)[1] == lean.unpack(data)[1] == len(data) - len(b"payload")
    assert lean.ContentType == stock.ContentType == "application/senml+json"
    assert lean.UserProperty == stock.UserProperty
    assert lean.json() == stock.json()
    lean.clear()
    assert lean.json() == {}
    # a second instance starts empty although the tables are shared
    fresh: Any = LeanProperties(PacketTypes.PUBLISH)
    assert fresh.json() == {}


def test_buffered_socket_hands_out_whole_packets_and_waits_for_partial_ones() -> None:
    left, right = socket.socketpair()
    left.setblocking(False)
    try:
        buffered = BufferedSocket(left)
        puback = bytes([0x40, 0x02, 0x00, 0x07])
        big_body = b"x" * 300  # remaining length 300 needs two bytes: 0xAC 0x02
        publish = bytes([0x32, 0xAC, 0x02]) + big_body
        right.sendall(puback + publish[:100])
        assert buffered.read_packet() == (0x40, b"\x00\x07")
        assert buffered.pending() == 0  # only part of the PUBLISH is here: wait in select()
        with pytest.raises(BlockingIOError):
            buffered.read_packet()
        right.sendall(publish[100:] + puback)
        assert buffered.read_packet() == (0x32, big_body)
        assert buffered.pending() == 4
        assert buffered.read_packet() == (0x40, b"\x00\x07")
        right.sendall(bytes([0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]))
        with pytest.raises(MalformedPacket):
            buffered.read_packet()
        right.close()
    finally:
        left.close()


def test_buffered_socket_reports_a_closed_connection() -> None:
    left, right = socket.socketpair()
    left.setblocking(False)
    right.close()
    with pytest.raises(ConnectionResetError):
        BufferedSocket(left).read_packet()
    left.close()


def _publish_body(topic: bytes, mid: int | None, props: bytes, payload: bytes) -> bytes:
    head = len(topic).to_bytes(2, "big") + topic
    return head + (mid.to_bytes(2, "big") if mid is not None else b"") + props + payload


def _props(**values: Any) -> bytes:
    props: Any = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    for name, value in values.items():
        setattr(props, name, value)
    packed: bytes = props.pack()
    return packed


def _decoded(header: int, body: bytes, decode: Any) -> Any:
    try:
        result = decode(header, body, mqtt.MQTTv5)
    except MalformedPacket as err:
        return ("malformed", str(err))
    props = result.properties.json() if result.properties is not None else None
    return (result.dup, result.qos, result.retain, result.topic, result.mid, props, result.payload)


@pytest.mark.parametrize(
    ("header", "body"),
    [
        (0x32, _publish_body(b"a/sensors/d-1/up", 7, b"\x00", b'{"x":1}')),
        (0x30, _publish_body(b"a/sensors/d-1/up", None, b"\x00", b"")),
        (0x3B, _publish_body(b"t", 65535, _props(ContentType="application/senml+json"), b"[]")),
        (0x32, _publish_body(b"t", 1, _props(ContentType=""), b"p")),
        (0x32, _publish_body(b"t", 1, _props(ContentType="x" * 200), b"p")),  # 2-byte length
        (0x32, _publish_body(b"t", 1, _props(ContentType="a", UserProperty=[("k", "v")]), b"p")),
        (0x32, _publish_body(b"t", 1, _props(PayloadFormatIndicator=1), b"p")),
        (0x32, _publish_body(b"t", 1, b"\x04\x03\x00\x01\x00", b"p")),  # null in content type
        (0x32, _publish_body(b"t", 1, b"\x06\x03\x00\x03\xef\xbb\xbf", b"p")),  # U+FEFF
        (0x32, _publish_body(b"t", 1, b"\x05\x03\x00\x02\xed\xa0", b"p")),  # bad UTF-8
        (0x32, _publish_body(b"t", 1, b"\x05\x03\x00\x09ab", b"")),  # string past the block
        (0x32, _publish_body(b"t", 1, b"\x09\x03\x00\x02ab", b"")),  # block past the packet
        (0x32, b"\x00\x09abc"),  # topic past the packet
        (0x32, b"\x00"),
    ],
)
def test_lean_decode_publish_is_paho_decode_publish(header: int, body: bytes) -> None:
    install_lean_properties()
    assert paho_decode_publish is not lean_decode_publish
    assert paho_packet.decode_publish is lean_decode_publish
    expected = _decoded(header, body, paho_decode_publish)
    assert _decoded(header, body, lean_decode_publish) == expected
