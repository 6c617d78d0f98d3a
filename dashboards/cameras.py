"""Cameras: health of each CCTV camera and what the vision workers read from it.

Measure names and units are the FrameAnalysis table (pantau/frame_analysis.py); ingest
stores each measure like a reading (ingest/cameras.py): one measurement per measure
name, tags `agency, camera, device, kecamatan, kelurahan, kind` and `region` for
per-region measures; camera states in `camera_state` (field `online`), the frames that
raised a fault in `camera_evidence` (fields `faults`, `path`).
"""

from __future__ import annotations

from dashboards.model import Dashboard, InfluxQuery, Panel, SqlQuery
from dashboards.queries import TAGS, incidents_sql, series
from dashboards.variables import zone_variables
from pantau.city import City

CAMERA_TAG = "camera"
REGION_TAG = "region"

# measure name -> (title, Grafana unit)
HEALTH = {
    "camera_sharpness": ("Sharpness (1 = as the reference frame)", "none"),
    "camera_brightness": ("Brightness (0 black .. 1 white)", "none"),
    "camera_frozen": ("Frozen picture", "s"),
    "camera_occlusion": ("Occlusion (share of the view covered)", "percentunit"),
    "camera_shift": ("View shift (share of the width)", "percentunit"),
}


ONLINE = (
    {
        "type": "value",
        "options": {
            "0": {"text": "offline", "color": "red"},
            "1": {"text": "online", "color": "green"},
        },
    },
)


def build(city: City) -> Dashboard:
    online = Panel(
        title="Camera stream online",
        type="state-timeline",
        targets=(
            series("camera_state", by=CAMERA_TAG, agg="last", fill="previous", field="online"),
        ),
        mappings=ONLINE,
        options={"showValue": "never", "mergeValues": True},
        width=24,
        height=6,
        description="The vision worker's state of each stream (online, reconnecting = 0, "
        "offline = 0), from the retained {root}/cameras/{id}/status.",
    )
    evidence = Panel(
        title="Faults raised, with their evidence frame",
        type="table",
        targets=(
            InfluxQuery(
                query='SELECT "faults", "path" FROM "camera_evidence" WHERE $timeFilter '
                f'AND {TAGS} GROUP BY "{CAMERA_TAG}"',
                result_format="table",
            ),
        ),
        width=24,
    )
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
        panels=(online, faults, *health, occupancy, stopped, depth, evidence, incidents),
        variables=zone_variables(city),
        tags=("pantau", "cameras"),
    )
