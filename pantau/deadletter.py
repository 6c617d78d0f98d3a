"""Dead letters: rejected input, with its reason, published to `{root}/deadletter/{reason}`.

The original payload is kept byte-exact up to `KEEP_BYTES` (16 KiB, far above any real
device message); a longer one (a 1 MB body, refused as `too_large`) keeps its first
`KEEP_BYTES` with its size and SHA-256, so a flood of big bodies costs ingest, the
broker and whoever reads the topic 16 KiB each, not a copy of every body.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

from pantau.wire import rfc3339

KEEP_BYTES = 16 * 1024  # payload bytes kept in a dead letter; the rest by size and hash
TEXT_PREVIEW_LIMIT = 4096  # characters of payload also shown as text, for people reading the topic


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: str  # slug, becomes the topic level
    detail: str  # what exactly is wrong, for a person
    topic: str  # where the input arrived
    payload: bytes  # the original bytes (decoded from an envelope: the first KEEP_BYTES)
    received_at: datetime


def fingerprint(payload: bytes) -> tuple[int, str]:
    """Size and SHA-256 (hex) of a payload: what identifies a truncated one."""
    return len(payload), hashlib.sha256(payload).hexdigest()


def encode(rejection: Rejection) -> bytes:
    """A JSON envelope; the original payload in base64, byte-exact up to KEEP_BYTES
    (`payload_truncated` says when it is only the beginning), with its size and hash."""
    size, sha256 = fingerprint(rejection.payload)
    kept = rejection.payload[:KEEP_BYTES]
    body: dict[str, object] = {
        "reason": rejection.reason,
        "detail": rejection.detail,
        "topic": rejection.topic,
        "received_at": rfc3339(rejection.received_at),
        "payload_bytes": size,
        "payload_sha256": sha256,
        "payload_base64": base64.b64encode(kept).decode("ascii"),
    }
    if size > KEEP_BYTES:
        body["payload_truncated"] = True
    # Binary or broken text gets no preview: base64 alone says it exactly.
    with contextlib.suppress(UnicodeDecodeError):
        body["payload_text"] = kept[:TEXT_PREVIEW_LIMIT].decode("utf-8")[:TEXT_PREVIEW_LIMIT]
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def envelope_fingerprint(envelope: bytes) -> tuple[str, int, str]:
    """(reason, size, SHA-256) of the payload a dead letter stands for."""
    body = json.loads(envelope)
    return str(body["reason"]), int(body["payload_bytes"]), str(body["payload_sha256"])


def decode(payload: bytes) -> Rejection:
    """Read an envelope back (tests and replay tooling)."""
    body = json.loads(payload)
    return Rejection(
        reason=body["reason"],
        detail=body["detail"],
        topic=body["topic"],
        payload=base64.b64decode(body["payload_base64"]),
        received_at=datetime.fromisoformat(body["received_at"]),
    )
