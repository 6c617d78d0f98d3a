"""A small typed InfluxQL client over the InfluxDB v1 `/query` endpoint.

InfluxQL is what every InfluxDB line answers (1.x natively, 2.x through its v1
compatibility API), so tests, the demo summary and benchmarks read back through this.
Writing stays with ingest's writers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import urllib3

from pantau.errors import PantauError
from pantau.settings import InfluxApi, InfluxSettings

ParamValue = str | int | float | bool


class InfluxQLError(PantauError):
    """The server refused a query, or could not be reached; carries its message."""

    def __init__(self, query: str, message: str, status: int | None = None) -> None:
        self.query = query
        self.message = message
        self.status = status
        where = f"HTTP {status}: " if status is not None else ""
        super().__init__(f"{where}{message} (query: {query})")


@dataclass(frozen=True, slots=True)
class Series:
    """One series of a result: rows of `columns` values, grouped by `tags`."""

    name: str
    columns: tuple[str, ...]
    values: tuple[tuple[object, ...], ...]
    tags: Mapping[str, str] = field(default_factory=dict)

    def rows(self) -> list[dict[str, object]]:
        """Each row as a dict of its columns, with the series' GROUP BY tags merged in."""
        return [{**self.tags, **dict(zip(self.columns, row, strict=True))} for row in self.values]


def quote_ident(name: str) -> str:
    """`name` as a double-quoted InfluxQL identifier (database, measurement, tag key)."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_string(value: str) -> str:
    """`value` as a single-quoted InfluxQL string literal (tag values in WHERE)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class InfluxQL:
    """Queries one server (and by default one database) with InfluxQL.

    `epoch` ("ns", "u", "ms", "s", "m", "h") makes times integers in that unit; without
    it they are RFC 3339 strings. Prefer bind `params` (`$name` in the query) over
    formatting values into the text.
    """

    def __init__(
        self,
        url: str,
        database: str | None = None,
        *,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.database = database
        headers: dict[str, str] = {}
        if token is not None:  # InfluxDB 2.x v1-compatibility API
            headers["Authorization"] = f"Token {token}"
        elif username is not None:
            headers.update(urllib3.make_headers(basic_auth=f"{username}:{password or ''}"))
        self._http = urllib3.PoolManager(
            timeout=urllib3.Timeout(total=timeout_s), retries=False, headers=headers
        )

    @classmethod
    def from_settings(cls, influx: InfluxSettings) -> InfluxQL:
        token = influx.token.get_secret_value() if influx.token is not None else None
        password = influx.password.get_secret_value() if influx.password is not None else None
        return cls(
            influx.url,
            influx.database,
            username=influx.username,
            password=password,
            token=token if influx.api is InfluxApi.V2 else None,
            timeout_s=influx.timeout_s,
        )

    def query(
        self,
        q: str,
        *,
        params: Mapping[str, ParamValue] | None = None,
        epoch: str | None = None,
        database: str | None = None,
    ) -> list[Series]:
        """Run `q` (one or more `;`-separated statements); the series of all of them.

        Any statement's error raises `InfluxQLError` with the server's message.
        POST is used for everything: InfluxDB 1.x requires it for CREATE / DROP and
        accepts it for SELECT and SHOW.
        """
        fields: dict[str, str] = {"q": q}
        db = database if database is not None else self.database
        if db is not None:
            fields["db"] = db
        if epoch is not None:
            fields["epoch"] = epoch
        if params:
            fields["params"] = json.dumps(dict(params))
        try:
            response = self._http.request(
                "POST", f"{self.url}/query", fields=fields, encode_multipart=False
            )
        except urllib3.exceptions.HTTPError as err:
            raise InfluxQLError(q, f"cannot reach {self.url}: {err}") from err
        body = _json_body(q, response)
        if response.status >= 400 or "error" in body:
            raise InfluxQLError(q, str(body.get("error", response.reason)), response.status)
        return _series(q, body)

    def rows(
        self,
        q: str,
        *,
        params: Mapping[str, ParamValue] | None = None,
        epoch: str | None = None,
        database: str | None = None,
    ) -> list[dict[str, object]]:
        """All rows of all series of `q`, each with its series' tags (see `Series.rows`)."""
        series = self.query(q, params=params, epoch=epoch, database=database)
        return [row for s in series for row in s.rows()]

    def close(self) -> None:
        self._http.clear()

    def __enter__(self) -> InfluxQL:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _json_body(q: str, response: urllib3.BaseHTTPResponse) -> dict[str, Any]:
    try:
        body = json.loads(response.data or b"{}")
    except ValueError as err:
        text = response.data[:200].decode(errors="replace")
        raise InfluxQLError(q, f"not JSON: {text!r}", response.status) from err
    if not isinstance(body, dict):
        raise InfluxQLError(q, f"unexpected answer: {body!r:.200}", response.status)
    return body


def _series(q: str, body: Mapping[str, Any]) -> list[Series]:
    out: list[Series] = []
    for result in body.get("results", []):
        if "error" in result:
            raise InfluxQLError(q, str(result["error"]))
        for s in result.get("series", []):
            out.append(
                Series(
                    name=str(s.get("name", "")),
                    columns=tuple(s.get("columns", ())),
                    values=tuple(tuple(v) for v in s.get("values", ())),
                    tags=dict(s.get("tags") or {}),
                )
            )
    return out
