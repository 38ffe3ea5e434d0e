// A reasoning model's thinking (issue 8, item 4): kept apart from the answer, shown collapsed
// above it ("Thought for 12 s"), opened on a click, as ChatGPT and Open WebUI do. The text is
// set with textContent: plain text, never markup, so it cannot run script.
//
// Live, `reasoning` events carry ids `<reply_id>:r<reasoning offset>:<text offset>`; the page
// keeps both offsets, so a resumed stream (Last-Event-ID) sends exactly what it missed of each.

/** Append a `reasoning` event to the live reply; whether it added anything. */
export function applyReasoning(live, eventId, text) {
  if (!live || !eventId) return false;
  const match = /:r(\d+):\d+$/.exec(eventId);
  if (!match) return false;
  const offset = Number(match[1]);
  if (!(offset > (live.reasoningOffset || 0))) return false; // already have it
  live.reasoning = (live.reasoning || "") + text;
  live.reasoningOffset = offset;
  live.thinkingSince ??= Date.now();
  return true;
}

/** The Last-Event-ID that resumes both the text and the reasoning of `live`. */
export function resumeId(live) {
  const r = live.reasoningOffset || 0;
  return r ? `${live.replyId}:r${r}:${live.offset}` : `${live.replyId}:${live.offset}`;
}

/** Offsets of a stored, still streaming reply, to follow it from there. */
export function storedReasoning(message) {
  const reasoning = message.reasoning || "";
  return { reasoning, reasoningOffset: [...reasoning].length };
}

function seconds(ms) {
  return Math.max(1, Math.round(ms / 1000));
}

function summaryText(m) {
  const answering = typeof m.content === "string" ? m.content.length > 0 : true;
  if (m.status === "streaming" && !answering) return "Thinking…";
  if (m.reasoning_ms != null) return `Thought for ${seconds(m.reasoning_ms)} s`;
  if (m.thinkingSince) return `Thought for ${seconds(Date.now() - m.thinkingSince)} s`;
  return "Thought";
}

/** The collapsed reasoning block of an assistant message, or null when it has none. */
export function reasoningBlock(m) {
  if (m.role !== "assistant" || !m.reasoning) return null;
  const details = document.createElement("details");
  details.className = "msg-reasoning";
  const summary = document.createElement("summary");
  summary.textContent = summaryText(m);
  const body = document.createElement("div");
  body.className = "reasoning-text";
  body.textContent = m.reasoning.trim();
  details.append(summary, body);
  return details;
}

/** Part of a message's render signature: re-render when the reasoning grows or settles. */
export function reasoningSignature(m) {
  return m.reasoning ? `${m.reasoning.length}:${summaryText(m)}` : "";
}
