"""The paho speed-ups behave exactly like stock paho on the bytes that matter."""

from __future__ import annotations

import socket
from typing import Any

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.fastmqtt import BufferedSocket, LeanProperties


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


def test_buffered_socket_hands_out_bytes_in_order_and_reports_pending() -> None:
    left, right = socket.socketpair()
    left.setblocking(False)
    try:
        buffered = BufferedSocket(left)
        right.sendall(b"abcdefgh")
        assert buffered.recv(1) == b"a"
        assert buffered.pending() == 7
        assert buffered.recv(3) == b"bcd"
        assert buffered.recv(100) == b"efgh"
        assert buffered.pending() == 0
        try:
            buffered.recv(1)
        except BlockingIOError:
            pass
        else:
            raise AssertionError("an empty non-blocking socket must raise BlockingIOError")
        right.close()
        assert buffered.recv(1) == b""  # peer closed
    finally:
        left.close()
