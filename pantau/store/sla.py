"""SLA policy: how fast an incident must be acknowledged and resolved, by hazard x severity.

The numbers in config/sla.yaml are Pantau's defaults; a city sets its own. A hazard or
severity the file does not list falls back to `default`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pantau.devices import default_config_dir
from pantau.incidents import Hazard, Severity
from pantau.yamlconf import load_model

SeverityName = Literal["info", "waspada", "siaga", "awas"]


class SlaTargetModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ack_minutes: float = Field(gt=0, title="acknowledge within", description="minutes")
    resolve_minutes: float = Field(gt=0, title="resolve within", description="minutes")

    @model_validator(mode="after")
    def _ack_before_resolve(self) -> SlaTargetModel:
        if self.ack_minutes > self.resolve_minutes:
            raise ValueError("ack_minutes must not exceed resolve_minutes")
        return self


class SlaFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    default: SlaTargetModel = Field(description="for any hazard x severity not listed")
    hazards: dict[Hazard, dict[SeverityName, SlaTargetModel]] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SlaTarget:
    ack: timedelta
    resolve: timedelta


class SlaPolicy:
    def __init__(self, default: SlaTarget, targets: dict[tuple[Hazard, Severity], SlaTarget]):
        self._default = default
        self._targets = dict(targets)

    def target(self, hazard: Hazard, severity: Severity) -> SlaTarget:
        return self._targets.get((hazard, severity), self._default)

    @classmethod
    def from_model(cls, model: SlaFile) -> SlaPolicy:
        def conv(t: SlaTargetModel) -> SlaTarget:
            return SlaTarget(timedelta(minutes=t.ack_minutes), timedelta(minutes=t.resolve_minutes))

        targets = {
            (hazard, Severity[name.upper()]): conv(t)
            for hazard, by_severity in model.hazards.items()
            for name, t in by_severity.items()
        }
        return cls(conv(model.default), targets)


def load_sla_policy(path: Path | None = None) -> SlaPolicy:
    """Load config/sla.yaml (or `path`); errors name the file and line."""
    model, _ = load_model(path or default_config_dir() / "sla.yaml", SlaFile)
    return SlaPolicy.from_model(model)
