// Client-chosen ids (SPEC 1): they are the idempotency keys, so one user action gets its ids once
// and every retry of that action reuses them (G1).

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A UUIDv7 (RFC 9562): 48 bits of milliseconds, then random bits; sorts by creation time. */
export function uuidv7() {
  const cryptoObj = globalThis.crypto;
  if (!cryptoObj?.getRandomValues) {
    return cryptoObj.randomUUID();
  }
  const bytes = new Uint8Array(16);
  cryptoObj.getRandomValues(bytes);
  let ms = Date.now();
  for (let i = 5; i >= 0; i -= 1) {
    bytes[i] = ms % 256;
    ms = Math.floor(ms / 256);
  }
  bytes[6] = (bytes[6] & 0x0f) | 0x70; // version 7
  bytes[8] = (bytes[8] & 0x3f) | 0x80; // variant 10
  const h = hex(bytes);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** Length in Unicode code points: the unit of the server's stream offsets (Python's len). */
export function codePoints(text) {
  let n = 0;
  for (const _ of text) n += 1;
  return n;
}
