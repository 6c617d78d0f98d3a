"""InfluxDB writers: the v1 `/write` endpoint (InfluxDB 1.x) and the v2 API (2.x / 3.x).

Both take line protocol at millisecond precision, as lines (`write`) or as one body of
newline-separated lines (`write_body`: ingest's spool holds them so, and sends them
without a copy), and report failures in two kinds:
`WriteRejected` (the server refused the data: 4xx other than 429, retrying cannot
help) and `WriteUnavailable` (network error, 429, 5xx: retry until it works).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any, Protocol
from urllib.parse import urlencode

import urllib3

from pantau.settings import InfluxApi, InfluxSettings

log = logging.getLogger(__name__)

# Connections kept open per writer: ingest's default write_concurrency (2) and its
# metrics reporter, which shares the writer.
CONNECTIONS = 3


class WriteRejected(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(f"InfluxDB refused the write ({status}): {message}")


class WriteUnavailable(Exception):
    """InfluxDB could not take the write now; the same write may succeed later."""


class InfluxWriter(Protocol):
    """Safe to call from several threads at once: up to `connections` writes keep a
    connection each (more still work, on connections opened and closed per write)."""

    def write(self, lines: Sequence[str]) -> None: ...

    def write_body(self, body: bytes) -> None:
        """`body`: UTF-8 line protocol, lines separated by newlines."""
        ...

    def close(self) -> None: ...


def _is_permanent(status: int) -> bool:
    return 400 <= status < 500 and status != 429


class V1Writer:
    """POST /write?db=...&precision=ms (InfluxDB 1.x, and 2.x/3.x v1-compatibility)."""

    def __init__(self, settings: InfluxSettings, *, connections: int = CONNECTIONS) -> None:
        self._url = settings.url.rstrip("/") + "/write"
        self._fields: dict[str, str] = {"db": settings.database, "precision": "ms"}
        if settings.retention_policy:
            self._fields["rp"] = settings.retention_policy
        self._auth: dict[str, str] = {}
        if settings.username and settings.password:
            self._auth = urllib3.make_headers(
                basic_auth=f"{settings.username}:{settings.password.get_secret_value()}"
            )
        self._headers = {"Content-Type": "text/plain; charset=utf-8", **self._auth}
        self._http = urllib3.PoolManager(
            num_pools=1,
            maxsize=connections,
            timeout=urllib3.Timeout(connect=2.0, read=settings.timeout_s),
            retries=False,
        )

    def write(self, lines: Sequence[str]) -> None:
        self.write_body("\n".join(lines).encode("utf-8"))

    def write_body(self, body: bytes) -> None:
        query = urlencode(self._fields)
        try:
            response = self._http.request(
                "POST", f"{self._url}?{query}", body=body, headers=self._headers
            )
        except urllib3.exceptions.HTTPError as err:
            raise WriteUnavailable(f"InfluxDB at {self._url} unreachable: {err}") from err
        if response.status == 204:
            return
        message = _error_message(response.data)
        if _is_permanent(response.status):
            raise WriteRejected(response.status, message)
        raise WriteUnavailable(f"InfluxDB answered {response.status}: {message}")

    def ensure_database(self) -> None:
        """CREATE DATABASE is idempotent in InfluxDB 1.x; 2.x/3.x provision buckets instead."""
        url = self._url.removesuffix("/write") + "/query"
        name = self._fields["db"].replace("\\", "\\\\").replace('"', '\\"')
        try:
            response = self._http.request(
                "POST", url, fields={"q": f'CREATE DATABASE "{name}"'}, headers=self._auth
            )
        except urllib3.exceptions.HTTPError as err:
            raise WriteUnavailable(f"InfluxDB at {url} unreachable: {err}") from err
        if response.status != 200:
            raise WriteUnavailable(f"CREATE DATABASE answered {response.status}")

    def close(self) -> None:
        self._http.clear()


class V2Writer:
    """The v2 write API through influxdb-client (bucket = settings.database)."""

    def __init__(self, settings: InfluxSettings, *, connections: int = CONNECTIONS) -> None:
        # Imported here: influxdb-client is slow to import and only v2 deployments need it.
        from influxdb_client.client.influxdb_client import InfluxDBClient  # noqa: PLC0415
        from influxdb_client.client.write_api import SYNCHRONOUS  # noqa: PLC0415

        if settings.token is None:
            raise ValueError("the v2 writer needs a token")
        self._client = InfluxDBClient(
            url=settings.url,
            token=settings.token.get_secret_value(),
            org=settings.org,
            timeout=int(settings.timeout_s * 1000),
            connection_pool_maxsize=connections,
        )
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        self._bucket = settings.database
        self._org = settings.org

    def write(self, lines: Sequence[str]) -> None:
        self._write(list(lines))

    def write_body(self, body: bytes) -> None:
        self._write(body)  # the client sends bytes as they are

    def _write(self, record: list[str] | bytes) -> None:
        from influxdb_client.domain.write_precision import WritePrecision  # noqa: PLC0415
        from influxdb_client.rest import ApiException  # noqa: PLC0415
        from urllib3.exceptions import HTTPError  # noqa: PLC0415

        try:
            self._write_api.write(
                bucket=self._bucket,
                org=self._org,
                record=record,
                # WritePrecision.MS is a plain str constant, typed as the class in the stubs.
                write_precision=WritePrecision.MS,  # type: ignore[arg-type]
            )
        except ApiException as err:
            status = int(err.status or 0)
            message = _error_message(err.body or b"")
            if _is_permanent(status):
                raise WriteRejected(status, message) from err
            raise WriteUnavailable(f"InfluxDB answered {status}: {message}") from err
        except HTTPError as err:
            raise WriteUnavailable(f"InfluxDB unreachable: {err}") from err

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]


def _error_message(data: bytes | str) -> str:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    try:
        parsed: Any = json.loads(text)
    except ValueError:
        return text.strip()[:500]
    if isinstance(parsed, dict):
        return str(parsed.get("error") or parsed.get("message") or parsed)[:500]
    return text.strip()[:500]


def make_writer(settings: InfluxSettings, *, connections: int = CONNECTIONS) -> InfluxWriter:
    """`connections`: how many writes at once keep their connection open for the next
    (ingest: its write_concurrency, plus one for its metrics reporter)."""
    if settings.api is InfluxApi.V2:
        return V2Writer(settings, connections=connections)
    return V1Writer(settings, connections=connections)
