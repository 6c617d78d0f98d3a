// The crew page as a field tool: installable (manifest + service worker), a system
// notification with sound and vibration for a new alert while the page is in the
// background, and actions taken without signal queued and sent when it returns, each
// once (an Idempotency-Key the API remembers).
"use strict";

const OUTBOX = "pantau-crew-outbox";

const Field = {
  known: null, // incident ids already seen (null until the first list)
  registration: null,

  async init(onOpen) {
    this.onOpen = onOpen;
    if ("serviceWorker" in navigator) {
      try {
        await navigator.serviceWorker.register("/app/crew-sw.js", { scope: "/app/" });
        this.registration = await navigator.serviceWorker.ready;
        // The first visit: wait (briefly) for the worker to take the page, so that what
        // the page reads next is kept for reading offline.
        if (!navigator.serviceWorker.controller) {
          await new Promise((ok) => {
            navigator.serviceWorker.addEventListener("controllerchange", ok, { once: true });
            setTimeout(ok, 3000);
          });
        }
        navigator.serviceWorker.addEventListener("message", (e) => {
          if (e.data && e.data.type === "open") onOpen(e.data.id);
        });
      } catch (e) {
        console.warn("no service worker", e);
      }
    }
    const button = document.getElementById("notify");
    if ("Notification" in window && Notification.permission === "default") {
      button.classList.remove("hidden");
      button.addEventListener("click", async () => {
        await Notification.requestPermission();
        button.classList.toggle("hidden", Notification.permission !== "default");
      });
    }
    const signal = () => {
      document.getElementById("offline").classList.toggle("hidden", navigator.onLine);
      if (navigator.onLine && this.ready) this.flush();
    };
    window.addEventListener("online", signal);
    window.addEventListener("offline", signal);
    signal();
    window.addEventListener("hashchange", () => this.fromHash());
  },

  // Logged in: what was queued before (even in an earlier visit) may go now.
  started() {
    this.ready = true;
    this.save(this.queue());
    if (navigator.onLine) this.flush();
  },

  fromHash() {
    const m = location.hash.match(/^#insiden-(\d+)$/);
    if (m) this.onOpen(Number(m[1]));
  },

  // --- alerts ---------------------------------------------------------------------
  // Called with every fresh list: what was not there before is a new alert.
  seen(list) {
    const ids = new Set(list.map((i) => i.id));
    if (this.known !== null) {
      list.filter((i) => !this.known.has(i.id) && i.workflow_state === "open").forEach((i) => this.alert(i));
    }
    this.known = ids;
  },

  async alert(i) {
    const where = i.zone_level === "kelurahan" ? i.zone_name : `seluruh ${i.zone_name}`;
    const title = `${SEVERITY_ID[i.severity]}: ${hazardName(i.hazard)} · ${where}`;
    const body = `Terima sebelum ${zonedTime(i.sla_ack_due)}. Ketuk untuk membuka.`;
    const background = document.visibilityState !== "visible" || !document.hasFocus();
    if (background && this.registration && "Notification" in window && Notification.permission === "granted") {
      // The system plays its alert sound (silent: false) and vibrates the phone.
      await this.registration.showNotification(title, {
        body, tag: `insiden-${i.id}`, renotify: true, requireInteraction: true, silent: false,
        vibrate: [400, 150, 400, 150, 400], icon: "/app/static/icon.svg", badge: "/app/static/icon.svg",
        data: { id: i.id, url: `/app/crew#insiden-${i.id}` },
      });
    } else {
      if (navigator.vibrate) navigator.vibrate([300, 100, 300]);
      this.beep();
    }
  },

  beep() {
    try {
      const audio = new AudioContext();
      const tone = audio.createOscillator();
      const gain = audio.createGain();
      tone.frequency.value = 880;
      gain.gain.value = 0.2;
      tone.connect(gain).connect(audio.destination);
      tone.start();
      tone.stop(audio.currentTime + 0.4);
    } catch (e) {
      console.warn("no sound", e);
    }
  },

  // --- actions without signal -----------------------------------------------------
  queue() {
    return JSON.parse(localStorage.getItem(OUTBOX) || "[]");
  },

  save(queue) {
    localStorage.setItem(OUTBOX, JSON.stringify(queue));
    const note = document.getElementById("queued");
    note.textContent = queue.length ? `${queue.length} tindakan menunggu sinyal untuk dikirim.` : "";
    note.classList.toggle("hidden", queue.length === 0);
  },

  pending(id) {
    return this.queue().filter((a) => a.id === id);
  },

  // Send an action; without signal it is kept and sent later under the same key.
  async send(id, path, json) {
    const action = { id, path, json: json || {}, key: crypto.randomUUID(), at: new Date().toISOString() };
    if (!navigator.onLine) {
      this.save([...this.queue(), action]);
      return "queued";
    }
    try {
      await this.post(action);
      return "sent";
    } catch (e) {
      if (!(e instanceof TypeError)) throw e; // the API answered: a real refusal
      this.save([...this.queue(), action]);
      return "queued";
    }
  },

  post(action) {
    return Pantau.api(`/incidents/${action.id}/${action.path}`,
      { method: "POST", json: action.json, headers: { "Idempotency-Key": action.key } });
  },

  async flush() {
    if (this.flushing) return;
    this.flushing = true;
    const errors = [];
    try {
      for (;;) {
        const [action] = this.queue();
        if (!action) break;
        try {
          await this.post(action);
        } catch (e) {
          if (e instanceof TypeError) break; // still no signal: keep it
          errors.push(e.message); // refused (e.g. another crew moved it first): drop it
        }
        this.save(this.queue().filter((a) => a.key !== action.key));
      }
    } finally {
      this.flushing = false;
    }
    if (errors.length) document.getElementById("error").textContent = errors.join("; ");
    document.dispatchEvent(new Event("pantau-flushed"));
  },
};
