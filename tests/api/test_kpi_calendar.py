"""e-Kinerja months are the city's calendar months (config/city.yaml: Asia/Jakarta, WIB),
not UTC's: the first seven hours of a Tangerang month belong to that month."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.api.conftest import World, flood

ZONE = "kel-sukasari"  # no seeded incident here


def test_an_incident_at_03_wib_on_1_december_is_in_decembers_report(world: World) -> None:
    december_night = datetime(2026, 11, 30, 20, 0, tzinfo=UTC)  # 2026-12-01 03:00 WIB
    november_night = datetime(2026, 11, 30, 16, 0, tzinfo=UTC)  # 2026-11-30 23:00 WIB
    store = world.ctx.store
    late = store.apply(flood(ZONE, december_night)).incident
    early = store.apply(flood(ZONE, november_night, rule="flood-other")).incident
    assert late is not None and early is not None
    ops = world.headers("ops")

    def incidents(month: str) -> int:
        params = {"scope": "kelurahan", "id": ZONE, "month": month}
        r = world.client.get("/kpi", params=params, headers=ops)
        assert r.status_code == 200, r.text
        return int(r.json()["incidents"])

    assert incidents("2026-12") == 1
    assert incidents("2026-11") == 1
    assert incidents("2026-10") == 0

    report = world.client.get("/kpi/report", params={"month": "2026-12"}, headers=ops)
    assert report.status_code == 200, report.text
    (kota,) = [row for row in report.json()["data"] if row["scope"] == "kota"]
    # December on the city's clock: 1 Dec 00:00 WIB to 1 Jan 00:00 WIB.
    assert datetime.fromisoformat(kota["start"]) == datetime(2026, 11, 30, 17, 0, tzinfo=UTC)
    assert datetime.fromisoformat(kota["end"]) == datetime(2026, 12, 31, 17, 0, tzinfo=UTC)
    november = world.client.get("/kpi/report", params={"month": "2026-11"}, headers=ops).json()
    (bpbd,) = [r for r in november["data"] if r["scope"] == "agency" and r["id"] == "bpbd"]
    assert bpbd["incidents"] == 1  # the 23:00 WIB one; the seeded incidents are today's
