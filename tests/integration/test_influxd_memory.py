"""The influxd Pantau starts: its [data] tuning is in the config it writes, and
bench.influxd_vars reads what influxd's memory holds from the server itself."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path

import urllib3

from bench import influxd_vars
from pantau.local import LocalStack
from pantau.local.influxd import DATA_TUNING, render_config


def test_the_config_carries_the_data_tuning_and_overrides(tmp_path: Path) -> None:
    def data(tuning: Mapping[str, str] = DATA_TUNING) -> dict[str, object]:
        text = render_config(
            host="127.0.0.1", http_port=1, rpc_port=2, directory=tmp_path, data=tuning
        )
        section: dict[str, object] = tomllib.loads(text)["data"]
        return section

    assert DATA_TUNING["cache-snapshot-write-cold-duration"] == "1m"
    assert data().items() >= DATA_TUNING.items()
    other = {"cache-snapshot-write-cold-duration": "10m", "index-version": "tsi1"}
    assert data(other).items() >= other.items()


def test_influxd_vars_sees_the_cache_shards_and_series(stack: LocalStack, influx_db: str) -> None:
    before = influxd_vars.read(stack.influx_url, stack.influxd.pid)
    written = influxd_vars.points_written(stack.influx_url)
    lines = "\n".join(f"soak_probe,device=d{i} value={i} {1_700_000_000 + i}" for i in range(50))
    resp = urllib3.request(
        "POST", f"{stack.influx_url}/write?db={influx_db}&precision=s", body=lines.encode()
    )
    assert resp.status == 204
    after = influxd_vars.read(stack.influx_url, stack.influxd.pid)
    assert influxd_vars.points_written(stack.influx_url) == written + 50
    assert after.series >= before.series + 50
    assert after.cache > 0 and after.caches_holding >= 1 and after.shards >= 1
    assert after.rss >= after.rss_anon > 0 and after.heap_inuse > 0
