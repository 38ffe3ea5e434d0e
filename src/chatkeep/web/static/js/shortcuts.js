// Keyboard shortcuts (the ones ChatGPT users already know) and the `?` overlay that lists them.

import { newChat } from "./chat.js";
import { state, visibleSession } from "./state.js";
import { stop } from "./turns.js";

const $ = (id) => document.getElementById(id);
const mac = /Mac|iPhone|iPad/.test(navigator.platform || navigator.userAgent);
const MOD = mac ? "⌘" : "Ctrl";

function copyLastReply() {
  const replies = document.querySelectorAll('#messages [data-role="assistant"]');
  replies[replies.length - 1]?.querySelector('[data-action="copy"]')?.click();
}

function focusSearch() {
  document.body.classList.add("sidebar-open"); // on a phone the search is in the drawer
  $("scrim").hidden = !window.matchMedia("(max-width: 767px)").matches;
  $("search").focus();
  $("search").select();
}

// [keys shown, test, action]
const SHORTCUTS = [
  [[MOD, "Shift", "O"], (e) => mod(e) && e.shiftKey && e.code === "KeyO", () => newChat()],
  [[MOD, "K"], (e) => mod(e) && !e.shiftKey && e.code === "KeyK", focusSearch],
  [["Shift", "Esc"], (e) => e.shiftKey && e.key === "Escape", () => $("input").focus()],
  [["Esc"], (e) => !e.shiftKey && e.key === "Escape" && generating(), () => stopVisible()],
  [[MOD, "Shift", "C"], (e) => mod(e) && e.shiftKey && e.code === "KeyC", copyLastReply],
  [[MOD, "/"], (e) => mod(e) && e.key === "/", toggleHelp],
  [["?"], (e) => e.key === "?" && !typing(e) && !mod(e), toggleHelp],
];
const LABELS = [
  "New chat",
  "Search chats",
  "Focus the message box",
  "Stop generating",
  "Copy the last reply",
  "Show keyboard shortcuts",
  "Show keyboard shortcuts",
];

function mod(e) {
  return mac ? e.metaKey : e.ctrlKey;
}

function typing(e) {
  const t = e.target;
  return t instanceof HTMLElement && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName));
}

function generating() {
  const s = visibleSession();
  return Boolean(s && s.activity !== "idle") && !document.querySelector("dialog[open]");
}

function stopVisible() {
  if (state.sessionId) stop(state.sessionId);
}

function toggleHelp() {
  const dialog = $("shortcuts");
  if (dialog.open) dialog.close();
  else dialog.showModal();
}

function renderTable() {
  const rows = SHORTCUTS.map(([keys], i) => {
    const tr = document.createElement("tr");
    const what = document.createElement("td");
    what.textContent = LABELS[i];
    const how = document.createElement("td");
    for (const key of keys) {
      const kbd = document.createElement("kbd");
      kbd.textContent = key;
      how.append(kbd);
    }
    tr.append(what, how);
    return tr;
  });
  $("shortcuts-table").replaceChildren(...rows);
}

export function initShortcuts() {
  renderTable();
  $("shortcuts").querySelector("[data-close]").addEventListener("click", () => $("shortcuts").close());
  document.addEventListener("keydown", (event) => {
    if (event.isComposing || $("app").hidden) return;
    const hit = SHORTCUTS.find(([, test]) => test(event));
    if (!hit) return;
    if (document.querySelector("dialog[open]:not(#shortcuts)") && hit[2] !== toggleHelp) return;
    event.preventDefault();
    hit[2]();
  });
}
