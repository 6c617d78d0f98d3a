"""The season report: one self-contained HTML page (the map inline) a planner can hand
to Bappeda: the period, the ranking, the map, totals per kecamatan and how every figure
is computed. Printable; the map is inline, the style sheet is Pantau's (the pages' CSP
allows no inline style)."""

from __future__ import annotations

import base64
from collections import defaultdict
from datetime import datetime
from html import escape

from .context import ApiContext
from .planning import Hotspot

TOP = 15
NO_FLOOD = "<tr><td colspan='7'>Tidak ada banjir tercatat / no flood recorded.</td></tr>"


def _num(v: float | int | None, digits: int = 1) -> str:
    if v is None:
        return "-"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def render(
    ctx: ApiContext,
    spots: list[Hotspot],
    *,
    start: datetime,
    end: datetime,
    png: bytes,
    links: dict[str, str],
) -> str:
    tz = ctx.city.facts.time_zone
    city = escape(ctx.city.facts.display_name)
    period = f"{start.astimezone(tz):%d %b %Y} to {end.astimezone(tz):%d %b %Y}"
    flooded = [h for h in spots if h.flood_hours > 0 or h.incidents > 0]
    rows = "\n".join(
        f"<tr><td class='n'>{h.rank}</td><td>{escape(h.kelurahan)}</td>"
        f"<td>{escape(h.kecamatan)}</td><td class='n'>{_num(h.flood_hours)}</td>"
        f"<td class='n'>{h.incidents}</td><td class='n'>{_num(h.peak_depth_cm)}</td>"
        f"<td class='n'>{h.recurrence_days}</td></tr>"
        for h in spots[:TOP]
        if h.flood_hours > 0 or h.incidents > 0
    )
    by_kec: dict[str, list[Hotspot]] = defaultdict(list)
    for h in flooded:
        by_kec[h.kecamatan].append(h)
    kec_rows = "\n".join(
        f"<tr><td>{escape(name)}</td><td class='n'>{len(hs)}</td>"
        f"<td class='n'>{_num(sum(h.flood_hours for h in hs))}</td>"
        f"<td class='n'>{sum(h.incidents for h in hs)}</td></tr>"
        for name, hs in sorted(by_kec.items(), key=lambda kv: -sum(h.flood_hours for h in kv[1]))
    )
    downloads = " · ".join(f"<a href='{escape(u)}'>{escape(n)}</a>" for n, u in links.items())
    image = base64.b64encode(png).decode("ascii")
    total_hours = sum(h.flood_hours for h in spots)
    return f"""<!doctype html>
<html lang="id"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Laporan musim banjir {city}, {escape(period)}</title>
<link rel="stylesheet" href="/app/static/season.css"></head>
<body><main>
<h1>Laporan musim banjir — {city}</h1>
<p class="meta">Flood season report · {escape(period)} · Pantau, from the incident history</p>
<dl>
<dt>Kelurahan tergenang / flooded</dt><dd id="flooded">{len(flooded)} of {len(spots)}</dd>
<dt>Jam banjir / flood hours</dt><dd>{_num(total_hours)} (sum over kelurahan)</dd>
<dt>Kejadian banjir / flood incidents</dt><dd>{sum(h.incidents for h in spots)}</dd>
</dl>
<h2>Peta / map</h2>
<img id="map" src="data:image/png;base64,{image}"
 alt="Kelurahan of {city} shaded by flood hours, {escape(period)}; the top five numbered by rank">
<h2>Peringkat kelurahan / ranking (top {TOP})</h2>
<table id="ranking"><thead><tr><th scope="col">#</th><th scope="col">Kelurahan</th>
<th scope="col">Kecamatan</th><th scope="col">Jam banjir</th><th scope="col">Kejadian</th>
<th scope="col">Puncak (cm)</th><th scope="col">Hari berulang</th></tr></thead>
<tbody>{rows or NO_FLOOD}</tbody></table>
<h2>Per kecamatan</h2>
<table><thead><tr><th scope="col">Kecamatan</th><th scope="col">Kelurahan tergenang</th>
<th scope="col">Jam banjir</th><th scope="col">Kejadian</th></tr></thead>
<tbody>{kec_rows}</tbody></table>
<h2>Cara menghitung / method</h2>
<ul>
<li><b>Jam banjir</b>: hours in which at least one kelurahan-level flood incident was active
(condition events on its timeline, device time), overlaps counted once, clipped to the period.</li>
<li><b>Kejadian</b>: flood incidents opened in the period. <b>Puncak</b>: the highest water
reading in their evidence (station gauge, cm above the channel bed; flood camera staff gauge).</li>
<li><b>Hari berulang</b>: distinct days (WIB) with a flood incident active.</li>
<li>Kecamatan-wide alerts are left out: they do not say which kelurahan. Rank: flood hours,
then incidents, peak, recurrence.</li>
</ul>
<p>Data: {downloads}</p>
<p class="meta">Generated {ctx.clock.now().astimezone(tz):%Y-%m-%d %H:%M %Z}.</p>
</main></body></html>
"""
