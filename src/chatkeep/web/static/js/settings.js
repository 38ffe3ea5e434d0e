// Settings: the default model for new chats, the theme (system, light, dark), and the user's
// own API keys (create, list, revoke), so SDK and CLI users need no admin command (issue 9).

import { ApiError, api } from "./api.js";
import { loadModels } from "./chat.js";
import * as prefs from "./prefs.js";
import { state } from "./state.js";

const $ = (id) => document.getElementById(id);

function fillModels() {
  const select = $("settings-model");
  const server = document.createElement("option");
  server.value = "";
  const fallback = state.serverDefaultModel;
  server.textContent = fallback ? `Server default (${fallback})` : "Server default";
  select.replaceChildren(
    server,
    ...state.models.map((m) => {
      const option = document.createElement("option");
      option.value = m.id;
      option.textContent = m.is_demo ? `${m.id} (offline demo)` : m.name || m.id;
      return option;
    }),
  );
  select.value = prefs.defaultModel() || "";
}

function keysError(text) {
  $("keys-error").textContent = text || "";
  $("keys-error").hidden = !text;
}

function describe(err) {
  return err instanceof ApiError ? err.message : "Cannot reach the server. Try again.";
}

async function loadKeys() {
  keysError("");
  let keys;
  try {
    keys = await api.get("/api/auth/keys", { retries: 1 });
  } catch (err) {
    keysError(describe(err));
    return;
  }
  const active = keys.filter((k) => !k.revoked);
  $("keys-list").replaceChildren(...active.map(keyItem));
  $("keys-empty").hidden = active.length > 0;
}

function keyItem(key) {
  const li = document.createElement("li");
  li.className = "key-item";
  li.dataset.prefix = key.prefix;
  const name = document.createElement("span");
  name.className = "key-name";
  name.textContent = key.name;
  const detail = document.createElement("span");
  detail.className = "muted key-detail";
  const created = key.created_at ? new Date(key.created_at).toLocaleDateString() : "";
  detail.textContent = `${key.prefix}… ${created ? `· created ${created}` : ""}`;
  const revoke = document.createElement("button");
  revoke.type = "button";
  revoke.className = "btn btn-quiet";
  revoke.textContent = "Revoke";
  revoke.setAttribute("aria-label", `Revoke ${key.name}`);
  revoke.addEventListener("click", async () => {
    // Two steps inside the dialog, like Delete in the sidebar: a revoked key cannot come back.
    if (!revoke.dataset.armed) {
      revoke.dataset.armed = "1";
      revoke.textContent = "Confirm revoke";
      revoke.classList.add("danger");
      return;
    }
    try {
      await api.del(`/api/auth/keys/${encodeURIComponent(key.prefix)}`);
    } catch (err) {
      keysError(describe(err));
    }
    loadKeys();
  });
  li.append(name, detail, revoke);
  return li;
}

async function createKey(event) {
  event.preventDefault();
  const name = $("key-name").value.trim();
  if (!name) return;
  keysError("");
  try {
    // Not retried: a lost answer would leave a key nobody saw; the user can revoke it.
    const created = await api.post("/api/auth/keys", { name }, { retries: 0 });
    $("key-name").value = "";
    $("key-value").value = created.key;
    $("key-copy").textContent = "Copy";
    $("key-created").hidden = false;
    $("key-value").select();
  } catch (err) {
    keysError(describe(err));
  }
  loadKeys();
}

export function openSettings() {
  const dialog = $("settings");
  if (dialog.open) return;
  fillModels();
  for (const radio of document.querySelectorAll('input[name="theme"]')) {
    radio.checked = radio.value === prefs.theme();
  }
  $("key-created").hidden = true;
  $("key-value").value = "";
  dialog.showModal();
  loadKeys();
}

export function initSettings() {
  const dialog = $("settings");
  $("open-settings").addEventListener("click", openSettings);
  dialog.querySelector("[data-close]").addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => {
    $("key-value").value = ""; // the key is not kept on the page once the dialog is closed
  });
  $("settings-model").addEventListener("change", (event) => {
    prefs.setDefaultModel(event.target.value || null);
    loadModels(); // the picker of a new chat follows at once
  });
  for (const radio of document.querySelectorAll('input[name="theme"]')) {
    radio.addEventListener("change", () => prefs.setTheme(radio.value));
  }
  $("key-form").addEventListener("submit", createKey);
  $("key-copy").addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText($("key-value").value);
      $("key-copy").textContent = "Copied";
    } catch {
      $("key-value").select();
    }
  });
}
