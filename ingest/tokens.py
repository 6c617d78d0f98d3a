"""Per-device tokens of the HTTP intake, stored hashed.

The file holds, per device, the PBKDF2 hash of its token (the broker's `$7$` format,
pantau.broker.passwords), never the token: `pantau ingest token DEVICE` makes a new one,
prints it once and replaces the old hash, which rotates it. The intake rereads the file
when it changes, so a rotation takes effect without a restart.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from pathlib import Path

from pantau.broker.passwords import hash_password, verify_password

TOKEN_BYTES = 32


class DeviceTokens:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._hashes: dict[str, str] = {}
        self._stamp: tuple[int, int] | None = None  # (mtime ns, size) of what is loaded

    def rotate(self, device_id: str) -> str:
        """A new token for `device_id`; the old one stops working. Returned once."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        with self._lock:
            hashes = self._read()
            hashes[device_id] = hash_password(token)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump({"devices": hashes}, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)  # readers see the old file or the new, never half
        return token

    def verify(self, device_id: str, token: str) -> bool:
        with self._lock:
            stamp = self._stat()
            if stamp != self._stamp:
                self._hashes, self._stamp = self._read(), stamp
            hashed = self._hashes.get(device_id)
        # an unknown device costs a hash too: the answer time says nothing about it
        return verify_password(token, hashed or hash_password("", b"\0" * 12)) and bool(hashed)

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size

    def _read(self) -> dict[str, str]:
        try:
            body = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        devices = body.get("devices", {}) if isinstance(body, dict) else {}
        return {str(k): str(v) for k, v in devices.items()}
