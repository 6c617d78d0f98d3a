"""The auditor's signed KPI report: a month's figures per scope, the incidents they
come from, and the chains' anchor, in one document an auditor can recompute.

Every incident that bears on the month (opened before its end, not resolved before its
start) is listed with the timestamps the formulas of api/kpi.py read; `compute` over
the listed incidents of a scope, at the report's `as_of`, gives that scope's figures.
Sensor and camera availability come from InfluxDB, not from incidents: the report
states them as inputs.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from pantau.store.chain import ChainReport

from .context import ApiContext
from .kpi import IncidentFacts, Kpis, compute, score
from .kpi_queries import (
    camera_availability,
    facts,
    in_scope,
    report_scopes,
    sensor_availability,
)
from .principal import Principal

KIND = "pantau-kpi-report"


def _iso(v: datetime | None) -> str | None:
    return None if v is None else v.isoformat()


def incident_record(ctx: ApiContext, f: IncidentFacts) -> dict[str, Any]:
    return {
        "id": f.id,
        "zone_id": f.zone_id,
        "kecamatan_id": ctx.geo.kecamatan_of(f.zone_id),
        "agency": f.agency,
        "hazard": f.hazard.value,
        "severity_max": int(f.severity_max),
        "workflow_state": f.workflow_state.value,
        "opened_at": _iso(f.opened_at),
        "acknowledged_at": _iso(f.acknowledged_at),
        "resolved_at": _iso(f.resolved_at),
        "sla_ack_due": _iso(f.sla_ack_due),
        "sla_resolve_due": _iso(f.sla_resolve_due),
        "reopen_count": f.reopen_count,
        "evidence_first_at": _iso(f.evidence_first_at),
        "ratings": list(f.ratings),
    }


def _figures(k: Kpis) -> dict[str, Any]:
    out = asdict(k)
    for name in ("start", "end", "as_of"):
        out[name] = getattr(k, name).isoformat()
    return out


def build(
    ctx: ApiContext,
    who: Principal,
    *,
    month: str,
    start: datetime,
    end: datetime,
    chains: ChainReport,
) -> dict[str, Any]:
    now = ctx.clock.now()
    scopes: list[dict[str, Any]] = []
    listed: dict[int, IncidentFacts] = {}
    for scope in report_scopes(ctx, who):
        scope_facts = facts(ctx, who, scope, start, end)
        listed.update((f.id, f) for f in scope_facts)
        present_until = min(end, now)
        k = score(
            compute(
                scope_facts,
                start,
                end,
                now,
                availability_pct=sensor_availability(
                    ctx, in_scope(ctx, who, scope, ctx.city.devices.values()), start, present_until
                ),
                camera_availability_pct=camera_availability(
                    ctx, in_scope(ctx, who, scope, ctx.cameras.values()), start, present_until
                ),
            ),
            ctx.kpi,
        )
        scopes.append({"scope": scope.kind.value, "id": scope.id, "figures": _figures(k)})
    return {
        "kind": KIND,
        "version": 1,
        "city": ctx.city.facts.display_name,
        "month": month,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "as_of": min(end, now).isoformat(),
        "generated_at": now.isoformat(),
        "generated_by": who.actor,
        "kpi_config": ctx.kpi.model_dump(mode="json"),
        "chains": {"ok": chains.ok, "breaks": len(chains.breaks), **chains.anchor()},
        "scopes": scopes,
        "incidents": [incident_record(ctx, f) for _, f in sorted(listed.items())],
    }
