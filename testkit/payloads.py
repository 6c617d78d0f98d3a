"""Malformed payloads of every kind the reliability issue names, each with the reason
ingest must give it (tests/faults and bench/faults send them)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from testkit.services import MEASUREMENT


def rfc3339(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def native(device: str, when: datetime, **changes: object) -> bytes:
    body: dict[str, object] = {
        "device": device,
        "time": rfc3339(when),
        "readings": [{"metric": MEASUREMENT, "value": -70.0}],
    }
    body.update(changes)
    return json.dumps(body).encode()


def malformed(device: str, now: datetime, n: int) -> tuple[str, bytes]:
    """The n-th malformed payload: (expected reason, payload), every kind in turn."""
    good = native(device, now, seq=n)
    kinds: list[tuple[str, bytes]] = [
        ("malformed_json", good[: 10 + n % 40]),  # cut short
        ("malformed_json", good.replace(b"-70.0", b"NaN")),
        ("malformed_json", good.replace(b"-70.0", b"-Infinity")),
        ("malformed_json", b'{"device": "\xff\xfe' + n.to_bytes(4, "big") + b'"}'),  # not UTF-8
        ("malformed_json", b"[" * (20_000 + n) + b"]" * (20_000 + n)),  # nesting
        ("invalid_payload", native(device, now, readings=[{"metric": MEASUREMENT, "value": "x"}])),
        ("invalid_payload", native(device, now, readings=f"rssi={n}")),
        ("invalid_payload", native(device, now, seq=10**30 + n)),
        ("out_of_range", good.replace(b"-70.0", b"1" + b"0" * (400 + n % 50))),  # huge
        ("out_of_range", good.replace(b"-70.0", b"1e999")),
        ("bad_timestamp", native(device, now + timedelta(days=365 * 50 + n))),
        ("bad_timestamp", native(device, now - timedelta(days=365 * 30 + n))),
        ("bad_timestamp", native(device, now, time=1e20 + n)),
    ]
    if n % 100 == 0:  # 1 MB bodies, fewer: each costs the broker and the collector 1 MB
        return "too_large", native(device, now, seq=n, pad="x" * (1 << 20))
    return kinds[n % len(kinds)]
