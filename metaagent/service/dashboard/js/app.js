// The dashboard's entry: sign-in (login form, or `/#token=...`), the views chosen by the URL's
// query (`?view=runs|run|pool|decisions`), and the live event stream each view listens to.

import { AuthError, EventStream, api, getToken, setToken, takeTokenFromFragment } from "./api.js";
import { DecisionFeed } from "./feed.js";
import { RunModel } from "./model.js";
import { PoolView } from "./pool.js";
import { RunView } from "./runview.js";
import { RunsList } from "./runs.js";
import { clear, el, markRendered, timeThrottle } from "./util.js";

const main = document.getElementById("app");
const live = document.getElementById("live");
let stream = null;
let leave = () => {};

function params() {
  return new URLSearchParams(window.location.search);
}

function go(next, { replace = false } = {}) {
  const url = `${window.location.pathname}?${next}`;
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  route();
}

function setLive(status) {
  live.className = status === "live" ? "on" : "off";
  live.textContent = { live: "live", reconnecting: "reconnecting…", auth: "signed out" }[status] || status;
  if (status === "auth") signOut("the token was refused");
}

function listen(options) {
  stream = new EventStream({ onStatus: setLive, ...options });
  return stream;
}

function signOut(message) {
  setToken("");
  route(message);
}

async function route(message) {
  leave();
  leave = () => {};
  if (stream) stream.close();
  stream = null;
  document.body.dataset.ready = "false";
  const p = params();
  const view = p.get("view") || (p.get("run") ? "run" : "runs");
  for (const a of document.querySelectorAll("nav.top a[data-view]")) {
    a.classList.toggle("active", a.dataset.view === view);
  }
  document.getElementById("signout").hidden = !getToken();
  if (!getToken()) return showLogin(message);
  try {
    if (view === "run") await showRun(p);
    else if (view === "pool") await showPool();
    else if (view === "decisions") showDecisions(p);
    else await showRuns(p);
    markRendered();
  } catch (e) {
    if (e instanceof AuthError) return signOut(e.message);
    clear(main).append(el("p", { class: "error", id: "view-error" }, String(e.message || e)));
  }
}

function showLogin(message) {
  live.className = "off";
  live.textContent = "signed out";
  const input = el("input", { type: "password", id: "token", name: "token", autocomplete: "current-password",
    placeholder: "token", "aria-label": "token", required: true });
  const error = el("p", { class: "error", id: "login-error" }, message || "");
  const form = el("form", { id: "login" }, el("label", { for: "token" }, "Token"), input,
    el("button", { type: "submit" }, "sign in"), error,
    el("p", { class: "muted" }, "The token of `metaagent serve` (METAAGENT_TOKEN, or the file its start printed). ",
      "It is kept in this tab only. A link `/#token=…` signs in at once."));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    setToken(input.value.trim());
    try {
      await api.runs("limit=1");
      route();
    } catch (err) {
      setToken("");
      error.textContent = err instanceof AuthError ? "wrong token" : String(err.message || err);
    }
  });
  clear(main).append(el("section", { class: "panel login" }, el("h2", {}, "Sign in"), form));
  markRendered();
  input.focus();
}

async function showRuns(p) {
  const list = new RunsList(main, p, go);
  await list.render();
  const reload = timeThrottle(() => list.refresh().catch(() => {}), 1000);
  listen({ onEvents: reload });
}

async function showRun(p) {
  const runId = p.get("run");
  const buffered = [];
  let model = null;
  let view = null;
  const reload = timeThrottle(async () => {
    model.load(await api.run(runId));
    view.update();
  }, 500);
  const hello = new Promise((resolve) => {
    listen({
      runId,
      onHello: resolve,
      onEvents: (events) => {
        if (!model) return buffered.push(...events);
        for (const e of events) model.apply(e);
        view.scheduled();
        if (events.some((e) => e.type === "run" && e.state === "finished")) reload();
      },
    });
    setTimeout(resolve, 3000);  // a stream slow to open does not hold the page
  });
  await hello;
  model = new RunModel(await api.run(runId));
  model.live = true;
  for (const e of buffered) model.apply(e);
  view = new RunView(main, model, {
    live: true,
    task: async (id) => {
      const [detail, explain] = await Promise.all([api.task(runId, id), api.explain(runId, id).catch(() => null)]);
      return { task: taskOf(model, id, detail), explain };
    },
    actions: {
      cancelRun: () => api.cancel(runId),
      cancelTask: (id) => api.cancel(runId, [id]),
      retryRun: async () => {
        const r = await api.retry(runId);
        if (r && r.run_id && r.run_id !== runId) go(new URLSearchParams({ view: "run", run: r.run_id }));
      },
    },
    onTaskOpened: (id) => {
      const q = params();
      if (id) q.set("task", id);
      else q.delete("task");
      history.replaceState(null, "", `${window.location.pathname}?${q}`);
    },
  });
  view.render();
  leave = () => view.stop();
  if (p.get("task")) view.openTask(p.get("task"));
}

// GET /v1/runs/{id}/tasks/{task} in the shape of a report's task (what the drawer reads).
export function taskOf(model, id, detail) {
  const base = model.byId.get(id) || { id, attempts: [] };
  const attempts = (detail.attempts || base.attempts || []).map((a) => ({
    ...a, agent_instance: a.agent_instance ?? a.instance ?? a.agent }));
  if (detail.log && attempts.length && !attempts.some((a) => a.log)) {
    attempts[attempts.length - 1].log = typeof detail.log === "string" ? detail.log : JSON.stringify(detail.log);
  }
  const definition = typeof detail.task === "object" && detail.task ? detail.task : {};
  return { ...base, id, capability: base.capability || definition.capability || "",
    state: detail.state ?? base.state, agent: detail.agent ?? base.agent,
    output: detail.output ?? base.output, error: detail.error ?? base.error, attempts };
}

async function showPool() {
  const pool = new PoolView(main);
  leave = () => pool.stop();
  await pool.render();
  const resample = timeThrottle(() => pool.sample().catch(() => {}), 1000);
  listen({ onEvents: resample });
}

function showDecisions(p) {
  const decisions = [];
  const feed = new DecisionFeed(main, decisions, {
    showRun: true,
    kind: p.get("kind") || "",
    onKind: (kind) => {
      const q = params();
      if (kind) q.set("kind", kind);
      else q.delete("kind");
      history.replaceState(null, "", `${window.location.pathname}?${q}`);
    },
    onTask: (task, run) => go(new URLSearchParams({ view: "run", run, task })),
  });
  feed.render();
  const paint = timeThrottle(() => feed.update(), 300);
  listen({
    backlog: 2000,
    onEvents: (events) => {
      for (const e of events) {
        if (!e.decision) continue;
        decisions.push({ ...e.decision, run_id: e.run_id, task_id: e.decision.task_id ?? e.task_id, when: e.ts });
      }
      paint();
    },
  });
}

for (const a of document.querySelectorAll("nav.top a[data-view]")) {
  a.addEventListener("click", (e) => {
    e.preventDefault();
    go(new URLSearchParams({ view: a.dataset.view }));
  });
}
document.getElementById("signout").addEventListener("click", () => signOut());
window.addEventListener("popstate", () => route());
takeTokenFromFragment();
route();
