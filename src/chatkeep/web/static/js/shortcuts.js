// Keyboard shortcuts (the ones ChatGPT users already know) and the `?` overlay that lists them.

import { newChat } from "./chat.js";
import { openDrawer } from "./sidebar.js";
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
  if (window.matchMedia("(max-width: 768px)").matches) openDrawer(); // the search is in it
  $("search").focus();
  $("search").select();
}

// Each: what it does, the key combinations shown (any of them), which events match, the action.
const SHORTCUTS = [
  {
    label: "New chat",
    keys: [[MOD, "Shift", "O"]],
    test: (e) => mod(e) && e.shiftKey && e.code === "KeyO",
    run: () => newChat(),
  },
  {
    label: "Search chats",
    keys: [[MOD, "K"]],
    test: (e) => mod(e) && !e.shiftKey && e.code === "KeyK",
    run: focusSearch,
  },
  {
    label: "Focus the message box",
    keys: [["Shift", "Esc"]],
    test: (e) => e.shiftKey && e.key === "Escape",
    run: () => $("input").focus(),
  },
  {
    label: "Stop generating",
    keys: [["Esc"]],
    test: (e) => !e.shiftKey && e.key === "Escape" && generating(),
    run: () => stopVisible(),
  },
  {
    label: "Copy the last reply",
    keys: [[MOD, "Shift", "C"]],
    test: (e) => mod(e) && e.shiftKey && e.code === "KeyC",
    run: copyLastReply,
  },
  {
    label: "Show keyboard shortcuts",
    keys: [["?"], [MOD, "/"]],
    test: (e) => (e.key === "?" && !typing(e) && !mod(e)) || (mod(e) && e.key === "/"),
    run: toggleHelp,
  },
];

function mod(e) {
  return mac ? e.metaKey : e.ctrlKey;
}

function typing(e) {
  const t = e.target;
  if (!(t instanceof HTMLElement)) return false;
  return t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName);
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
  const rows = SHORTCUTS.map(({ label, keys }) => {
    const tr = document.createElement("tr");
    const what = document.createElement("td");
    what.textContent = label;
    const how = document.createElement("td");
    keys.forEach((combo, i) => {
      if (i) how.append(" or ");
      for (const key of combo) {
        const kbd = document.createElement("kbd");
        kbd.textContent = key;
        how.append(kbd);
      }
    });
    tr.append(what, how);
    return tr;
  });
  $("shortcuts-table").replaceChildren(...rows);
}

export function initShortcuts() {
  renderTable();
  const dialog = $("shortcuts");
  dialog.querySelector("[data-close]").addEventListener("click", () => dialog.close());
  document.addEventListener("keydown", (event) => {
    if (event.isComposing || $("app").hidden) return;
    const hit = SHORTCUTS.find((shortcut) => shortcut.test(event));
    if (!hit) return;
    if (document.querySelector("dialog[open]:not(#shortcuts)") && hit.run !== toggleHelp) return;
    event.preventDefault();
    hit.run();
  });
}
