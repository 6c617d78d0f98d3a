// The ops page (no inline script: the CSP allows only files from this origin).
"use strict";
const SVG = "http://www.w3.org/2000/svg";
let projection = null;

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

async function drawMap() {
  const zones = await Pantau.api("/zones?level=kelurahan");
  projection = projection || project(zones.features);
  const svg = document.getElementById("map");
  svg.setAttribute("viewBox", `0 0 ${projection.width} ${projection.height.toFixed(0)}`);
  svg.replaceChildren(...zones.features.map((f) => {
    const p = document.createElementNS(SVG, "path");
    p.setAttribute("d", pathOf(f.geometry));
    p.setAttribute("class", "zone");
    p.setAttribute("fill", SEVERITY_COLOURS[f.properties.status]);
    p.setAttribute("data-zone", f.id);
    p.setAttribute("data-status", f.properties.status);
    const title = document.createElementNS(SVG, "title");
    title.textContent = `${f.properties.name}: ${f.properties.status} (${f.properties.active_incidents})`;
    p.append(title);
    p.addEventListener("mouseenter", () => (document.getElementById("hover").textContent = title.textContent));
    return p;
  }));
}

async function listIncidents() {
  const page = await Pantau.api("/incidents?active=true&limit=200");
  document.getElementById("summary").textContent = `${page.count} kejadian aktif`;
  document.getElementById("incidents").replaceChildren(...page.data.map((i) =>
    el("tr", { "data-incident": String(i.id) },
      el("td", {}, el("span", { class: "dot", style: `background:${SEVERITY_COLOURS[i.severity]}` })),
      el("td", {}, `${i.hazard} (${i.severity})`),
      el("td", {}, i.zone_name, ...(i.awaiting_verification ? [unverifiedMark(i)] : [])),
      el("td", {}, i.workflow_state),
      el("td", {}, localTime(i.opened_at)))));
}

let pending = null;
function soon() {
  clearTimeout(pending);
  pending = setTimeout(() => Promise.all([drawMap(), listIncidents()]), 300);
}

async function start() {
  document.getElementById("login").classList.add("hidden");
  document.getElementById("board").classList.remove("hidden");
  document.getElementById("legend").replaceChildren(...Object.entries(SEVERITY_COLOURS).map(([name, c]) =>
    el("span", {}, el("span", { class: "dot", style: `background:${c}` }), " " + name)));
  await Promise.all([drawMap(), listIncidents()]);
  document.body.setAttribute("data-ready", "1");
  Pantau.stream(soon, (up) => (document.getElementById("live").textContent = up ? "● langsung" : "○ terputus"));
}

Pantau.loginForm(start);
