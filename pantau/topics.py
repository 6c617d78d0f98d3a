"""The MQTT topic scheme (DESIGN.md, Contracts). One place builds and parses topics."""

from __future__ import annotations

import re
from dataclasses import dataclass

DEVICE_ID_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
_DEVICE_ID = re.compile(DEVICE_ID_PATTERN)
_REASON = re.compile(r"^[a-z0-9_]{1,64}$")


def is_valid_device_id(device_id: str) -> bool:
    """Device ids may not carry MQTT wildcards or level separators."""
    return _DEVICE_ID.fullmatch(device_id) is not None


@dataclass(frozen=True, slots=True)
class Topics:
    root: str = "pantau"

    def __post_init__(self) -> None:
        if not self.root or any(c in self.root for c in "+#") or self.root.endswith("/"):
            raise ValueError(f"invalid topic root {self.root!r}")

    # --- builders -------------------------------------------------------------------
    def sensor_up(self, device_id: str) -> str:
        return f"{self.root}/sensors/{_checked(device_id)}/up"

    def camera_analysis(self, camera_id: str) -> str:
        return f"{self.root}/cameras/{_checked(camera_id)}/analysis"

    def camera_status(self, camera_id: str) -> str:
        return f"{self.root}/cameras/{_checked(camera_id)}/status"

    def device_status(self, device_id: str) -> str:
        return f"{self.root}/devices/{_checked(device_id)}/status"

    def incidents(self, zone_id: str) -> str:
        return f"{self.root}/incidents/{zone_id}"

    def crew_alerts(self, crew_id: str) -> str:
        return f"{self.root}/alerts/crews/{crew_id}"

    def deadletter(self, reason: str) -> str:
        if _REASON.fullmatch(reason) is None:
            raise ValueError(f"invalid dead-letter reason {reason!r}")
        return f"{self.root}/deadletter/{reason}"

    # --- subscriptions --------------------------------------------------------------
    @property
    def all_sensor_up(self) -> str:
        return f"{self.root}/sensors/+/up"

    @property
    def all_camera_analysis(self) -> str:
        return f"{self.root}/cameras/+/analysis"

    @property
    def all_camera_status(self) -> str:
        return f"{self.root}/cameras/+/status"

    @property
    def all_deadletter(self) -> str:
        return f"{self.root}/deadletter/#"

    # --- parsers --------------------------------------------------------------------
    def device_of_sensor_topic(self, topic: str) -> str | None:
        """The device id in `{root}/sensors/{device}/up`, or None if the topic is not one."""
        return self._middle(topic, "sensors", "up")

    def camera_of_analysis_topic(self, topic: str) -> str | None:
        return self._middle(topic, "cameras", "analysis")

    def _middle(self, topic: str, kind: str, leaf: str) -> str | None:
        prefix = f"{self.root}/{kind}/"
        suffix = f"/{leaf}"
        if not (topic.startswith(prefix) and topic.endswith(suffix)):
            return None
        middle = topic[len(prefix) : -len(suffix)]
        return middle if is_valid_device_id(middle) else None


def _checked(device_id: str) -> str:
    if not is_valid_device_id(device_id):
        raise ValueError(f"invalid device id {device_id!r}: must match {DEVICE_ID_PATTERN}")
    return device_id
