// Whether the server can be reached: the browser's own online/offline signal, plus what our
// requests find out (a fetch that fails with a network error while navigator.onLine is still
// true). Either one shows the "You are offline" banner; the way back is the `online` event, a
// successful request, or a /healthz probe that succeeds.

const PROBE_MS = 2000;
const listeners = new Set();
let unreachable = false;
let probeTimer = null;

export function isOnline() {
  return navigator.onLine && !unreachable;
}

/** Call `fn(online)` whenever reachability changes. */
export function onNetworkChange(fn) {
  listeners.add(fn);
}

function announce() {
  const banner = document.getElementById("offline-banner");
  if (banner) banner.hidden = isOnline();
  for (const fn of listeners) fn(isOnline());
}

/** A request failed without an HTTP answer. */
export function reportNetworkError() {
  if (unreachable) return;
  unreachable = true;
  announce();
  scheduleProbe();
}

/** A request got an HTTP answer: the server is reachable. */
export function reportReachable() {
  if (!unreachable) return;
  unreachable = false;
  announce();
}

function scheduleProbe() {
  clearTimeout(probeTimer);
  probeTimer = setTimeout(async () => {
    if (!unreachable) return;
    try {
      const res = await fetch("/healthz", { cache: "no-store" });
      if (res.ok) {
        reportReachable();
        return;
      }
    } catch {
      // still unreachable
    }
    scheduleProbe();
  }, PROBE_MS);
}

/** Resolves once the server is reachable again. */
export function whenOnline() {
  if (isOnline()) return Promise.resolve();
  return new Promise((resolve) => {
    const check = (online) => {
      if (online) {
        listeners.delete(check);
        resolve();
      }
    };
    listeners.add(check);
  });
}

export function initNetwork() {
  window.addEventListener("online", () => {
    unreachable = false;
    announce();
  });
  window.addEventListener("offline", announce);
  announce();
}
