"""`pantau bridge sparkplug`: Sparkplug B edge nodes -> Pantau, as a host application.

Per edge node (group, node) it keeps what the births said: the metric names behind the
aliases (node and device metrics share one alias space), the birth's `bdSeq`, and the
message sequence number `seq` (0..255, one counter over all the node's messages).

- NBIRTH / DBIRTH: aliases (re)learnt; the mapped registry device's retained status
  becomes `online`; the birth's values are readings.
- NDATA / DDATA: each metric by name or alias -> the catalogue metric the device
  kind's map names (`metrics:` in config/sparkplug.yaml) -> a SenML pack on
  `{root}/sensors/{device}/up`. An alias no birth defined, or data from a node whose
  birth the bridge has not seen, is dead-lettered (`unknown_alias`) and triggers a
  rebirth request (NCMD `Node Control/Rebirth`, at most one per node per
  `rebirth_every_s`).
- NDEATH (with the birth's bdSeq; an older death is stale and ignored): the node and
  all its devices `offline`. DDEATH: that device `offline`.
- a `seq` that is not the last + 1 (mod 256): a data-quality event in InfluxDB
  (`data_quality`, kind `seq_gap`, cause `sparkplug`) with the messages missed.

Metrics the kind does not map, and edge nodes and Sparkplug devices the config does
not name, are left alone: a plant's broker carries far more than Pantau needs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from bridges import sparkplug_payload as sp
from bridges.mapping import KindFields, check_fields, mapped
from bridges.outputs import Value, gap_line, senml_pack, status
from bridges.relay import Publish, Translation
from bridges.source import Presence, SourceBroker
from pantau.city import City
from pantau.deadletter import Rejection
from pantau.devices import Device
from pantau.errors import ConfigError, ConfigErrors, RejectedInput
from pantau.sparkplug_b_pb2 import Payload
from pantau.topics import Topics
from pantau.yamlconf import load_model

MAX_MESSAGE_BYTES = 256 * 1024


class EdgeNode(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    group: str = Field(min_length=1)
    node: str = Field(min_length=1)
    device: str | None = Field(default=None, description="registry device of the node's metrics")
    devices: dict[str, str] = Field(
        default_factory=dict, description="Sparkplug device id -> registry device"
    )


class SparkplugFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    broker: SourceBroker
    groups: list[str] = Field(default=["+"], min_length=1, description="group ids to follow")
    rebirth_every_s: float = Field(default=10.0, gt=0)
    host_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="publish the host application's STATE as this id (edge nodes that "
        "wait for their primary host publish their births once it is online)",
    )
    nodes: list[EdgeNode] = Field(min_length=1)
    metrics: KindFields = Field(description="device kind -> Sparkplug metric name -> metric")


def load_sparkplug(path: Path, city: City) -> SparkplugFile:
    config, doc = load_model(path, SparkplugFile)
    errors: list[ConfigError] = check_fields(config.metrics, city.catalogue, doc, "metrics")
    seen: set[tuple[str, str]] = set()
    for i, node in enumerate(config.nodes):
        if (node.group, node.node) in seen:
            errors.append(doc.error(("nodes", i), f"{node.group}/{node.node} given twice"))
        seen.add((node.group, node.node))
        named = [(("nodes", i, "device"), node.device)] + [
            (("nodes", i, "devices", k), v) for k, v in node.devices.items()
        ]
        errors += [
            doc.error(loc, f"{device!r} is not in the registry")
            for loc, device in named
            if device is not None and device not in city.devices
        ]
    if errors:
        raise ConfigErrors(errors)
    return config


@dataclass(slots=True)
class _Node:
    """What the edge node's births said."""

    seq: int
    bd_seq: int | None
    last_at: datetime  # when its last message arrived
    aliases: dict[int, tuple[str, int | None]] = field(default_factory=dict)  # -> name, type
    datatypes: dict[str, int | None] = field(default_factory=dict)  # name -> datatype
    devices: set[str] = field(default_factory=set)  # Sparkplug devices born


class SparkplugTranslator:
    def __init__(self, config: SparkplugFile, city: City, topics: Topics) -> None:
        self._config = config
        self._topics = topics
        self._filters = sp.filters(config.groups)
        self._registry: dict[tuple[str, str, str | None], Device] = {}
        for n in config.nodes:
            if n.device is not None:
                self._registry[n.group, n.node, None] = city.devices[n.device]
            for sp_device, device_id in n.devices.items():
                self._registry[n.group, n.node, sp_device] = city.devices[device_id]
        # State is kept for the configured edge nodes only: bounded, whoever publishes.
        self._configured = {(n.group, n.node) for n in config.nodes}
        self._nodes: dict[tuple[str, str], _Node] = {}
        self._rebirth_asked: dict[tuple[str, str], datetime] = {}
        self.ignored = 0  # messages of edge nodes the config does not name
        self.gaps = 0
        self.rebirths = 0

    @property
    def filters(self) -> list[str]:
        return self._filters

    def translate(self, topic: str, payload: bytes, received_at: datetime) -> Translation:
        m = _In(topic, payload, received_at)
        try:
            if len(payload) > MAX_MESSAGE_BYTES:
                raise RejectedInput("too_large", f"{len(payload)} bytes, limit {MAX_MESSAGE_BYTES}")
            m.where = sp.parse_topic(topic)
            m.message = sp.decode(payload)
        except RejectedInput as err:
            m.refuse(err)
            return m.out
        where = m.where
        if where.node_key not in self._configured:
            self.ignored += 1  # another system's edge node on the same broker
            return m.out
        if where.kind == "NDEATH":
            self._death(m)
            return m.out
        if where.kind == "NBIRTH":
            self._nodes[where.node_key] = _Node(
                seq=m.message.seq, bd_seq=_bd_seq(m.message), last_at=received_at
            )
        node = self._nodes.get(where.node_key)
        if node is None:  # data or a device birth from a node born before we listened
            m.refuse(
                RejectedInput("unknown_alias", f"no NBIRTH seen from {where.group}/{where.node}")
            )
            self._ask_rebirth(where, received_at, m.out)
            return m.out
        if where.kind != "NBIRTH":
            self._check_seq(node, m)
        device = self._registry.get((where.group, where.node, where.device))
        if where.kind == "DDEATH":
            node.devices.discard(where.device or "")
            if device is not None:
                m.out.publishes.append(self._offline(device, where, m))
            return m.out
        if where.kind in ("NBIRTH", "DBIRTH"):
            self._birth(where, node, m.message)
            if device is not None:
                m.out.publishes.append(
                    status(
                        self._topics,
                        device,
                        "online",
                        _time_or_receipt(m),
                        via=f"{where.group}/{where.node}",
                        reason=where.kind,
                    )
                )
        self._readings(node, device, m)
        return m.out

    # --- births and deaths ------------------------------------------------------------
    def _birth(self, where: sp.SparkplugTopic, node: _Node, message: Payload) -> None:
        if where.device is not None:
            node.devices.add(where.device)
        for metric in message.metrics:
            datatype = metric.datatype if metric.HasField("datatype") else None
            node.datatypes[_scoped(where.device, metric.name)] = datatype
            if metric.HasField("alias"):
                node.aliases[metric.alias] = (metric.name, datatype)

    def _death(self, m: _In) -> None:
        where = m.where
        node = self._nodes.get(where.node_key)
        bd_seq = _bd_seq(m.message)
        if node is not None and None not in (bd_seq, node.bd_seq) and bd_seq != node.bd_seq:
            return  # the will of an earlier session: the node is already back
        self._nodes.pop(where.node_key, None)
        for (group, name, _), device in self._registry.items():
            if (group, name) == where.node_key:
                m.out.publishes.append(self._offline(device, where, m))

    def _offline(self, device: Device, where: sp.SparkplugTopic, m: _In) -> Publish:
        return status(
            self._topics,
            device,
            "offline",
            _time_or_receipt(m),
            via=f"{where.group}/{where.node}",
            reason=where.kind,
        )

    # --- data -------------------------------------------------------------------------
    def _readings(self, node: _Node, device: Device | None, m: _In) -> None:
        where, message = m.where, m.message
        values: list[Value] = []
        fields = self._config.metrics.get(device.kind, {}) if device is not None else {}
        unknown = []
        for metric in message.metrics:
            if metric.name:
                name = metric.name
                datatype = node.datatypes.get(_scoped(where.device, name))
            elif metric.HasField("alias") and metric.alias in node.aliases:
                name, datatype = node.aliases[metric.alias]
            else:
                unknown.append(str(metric.alias))
                continue
            if name not in fields:
                continue
            try:
                raw = sp.value_of(metric, datatype)
                value = None if raw is None else mapped(fields, name, raw)
                if value is not None:
                    at = sp.when(metric, message, m.received_at)
                    values.append(Value(value.metric, value.value, value.unit, at))
            except RejectedInput as err:
                m.refuse(RejectedInput(err.reason, f"metric {name!r}: {err.detail}"))
        if unknown:
            m.refuse(
                RejectedInput(
                    "unknown_alias",
                    f"alias {', '.join(unknown[:10])} not in the births of "
                    f"{where.group}/{where.node}",
                )
            )
            self._ask_rebirth(where, m.received_at, m.out)
        if values and device is not None:
            first = min(v.time for v in values if v.time is not None)
            m.out.publishes.append(senml_pack(self._topics, device.id, first, values))

    def _check_seq(self, node: _Node, m: _In) -> None:
        message, where = m.message, m.where
        if not message.HasField("seq"):
            return
        expected = (node.seq + 1) % 256
        if message.seq != expected:
            self.gaps += 1
            subject = self._registry.get((where.group, where.node, None))
            m.out.lines.append(
                gap_line(
                    subject.id if subject is not None else f"{where.group}/{where.node}",
                    "seq_gap",
                    "sparkplug",
                    missing=(message.seq - expected) % 256,
                    after=node.seq,
                    next_=message.seq,
                    since=node.last_at,
                    when=m.received_at,
                )
            )
        node.seq, node.last_at = message.seq % 256, m.received_at

    def _ask_rebirth(self, where: sp.SparkplugTopic, now: datetime, out: Translation) -> None:
        last = self._rebirth_asked.get(where.node_key)
        if last is not None and now - last < timedelta(seconds=self._config.rebirth_every_s):
            return
        self._rebirth_asked[where.node_key] = now
        self.rebirths += 1
        out.commands.append(
            Publish(f"{sp.NAMESPACE}/{where.group}/NCMD/{where.node}", sp.rebirth_request(now))
        )


@dataclass(slots=True)
class _In:
    """One message being translated, and what it has become so far."""

    topic: str
    payload: bytes
    received_at: datetime
    where: sp.SparkplugTopic = field(default_factory=lambda: sp.SparkplugTopic("", "", "", None))
    message: Payload = field(default_factory=Payload)
    out: Translation = field(default_factory=Translation)

    def refuse(self, err: RejectedInput) -> None:
        self.out.rejections.append(
            Rejection(err.reason, err.detail, self.topic, self.payload, self.received_at)
        )


def _time_or_receipt(m: _In) -> datetime:
    try:
        return sp.when(m.message, m.message, m.received_at)
    except RejectedInput:
        return m.received_at


def host_presence(config: SparkplugFile, now: datetime) -> Presence | None:
    """Sparkplug 3.0 host STATE: `spBv1.0/STATE/{host_id}`, retained JSON; the will
    carries the birth's timestamp."""
    if config.host_id is None:
        return None
    ms = int(now.timestamp() * 1000)
    return Presence(
        f"{sp.NAMESPACE}/STATE/{config.host_id}",
        json.dumps({"online": True, "timestamp": ms}).encode(),
        json.dumps({"online": False, "timestamp": ms}).encode(),
    )


def _scoped(device: str | None, name: str) -> str:
    return f"{device or ''}\0{name}"


def _bd_seq(message: Payload) -> int | None:
    for metric in message.metrics:
        if metric.name == sp.BD_SEQ and metric.WhichOneof("value") in ("int_value", "long_value"):
            return metric.long_value if metric.HasField("long_value") else metric.int_value
    return None
