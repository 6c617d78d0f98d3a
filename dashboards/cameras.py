"""Cameras: health of each CCTV camera and what the vision workers read from it.

Measure names and units are the FrameAnalysis table (pantau/frame_analysis.py): each
measure is stored like a reading, one measurement per measure name, the camera as the
`device` tag (with the camera's zones and agency) and a `region` tag for per-region
measures. If the vision writer changes a name or a tag, change it here once.
"""

from __future__ import annotations

from dashboards.model import Dashboard, Panel, SqlQuery
from dashboards.queries import incidents_sql, series
from dashboards.variables import zone_variables
from pantau.city import City

CAMERA_TAG = "device"
REGION_TAG = "region"

# measure name -> (title, Grafana unit)
HEALTH = {
    "camera_sharpness": ("Sharpness (1 = as the reference frame)", "none"),
    "camera_brightness": ("Brightness (0 black .. 1 white)", "none"),
    "camera_frozen": ("Frozen picture", "s"),
    "camera_occlusion": ("Occlusion (share of the view covered)", "percentunit"),
    "camera_shift": ("View shift (share of the width)", "percentunit"),
}


def build(city: City) -> Dashboard:
    faults = Panel(
        title="Camera faults now",
        type="state-timeline",
        targets=(series("camera_fault", by=CAMERA_TAG, agg="max", fill="previous"),),
        mappings=(
            {
                "type": "value",
                "options": {
                    "0": {"text": "ok", "color": "green"},
                    "1": {"text": "fault", "color": "red"},
                },
            },
        ),
        options={"showValue": "never", "mergeValues": True},
        width=24,
        height=6,
        description="1 while any fault (blur, dark, overexposed, frozen, occluded, shifted) "
        "is raised on the camera's frames.",
    )
    health = tuple(
        Panel(
            title=title,
            type="timeseries",
            targets=(series(name, by=CAMERA_TAG),),
            unit=unit,
            width=8,
        )
        for name, (title, unit) in HEALTH.items()
    )
    occupancy = Panel(
        title="Region occupancy",
        type="timeseries",
        targets=(series("region_occupancy", by=(CAMERA_TAG, REGION_TAG)),),
        unit="percentunit",
        width=8,
    )
    stopped = Panel(
        title="Stopped traffic per lane",
        type="timeseries",
        targets=(series("stopped_traffic", by=(CAMERA_TAG, REGION_TAG), agg="max"),),
        unit="s",
        width=8,
    )
    depth = Panel(
        title="Water depth read on the staff gauge",
        type="timeseries",
        targets=(series("water_depth", by=CAMERA_TAG),),
        unit="lengthcm",
        width=8,
    )
    incidents = Panel(
        title="Camera incidents",
        type="table",
        targets=(
            SqlQuery(
                sql=incidents_sql(
                    city,
                    "i.id, i.hazard, i.severity_current AS severity, z.name AS zone,"
                    " i.evidence_device_ids AS cameras, i.opened_at, i.workflow_state AS workflow",
                    where="i.hazard IN ('camera_fault', 'data_quality')"
                    " AND $__timeFilter(i.opened_at)",
                    tail="ORDER BY i.opened_at DESC",
                )
            ),
        ),
        width=24,
    )
    return Dashboard(
        uid="pantau-cameras",
        title="Pantau · Cameras",
        description="CCTV camera health and the vision analyses (FrameAnalysis measures).",
        panels=(faults, *health, occupancy, stopped, depth, incidents),
        variables=zone_variables(city),
        tags=("pantau", "cameras"),
    )
