"""Retiring accounts that left the registry: nothing of theirs stays on the broker.

Removing a device from the password file stops its next login, but the broker still
holds its persistent session (subscriptions, queued messages) and its retained status.
So before the new files are loaded, each retired account logs in one last time with a
clean start and a session expiry of 0 (the broker discards its session; on MQTT 3.1.1
a clean session does the same), and `pantau-admin` clears its retained status with an
empty retained message. Any node of a cluster will do (MqttSettings.hosts).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable

from pydantic import SecretStr

from pantau.broker.passwords import derive_password
from pantau.mqtt_failover import FailoverClient
from pantau.settings import MqttSettings
from pantau.topics import Topics

log = logging.getLogger(__name__)
TIMEOUT_S = 10.0


def _client(settings: MqttSettings, username: str, secret: str, client_id: str) -> FailoverClient:
    login = settings.model_copy(
        update={"username": username, "password": SecretStr(derive_password(secret, username))}
    )
    return FailoverClient(login, client_id, clean=True)


def _connect(client: FailoverClient, settings: MqttSettings) -> None:
    try:
        client.connect_any(session_expiry_s=0, receive_maximum=1)
    except OSError as err:
        raise ConnectionError(str(err)) from err
    client.loop_start()
    try:
        if not _wait(client):
            raise ConnectionError(f"{settings.describe()} refused or did not answer")
    except BaseException:
        client.loop_stop()
        raise


def _wait(client: FailoverClient) -> bool:
    deadline = time.monotonic() + TIMEOUT_S
    while not client.is_connected() and time.monotonic() < deadline:
        time.sleep(0.02)
    return client.is_connected()


def retire(
    usernames: Iterable[str],
    settings: MqttSettings,
    secret: str,
    *,
    client_ids: dict[str, str] | None = None,
) -> list[str]:
    """Discard the sessions and retained status of `usernames`; the ones done.

    A device's client id is its username unless `client_ids` says otherwise (the
    session to discard is keyed by client id).
    """
    topics = Topics(settings.root)
    done = []
    admin = _client(settings, "pantau-admin", secret, f"pantau-admin-{uuid.uuid4().hex[:8]}")
    _connect(admin, settings)
    try:
        for name in usernames:
            cid = (client_ids or {}).get(name, name)
            last = _client(settings, name, secret, cid)
            try:
                _connect(last, settings)  # drops the stored session
                last.disconnect()
                last.loop_stop()
            except ConnectionError:
                log.info("%s: no login possible any more; its session expires by itself", name)
            info = admin.publish(topics.device_status(name), b"", qos=1, retain=True)
            info.wait_for_publish(TIMEOUT_S)
            done.append(name)
    finally:
        admin.disconnect()
        admin.loop_stop()
    return done
