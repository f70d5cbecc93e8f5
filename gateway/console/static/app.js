// The console's entry point: ask the gateway whether to show the login, then keep one
// event stream open (the pool, the plots' new points and new requests, once a second).
import { api } from "./api.js";
import { $, show } from "./dom.js";
import { loadKeys, setupKeys } from "./keys.js";
import { setupPlayground, setModels } from "./playground.js";
import { addPoints, drawPlots, resizePlots } from "./plots.js";
import { renderPool } from "./pool.js";
import { addRequests, renderRequests, setupRequests } from "./requests.js";

const TABS = ["pool", "keys", "requests", "playground"];
let stream = null;
let lastPool = null;
let pointerDown = false;
let lastEventAt = 0;

function showOnly(id) {
  for (const name of ["loading", "off", "login"]) show($(`#${name}`), name === id);
}

function openTab(name) {
  if (!TABS.includes(name)) name = "pool";
  for (const tab of TABS) show($(`#tab-${tab}`), tab === name);
  for (const button of document.querySelectorAll("#tabs button")) {
    button.classList.toggle("active", button.dataset.tab === name);
  }
  if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
  if (name === "keys") loadKeys();
  if (name === "requests") renderRequests();
  if (name === "pool") {
    if (lastPool) renderPool(lastPool);
    drawPlots();
  }
}

function onState(event) {
  const state = JSON.parse(event.data);
  lastEventAt = Date.now();
  $("#live").classList.remove("stale");
  addPoints(state.series);
  addRequests(state.requests);
  lastPool = state.pool;
  setModels(state.pool.models);
  if (!$("#tab-pool").hidden && !pointerDown) {
    renderPool(state.pool);
    drawPlots();
  }
  document.body.dataset.ready = "1";
}

function startConsole() {
  showOnly(null);
  show($("#tabs"), true);
  show($("#logout"), true);
  show($("#live"), true);
  openTab(location.hash.slice(1));
  stream = new EventSource("/ui/events");
  stream.addEventListener("state", onState);
  setInterval(() => {
    if (Date.now() - lastEventAt > 5000) $("#live").classList.add("stale");
  }, 1000);
}

async function login(event) {
  event.preventDefault();
  const token = $("#token").value;
  $("#login-error").textContent = "";
  try {
    await api("POST", "/ui/login", { token });
  } catch (exc) {
    $("#login-error").textContent = exc.message;
    return;
  }
  $("#token").value = "";
  startConsole();
}

async function logout() {
  stream?.close();
  await api("POST", "/ui/logout");
  location.replace("/ui");
}

async function boot() {
  setupKeys();
  setupRequests();
  setupPlayground();
  $("#login-form").addEventListener("submit", login);
  $("#logout").addEventListener("click", logout);
  for (const button of document.querySelectorAll("#tabs button")) {
    button.addEventListener("click", () => openTab(button.dataset.tab));
  }
  document.addEventListener("pointerdown", () => (pointerDown = true));
  document.addEventListener("pointerup", () => (pointerDown = false));
  window.addEventListener("resize", resizePlots);
  const session = await api("GET", "/ui/api/session");
  if (!session.enabled) showOnly("off");
  else if (!session.signed_in) showOnly("login");
  else startConsole();
}

boot();
