// Export the open chat as Markdown or JSON, in the same formats as the command line
// (docs/web.md, "Export formats"): JSON is the session with its messages exactly as
// GET /api/sessions/{id} returns them; Markdown is `# title`, then one `**role**` section per
// message of the active path.

import { api } from "./api.js";
import { visibleSession } from "./state.js";

const $ = (id) => document.getElementById(id);

function partText(part) {
  if (part.type === "text") return part.text;
  if (part.type === "image_url") return `![image](${part.image_url?.url || ""})`;
  return "";
}

/** The Markdown export of `detail` (a session with its `messages`). */
export function toMarkdown(detail) {
  const lines = [`# ${detail.title || "New chat"}`, ""];
  for (const m of detail.messages) {
    const text = typeof m.content === "string" ? m.content : m.content.map(partText).join("\n\n");
    lines.push(`**${m.role}**`, "", text, "");
  }
  return `${lines.join("\n").trimEnd()}\n`;
}

function slug(title) {
  const words = (title || "chat").toLowerCase().replace(/[^\p{L}\p{N}]+/gu, "-");
  return words.replace(/^-+|-+$/g, "").slice(0, 60) || "chat";
}

function download(name, type, text) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export async function exportChat(format) {
  const s = visibleSession();
  if (!s?.meta) return;
  let detail;
  try {
    detail = await api.get(`/api/sessions/${s.id}`, { retries: 1 });
  } catch {
    // offline: what this page shows, in the API's shape
    detail = { ...s.meta, messages: s.messages.filter((m) => m.seq != null) };
  }
  const base = `${slug(detail.title)}-${s.id.slice(0, 8)}`;
  if (format === "json") {
    download(`${base}.json`, "application/json", `${JSON.stringify(detail, null, 2)}\n`);
  } else {
    download(`${base}.md`, "text/markdown", toMarkdown(detail));
  }
}

function closeMenu() {
  $("export-menu").hidden = true;
  $("export-chat").setAttribute("aria-expanded", "false");
}

export function initExport() {
  $("export-chat").addEventListener("click", (event) => {
    event.stopPropagation();
    const menu = $("export-menu");
    menu.hidden = !menu.hidden;
    $("export-chat").setAttribute("aria-expanded", String(!menu.hidden));
    if (!menu.hidden) menu.querySelector("button").focus();
  });
  $("export-menu").addEventListener("click", (event) => {
    const format = event.target.closest("button")?.dataset.format;
    if (!format) return;
    event.stopPropagation();
    closeMenu();
    exportChat(format);
  });
  document.addEventListener("click", closeMenu);
  document.addEventListener("keydown", (event) => event.key === "Escape" && closeMenu());
}
