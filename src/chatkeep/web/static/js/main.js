// chatkeep's page: wire the parts together and start once we know who is signed in.

import { setUnauthorizedHandler } from "./api.js";
import { bootAuth, showAuthForm, signOut } from "./auth.js";
import { useCache } from "./cache.js";
import {
  initChat,
  initialSessionId,
  loadModels,
  newChat,
  openSession,
  refresh as refreshChat,
} from "./chat.js";
import { initComposer } from "./composer.js";
import { initExport } from "./export.js";
import { initNetwork, onNetworkChange } from "./net.js";
import { useOutbox } from "./outbox.js";
import { initSidebar, refresh as refreshSidebar } from "./sidebar.js";
import { changed, state } from "./state.js";
import { usePrefs } from "./prefs.js";
import { registerWorker } from "./pwa.js";
import { initSettings } from "./settings.js";
import { initShortcuts } from "./shortcuts.js";
import { isWorking, kickAll } from "./turns.js";

const $ = (id) => document.getElementById(id);
let started = false;

function start(user) {
  if (started) {
    // Signed in again after the sign-in expired: start over with a clean page; the outbox
    // in localStorage keeps whatever was not sent yet.
    location.reload();
    return;
  }
  started = true;
  state.user = user;
  useOutbox(user.name);
  useCache(user.name);
  usePrefs(user.name);
  $("user-name").textContent = user.name;
  $("auth-screen").hidden = true;
  $("app").hidden = false;
  loadModels();
  refreshSidebar({ reset: true });
  const sessionId = initialSessionId();
  if (sessionId) openSession(sessionId, { push: false });
  else newChat({ push: false });
  kickAll(); // what the outbox kept from before the reload
  onNetworkChange((online) => {
    if (online) {
      // Back online (perhaps after opening offline): send the queue, then catch up.
      kickAll();
      refreshSidebar();
      if (state.sessionId && !isWorking(state.sessionId)) refreshChat(state.sessionId);
      if (!state.models.length) loadModels();
    }
    changed();
  });
}

initNetwork();
initChat();
initComposer();
initSidebar();
initSettings();
initShortcuts();
initExport();
$("sign-out").addEventListener("click", signOut);
setUnauthorizedHandler(() => {
  if (started) showAuthForm("login", "Your sign-in has expired. Sign in again.");
});
bootAuth(start);
registerWorker();
