// The message list of the visible chat: confirmed messages, then the user's messages still in
// the outbox (optimistic), with the streaming reply's live text. Elements are keyed by message id
// and updated in place, so a refetch or a replayed event can never show one message twice.

import { branchOf } from "./branches.js";
import { renderMarkdown, safeImageUrl } from "./markdown.js";
import { reasoningBlock, reasoningSignature } from "./reasoning.js";
import * as outbox from "./outbox.js";

const nodes = new Map(); // message id -> {el, signature}

/** What the visible chat shows, in order. */
export function viewMessages(s) {
  const list = s.messages.slice();
  const seen = new Set(list.map((m) => m.id));
  for (const entry of outbox.forSession(s.id)) {
    if (seen.has(entry.id)) continue;
    let pending = "queued";
    if (entry.state === "failed") pending = "failed";
    else if (s.sendingId === entry.id) pending = "sending";
    list.push({
      id: entry.id,
      role: "user",
      content: entry.body.message.content,
      status: "complete",
      pending,
      error: entry.error ? { message: entry.error } : null,
    });
  }
  if (s.live) {
    const live = { id: s.live.replyId, role: "assistant", content: s.live.text, status: "streaming" };
    const thought = { reasoning: s.live.reasoning, thinkingSince: s.live.thinkingSince };
    const index = list.findIndex((m) => m.id === live.id);
    if (index === -1) list.push({ ...live, ...thought });
    else list[index] = { ...list[index], content: live.content, status: "streaming", ...thought };
  }
  // What each message offers: its ‹ n/N › versions, being edited, Continue on the last one.
  const idle = s.activity === "idle" && !s.deleted;
  return list.map((m, i) => ({
    ...m,
    branch: branchOf(s, m),
    editing: s.editingId === m.id,
    last: i === list.length - 1,
    idle,
  }));
}

function signature(m) {
  const content =
    typeof m.content === "string"
      ? `${m.content.length}:${m.content.slice(-24)}`
      : m.content
          .map((p) => (p.type === "text" ? p.text.length : `${p.image_url?.url?.slice(-32)}`))
          .join(",");
  const thought = reasoningSignature(m);
  const branch = m.branch ? `${m.branch.index}/${m.branch.count}` : "";
  const offers = [branch, m.editing, m.last, m.idle].join(",");
  return [m.role, m.status, m.pending || "", m.error?.message || "", content, thought, offers].join(
    "|",
  );
}

/** Reconcile `container`'s children with `list`; returns whether anything was added. */
export function renderMessages(container, list) {
  let added = false;
  const wanted = new Set();
  let previous = null;
  for (const m of list) {
    wanted.add(m.id);
    let node = nodes.get(m.id);
    if (!node) {
      node = { el: document.createElement("article"), signature: null };
      nodes.set(m.id, node);
      added = true;
    }
    const sig = signature(m);
    if (node.signature !== sig) {
      fill(node.el, m);
      node.signature = sig;
    }
    const expected = previous ? previous.nextSibling : container.firstChild;
    if (expected !== node.el) container.insertBefore(node.el, expected);
    previous = node.el;
  }
  for (const [id, node] of nodes) {
    if (!wanted.has(id)) {
      node.el.remove();
      nodes.delete(id);
    }
  }
  return added;
}

function textOf(content) {
  if (typeof content === "string") return content;
  return content
    .filter((p) => p.type === "text")
    .map((p) => p.text)
    .join("\n\n");
}

function fill(el, m) {
  el.className = `msg msg-${m.role}${m.status === "streaming" ? " streaming" : ""}`;
  el.dataset.role = m.role;
  el.dataset.messageId = m.id;
  el.dataset.status = m.pending || m.status;
  el.replaceChildren();

  const body = document.createElement("div");
  body.className = "msg-body";
  const images = Array.isArray(m.content) ? m.content.filter((p) => p.type === "image_url") : [];
  if (images.length) {
    const gallery = document.createElement("div");
    gallery.className = "msg-images";
    for (const part of images) {
      const url = safeImageUrl(part.image_url?.url);
      if (!url) continue;
      const img = document.createElement("img");
      img.src = url;
      img.alt = "Attached image";
      img.loading = "lazy";
      gallery.append(img);
    }
    body.append(gallery);
  }
  const thought = reasoningBlock(m);
  if (thought) body.append(thought);
  const text = textOf(m.content);
  if (m.editing) {
    body.append(editor(text));
    el.append(body);
    return;
  }
  if (text || m.role === "assistant") {
    const content = document.createElement("div");
    if (m.role === "user") {
      // The user's words exactly as typed: text, never markup (issue 9, item 1). Someone asking
      // about `<details>` or `<script>` must see what they wrote, not a widget or a blank.
      content.className = "msg-content plain";
      content.textContent = text;
    } else {
      content.className = "msg-content markdown";
      content.append(renderMarkdown(text));
    }
    body.append(content);
  }
  el.append(body);

  const foot = footer(m, text);
  if (foot) el.append(foot);
}

function button(label, action, { className = "link-btn", title } = {}) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = className;
  b.textContent = label;
  b.dataset.action = action;
  if (title) b.title = title;
  return b;
}

function footer(m, text) {
  const foot = document.createElement("div");
  foot.className = "msg-foot";
  if (m.pending === "failed") {
    const mark = document.createElement("span");
    mark.className = "msg-state failed";
    mark.title = "Failed to save";
    mark.setAttribute("role", "img");
    mark.setAttribute("aria-label", "Failed to save");
    mark.textContent = "!";
    const detail = document.createElement("span");
    detail.className = "msg-state-text";
    detail.textContent = m.error?.message ? `Not saved: ${m.error.message}` : "Not saved";
    foot.append(mark, detail, button("Retry", "retry"), button("Discard", "discard"));
  } else if (m.pending === "queued") {
    const mark = document.createElement("span");
    mark.className = "msg-state queued";
    mark.title = "Queued: sent when the connection is back";
    mark.textContent = "Queued";
    foot.append(mark);
  } else if (m.pending === "sending") {
    const mark = document.createElement("span");
    mark.className = "msg-state sending";
    mark.title = "Sending";
    mark.textContent = "Sending…";
    foot.append(mark);
  } else if (m.role === "user") {
    if (text) foot.append(button("Copy", "copy", { title: "Copy the message" }));
    if (m.idle && m.seq != null && typeof m.content === "string") {
      foot.append(button("Edit", "edit", { title: "Edit and send again" }));
    }
    if (m.branch) foot.append(switcher(m.branch));
  } else if (m.role === "assistant" && m.status !== "streaming") {
    if (m.branch) foot.append(switcher(m.branch));
    const note = statusNote(m);
    if (note) foot.append(note);
    if (text) foot.append(button("Copy", "copy", { title: "Copy the reply as markdown" }));
    if (m.idle && m.parent_id) {
      foot.append(button("Regenerate", "regenerate", { title: "Write this reply again" }));
    }
    if (m.idle && m.last && (m.status === "interrupted" || m.status === "cancelled")) {
      foot.append(button("Continue", "continue", { title: "Ask the model to go on" }));
    }
  }
  return foot.childElementCount ? foot : null;
}

/** ‹ 2/3 ›: which version of this message is shown, and the way to the others. */
function switcher({ index, count }) {
  const box = document.createElement("span");
  box.className = "branch-switcher";
  const prev = button("‹", "prev-branch", { title: "Previous version" });
  prev.setAttribute("aria-label", "Previous version");
  prev.disabled = index <= 1;
  const label = document.createElement("span");
  label.className = "branch-label";
  label.textContent = `${index}/${count}`;
  const next = button("›", "next-branch", { title: "Next version" });
  next.setAttribute("aria-label", "Next version");
  next.disabled = index >= count;
  box.append(prev, label, next);
  return box;
}

function editor(text) {
  const box = document.createElement("div");
  box.className = "msg-editor";
  const area = document.createElement("textarea");
  area.value = text;
  area.rows = Math.min(12, text.split("\n").length + 1);
  area.setAttribute("aria-label", "Edit message");
  const actions = document.createElement("div");
  actions.className = "msg-editor-actions";
  actions.append(
    button("Cancel", "edit-cancel", { className: "btn btn-quiet" }),
    button("Save and send", "edit-send", { className: "btn btn-primary" }),
  );
  box.append(area, actions);
  return box;
}

function statusNote(m) {
  const notes = {
    cancelled: "Stopped",
    interrupted: "Interrupted",
    error: "The reply failed",
  };
  if (!notes[m.status]) return null;
  const note = document.createElement("span");
  note.className = `msg-state ${m.status}`;
  const detail = m.status !== "cancelled" && m.error?.message ? `: ${m.error.message}` : "";
  note.textContent = notes[m.status] + detail;
  return note;
}

/** The raw text of a rendered message, for the Copy action. */
export function messageText(list, id) {
  const m = list.find((x) => x.id === id);
  return m ? textOf(m.content) : "";
}
