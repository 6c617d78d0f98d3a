"""Zones, devices, crews, agencies, and the public GeoJSON and CAP 1.2 feeds."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from tests.api.conftest import World

CAP = "{urn:oasis:names:tc:emergency:cap:1.2}"


def test_zones_geojson_carries_live_status(world: World) -> None:
    h = world.headers("ops")
    kel = world.client.get("/zones", headers=h).json()
    assert kel["type"] == "FeatureCollection" and len(kel["features"]) == 104
    by_id = {f["id"]: f["properties"] for f in kel["features"]}
    assert by_id["kel-cimone"]["status"] == "siaga"
    assert by_id["kel-paninggilan"]["status"] == "awas"
    assert by_id["kel-bugel"]["status"] == "waspada"
    assert by_id["kel-sukasari"]["status"] == "normal"
    geometry = next(f["geometry"] for f in kel["features"] if f["id"] == "kel-cimone")
    assert geometry["type"] in {"Polygon", "MultiPolygon"}
    kec = world.client.get("/zones", params={"level": "kecamatan"}, headers=h).json()
    kprops = {f["id"]: f["properties"] for f in kec["features"]}
    assert len(kprops) == 13
    assert kprops["kec-karawaci"]["status"] == "siaga"  # worst of cimone and bugel
    assert kprops["kec-karawaci"]["active_incidents"] == 2
    # A crew's map shows only what it may see.
    crew = world.client.get("/zones", headers=world.headers("barat")).json()
    crew_status = {f["id"]: f["properties"]["status"] for f in crew["features"]}
    assert crew_status["kel-paninggilan"] == "normal" and crew_status["kel-cimone"] == "siaga"
    assert crew_status["kel-bugel"] == "normal"  # PUPR's, not BPBD's


def test_devices_crews_agencies(world: World) -> None:
    h = world.headers("ops")
    devices = world.client.get("/devices", headers=h).json()
    assert devices["count"] == len(world.ctx.city.devices)
    assert {d["health_source"] for d in devices["data"]} == {"unavailable"}
    crew = world.client.get("/devices", headers=world.headers("barat")).json()
    assert 0 < crew["count"] < devices["count"]
    assert {d["agency"] for d in crew["data"]} == {"bpbd"}
    assert {d["kecamatan_id"] for d in crew["data"]} <= {
        "kec-periuk",
        "kec-jati-uwung",
        "kec-cibodas",
        "kec-karawaci",
    }
    crews = world.client.get("/crews", params={"agency": "bpbd"}, headers=h).json()
    assert len(crews) == 9 and sum(c["on_shift"] for c in crews) == 3
    agencies = world.client.get("/agencies", headers=h).json()
    assert {a["id"] for a in agencies} == {"bpbd", "pupr", "dishub", "diskominfo"}


def test_public_feeds(world: World) -> None:
    # No authentication, public hazards only, no devices, no camera data.
    gj = world.client.get("/feeds/incidents.geojson").json()
    ids = {f["properties"]["id"] for f in gj["features"]}
    assert ids == {world.karawaci.id, world.ciledug.id, world.road.id}
    assert all(f["geometry"]["type"] == "Point" for f in gj["features"])
    assert "wl-001" not in str(gj)
    r = world.client.get("/feeds/cap.xml")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/atom+xml")
    feed = ET.fromstring(r.content)
    alerts = feed.findall(f".//{CAP}alert")
    assert len(alerts) == 3
    one = world.client.get(f"/feeds/cap/{world.ciledug.id}.xml")
    alert = ET.fromstring(one.content)
    assert alert.tag == f"{CAP}alert"
    for tag in ("identifier", "sender", "sent", "status", "msgType", "scope"):
        assert alert.find(f"{CAP}{tag}") is not None, tag
    info = alert.find(f"{CAP}info")
    assert info is not None
    assert info.findtext(f"{CAP}severity") == "Extreme"  # awas
    assert info.findtext(f"{CAP}urgency") == "Immediate"
    assert info.findtext(f"{CAP}category") == "Met"
    area = info.find(f"{CAP}area")
    assert area is not None and area.findtext(f"{CAP}areaDesc") == "Paninggilan"
    polygon = area.findtext(f"{CAP}polygon") or ""
    pairs = polygon.split(" ")
    assert len(pairs) >= 4 and pairs[0] == pairs[-1]
    lat, lon = map(float, pairs[0].split(","))
    assert -6.4 < lat < -6.0 and 106.5 < lon < 106.8
    # Resolved incidents leave the feeds.
    ops = world.headers("ops")
    assert world.client.post(f"/incidents/{world.ciledug.id}/acknowledge", headers=ops).is_success
    resolved = world.client.post(
        f"/incidents/{world.ciledug.id}/resolve",
        json={"code": "fixed", "note": "pompa dinyalakan", "condition_reason": "air turun"},
        headers=ops,
    )
    assert resolved.status_code == 200
    assert world.client.get(f"/feeds/cap/{world.ciledug.id}.xml").status_code == 404
    assert len(world.client.get("/feeds/incidents.geojson").json()["features"]) == 2
