// What the page keeps so that it opens offline (issue 9, item 4): who was signed in, the chat
// list, the models, and the chats opened recently. localStorage, one key per user. It is never
// the source of truth: the server's answer replaces it as soon as there is one, and the outbox
// (outbox.js), not this cache, holds what the user sent.

const USER_KEY = "chatkeep.user.v1";
const KEEP_CHATS = 20;
let user = "";

const key = () => `chatkeep.cache.v1:${user}`;

function read() {
  try {
    const raw = localStorage.getItem(key());
    return raw ? JSON.parse(raw) : {};
  } catch {
    return {};
  }
}

function write(change) {
  const data = { ...read(), ...change };
  for (;;) {
    try {
      localStorage.setItem(key(), JSON.stringify(data));
      return;
    } catch {
      // Full: drop the oldest chat and try again; with none left, keep nothing.
      if (!data.order?.length) return;
      delete data.chats[data.order.shift()];
    }
  }
}

export function useCache(userName) {
  user = userName;
}

/** The user, so that an offline start knows who it is (the server still decides on sign-in). */
export function rememberUser(u) {
  localStorage.setItem(USER_KEY, JSON.stringify({ name: u.name, is_admin: Boolean(u.is_admin) }));
}

export function lastUser() {
  try {
    return JSON.parse(localStorage.getItem(USER_KEY) || "null");
  } catch {
    return null;
  }
}

export function forget() {
  if (user) localStorage.removeItem(key());
  localStorage.removeItem(USER_KEY);
}

export const saveList = (sessions) => write({ list: sessions });
export const loadList = () => read().list || null;
export const saveModels = (models) => write({ models });
export const loadModels = () => read().models || null;

/** Keep a chat as last seen (its fields and the messages of its active path). */
export function saveChat(meta, messages) {
  const data = read();
  const chats = data.chats || {};
  const order = (data.order || []).filter((id) => id !== meta.id);
  chats[meta.id] = { ...meta, messages };
  order.push(meta.id);
  while (order.length > KEEP_CHATS) delete chats[order.shift()];
  write({ chats, order });
}

export function loadChat(sessionId) {
  return read().chats?.[sessionId] || null;
}

export function dropChat(sessionId) {
  const data = read();
  if (!data.chats?.[sessionId]) return;
  delete data.chats[sessionId];
  write({ chats: data.chats, order: (data.order || []).filter((id) => id !== sessionId) });
}
