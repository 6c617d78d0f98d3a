"""The metric catalogue and the device kinds that report those metrics.

Every accepted reading names a metric from the catalogue; the catalogue says its
canonical unit, the other units a device may send (with the factor to convert) and
the physically valid range. Loaded from `config/catalogue.yaml`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pantau.units import is_senml_unit
from pantau.yamlconf import LocatedYaml, load_model

MetricName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,47}$")]


class SumModel(BaseModel):
    """A SenML sum is the value integrated over seconds (RFC 8428 4.2): e.g. a rain gauge's
    sum of mm/h over s is stored as `rainfall` in mm with factor 1/3600."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: MetricName
    factor: float = Field(gt=0, description="canonical unit x s -> the sum metric's unit")


class MetricModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    unit: str = Field(description="canonical SenML unit; stored values are in this unit")
    valid: tuple[float, float] = Field(description="inclusive physical range [min, max]")
    also_accepts: dict[str, float] = Field(
        default_factory=dict,
        description="other SenML units a device may send, each with its factor to `unit`",
    )
    description: str = Field(min_length=1)
    states: dict[str, float] = Field(
        default_factory=dict,
        description="SenML string values (vs) this metric takes, each with its stored value",
    )
    sum: SumModel | None = Field(
        default=None, description="where a SenML sum (s) of this metric is stored"
    )

    @model_validator(mode="after")
    def _check(self) -> MetricModel:
        outside = [s for s, v in self.states.items() if not self.valid[0] <= v <= self.valid[1]]
        if outside:
            raise ValueError(f"states {outside} lie outside the valid range")
        for unit in (self.unit, *self.also_accepts):
            if not is_senml_unit(unit):
                raise ValueError(f"unit {unit!r} is not a SenML unit (RFC 8428 / RFC 8798)")
        if self.valid[0] >= self.valid[1]:
            raise ValueError(f"valid range {list(self.valid)} is empty")
        if any(f == 0 for f in self.also_accepts.values()):
            raise ValueError("a conversion factor cannot be 0")
        return self


class DeviceKindModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    metrics: list[MetricName] = Field(min_length=1)
    description: str = Field(min_length=1)
    report_every_s: float = Field(gt=0, description="nominal reporting interval")


class CatalogueFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    metrics: dict[MetricName, MetricModel]
    device_kinds: dict[MetricName, DeviceKindModel]

    @model_validator(mode="after")
    def _kinds_use_known_metrics(self) -> CatalogueFile:
        for kind, spec in self.device_kinds.items():
            unknown = [m for m in spec.metrics if m not in self.metrics]
            if unknown:
                raise ValueError(f"device kind {kind!r} names unknown metrics {unknown}")
        for name, metric in self.metrics.items():
            if metric.sum is not None and metric.sum.metric not in self.metrics:
                raise ValueError(f"metric {name!r} sums into unknown metric {metric.sum.metric!r}")
        return self


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricSpec:
    name: str
    unit: str
    valid_min: float
    valid_max: float
    factors: dict[str, float]  # unit -> factor to the canonical unit (canonical: 1.0)
    description: str
    states: dict[str, float]  # SenML string value -> stored value
    sum_metric: str | None = None  # where a SenML sum goes, in canonical unit x s ...
    sum_factor: float = 1.0  # ... times this factor

    def to_canonical(self, value: float, unit: str | None) -> float | None:
        """`value` converted to the canonical unit, or None if `unit` is not accepted."""
        factor = self.factors.get(self.unit if unit is None else unit)
        return None if factor is None else value * factor


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceKind:
    name: str
    metrics: tuple[str, ...]
    report_every_s: float
    description: str


@dataclass(frozen=True, slots=True)
class Catalogue:
    metrics: dict[str, MetricSpec]
    kinds: dict[str, DeviceKind]

    def metric(self, name: str) -> MetricSpec | None:
        return self.metrics.get(name)


def catalogue_from_model(model: CatalogueFile) -> Catalogue:
    metrics = {
        name: MetricSpec(
            name=name,
            unit=m.unit,
            valid_min=m.valid[0],
            valid_max=m.valid[1],
            factors={m.unit: 1.0, **m.also_accepts},
            description=m.description,
            states=dict(m.states),
            sum_metric=m.sum.metric if m.sum else None,
            sum_factor=m.sum.factor if m.sum else 1.0,
        )
        for name, m in model.metrics.items()
    }
    kinds = {
        name: DeviceKind(
            name=name,
            metrics=tuple(k.metrics),
            report_every_s=k.report_every_s,
            description=k.description,
        )
        for name, k in model.device_kinds.items()
    }
    return Catalogue(metrics, kinds)


def load_catalogue(path: Path) -> tuple[Catalogue, LocatedYaml]:
    model, doc = load_model(path, CatalogueFile)
    return catalogue_from_model(model), doc
