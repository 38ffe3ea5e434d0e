// The browser's outbox: every message the user sends is written here first, synchronously,
// before any request, and leaves only when the server has stored it (its `message` event).
// Entries keep the exact request body and ids, so a retry, a reload or the way back online
// sends the same turn again and the server stores it once (G1, TC-2.3, TC-6.3).
//
// An entry: {id, sessionId, replyId, body, state: "queued" | "failed", error, createdAt}.
// Order is the order of the user's actions; each session's entries are sent in that order.

const memory = new Map(); // user -> entries, also when localStorage is full or unavailable
let user = "";

function key() {
  return `chatkeep.outbox.v1:${user}`;
}

function load() {
  try {
    const raw = localStorage.getItem(key());
    return raw ? JSON.parse(raw) : [];
  } catch {
    return [];
  }
}

function entries() {
  if (!memory.has(user)) memory.set(user, load());
  return memory.get(user);
}

function save() {
  try {
    localStorage.setItem(key(), JSON.stringify(entries()));
  } catch {
    // Quota exceeded (large images): the entry still lives in memory for this page.
  }
}

/** Entries belong to the signed-in user: another account in this browser never sends them. */
export function useOutbox(userName) {
  user = userName;
}

// Another tab changed the outbox: read it again rather than overwrite its entries.
window.addEventListener("storage", (event) => {
  if (event.key === key()) memory.delete(user);
});

export function add(entry) {
  entries().push(entry);
  save();
}

export function remove(id) {
  const list = entries();
  const index = list.findIndex((e) => e.id === id);
  if (index !== -1) {
    list.splice(index, 1);
    save();
  }
}

export function update(id, changes) {
  const entry = entries().find((e) => e.id === id);
  if (entry) {
    Object.assign(entry, changes);
    save();
  }
  return entry;
}

export function get(id) {
  return entries().find((e) => e.id === id);
}

export function forSession(sessionId) {
  return entries().filter((e) => e.sessionId === sessionId);
}

export function firstFor(sessionId) {
  return entries().find((e) => e.sessionId === sessionId);
}

export function sessionIds() {
  return [...new Set(entries().map((e) => e.sessionId))];
}

export function dropSession(sessionId) {
  const list = entries();
  const kept = list.filter((e) => e.sessionId !== sessionId);
  if (kept.length !== list.length) {
    memory.set(user, kept);
    save();
  }
}
