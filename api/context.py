"""Everything a request handler needs, built once per process: the city, the incident
store, accounts, the audit log, the clock and (optionally) InfluxDB."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from pantau.cameras import Camera, load_cameras
from pantau.city import City, load_city
from pantau.clock import Clock, SystemClock
from pantau.influx.query import InfluxQL
from pantau.roster import Roster, load_roster
from pantau.settings import Settings
from pantau.store import IncidentStore, load_sla_policy, make_engine, migrate, placement_by_zone
from pantau.zoneindex import ZoneIndex

from .accounts import Accounts
from .audit import AuditLog
from .cap import CapConfig, load_cap_config
from .geography import Geography
from .kpi import Kpis
from .kpi_config import KpiConfig, load_kpi_config
from .listing_cache import EventVersion, VersionedCache
from .ratelimit import RateLimiter
from .security import HashPool, Passwords, TokenReader, check_signing_key
from .sessions import SessionCheck
from .shared_limits import SharedLoginDelays, SharedRateLimiter
from .throttle import LoginDelays


@dataclass
class ApiContext:
    settings: Settings
    city: City
    cameras: dict[str, Camera]
    geo: Geography
    roster: Roster
    engine: Engine
    sessions: sessionmaker[Session]  # writes (and reads that must see the write lock)
    readers: sessionmaker[Session]  # reads only
    store: IncidentStore
    accounts: Accounts
    audit: AuditLog
    clock: Clock
    signing_key: str
    kpi: KpiConfig
    cap: CapConfig  # config/cap.yaml: public alerts' instructions and expiry
    influx: InfluxQL | None
    report_limiter: RateLimiter
    login_delays: LoginDelays
    hashing: HashPool
    tokens: TokenReader
    user_sessions: SessionCheck
    events: EventVersion
    token_lifetime: timedelta = field(default=timedelta(hours=8))
    caches: dict[str, object] = field(default_factory=dict)  # small per-process caches
    listing_cache: VersionedCache[bytes] = field(default_factory=VersionedCache)
    kpi_cache: VersionedCache[Kpis] = field(default_factory=VersionedCache)

    def version(self) -> tuple[int, str]:
        """What the caches are valid for (see `EventVersion`)."""
        return self.events.current()

    def close(self) -> None:
        self.hashing.close()
        self.events.close()
        self.store.close()
        self.engine.dispose()
        if self.readers.kw["bind"] is not self.engine:
            self.readers.kw["bind"].dispose()
        if self.influx is not None:
            self.influx.close()


def build_context(
    settings: Settings,
    *,
    clock: Clock | None = None,
    city: City | None = None,
    zones: ZoneIndex | None = None,
    influx: InfluxQL | None = None,
    use_influx: bool = True,
) -> ApiContext:
    """Check the signing key first (InsecureSecret: refuse to start), then migrate the
    database to head and wire the parts."""
    secret = settings.api.jwt_secret
    key = check_signing_key(None if secret is None else secret.get_secret_value())
    clock = clock or SystemClock()
    city = city or load_city(settings.config_dir)
    zones = zones or ZoneIndex.for_city(city)
    engine = make_engine(settings.database_url)
    migrate(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)
    readers = sessions
    read_engine = engine
    if engine.dialect.name == "sqlite":
        # The store's SQLite engine takes the write lock at BEGIN (pantau.store.migrate),
        # which would queue every read behind every other; in WAL mode plain readers
        # see the last commit without waiting.
        read_engine = create_engine(settings.database_url, connect_args={"timeout": 30})
        readers = sessionmaker(read_engine, expire_on_commit=False)
    store = IncidentStore(
        engine,
        load_sla_policy(settings.config_dir / "sla.yaml"),
        clock,
        place=placement_by_zone(lambda zone_id: zones.zone(zone_id).level, city.hazard_agency),
    )
    if influx is None and use_influx:
        influx = InfluxQL.from_settings(settings.influx)
    accounts = Accounts(
        sessions, clock, Passwords(settings.api.argon2_memory_kib, settings.api.argon2_time_cost)
    )
    api = settings.api
    report_limiter = RateLimiter(api.report_rate_per_hour, 3600.0, clock)
    login_delays = LoginDelays(api.login_failures_free, api.login_delay_max_s, clock)
    if engine.dialect.name == "postgresql":
        # Several API replicas may share this database: count in it, not in memory.
        report_limiter = SharedRateLimiter(
            engine, "reports", api.report_rate_per_hour, 3600.0, clock=clock, secret=key
        )
        login_delays = SharedLoginDelays(
            engine, api.login_failures_free, api.login_delay_max_s, clock, key
        )
    return ApiContext(
        settings=settings,
        city=city,
        cameras=load_cameras(city) if (city.config_dir / "cameras.yaml").exists() else {},
        geo=Geography(zones),
        roster=load_roster(city),
        engine=engine,
        sessions=sessions,
        readers=readers,
        store=store,
        accounts=accounts,
        audit=AuditLog(sessions, clock),
        clock=clock,
        signing_key=key,
        tokens=TokenReader(key),
        user_sessions=SessionCheck(accounts.session_of, settings.api.session_check_s),
        events=EventVersion(read_engine),
        kpi=load_kpi_config(settings.config_dir / "kpi.yaml"),
        cap=load_cap_config(settings.config_dir / "cap.yaml"),
        influx=influx,
        report_limiter=report_limiter,
        login_delays=login_delays,
        hashing=HashPool(settings.api.password_hash_workers, settings.api.password_hash_queue),
        token_lifetime=timedelta(minutes=settings.api.token_minutes),
    )
