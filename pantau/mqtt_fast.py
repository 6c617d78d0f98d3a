"""A paho-mqtt client that reads the socket in large chunks.

paho reads each packet's header a byte per recv() call and handles one packet per
select(); at tens of thousands of QoS 1 messages a second that, not Pantau's work,
is the ceiling (measured: ~6,000 msg/s with an empty on_message). Wrapping the socket
in a read buffer that hands paho whole packets and reports `pending()` (the hook paho
already uses for TLS and WebSocket sockets) lets one recv() feed hundreds of packets
and one loop pass handle them.

paho also builds its MQTT v5 property tables from scratch for every received packet
(two dict literals and a 27-name scan per PUBLISH: a third of the receive time).
`LeanProperties` is the same class with those tables built once per packet type; it is
installed into paho's packet decoder by `BufferedClient`. Even so, unpacking a PUBLISH's
properties in paho's generic reader costs more than the rest of the packet (measured:
~80 % of `decode_publish`); `lean_decode_publish` reads the two forms Pantau's devices
send (no properties, or only a content type) directly and hands anything else to
paho's own decoder. `tests/unit/test_fastmqtt.py` checks all three against stock paho,
so a paho upgrade that changes what they rely on fails loudly instead of silently.

With a `publish_sink` set, plain QoS 1 PUBLISH packets skip paho's per-message layers
altogether: paho builds an MQTTMessage per message (with an MQTTMessageInfo and its
threading.Condition), takes two locks, matches the topic against its filtered-callback
tree and dispatches on_message; at 20,000 msg/s that was most of the network thread.
`decode_qos1_publish` reads what Pantau's consumers keep (mid, topic, payload, content
type) from the buffered packet, and each read pass hands the sink one list. Every other
packet (QoS 0 and 2, other properties, a topic that is not UTF-8, acks, CONNACK...) is
paho's as before, after the sink has what came before it, so arrival order holds.
paho still owns the connection, session, keepalive and reconnects; acknowledging stays
the consumer's (`ack_many`, after its work is durable).
"""

from __future__ import annotations

import select
import ssl
import struct
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

# paho keeps its packet decoder private; mqtt_fast swaps in a leaner Properties class
# there on purpose (paho is pinned below 3 in pyproject.toml), so the import is deliberate.
import paho.mqtt._packet as paho_packet  # noqa: PLC2701
import paho.mqtt.client as mqtt
from paho.mqtt.client import time_func
from paho.mqtt.enums import MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.exception import MalformedPacket
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from pantau.mqtt_failover import FailoverClient

_PUBACK = struct.Struct("!BBH")
READ_CHUNK = 256 * 1024
PACKETS_PER_PASS = 2000  # bound a pass so keepalive and writes still get their turn
# A publish_sink pass keeps its messages in one list until the pass ends: at 2,000 SenML
# packs of ~2.4 kB that list raised ingest's peak RSS by ~15 MB; 200 costs no throughput.
SINK_PACKETS_PER_PASS = 200
# A sink pass that found some plain publishes but fewer than this waits `sink_linger_s`
# once and reads again (a consumer's choice): a trickle then comes in fewer, larger passes.
LINGER_BELOW = 32


class BufferedSocket:
    """Read-buffering proxy for a connected, non-blocking socket."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0

    def recv(self, bufsize: int) -> bytes:
        """Plain reads from the buffer. paho's own reader is replaced by `read_packet`, but
        anything else that reads must not bypass buffered bytes."""
        if self._pos >= len(self._buf):
            data: bytes = self._sock.recv(READ_CHUNK)  # raises BlockingIOError when empty
            if not data:
                return b""  # peer closed
            self._buf, self._pos = data, 0
        end = self._pos + bufsize
        out = self._buf[self._pos : end]
        self._pos = min(end, len(self._buf))
        return out

    def read_packet(self) -> tuple[int, bytes]:
        """One whole MQTT packet: (fixed-header byte, the rest after the length).

        Reads from the socket only when the buffer holds no whole packet; raises
        BlockingIOError when the socket has no more yet (a partial packet stays
        buffered), ConnectionResetError when the peer closed.
        """
        while True:
            packet = self._whole_packet(consume=True)
            if packet is not None:
                return packet
            data: bytes = self._sock.recv(READ_CHUNK)  # raises BlockingIOError when empty
            if not data:
                raise ConnectionResetError("connection closed by the broker")
            self._buf = self._buf[self._pos :] + data
            self._pos = 0

    def _whole_packet(self, *, consume: bool) -> tuple[int, bytes] | None:
        buf, pos, size = self._buf, self._pos, len(self._buf)
        if size - pos < 2:
            return None
        length, multiplier, i = 0, 1, pos + 1
        while True:  # MQTT "remaining length": 1 to 4 bytes, 7 bits each
            if i >= size:
                return None
            byte = buf[i]
            i += 1
            length += (byte & 0x7F) * multiplier
            if byte < 0x80:
                break
            multiplier *= 128
            if i - pos > 4:
                raise MalformedPacket("remaining length longer than 4 bytes")
        end = i + length
        if end > size:
            return None
        if consume:
            self._pos = end
        return buf[pos], buf[i:end]

    def pending(self) -> int:
        """Bytes of whole packets waiting in the buffer, plus what TLS has decrypted and
        not yet handed over. paho skips select() while this is non-zero, so a partial
        packet must count as nothing: select() waits for the rest."""
        tls = self._sock.pending() if isinstance(self._sock, ssl.SSLSocket) else 0
        if self._whole_packet(consume=False) is None:
            return int(tls)
        return len(self._buf) - self._pos + int(tls)

    def send(self, data: bytes) -> int:
        sent: int = self._sock.send(data)
        return sent

    def fileno(self) -> int:
        fd: int = self._sock.fileno()
        return fd

    def close(self) -> None:
        self._sock.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _in_packet(command: int, body: bytes) -> Any:
    """paho's incoming-packet record, as its own reader leaves it after a whole packet."""
    return {
        "command": command,
        "have_remaining": 1 if command else 0,
        "remaining_count": [],
        "remaining_mult": 1,
        "remaining_length": len(body),
        "packet": body if command else bytearray(b""),
        "to_process": 0,
        "pos": 0,
    }


_PRIVATE = frozenset({"packetType", "types", "names", "properties"})


class LeanProperties(Properties):
    """paho's Properties with its per-type tables shared instead of rebuilt per packet."""

    _tables: ClassVar[dict[int, tuple[Any, Any, Any]]] = {}

    def __init__(self, packetType: int) -> None:  # noqa: N803 - paho's own signature
        tables = self._tables.get(packetType)
        if tables is None:
            proto = Properties(packetType)  # type: ignore[no-untyped-call]
            tables = (proto.types, proto.names, proto.properties)
            self._tables[packetType] = tables
        # The tables are never mutated by paho, so sharing them is safe.
        object.__setattr__(self, "packetType", packetType)
        object.__setattr__(self, "types", tables[0])
        object.__setattr__(self, "names", tables[1])
        object.__setattr__(self, "properties", tables[2])

    def clear(self) -> None:
        for name in [k for k in self.__dict__ if k not in _PRIVATE]:
            delattr(self, name)


_install_lock = threading.Lock()
paho_decode_publish = paho_packet.decode_publish
_CONTENT_TYPE = 0x03  # MQTT v5 property identifier (section 3.3.2.3.9)
_FORBIDDEN_IN_UTF8 = ("\x00", "\ufeff")  # MQTT-1.5.4-2/-3; surrogates fail the decode


def lean_decode_publish(header: int, packet: bytes, protocol: MQTTProtocolVersion) -> Any:
    """paho's `decode_publish` for an MQTT v5 PUBLISH whose properties are none or a
    content type alone; anything else, malformed packets included, is paho's own."""
    if protocol != MQTTProtocolVersion.MQTTv5:
        return paho_decode_publish(header, packet, protocol)
    try:
        qos = (header & 0x06) >> 1
        slen = (packet[0] << 8) | packet[1]
        pos = 2 + slen
        topic = bytes(packet[2:pos])
        mid = 0
        if qos > 0:
            mid = (packet[pos] << 8) | packet[pos + 1]
            pos += 2
        props_len = packet[pos]  # a one-byte length (< 128); longer ones are paho's
        pos += 1
        props: Any = LeanProperties(PacketTypes.PUBLISH)
        if props_len >= 0x80 or len(topic) != slen or pos + props_len > len(packet):
            return paho_decode_publish(header, packet, protocol)
        if props_len:
            length = (packet[pos + 1] << 8) | packet[pos + 2]
            if packet[pos] != _CONTENT_TYPE or props_len != 3 + length:
                return paho_decode_publish(header, packet, protocol)
            value = bytes(packet[pos + 3 : pos + props_len]).decode("utf-8")
            if any(c in value for c in _FORBIDDEN_IN_UTF8):
                return paho_decode_publish(header, packet, protocol)
            object.__setattr__(props, "ContentType", value)  # paho's checks: done above
        return paho_packet.PublishPacket(
            dup=bool(header & 0x08),
            qos=qos,
            retain=bool(header & 0x01),
            topic=topic,
            mid=mid,
            properties=props,
            payload=bytes(packet[pos + props_len :]),
        )
    except (IndexError, UnicodeDecodeError):
        return paho_decode_publish(header, packet, protocol)


def install_lean_properties() -> None:
    """Make paho's packet decoder build LeanProperties and read PUBLISH packets with
    `lean_decode_publish` (idempotent, process-wide)."""
    with _install_lock:
        # paho's decoder looks the class up as a module global at each packet, and its
        # client looks decode_publish up in the module at each PUBLISH.
        if getattr(paho_packet, "Properties", None) is not LeanProperties:
            setattr(paho_packet, "Properties", LeanProperties)  # noqa: B010
        if paho_packet.decode_publish is not lean_decode_publish:
            setattr(paho_packet, "decode_publish", lean_decode_publish)  # noqa: B010


_PUBLISH_QOS1 = 0x32  # PUBLISH, QoS 1; the dup (0x08) and retain (0x01) bits masked off
_TYPE_AND_QOS = 0xF6

# (mid, topic, payload, content type or None), as paho's MQTTMessage would have them
FastPublish = tuple[int, str, bytes, str | None]
PublishSink = Callable[[list[FastPublish]], None]


def decode_qos1_publish(body: bytes, v5: bool) -> FastPublish | None:
    """A QoS 1 PUBLISH body (after the fixed header) -> what Pantau's consumers use, for
    the forms devices send: MQTT v5 with no properties or a content type alone, or
    3.1.1. None for anything else (other properties, a topic or content type that is
    not valid UTF-8, a malformed packet): paho's own path takes those."""
    try:
        slen = (body[0] << 8) | body[1]
        pos = 2 + slen
        if pos + 2 > len(body):
            return None
        topic = body[2:pos].decode("utf-8")
        mid = (body[pos] << 8) | body[pos + 1]
        pos += 2
        content_type = None
        if v5:
            props_len = body[pos]  # a one-byte length (< 128); longer ones are paho's
            pos += 1
            if props_len:
                end = pos + props_len
                if props_len >= 0x80 or end > len(body) or body[pos] != _CONTENT_TYPE:
                    return None
                if props_len != 3 + ((body[pos + 1] << 8) | body[pos + 2]):
                    return None
                content_type = body[pos + 3 : end].decode("utf-8")
                if any(c in content_type for c in _FORBIDDEN_IN_UTF8):
                    return None
                pos = end
        return mid, topic, body[pos:], content_type
    except (IndexError, UnicodeDecodeError):
        return None


class BufferedClient(FailoverClient):
    # Set by a consumer with a bounded inbox: called before each sink read pass, True
    # leaves the socket unread for now (it may wait a little for room first). TCP then
    # holds the rest at the broker, which Receive Maximum alone does not: mosquitto 2.0.11
    # with max_inflight_messages 0 was seen sending a client 15,000 messages past its 2,000.
    hold_reading: Callable[[], bool] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        install_lean_properties()
        super().__init__(*args, **kwargs)
        # Set by a consumer that takes QoS 1 messages in lists (see the module's doc):
        # on_message and message_callback_add then see no QoS 1 message of those forms.
        self.publish_sink: PublishSink | None = None
        # > 0: a sink pass that found few publishes waits this long for more before it
        # hands them over. Each pass costs the network thread a select() and a wake-up,
        # and the consumer one more; at 2,000 msg/s from many devices a pass otherwise
        # found ~2 messages (~900 wake-ups/s). Something queued to send ends the wait,
        # and a pass does not wait while a publish of ours awaits its PUBACK (its sender
        # may be waiting for it: the broker's answer would sit unread meanwhile).
        self.sink_linger_s = 0.0

    def _packet_read(self) -> MQTTErrorCode:
        """paho's packet reader, fed whole packets from the buffer (paho reads the fixed
        header a byte per recv()); what follows the read is paho's own handling."""
        sock = self._sock
        if not isinstance(sock, BufferedSocket):
            rc: MQTTErrorCode = super()._packet_read()
            return rc
        try:
            command, body = sock.read_packet()
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            # Nothing to read yet. On TLS a readable socket may hold only a record that
            # is not application data (a TLS 1.3 session ticket): SSLWantReadError, an
            # OSError but not a lost connection.
            return MQTTErrorCode.MQTT_ERR_AGAIN
        except MalformedPacket:
            return MQTTErrorCode.MQTT_ERR_PROTOCOL
        except OSError:
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        with self._msgtime_mutex:
            self._last_bytes_received = time_func()
        return self._handle_packet(command, body)

    def _handle_packet(self, command: int, body: bytes) -> MQTTErrorCode:
        """paho's handling of one whole packet."""
        self._in_packet = _in_packet(command, body)
        try:
            rc: MQTTErrorCode = self._packet_handle()
        except MalformedPacket:
            rc = MQTTErrorCode.MQTT_ERR_PROTOCOL
        self._in_packet = _in_packet(0, b"")
        return rc

    def _create_socket(self) -> Any:
        return BufferedSocket(super()._create_socket())

    def ack_many(self, mids: Sequence[int]) -> MQTTErrorCode:
        """PUBACK many QoS 1 messages with one queued write instead of one per message.

        Same bytes paho's `ack()` sends (2-byte PUBACK, success reason implied), in the
        given order, which must be the order the messages arrived (MQTT 4.6).
        """
        if not mids:
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        packets = b"".join(_PUBACK.pack(mqtt.PUBACK, 2, mid) for mid in mids)
        return self._packet_queue(mqtt.PUBACK, packets, 0, 0)

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        sink, sock = self.publish_sink, self._sock
        if sink is not None and isinstance(sock, BufferedSocket):
            hold = self.hold_reading
            # While a PINGREQ or one of our own QoS 1 publishes awaits its answer, read
            # anyway: its PINGRESP or PUBACK is behind the queued publishes. Unread, the
            # PINGRESP would time the connection out, and the PUBACK would stall a
            # consumer that waits for it (ingest's dead letters) while its inbox stays
            # full, until the next keepalive's PINGREQ.
            if hold is not None and not self._ping_t and not self._awaiting_puback() and hold():
                return MQTTErrorCode.MQTT_ERR_SUCCESS
            return self._read_pass(sink, sock)
        rc = super().loop_read(max_packets)
        for _ in range(PACKETS_PER_PASS):
            sock = self._sock
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or not isinstance(sock, BufferedSocket):
                break
            if sock.pending() <= 0:
                break
            rc = super().loop_read(max_packets)
        return rc

    def _awaiting_puback(self) -> bool:
        """A QoS 1 publish of ours is unacknowledged: its PUBACK is (or will be) in the
        socket, and its sender may be waiting for it, so neither a held socket nor a
        linger may leave it unread. paho keeps such messages in `_out_messages` until
        their PUBACK; a plain truth test of the dict needs no lock."""
        return bool(self._out_messages)

    def _linger(self, seconds: float) -> None:
        """Wait for more to read, but no longer than something to send has waited: paho's
        socketpair byte (a publish or PUBACK queued by another thread) ends the wait, and
        paho's loop, which reads that byte, writes it next."""
        wake = self._sockpairR
        if wake is None:
            time.sleep(seconds)
        else:
            select.select([wake], [], [], seconds)

    def _read_pass(self, sink: PublishSink, sock: BufferedSocket) -> MQTTErrorCode:
        """Up to SINK_PACKETS_PER_PASS packets: plain QoS 1 PUBLISHes go to `sink` in one
        list, anything else to paho's handler once the sink has what came before it."""
        v5 = self._protocol == mqtt.MQTTv5
        batch: list[FastPublish] = []
        rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        read = False
        linger, taken = self.sink_linger_s, 0
        for _ in range(SINK_PACKETS_PER_PASS):
            try:
                command, body = sock.read_packet()
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                if linger > 0 and 0 < taken < LINGER_BELOW and not self._awaiting_puback():
                    self._linger(linger)  # once: then whatever came is read
                    linger = 0.0
                    continue
                break  # nothing more yet (see _packet_read)
            except MalformedPacket:
                rc = MQTTErrorCode.MQTT_ERR_PROTOCOL
                break
            except OSError:
                rc = MQTTErrorCode.MQTT_ERR_CONN_LOST
                break
            read = True
            if command & _TYPE_AND_QOS == _PUBLISH_QOS1:
                fields = decode_qos1_publish(body, v5)
                if fields is not None:
                    batch.append(fields)
                    taken += 1
                    continue
            if batch:
                sink(batch)
                batch = []
            rc = self._handle_packet(command, body)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or self._sock is None:
                break  # a DISCONNECT from the broker, say: paho has closed the socket
        if batch:
            sink(batch)
        if read:
            with self._msgtime_mutex:
                self._last_bytes_received = time_func()
        if rc > 0:  # as paho's loop_read: an error ends the connection, AGAIN does not
            handled: MQTTErrorCode = self._loop_rc_handle(rc)
            return handled
        if self._sock is None:
            return MQTTErrorCode.MQTT_ERR_NO_CONN
        return MQTTErrorCode.MQTT_ERR_SUCCESS
