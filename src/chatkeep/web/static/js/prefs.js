// The user's preferences, kept in this browser: the theme (system, light or dark: this device)
// and the default model for new chats (per user). Settings (settings.js) changes them.

const THEME_KEY = "chatkeep.theme"; // also read by theme-boot.js before the first paint
const THEMES = ["system", "light", "dark"];
let user = "";

export function usePrefs(userName) {
  user = userName;
}

export function theme() {
  const value = localStorage.getItem(THEME_KEY);
  return THEMES.includes(value) ? value : "system";
}

export function setTheme(value) {
  if (!THEMES.includes(value)) return;
  if (value === "system") {
    localStorage.removeItem(THEME_KEY);
    delete document.documentElement.dataset.theme;
  } else {
    localStorage.setItem(THEME_KEY, value);
    document.documentElement.dataset.theme = value;
  }
}

const modelKey = () => `chatkeep.default_model.v1:${user}`;

/** The model a new chat starts with, when the user chose one (else the server's default). */
export function defaultModel() {
  return user ? localStorage.getItem(modelKey()) : null;
}

export function setDefaultModel(modelId) {
  if (modelId) localStorage.setItem(modelKey(), modelId);
  else localStorage.removeItem(modelKey());
}
