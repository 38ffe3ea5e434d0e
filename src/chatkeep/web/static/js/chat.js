// The chat panel: which chat is open (URL /c/{id} and localStorage.active_session_id, so a reload
// keeps it: E2E-2), loading it from the server and merging by id (TC-4.1), the model picker, the
// notices, and the composer's enabled state. Sending lives in composer.js and turns.js.

import { ApiError, api } from "./api.js";
import { handleAction, loadTree } from "./branches.js";
import * as cache from "./cache.js";
import { mergeMessages } from "./merge.js";
import { defaultModel as preferredModel } from "./prefs.js";
import * as outbox from "./outbox.js";
import { changed, sessionState, state, subscribe, visibleSession } from "./state.js";
import { attachFromDetail, discard, hooks, isWorking, kick, retry, stop } from "./turns.js";
import { lastUsedModel, optionLabel, recheckLater, rememberModel, showProviderState } from "./providers.js";
import { messageText, renderMessages, viewMessages } from "./view.js";

export const ACTIVE_KEY = "active_session_id";
const $ = (id) => document.getElementById(id);
let sidebar = { refresh: () => {}, remove: () => {}, setActive: () => {} };

export function setSidebar(handle) {
  sidebar = handle;
}

function setLocation(sessionId, push) {
  const path = sessionId ? `/c/${sessionId}` : "/";
  if (location.pathname !== path) history[push ? "pushState" : "replaceState"](null, "", path);
  if (sessionId) localStorage.setItem(ACTIVE_KEY, sessionId);
  else localStorage.removeItem(ACTIVE_KEY);
}

/** The chat a fresh page should open: the URL's, else the one open before the reload. */
export function initialSessionId() {
  const match = /^\/c\/([0-9a-fA-F-]{36})\/?$/.exec(location.pathname);
  if (match) return match[1];
  return localStorage.getItem(ACTIVE_KEY);
}

export function newChat({ push = true } = {}) {
  state.sessionId = null;
  state.notice = null;
  setLocation(null, push);
  selectModel(newChatModel());
  sidebar.setActive(null);
  changed();
  $("input").focus();
}

/** A chat created by the user's first message: shown at once, created by its first turn. */
export function startSession(sessionId, fields) {
  const s = sessionState(sessionId);
  s.newFields = fields;
  s.loaded = true;
  state.sessionId = sessionId;
  state.notice = null;
  setLocation(sessionId, true);
  return s;
}

export async function openSession(sessionId, { push = true } = {}) {
  state.sessionId = sessionId;
  state.notice = null;
  setLocation(sessionId, push);
  sidebar.setActive(sessionId);
  const s = sessionState(sessionId);
  const kept = !s.loaded && cache.loadChat(sessionId);
  if (kept) {
    // Shown at once from the last visit (and offline); the fetch below merges over it by id.
    const { messages, ...meta } = kept;
    s.meta = meta;
    s.messages = mergeMessages(s.messages, messages);
    s.loaded = true;
    s.cachedIds = new Set(messages.map((m) => m.id));
  }
  if (s.meta?.model) selectModel(s.meta.model);
  changed();
  await refresh(sessionId);
}

/** Keep the chat for opening offline; a reply still streaming is not a state worth keeping. */
function keep(s) {
  if (!s.meta || s.deleted) return;
  cache.saveChat(
    s.meta,
    s.messages.filter((m) => m.status !== "streaming"),
  );
}

/** Fetch a chat and merge it with what this page knows: a refetch never drops a message the
 * server has not confirmed yet, nor shows one twice (TC-4.1, TC-4.3). */
export async function refresh(sessionId) {
  const s = sessionState(sessionId);
  if (s.deleted) return;
  const version = s.pathVersion;
  let detail;
  try {
    detail = await api.get(`/api/sessions/${sessionId}`, { retries: 1 });
  } catch (err) {
    if (err instanceof ApiError && (err.status === 404 || err.status === 410)) {
      // Unknown to the server but still in our outbox: a new chat whose first turn is queued.
      if (err.status === 404 && (outbox.firstFor(sessionId) || s.newFields)) return;
      cache.dropChat(sessionId);
      s.deleted = true;
      outbox.dropSession(sessionId);
      changed();
      return;
    }
    // Offline or a server error: keep showing what we have, or say it cannot be loaded yet.
    if (!s.loaded) {
      s.loadFailed = true;
      changed();
    }
    return;
  }
  if (version !== s.pathVersion) return; // the user switched versions meanwhile (branches.js)
  const { messages, ...meta } = detail;
  s.meta = meta;
  s.loaded = true;
  s.loadFailed = false;
  // The cache is an old answer, not news: the server's path replaces it (another version may
  // have been chosen since). Messages the page learnt itself are merged by id (TC-4.1).
  const cached = s.cachedIds || new Set();
  s.messages = mergeMessages(
    s.messages.filter((m) => !cached.has(m.id)),
    messages,
  );
  s.cachedIds = null;
  if (sessionId === state.sessionId && meta.model) selectModel(meta.model);
  if (attachFromDetail(s, detail) && !isWorking(sessionId)) kick(sessionId);
  keep(s);
  changed();
  loadTree(s).catch(() => {}); // the other versions, for ‹ 1/2 ›; without them, none is shown
}

function sessionGone(sessionId) {
  sidebar.remove(sessionId);
  changed();
}

// ---- models ----------------------------------------------------------------------------------

export async function loadModels() {
  const select = $("model");
  let listed = null;
  try {
    listed = await api.get("/api/models");
    cache.saveModels(listed);
  } catch {
    listed = cache.loadModels(); // offline: the models seen last time
  }
  state.models = listed?.models || [];
  state.providers = listed?.providers || [];
  state.serverDefaultModel = listed?.default || state.models[0]?.id || null;
  // A default chosen in Settings wins; else the model this user chose last (issue 8, item 3).
  const preferred = preferredModel();
  state.defaultModel = state.models.some((m) => m.id === preferred)
    ? preferred
    : lastUsedModel(state.models) || state.serverDefaultModel;
  select.replaceChildren(
    ...state.models.map((m) => {
      const option = document.createElement("option");
      option.value = m.id;
      option.textContent = optionLabel(m, state.providers || []);
      return option;
    }),
  );
  recheckLater(loadModels, showProviderState(select, state.providers || []));
  const s = visibleSession();
  selectModel(s?.meta?.model || state.defaultModel);
}

/** A new chat's model: the default chosen in Settings, else the one this user chose last. */
function newChatModel() {
  const preferred = preferredModel();
  if (state.models.some((m) => m.id === preferred)) return preferred;
  return lastUsedModel(state.models) || state.defaultModel;
}

function selectModel(modelId) {
  const select = $("model");
  if (modelId && state.models.some((m) => m.id === modelId)) select.value = modelId;
  else if (state.defaultModel) select.value = state.defaultModel;
}

export function chosenModel() {
  return $("model").value || null;
}

async function onModelChange() {
  const s = visibleSession();
  const model = chosenModel();
  rememberModel(model);
  if (!s?.meta || s.deleted) return; // a new chat takes the model with its first message
  try {
    s.meta = { ...s.meta, ...(await api.patch(`/api/sessions/${s.id}`, { model })) };
  } catch {
    // the turn itself names the model too, so this only affects the default shown next time
  }
}

// ---- rendering -------------------------------------------------------------------------------

function titleOf(s) {
  if (s?.meta?.title) return s.meta.title;
  const first = s && viewMessages(s).find((m) => m.role === "user");
  if (first) {
    const text = typeof first.content === "string" ? first.content : "Image";
    return text.split("\n")[0].slice(0, 80) || "New chat";
  }
  return "New chat";
}

function render() {
  const s = visibleSession();
  const list = s ? viewMessages(s) : [];
  // A chat opened by its URL is not known until it loads: neutral placeholders meanwhile,
  // never the new-chat page's "New chat" / "What's on your mind?" (issue 9, item 3).
  const loading = Boolean(s) && !s.loaded && !s.deleted && !s.loadFailed && !list.length;
  $("chat-loading").hidden = !loading;
  $("chat-title").classList.toggle("loading", loading);
  const scroller = $("chat-scroll");
  const nearBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 120;
  const added = renderMessages($("messages"), list);
  $("empty").hidden = loading || list.length > 0 || Boolean(s?.deleted || s?.loadFailed);
  if (nearBottom || added) scroller.scrollTop = scroller.scrollHeight;

  const title = loading ? "" : titleOf(s);
  $("chat-title").textContent = title;
  document.title = s && !loading ? `${title} · chatkeep` : "chatkeep";

  const unavailable =
    s?.loadFailed && !list.length ? "This chat cannot be loaded right now." : null;
  const notice = s?.deleted ? "Session was deleted" : state.notice || unavailable;
  $("export-chat").hidden = !s?.meta || Boolean(s.deleted); // a chat the server knows
  $("notice").hidden = !notice;
  $("notice-text").textContent = notice || "";

  const activity = s?.activity || "idle";
  $("send").disabled = activity !== "idle" || Boolean(s?.deleted);
  // Stop from the moment the turn is sent: a slow model can be stopped while it thinks.
  $("stop").hidden = activity === "idle" || Boolean(s?.deleted);
  $("stop").disabled = Boolean(s?.live?.stopping || s?.stopWanted);
  const status = $("generating");
  status.hidden = activity === "idle";
  status.textContent = activity === "sending" ? "Sending..." : "Generating...";
}

/** Copy `text`; the button says "Copied" at once and for two seconds after the write. */
async function copyText(text, button) {
  const label = button?.dataset.label || button?.textContent;
  if (button) {
    button.dataset.label = label;
    button.textContent = "Copied";
  }
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    if (button) button.textContent = "Copy failed"; // not focused, or no permission
  }
  if (button) setTimeout(() => (button.textContent = label), 2000);
}

function onMessageClick(event) {
  const target = event.target.closest("button");
  if (!target) return;
  if (target.classList.contains("copy-code")) {
    copyText(target.parentElement.querySelector("pre")?.textContent || "", target);
    return;
  }
  const article = target.closest("article[data-message-id]");
  const id = article?.dataset.messageId;
  const action = target.dataset.action;
  if (!id || !action) return;
  if (action === "retry") retry(id);
  else if (action === "discard") discard(id);
  else if (action === "copy") copyText(messageText(viewMessages(visibleSession()), id), target);
  else handleAction(state.sessionId, action, id, target);
}

export function initChat() {
  subscribe(render);
  hooks.sessionGone = sessionGone;
  hooks.sessionConfirmed = () => sidebar.refresh();
  hooks.replyFinished = (sessionId) => {
    sidebar.refresh(); // new title, new order
    const s = sessionState(sessionId);
    if (!s.meta || s.branched) {
      s.branched = false; // an edit or a regeneration: fetch the new path and its versions
      refresh(sessionId);
    } else keep(s);
  };
  $("messages").addEventListener("click", onMessageClick);
  $("stop").addEventListener("click", () => state.sessionId && stop(state.sessionId));
  $("model").addEventListener("change", onModelChange);
  $("notice-new-chat").addEventListener("click", () => newChat());
  window.addEventListener("popstate", () => {
    const id = initialSessionId();
    if (/^\/c\//.test(location.pathname) && id) openSession(id, { push: false });
    else newChat({ push: false });
  });
  document.addEventListener("visibilitychange", () => {
    // Coming back to the tab: catch up with other devices, merging by id (TC-4.1).
    const id = state.sessionId;
    if (document.visibilityState === "visible" && id && !isWorking(id)) refresh(id);
  });
}
