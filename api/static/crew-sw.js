// The crew page's service worker: the page itself and the last incidents it read stay
// readable with no signal; a tap on an alert's notification opens its card.
"use strict";
const SHELL = "pantau-crew-shell-v1";
const DATA = "pantau-crew-data-v1";
const SHELL_URLS = ["/app/crew", "/app/static/common.js", "/app/static/crew.js", "/app/static/crew-field.js",
  "/app/static/crew.css", "/app/static/icon.svg", "/app/crew.webmanifest"];
// What the page reads and may need again offline (never the live stream).
const DATA_PATHS = [/^\/incidents(\/\d+)?$/, /^\/auth\/me$/];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(SHELL).then((c) => c.addAll(SHELL_URLS)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((k) => k !== SHELL && k !== DATA).map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

// Network first (fresh when there is signal), the last copy when there is none.
async function networkFirst(request, cacheName) {
  const cache = await caches.open(cacheName);
  try {
    const response = await fetch(request);
    if (response.ok) await cache.put(request, response.clone());
    return response;
  } catch (err) {
    const kept = await cache.match(request, { ignoreVary: true });
    if (kept) return kept;
    return new Response(JSON.stringify({ detail: "Tanpa sinyal dan belum ada salinan." }),
      { status: 503, headers: { "Content-Type": "application/json" } });
  }
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin) return;
  if (url.pathname === "/app/crew" || SHELL_URLS.includes(url.pathname)) {
    event.respondWith(networkFirst(request, SHELL));
  } else if (DATA_PATHS.some((p) => p.test(url.pathname))) {
    event.respondWith(networkFirst(request, DATA));
  }
});

// Logging out forgets the incidents kept for offline reading.
self.addEventListener("message", (event) => {
  if (event.data && event.data.type === "forget") event.waitUntil(caches.delete(DATA));
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const data = event.notification.data || {};
  const target = data.url || "/app/crew";
  event.waitUntil(self.clients.matchAll({ type: "window", includeUncontrolled: true }).then((all) => {
    const open = all.find((c) => new URL(c.url).pathname === "/app/crew");
    if (open) {
      open.postMessage({ type: "open", id: data.id });
      return open.focus();
    }
    return self.clients.openWindow(target);
  }));
});
