"""SLA policy loading: the shipped config/sla.yaml and line-precise errors."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from pantau.errors import ConfigErrors
from pantau.incidents import Hazard, Severity
from pantau.store import load_sla_policy


def test_shipped_policy_covers_every_hazard_and_the_defaults() -> None:
    policy = load_sla_policy()
    flood_awas = policy.target(Hazard.FLOOD, Severity.AWAS)
    assert (flood_awas.ack, flood_awas.resolve) == (timedelta(minutes=5), timedelta(hours=2))
    offline = policy.target(Hazard.SENSOR_OFFLINE, Severity.WASPADA)
    assert (offline.ack, offline.resolve) == (timedelta(minutes=60), timedelta(hours=24))
    for hazard in Hazard:
        for severity in Severity:
            target = policy.target(hazard, severity)
            assert timedelta(0) < target.ack <= target.resolve
    # more severe never gets a slower acknowledgement than less severe
    for hazard in Hazard:
        acks = [policy.target(hazard, s).ack for s in sorted(Severity)]
        listed = [a for s, a in zip(sorted(Severity), acks, strict=True) if s >= Severity.WASPADA]
        assert listed == sorted(listed, reverse=True), hazard


def test_unlisted_hazard_severity_falls_back_to_default(tmp_path: Path) -> None:
    path = tmp_path / "sla.yaml"
    path.write_text(
        "default: {ack_minutes: 30, resolve_minutes: 600}\n"
        "hazards:\n  flood:\n    awas: {ack_minutes: 3, resolve_minutes: 90}\n"
    )
    policy = load_sla_policy(path)
    assert policy.target(Hazard.FLOOD, Severity.AWAS).ack == timedelta(minutes=3)
    assert policy.target(Hazard.FLOOD, Severity.SIAGA).ack == timedelta(minutes=30)


def test_errors_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "sla.yaml"
    path.write_text(
        "default: {ack_minutes: 30, resolve_minutes: 600}\n"
        "hazards:\n"
        "  flood:\n"
        "    awas: {ack_minutes: 3, resolve_minutes: 90}\n"
        "    siaga1: {ack_minutes: 3, resolve_minutes: 90}\n"
        "  tsunami:\n"
        "    awas: {ack_minutes: 1, resolve_minutes: 90}\n"
        "  heavy_rain:\n"
        "    awas: {ack_minutes: 200, resolve_minutes: 90}\n"
    )
    with pytest.raises(ConfigErrors) as err:
        load_sla_policy(path)
    text = str(err.value)
    assert f"{path}:5: hazards.flood.siaga1" in text
    assert f"{path}:6: hazards.tsunami" in text
    assert f"{path}:9: hazards.heavy_rain.awas" in text
    assert "ack_minutes must not exceed resolve_minutes" in text
