// Shared by the crew and ops pages: login, authenticated fetch, the live event stream.
"use strict";

// The ops page keeps its login for the tab only; the crew page (an installed field
// app, opened again from a notification or with no signal) keeps it on the device
// until the token expires.
const LOGIN_STORE = document.querySelector('meta[name="pantau-keep-login"]') ? localStorage : sessionStorage;

const Pantau = {
  token: LOGIN_STORE.getItem("pantau-token"),

  // The page's login form (#login, #username, #password, #login-error): on success, or
  // with a token kept from before, `start` shows the page.
  loginForm(start) {
    document.getElementById("login").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        await this.login(document.getElementById("username").value, document.getElementById("password").value);
        await start();
      } catch (e) {
        document.getElementById("login-error").textContent = e.message;
        if (e.retryAfter) {
          // The button waits as long as the server will: pressing earlier only fails.
          const button = document.querySelector("#login button");
          button.disabled = true;
          setTimeout(() => (button.disabled = false), e.retryAfter * 1000);
        }
      }
    });
    // A kept login that fails for want of signal stays (a 401 logs out in `api`).
    if (this.token) start().catch((e) => (document.getElementById("login-error").textContent = e.message));
  },

  async login(username, password) {
    const body = new URLSearchParams({ username, password });
    const r = await fetch("/auth/token", { method: "POST", body });
    if (!r.ok) throw this.loginError(r);
    this.token = (await r.json()).access_token;
    LOGIN_STORE.setItem("pantau-token", this.token);
  },

  // Says why a login did not go through and, when it is delayed, until when. The
  // delay holds for this device's address only: the same user elsewhere is not delayed.
  loginError(r) {
    const err = new Error("Nama pengguna atau kata sandi salah.");
    const wait = parseInt(r.headers.get("Retry-After") || "0", 10);
    if (r.status === 429 || r.status === 503) {
      const until = new Date(Date.now() + wait * 1000)
        .toLocaleTimeString("id-ID", { timeZone: "Asia/Jakarta" });
      const why = r.status === 503
        ? "Server sedang memeriksa banyak login sekaligus."
        : r.headers.get("X-Login-Delay") === "address"
          ? "Terlalu banyak login gagal dari jaringan ini."
          : "Terlalu banyak kata sandi salah untuk akun ini dari perangkat ini.";
      err.message = `${why} Demi keamanan, login ditunda ${wait} detik: coba lagi pukul ${until}. ` +
        "Akun Anda tidak dikunci.";
      err.retryAfter = wait;
    }
    return err;
  },

  logout() {
    this.token = null;
    LOGIN_STORE.removeItem("pantau-token");
  },

  async api(path, options = {}) {
    const headers = { Authorization: `Bearer ${this.token}`, ...(options.headers || {}) };
    if (options.json !== undefined) {
      headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(options.json);
    }
    const r = await fetch(path, { ...options, headers });
    if (r.status === 401) {
      this.logout();
      throw new Error("Sesi berakhir, silakan masuk lagi");
    }
    const data = r.headers.get("content-type")?.includes("json") ? await r.json() : null;
    if (!r.ok) {
      const d = data && data.detail;
      throw new Error(typeof d === "string" ? d : d && d.reason ? d.reason : `HTTP ${r.status}`);
    }
    return data;
  },

  // Server-sent events read with fetch (EventSource cannot send the Authorization
  // header, and a token in the URL would end up in logs). Reconnects with Last-Event-ID.
  async stream(onEvent, onState) {
    let lastId = null;
    for (;;) {
      try {
        const headers = { Authorization: `Bearer ${this.token}` };
        if (lastId) headers["Last-Event-ID"] = lastId;
        const r = await fetch("/stream/incidents", { headers });
        if (!r.ok) throw new Error(`stream ${r.status}`);
        onState(true);
        const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            let data = null;
            for (const line of block.split("\n")) {
              if (line.startsWith("id: ")) lastId = line.slice(4);
              if (line.startsWith("data: ")) data = line.slice(6);
            }
            if (data) onEvent(JSON.parse(data));
          }
        }
      } catch (e) {
        console.warn(e);
      }
      onState(false);
      if (!this.token) return;
      await new Promise((ok) => setTimeout(ok, 2000));
    }
  },
};

const SEVERITY_COLOURS = {
  normal: "#e5e7eb",
  info: "#93c5fd",
  waspada: "#facc15",
  siaga: "#f97316",
  awas: "#dc2626",
};
const SEVERITY_RANK = { info: 1, waspada: 2, siaga: 3, awas: 4 };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    // Through CSSOM: the CSP refuses inline style attributes, not CSSOM.
    else if (k === "style") node.style.cssText = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

// The city's IANA time zone (config/city.yaml), put in the page by the server.
const TIME_ZONE = document.querySelector('meta[name="pantau-time-zone"]').content;
// Indonesia's zones by their usual names; elsewhere the browser's short name.
const ZONE_NAME = { "Asia/Jakarta": "WIB", "Asia/Pontianak": "WIB", "Asia/Makassar": "WITA",
  "Asia/Jayapura": "WIT" }[TIME_ZONE] || new Intl.DateTimeFormat("id-ID",
  { timeZone: TIME_ZONE, timeZoneName: "short" }).formatToParts(new Date())
  .find((p) => p.type === "timeZoneName").value;

function localTime(iso) {
  return new Date(iso).toLocaleString("id-ID", { timeZone: TIME_ZONE });
}

// A deadline or event time as people read it: "Sen 1/12 03.00 WIB".
function zonedTime(iso) {
  const t = new Date(iso).toLocaleString("id-ID", { timeZone: TIME_ZONE, weekday: "short",
    day: "numeric", month: "numeric", hour: "2-digit", minute: "2-digit" });
  return `${t} ${ZONE_NAME}`;
}

// The page says everything in Bahasa Indonesia: the API's codes translated once here.
const HAZARD_ID = { flood: "Banjir", heavy_rain: "Hujan lebat", pump_failure: "Pompa mati",
  traffic_jam: "Macet", road_damage: "Jalan rusak", sensor_offline: "Sensor mati",
  sensor_stuck: "Sensor macet", battery_low: "Baterai lemah", data_quality: "Kualitas data",
  camera_fault: "Kamera bermasalah" };
const STATE_ID = { open: "Baru", acknowledged: "Diterima", dispatched: "Kru berangkat",
  on_site: "Di lokasi", resolved: "Selesai", closed: "Ditutup", suppressed: "Ditahan" };
const SEVERITY_ID = { normal: "Normal", info: "Info", waspada: "Waspada", siaga: "Siaga",
  awas: "Awas" };
const RESOLUTION_ID = { fixed: "Diperbaiki", receded: "Surut / reda sendiri",
  false_alarm: "Alarm palsu", duplicate: "Duplikat", referred: "Dialihkan ke pihak lain",
  other: "Lainnya" };
const CONDITION_ID = { active: "kondisi aktif", cleared: "kondisi sudah pulih" };
const METRIC_ID = { water_level: "Tinggi muka air", rain_rate: "Curah hujan",
  rainfall: "Curah hujan", speed: "Kecepatan", flow: "Arus", pump_running: "Pompa" };
const UNIT_OF = { water_level: "cm", rain_rate: "mm/jam", rainfall: "mm", speed: "km/jam" };
const hazardName = (h) => HAZARD_ID[h] || h.replaceAll("_", " ");
const stateName = (s) => STATE_ID[s] || s.replaceAll("_", " ");

// Overdue: an acknowledge-by time passed while nobody acknowledged, a resolve-by time
// passed while it is still active.
function overdue(i, now = Date.now()) {
  const active = !["resolved", "closed"].includes(i.workflow_state);
  return {
    ack: active && !i.acknowledged_at && Date.parse(i.sla_ack_due) < now,
    resolve: active && Date.parse(i.sla_resolve_due) < now,
  };
}

// An incident's newest reading against its station's levels, and its exact place with
// map links a phone opens (geo: for its map app, OpenStreetMap in the browser).
function latestText(latest) {
  if (!latest) return null;
  const unit = UNIT_OF[latest.metric] || "";
  const lv = [];
  if (latest.alert != null) lv.push(`Siaga II (waspada) ${latest.alert} ${unit}`);
  if (latest.danger != null) lv.push(`Siaga I (awas) ${latest.danger} ${unit}`);
  const over = latest.danger != null && latest.value >= latest.danger ? "di atas Siaga I"
    : latest.alert != null && latest.value >= latest.alert ? "di atas Siaga II" : lv.length ? "di bawah Siaga II" : "";
  return `${METRIC_ID[latest.metric] || latest.metric} terakhir: ${latest.value} ${unit}` +
    `${over ? " — " + over : ""} (${zonedTime(latest.at)})${lv.length ? ". Batas: " + lv.join(", ") : ""}`;
}

function place(p) {
  const where = [p.station, p.kelurahan_name && `Kel. ${p.kelurahan_name}`, p.kecamatan_name && `Kec. ${p.kecamatan_name}`]
    .filter(Boolean).join(", ");
  const links = [];
  if (p.map_url) links.push(el("a", { href: p.map_url, target: "_blank", rel: "noopener" }, "Peta (OpenStreetMap)"));
  if (p.geo_uri) links.push(" · ", el("a", { href: p.geo_uri }, "Buka di aplikasi peta"));
  return el("p", { "data-field": "place" }, where, " ", ...links);
}

// A citizen-report incident not yet verified: a mark, and its reports' photos on demand
// (staff-only URLs fetched with the token; shown as data: URLs, which the CSP allows,
// and kept across the re-render every live event causes).
const reportPhotos = {};
const photoImg = (u) => el("img", { src: u, alt: "foto laporan", width: "320" });
function dataUrl(blob) {
  return new Promise((ok, fail) => {
    const reader = new FileReader();
    reader.onload = () => ok(reader.result);
    reader.onerror = fail;
    reader.readAsDataURL(blob);
  });
}
function unverifiedMark(i) {
  const shown = el("div", { class: "photos" }, ...(reportPhotos[i.id] || []).map(photoImg));
  const button = el("button", { class: "secondary", "data-action": "photos", onclick: async () => {
    const reports = await Pantau.api(`/incidents/${i.id}/reports`);
    const urls = [];
    for (const r of reports.filter((r) => r.photo_url)) {
      const resp = await fetch(r.photo_url, { headers: { Authorization: `Bearer ${Pantau.token}` } });
      if (resp.ok) urls.push(await dataUrl(await resp.blob()));
    }
    reportPhotos[i.id] = urls;
    shown.replaceChildren(...(urls.length ? urls.map(photoImg) : ["tanpa foto"]));
  } }, "Lihat foto");
  return el("div", { class: "unverified", "data-unverified": "1" },
    el("strong", {}, "Laporan warga · belum diverifikasi"), " (tidak tampil di publik sampai diterima) ", button, shown);
}
