// The two plots of the pool tab, drawn with uPlot from the points each event brings:
// tokens per second (generated and prompt) and the queue of each model, last 15 minutes.
import uPlot from "./vendor/uPlot.esm.js";
import { $ } from "./dom.js";

const KEEP_SECONDS = 15 * 60;
const COLORS = ["#2f6fec", "#e8590c", "#2f9e44", "#ae3ec9", "#1098ad", "#f59f00"];

const data = { t: [], generated: [], prompt: [], queue: new Map() };
let tokensPlot = null;
let queuePlot = null;
let queueModels = "";

function width(node) {
  return Math.max(300, node.clientWidth - 10);
}

function makeTokensPlot() {
  const node = $("#plot-tokens");
  return new uPlot(
    {
      width: width(node),
      height: 200,
      series: [
        {},
        { label: "generated", stroke: COLORS[0], width: 2, points: { show: false } },
        { label: "prompt", stroke: COLORS[1], width: 1, points: { show: false } },
      ],
      axes: [{}, { label: "tok/s" }],
      scales: { y: { range: (u, min, max) => [0, Math.max(10, max * 1.1)] } },
    },
    [data.t, data.generated, data.prompt],
    node,
  );
}

function makeQueuePlot(models) {
  const node = $("#plot-queue");
  node.replaceChildren();
  return new uPlot(
    {
      width: width(node),
      height: 200,
      series: [
        {},
        ...models.map((model, i) => ({
          label: model,
          stroke: COLORS[i % COLORS.length],
          width: 2,
          points: { show: false },
        })),
      ],
      axes: [{}, { label: "waiting" }],
      scales: { y: { range: (u, min, max) => [0, Math.max(4, max + 1)] } },
    },
    [data.t, ...models.map((m) => data.queue.get(m))],
    node,
  );
}

export function addPoints(series) {
  const n = series.t.length;
  if (!n) return;
  const known = data.t.length;
  for (const model of Object.keys(series.queue)) {
    if (!data.queue.has(model)) data.queue.set(model, new Array(known).fill(0));
  }
  for (let i = 0; i < n; i++) {
    data.t.push(series.t[i]);
    data.generated.push(series.generated[i]);
    data.prompt.push(series.prompt[i]);
    for (const [model, values] of data.queue) values.push(series.queue[model]?.[i] ?? 0);
  }
  const cutoff = data.t[data.t.length - 1] - KEEP_SECONDS;
  let drop = 0;
  while (drop < data.t.length && data.t[drop] < cutoff) drop++;
  if (drop) {
    data.t.splice(0, drop);
    data.generated.splice(0, drop);
    data.prompt.splice(0, drop);
    for (const values of data.queue.values()) values.splice(0, drop);
  }
}

export function drawPlots() {
  if ($("#tab-pool").hidden) return;
  const last = data.generated.length ? data.generated[data.generated.length - 1] : null;
  $("#tokens-now").textContent = last === null ? "—" : `${Math.round(last)} tok/s`;
  if (!tokensPlot) tokensPlot = makeTokensPlot();
  else tokensPlot.setData([data.t, data.generated, data.prompt]);
  const models = [...data.queue.keys()].sort();
  if (!queuePlot || models.join("\n") !== queueModels) {
    queuePlot?.destroy();
    queueModels = models.join("\n");
    queuePlot = makeQueuePlot(models);
  } else {
    queuePlot.setData([data.t, ...models.map((m) => data.queue.get(m))]);
  }
}

export function resizePlots() {
  for (const [plot, id] of [
    [tokensPlot, "#plot-tokens"],
    [queuePlot, "#plot-queue"],
  ]) {
    if (plot) plot.setSize({ width: width($(id)), height: 200 });
  }
}
