"""Dead letters: the envelope lives in the kernel (pantau.deadletter), shared with the
device bridges (bridges/); this name stays for ingest's modules and tooling."""

from pantau.deadletter import (
    KEEP_BYTES,
    TEXT_PREVIEW_LIMIT,
    Rejection,
    decode,
    encode,
    envelope_fingerprint,
    fingerprint,
)

__all__ = [
    "KEEP_BYTES",
    "TEXT_PREVIEW_LIMIT",
    "Rejection",
    "decode",
    "encode",
    "envelope_fingerprint",
    "fingerprint",
]
