// Merging what the server says with what this page already knows, by id (TC-4.1, TC-4.3).
//
// The source report lost optimistic messages when a refetch replaced the cache wholesale, and
// duplicated them when a saved copy arrived under a new id. Here ids are chosen by the client,
// so a saved message has the id of its optimistic copy, and a merge is a union by id:
// - a message the fetch returns replaces the known copy unless the known one is newer
//   (a finished reply beats a stale `streaming` snapshot, more text beats less);
// - a known message the fetch lacks is kept when it is newer than the fetch (a higher seq, or no
//   seq yet: not confirmed), and dropped only when the fetch is newer and left it out (another
//   branch became active).

function isNewer(a, b) {
  if (a.status !== "streaming" && b.status === "streaming") return true;
  if (a.status === "streaming" && b.status !== "streaming") return false;
  if (a.updated_at && b.updated_at && a.updated_at !== b.updated_at) {
    return a.updated_at > b.updated_at;
  }
  const aLen = typeof a.content === "string" ? a.content.length : 0;
  const bLen = typeof b.content === "string" ? b.content.length : 0;
  return aLen > bLen;
}

function bySeq(a, b) {
  const sa = a.seq ?? Number.MAX_SAFE_INTEGER;
  const sb = b.seq ?? Number.MAX_SAFE_INTEGER;
  return sa - sb;
}

/** `known` and `fetched` are arrays of messages; returns one array, one entry per id. */
export function mergeMessages(known, fetched) {
  const fetchedMax = fetched.reduce((max, m) => Math.max(max, m.seq ?? 0), 0);
  const knownById = new Map(known.map((m) => [m.id, m]));
  const merged = new Map();
  for (const m of fetched) {
    const mine = knownById.get(m.id);
    merged.set(m.id, mine && isNewer(mine, m) ? mine : m);
  }
  for (const m of known) {
    if (merged.has(m.id)) continue;
    if (m.seq == null || m.seq > fetchedMax) merged.set(m.id, m);
  }
  // Array.prototype.sort is stable: unconfirmed messages keep the order they were sent in.
  return [...merged.values()].sort(bySeq);
}

/** Insert or replace one message (from a stream event), keeping seq order; nothing else moves. */
export function upsertMessage(list, message) {
  const index = list.findIndex((m) => m.id === message.id);
  if (index !== -1 && isNewer(list[index], message)) return list;
  const next = list.slice();
  if (index === -1) next.push(message);
  else next[index] = message;
  return next.sort(bySeq);
}
