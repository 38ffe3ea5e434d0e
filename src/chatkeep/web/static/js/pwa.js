// The installable app (issue 9, item 4): register the service worker that keeps the app shell
// (/sw.js, versioned by the server from the files' hash), and say when a new release is ready.
// The worker never caches /api answers; the chat list and chats for offline use are kept by the
// page itself (cache.js), the messages not yet sent by the outbox (outbox.js).

export function registerWorker() {
  if (!("serviceWorker" in navigator)) return;
  const hadController = Boolean(navigator.serviceWorker.controller);
  navigator.serviceWorker.addEventListener("controllerchange", () => {
    // A new release took over: the modules running now are the old ones until a reload.
    if (hadController) document.getElementById("update-banner").hidden = false;
  });
  navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch((err) => {
    console.warn("chatkeep: no offline app shell", err);
  });
  document.getElementById("update-reload").addEventListener("click", () => location.reload());
}
