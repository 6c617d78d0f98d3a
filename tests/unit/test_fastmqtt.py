"""The paho speed-ups behave exactly like stock paho on the bytes that matter."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, cast

import paho.mqtt._packet as paho_packet  # noqa: PLC2701 - what mqtt_fast replaces
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.exception import MalformedPacket
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from pantau.mqtt import content_type
from pantau.mqtt_fast import (
    LINGER_BELOW,
    BufferedClient,
    BufferedSocket,
    LeanProperties,
    decode_qos1_publish,
    install_lean_properties,
    lean_decode_publish,
    paho_decode_publish,
)
from pantau.settings import MqttSettings


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


def _stock_message(
    header: int, body: bytes, protocol: MQTTProtocolVersion
) -> tuple[int, str, bytes | bytearray, str | None]:
    """What stock paho hands on_message for a PUBLISH: mid, topic, payload, content type."""
    result = paho_decode_publish(header, body, protocol)
    message = mqtt.MQTTMessage(mid=result.mid, topic=result.topic)
    message.properties = result.properties
    message.payload = result.payload
    return message.mid, message.topic, message.payload, content_type(message)


_QOS1_BODIES_V5 = [
    _publish_body(b"a/sensors/d-1/up", 7, b"\x00", b'{"x":1}'),
    _publish_body(b"a/sensors/d-1/up", 65535, b"\x00", b""),
    _publish_body("kota/sensors/sensör/up".encode(), 1, b"\x00", b"\xff\x00"),
    _publish_body(b"t", 3, _props(ContentType="application/senml+json"), b"[]"),
    _publish_body(b"t", 4, _props(ContentType=""), b"p"),
]
# Forms paho's own path takes: other properties, a long property block, text that is
# not valid MQTT UTF-8, and malformed packets.
_QOS1_BODIES_V5_PAHO = [
    _publish_body(b"t", 1, _props(ContentType="x" * 200), b"p"),
    _publish_body(b"t", 1, _props(ContentType="a", UserProperty=[("k", "v")]), b"p"),
    _publish_body(b"t", 1, _props(PayloadFormatIndicator=1), b"p"),
    _publish_body(b"t", 1, b"\x04\x03\x00\x01\x00", b"p"),
    _publish_body(b"t", 1, b"\x06\x03\x00\x03\xef\xbb\xbf", b"p"),
    _publish_body(b"t", 1, b"\x05\x03\x00\x02\xed\xa0", b"p"),
    _publish_body(b"\xc3\x28", 1, b"\x00", b"p"),  # topic not UTF-8
    _publish_body(b"t", 1, b"\x05\x03\x00\x09ab", b""),
    _publish_body(b"t", 1, b"\x09\x03\x00\x02ab", b""),
    b"\x00\x09abc",
    b"\x00\x01t\x00",
    b"\x00",
]


@pytest.mark.parametrize("body", _QOS1_BODIES_V5)
@pytest.mark.parametrize("header", [0x32, 0x3A, 0x33])  # plain, dup, retain
def test_decode_qos1_publish_is_what_stock_paho_delivers(header: int, body: bytes) -> None:
    assert decode_qos1_publish(body, v5=True) == _stock_message(header, body, mqtt.MQTTv5)


@pytest.mark.parametrize("body", _QOS1_BODIES_V5_PAHO)
def test_decode_qos1_publish_leaves_other_forms_to_paho(body: bytes) -> None:
    assert decode_qos1_publish(body, v5=True) is None


def test_decode_qos1_publish_on_mqtt_311() -> None:
    body = _publish_body(b"a/sensors/d-1/up", 513, b"", b'{"x":1}')
    expected = _stock_message(0x32, body, mqtt.MQTTv311)
    assert (
        decode_qos1_publish(body, v5=False)
        == expected
        == (513, "a/sensors/d-1/up", b'{"x":1}', None)
    )


def _packet(header: int, body: bytes) -> bytes:
    length, encoded = len(body), bytearray()
    while True:
        byte, length = length % 128, length // 128
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            return bytes([header]) + bytes(encoded) + body


def test_publish_sink_takes_plain_qos1_in_order_and_paho_the_rest() -> None:
    """One read pass over a mix: the sink gets the plain QoS 1 messages in lists, paho's
    on_message the others, and the two together are the arrival order."""
    client = BufferedClient(MqttSettings(), "fast-test", clean=True, manual_ack=True)
    seen: list[tuple[str, Any]] = []
    client.publish_sink = lambda batch: seen.extend(("sink", item) for item in batch)
    client.on_message = lambda _c, _u, m: seen.append(("paho", (m.mid, m.topic, m.qos)))
    packets = [
        (0x32, _publish_body(b"r/sensors/a/up", 1, b"\x00", b"one")),
        (0x3A, _publish_body(b"r/sensors/a/up", 2, b"\x00", b"two, again")),
        (0x30, _publish_body(b"r/sensors/a/up", None, b"\x00", b"qos 0")),
        (0x32, _publish_body(b"r/sensors/b/up", 3, b"\x00", b"three")),
        (0x32, _publish_body(b"r/u", 4, _props(UserProperty=[("k", "v")]), b"props")),
        (0x32, _publish_body(b"r/sensors/c/up", 5, _props(ContentType="x/y"), b"five")),
    ]
    left, right = socket.socketpair()
    left.setblocking(False)
    try:
        client._sock = cast(Any, BufferedSocket(left))  # as connected
        right.sendall(b"".join(_packet(h, b) for h, b in packets))
        assert client.loop_read() == mqtt.MQTT_ERR_SUCCESS
        assert seen == [
            ("sink", (1, "r/sensors/a/up", b"one", None)),
            ("sink", (2, "r/sensors/a/up", b"two, again", None)),
            ("paho", (0, "r/sensors/a/up", 0)),
            ("sink", (3, "r/sensors/b/up", b"three", None)),
            ("paho", (4, "r/u", 1)),
            ("sink", (5, "r/sensors/c/up", b"five", "x/y")),
        ]
        right.close()  # the broker went away: a lost connection, as paho reports it
        assert client.loop_read() == mqtt.MQTT_ERR_CONN_LOST
    finally:
        client._sock = None
        left.close()


def _sink_client(linger_s: float) -> tuple[BufferedClient, list[list[Any]]]:
    client = BufferedClient(MqttSettings(), "fast-test", clean=True, manual_ack=True)
    calls: list[list[Any]] = []
    client.publish_sink = lambda batch: calls.append(list(batch))
    client.sink_linger_s = linger_s
    return client, calls


def _qos1(mid: int) -> bytes:
    return _packet(0x32, _publish_body(b"r/sensors/a/up", mid, b"\x00", b"x"))


def test_a_lingering_pass_takes_what_comes_meanwhile_in_one_list() -> None:
    client, calls = _sink_client(linger_s=1.0)
    left, right = socket.socketpair()
    left.setblocking(False)
    try:
        client._sock = cast(Any, BufferedSocket(left))
        right.sendall(_qos1(1))
        later = threading.Timer(0.02, lambda: right.sendall(_qos1(2) + _qos1(3)))
        later.start()
        assert client.loop_read() == mqtt.MQTT_ERR_SUCCESS
        later.join()
        assert [[m[0] for m in c] for c in calls] == [[1, 2, 3]]
    finally:
        client._sock = None
        left.close()
        right.close()


def test_a_pass_does_not_linger_while_a_publish_of_ours_awaits_its_puback() -> None:
    # The rules worker waits for the PUBACKs of the alerts it published: a linger would
    # leave the broker's answer unread that long.
    client, calls = _sink_client(linger_s=5.0)
    left, right = socket.socketpair()
    left.setblocking(False)
    try:
        client._sock = cast(Any, BufferedSocket(left))
        client._out_messages[7] = mqtt.MQTTMessage(7)  # published, its PUBACK not in yet
        right.sendall(_qos1(1))
        started = time.monotonic()
        assert client.loop_read() == mqtt.MQTT_ERR_SUCCESS
        assert time.monotonic() - started < 2.5
        assert [[m[0] for m in c] for c in calls] == [[1]]
    finally:
        client._out_messages.clear()
        client._sock = None
        left.close()
        right.close()


def test_a_full_pass_or_something_to_send_ends_the_linger() -> None:
    client, calls = _sink_client(linger_s=5.0)
    left, right = socket.socketpair()
    wake_r, wake_w = socket.socketpair()
    left.setblocking(False)
    try:
        client._sock = cast(Any, BufferedSocket(left))
        client._sockpairR = wake_r
        right.sendall(b"".join(_qos1(mid) for mid in range(1, LINGER_BELOW + 1)))
        started = time.monotonic()
        assert client.loop_read() == mqtt.MQTT_ERR_SUCCESS  # enough: no wait
        right.sendall(_qos1(100))
        # paho's socketpair byte: another thread queued a packet to send
        threading.Timer(0.02, lambda: wake_w.send(b"0")).start()
        assert client.loop_read() == mqtt.MQTT_ERR_SUCCESS
        assert time.monotonic() - started < 2.5
        assert [len(c) for c in calls] == [LINGER_BELOW, 1]
    finally:
        client._sock = None
        client._sockpairR = None
        for s in (left, right, wake_r, wake_w):
            s.close()
