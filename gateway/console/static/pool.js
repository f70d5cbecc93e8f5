// The pool tab: a table of models (queue, affinity, keep-alive, load/unload/restart) and a
// card per backend (health, slots with the tokens each holds and who holds it, KV cache, speed).
import { api } from "./api.js";
import { $, el, num, replace, td } from "./dom.js";

function badge(state) {
  return el("span", { class: `badge ${state}`, text: state });
}

function countdown(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.max(0, Math.round(seconds));
  return s >= 60 ? `${Math.floor(s / 60)} m ${s % 60} s` : `${s} s`;
}

async function act(path, body, button) {
  const error = $("#action-error");
  error.textContent = "";
  button.disabled = true;
  try {
    await api("POST", path, body);
  } catch (exc) {
    error.textContent = exc.message;
  } finally {
    button.disabled = false;
  }
}

function actionButton(label, path, body, extra = {}) {
  const button = el("button", { type: "button", text: label, ...extra });
  button.addEventListener("click", () => act(path, body, button));
  return button;
}

function modelActions(model) {
  if (!model.supervised) return el("td", { class: "muted", text: "external" });
  const body = { model: model.id };
  return el(
    "td",
    { class: "actions" },
    actionButton("Load", "/admin/runners/load", body, { dataset: { action: "load" } }),
    actionButton("Unload", "/admin/runners/unload", body, { dataset: { action: "unload" } }),
    actionButton("Restart", "/admin/runners/restart", body, { dataset: { action: "restart" } }),
  );
}

function modelRow(model, runnersByModel) {
  const sup = model.supervised;
  const unloadIn = (runnersByModel.get(model.id) ?? [])
    .map((r) => r.unload_in_seconds)
    .filter((s) => s !== null && s !== undefined);
  const keepAlive = sup
    ? unloadIn.length
      ? `unloads in ${countdown(Math.min(...unloadIn))}`
      : sup.keep_alive === null
        ? "kept loaded"
        : `${countdown(sup.keep_alive)} when idle`
    : "—";
  const aff = model.affinity;
  return el(
    "tr",
    { dataset: { model: model.id } },
    td(model.id),
    el("td", {}, badge(sup ? sup.state : model.backends ? "ready" : "unhealthy")),
    td(model.backends, { class: "num" }),
    td(model.inflight, { class: "num" }),
    td(model.queue_depth, { class: "num queue" }),
    td(`${aff.hit} / ${aff.spill} / ${aff.miss}`, { class: "num" }),
    td(keepAlive, { class: "keep-alive" }),
    modelActions(model),
  );
}

function slotBox(slot) {
  const holder = slot.key ? `· ${slot.key}` : "";
  return el(
    "div",
    {
      class: slot.busy ? "slot busy" : "slot",
      dataset: { slot: slot.id, state: slot.busy ? "busy" : "idle" },
      title: `${slot.tokens} of ${slot.n_ctx} tokens in its KV cache`,
    },
    el("strong", { text: `#${slot.id} ${slot.busy ? "busy" : "idle"}` }),
    el("div", { text: `${num(slot.tokens)} tok ${holder}` }),
  );
}

function backendCard(backend) {
  const state = backend.draining ? "draining" : backend.health;
  const ratio = backend.kv_cache_ratio;
  const runner = backend.runner;
  const holders = backend.inflight.map((h) => `${h.key ?? "?"} (${num(h.seconds, 1)} s)`);
  const drain = backend.draining
    ? actionButton("Resume", "/admin/backends/resume", { backend: backend.name })
    : actionButton("Drain", "/admin/backends/drain", { backend: backend.name });
  return el(
    "article",
    { class: "card backend", dataset: { backend: backend.name } },
    el("h3", {}, el("span", { class: "name", text: backend.name }), badge(state)),
    el("div", { class: "meta", text: `${backend.model ?? "no model yet"}` }),
    runner
      ? el("div", {
          class: "meta runner",
          text: `runner on ${runner.device} · ${runner.state}${
            runner.unload_in_seconds !== null && runner.unload_in_seconds !== undefined
              ? ` · unloads in ${countdown(runner.unload_in_seconds)}`
              : ""
          }`,
        })
      : null,
    el(
      "div",
      { class: "row" },
      el("span", { class: "leased", text: `leased ${backend.slots_leased} / ${backend.slots_total}` }),
      el("span", { text: `prompt ${num(backend.prompt_tokens_per_second)} tok/s` }),
      el("span", { text: `generation ${num(backend.generation_tokens_per_second)} tok/s` }),
      el("span", { text: `deferred ${num(backend.requests_deferred)}` }),
    ),
    el("div", { class: "slots" }, backend.slots.map(slotBox)),
    el("div", {
      class: "meta",
      text: `KV cache ${num(backend.kv_cache_tokens)} tokens${
        ratio === null ? "" : ` · ${num(ratio * 100, 1)} %`
      }${backend.kv_cache_bytes ? ` · ${num(backend.kv_cache_bytes / 2 ** 20)} MiB` : ""}`,
    }),
    el("progress", { class: "kv", max: 1, value: ratio ?? 0 }),
    holders.length ? el("div", { class: "meta holders", text: `held by ${holders.join(", ")}` }) : null,
    backend.last_error ? el("div", { class: "error", text: backend.last_error }) : null,
    el("div", { class: "actions" }, drain),
  );
}

export function renderPool(pool) {
  const runnersByModel = new Map();
  for (const backend of pool.backends) {
    if (!backend.runner) continue;
    const list = runnersByModel.get(backend.model) ?? [];
    list.push(backend.runner);
    runnersByModel.set(backend.model, list);
  }
  replace($("#models tbody"), pool.models.map((m) => modelRow(m, runnersByModel)));
  replace($("#backends"), pool.backends.map(backendCard));
  replace(
    $("#pending"),
    pool.pending_runners.length
      ? [
          el("h2", { text: "Runners not in the pool" }),
          el(
            "ul",
            {},
            pool.pending_runners.map((r) =>
              el("li", { text: `${r.model} on ${r.device}: ${r.state}` }),
            ),
          ),
        ]
      : [],
  );
}
