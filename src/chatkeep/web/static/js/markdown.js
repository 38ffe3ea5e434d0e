// Message text -> safe HTML. marked turns markdown into HTML and passes raw HTML through;
// DOMPurify then removes everything that could run script (event handlers, javascript: URLs,
// <script>, <iframe>, SVG tricks) from every message, whoever wrote it. Nothing reaches the
// page's DOM without going through sanitize().

import DOMPurify from "../vendor/dompurify/purify.es.js";
import { Marked } from "../vendor/marked/marked.esm.js";

const marked = new Marked({ gfm: true, breaks: true, async: false });
const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
// Raw HTML in a reply is shown as the text it is (as ChatGPT does), not parsed: markup a model
// repeats from the user (`<img onerror=…>`) then never even reaches a parser that would log a
// CSP violation for its handler (issue 9, item 1). DOMPurify below stays the guarantee.
marked.use({
  renderer: {
    html: ({ text }) => text.replace(/[&<>"']/g, (c) => ESCAPES[c]),
  },
});

const PURIFY = {
  USE_PROFILES: { html: true },
  // Markup that could pass for the page's own controls, or restyle it.
  FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "option", "dialog"],
  FORBID_ATTR: ["style", "class", "id", "srcset"],
  ALLOW_DATA_ATTR: false,
};

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A" && node.hasAttribute("href")) {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer nofollow");
  }
  if (node.tagName === "IMG") {
    node.setAttribute("loading", "lazy");
    node.setAttribute("referrerpolicy", "no-referrer");
  }
});

export function sanitize(html) {
  return DOMPurify.sanitize(html, PURIFY);
}

/** A DocumentFragment for `text` rendered as markdown, sanitized. */
export function renderMarkdown(text) {
  const html = sanitize(marked.parse(text));
  const template = document.createElement("template");
  template.innerHTML = html;
  for (const pre of template.content.querySelectorAll("pre")) {
    const wrap = document.createElement("div");
    wrap.className = "code-block";
    const copy = document.createElement("button");
    copy.type = "button";
    copy.className = "copy-code";
    copy.textContent = "Copy";
    copy.setAttribute("aria-label", "Copy code");
    pre.replaceWith(wrap);
    wrap.append(copy, pre);
  }
  return template.content;
}

/** Only images we can vouch for: data: images the user picked, and our own blob URLs. */
export function safeImageUrl(url) {
  if (typeof url !== "string") return null;
  if (/^data:image\/(png|jpeg|gif|webp);base64,/i.test(url)) return url;
  if (/^\/api\/blobs\/[0-9a-f]{64}$/.test(url)) return url;
  if (/^https?:\/\//i.test(url)) return url;
  return null;
}
