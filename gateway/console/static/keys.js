// The keys tab: list with usage against budgets, create (the secret shown once), change
// limits, revoke (a second click confirms).
import { api } from "./api.js";
import { $, el, num, replace, td } from "./dom.js";

const LIMITS = ["rpm", "tpm", "max_concurrency", "daily_tokens", "monthly_tokens"];
let keys = [];

function usage(used, budget) {
  if (used === null || used === undefined) return budget ? `— / ${num(budget)}` : "not counted";
  return budget ? `${num(used)} / ${num(budget)}` : num(used);
}

function revokeButton(key) {
  const button = el("button", {
    type: "button",
    class: "danger",
    text: "Revoke",
    dataset: { action: "revoke" },
  });
  button.addEventListener("click", async () => {
    if (button.dataset.action === "revoke") {
      button.dataset.action = "confirm-revoke";
      button.textContent = "Confirm revoke";
      return;
    }
    button.disabled = true;
    try {
      await api("DELETE", `/ui/api/keys/${encodeURIComponent(key.id)}`);
      await loadKeys();
    } catch (exc) {
      $("#key-error").textContent = exc.message;
      button.disabled = false;
    }
  });
  return button;
}

function editButton(key) {
  const button = el("button", { type: "button", text: "Limits", dataset: { action: "edit" } });
  button.addEventListener("click", () => startEdit(key));
  return button;
}

function keyRow(key) {
  const active = key.state === "active" || key.state === "disabled";
  return el(
    "tr",
    { dataset: { key: key.id, state: key.state } },
    td(key.name, { class: "key-name" }),
    td(key.id),
    td(key.state),
    td(key.models.length ? key.models.join(", ") : "all"),
    td(key.rpm, { class: "num" }),
    td(key.tpm, { class: "num" }),
    td(key.max_concurrency, { class: "num" }),
    td(usage(key.used_today, key.daily_tokens), { class: "num" }),
    td(usage(key.used_month, key.monthly_tokens), { class: "num" }),
    el("td", { class: "actions" }, active ? [editButton(key), revokeButton(key)] : []),
  );
}

export async function loadKeys() {
  try {
    keys = (await api("GET", "/ui/api/keys")).data;
  } catch (exc) {
    $("#key-error").textContent = exc.message;
    return;
  }
  replace($("#keys tbody"), keys.map(keyRow));
  replace(
    $("#key-names"),
    keys.map((k) => el("option", { value: k.name })),
  );
}

function startEdit(key) {
  const form = $("#key-form");
  form.elements.id.value = key.id;
  form.elements.name.value = key.name;
  form.elements.models.value = key.models.join(", ");
  for (const name of LIMITS) form.elements[name].value = key[name] ?? "";
  $("#key-form-title").textContent = `Limits of ${key.name}`;
  $("#key-submit").textContent = "Save";
  $("#key-cancel").hidden = false;
}

function endEdit() {
  const form = $("#key-form");
  form.reset();
  form.elements.id.value = "";
  $("#key-form-title").textContent = "New API key";
  $("#key-submit").textContent = "Create key";
  $("#key-cancel").hidden = true;
}

function fields(form, editing) {
  const body = { name: form.elements.name.value.trim() };
  const models = form.elements.models.value
    .split(",")
    .map((m) => m.trim())
    .filter(Boolean);
  if (models.length || editing) body.models = models;
  for (const name of LIMITS) {
    const value = form.elements[name].value.trim();
    if (value) body[name] = Number(value);
    else if (editing) body[name] = null;
  }
  return body;
}

async function submit(event) {
  event.preventDefault();
  const form = event.target;
  const id = form.elements.id.value;
  $("#key-error").textContent = "";
  try {
    if (id) {
      await api("PATCH", `/ui/api/keys/${encodeURIComponent(id)}`, fields(form, true));
    } else {
      const created = await api("POST", "/ui/api/keys", fields(form, false));
      $("#key-secret-value").textContent = created.key;
      $("#key-secret").hidden = false;
    }
    endEdit();
    await loadKeys();
  } catch (exc) {
    $("#key-error").textContent = exc.message;
  }
}

export function setupKeys() {
  $("#key-form").addEventListener("submit", submit);
  $("#key-cancel").addEventListener("click", endEdit);
  $("#key-secret-hide").addEventListener("click", () => {
    $("#key-secret-value").textContent = "";
    $("#key-secret").hidden = true;
  });
}
