// Runs before the first paint (a classic script in <head>): a theme chosen in Settings must
// not flash the system's one first. prefs.js owns the same key.
try {
  const theme = localStorage.getItem("chatkeep.theme");
  if (theme === "light" || theme === "dark") document.documentElement.dataset.theme = theme;
} catch {
  // storage unavailable: follow the system
}
