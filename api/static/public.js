// The public transparency page: no login, Bahasa Indonesia by default, English on a
// switch. Reads only /public/* (cached aggregates) and, for a reporter, /reports/track.
"use strict";

const TIME_ZONE = document.querySelector('meta[name="pantau-time-zone"]').content;
const SVG_NS = "http://www.w3.org/2000/svg";
const LEVELS = ["normal", "info", "waspada", "siaga", "awas"];
const FILL = { normal: "#dcfce7", info: "#bfdbfe", waspada: "#fde047", siaga: "#fb923c", awas: "#b91c1c" };

const TEXT = {
  id: {
    title: "Pantau · Informasi Publik", switchTo: "English", switchLabel: "Read in English",
    mapTitle: "Kondisi kelurahan saat ini", layer: "Tampilkan", flood: "Banjir", road: "Jalan",
    tableOfMap: "Kondisi per kelurahan (tabel)", kelurahan: "Kelurahan", kecamatan: "Kecamatan",
    recentTitle: "Kejadian terbaru", hour: "Jam", place: "Wilayah", what: "Kejadian",
    level: "Tingkat", status: "Status", agencyTitle: "Kinerja tanggap instansi",
    agency: "Instansi", incidents: "Kejadian", ackMedian: "Median waktu tanggap",
    resolveMedian: "Median waktu selesai", sla: "Sesuai SLA", satisfaction: "Kepuasan warga",
    trackTitle: "Lacak laporan Anda", token: "Kode pelacakan", trackButton: "Lacak",
    rateLegend: "Seberapa puas Anda dengan penanganannya?", comment: "Komentar (hanya dibaca petugas)",
    rateButton: "Kirim penilaian",
    footer: "Data dari sensor, kamera dan laporan warga yang diolah Pantau; tanpa nama, foto, atau lokasi lebih rinci dari kelurahan.",
    updated: (t) => `Diperbarui ${t}`, mapSummary: (n, k, layer) => `${n} dari ${k} kelurahan dengan kejadian ${layer} aktif.`,
    recentNote: (h) => `Kejadian ${h} jam terakhir, per kelurahan dan jam (dibulatkan ke bawah).`,
    agencyNote: (d) => `${d} hari terakhir. Waktu dari kejadian dibuka; SLA: tanggap dan selesai tepat waktu.`,
    none: "Tidak ada kejadian.", minutes: (m) => `${m} mnt`, ratings: (m, n) => `${m} / 5 (${n} penilaian)`,
    active: "aktif", resolved: "selesai", normal: "normal", info: "info", waspada: "waspada", siaga: "siaga", awas: "awas",
    hazard: { flood: "banjir", heavy_rain: "hujan lebat", pump_failure: "pompa mati", traffic_jam: "macet", road_damage: "jalan rusak" },
    state: { open: "diterima, menunggu petugas", acknowledged: "ditangani petugas", dispatched: "petugas menuju lokasi", on_site: "petugas di lokasi", resolved: "selesai", closed: "ditutup", suppressed: "ditutup (bukan kejadian)" },
    report: "Laporan", received: "Diterima", where: "Kelurahan", now: "Status", handledAt: "Ditangani", doneAt: "Selesai",
    yourRating: "Penilaian Anda", notFound: "Kode pelacakan tidak dikenal.", tooMany: "Terlalu banyak permintaan; coba lagi nanti.",
    thanks: "Terima kasih atas penilaian Anda.", star: (n) => `${n} bintang`, failed: "Data tidak dapat dimuat.",
  },
  en: {
    title: "Pantau · Public information", switchTo: "Bahasa Indonesia", switchLabel: "Baca dalam Bahasa Indonesia",
    mapTitle: "Current state of the kelurahan", layer: "Show", flood: "Flood", road: "Roads",
    tableOfMap: "State per kelurahan (table)", kelurahan: "Kelurahan", kecamatan: "Kecamatan",
    recentTitle: "Recent incidents", hour: "Hour", place: "Area", what: "Incident",
    level: "Level", status: "Status", agencyTitle: "Agency response",
    agency: "Agency", incidents: "Incidents", ackMedian: "Median time to respond",
    resolveMedian: "Median time to resolve", sla: "Within SLA", satisfaction: "Citizen satisfaction",
    trackTitle: "Track your report", token: "Tracking code", trackButton: "Track",
    rateLegend: "How satisfied are you with the response?", comment: "Comment (read by staff only)",
    rateButton: "Send rating",
    footer: "Data from sensors, cameras and citizen reports processed by Pantau; no names, photos, or locations finer than a kelurahan.",
    updated: (t) => `Updated ${t}`, mapSummary: (n, k, layer) => `${n} of ${k} kelurahan with an active ${layer} incident.`,
    recentNote: (h) => `Incidents of the last ${h} hours, per kelurahan and hour (rounded down).`,
    agencyNote: (d) => `Last ${d} days. Times from the incident's opening; SLA: responded and resolved on time.`,
    none: "No incidents.", minutes: (m) => `${m} min`, ratings: (m, n) => `${m} / 5 (${n} ratings)`,
    active: "active", resolved: "resolved", normal: "normal", info: "info", waspada: "advisory", siaga: "warning", awas: "danger",
    hazard: { flood: "flood", heavy_rain: "heavy rain", pump_failure: "pump failure", traffic_jam: "traffic jam", road_damage: "road damage" },
    state: { open: "received, awaiting a crew", acknowledged: "being handled", dispatched: "crew on the way", on_site: "crew on site", resolved: "resolved", closed: "closed", suppressed: "closed (not an incident)" },
    report: "Report", received: "Received", where: "Kelurahan", now: "Status", handledAt: "Handled", doneAt: "Resolved",
    yourRating: "Your rating", notFound: "Unknown tracking code.", tooMany: "Too many requests; try again later.",
    thanks: "Thank you for your rating.", star: (n) => `${n} star${n > 1 ? "s" : ""}`, failed: "The data could not be loaded.",
  },
};

let lang = localStorage.getItem("pantau-lang") === "en" ? "en" : "id";
let data = null;
let zones = null;
let tracked = null;
const t = (key) => TEXT[lang][key];
const $ = (sel) => document.querySelector(sel);

function fmtTime(iso, withDate = true) {
  const opts = { timeZone: TIME_ZONE, hour: "2-digit", minute: "2-digit" };
  if (withDate) Object.assign(opts, { day: "numeric", month: "short" });
  return new Date(iso).toLocaleString(lang === "id" ? "id-ID" : "en-GB", opts);
}

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function badge(row, level) {
  const td = cell(row, "");
  const span = document.createElement("span");
  span.className = `sev sev-${level}`;
  span.textContent = t(level);
  td.appendChild(span);
}

function applyText() {
  document.documentElement.lang = lang;
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  $("#lang").textContent = t("switchTo");
  $("#lang").setAttribute("aria-label", t("switchLabel"));
  document.title = `${t("title")} ${document.querySelector('meta[name="pantau-city"]').content}`;
}

function layer() {
  return document.querySelector('input[name="layer"]:checked').value;
}

function project(features) {
  let minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity;
  const rings = (g) => (g.type === "Polygon" ? [g.coordinates] : g.coordinates).flat();
  for (const f of features) for (const ring of rings(f.geometry)) for (const [x, y] of ring) {
    minX = Math.min(minX, x); maxX = Math.max(maxX, x); minY = Math.min(minY, y); maxY = Math.max(maxY, y);
  }
  const k = Math.cos(((minY + maxY) / 2) * Math.PI / 180);
  const scale = 100 / ((maxX - minX) * k);
  const height = (maxY - minY) * scale;
  const pt = ([x, y]) => `${((x - minX) * k * scale).toFixed(2)},${((maxY - y) * scale).toFixed(2)}`;
  const path = (g) => rings(g).map((ring) => "M" + ring.map(pt).join("L") + "Z").join("");
  return { height, path };
}

function drawMap() {
  if (!zones || !data) return;
  const svg = $("#map");
  const { height, path } = project(zones.features);
  svg.setAttribute("viewBox", `0 0 100 ${height.toFixed(2)}`);
  const state = Object.fromEntries(data.kelurahan.map((k) => [k.id, k]));
  const which = layer();
  svg.replaceChildren();
  let affected = 0;
  for (const f of zones.features) {
    const k = state[f.id];
    const level = k ? k[which] : "normal";
    if (level !== "normal") affected += 1;
    const p = document.createElementNS(SVG_NS, "path");
    p.setAttribute("d", path(f.geometry));
    p.setAttribute("fill", FILL[level]);
    p.dataset.zone = f.id;
    p.dataset.level = level;
    const title = document.createElementNS(SVG_NS, "title");
    title.textContent = `${f.properties.name} (${f.properties.kecamatan}): ${t(level)}`;
    p.appendChild(title);
    svg.appendChild(p);
  }
  $("#map-summary").textContent = t("mapSummary")(affected, zones.features.length, t(which).toLowerCase());
  const legend = $("#legend");
  legend.replaceChildren();
  for (const level of LEVELS) {
    const li = document.createElement("li");
    const sw = document.createElement("span");
    sw.className = `sev-${level}`;
    sw.setAttribute("aria-hidden", "true");
    li.append(sw, t(level));
    legend.appendChild(li);
  }
}

function drawTables() {
  if (!data) return;
  $("#updated").textContent = t("updated")(fmtTime(data.generated_at));
  const kel = $("#kelurahan-table tbody");
  kel.replaceChildren();
  for (const k of data.kelurahan) {
    const tr = document.createElement("tr");
    cell(tr, k.name); cell(tr, k.kecamatan); badge(tr, k.flood); badge(tr, k.road);
    kel.appendChild(tr);
  }
  $("#recent-note").textContent = t("recentNote")(data.recent_hours);
  const recent = $("#recent tbody");
  recent.replaceChildren();
  for (const i of data.recent_incidents) {
    const tr = document.createElement("tr");
    cell(tr, fmtTime(i.hour)); cell(tr, i.zone); cell(tr, t("hazard")[i.hazard] || i.hazard);
    badge(tr, i.severity); cell(tr, t(i.status));
    recent.appendChild(tr);
  }
  if (!data.recent_incidents.length) {
    const tr = document.createElement("tr");
    cell(tr, t("none")).colSpan = 5;
    recent.appendChild(tr);
  }
  $("#agency-note").textContent = t("agencyNote")(data.response_days);
  const ag = $("#agencies tbody");
  ag.replaceChildren();
  const num = (v, f) => (v === null || v === undefined ? "–" : f(v));
  for (const a of data.agencies) {
    const tr = document.createElement("tr");
    const name = cell(tr, a.short);
    name.title = a.name;
    cell(tr, String(a.incidents), "num");
    cell(tr, num(a.ack_median_minutes, t("minutes")), "num");
    cell(tr, num(a.resolve_median_minutes, t("minutes")), "num");
    cell(tr, num(a.sla_pct, (v) => `${v}%`), "num");
    cell(tr, num(a.satisfaction_mean, (v) => t("ratings")(v, a.satisfaction_ratings)), "num");
    ag.appendChild(tr);
  }
}

async function load() {
  try {
    const [o, z] = await Promise.all([
      fetch("/public/overview").then((r) => { if (!r.ok) throw new Error(r.status); return r.json(); }),
      zones ? Promise.resolve(zones) : fetch("/public/kelurahan.geojson").then((r) => r.json()),
    ]);
    data = o; zones = z;
    $("#error").textContent = "";
    drawTables(); drawMap();
    document.body.dataset.loaded = "true";
  } catch (err) {
    $("#error").textContent = t("failed");
  }
}

function drawTracked() {
  if (!tracked) return;
  const s = tracked;
  const dl = $("#track-status");
  dl.replaceChildren();
  const row = (k, v) => {
    if (v === null || v === undefined) return;
    const dt = document.createElement("dt"); dt.textContent = t(k);
    const dd = document.createElement("dd"); dd.textContent = v;
    dl.append(dt, dd);
  };
  row("report", `#${s.report_id} · ${t("hazard")[s.hazard] || s.hazard}`);
  row("received", fmtTime(s.received_at));
  row("where", s.zone_name);
  row("now", t("state")[s.workflow_state] || s.workflow_state);
  row("handledAt", s.acknowledged_at && fmtTime(s.acknowledged_at));
  row("doneAt", s.resolved_at && fmtTime(s.resolved_at));
  row("yourRating", s.rating && t("star")(s.rating));
  $("#rate-form").classList.toggle("hidden", !s.can_rate);
  const stars = $("#stars");
  stars.replaceChildren();
  for (let n = 1; n <= 5; n++) {
    const label = document.createElement("label");
    const input = document.createElement("input");
    input.type = "radio"; input.name = "rating"; input.value = String(n); input.required = true;
    label.append(input, t("star")(n));
    stars.appendChild(label);
  }
  $("#track-result").classList.remove("hidden");
}

async function post(path, body) {
  const r = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  if (r.status === 404) throw new Error(t("notFound"));
  if (r.status === 429) throw new Error(t("tooMany"));
  const json = await r.json();
  if (!r.ok) throw new Error(typeof json.detail === "string" ? json.detail : t("failed"));
  return json;
}

async function track(token) {
  $("#track-message").textContent = "";
  try {
    tracked = await post("/reports/track", { token });
    drawTracked();
  } catch (err) {
    $("#track-result").classList.remove("hidden");
    $("#track-status").replaceChildren();
    $("#rate-form").classList.add("hidden");
    $("#track-message").textContent = err.message;
  }
}

$("#track-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  track($("#token").value.trim());
});

$("#rate-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const chosen = document.querySelector('input[name="rating"]:checked');
  if (!chosen) return;
  try {
    tracked = await post("/reports/track/rating", {
      token: $("#token").value.trim(), rating: Number(chosen.value), comment: $("#comment").value,
    });
    drawTracked();
    $("#track-message").textContent = t("thanks");
  } catch (err) {
    $("#track-message").textContent = err.message;
  }
});

$("#lang").addEventListener("click", () => {
  lang = lang === "id" ? "en" : "id";
  localStorage.setItem("pantau-lang", lang);
  applyText(); drawTables(); drawMap(); drawTracked();
});

document.querySelectorAll('input[name="layer"]').forEach((el) => el.addEventListener("change", drawMap));

applyText();
load();
setInterval(load, 60_000);
const fromLink = new URLSearchParams(location.hash.slice(1)).get("lacak");
if (fromLink) {
  $("#token").value = fromLink;
  history.replaceState(null, "", location.pathname);  // the token leaves the address bar
  track(fromLink);
}
