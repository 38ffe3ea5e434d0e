// Full-text search in the sidebar (issue 10). While the search box holds a query, each chat the
// sidebar lists (GET /api/sessions?q= matches titles and message text) shows a snippet of its
// best hit from GET /api/search, its matched words marked. Opening the chat then scrolls to that
// message and highlights it; when the message is on another branch than the chat's active one,
// the chat is switched to that branch first (PATCH active_leaf_id to the branch's latest leaf).
// Snippets are user text: built from text nodes and <mark> elements, never as HTML.

import { api } from "./api.js";
import { refresh as refreshChat } from "./chat.js";
import { changed, sessionState, state } from "./state.js";

const FIND_MS = 10_000;
let hits = new Map(); // session id -> its best hit for the current query
let generation = 0; // a newer query's hits win over a slower older one's

/** Fetch the hits of `query` (nothing for an empty one); `decorate` shows them. */
export async function loadHits(query) {
  const token = ++generation;
  const found = new Map();
  if (query) {
    try {
      const params = new URLSearchParams({ q: query, limit: "100" });
      for (const hit of (await api.get(`/api/search?${params}`)).hits) {
        if (!found.has(hit.session_id)) found.set(hit.session_id, hit);
      }
    } catch {
      // only operators (422 invalid_query) or offline: the titles alone are listed
    }
  }
  if (token === generation) hits = found;
}

/** Add the snippet of `session`'s hit to its sidebar link, and open the hit on click. */
export function decorate(link, session) {
  const hit = hits.get(session.id);
  if (!hit) return;
  link.classList.add("has-snippet");
  link.append(snippetElement(hit));
  if (hit.message_id) link.addEventListener("click", () => showHit(hit));
}

/** The snippet as text with <mark>s. Offsets count code points (the server's characters), so
 * the text is split into code points first, not into UTF-16 units. */
export function snippetElement(hit) {
  const chars = Array.from(hit.snippet);
  const span = document.createElement("span");
  span.className = "search-snippet";
  let at = 0;
  for (const [start, end] of hit.highlights) {
    if (start < at || end > chars.length) continue;
    span.append(document.createTextNode(chars.slice(at, start).join("")));
    const mark = document.createElement("mark");
    mark.textContent = chars.slice(start, end).join("");
    span.append(mark);
    at = end;
  }
  span.append(document.createTextNode(chars.slice(at).join("")));
  return span;
}

async function showHit(hit) {
  const sessionId = hit.session_id;
  await refreshChat(sessionId);
  const s = sessionState(sessionId);
  if (state.sessionId !== sessionId) return; // the user went elsewhere meanwhile
  if (!s.messages.some((m) => m.id === hit.message_id)) {
    try {
      const leaf = await latestLeafUnder(sessionId, hit.message_id);
      await api.patch(`/api/sessions/${sessionId}`, { active_leaf_id: leaf });
    } catch {
      return; // offline, or the message is gone: the chat stays as it is
    }
    if (s.live || s.activity !== "idle") return; // never drop a reply that is streaming
    s.messages = []; // another branch: the old path's messages must not stay in the view
    changed();
    await refreshChat(sessionId);
  }
  const el = await messageElement(hit.message_id);
  if (!el || state.sessionId !== sessionId) return;
  for (const old of document.querySelectorAll("[data-search-hit]")) delete old.dataset.searchHit;
  el.dataset.searchHit = "1";
  el.scrollIntoView({ block: "center" });
}

/** The branch to show: from the hit down, always to the newest child, until a leaf. */
async function latestLeafUnder(sessionId, messageId) {
  const children = new Map();
  let after = 0;
  for (;;) {
    const params = new URLSearchParams({ after_seq: String(after), limit: "1000" });
    const page = await api.get(`/api/sessions/${sessionId}/messages?${params}`);
    for (const m of page.messages) {
      const newest = children.get(m.parent_id);
      if (!newest || newest.seq < m.seq) children.set(m.parent_id, m);
    }
    if (page.next_after_seq == null) break;
    after = page.next_after_seq;
  }
  let leaf = messageId;
  while (children.has(leaf)) leaf = children.get(leaf).id;
  return leaf;
}

/** The message's element once the chat has rendered it (or null after FIND_MS). */
function messageElement(messageId) {
  const deadline = performance.now() + FIND_MS;
  return new Promise((resolve) => {
    const look = () => {
      const el = document.querySelector(`#messages [data-message-id="${CSS.escape(messageId)}"]`);
      if (el || performance.now() > deadline) resolve(el);
      else requestAnimationFrame(look);
    };
    look();
  });
}
