// The page's state, in one place, and a way to say "it changed" (re-rendered once per tick).
//
// A session's `activity` drives the composer: "sending" from the moment the user acts until the
// reply starts, "streaming" until it ends, "idle" otherwise (also while its messages wait in the
// outbox for the network). Send is enabled only when the visible session is idle.

export const state = {
  user: null, // {name, is_admin}
  sessionId: null, // the visible session; null for a new, empty chat
  sessions: new Map(),
  models: [],
  defaultModel: null, // for a new chat: the user's choice in Settings, else the server's
  serverDefaultModel: null,
  notice: null, // {text, kind} shown above the messages of the visible chat
};

export function sessionState(id) {
  let s = state.sessions.get(id);
  if (!s) {
    s = {
      id,
      meta: null, // the server's session fields (title, model, ...)
      messages: [], // confirmed messages, merged by id (merge.js)
      live: null, // the reply streaming now: {replyId, text, offset}
      activity: "idle",
      deleted: false,
      newFields: null, // `session` fields of a chat not yet confirmed by the server
      loaded: false,
    };
    state.sessions.set(id, s);
  }
  return s;
}

export function visibleSession() {
  return state.sessionId ? sessionState(state.sessionId) : null;
}

const listeners = new Set();
let scheduled = false;

export function subscribe(fn) {
  listeners.add(fn);
}

export function changed() {
  if (scheduled) return;
  scheduled = true;
  queueMicrotask(() => {
    scheduled = false;
    for (const fn of listeners) fn();
  });
}
