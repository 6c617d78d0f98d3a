// The crew page (no inline script: the CSP allows only files from this origin).
"use strict";
let me = null;
const drafts = {};
const details = {}; // incident id -> its detail (place, latest reading, instruction)

// An action goes through Field: sent now, or kept and sent when the signal returns.
async function act(incident, path, json) {
  document.getElementById("error").textContent = "";
  try {
    await Field.send(incident.id, path, json);
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
  if (!confirm(`Tandai ${hazardName(i.hazard)} di ${i.zone_name} selesai (${RESOLUTION_ID[code]})?`)) return;
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
        (c) => el("option", { value: c }, RESOLUTION_ID[c])));
    code.value = draft.code;
    const note = el("input", { "data-field": "note", placeholder: "Catatan penyelesaian",
      oninput: (e) => (draft.note = e.target.value) });
    note.value = draft.note;
    actions.append(code, note, el("button", { class: "secondary", "data-action": "resolve",
      // The draft, not the element: a re-render may have replaced the element the
      // crew was typing into between the last keystroke and the tap.
      onclick: () => resolve(i, draft.code, draft.note.trim() || RESOLUTION_ID[draft.code]) }, "Selesai"));
  }
  const late = overdue(i);
  const c = details[i.id] && details[i.id].context;
  const where = i.zone_level === "kelurahan" ? i.zone_name : `seluruh ${i.zone_level === "kecamatan" ? "Kec. " : ""}${i.zone_name}`;
  const due = (label, iso, isLate, field) => el("span", { class: isLate ? "late" : "", "data-field": field },
    `${label} ${zonedTime(iso)}`, ...(isLate ? [el("strong", {}, " — TERLAMBAT")] : []));
  const waiting = Field.pending(i.id);
  return el("article", { class: `card${late.ack || late.resolve ? " overdue" : ""}`, "data-incident": String(i.id),
      id: `insiden-${i.id}`, tabindex: "-1", "data-pending": String(waiting.length),
      "data-state": state, style: `border-left-color: ${SEVERITY_COLOURS[i.severity]}` },
    el("h2", {}, `${hazardName(i.hazard)} · ${where}`),
    ...(i.awaiting_verification ? [unverifiedMark(i)] : []),
    el("div", { class: "meta" }, `${SEVERITY_ID[i.severity]} · ${stateName(state)} · dibuka ${zonedTime(i.opened_at)}`),
    ...(waiting.length ? [el("span", { class: "pending", "data-field": "pending" },
      `${waiting.length} tindakan menunggu sinyal`)] : []),
    el("div", { class: "due" },
      ...(state === "open" ? [due("Terima sebelum", i.sla_ack_due, late.ack, "ack-due"), el("br")] : []),
      due("Selesai sebelum", i.sla_resolve_due, late.resolve, "resolve-due")),
    ...(c ? [place(c.place)] : []),
    ...(c && c.latest ? [el("p", { class: "reading", "data-field": "latest" }, latestText(c.latest))] : []),
    ...(c && c.instruction ? [el("details", { class: "instruction" }, el("summary", {}, "Arahan"), c.instruction)] : []),
    actions);
}

// The detail of each card (its place, newest reading, instruction), read again when
// the incident changed.
async function loadDetails(list) {
  await Promise.all(list.map(async (i) => {
    const key = `${i.condition_at}|${i.workflow_state}|${i.severity}`;
    if (details[i.id] && details[i.id].key === key) return;
    try {
      details[i.id] = { ...(await Pantau.api(`/incidents/${i.id}`)), key };
    } catch (e) {
      console.warn(e);
    }
  }));
}

async function refresh() {
  const page = await Pantau.api("/incidents?active=true&limit=100");
  const open = page.data.filter((i) => i.workflow_state !== "suppressed")
    .sort((a, b) => SEVERITY_RANK[b.severity] - SEVERITY_RANK[a.severity] || a.opened_at.localeCompare(b.opened_at));
  await loadDetails(open);
  // A live event re-renders every card: whoever was typing a note keeps the field,
  // the caret and the keyboard (a phone closes it when the focused input goes away).
  const active = document.activeElement;
  const home = active && active.closest ? active.closest("article.card") : null;
  const field = home && active.getAttribute("data-field");
  const caret = field && active.tagName === "INPUT" ? [active.selectionStart, active.selectionEnd] : null;
  document.getElementById("list").replaceChildren(...open.map(card));
  if (field) {
    const again = document.querySelector(`article[data-incident="${home.getAttribute("data-incident")}"] [data-field="${field}"]`);
    if (again) {
      again.focus();
      if (caret) again.setSelectionRange(caret[0], caret[1]);
    }
  }
  Field.seen(open);
  document.getElementById("empty").classList.toggle("hidden", open.length > 0);
}

let pending = null;
function soon() {
  clearTimeout(pending);
  pending = setTimeout(() => refresh().catch((e) => (document.getElementById("error").textContent = e.message)), 150);
}

// A notification's tap (or its address, /app/crew#insiden-ID) brings its card up.
function openCard(id) {
  const card = document.getElementById(`insiden-${id}`);
  if (!card) return;
  document.querySelectorAll(".card.flash").forEach((c) => c.classList.remove("flash"));
  card.classList.add("flash");
  card.scrollIntoView({ block: "start" });
  card.focus();
}

async function start() {
  await Field.init(openCard);
  document.addEventListener("pantau-flushed", () => soon());
  me = await Pantau.api("/auth/me");
  document.getElementById("who").textContent = me.crew_id || me.subject;
  document.getElementById("login").classList.add("hidden");
  document.getElementById("alerts").classList.remove("hidden");
  await refresh();
  Field.fromHash();
  Field.started();
  document.body.setAttribute("data-ready", "1");
  Pantau.stream(soon, (up) => (document.getElementById("live").textContent = up ? "● langsung" : "○ terputus"));
}

Pantau.loginForm(start);
