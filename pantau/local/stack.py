"""`LocalStack`: a private mosquitto and influxd for the demo, tests and benchmarks."""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import IO

from pantau.local.errors import ServiceError
from pantau.local.influxd import Influxd
from pantau.local.mosquitto import Mosquitto, MosquittoOptions
from pantau.local.ports import LOOPBACK, free_ports
from pantau.settings import InfluxSettings, MqttSettings, Settings

log = logging.getLogger(__name__)


class LocalStack:
    """mosquitto + influxd on free loopback ports, state under `run_dir`.

    Layout: `run_dir/mosquitto/` (mosquitto.conf, mosquitto.log, data/) and
    `run_dir/influxd/` (influxd.toml, meta/, data/, wal/). Without `run_dir` a temp
    directory is used and removed on `stop()`. Ports are fixed for the life of the
    object, so `stack.mosquitto.kill()` then `.start()` brings the broker back on the
    same port with the same data, as reliability tests need.
    """

    def __init__(
        self,
        run_dir: Path | None = None,
        *,
        mqtt_port: int | None = None,
        influx_port: int | None = None,
        mosquitto_options: MosquittoOptions | None = None,
    ) -> None:
        self._temporary = run_dir is None
        self.run_dir = Path(tempfile.mkdtemp(prefix="pantau-")) if run_dir is None else run_dir
        self.run_dir = self.run_dir.resolve()
        self._lock: IO[str] | None = None
        mqtt_free, http_free, rpc_port = free_ports(3)
        self.mosquitto = Mosquitto(
            self.run_dir / "mosquitto",
            mqtt_free if mqtt_port is None else mqtt_port,
            host=LOOPBACK,
            options=mosquitto_options,
        )
        self.influxd = Influxd(
            self.run_dir / "influxd",
            http_free if influx_port is None else influx_port,
            rpc_port,
            host=LOOPBACK,
        )

    @property
    def mqtt_host(self) -> str:
        return self.mosquitto.host

    @property
    def mqtt_port(self) -> int:
        return self.mosquitto.port

    @property
    def influx_url(self) -> str:
        return self.influxd.url

    def start(self) -> LocalStack:
        """Start both services and wait until they serve; on failure stop what started."""
        self._lock_run_dir()
        try:
            self.mosquitto.start()
            self.influxd.start()
        except BaseException:
            self.stop()
            raise
        log.info(
            "local stack up: mqtt %s:%d, influx %s, run dir %s",
            self.mqtt_host,
            self.mqtt_port,
            self.influx_url,
            self.run_dir,
        )
        return self

    def stop(self) -> None:
        """Stop both (SIGTERM, then SIGKILL after a timeout); drop a temp run dir."""
        self.mosquitto.stop()
        self.influxd.stop()
        if self._lock is not None:
            self._lock.close()  # closing releases the flock
            self._lock = None
        if self._temporary:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def _lock_run_dir(self) -> None:
        """Refuse a run dir that another stack uses: two brokers on one database
        would overwrite each other's state."""
        if self._lock is not None:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        lock = (self.run_dir / "lock").open("a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            owner = lock.read().strip() or "?"
            lock.close()
            raise ServiceError(f"{self.run_dir} is in use by another stack (pid {owner})") from None
        lock.truncate(0)
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        self._lock = lock

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def settings(self, *, database: str = "pantau", root: str = "pantau") -> Settings:
        """Pantau settings pointing at this stack, with topic `root` and `database`."""
        return Settings(
            mqtt=MqttSettings(host=self.mqtt_host, port=self.mqtt_port, root=root),
            influx=InfluxSettings(
                url=self.influx_url,
                database=database,
                backup_address=f"{self.influxd.host}:{self.influxd.rpc_port}",
            ),
        )

    def create_database(self, name: str) -> None:
        self.influxd.create_database(name)

    def drop_database(self, name: str) -> None:
        self.influxd.drop_database(name)

    def environment(self) -> dict[str, str]:
        """`PANTAU_*` variables that point a `pantau` process at this stack."""
        return {
            "PANTAU_MQTT__HOST": self.mqtt_host,
            "PANTAU_MQTT__PORT": str(self.mqtt_port),
            "PANTAU_INFLUX__URL": self.influx_url,
            "PANTAU_INFLUX__BACKUP_ADDRESS": f"{self.influxd.host}:{self.influxd.rpc_port}",
        }
