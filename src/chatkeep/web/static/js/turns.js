// A turn's life in the browser: send the outbox in order, read the reply's event stream,
// resume it after a drop, stop it.
//
// One worker per session sends that session's outbox entries one after another (a second send
// while a reply streams would be refused, G4), each with the ids and body it was given when the
// user acted. Nothing here ever makes a new id: a retry, a reload or the way back online repeats
// the same turn, and the server answers a repeat by replaying the stored one (G1). An entry
// leaves the outbox only when the stream's `message` event says the server has stored it (G2).

import { NetworkError, api, backoffMs, problemOf, send, sleep } from "./api.js";
import { codePoints } from "./ids.js";
import { upsertMessage } from "./merge.js";
import { isOnline, whenOnline } from "./net.js";
import * as outbox from "./outbox.js";
import { applyReasoning, resumeId, storedReasoning } from "./reasoning.js";
import { readEvents } from "./sse.js";
import { changed, sessionState } from "./state.js";

const TURN_ATTEMPTS = 3; // then the message shows "Failed to save" and a Retry button
const RESUME_ATTEMPTS = 8;
const STREAM = { Accept: "text/event-stream" };
const running = new Set();

export const hooks = {
  sessionConfirmed: () => {}, // the server has stored a chat's first message
  replyFinished: () => {},
  sessionGone: () => {}, // deleted (here or elsewhere): G5
};

/** Start the session's worker unless it is already running. */
export function kick(sessionId) {
  if (running.has(sessionId)) return;
  running.add(sessionId);
  work(sessionId);
}

export function kickAll() {
  for (const sessionId of outbox.sessionIds()) kick(sessionId);
}

export function isWorking(sessionId) {
  return running.has(sessionId);
}

async function work(sessionId) {
  const s = sessionState(sessionId);
  try {
    for (;;) {
      if (s.deleted) break;
      if (s.live && !s.live.following) {
        if (!(await follow(sessionId))) break;
        continue;
      }
      const entry = outbox.firstFor(sessionId);
      // Only the browser's own offline state holds messages back: when the server merely
      // seems unreachable, sending is how we find out (and Retry must always try at once).
      if (!entry || entry.state === "failed" || !navigator.onLine) break;
      if ((await runTurn(entry)) !== "sent") break;
    }
  } catch (err) {
    if (err?.name !== "AbortError") console.error("chatkeep: turn worker stopped", err);
  } finally {
    running.delete(sessionId);
    s.sendingId = null;
    s.stopWanted = false;
    s.activity = s.live ? "streaming" : "idle";
    changed();
  }
}

function setActivity(s, activity) {
  s.activity = activity;
  changed();
}

/** POST the turn; read its stream. Resolves "sent", "paused", "failed" or "gone". */
async function runTurn(entry) {
  const sessionId = entry.sessionId;
  const s = sessionState(sessionId);
  s.sendingId = entry.id;
  setActivity(s, "sending");
  const url = `/api/sessions/${sessionId}/turns`;
  let waits = 0;
  for (let attempt = 0; ; attempt += 1) {
    let retryAfter = 0;
    let failure = "Could not reach the server";
    try {
      const res = await send("POST", url, { body: entry.body, headers: STREAM });
      if (res.ok) {
        const result = await consume(sessionId, res, entry);
        if (result === "broken") await follow(sessionId); // stored; only the reply is resumed
        if (result !== "unsent") return "sent";
        // The stream broke before the server confirmed the message: send the same turn again.
      } else {
        const error = await problemOf(res);
        if (error.status === 401) return pause(s); // signed out: kept until sign-in
        if (error.status === 410 || error.status === 404) {
          sessionGone(sessionId);
          return "gone";
        }
        if (error.code === "generation_in_progress" && waits < 60) {
          // An earlier reply of this chat is still streaming (another tab, or before a reload).
          waits += 1;
          await followStreamingReply(sessionId);
          attempt -= 1;
          continue;
        }
        if (error.code === "idempotency_conflict" && retriedWithParent(entry)) {
          attempt -= 1;
          continue;
        }
        if (!error.retryable) return fail(entry, error.message);
        retryAfter = error.retryAfter;
        failure = error.message;
      }
    } catch (err) {
      if (!(err instanceof NetworkError)) throw err;
    }
    if (!navigator.onLine) return pause(s); // offline: queued until the `online` event
    if (attempt + 1 >= TURN_ATTEMPTS) return fail(entry, failure);
    await sleep(backoffMs(attempt, retryAfter));
  }
}

/** A regeneration repeats its user message's body exactly (a replay, G1). The page cannot know
 * whether that message was first sent with an explicit parent_id (an edit) or without (the
 * active leaf), so it tries without, then once with the stored parent. */
function retriedWithParent(entry) {
  if (entry.regenerate === undefined || "parent_id" in entry.body.message) return false;
  entry.body.message.parent_id = entry.regenerate;
  outbox.update(entry.id, { body: entry.body });
  return true;
}

function pause(s) {
  s.sendingId = null;
  setActivity(s, "idle");
  return "paused";
}

function fail(entry, message) {
  outbox.update(entry.id, { state: "failed", error: message });
  const s = sessionState(entry.sessionId);
  s.sendingId = null;
  setActivity(s, "idle");
  return "failed";
}

/** Read one event stream. Resolves "finished", "broken" (after the message was stored) or
 * "unsent" (broken before the server confirmed `entry`). */
async function consume(sessionId, res, entry) {
  const s = sessionState(sessionId);
  let confirmed = !entry;
  try {
    for await (const ev of readEvents(res)) {
      const data = JSON.parse(ev.data);
      if (ev.event === "message" && entry) {
        confirmed = true;
        confirm(s, entry, data);
      } else if (ev.event === "start") {
        startLive(s, data);
      } else if (ev.event === "delta") {
        applyDelta(s, ev.id, data.text);
      } else if (ev.event === "reasoning") {
        if (applyReasoning(s.live, ev.id, data.text)) changed();
      } else if (ev.event === "done") {
        finish(s, data);
        return "finished";
      } else if (ev.event === "error") {
        replyFailed(s, data);
        return "finished";
      }
    }
  } catch (err) {
    if (err?.name === "AbortError") throw err;
    // The connection dropped mid-stream (TypeError: network error): resumable (G6).
  }
  if (s.deleted) return "finished";
  return confirmed ? "broken" : "unsent";
}

function confirm(s, entry, message) {
  outbox.remove(entry.id);
  s.messages = upsertMessage(s.messages, message);
  if (s.newFields) {
    s.newFields = null;
    hooks.sessionConfirmed(s.id);
  }
  changed();
}

function startLive(s, reply) {
  s.messages = upsertMessage(s.messages, reply);
  s.live = { replyId: reply.id, text: "", offset: 0, following: true, stopping: false };
  setActivity(s, "streaming");
  if (s.stopWanted) {
    // Stop was pressed while the turn was on its way: the reply exists now, so cancel it
    // (before its first token it is kept as a `cancelled` reply with no text).
    s.stopWanted = false;
    stop(s.id);
  }
}

function applyDelta(s, eventId, text) {
  const live = s.live;
  if (!live || !eventId) return;
  const offset = Number(eventId.slice(eventId.lastIndexOf(":") + 1));
  if (!(offset > live.offset)) return; // already have it
  live.text += text;
  live.offset = offset;
  changed();
}

function finish(s, reply) {
  s.messages = upsertMessage(s.messages, reply);
  s.live = null;
  hooks.replyFinished(s.id);
  setActivity(s, "idle");
}

function replyFailed(s, data) {
  if (data.code === "session_deleted") {
    sessionGone(s.id);
    return;
  }
  const reply = data.reply || (s.live && { id: s.live.replyId, role: "assistant" });
  if (reply) {
    const text = typeof reply.content === "string" ? reply.content : s.live?.text || "";
    s.messages = upsertMessage(s.messages, {
      ...reply,
      content: text,
      status: reply.status === "streaming" ? "error" : reply.status || "error",
      error: reply.error || { code: data.code, message: data.message },
    });
  }
  s.live = null;
  hooks.replyFinished(s.id);
  setActivity(s, "idle");
}

function sessionGone(sessionId) {
  const s = sessionState(sessionId);
  s.deleted = true;
  if (s.live) {
    // Deleted elsewhere mid-stream (G5): the words already shown stay on screen, the cursor
    // ends, and the reply says it was stopped.
    const known = s.messages.find((m) => m.id === s.live.replyId);
    s.messages = upsertMessage(s.messages, {
      ...(known || { id: s.live.replyId, role: "assistant" }),
      content: s.live.text,
      status: "cancelled",
      error: { code: "session_deleted", message: "Session was deleted" },
    });
  }
  s.live = null;
  s.stopWanted = false;
  outbox.dropSession(sessionId);
  setActivity(s, "idle");
  hooks.sessionGone(sessionId);
}

/** Re-attach to `s.live` with Last-Event-ID and get exactly the text we missed (G6).
 * Resolves false when the worker should stop (signed out). */
async function follow(sessionId) {
  const s = sessionState(sessionId);
  const live = s.live;
  if (!live) return true;
  live.following = true;
  setActivity(s, "streaming");
  try {
    for (let attempt = 0; attempt < RESUME_ATTEMPTS; attempt += 1) {
      if (s.deleted || s.live !== live) return true;
      if (!isOnline()) {
        setActivity(s, "idle"); // the user may queue more messages meanwhile
        await whenOnline();
        setActivity(s, "streaming");
      }
      const url = `/api/sessions/${sessionId}/messages/${live.replyId}/stream`;
      const headers = { ...STREAM, "Last-Event-ID": resumeId(live) };
      let retryAfter = 0;
      try {
        const res = await send("GET", url, { headers });
        if (res.ok) {
          const before = live.offset;
          if ((await consume(sessionId, res, null)) === "finished") return true;
          if (live.offset > before) attempt = -1; // it was making progress: count again
        } else {
          const error = await problemOf(res);
          if (error.status === 404 || error.status === 410) {
            sessionGone(sessionId);
            return true;
          }
          if (error.status === 401) return false;
          retryAfter = error.retryAfter;
        }
      } catch (err) {
        if (!(err instanceof NetworkError)) throw err;
      }
      await sleep(backoffMs(Math.max(attempt, 0), retryAfter));
    }
    // Give up for now; the text so far stays, and opening the chat again re-attaches.
    if (s.live === live) {
      const known = s.messages.find((m) => m.id === live.replyId);
      s.messages = upsertMessage(s.messages, {
        ...(known || { id: live.replyId, role: "assistant" }),
        content: live.text,
        status: "interrupted",
        error: { code: "connection_lost", message: "Lost the connection to this reply" },
      });
      s.live = null;
    }
    return true;
  } finally {
    live.following = false;
  }
}

/** Find the reply that makes the server answer 409 generation_in_progress, and wait for it. */
async function followStreamingReply(sessionId) {
  const s = sessionState(sessionId);
  try {
    const detail = await api.get(`/api/sessions/${sessionId}`);
    attachFromDetail(s, detail);
  } catch {
    // fall through to a plain wait
  }
  if (s.live) await follow(sessionId);
  else await sleep(1000);
}

/** After loading a chat: if its last reply is still streaming (a reload, another tab), follow
 * it from the text the server has checkpointed. Returns whether there is one to follow. */
export function attachFromDetail(s, detail) {
  const last = detail.messages.at(-1);
  if (!last || last.role !== "assistant" || last.status !== "streaming" || s.live) return false;
  const text = typeof last.content === "string" ? last.content : "";
  s.live = { replyId: last.id, text, offset: codePoints(text), following: false, stopping: false };
  Object.assign(s.live, storedReasoning(last));
  return true;
}

/** Stop: the server cancels the generation and keeps its text (SPEC 3). */
export async function stop(sessionId) {
  const s = sessionState(sessionId);
  const live = s.live;
  if (!live && s.activity === "sending") {
    s.stopWanted = true; // cancelled as soon as the reply starts (see startLive)
    changed();
    return;
  }
  if (!live || live.stopping) return;
  live.stopping = true;
  changed();
  try {
    const reply = await api.post(`/api/sessions/${sessionId}/messages/${live.replyId}/cancel`);
    // The stream's own `error: cancelled` event says the same; this covers a dropped stream.
    if (reply && reply.status !== "streaming" && s.live === live) {
      replyFailed(s, { code: reply.status, message: "Stopped", reply });
    }
  } catch {
    live.stopping = false;
    changed();
  }
}

export function retry(entryId) {
  const entry = outbox.update(entryId, { state: "queued", error: null });
  if (entry) {
    changed();
    kick(entry.sessionId);
  }
}

export function discard(entryId) {
  outbox.remove(entryId);
  changed();
}
