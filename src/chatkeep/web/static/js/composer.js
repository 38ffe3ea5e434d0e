// The composer: the message input, image attachments, and Send.
//
// One user action = one message with its ids made once, here, and written to the outbox
// before anything else happens. The guard runs first and synchronously: a double click, a
// double tap or Enter twice delivers a second event, which finds the flag set and Send disabled
// before any await of the first could have finished (TC-1.2, E2E-3, the report's ISSUE 3).

import { chosenModel, startSession } from "./chat.js";
import { rememberModel } from "./providers.js";
import { uuidv7 } from "./ids.js";
import * as outbox from "./outbox.js";
import { changed, visibleSession } from "./state.js";
import { kick } from "./turns.js";

const IMAGE_TYPES = ["image/png", "image/jpeg", "image/gif", "image/webp"];
const MAX_IMAGE_BYTES = 8 * 1024 * 1024; // the server's default limit (G8)
const MAX_IMAGES = 8;
const $ = (id) => document.getElementById(id);
let attachments = []; // {key, url}
let sending = false;

/** Send what the composer holds. Returns whether a message was sent. */
export function submit() {
  const current = visibleSession();
  if (sending || (current && (current.activity !== "idle" || current.deleted))) return false;
  const input = $("input");
  // Sent as typed (indentation, blank lines): only a message of nothing but spaces is refused.
  const text = input.value.trim() ? input.value : "";
  if (!text && !attachments.length) return false;
  sending = true;
  $("send").disabled = true;
  try {
    const content = attachments.length
      ? [
          ...(text ? [{ type: "text", text }] : []),
          ...attachments.map((a) => ({ type: "image_url", image_url: { url: a.url } })),
        ]
      : text;
    const model = chosenModel();
    rememberModel(model); // the user's default for their next new chat (issue 8, item 3)
    const s = current ?? startSession(uuidv7(), model ? { model } : {});
    const id = uuidv7();
    const body = { message: { id, content }, reply_id: uuidv7() };
    if (model) body.model = model;
    if (s.newFields) body.session = s.newFields; // creates the chat in the same request
    outbox.add({
      id,
      sessionId: s.id,
      replyId: body.reply_id,
      body,
      state: "queued",
      error: null,
      createdAt: Date.now(),
    });
    input.value = "";
    autosize();
    clearAttachments();
    s.activity = navigator.onLine ? "sending" : "idle";
    s.sendingId = navigator.onLine ? id : null;
    changed();
    kick(s.id);
    return true;
  } finally {
    sending = false;
  }
}

function autosize() {
  const input = $("input");
  input.style.height = "auto";
  input.style.height = `${Math.min(input.scrollHeight, 220)}px`;
}

function hint(text) {
  const el = $("composer-hint");
  el.textContent = text || "";
  el.hidden = !text;
}

function readAsDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

async function addFiles(files) {
  hint("");
  for (const file of files) {
    if (!IMAGE_TYPES.includes(file.type)) {
      hint("Only PNG, JPEG, GIF and WebP images can be attached.");
      continue;
    }
    if (file.size > MAX_IMAGE_BYTES) {
      hint("That image is larger than 8 MiB.");
      continue;
    }
    if (attachments.length >= MAX_IMAGES) {
      hint(`At most ${MAX_IMAGES} images per message.`);
      break;
    }
    attachments.push({ key: uuidv7(), url: await readAsDataUrl(file) });
  }
  renderAttachments();
}

function clearAttachments() {
  attachments = [];
  renderAttachments();
}

function renderAttachments() {
  const box = $("attachments");
  box.replaceChildren(
    ...attachments.map((a) => {
      const item = document.createElement("div");
      item.className = "attachment";
      const img = document.createElement("img");
      img.alt = "preview";
      img.src = a.url;
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "attachment-remove";
      remove.textContent = "×";
      remove.setAttribute("aria-label", "Remove image");
      remove.addEventListener("click", () => {
        attachments = attachments.filter((x) => x.key !== a.key);
        renderAttachments();
      });
      item.append(img, remove);
      return item;
    }),
  );
  box.hidden = attachments.length === 0;
}

// On phones Enter makes a new line, as in the messaging apps; Send sends.
const coarse = window.matchMedia("(pointer: coarse)");

export function initComposer() {
  const input = $("input");
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });
  input.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.keyCode === 229) {
      return;
    }
    if (coarse.matches) return;
    event.preventDefault();
    submit();
  });
  input.addEventListener("input", autosize);
  input.addEventListener("paste", (event) => {
    const files = [...(event.clipboardData?.files || [])].filter((f) => f.type.startsWith("image/"));
    if (files.length) {
      event.preventDefault();
      addFiles(files);
    }
  });
  $("attach").addEventListener("click", () => $("file").click());
  $("file").addEventListener("change", (event) => {
    addFiles([...event.target.files]);
    event.target.value = "";
  });
  const composer = $("composer");
  composer.addEventListener("dragover", (event) => event.preventDefault());
  composer.addEventListener("drop", (event) => {
    const files = [...(event.dataTransfer?.files || [])];
    if (files.length) {
      event.preventDefault();
      addFiles(files);
    }
  });
}
