"""Dead letters: rejected input, with its reason, published to `{root}/deadletter/{reason}`."""

from __future__ import annotations

import base64
import contextlib
import json
from dataclasses import dataclass
from datetime import datetime

from pantau.wire import rfc3339

TEXT_PREVIEW_LIMIT = 4096  # characters of payload also shown as text, for people reading the topic


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: str  # slug, becomes the topic level
    detail: str  # what exactly is wrong, for a person
    topic: str  # where the input arrived
    payload: bytes  # the original bytes, kept whole
    received_at: datetime


def encode(rejection: Rejection) -> bytes:
    """A JSON envelope; the original payload is kept byte-exact in base64."""
    body: dict[str, object] = {
        "reason": rejection.reason,
        "detail": rejection.detail,
        "topic": rejection.topic,
        "received_at": rfc3339(rejection.received_at),
        "payload_base64": base64.b64encode(rejection.payload).decode("ascii"),
    }
    # Binary or broken text gets no preview: base64 alone says it exactly.
    with contextlib.suppress(UnicodeDecodeError):
        body["payload_text"] = rejection.payload.decode("utf-8")[:TEXT_PREVIEW_LIMIT]
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


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
