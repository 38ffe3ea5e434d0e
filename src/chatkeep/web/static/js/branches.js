// Branches: edit a sent message, regenerate a reply, switch between versions with ‹ 1/2 ›,
// and continue a reply that stopped (issue 9). All of it is the existing API (SPEC 3-4):
// - edit = a new user message whose parent is the edited one's parent (a sibling);
// - regenerate = the same user message (same id and body: a replay) with a new reply_id;
// - switching = PATCH active_leaf_id, to the newest leaf under the chosen version;
// - continue = a new user message "Continue" after the stopped reply, on the active path.
// Every turn goes through the outbox and turns.js like any other send, so it is stored once.

import { api } from "./api.js";
import * as cache from "./cache.js";
import { uuidv7 } from "./ids.js";
import * as outbox from "./outbox.js";
import { changed, sessionState } from "./state.js";
import { kick } from "./turns.js";

export const CONTINUE_TEXT = "Continue";
const PAGE = 1000;

/** Fetch every message of every branch, when the active path is not all there is. */
export async function loadTree(s) {
  const count = s.messages.filter((m) => m.seq != null).length;
  if (!s.meta || (s.meta.last_seq ?? 0) <= count) {
    s.tree = null; // one path: no switcher to show
    return;
  }
  const all = [];
  let after = 0;
  for (;;) {
    const page = await api.get(`/api/sessions/${s.id}/messages?after_seq=${after}&limit=${PAGE}`);
    all.push(...page.messages);
    if (page.next_after_seq == null) break;
    after = page.next_after_seq;
  }
  s.tree = all;
  changed();
}

function siblings(s, m) {
  if (!s.tree || m.seq == null) return [];
  const parent = m.parent_id ?? null;
  return s.tree
    .filter((x) => (x.parent_id ?? null) === parent && x.role === m.role)
    .sort((a, b) => a.seq - b.seq);
}

/** `{index, count}` (1-based) of `m` among its versions, or null when it has only one. */
export function branchOf(s, m) {
  const list = siblings(s, m);
  if (list.length < 2) return null;
  return { index: list.findIndex((x) => x.id === m.id) + 1, count: list.length };
}

/** The newest leaf under `id`: each step takes the latest child. */
function leafUnder(tree, id) {
  let leaf = id;
  for (;;) {
    const children = tree.filter((x) => x.parent_id === leaf);
    if (!children.length) return leaf;
    leaf = children.reduce((a, b) => (b.seq > a.seq ? b : a)).id;
  }
}

async function switchBranch(s, m, step) {
  const list = siblings(s, m);
  const target = list[list.findIndex((x) => x.id === m.id) + step];
  if (!target || s.activity !== "idle") return;
  // A refetch already on its way would merge the old path back in: it is discarded (chat.js).
  s.pathVersion = (s.pathVersion || 0) + 1;
  await api.patch(`/api/sessions/${s.id}`, { active_leaf_id: leafUnder(s.tree, target.id) });
  const detail = await api.get(`/api/sessions/${s.id}`);
  const { messages, ...meta } = detail;
  s.meta = meta;
  s.messages = messages; // another branch: replaced, not merged
  s.cachedIds = null;
  cache.saveChat(meta, messages);
  changed();
}

/** Path messages up to `id` (inclusive or not). */
function pathTo(s, id, inclusive) {
  const index = s.messages.findIndex((m) => m.id === id);
  return index === -1 ? s.messages : s.messages.slice(0, index + (inclusive ? 1 : 0));
}

function queueTurn(s, message, { regenerate = undefined, branched = true } = {}) {
  const body = { message, reply_id: uuidv7() };
  s.branched = branched;
  if (s.meta?.model) body.model = s.meta.model;
  outbox.add({
    id: message.id,
    sessionId: s.id,
    replyId: body.reply_id,
    body,
    regenerate, // the stored parent_id, in case the message was first sent with one
    state: "queued",
    error: null,
    createdAt: Date.now(),
  });
  s.activity = navigator.onLine ? "sending" : "idle";
  s.sendingId = navigator.onLine ? message.id : null;
  changed();
  kick(s.id);
}

function idle(s) {
  return s && !s.deleted && s.activity === "idle" && !outbox.firstFor(s.id);
}

function regenerate(s, reply) {
  const user = s.messages.find((m) => m.id === reply.parent_id);
  if (!user || !idle(s)) return;
  s.messages = pathTo(s, user.id, true);
  queueTurn(s, { id: user.id, content: user.content }, { regenerate: user.parent_id ?? null });
}

function continueReply(s) {
  if (!idle(s)) return;
  queueTurn(s, { id: uuidv7(), content: CONTINUE_TEXT }, { branched: false });
}

function sendEdit(s, m, text) {
  if (!idle(s) || !text.trim()) return;
  s.editingId = null;
  s.messages = pathTo(s, m.id, false);
  queueTurn(s, { id: uuidv7(), content: text, parent_id: m.parent_id ?? null });
}

/** A click on a message's button: returns whether it was one of ours. */
export function handleAction(sessionId, action, id, button) {
  const s = sessionState(sessionId);
  const m = s.messages.find((x) => x.id === id);
  if (!m) return false;
  if (action === "regenerate") regenerate(s, m);
  else if (action === "continue") continueReply(s);
  else if (action === "prev-branch") switchBranch(s, m, -1);
  else if (action === "next-branch") switchBranch(s, m, 1);
  else if (action === "edit") {
    if (!idle(s)) return true;
    s.editingId = id;
    changed();
    queueMicrotask(() => {
      // after the render (queued first) has put the editor in place of this button
      document.querySelector(`article[data-message-id="${id}"] textarea`)?.focus();
    });
  } else if (action === "edit-cancel") {
    s.editingId = null;
    changed();
  } else if (action === "edit-send") {
    sendEdit(s, m, button.closest("article").querySelector("textarea").value);
  } else return false;
  return true;
}
