"""config/kpi.yaml: the targets and weights behind the e-Kinerja score."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pantau.yamlconf import load_model

ScoredKpi = Literal[
    "ack_minutes_mean",
    "resolve_minutes_mean",
    "sla_compliance_pct",
    "reopen_rate_pct",
    "sensor_availability_pct",
    "camera_availability_pct",
    "detection_delay_minutes_mean",
    "satisfaction_mean",
]


class Better(StrEnum):
    LOWER = "lower"
    HIGHER = "higher"


class KpiTarget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    target: float = Field(gt=0, title="target value", description="in the KPI's unit")
    weight: float = Field(ge=0, title="weight", description="relative weight in the score")
    better: Better = Field(title="direction", description="lower or higher is better")


class KpiConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    availability_bucket_minutes: float = Field(
        default=10, gt=0, description="a device is available in a bucket with >= 1 reading"
    )
    targets: dict[ScoredKpi, KpiTarget] = Field(min_length=1)


def load_kpi_config(path: Path) -> KpiConfig:
    model, _ = load_model(path, KpiConfig)
    return model
