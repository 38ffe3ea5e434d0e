// chatkeep's service worker (issue 9, item 4). Served at /sw.js by chatkeep, which fills in
// VERSION (a hash of the package version and every file of the page) and SHELL (the files of
// the page). A new release changes VERSION, so the browser installs the new worker, which
// fills a new cache and deletes the old ones.
//
// The shell is served cache-first, all from one version: a page never runs a mix of old and
// new modules. The pages / and /c/{id} come from the cache too, so the app opens offline.
// Nothing else is touched: /api answers are never cached (the page keeps what it needs
// offline itself, and the outbox holds what the user sent).

const VERSION = "__CHATKEEP_VERSION__";
const SHELL = __CHATKEEP_SHELL__;
const PREFIX = "chatkeep-shell-";
const CACHE = PREFIX + VERSION;
const PAGE = "/";

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches
      .open(CACHE)
      .then((cache) => cache.addAll(SHELL.map((url) => new Request(url, { cache: "reload" }))))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) =>
        Promise.all(
          keys.filter((k) => k.startsWith(PREFIX) && k !== CACHE).map((k) => caches.delete(k)),
        ),
      )
      .then(() => self.clients.claim()),
  );
});

function isPage(url) {
  return url.pathname === "/" || /^\/c\/[0-9a-fA-F-]{36}\/?$/.test(url.pathname);
}

async function fromShell(request, key) {
  const cache = await caches.open(CACHE);
  const hit = await cache.match(key);
  return hit || fetch(request);
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin || url.search) return;
  if (request.mode === "navigate" && isPage(url)) {
    event.respondWith(fromShell(request, PAGE));
  } else if (SHELL.includes(url.pathname)) {
    event.respondWith(fromShell(request, url.pathname));
  }
  // Everything else (/api above all) goes to the network as if there were no worker.
});
