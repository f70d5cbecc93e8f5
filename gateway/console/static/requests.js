// The requests tab: the last requests of this gateway process (its ring buffer), newest first,
// filtered here by status, key and model as the filters change.
import { $, el, replace, td } from "./dom.js";

const KEEP = 500;
let records = [];

function matches(record, filters) {
  const status = filters.status;
  if (status) {
    const code = record.status ?? 0;
    if (status === "ok" && code >= 400) return false;
    if (status === "error" && code < 400) return false;
    if (/^\dxx$/.test(status) && Math.floor(code / 100) !== Number(status[0])) return false;
    if (/^\d{3}$/.test(status) && code !== Number(status)) return false;
  }
  if (filters.key && record.key !== filters.key) return false;
  if (filters.model && record.model !== filters.model) return false;
  return true;
}

function row(r) {
  const time = new Date(r.at * 1000).toLocaleTimeString();
  return el(
    "tr",
    { class: r.status >= 400 ? "error" : "", dataset: { status: r.status } },
    td(time),
    td(r.status, { class: "num" }),
    td(r.key),
    td(r.model),
    td(r.backend),
    td(r.queue_ms, { class: "num" }),
    td(r.ttft_ms, { class: "num" }),
    td(r.total_ms, { class: "num" }),
    td(r.prompt_tokens, { class: "num" }),
    td(r.cached_tokens, { class: "num" }),
    td(r.completion_tokens, { class: "num" }),
  );
}

export function renderRequests() {
  const form = $("#request-filters");
  const filters = {
    status: form.elements.status.value,
    key: form.elements.key.value.trim(),
    model: form.elements.model.value.trim(),
  };
  const shown = records.filter((r) => matches(r, filters)).slice(-200).reverse();
  replace($("#requests tbody"), shown.map(row));
}

export function addRequests(list) {
  if (!list.length) return;
  records = records.concat(list).slice(-KEEP);
  if (!$("#tab-requests").hidden) renderRequests();
}

export function setupRequests() {
  const form = $("#request-filters");
  form.addEventListener("input", renderRequests);
  form.addEventListener("submit", (event) => event.preventDefault());
}
