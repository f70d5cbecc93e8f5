// The playground: one chat turn with a served model through the public API, exactly as a
// client would send it (the pasted key as Bearer, no console cookie), streamed, with the
// time to the first token and the generation speed.
import { $, el, num, replace } from "./dom.js";

let controller = null;

export function setModels(models) {
  const select = $("#chat-model");
  const current = select.value;
  const ids = models.map((m) => m.id);
  if (ids.join("\n") === [...select.options].map((o) => o.value).join("\n")) return;
  replace(
    select,
    ids.map((id) => el("option", { value: id, text: id, selected: id === current })),
  );
  replace(
    $("#model-names"),
    ids.map((id) => el("option", { value: id })),
  );
}

function stats(started, first, end, tokens) {
  const parts = [];
  if (first !== null) parts.push(`TTFT ${num(first - started)} ms`);
  if (first !== null && end > first && tokens > 1) {
    parts.push(`${num(((tokens - 1) * 1000) / (end - first), 1)} tokens/s`);
  }
  parts.push(`${tokens} tokens`);
  $("#chat-stats").textContent = parts.join(" · ");
}

async function send(event) {
  event.preventDefault();
  const form = event.target;
  const output = $("#chat-output");
  output.textContent = "";
  $("#chat-error").textContent = "";
  $("#chat-stats").textContent = "";
  const headers = { "content-type": "application/json" };
  const key = form.elements.key.value.trim();
  if (key) headers.authorization = `Bearer ${key}`;
  const body = {
    model: form.elements.model.value,
    messages: [{ role: "user", content: form.elements.message.value }],
    max_tokens: Number(form.elements.max_tokens.value) || 256,
    stream: true,
    stream_options: { include_usage: true },
  };
  controller = new AbortController();
  $("#chat-send").disabled = true;
  $("#chat-stop").disabled = false;
  const started = performance.now();
  let first = null;
  let tokens = 0;
  let usage = null;
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers,
      body: JSON.stringify(body),
      credentials: "omit",
      signal: controller.signal,
    });
    if (!response.ok) {
      const data = await response.json().catch(() => null);
      throw new Error(data?.error?.message ?? `${response.status} ${response.statusText}`);
    }
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        for (const line of event.split("\n")) {
          if (!line.startsWith("data:")) continue;
          const payload = line.slice(5).trim();
          if (payload === "[DONE]") continue;
          const chunk = JSON.parse(payload);
          if (chunk.error) throw new Error(chunk.error.message ?? "error from the gateway");
          if (chunk.usage) usage = chunk.usage;
          const text = chunk.choices?.[0]?.delta?.content;
          if (text) {
            if (first === null) first = performance.now();
            tokens += 1;
            output.textContent += text;
            stats(started, first, performance.now(), usage?.completion_tokens ?? tokens);
          }
        }
      }
    }
    stats(started, first, performance.now(), usage?.completion_tokens ?? tokens);
  } catch (exc) {
    if (exc.name !== "AbortError") $("#chat-error").textContent = exc.message;
  } finally {
    controller = null;
    $("#chat-send").disabled = false;
    $("#chat-stop").disabled = true;
  }
}

export function setupPlayground() {
  $("#chat-form").addEventListener("submit", send);
  $("#chat-stop").addEventListener("click", () => controller?.abort());
}
