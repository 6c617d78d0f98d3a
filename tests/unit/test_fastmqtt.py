"""The paho speed-ups behave exactly like stock paho on the bytes that matter."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from paho.mqtt.exception import MalformedPacket
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from pantau.mqtt_fast import BufferedSocket, LeanProperties


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
