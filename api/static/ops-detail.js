// The ops page's incident panel: timeline, evidence chart, camera frames, citizen
// photos, crew, SLA due times, Grafana links and the operator's actions, each an API
// call (audited there). Its address is /app/ops/incidents/{id}.
"use strict";

const EVENT_ID = { condition: "Kondisi", workflow: "Status", severity: "Tingkat", sla: "Eskalasi/SLA",
  report: "Laporan warga", note: "Catatan", assignment: "Penugasan" };
const SLA_ID = { escalated_supervisor: "dieskalasi ke supervisor dinas", escalated_ops: "dieskalasi ke pusat komando" };
const REASON_ID = { opened: "dibuka", acknowledged: "diterima", verified: "diverifikasi",
  "crew on site": "kru tiba di lokasi", closed: "ditutup", suppressed: "ditahan", reopened: "dibuka lagi",
  "escalated by hand": "eskalasi manual" };

// Images fetched with the token (staff-only URLs), shown as data: URLs (the CSP allows
// them); kept across re-renders.
const images = {};
async function imageOf(url) {
  if (!images[url]) {
    const r = await fetch(url, { headers: { Authorization: `Bearer ${Pantau.token}` } });
    images[url] = r.ok ? await dataUrl(await r.blob()) : null;
  }
  return images[url];
}

function stateText(e) {
  if (e.kind === "workflow") return stateName(e.to_state);
  if (e.kind === "condition") return CONDITION_ID[e.to_state] || e.to_state;
  if (e.kind === "severity") return SEVERITY_ID[e.to_state] || e.to_state;
  if (e.kind === "sla") return SLA_ID[e.to_state] || "batas waktu ditetapkan";
  if (e.kind === "assignment") return `${e.from_state || "—"} → ${e.to_state}`;
  return "";
}

function reasonText(e) {
  // The due times the rules set are shown above, in the city's time.
  if (e.kind === "sla" && !SLA_ID[e.to_state]) return "lihat batas waktu di atas";
  if (e.kind === "workflow" && e.to_state === "resolved") {
    const [code, ...rest] = e.reason.split(": ");
    if (RESOLUTION_ID[code]) return [RESOLUTION_ID[code], ...rest].join(": ");
  }
  return REASON_ID[e.reason] || e.reason;
}

// The evidence readings as a small line chart, with the station's levels when known.
function chart(evidence, latest) {
  const pts = evidence.series;
  if (!pts.length) return el("p", { class: "meta" },
    evidence.series_source === "unavailable" ? "Data bacaan tidak tersedia saat ini." : "Tidak ada deret bacaan.");
  const W = 320, H = 110, P = 4;
  const ts = pts.map((p) => Date.parse(p.at)), vs = pts.map((p) => p.value);
  const levels = latest ? [latest.alert, latest.danger].filter((v) => v != null) : [];
  const t0 = Math.min(...ts), t1 = Math.max(...ts) || t0 + 1;
  const v0 = Math.min(...vs, ...levels), v1 = Math.max(...vs, ...levels);
  const x = (t) => P + ((t - t0) / Math.max(t1 - t0, 1)) * (W - 2 * P);
  const y = (v) => H - P - ((v - v0) / Math.max(v1 - v0, 1e-9)) * (H - 2 * P);
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("class", "chart");
  svg.setAttribute("role", "img");
  const unit = UNIT_OF[evidence.metric] || "";
  svg.setAttribute("aria-label", `${METRIC_ID[evidence.metric] || evidence.metric}: ${Math.min(...vs)}–${Math.max(...vs)} ${unit}`);
  const line = (points, cls) => {
    const l = document.createElementNS(SVG, "polyline");
    l.setAttribute("points", points.map(([a, b]) => `${a.toFixed(1)},${b.toFixed(1)}`).join(" "));
    l.setAttribute("class", cls);
    svg.append(l);
  };
  if (latest && latest.alert != null) line([[P, y(latest.alert)], [W - P, y(latest.alert)]], "level alert");
  if (latest && latest.danger != null) line([[P, y(latest.danger)], [W - P, y(latest.danger)]], "level danger");
  const byDevice = {};
  pts.forEach((p) => (byDevice[p.device_id] = byDevice[p.device_id] || []).push([x(Date.parse(p.at)), y(p.value)]));
  Object.values(byDevice).forEach((ps) => line(ps, "series"));
  return svg;
}

const OpsDetail = {
  current: null,
  note: "",
  crews: {},

  init(names, relist) {
    this.names = names;
    this.relist = relist;
    window.addEventListener("popstate", () => this.fromLocation());
  },

  async fromLocation() {
    const m = location.pathname.match(/^\/app\/ops\/incidents\/(\d+)$/);
    if (m) await this.open(Number(m[1]));
    else this.close(false);
  },

  async go(id) {
    history.pushState({}, "", `/app/ops/incidents/${id}`);
    await this.open(id);
  },

  close(push = true) {
    if (push) history.pushState({}, "", "/app/ops");
    this.current = null;
    document.body.classList.remove("with-detail");
    document.getElementById("detail").classList.add("hidden");
    document.querySelectorAll("#incidents tr.selected").forEach((r) => r.classList.remove("selected"));
  },

  async refresh() {
    if (this.current !== null) await this.open(this.current, false);
  },

  async open(id, focus = true) {
    const panel = document.getElementById("detail");
    this.current = id;
    document.querySelectorAll("#incidents tr").forEach((r) =>
      r.classList.toggle("selected", r.getAttribute("data-incident") === String(id)));
    let d;
    try {
      d = await Pantau.api(`/incidents/${id}`);
    } catch (e) {
      panel.replaceChildren(el("p", { class: "error" }, `Kejadian ${id}: ${e.message}`),
        el("button", { onclick: () => this.close() }, "Tutup"));
      panel.classList.remove("hidden");
      return;
    }
    if (this.current !== id) return;
    const fresh = await this.render(d);
    // A live event re-renders the panel: the field the operator is in keeps the focus
    // and the caret.
    const active = panel.contains(document.activeElement) ? document.activeElement : null;
    const keep = active && active.id ? active.id : null;
    const caret = active && active.tagName === "TEXTAREA" ? [active.selectionStart, active.selectionEnd] : null;
    panel.replaceChildren(...fresh);
    const again = keep ? document.getElementById(keep) : null;
    if (again) {
      again.focus({ preventScroll: true });
      if (caret) again.setSelectionRange(caret[0], caret[1]);
    }
    panel.classList.remove("hidden");
    document.body.classList.add("with-detail");
    panel.setAttribute("data-incident", String(id));
    panel.setAttribute("data-state", d.incident.workflow_state);
    if (focus) {
      panel.focus();
      if (window.matchMedia("(max-width: 760px)").matches) window.scrollTo(0, 0);
    }
  },

  async act(id, path, json) {
    const err = document.getElementById("detail-error");
    err.textContent = "";
    try {
      await Pantau.api(`/incidents/${id}/${path}`, { method: "POST", json: json || {} });
      await this.relist();
      await this.open(id, false);
      return true;
    } catch (e) {
      document.getElementById("detail-error").textContent = e.message;
      return false;
    }
  },

  async crewsOf(agency) {
    if (!this.crews[agency]) this.crews[agency] = await Pantau.api(`/crews?agency=${encodeURIComponent(agency)}`);
    return this.crews[agency];
  },

  actions(d) {
    const i = d.incident, id = i.id, s = i.workflow_state;
    const box = el("div", { class: "actions" });
    if (s === "open" && i.awaiting_verification) {
      box.append(el("button", { "data-action": "verify", onclick: () => this.act(id, "acknowledge", { note: "laporan warga diverifikasi" }) }, "Verifikasi laporan"),
        el("button", { class: "danger", "data-action": "reject", onclick: () => {
          if (confirm("Tolak laporan warga ini sebagai alarm palsu?"))
            this.act(id, "resolve", { code: "false_alarm", note: this.note.trim() || "laporan ditolak operator" });
        } }, "Tolak laporan"));
    } else if (s === "open") {
      box.append(el("button", { "data-action": "ack", onclick: () => this.act(id, "acknowledge") }, "Terima"));
    }
    if (i.escalation_level < 2 && !["resolved", "closed"].includes(s)) {
      box.append(el("button", { class: "secondary", "data-action": "escalate", onclick: () =>
        this.act(id, "escalate", { note: this.note.trim() }) },
      i.escalation_level === 0 ? "Eskalasi ke supervisor" : "Eskalasi ke pusat komando"));
    }
    return box;
  },

  async assignForm(i) {
    if (!i.agency || ["resolved", "closed"].includes(i.workflow_state)) return [];
    const crews = (await this.crewsOf(i.agency)).slice()
      .sort((a, b) => Number(b.on_shift) - Number(a.on_shift) || a.id.localeCompare(b.id));
    const select = el("select", { id: "assign-crew", "data-field": "assign",
      onchange: (e) => (this.picked = { id: i.id, crew: e.target.value }) },
      ...crews.map((c) => el("option", { value: c.id }, `${c.id}${c.on_shift ? " (bertugas)" : ""}`)));
    // The operator's pick survives a re-render; else the assigned, else the routed crew.
    if (this.picked && this.picked.id === i.id) select.value = this.picked.crew;
    else if (i.assignee_crew_id) select.value = i.assignee_crew_id;
    else if (i.routed_crew_id) select.value = i.routed_crew_id;
    return [el("div", { class: "row" }, el("label", { for: "assign-crew" }, "Kru "), select,
      el("button", { class: "secondary", "data-action": "assign", onclick: async () => {
        if (await this.act(i.id, "assign", { crew_id: select.value, note: this.note.trim() })) this.picked = null;
      } },
      i.assignee_crew_id ? "Ganti kru" : "Tugaskan"))];
  },

  async render(d) {
    const i = d.incident, c = d.context, late = overdue(i);
    const frames = await Promise.all(d.evidence.camera_frames.slice(-4).map(async (f) => {
      const src = await imageOf(f.url);
      return src ? el("figure", {}, el("img", { src, alt: `bingkai kamera ${f.camera_id}`, width: "160" }),
        el("figcaption", {}, `${f.camera_id} · ${zonedTime(f.at)}`)) : null;
    }));
    let photos = [];
    if (d.citizen_reports > 0) {
      const reports = await Pantau.api(`/incidents/${i.id}/reports`);
      photos = await Promise.all(reports.map(async (r) => {
        const src = r.photo_url ? await imageOf(r.photo_url) : null;
        return el("figure", { class: "report" }, ...(src ? [el("img", { src, alt: "foto laporan warga", width: "160" })] : []),
          el("figcaption", {}, `${zonedTime(r.received_at)}: ${r.description || "(tanpa keterangan)"}`));
      }));
    }
    const note = el("textarea", { id: "note", rows: "2", maxlength: "500", "data-field": "note",
      oninput: (e) => (this.note = e.target.value) });
    note.value = this.note;
    const crew = i.assignee_crew_id ? `${i.assignee_crew_id} (ditugaskan)`
      : i.routed_crew_id ? `${i.routed_crew_id} (diarahkan, belum ditugaskan)` : "belum ada";
    const due = (label, iso, isLate, field) => el("li", { class: isLate ? "late" : "", "data-field": field },
      `${label}: ${zonedTime(iso)}`, ...(isLate ? [el("strong", {}, " — terlambat")] : []));
    return [
      el("div", { class: "detail-head" },
        el("h2", { id: "detail-title" }, el("span", { class: "dot", style: `background:${SEVERITY_COLOURS[i.severity]}` }),
          ` ${hazardName(i.hazard)} · ${SEVERITY_ID[i.severity]}`),
        el("button", { class: "secondary", "data-action": "close", onclick: () => this.close() }, "Tutup")),
      el("p", {}, `#${i.id} · ${placeOfIncident(i, this.names)} · ${stateName(i.workflow_state)} · ` +
        `${CONDITION_ID[i.condition_state] || i.condition_state} · dinas ${this.names.agency[i.agency] || i.agency || "—"}`,
      ...(i.awaiting_verification ? [el("strong", { class: "tag" }, " laporan warga, belum diverifikasi")] : [])),
      place(c.place),
      el("ul", { class: "due" },
        el("li", { "data-field": "crew" }, `Kru: ${crew}`),
        due("Terima sebelum", i.sla_ack_due, late.ack, "ack-due"),
        due("Selesai sebelum", i.sla_resolve_due, late.resolve, "resolve-due"),
        ...(i.escalation_level ? [el("li", {}, `Eskalasi: ${i.escalation_level === 1 ? "supervisor dinas" : "pusat komando"}`)] : [])),
      ...(c.instruction ? [el("p", { class: "instruction" }, el("strong", {}, "Arahan: "), c.instruction)] : []),
      el("h3", {}, "Bukti"),
      ...(latestText(c.latest) ? [el("p", { "data-field": "latest" }, latestText(c.latest))] : []),
      chart(d.evidence, c.latest),
      ...(frames.some(Boolean) ? [el("div", { class: "frames" }, ...frames.filter(Boolean))] : []),
      ...(photos.length ? [el("h3", {}, `Laporan warga (${d.citizen_reports})`), el("div", { class: "frames" }, ...photos)] : []),
      el("p", { class: "links" }, "Grafana: ", ...c.grafana.flatMap((l, n) =>
        [...(n ? [" · "] : []), el("a", { href: l.url, target: "_blank", rel: "noopener" }, l.title)])),
      el("h3", {}, "Tindakan"),
      el("p", { class: "error", id: "detail-error", role: "alert" }),
      this.actions(d),
      ...(await this.assignForm(i)),
      el("label", { for: "note" }, "Catatan (juga dipakai untuk eskalasi, penugasan, penolakan)"), note,
      el("div", { class: "actions" }, el("button", { class: "secondary", "data-action": "note", onclick: async () => {
        if (!this.note.trim()) return;
        if (await this.act(i.id, "notes", { note: this.note.trim() })) {
          this.note = "";
          document.getElementById("note").value = "";
        }
      } }, "Tambah catatan")),
      el("h3", {}, "Riwayat"),
      el("ol", { class: "timeline" }, ...d.timeline.slice().reverse().map((e) =>
        el("li", { "data-kind": e.kind }, el("time", {}, zonedTime(e.at)), ` ${EVENT_ID[e.kind] || e.kind}: `,
          el("strong", {}, stateText(e)), ` — ${reasonText(e)} `, el("span", { class: "meta" }, `(${e.actor})`)))),
    ];
  },
};

function placeOfIncident(i, names) {
  const kec = names.kecamatan[i.kecamatan_id] || i.kecamatan_id || "";
  if (i.zone_level === "kelurahan") return `Kel. ${i.zone_name}, Kec. ${kec}`;
  if (i.zone_level === "kecamatan") return `seluruh Kec. ${i.zone_name}`;
  return `seluruh ${i.zone_name}`;
}
