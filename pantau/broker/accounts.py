"""Who may connect to the broker and what each may read and write: least privilege.

- every registered device publishes its own readings and status, and reads nothing;
- a kecamatan gateway publishes for the devices registered in its kecamatan;
- ingest, rules, vision, api, the device bridges (pantau-lorawan, pantau-sparkplug) and
  the simulator have their own service accounts with the topics their stage needs;
  `pantau-admin` (registry tooling) may clear devices' retained status; each crew and
  supervisor reads its own alert topic.

Usernames are the registry's ids, which never contain `+`, `#` or `/`
(pantau.topics.is_valid_device_id); anything else is refused here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from pantau.city import City
from pantau.topics import Topics, is_valid_device_id


@dataclass(frozen=True, slots=True)
class Account:
    username: str
    role: str  # device, gateway, service, crew
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()


def gateway_username(kecamatan_id: str) -> str:
    return f"gw-{kecamatan_id.removeprefix('kec-')}"


def service_accounts(t: Topics) -> list[Account]:
    r = t.root
    return [
        Account(
            "pantau-ingest",
            "service",
            reads=(
                t.all_sensor_up,
                t.all_camera_analysis,
                t.all_camera_status,  # stored as camera_state
                f"{r}/devices/+/status",
            ),
            writes=(f"{r}/deadletter/#",),
        ),
        Account(
            "pantau-rules",
            "service",
            reads=(t.all_sensor_up, t.all_camera_analysis),
            writes=(f"{r}/incidents/#", f"{r}/alerts/#"),
        ),
        Account(
            "pantau-vision",
            "service",
            writes=(t.all_camera_analysis, t.all_camera_status),
        ),
        Account(
            "pantau-api",
            "service",
            reads=(f"{r}/incidents/#", f"{r}/alerts/#", t.all_camera_status),
        ),
        # The simulator plays every device through its gateway, plus deliberately
        # malformed traffic (unknown devices, bad topics) that ingest must dead-letter.
        Account("pantau-sim", "service", writes=(f"{r}/sensors/#", f"{r}/devices/#")),
        Account("pantau-admin", "service", writes=(f"{r}/devices/#",)),
        # The device bridges (bridges/) publish for the LoRaWAN and Sparkplug devices
        # their config maps: readings, statuses, and the dead letters of what they refuse.
        *(
            Account(
                f"pantau-{protocol}",
                "service",
                writes=(t.all_sensor_up, f"{r}/devices/+/status", f"{r}/deadletter/#"),
            )
            for protocol in ("lorawan", "sparkplug")
        ),
    ]


def crew_ids(config_dir: Path) -> list[str]:
    """Crew and supervisor ids from crews.yaml (validated in full by pantau.roster)."""
    doc = yaml.safe_load((config_dir / "crews.yaml").read_text(encoding="utf-8")) or {}
    ids = [str(c["id"]) for c in doc.get("crews", [])]
    ids += [str(s["id"]) for s in (doc.get("supervisors") or {}).values()]
    return sorted(set(ids))


def accounts_for(city: City, topics: Topics) -> list[Account]:
    accounts = service_accounts(topics)
    by_kecamatan: dict[str, list[str]] = {}
    for device_id, d in sorted(city.devices.items()):
        accounts.append(
            Account(
                device_id,
                "device",
                writes=(topics.sensor_up(device_id), topics.device_status(device_id)),
            )
        )
        by_kecamatan.setdefault(d.kecamatan_id, []).append(device_id)
    for kecamatan_id, members in sorted(by_kecamatan.items()):
        gateway = gateway_username(kecamatan_id)
        writes = tuple(
            topic for m in members for topic in (topics.sensor_up(m), topics.device_status(m))
        )
        writes += (topics.device_status(gateway),)  # its own birth and Last Will
        accounts.append(Account(gateway, "gateway", writes=writes))
    for crew in crew_ids(city.config_dir):
        accounts.append(Account(crew, "crew", reads=(topics.crew_alerts(crew),)))
    names = [a.username for a in accounts]
    bad = [n for n in names if not is_valid_device_id(n)]
    if bad:
        raise ValueError(f"usernames must match [A-Za-z0-9_.-]{{1,64}}: {bad}")
    doubled = sorted({n for n in names if names.count(n) > 1})
    if doubled:
        raise ValueError(f"usernames used twice: {doubled}")
    return accounts
