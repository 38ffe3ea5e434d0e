// HTTP to chatkeep's API: the sign-in cookie plus X-CSRF-Token on unsafe methods, problem+json
// errors as ApiError, and retries with backoff. Retrying is safe because every write is keyed
// by a client-chosen id (G1).

import { reportNetworkError, reportReachable } from "./net.js";

const SAFE = new Set(["GET", "HEAD", "OPTIONS"]);
let csrfToken = null;
let onUnauthorized = () => {};

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.code = problem?.code || "http_error";
    this.problem = problem;
  }

  get retryable() {
    return this.status >= 500 || this.status === 429;
  }
}

/** The request never got an HTTP answer (offline, connection refused or reset). */
export class NetworkError extends Error {}

export function setCsrfToken(token) {
  csrfToken = token || null;
}

export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

function cookie(name) {
  const prefix = `${name}=`;
  const found = document.cookie.split("; ").find((part) => part.startsWith(prefix));
  return found ? decodeURIComponent(found.slice(prefix.length)) : null;
}

export function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** Exponential backoff with full jitter; a server's Retry-After wins when it gives one. */
export function backoffMs(attempt, retryAfterS) {
  if (retryAfterS > 0) return retryAfterS * 1000;
  const ceiling = Math.min(8000, 300 * 2 ** attempt);
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

/** One fetch, no retries: the raw Response (any status), or NetworkError. */
export async function send(method, path, { body, headers = {}, signal } = {}) {
  const all = { Accept: "application/json", ...headers };
  if (body !== undefined) all["Content-Type"] = "application/json";
  if (!SAFE.has(method)) {
    const token = csrfToken || cookie("chatkeep_csrf");
    if (token) all["X-CSRF-Token"] = token;
  }
  let res;
  try {
    res = await fetch(path, {
      method,
      headers: all,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
      signal,
    });
  } catch (err) {
    if (err?.name === "AbortError") throw err;
    reportNetworkError();
    throw new NetworkError(err?.message || "network error");
  }
  reportReachable();
  return res;
}

/** The problem+json body of a failed response, as an ApiError. */
export async function problemOf(res) {
  let problem = null;
  try {
    problem = await res.json();
  } catch {
    // not JSON: keep the status alone
  }
  const error = new ApiError(res.status, problem);
  error.retryAfter = Number(res.headers.get("Retry-After")) || 0;
  if (res.status === 401) onUnauthorized(error);
  return error;
}

/** A JSON request, retried on network errors, 429 and 5xx; resolves to the parsed body. */
export async function request(method, path, body, { retries = 3, signal } = {}) {
  for (let attempt = 0; ; attempt += 1) {
    let error;
    try {
      const res = await send(method, path, { body, signal });
      if (res.ok) return res.status === 204 ? null : await res.json();
      error = await problemOf(res);
      if (!error.retryable) throw error;
    } catch (err) {
      if (!(err instanceof NetworkError)) throw err;
      error = err;
    }
    if (attempt >= retries || !navigator.onLine) throw error;
    await sleep(backoffMs(attempt, error.retryAfter), signal);
  }
}

export const api = {
  get: (path, opts) => request("GET", path, undefined, opts),
  post: (path, body, opts) => request("POST", path, body, opts),
  patch: (path, body, opts) => request("PATCH", path, body, opts),
  del: (path, opts) => request("DELETE", path, undefined, opts),
};
