// The sidebar: chats newest first (pinned ones on top), search, archived view, keyset "Load
// more", and per-chat actions: rename, pin, archive, delete. On a phone it is a drawer.

import { api } from "./api.js";
import { newChat, openSession, setSidebar } from "./chat.js";
import * as outbox from "./outbox.js";
import { decorate, loadHits } from "./search.js";
import { sessionState, state, subscribe } from "./state.js";

const PAGE = 30;
const $ = (id) => document.getElementById(id);
let view = "chats"; // or "archived"
let query = "";
let items = [];
let unpinnedLoaded = 0;
let cursor = null;
let generation = 0; // a newer load wins over a slower older one
let lastSignature = "";

function listParams(extra) {
  const params = { archived: String(view === "archived"), ...extra };
  if (query) params.q = query;
  else if (view === "chats") params.pinned = "false";
  return new URLSearchParams(params);
}

/** Reload the list, as many chats as are loaded now (so "Load more" is not undone). */
export async function refresh({ reset = false } = {}) {
  const token = ++generation;
  const limit = Math.min(200, reset ? PAGE : Math.max(PAGE, unpinnedLoaded));
  try {
    let pinned = [];
    if (view === "chats" && !query) {
      const params = new URLSearchParams({ archived: "false", pinned: "true", limit: "200" });
      pinned = (await api.get(`/api/sessions?${params}`)).sessions;
    }
    const hits = loadHits(query); // snippets of the matching messages (search.js)
    const page = await api.get(`/api/sessions?${listParams({ limit: String(limit) })}`);
    await hits;
    if (token !== generation) return;
    items = [...pinned, ...page.sessions];
    unpinnedLoaded = page.sessions.length;
    cursor = page.next_cursor;
    render(true);
  } catch {
    // offline or signed out: keep the list we have
  }
}

async function loadMore() {
  if (!cursor) return;
  const token = generation;
  try {
    const page = await api.get(`/api/sessions?${listParams({ limit: String(PAGE), cursor })}`);
    if (token !== generation) return;
    const known = new Set(items.map((s) => s.id));
    items.push(...page.sessions.filter((s) => !known.has(s.id)));
    unpinnedLoaded += page.sessions.length;
    cursor = page.next_cursor;
    render(true);
  } catch {
    // keep the button; the user can try again
  }
}

function remove(sessionId) {
  items = items.filter((s) => s.id !== sessionId);
  render(true);
}

function setActive(sessionId) {
  for (const li of $("session-list").children) {
    if (li.dataset.sessionId === sessionId) li.setAttribute("aria-current", "page");
    else li.removeAttribute("aria-current");
  }
}

/** Chats that exist only in the outbox so far (made offline): listed, marked as queued. */
function queuedChats() {
  if (view !== "chats" || query) return [];
  const known = new Set(items.map((s) => s.id));
  return outbox
    .sessionIds()
    .filter((id) => !known.has(id) && !sessionState(id).deleted)
    .map((id) => {
      const content = outbox.firstFor(id).body.message.content;
      const text = typeof content === "string" ? content : "Image";
      return { id, title: text.slice(0, 60), pinned: false, archived: false, queued: true };
    });
}

function render(force = false) {
  const shown = [...queuedChats(), ...items];
  const signature = JSON.stringify([view, state.sessionId, shown.map((s) => [s.id, s.title, s.pinned])]);
  if (!force && signature === lastSignature) return;
  lastSignature = signature;
  const list = $("session-list");
  list.replaceChildren(...shown.map(itemElement));
  setActive(state.sessionId);
  $("load-more").hidden = !cursor;
  const empty = $("sessions-empty");
  empty.hidden = shown.length > 0;
  if (query) empty.textContent = "No chats match.";
  else empty.textContent = view === "archived" ? "No archived chats." : "No chats yet.";
}

function itemElement(session) {
  const li = document.createElement("li");
  li.className = "session-item";
  li.dataset.sessionId = session.id;
  const link = document.createElement("a");
  link.className = "session-link";
  link.href = `/c/${session.id}`;
  const title = document.createElement("span");
  title.className = "session-title";
  title.textContent = session.title || "New chat";
  link.append(title);
  if (session.pinned) link.append(badge("Pinned", "pin"));
  if (session.queued) link.append(badge("Queued", "queued"));
  link.addEventListener("click", (event) => {
    event.preventDefault();
    closeDrawer();
    openSession(session.id);
  });
  decorate(link, session);
  li.append(link);
  if (!session.queued) {
    const more = document.createElement("button");
    more.type = "button";
    more.className = "session-more";
    more.textContent = "⋯";
    more.setAttribute("aria-label", `Actions for ${session.title || "New chat"}`);
    more.setAttribute("aria-haspopup", "menu");
    more.setAttribute("aria-expanded", "false");
    more.addEventListener("click", (event) => {
      event.stopPropagation();
      toggleMenu(li, session, more);
    });
    li.append(more);
  }
  return li;
}

function badge(text, kind) {
  const span = document.createElement("span");
  span.className = `badge badge-${kind}`;
  span.textContent = text;
  return span;
}

function closeMenus() {
  for (const menu of document.querySelectorAll(".session-menu")) menu.remove();
  for (const b of document.querySelectorAll(".session-more")) b.setAttribute("aria-expanded", "false");
}

function toggleMenu(li, session, trigger) {
  const open = li.querySelector(".session-menu");
  closeMenus();
  if (open) return;
  const menu = document.createElement("div");
  menu.className = "session-menu";
  menu.setAttribute("role", "menu");
  const item = (label, fn) => {
    const b = document.createElement("button");
    b.type = "button";
    b.setAttribute("role", "menuitem");
    b.textContent = label;
    b.addEventListener("click", (event) => {
      event.stopPropagation();
      fn(b);
    });
    menu.append(b);
    return b;
  };
  item("Rename", () => startRename(li, session));
  item(session.pinned ? "Unpin" : "Pin", () => patch(session, { pinned: !session.pinned }));
  item(session.archived ? "Unarchive" : "Archive", () =>
    patch(session, { archived: !session.archived }),
  );
  item("Delete", (b) => {
    // Two steps, inside the page: a browser confirm() would block the page and its tests.
    if (b.dataset.armed) {
      deleteSession(session);
      return;
    }
    b.dataset.armed = "1";
    b.textContent = "Confirm delete";
    b.classList.add("danger");
  });
  li.append(menu);
  trigger.setAttribute("aria-expanded", "true");
  menu.querySelector("button").focus();
}

async function patch(session, changes) {
  closeMenus();
  try {
    const updated = await api.patch(`/api/sessions/${session.id}`, changes);
    const s = sessionState(session.id);
    if (s.meta) s.meta = { ...s.meta, ...updated };
  } catch {
    // the list below shows what the server has
  }
  await refresh();
}

async function deleteSession(session) {
  closeMenus();
  try {
    await api.del(`/api/sessions/${session.id}`);
  } catch {
    await refresh();
    return;
  }
  const s = sessionState(session.id);
  s.deleted = true;
  s.live = null;
  outbox.dropSession(session.id);
  remove(session.id);
  if (state.sessionId === session.id) newChat();
}

function startRename(li, session) {
  closeMenus();
  const input = document.createElement("input");
  input.className = "rename-input";
  input.value = session.title || "";
  input.maxLength = 500;
  input.setAttribute("aria-label", "Chat title");
  let done = false;
  const finish = async (save) => {
    if (done) return;
    done = true;
    const title = input.value.trim();
    if (save && title && title !== session.title) {
      await patch(session, { title });
      const s = sessionState(session.id);
      if (s.meta) s.meta.title = title;
    } else {
      render(true);
    }
  };
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") finish(true);
    else if (event.key === "Escape") finish(false);
  });
  input.addEventListener("blur", () => finish(true));
  li.replaceChildren(input);
  input.focus();
  input.select();
}

function setView(next) {
  view = next;
  $("show-chats").setAttribute("aria-pressed", String(view === "chats"));
  $("show-archived").setAttribute("aria-pressed", String(view === "archived"));
  refresh({ reset: true });
}

export function openDrawer() {
  document.body.classList.add("sidebar-open");
  $("scrim").hidden = false;
}

export function closeDrawer() {
  document.body.classList.remove("sidebar-open");
  $("scrim").hidden = true;
}

export function initSidebar() {
  setSidebar({ refresh, remove, setActive });
  subscribe(() => render());
  let timer = null;
  $("search").addEventListener("input", (event) => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      query = event.target.value.trim();
      refresh({ reset: true });
    }, 250);
  });
  $("show-chats").addEventListener("click", () => setView("chats"));
  $("show-archived").addEventListener("click", () => setView("archived"));
  $("load-more").addEventListener("click", loadMore);
  $("new-chat").addEventListener("click", () => {
    closeDrawer();
    newChat();
  });
  $("open-sidebar").addEventListener("click", openDrawer);
  $("close-sidebar").addEventListener("click", closeDrawer);
  $("scrim").addEventListener("click", closeDrawer);
  document.addEventListener("click", closeMenus);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      closeMenus();
      closeDrawer();
    }
  });
}
