"""Broker identity against a real Mosquitto started with the generated password file and
ACL: who may connect, publish and read, what a removal takes away, and which files make
Pantau refuse to start the broker at all."""

from __future__ import annotations

import secrets
import ssl
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import SecretStr

from ingest.service import IngestService
from pantau.broker.accounts import Account, accounts_for
from pantau.broker.files import write_files
from pantau.broker.passwords import derive_password
from pantau.broker.retire import retire
from pantau.broker.tls import make_tls
from pantau.city import City, load_city
from pantau.errors import ConfigErrors
from pantau.influx.query import InfluxQL
from pantau.influx.writers import make_writer
from pantau.local.mosquitto import Mosquitto, MosquittoOptions
from pantau.local.ports import free_port, free_ports
from pantau.mqtt import apply_credentials, connect_properties
from pantau.settings import MqttSettings, Settings
from pantau.topics import Topics
from pantau.wire import Sample, encode_native
from simulators.publisher import gateway_plans, run_scenario
from simulators.scenario import find_scenario, load_scenario
from testkit.mqtt import wait_for

pytestmark = pytest.mark.integration

NOT_AUTHORIZED = 135  # MQTT v5 reason code, PUBACK / SUBACK / CONNACK
BAD_CREDENTIALS = 134


@dataclass
class Secured:
    broker: Mosquitto
    directory: Path
    secret: str
    accounts: list[Account]
    mqtt: MqttSettings  # host, port and root; no credentials

    def login(self, username: str, password: str | None = None) -> MqttSettings:
        pw = derive_password(self.secret, username) if password is None else password
        return self.mqtt.model_copy(update={"username": username, "password": SecretStr(pw)})

    def regenerate(self, accounts: list[Account]) -> None:
        self.accounts = accounts
        write_files(self.directory, accounts, self.secret)


@pytest.fixture(scope="module")
def city() -> City:
    return load_city()


@pytest.fixture
def secured(tmp_path: Path, city: City, topic_root: str) -> Iterator[Secured]:
    secret = secrets.token_hex(32)
    accounts = accounts_for(city, Topics(topic_root))
    passwd, acl = write_files(tmp_path / "auth", accounts, secret)
    plain, tls_port = free_ports(2)
    broker = Mosquitto(
        tmp_path / "broker",
        plain,
        options=MosquittoOptions(
            password_file=passwd,
            acl_file=acl,
            tls=make_tls(tmp_path / "tls"),
            tls_port=tls_port,
        ),
    )
    broker.start()
    mqtt_settings = MqttSettings(host=broker.host, port=broker.port, root=topic_root)
    yield Secured(broker, tmp_path / "auth", secret, accounts, mqtt_settings)
    broker.stop()


class Client:
    """A v5 client that records what the broker answered."""

    def __init__(
        self, settings: MqttSettings, client_id: str | None = None, *, session_s: int = 0
    ) -> None:
        self.connack: ReasonCode | None = None
        self.session_present = False
        self.acks: dict[int, ReasonCode] = {}
        self.granted: list[ReasonCode] = []
        self.messages: list[mqtt.MQTTMessage] = []
        self.c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"t-{uuid.uuid4().hex[:10]}",
            protocol=mqtt.MQTTv5,
        )
        apply_credentials(self.c, settings)
        self.c.on_connect = self._on_connect
        self.c.on_publish = lambda _c, _u, mid, rc, _p: self.acks.__setitem__(mid, rc)
        self.c.on_subscribe = lambda _c, _u, _m, codes, _p: self.granted.extend(codes)
        self.c.on_message = lambda _c, _u, m: self.messages.append(m)
        self.c.connect(
            settings.host,
            settings.port,
            clean_start=session_s == 0,
            properties=connect_properties(session_s, 100),
        )
        self.c.loop_start()
        wait_for(lambda: self.connack is not None, 10, "a CONNACK")

    def _on_connect(
        self, _c: mqtt.Client, _u: object, flags: mqtt.ConnectFlags, rc: ReasonCode, _p: object
    ) -> None:
        self.connack, self.session_present = rc, bool(flags.session_present)

    @property
    def refused(self) -> bool:
        return self.connack is not None and self.connack.is_failure

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> ReasonCode:
        info = self.c.publish(topic, payload, qos=1, retain=retain)
        wait_for(lambda: info.mid in self.acks, 10, "a PUBACK")
        return self.acks[info.mid]

    def subscribe(self, topic: str) -> ReasonCode:
        self.c.subscribe(topic, qos=1)
        wait_for(lambda: bool(self.granted), 10, "a SUBACK")
        return self.granted.pop()

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def reading(device_id: str, value: float) -> bytes:
    now = datetime.now(UTC).replace(microsecond=0)
    return encode_native(device_id, 1, now, [Sample("water_level", value, "cm")])


def stored(settings: Settings, device_id: str) -> int:
    with InfluxQL.from_settings(settings.influx) as influx:
        rows = influx.rows(f"SELECT count(value) FROM water_level WHERE device = '{device_id}'")
    return sum(int(str(r["count"])) for r in rows)


def test_a_device_cannot_publish_as_another_and_nothing_is_stored(
    secured: Secured, settings: Settings, city: City
) -> None:
    a, b = sorted(d.id for d in city.devices.values() if d.kind == "water_level_station")[:2]
    topics = Topics(secured.mqtt.root)
    ingest_settings = settings.model_copy(update={"mqtt": secured.login("pantau-ingest")})
    ingest = IngestService(ingest_settings, city, make_writer(settings.influx))
    ingest.start()
    device = Client(secured.login(a))
    try:
        assert ingest.wait_subscribed(10)
        assert not device.refused
        assert device.publish(topics.sensor_up(b), reading(b, 99.0)).value == NOT_AUTHORIZED
        assert not device.publish(topics.sensor_up(a), reading(a, 42.0)).is_failure
        wait_for(lambda: stored(settings, a) == 1, 20, "device A's own reading stored")
        time.sleep(0.5)  # B's would have been in the same flush
        assert stored(settings, b) == 0
    finally:
        device.close()
        ingest.stop()


def test_the_tls_listener_serves_verified_clients_only(
    secured: Secured, settings: Settings, city: City, tmp_path: Path
) -> None:
    tls = secured.broker.options
    assert tls.tls is not None and tls.tls_port is not None
    over_tls = secured.login("pantau-ingest").model_copy(
        update={"port": tls.tls_port, "tls_ca": tls.tls.ca_cert}
    )
    ingest = IngestService(
        settings.model_copy(update={"mqtt": over_tls}), city, make_writer(settings.influx)
    )
    ingest.start()
    try:
        assert ingest.wait_subscribed(10)  # the service itself, over TLS
        device_id = sorted(city.devices)[0]
        device = Client(
            secured.login(device_id).model_copy(
                update={"port": tls.tls_port, "tls_ca": tls.tls.ca_cert}
            )
        )
        assert not device.refused
        topic = Topics(secured.mqtt.root).sensor_up(device_id)
        assert not device.publish(topic, reading(device_id, 12.5)).is_failure
        wait_for(lambda: stored(settings, device_id) == 1, 20, "the reading sent over TLS")
        device.close()
    finally:
        ingest.stop()
    # A client that trusts another CA does not complete the handshake.
    stranger = make_tls(tmp_path / "other-ca")
    with pytest.raises(ssl.SSLError):
        Client(
            secured.login(device_id).model_copy(
                update={"port": tls.tls_port, "tls_ca": stranger.ca_cert}
            )
        )


def test_unknown_devices_wrong_passwords_and_anonymous_clients_are_refused(
    secured: Secured, city: City
) -> None:
    device = next(iter(sorted(city.devices)))
    for settings in (
        secured.login("ghost-device-01", "x" * 43),
        secured.login(device, derive_password("another-secret", device)),
        secured.mqtt,  # anonymous
    ):
        client = Client(settings)
        assert client.refused, (settings.username, client.connack)
        assert client.connack is not None and client.connack.value in (
            BAD_CREDENTIALS,
            NOT_AUTHORIZED,
        )
        client.close()


def test_accounts_read_and_write_only_what_their_stage_needs(secured: Secured, city: City) -> None:
    topics = Topics(secured.mqtt.root)
    device_id = next(iter(sorted(city.devices)))
    device = Client(secured.login(device_id))
    crew = Client(secured.login("bpbd-barat-siang"))
    rules = Client(secured.login("pantau-rules"))
    try:
        device.subscribe(f"{topics.root}/#")
        crew.subscribe(topics.crew_alerts("bpbd-barat-siang"))
        crew.subscribe(topics.crew_alerts("bpbd-utara-siang"))  # another crew's alerts
        assert not rules.publish(topics.crew_alerts("bpbd-barat-siang"), b"mine").is_failure
        assert not rules.publish(topics.crew_alerts("bpbd-utara-siang"), b"theirs").is_failure
        # rules may not forge readings or dead letters; a crew may not raise alerts
        assert rules.publish(topics.sensor_up(device_id), b"{}").value == NOT_AUTHORIZED
        assert crew.publish(topics.crew_alerts("bpbd-barat-siang"), b"x").value == NOT_AUTHORIZED
        wait_for(lambda: len(crew.messages) >= 1, 10, "the crew's own alert")
        time.sleep(0.5)
        assert [m.payload for m in crew.messages] == [b"mine"]
        assert device.messages == []  # a device reads nothing
    finally:
        for c in (device, crew, rules):
            c.close()


def test_a_removed_account_loses_access_its_retained_status_and_its_queued_alerts(
    secured: Secured, city: City
) -> None:
    topics = Topics(secured.mqtt.root)
    device_id = next(iter(sorted(city.devices)))
    crew_id = "bpbd-barat-malam"
    device = Client(secured.login(device_id), device_id)
    assert not device.publish(topics.device_status(device_id), b"online", retain=True).is_failure
    # The crew's phone keeps a persistent session; an alert waits in it while away.
    phone = Client(secured.login(crew_id), crew_id, session_s=3600)
    phone.subscribe(topics.crew_alerts(crew_id))
    phone.close()
    rules = Client(secured.login("pantau-rules"))
    assert not rules.publish(topics.crew_alerts(crew_id), b"queued alert").is_failure
    rules.close()

    removed = {device_id, crew_id}
    retire(sorted(removed), secured.mqtt, secured.secret)
    secured.regenerate([a for a in secured.accounts if a.username not in removed])
    secured.broker.reload()
    time.sleep(0.5)

    # Retiring took over the device's session, which closed its live connection; it
    # cannot log in again.
    wait_for(lambda: not device.c.is_connected(), 10, "the old connection closed")
    device.close()
    assert Client(secured.login(device_id), device_id).refused
    # Its retained status is gone for every reader.
    ingest = Client(secured.login("pantau-ingest"))
    ingest.subscribe(topics.device_status(device_id))
    time.sleep(0.5)
    assert ingest.messages == []
    ingest.close()
    # Given back its account, the crew finds no old session and no queued alert.
    secured.regenerate(accounts_for(city, topics))
    secured.broker.reload()
    time.sleep(0.5)
    phone = Client(secured.login(crew_id), crew_id, session_s=3600)
    time.sleep(0.5)
    assert not phone.refused and not phone.session_present
    assert phone.messages == []
    phone.close()


@pytest.mark.parametrize(
    ("which", "text", "problem"),
    [
        ("passwd", "", "no accounts"),
        ("passwd", "pantau-ingest:hunter2\n", "not a mosquitto $7$ password hash"),
        ("passwd", "a/b:$7$101$AAAA$AAAA\n", "expected username:$7$hash"),
        ("acl", "", "no rules"),
        ("acl", "topic read #\nuser pantau-ingest\ntopic read x\n", "applies to anonymous"),
        ("acl", "user pantau-ingest\ntopic read a/#/b\n", "not a topic filter"),
        ("acl", "user pantau-ingest\nallow everything\n", "not an ACL line"),
    ],
)
def test_a_broken_password_file_or_acl_refuses_to_start_the_broker(
    tmp_path: Path, city: City, which: str, text: str, problem: str
) -> None:
    passwd, acl = write_files(tmp_path / "auth", accounts_for(city, Topics("t")), "s" * 40)
    (passwd if which == "passwd" else acl).write_text(text, encoding="utf-8")
    broker = Mosquitto(
        tmp_path / "broker",
        free_port(),
        options=MosquittoOptions(password_file=passwd, acl_file=acl),
    )
    with pytest.raises(ConfigErrors) as err:
        broker.start()
    assert problem in str(err.value)
    assert f"{which}:" in str(err.value)  # names the file (and the line where there is one)
    assert not broker.running


def test_the_fleet_through_a_secured_broker_each_gateway_on_its_own_account(
    secured: Secured, settings: Settings, city: City
) -> None:
    """Every valid reading arrives; what the broker refuses is exactly the traffic sent
    on topics that are not the gateway's (unknown devices, foreign or broken topics)."""
    scenario = replace(
        load_scenario(find_scenario("storm-karawaci"), city), duration_s=600, malformed_rate=0.05
    )
    ingest_settings = settings.model_copy(update={"mqtt": secured.login("pantau-ingest")})
    ingest = IngestService(ingest_settings, city, make_writer(settings.influx))
    ingest.start()
    try:
        assert ingest.wait_subscribed(10)
        report = run_scenario(city, scenario, secured.mqtt, speed=None, login=secured.login)
        wait_for(lambda: total_stored(settings) >= report.valid_readings, 60, "every valid reading")
    finally:
        ingest.stop()
    assert report.completed and report.acknowledged > 0
    assert total_stored(settings) == report.valid_readings
    topics = Topics(secured.mqtt.root)
    allowed = {
        p.id: {
            t for d in (*p.devices, p.id) for t in (topics.sensor_up(d), topics.device_status(d))
        }
        for p in gateway_plans(city)
    }
    gateway_of = {d: p.id for p in gateway_plans(city) for d in p.devices}
    foreign = [m for m in report.malformed if m.topic not in allowed[gateway_of[m.device_id]]]
    assert foreign, "the scenario should try foreign topics"
    assert report.failed == len(foreign)


def total_stored(settings: Settings) -> int:
    with InfluxQL.from_settings(settings.influx) as influx:
        rows = influx.rows("SELECT count(value) FROM /.*/")
    return sum(int(str(r["count"])) for r in rows)
