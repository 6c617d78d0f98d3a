"""Rain as the rules see it: the heavy-rain rule judges each gauge's 60-minute mean
against BMKG's hourly classes (hujan lebat from 10 mm/h -> Waspada, sangat lebat from
20 mm/h -> Siaga), not the raw 1-minute rate a tipping bucket gives (0 or 12 mm/h)."""

from __future__ import annotations

from dashboards import labels
from dashboards.model import InfluxQuery, Panel
from dashboards.queries import AGG_SUFFIX, RP, TAGS, WINDOW
from pantau.incidents import Severity


def mean_60m(by: str = "kecamatan") -> tuple[InfluxQuery, InfluxQuery]:
    """Each gauge's 60-minute mean rain, the worst gauge per `by` tag: what the
    heavy-rain rule judges (config/rules.yaml: mean_over 60m, BMKG's hourly classes).
    From raw readings a rolling mean that starts 60 minutes before the range, so its
    first point is a full hour; from aggregates (long ranges, `$rp`) the mean of each
    clock hour, sum / count of its windows."""
    outer = 'SELECT max("rain_60m") FROM ({}) WHERE $timeFilter '
    outer += f'GROUP BY time($__interval), "{by}" fill(none)'
    span = f"time > ${{__from}}ms - 60m AND time <= ${{__to}}ms AND {TAGS}"
    raw = (
        'SELECT moving_average(mean("value"), 60) AS "rain_60m" '
        f'FROM "{RP}"."rainfall_rate" WHERE {span} '
        'GROUP BY time(1m), "device", "kecamatan" fill(none)'
    )
    hourly = (
        'SELECT sum("sum") / sum("count") AS "rain_60m" '
        f'FROM "{RP}"."rainfall_rate" WHERE {span} '
        'GROUP BY time(1h), "device", "kecamatan" fill(none)'
    )
    return (
        InfluxQuery(query=outer.format(raw), alias=f"$tag_{by}"),
        InfluxQuery(ref_id="A" + AGG_SUFFIX, query=outer.format(hourly), alias=f"$tag_{by}"),
    )


# BMKG hourly classes the heavy-rain rule raises on, in the severities it raises.
STEPS: tuple[tuple[float | None, str], ...] = (
    (None, "green"),
    (10.0, labels.SEVERITY[Severity.WASPADA][1]),  # lebat -> Waspada
    (20.0, labels.SEVERITY[Severity.SIAGA][1]),  # sangat lebat -> Siaga
)


WHO = {"kecamatan": "per kecamatan (stasiun terderas)", "device": "per stasiun hujan"}


def panel(by: str = "kecamatan", *, legend: bool = True) -> Panel:
    return Panel(
        title=f"Hujan rata-rata 60 menit {WHO[by]} - BMKG: lebat 10, sangat lebat 20 mm/jam",
        type="timeseries",
        targets=mean_60m(by),
        interval=WINDOW,
        unit="suffix:mm/jam",
        min=0,
        thresholds=STEPS,
        custom={"thresholdsStyle": {"mode": "line+area"}, "lineWidth": 2, "fillOpacity": 0},
        options={"legend": {"showLegend": legend, "displayMode": "list", "placement": "bottom"}},
        description="Rata-rata 60 menit tiap stasiun hujan: yang dinilai aturan hujan lebat "
        "(Waspada dari 10 mm/jam, Siaga dari 20 mm/jam), bukan laju 1 menit mentah. "
        "Rentang panjang (lebih dari sehari) memakai agregat: rata-rata tiap jam.",
    )
