"""Per device kind: a foreign field name -> a catalogue metric (and the unit it is in).

Shared by the LoRaWAN bridge (decoded-payload fields) and the Sparkplug bridge (metric
names). Checked at load against the catalogue: the metric must be one the kind reports.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from bridges.outputs import Value
from pantau.catalogue import Catalogue
from pantau.errors import ConfigError, RejectedInput
from pantau.yamlconf import LocatedYaml


class FieldMap(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str
    unit: str | None = Field(default=None, description="the unit the field is in (SenML)")


def _short(value: Any) -> Any:
    return {"metric": value} if isinstance(value, str) else value


Fields = dict[str, Annotated[FieldMap, BeforeValidator(_short)]]
KindFields = dict[str, Fields]


def check_fields(
    kinds: KindFields, catalogue: Catalogue, doc: LocatedYaml, key: str
) -> list[ConfigError]:
    errors = []
    for kind, fields in kinds.items():
        spec = catalogue.kinds.get(kind)
        if spec is None:
            known = ", ".join(catalogue.kinds)
            errors.append(doc.error((key, kind), f"no device kind {kind!r} (kinds: {known})"))
            continue
        for name, field in fields.items():
            if field.metric not in spec.metrics:
                errors.append(
                    doc.error(
                        (key, kind, name),
                        f"{field.metric!r} is not a metric of a {kind} "
                        f"(expected one of {', '.join(spec.metrics)})",
                    )
                )
    return errors


def value_of(raw: Any, what: str) -> float | bool | str:
    """A foreign value as a SenML value, or why not."""
    if isinstance(raw, bool | str):
        return raw
    if isinstance(raw, int | float):
        number = float(raw) if abs(raw) < 1e300 else math.inf
        if not math.isfinite(number):
            raise RejectedInput("out_of_range", f"{what} is not a finite number")
        return number
    raise RejectedInput(
        "unsupported_value", f"{what} is a {type(raw).__name__}, not a number, boolean or state"
    )


def mapped(fields: Fields, name: str, raw: Any) -> Value | None:
    """The reading for one foreign field; None if the kind maps no such field."""
    field = fields.get(name)
    if field is None:
        return None
    return Value(field.metric, value_of(raw, f"field {name!r}"), field.unit)
