// Signing in: the first-run form that creates the admin account, the sign-in form, sign-out.
// The server sets an HttpOnly session cookie and gives a CSRF token (also in the chatkeep_csrf
// cookie) that every unsafe request must echo in X-CSRF-Token.

import { ApiError, NetworkError, api, setCsrfToken, sleep } from "./api.js";
import { forget, lastUser, rememberUser } from "./cache.js";
import { ACTIVE_KEY } from "./chat.js";

const $ = (id) => document.getElementById(id);
let mode = "login";
let signedIn = () => {};

const TEXT = {
  setup: {
    heading: "Welcome to chatkeep",
    intro: "Create the admin account for this server. You can add more accounts later.",
    submit: "Create account",
    password: "new-password",
  },
  login: {
    heading: "Sign in to chatkeep",
    intro: "",
    submit: "Sign in",
    password: "current-password",
  },
};

function showError(text) {
  const el = $("auth-error");
  el.textContent = text || "";
  el.hidden = !text;
}

export function showAuthForm(nextMode, message = "") {
  mode = nextMode;
  const text = TEXT[mode];
  $("auth-heading").textContent = text.heading;
  $("auth-intro").textContent = text.intro;
  $("auth-intro").hidden = !text.intro;
  $("auth-submit").textContent = text.submit;
  $("auth-password").autocomplete = text.password;
  showError(message);
  $("app").hidden = true;
  $("auth-screen").hidden = false;
  $("auth-name").focus();
}

function describe(err) {
  if (err instanceof NetworkError) return "Cannot reach the server. Check your connection.";
  if (err.status === 401) return "Wrong name or password.";
  if (err.status === 429) return "Too many attempts. Wait a minute and try again.";
  return err.message || "Something went wrong.";
}

async function onSubmit(event) {
  event.preventDefault();
  const form = event.target;
  const name = form.elements.name.value.trim();
  const password = form.elements.password.value;
  if (!name || !password) return;
  $("auth-submit").disabled = true;
  showError("");
  try {
    const path = mode === "setup" ? "/api/auth/setup" : "/api/auth/login";
    const result = await api.post(path, { name, password }, { retries: 0 });
    setCsrfToken(result.csrf_token);
    rememberUser(result.user);
    form.reset();
    $("auth-screen").hidden = true;
    signedIn(result.user);
  } catch (err) {
    if (err instanceof ApiError && err.code === "already_exists") {
      showAuthForm("login", "This server is already set up. Sign in.");
    } else {
      showError(describe(err));
    }
  } finally {
    $("auth-submit").disabled = false;
  }
}

/** Find out who we are; show a form, or call `onSignedIn(user)`. When the server cannot be
 * reached, the user signed in last time starts the page from its cache (it opens offline:
 * issue 9, item 4) while we keep asking; the server's answer, once it comes, decides. */
export async function bootAuth(onSignedIn) {
  signedIn = onSignedIn;
  $("auth-form").addEventListener("submit", onSubmit);
  let offlineUser = null;
  for (let attempt = 0; ; attempt += 1) {
    let status;
    try {
      status = await api.get("/api/auth/status", { retries: 0 });
    } catch {
      if (!offlineUser && lastUser()) {
        offlineUser = lastUser();
        onSignedIn(offlineUser);
      }
      await sleep(Math.min(10000, 1000 * 2 ** attempt));
      continue;
    }
    if (status.user) {
      setCsrfToken(status.csrf_token);
      rememberUser(status.user);
      if (!offlineUser) onSignedIn(status.user);
      else if (offlineUser.name !== status.user.name) location.reload();
    } else {
      forget();
      showAuthForm(status.needs_setup ? "setup" : "login");
    }
    return;
  }
}

export async function signOut() {
  try {
    await api.post("/api/auth/logout", undefined, { retries: 1 });
  } catch {
    // signed out here either way
  }
  setCsrfToken(null);
  forget();
  localStorage.removeItem(ACTIVE_KEY);
  location.assign("/");
}
