// The crew page (no inline script: the CSP allows only files from this origin).
"use strict";
let me = null;
const drafts = {};
const HAZARD = { flood: "Banjir", heavy_rain: "Hujan lebat", pump_failure: "Pompa mati",
  traffic_jam: "Macet", road_damage: "Jalan rusak", sensor_offline: "Sensor mati",
  sensor_stuck: "Sensor macet", battery_low: "Baterai lemah", data_quality: "Kualitas data",
  camera_fault: "Kamera bermasalah" };

async function act(incident, path, json) {
  document.getElementById("error").textContent = "";
  try {
    await Pantau.api(`/incidents/${incident.id}/${path}`, { method: "POST", json: json || {} });
    await refresh();
    return true;
  } catch (e) {
    document.getElementById("error").textContent = e.message;
    return false;
  }
}

// One tap must not close an incident: confirm, and while the data still says the
// condition is active, ask why (the timeline keeps the answer).
async function resolve(i, code, note) {
  if (!confirm(`Tandai ${HAZARD[i.hazard] || i.hazard} di ${i.zone_name} selesai (${code})?`)) return;
  const body = { code, note };
  if (i.origin === "rules" && i.condition_state === "active") {
    const why = prompt("Data sensor masih menunjukkan kondisi aktif. Mengapa diselesaikan sekarang?");
    if (!why || !why.trim()) return;
    body.condition_reason = why.trim();
  }
  await act(i, "resolve", body);
}

function card(i) {
  const actions = el("div", { class: "actions" });
  const state = i.workflow_state;
  if (state === "open") {
    const label = i.awaiting_verification ? "Verifikasi & terima" : "Terima";
    actions.append(el("button", { "data-action": "ack", onclick: () => act(i, "acknowledge") }, label));
  }
  if (state === "acknowledged" || state === "dispatched") {
    actions.append(el("button", { "data-action": "on-site", onclick: async () => {
      // On the way: a crew dispatches itself, then reports on site.
      if (i.workflow_state === "acknowledged" && !(await act(i, "dispatch", { crew_id: me.crew_id }))) return;
      await act(i, "on-site");
    } }, "Tiba di lokasi"));
  }
  // A crew resolves only what it acknowledged (the API refuses it from open).
  if (state !== "open" && state !== "resolved" && state !== "closed") {
    // Drafts survive the re-render that every live event causes.
    const draft = (drafts[i.id] = drafts[i.id] || { code: "fixed", note: "" });
    const code = el("select", { "data-field": "code", onchange: (e) => (draft.code = e.target.value) },
      ...["fixed", "receded", "false_alarm", "duplicate", "referred", "other"].map(
        (c) => el("option", { value: c }, c)));
    code.value = draft.code;
    const note = el("input", { "data-field": "note", placeholder: "Catatan penyelesaian",
      oninput: (e) => (draft.note = e.target.value) });
    note.value = draft.note;
    actions.append(code, note, el("button", { class: "secondary", "data-action": "resolve",
      onclick: () => resolve(i, code.value, note.value || code.value) }, "Selesai"));
  }
  return el("article", { class: "card", "data-incident": String(i.id), "data-state": state,
      style: `border-left-color: ${SEVERITY_COLOURS[i.severity]}` },
    el("h2", {}, `${HAZARD[i.hazard] || i.hazard} · ${i.zone_name}`),
    ...(i.awaiting_verification ? [unverifiedMark(i)] : []),
    el("div", { class: "meta" },
      `${i.severity.toUpperCase()} · ${state} · dibuka ${localTime(i.opened_at)} · terima sebelum ${localTime(i.sla_ack_due)}`),
    actions);
}

async function refresh() {
  const page = await Pantau.api("/incidents?active=true&limit=100");
  const open = page.data.filter((i) => i.workflow_state !== "suppressed")
    .sort((a, b) => SEVERITY_RANK[b.severity] - SEVERITY_RANK[a.severity] || a.opened_at.localeCompare(b.opened_at));
  document.getElementById("list").replaceChildren(...open.map(card));
  document.getElementById("empty").classList.toggle("hidden", open.length > 0);
}

let pending = null;
function soon() {
  clearTimeout(pending);
  pending = setTimeout(() => refresh().catch((e) => (document.getElementById("error").textContent = e.message)), 150);
}

async function start() {
  me = await Pantau.api("/auth/me");
  document.getElementById("who").textContent = me.crew_id || me.subject;
  document.getElementById("login").classList.add("hidden");
  document.getElementById("alerts").classList.remove("hidden");
  await refresh();
  Pantau.stream(soon, (up) => (document.getElementById("live").textContent = up ? "● langsung" : "○ terputus"));
}

Pantau.loginForm(start);
