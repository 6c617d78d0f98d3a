"""Service settings from the environment (`PANTAU_*`), with embedded defaults for the demo.

Nested values use a double underscore: `PANTAU_INFLUX__URL`, `PANTAU_MQTT__PORT`.
"""

from __future__ import annotations

import hashlib
import os
import socket
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from pantau.devices import default_config_dir
from pantau.secrecy import weakness


class InfluxApi(StrEnum):
    V1 = "v1"  # POST /write + InfluxQL (InfluxDB 1.x; Debian's influxdb package)
    V2 = "v2"  # /api/v2/write through influxdb-client (InfluxDB 2.x / 3.x)


class MqttProtocol(StrEnum):
    V5 = "5"
    V311 = "3.1.1"  # what NATS' MQTT listener and most field devices speak


class MqttSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="host:port of every broker node, tried in turn when one fails "
        "(PANTAU_MQTT__HOSTS=a:1883,b:1883); empty: host and port",
    )
    protocol: MqttProtocol = Field(
        default=MqttProtocol.V5,
        description="MQTT version of every Pantau client; 3.1.1 drops the v5-only "
        "features (docs/operations.md#brokers)",
    )
    username: str | None = None
    password: SecretStr | None = None
    root: str = Field(default="pantau", description="topic root")
    keepalive_s: int = Field(default=30, ge=5)
    tls_ca: Path | None = Field(
        default=None, description="CA certificate: connect with TLS and verify the broker"
    )

    @field_validator("hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):  # the environment's comma-separated form
            return [h.strip() for h in value.split(",") if h.strip()]
        return value

    @field_validator("hosts")
    @classmethod
    def _check_hosts(cls, value: list[str]) -> list[str]:
        for address in value:
            parse_address(address)
        return value

    def describe(self) -> str:
        """For start-up logs: `a:1883,b:1883 (MQTT 3.1.1)`."""
        nodes = ",".join(f"{h}:{p}" for h, p in self.addresses())
        return f"{nodes} (MQTT {self.protocol.value})"

    def addresses(self) -> list[tuple[str, int]]:
        """The broker nodes in the order clients try them."""
        if not self.hosts:
            return [(self.host, self.port)]
        return [parse_address(a, self.port) for a in self.hosts]


def parse_address(address: str, default_port: int = 1883) -> tuple[str, int]:
    """`host:port`, `host` or `[v6 address]:port` -> (host, port); ValueError if not."""
    host, sep, port_text = address.rpartition(":")
    if not sep or (host.startswith("[") != host.endswith("]")) or ("]" in port_text):
        host, port_text = address, ""  # no port, or a bare IPv6 address
    host = host.strip("[]")
    if not host or any(c.isspace() for c in host):
        raise ValueError(f"broker address {address!r}: expected host:port")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"broker address {address!r}: port must be 1..65535")
    return host, int(port_text)


class InfluxSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    api: InfluxApi = InfluxApi.V1
    url: str = "http://127.0.0.1:8086"
    database: str = Field(default="pantau", description="v1 database (v2: bucket)")
    retention_policy: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    org: str = Field(default="pantau", description="v2 only")
    token: SecretStr | None = Field(default=None, description="v2 only")
    timeout_s: float = Field(default=10.0, gt=0)
    backup_address: str = Field(
        default="127.0.0.1:8088",
        description="influxd's backup/restore RPC address (1.x `bind-address`), for "
        "`pantau backup` / `pantau restore`",
    )

    @model_validator(mode="after")
    def _v2_needs_token(self) -> InfluxSettings:
        if self.api is InfluxApi.V2 and self.token is None:
            raise ValueError("influx.api=v2 needs influx.token (PANTAU_INFLUX__TOKEN)")
        return self


class IngestSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    client_id: str = Field(default="pantau-ingest", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    partitions: int = Field(
        default=0,
        ge=0,
        le=64,
        description="0: one ingest, one persistent session named client_id. N: N "
        "partition sessions {client_id}-p{i} in the shared subscription "
        "$share/{client_id}/..., each with its own spool, leased to the live ingest "
        "replicas through the SQL store (database_url): run as many replicas as you like, "
        "with the same N (ingest.partitions)",
    )
    batch_max_points: int = Field(default=5000, ge=1)
    batch_max_delay_s: float = Field(default=0.2, gt=0)
    batch_quiet_s: float = Field(
        default=0.01,
        gt=0,
        description="a batch is spooled once no message has come for this long and for 2 "
        "of the usual gaps between arrivals (the burst is over), at the latest "
        "batch_max_delay_s after its first message",
    )
    max_future_skew_s: float = Field(default=300.0, ge=0, description="device clocks ahead")
    max_age_s: float = Field(default=7 * 86400.0, gt=0, description="oldest accepted reading")
    session_expiry_s: int = Field(default=7 * 86400, ge=0)
    max_payload_bytes: int = Field(default=256 * 1024, ge=64)
    receive_maximum: int = Field(
        default=20000,
        ge=1,
        le=65535,
        description="unacknowledged QoS 1 messages the broker may send (MQTT v5 flow control)",
    )
    # While full, the network thread still reads when a dead letter awaits its PUBACK
    # (pantau.mqtt_fast): it once waited for the next keepalive, which made the NATS
    # failover test fail with this bound (2 of 3 runs) until that was fixed.
    inbox_max_bytes: int = Field(
        default=4 * 1024**2,
        ge=64 * 1024,
        description="bytes of messages received and not yet decoded (payloads plus ~340 "
        "each) past which ingest stops reading from the broker for a moment (so do "
        "receive_maximum messages): a burst waits at the broker, not in ingest's memory",
    )
    spool_dir: Path | None = Field(
        default=None,
        description="durable spool (ingest.spool): messages are acknowledged once their "
        "readings are here; default run/spool/<client id>-<hash of root and database>",
    )
    spool_max_bytes: int = Field(
        default=1024**3, ge=1024**2, description="past this, ingest stops acknowledging"
    )
    spool_segment_bytes: int = Field(default=16 * 1024**2, ge=4096)
    drain_batch_bytes: int = Field(
        default=1024**2, ge=1024, description="line protocol per InfluxDB write"
    )
    write_concurrency: int = Field(
        default=2,
        ge=1,
        le=16,
        description="InfluxDB writes of the spool in flight at once (so InfluxDB parses one "
        "while the next is sent); the spool's cursor still advances in order, past a chunk "
        "only once it and every chunk before it are written",
    )
    stop_drain_s: float = Field(
        default=10.0, ge=0, description="at stop, how long to keep writing the spool out"
    )
    rate_limit_factor: float = Field(
        default=120.0,
        ge=0,
        description="messages a device may send per report interval of its own clock "
        "(ingest.ratelimit); the rest is dead-lettered as rate_limited; 0: no limit",
    )
    http_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="serve POST /ingest/{device} for HTTP loggers on this port (ingest.http); "
        "unset: no HTTP",
    )
    http_host: str = Field(default="127.0.0.1", description="address the HTTP intake binds")
    http_tokens: Path = Field(
        default=Path("run/http-tokens.json"),
        description="hashed per-device tokens of the HTTP intake (`pantau ingest token`)",
    )
    http_wait_s: float = Field(
        default=10.0, gt=0, description="longest an HTTP request waits for the spool (then 503)"
    )

    def spool_path(self, root: str, database: str) -> Path:
        """The spool belongs to one destination: another root or database, another spool."""
        if self.spool_dir is not None:
            return self.spool_dir
        digest = hashlib.sha256(f"{root}\0{database}".encode()).hexdigest()[:12]
        return Path("run") / "spool" / f"{self.client_id}-{digest}"


class RulesSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    client_id: str = Field(default="pantau-rules", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    rules_file: Path | None = Field(
        default=None, description="rule file; default <config_dir>/rules.yaml"
    )
    session_expiry_s: int = Field(default=7 * 86400, ge=0)
    receive_maximum: int = Field(
        default=5000,
        ge=1,
        le=65535,
        description="unacknowledged QoS 1 messages the broker may send (MQTT v5 flow control)",
    )
    batch_max_messages: int = Field(default=2000, ge=1)
    batch_max_delay_s: float = Field(default=0.2, gt=0)
    tick_interval_s: float = Field(
        default=5.0,
        ge=0,
        description="move the watermark with the system clock this often (a silent fleet "
        "still ages); 0 turns it off, for replays of past event time",
    )
    reload_check_s: float = Field(default=2.0, gt=0, description="rule file mtime poll")
    uplink_gap_settle_s: float = Field(
        default=90.0,
        ge=0,
        description="a device's seq gap is judged this long after it is seen, so copies a "
        "broker redelivers late fill it (NATS JetStream: ack_wait, 30 s by default)",
    )
    rebuild_window_s: float = Field(
        default=3 * 3600.0, ge=0, description="readings read back from InfluxDB at start"
    )
    rebuild_wait_s: float = Field(
        default=30.0,
        ge=0,
        description="at a restart, how long to wait for InfluxDB to hold what the previous"
        " run acknowledged (ingest stores it on its own schedule) before rebuilding",
    )
    outbox_batch: int = Field(
        default=1000, ge=1, description="outbox rows published (and awaited) per round"
    )
    outbox_retention_s: float = Field(
        default=7 * 86400.0,
        ge=0,
        description="published (and webhook-settled) outbox rows older than this are "
        "deleted on the tick; 0 keeps them",
    )
    escalation: bool = Field(
        default=True,
        description="on each tick, escalate unacknowledged incidents past their "
        "acknowledge-by time (rules.escalation); needs tick_interval_s > 0",
    )
    webhook_urls: dict[str, list[str]] = Field(
        default_factory=dict,
        description="chat-gateway webhooks for crew alerts: agency id (or 'ops' for the "
        "operations center's escalations, '*' for any) -> URLs; JSON in "
        "PANTAU_RULES__WEBHOOK_URLS",
    )
    webhook_secret: SecretStr | None = Field(
        default=None,
        min_length=32,
        description="HMAC-SHA256 key for X-Pantau-Signature, at least 32 characters; "
        "from the environment (PANTAU_RULES__WEBHOOK_SECRET), never committed",
    )
    webhook_max_attempts: int = Field(default=6, ge=1, le=20)
    webhook_backoff_s: float = Field(
        default=1.0, gt=0, description="first retry delay; doubles per attempt"
    )
    webhook_max_backoff_s: float = Field(default=60.0, gt=0)
    webhook_timeout_s: float = Field(default=5.0, gt=0)
    partitioned: bool = Field(
        default=False,
        description="run as one of several replicas: kecamatan partitions leased through "
        "the SQL store, one MQTT session per partition (rules.partitions; PostgreSQL for "
        "replicas on more than one host, SQLite on one); false: one process judges the "
        "whole city on one session",
    )


class ApiSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    jwt_secret: SecretStr | None = Field(
        default=None,
        description="HS256 signing key for access tokens, at least 32 characters, from "
        "the environment (PANTAU_API__JWT_SECRET); the API refuses to start without one",
    )
    token_minutes: int = Field(default=480, ge=1, le=7 * 24 * 60, description="token lifetime")
    login_failures_free: int = Field(
        default=5,
        ge=1,
        description="failed logins for one username from one address (and 4x that from "
        "one address for any usernames) before each further attempt must wait; the wait "
        "doubles per failure from 1 s up to login_delay_max_s, and 15 minutes without a "
        "failure forget them. Never a lock of the account: the same user from another "
        "address is not delayed",
    )
    login_delay_max_s: float = Field(default=300.0, gt=0, description="longest login delay")
    password_hash_workers: int = Field(
        default=1,
        ge=1,
        description="password hashes computed at once (each takes argon2_memory_kib); "
        "further logins wait their turn without holding a thread",
    )
    password_hash_queue: int = Field(
        default=256, ge=1, description="logins waiting for a hash before 503"
    )
    session_check_s: float = Field(
        default=30.0,
        gt=0,
        le=60,
        description="how long a user's state (active, role, scope, session version) is "
        "trusted before it is read again: deactivation or a role or scope change takes "
        "effect within this time on every request and on open streams",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="addresses or networks (CIDR) of reverse proxies whose "
        "X-Forwarded-For is believed; empty: none, the peer address is the client",
    )
    max_body_bytes: int = Field(
        default=64 * 1024, ge=1024, description="request body limit (reports: the photo's)"
    )
    body_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="a request body must arrive within this plus its size at body_min_rate",
    )
    body_min_rate: int = Field(
        default=16 * 1024, ge=1, description="slowest accepted upload, bytes per second"
    )
    kpi_publish_every_s: float = Field(
        default=0,
        ge=0,
        description="publish the e-Kinerja series (this month, and last month in its "
        "first week) to InfluxDB this often, for Grafana; 0: only on POST /kpi/publish",
    )
    grafana_url: str = Field(
        default="http://localhost:3000",
        description="Grafana as the operators' browsers reach it: the operations page "
        "links an incident's station, zone and camera to its dashboards there",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="browser origins allowed to call the API cross-site; empty: none",
    )
    report_rate_per_hour: int = Field(
        default=10, ge=1, description="citizen reports accepted per client address per hour"
    )
    report_photo_max_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)
    stream_poll_s: float = Field(
        default=0.5, gt=0, description="how often the event stream reads new timeline rows"
    )
    argon2_memory_kib: int = Field(
        default=65536, ge=1024, description="Argon2id memory per password hash (RFC 9106)"
    )
    argon2_time_cost: int = Field(default=3, ge=1, description="Argon2id passes")
    report_signing_key_file: Path | None = Field(
        default=None,
        description="PEM file of the Ed25519 private key that signs auditors' KPI reports "
        "(PKCS#8, unencrypted); unset: signed reports answer 503",
    )
    track_rate_per_hour: int = Field(
        default=120,
        ge=1,
        description="report tracking look-ups and ratings per client address per hour",
    )


class MetricsSettings(BaseModel):
    """Pantau's own metrics (pantau/metrics.py), per service process."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(default="127.0.0.1", description="address of the /metrics endpoint")
    port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Prometheus text format on http://host:port/metrics; None: off",
    )
    influx_interval_s: float = Field(
        default=10.0,
        ge=0,
        description="write the metrics to InfluxDB (pantau_counter, pantau_gauge, "
        "pantau_latency) this often, for the pipeline-health dashboard; 0: off",
    )


class LeaseSettings(BaseModel):
    """How replicas of a stage share work (pantau/store/leases.py): a dead replica's
    share moves to the survivors within ttl_s + period_s."""

    model_config = ConfigDict(extra="forbid")

    ttl_s: float = Field(
        default=10.0,
        gt=0,
        description="a lease (and a heartbeat) not renewed for this long is anyone's",
    )
    period_s: float = Field(
        default=2.0, gt=0, description="how often a replica renews, gives back and takes leases"
    )

    @model_validator(mode="after")
    def _period_below_ttl(self) -> LeaseSettings:
        if self.period_s * 2 > self.ttl_s:
            raise ValueError(
                f"leases.period_s ({self.period_s}) must be at most half of leases.ttl_s "
                f"({self.ttl_s}): a lease must survive one late renewal"
            )
        return self


def default_replica() -> str:
    """`{hostname}-{pid}`: two replicas on one host never share a name."""
    return f"{socket.gethostname()}-{os.getpid()}"


class VisionSettings(BaseModel):
    """`pantau vision` as several workers (issue 19)."""

    model_config = ConfigDict(extra="forbid")

    share_cameras: bool = Field(
        default=False,
        description="lease each camera to one of the live vision workers through the SQL "
        "store (database_url), a fair share each; a dead worker's cameras move to the "
        "others within leases.ttl_s + leases.period_s. Off: this process analyses every "
        "camera it is given",
    )


class RetentionSettings(BaseModel):
    """How long each kind of data is kept (docs/operations.md#retention)."""

    model_config = ConfigDict(extra="forbid")

    raw_days: int = Field(
        default=90, ge=1, description="raw readings and camera analyses in InfluxDB"
    )
    agg_5m_days: int = Field(
        default=730, ge=1, description="5-minute aggregates (min, max, mean, count, sum)"
    )
    agg_1h_days: int = Field(default=3650, ge=1, description="hourly aggregates")
    downsample_interval_s: float = Field(
        default=300.0,
        ge=0,
        description="ingest aggregates the windows closed since its last pass this often; "
        "0: off (run `pantau retention downsample` from cron instead)",
    )
    downsample_lookback_s: float = Field(
        default=2 * 3600.0,
        ge=300,
        description="each pass recomputes this much before its last one (late readings)",
    )
    reconcile_days: float = Field(
        default=7.0,
        ge=0,
        description="at start and hourly, hours of the last days whose aggregates miss raw "
        "readings (a spool drained late) are recomputed; the oldest reading ingest accepts "
        "is 7 days old",
    )
    evidence_days: int = Field(
        default=90,
        ge=1,
        description="camera evidence JPEGs older than this are deleted, unless an incident "
        "opened within this time (or not ended) links them (pantau.evidence)",
    )
    evidence_max_bytes: int = Field(
        default=20 * 1024**3,
        ge=1024**2,
        description="the evidence directory's bound: oldest unlinked frames go first",
    )
    evidence_sweep_s: float = Field(
        default=600.0, ge=0, description="how often pantau vision sweeps; 0: never"
    )
    report_photo_days: int = Field(
        default=365,
        ge=1,
        description="citizen-report photos are dropped (the report stays) after this",
    )
    incidents_years: int = Field(
        default=5,
        ge=1,
        description="incidents, their timelines and the audit log: never pruned younger "
        "than this; older only by `pantau store prune` (audited)",
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PANTAU_", env_nested_delimiter="__", extra="forbid"
    )

    environment: Literal["development", "production"] = Field(
        default="development",
        description="production refuses placeholder or short secrets (pantau.secrecy)",
    )
    config_dir: Path = Field(default_factory=default_config_dir)
    database_url: str = Field(
        default="sqlite:///run/pantau.db",
        description="SQLAlchemy URL of the incident store, "
        "e.g. postgresql+psycopg://user@host/pantau (SQLite is the embedded default)",
    )
    evidence_dir: Path = Field(
        default=Path("run/evidence"),
        description="camera evidence JPEGs: pantau vision saves them as <camera>/<frame>.jpg"
        " here, the API serves them to logged-in staff (incident evidence)",
    )
    replica: str = Field(
        default_factory=default_replica,
        pattern=r"^[A-Za-z0-9_.:-]{1,200}$",
        description="this replica's name (PANTAU_REPLICA), the only setting that differs "
        "between replicas of a stage; written in leases, logs and metrics",
    )
    leases: LeaseSettings = LeaseSettings()
    vision: VisionSettings = VisionSettings()
    mqtt: MqttSettings = MqttSettings()
    influx: InfluxSettings = InfluxSettings()
    ingest: IngestSettings = IngestSettings()
    rules: RulesSettings = RulesSettings()
    api: ApiSettings = ApiSettings()
    metrics: MetricsSettings = MetricsSettings()
    retention: RetentionSettings = RetentionSettings()

    @model_validator(mode="after")
    def _no_placeholder_secrets_in_production(self) -> Settings:
        if self.environment != "production":
            return self
        found = {
            "mqtt.password": self.mqtt.password,
            "influx.password": self.influx.password,
            "influx.token": self.influx.token,
            "api.jwt_secret": self.api.jwt_secret,
        }
        problems = [
            f"{name}: {why}"
            for name, value in found.items()
            if value is not None and (why := weakness(value.get_secret_value()))
        ]
        url = make_url_password(self.database_url)
        if url is not None and (why := weakness(url)):
            problems.append(f"database_url password: {why}")
        if self.mqtt.username is None or self.mqtt.password is None:
            problems.append("mqtt.username/password: a production broker has no anonymous access")
        if problems:
            raise ValueError("production settings with weak secrets: " + "; ".join(problems))
        return self


def make_url_password(url: str) -> str | None:
    """The password in a database URL (user:password@host), if it has one."""
    _, sep, rest = url.partition("://")
    userinfo, at, _ = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return None
    return userinfo.split(":", 1)[1]
