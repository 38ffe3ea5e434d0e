// The providers' state in the model picker (issue 8, items 1 and 3): a provider whose key is
// refused or that cannot be reached is said next to the picker and on its models, instead of
// its models silently vanishing; and the model a user last chose is their default for a new chat.

const LAST_MODEL_KEY = "last_model";
const STATE_WORDS = { unauthorized: "key refused", unreachable: "unreachable", error: "failing" };
const RECHECK_MS = 30_000;

export function rememberModel(modelId) {
  if (modelId) localStorage.setItem(LAST_MODEL_KEY, modelId);
}

/** The user's last chosen model, if it is still on offer. */
export function lastUsedModel(models) {
  const id = localStorage.getItem(LAST_MODEL_KEY);
  return models.some((m) => m.id === id && m.kind !== "embedding") ? id : null;
}

/** The text of a model's option: its name, and its provider's trouble if any. */
export function optionLabel(m, providers) {
  const name = m.is_demo ? `${m.id} (offline demo)` : m.name || m.id;
  const state = providers.find((p) => p.name === m.provider)?.state;
  return STATE_WORDS[state] ? `${name} (${STATE_WORDS[state]})` : name;
}

/** Show failing providers beside the picker; returns whether any fails (to check again). */
export function showProviderState(select, providers) {
  let note = document.getElementById("provider-state");
  if (!note) {
    note = document.createElement("span");
    note.id = "provider-state";
    note.className = "provider-state";
    note.setAttribute("role", "status");
    select.after(note);
  }
  const failing = providers.filter((p) => STATE_WORDS[p.state]);
  note.hidden = failing.length === 0;
  note.textContent = failing.map((p) => `${p.name}: ${STATE_WORDS[p.state]}`).join(", ");
  note.title = failing
    .map((p) => `${p.name}: ${p.message}${p.checked_at ? ` (checked ${p.checked_at})` : ""}`)
    .join("\n");
  for (const p of failing) note.dataset[`state${p.name.replace(/\W/g, "")}`] = p.state;
  return failing.length > 0;
}

let timer = null;

/** While a provider fails, list the models again now and then, so a recovery shows. */
export function recheckLater(reload, failing) {
  clearTimeout(timer);
  timer = failing ? setTimeout(reload, RECHECK_MS) : null;
}
