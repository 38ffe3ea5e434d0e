// Server-sent events read from a fetch() body. EventSource cannot POST a turn, nor send
// Last-Event-ID on its first request (SPEC 9), so the page parses the stream itself, following
// the WHATWG event-stream format: lines end in CRLF, LF or CR; "data" lines join with "\n";
// a blank line dispatches; lines starting with ":" are comments (keep-alive pings).

/** Yields `{event, data, id}` for each event of `response`'s body, until the body ends. */
export async function* readEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let pending = { event: "", data: [], id: null };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      for (;;) {
        const match = /\r\n|\r|\n/.exec(buffer);
        if (!match) break;
        // A CR at the very end may be the first half of a CRLF: wait for the next chunk.
        if (match[0] === "\r" && match.index === buffer.length - 1) break;
        const line = buffer.slice(0, match.index);
        buffer = buffer.slice(match.index + match[0].length);
        if (line === "") {
          if (pending.data.length) {
            yield { event: pending.event || "message", data: pending.data.join("\n"), id: pending.id };
          }
          pending = { event: "", data: [], id: pending.id };
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon === -1 ? line : line.slice(0, colon);
        let fieldValue = colon === -1 ? "" : line.slice(colon + 1);
        if (fieldValue.startsWith(" ")) fieldValue = fieldValue.slice(1);
        if (field === "event") pending.event = fieldValue;
        else if (field === "data") pending.data.push(fieldValue);
        else if (field === "id" && !fieldValue.includes("\0")) pending.id = fieldValue;
      }
    }
  } finally {
    // Also runs when the consumer stops early: close the connection instead of leaking it.
    reader.cancel().catch(() => {});
  }
}
