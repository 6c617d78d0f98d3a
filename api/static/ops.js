// The ops page (no inline script: the CSP allows only files from this origin): active
// incidents, most severe then oldest first, filtered; the map coloured by them; an
// incident's detail at its own address, /app/ops/incidents/{id} (ops-detail.js).
"use strict";
const SVG = "http://www.w3.org/2000/svg";
let projection = null;
let zones = null; // kelurahan features, drawn once
let incidents = []; // the active incidents in scope, as the API lists them
const names = { agency: {}, kecamatan: {} };

// Equirectangular projection scaled by cos(latitude): good enough for one city.
function project(features) {
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  const each = (g, f) => (g.type === "Polygon" ? [g.coordinates] : g.coordinates)
    .forEach((poly) => poly.forEach((ring) => ring.forEach(f)));
  features.forEach((ft) => each(ft.geometry, ([x, y]) => {
    x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
  }));
  const k = Math.cos(((y0 + y1) / 2) * Math.PI / 180);
  const scale = 1000 / ((x1 - x0) * k);
  return { width: 1000, height: (y1 - y0) * scale,
    point: ([x, y]) => [((x - x0) * k * scale).toFixed(1), ((y1 - y) * scale).toFixed(1)], each };
}

function pathOf(geometry) {
  let d = "";
  (geometry.type === "Polygon" ? [geometry.coordinates] : geometry.coordinates).forEach((poly) =>
    poly.forEach((ring) => { d += "M" + ring.map((p) => projection.point(p).join(",")).join("L") + "Z"; }));
  return d;
}

const filters = () => ({
  hazard: document.getElementById("f-hazard").value,
  agency: document.getElementById("f-agency").value,
  kecamatan: document.getElementById("f-kecamatan").value,
  state: document.getElementById("f-state").value,
});

function shown() {
  const f = filters();
  return incidents.filter((i) => (!f.hazard || i.hazard === f.hazard) &&
    (!f.agency || i.agency === f.agency) &&
    (!f.kecamatan || i.kecamatan_id === f.kecamatan || i.zone_level === "kota") &&
    (!f.state || i.workflow_state === f.state))
    .sort((a, b) => SEVERITY_RANK[b.severity] - SEVERITY_RANK[a.severity] ||
      a.opened_at.localeCompare(b.opened_at) || a.id - b.id);
}

// Where an incident is, as people name it: a kelurahan with its kecamatan, or the
// whole kecamatan / city when it was raised on one.
function placeOf(i) {
  const kec = names.kecamatan[i.kecamatan_id] || i.kecamatan_id || "";
  if (i.zone_level === "kelurahan") return `${i.zone_name}, Kec. ${kec}`;
  if (i.zone_level === "kecamatan") return `Seluruh Kec. ${i.zone_name}`;
  return `Seluruh ${i.zone_name}`;
}

// Each kelurahan takes the worst of its own incidents and of those raised on its whole
// kecamatan or on the city.
function paintMap(list) {
  const worst = {}; const count = {}; const wide = {};
  const hit = (id, i, isWide) => {
    if (!worst[id] || SEVERITY_RANK[i.severity] > SEVERITY_RANK[worst[id]]) worst[id] = i.severity;
    count[id] = (count[id] || 0) + 1;
    if (isWide) wide[id] = true;
  };
  for (const i of list) {
    if (i.zone_level === "kelurahan") hit(i.zone_id, i, false);
    else zones.forEach((z) => {
      if (i.zone_level === "kota" || z.properties.parent_id === i.zone_id) hit(z.id, i, true);
    });
  }
  document.querySelectorAll("#map path.zone").forEach((p) => {
    const id = p.getAttribute("data-zone");
    const status = worst[id] || "normal";
    p.setAttribute("fill", SEVERITY_COLOURS[status]);
    p.setAttribute("data-status", status);
    p.classList.toggle("wide", !!wide[id]);
    p.querySelector("title").textContent = `${p.getAttribute("data-name")}: ${SEVERITY_ID[status]}` +
      ` (${count[id] || 0} kejadian${wide[id] ? ", termasuk se-kecamatan/kota" : ""})`;
  });
}

async function drawMap() {
  const fc = await Pantau.api("/zones?level=kelurahan");
  zones = fc.features;
  projection = project(zones);
  const svg = document.getElementById("map");
  svg.setAttribute("viewBox", `0 0 ${projection.width} ${projection.height.toFixed(0)}`);
  svg.replaceChildren(...zones.map((f) => {
    const p = document.createElementNS(SVG, "path");
    p.setAttribute("d", pathOf(f.geometry));
    p.setAttribute("class", "zone");
    p.setAttribute("data-zone", f.id);
    p.setAttribute("data-name", f.properties.name);
    const title = document.createElementNS(SVG, "title");
    p.append(title);
    p.addEventListener("mouseenter", () => (document.getElementById("hover").textContent = title.textContent));
    p.addEventListener("click", () => {
      document.getElementById("f-kecamatan").value = f.properties.parent_id || "";
      render();
    });
    return p;
  }));
}

function row(i) {
  const late = overdue(i);
  const open = () => OpsDetail.go(i.id);
  return el("tr", { "data-incident": String(i.id), "data-severity": i.severity,
      class: i.id === OpsDetail.current ? "selected" : "" },
    el("td", {}, el("span", { class: "dot", style: `background:${SEVERITY_COLOURS[i.severity]}` }),
      " " + SEVERITY_ID[i.severity]),
    el("td", {}, el("a", { href: `/app/ops/incidents/${i.id}`, onclick: (e) => { e.preventDefault(); open(); } },
      hazardName(i.hazard)), ...(i.awaiting_verification ? [el("span", { class: "tag" }, "laporan warga")] : [])),
    el("td", {}, placeOf(i)),
    el("td", { "data-label": "Status" }, stateName(i.workflow_state)),
    el("td", { "data-label": "Dibuka" }, zonedTime(i.opened_at)),
    el("td", { "data-label": "Terima sebelum", class: late.ack ? "late" : "" }, zonedTime(i.sla_ack_due),
      ...(late.ack ? [el("strong", {}, " terlambat")] : [])));
}

function render() {
  const list = shown();
  document.getElementById("summary").textContent =
    `${incidents.length} kejadian aktif` + (list.length !== incidents.length ? ` · ${list.length} ditampilkan` : "");
  document.getElementById("incidents").replaceChildren(...list.map(row));
  document.getElementById("none").classList.toggle("hidden", list.length > 0);
  paintMap(list);
}

async function listIncidents() {
  const page = await Pantau.api("/incidents?active=true&limit=500");
  incidents = page.data;
  render();
}

function fillSelect(id, entries) {
  const select = document.getElementById(id);
  select.append(...entries.map(([value, label]) => el("option", { value }, label)));
  select.addEventListener("change", render);
}

async function fillFilters() {
  const [agencies, kec] = await Promise.all([Pantau.api("/agencies"), Pantau.api("/zones?level=kecamatan")]);
  agencies.forEach((a) => (names.agency[a.id] = a.short || a.name));
  kec.features.forEach((f) => (names.kecamatan[f.id] = f.properties.name));
  fillSelect("f-hazard", Object.entries(HAZARD_ID).sort((a, b) => a[1].localeCompare(b[1])));
  fillSelect("f-agency", agencies.map((a) => [a.id, a.short || a.name]));
  fillSelect("f-kecamatan", kec.features.map((f) => [f.id, f.properties.name]).sort((a, b) => a[1].localeCompare(b[1])));
  fillSelect("f-state", Object.entries(STATE_ID).filter(([s]) => !["resolved", "closed"].includes(s)));
}

let pending = null;
function soon(event) {
  clearTimeout(pending);
  pending = setTimeout(() => listIncidents().then(() => OpsDetail.refresh()), 300);
}

async function start() {
  document.getElementById("login").classList.add("hidden");
  document.getElementById("board").classList.remove("hidden");
  document.getElementById("legend").replaceChildren(...Object.entries(SEVERITY_COLOURS).map(([name, c]) =>
    el("span", {}, el("span", { class: "dot", style: `background:${c}` }), " " + SEVERITY_ID[name])),
    el("span", {}, el("span", { class: "dot wide-mark" }), " se-kecamatan/kota"));
  await Promise.all([drawMap(), fillFilters()]);
  await listIncidents();
  OpsDetail.init(names, listIncidents);
  await OpsDetail.fromLocation();
  document.body.setAttribute("data-ready", "1");
  Pantau.stream(soon, (up) => (document.getElementById("live").textContent = up ? "● langsung" : "○ terputus"));
}

Pantau.loginForm(start);
