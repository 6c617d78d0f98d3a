"""Cameras: health of each CCTV camera and what the vision workers read from it.

Measure names and units are the FrameAnalysis table (pantau/frame_analysis.py); ingest
stores each measure like a reading (ingest/cameras.py): one measurement per measure
name, tags `agency, camera, device, kecamatan, kelurahan, kind` and `region` for
per-region measures; camera states in `camera_state` (field `online`), the frames that
raised a fault in `camera_evidence` (fields `faults`, `path`).
"""

from __future__ import annotations

from dashboards import labels, links
from dashboards.model import Dashboard, InfluxQuery, Panel, SqlQuery
from dashboards.queries import BUCKET, TAGS, WINDOW, incident_annotations, incidents_sql, series
from dashboards.variables import level_variables, zone_variables
from pantau.city import City

CAMERA_TAG = "camera"
REGION_TAG = "region"

# measure name -> (title, Grafana unit)
HEALTH = {
    "camera_sharpness": ("Ketajaman (1 = seperti gambar acuan)", "none"),
    "camera_brightness": ("Kecerahan (0 hitam .. 1 putih)", "none"),
    "camera_frozen": ("Gambar beku", "s"),
    "camera_occlusion": ("Tertutup (bagian pandangan)", "percentunit"),
    "camera_shift": ("Pandangan bergeser (bagian lebar)", "percentunit"),
}

# Vision analyses a stream every few seconds: a 5-minute bucket without one means the
# camera (or its vision worker) is silent (BUCKET: 5 minutes, or the window of the level
# a long range reads). The camera state topic is written only on change and vision has
# no Last Will, so a dead worker's last "online" would stay.


def build(city: City) -> Dashboard:
    receiving = Panel(
        title="Kamera menerima gambar (per 5 menit; abu-abu: tidak ada data)",
        type="state-timeline",
        targets=series("camera_sharpness", by=CAMERA_TAG, agg="count", fill="null"),
        interval=BUCKET,
        mappings=(
            {
                "type": "range",
                "options": {
                    "from": 1,
                    "to": None,
                    "result": {"text": "Menerima", "color": "green"},
                },
            },
            # InfluxDB counts an empty bucket as 0: that is no data too
            labels.value_map({"0": (labels.NO_DATA_TEXT, labels.NO_DATA_COLOUR)}),
            labels.NO_DATA,
        ),
        options={"showValue": "never", "mergeValues": True},
        width=24,
        height=6,
        description="Analisis yang diterima dari tiap kamera. Tanpa analisis dalam 5 menit: "
        "kamera atau pekerja vision-nya diam (abu-abu), bukan 'online'.",
    )
    evidence = Panel(
        title="Gangguan yang muncul, dengan gambar buktinya",
        type="table",
        targets=(
            InfluxQuery(
                query='SELECT "faults", "path" FROM "camera_evidence" WHERE $timeFilter '
                f'AND {TAGS} GROUP BY "{CAMERA_TAG}"',
                result_format="table",
            ),
        ),
        overrides=(
            labels.column("faults", "Gangguan"),
            labels.column("path", "Gambar bukti"),
            labels.column("camera", "Kamera"),
        ),
        width=24,
    )
    faults = Panel(
        title="Gangguan kamera (per 5 menit; abu-abu: tidak ada data)",
        type="state-timeline",
        targets=series("camera_fault", by=CAMERA_TAG, agg="max", fill="null"),
        interval=BUCKET,
        mappings=(
            labels.value_map({"0": ("Normal", "green"), "1": ("Gangguan", "red")}),
            labels.NO_DATA,
        ),
        options={"showValue": "never", "mergeValues": True},
        width=24,
        height=6,
        description="Gangguan: buram, gelap, terlalu terang, beku, tertutup atau bergeser.",
    )
    health = tuple(
        Panel(
            title=title,
            type="timeseries",
            targets=series(name, by=CAMERA_TAG),
            interval=WINDOW,
            unit=unit,
            width=8,
        )
        for name, (title, unit) in HEALTH.items()
    )
    occupancy = Panel(
        title="Keterisian wilayah",
        type="timeseries",
        targets=series("region_occupancy", by=(CAMERA_TAG, REGION_TAG)),
        interval=WINDOW,
        unit="percentunit",
        width=8,
    )
    stopped = Panel(
        title="Kendaraan berhenti per lajur",
        type="timeseries",
        targets=series("stopped_traffic", by=(CAMERA_TAG, REGION_TAG), agg="max"),
        interval=WINDOW,
        unit="s",
        width=8,
    )
    depth = Panel(
        title="Kedalaman air pada papan duga",
        type="timeseries",
        targets=series("water_depth", by=CAMERA_TAG),
        interval=WINDOW,
        unit="lengthcm",
        width=8,
    )
    incidents = Panel(
        title="Insiden kamera",
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
        overrides=labels.incident_columns(),
        width=24,
    )
    return Dashboard(
        uid="pantau-cameras",
        title="Pantau · Kamera",
        description="Kesehatan kamera CCTV dan hasil analisis vision (ukuran FrameAnalysis).",
        panels=(receiving, faults, *health, occupancy, stopped, depth, evidence, incidents),
        timezone=city.facts.time_zone.key,
        variables=(
            *zone_variables(city),
            links.API,
            *level_variables("rp", "rp_window", "rp_bucket"),
        ),
        annotations=(incident_annotations(city, ("camera_fault", "data_quality")),),
        tags=("pantau", "cameras"),
    )
