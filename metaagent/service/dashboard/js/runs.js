// The runs list: state, name, labels, progress, duration, newest first, with its filters
// (state, labels, name) kept in the URL so that a filtered list can be shared and reloaded.

import { api } from "./api.js";
import { STATES, clear, colourOf, el, fmtEpoch, fmtSeconds, stateBadge } from "./util.js";

const RUN_STATES = ["running", "interrupted", "succeeded", "failed", "cancelled"];

export class RunsList {
  constructor(root, params, go) {
    this.root = root;
    this.params = params;  // URLSearchParams of the page (view=runs&state=&label=&q=)
    this.go = go;
    this.runs = [];
    this.cursor = null;
  }

  render() {
    clear(this.root);
    const p = this.params;
    const state = el("select", { name: "state", id: "filter-state", "aria-label": "state" },
      el("option", { value: "" }, "any state"),
      RUN_STATES.map((s) => el("option", { value: s, selected: p.get("state") === s }, s)));
    const label = el("input", { name: "label", id: "filter-label", placeholder: "labels k:v …",
      value: p.getAll("label").join(" "), "aria-label": "labels" });
    const q = el("input", { name: "q", id: "filter-q", type: "search", placeholder: "name",
      value: p.get("q") || "", "aria-label": "name" });
    const form = el("form", { class: "toolbar", id: "runs-filters" }, state, label, q,
      el("button", { type: "submit" }, "filter"));
    const apply = (e) => {
      if (e) e.preventDefault();
      const next = new URLSearchParams({ view: "runs" });
      if (state.value) next.set("state", state.value);
      for (const l of label.value.split(/\s+/).filter(Boolean)) next.append("label", l);
      if (q.value.trim()) next.set("q", q.value.trim());
      this.go(next, { replace: true });
    };
    form.addEventListener("submit", apply);
    state.addEventListener("change", apply);
    this.body = el("tbody");
    this.more = el("button", { id: "more-runs", hidden: true }, "more");
    this.more.addEventListener("click", () => this.load(true));
    this.status = el("p", { class: "muted" });
    this.root.append(el("section", { class: "panel" }, el("h2", {}, "runs"), form,
      el("table", { class: "runs", id: "runs" },
        el("thead", {}, el("tr", {}, ["state", "name", "labels", "progress", "duration", "created", "run"]
          .map((h) => el("th", {}, h)))), this.body),
      this.status, this.more));
    return this.load(false);
  }

  query(cursor) {
    const q = new URLSearchParams();
    if (this.params.get("state")) q.set("state", this.params.get("state"));
    for (const l of this.params.getAll("label")) q.append("label", l);
    q.set("limit", "100");
    if (cursor) q.set("cursor", cursor);
    return q.toString();
  }

  async load(more) {
    const page = await api.runs(this.query(more ? this.cursor : null));
    this.runs = more ? this.runs.concat(page.runs) : page.runs;
    this.cursor = page.next_cursor;
    this.paint();
  }

  // Live: a run event reloads the first page (throttled by the caller).
  refresh() {
    return this.load(false);
  }

  paint() {
    const name = (this.params.get("q") || "").toLowerCase();
    const shown = this.runs.filter((r) => !name || String(r.name).toLowerCase().includes(name));
    clear(this.body);
    for (const r of shown) this.body.append(this.row(r));
    this.status.textContent = shown.length ? `${shown.length} runs` : "no runs match";
    this.more.hidden = !this.cursor;
  }

  row(r) {
    const counts = r.counts || {};
    const done = Object.values(counts).reduce((a, b) => a + b, 0);
    const total = r.tasks || 0;
    const bar = el("div", { class: "progress", title: `${done} of ${total} done` },
      STATES.filter((s) => counts[s]).map((s) => el("span", {
        style: { width: `${total ? (100 * counts[s]) / total : 0}%`, background: colourOf(s) } })));
    // An interrupted run has no end yet and no clock running: its duration is unknown.
    const end = r.finished_at || (r.state === "running" ? Date.now() / 1000 : null);
    const link = el("a", { href: `?view=run&run=${encodeURIComponent(r.run_id)}`, class: "run-link" }, r.name || r.run_id);
    link.addEventListener("click", (e) => {
      e.preventDefault();
      this.go(new URLSearchParams({ view: "run", run: r.run_id }));
    });
    return el("tr", { "data-run-id": r.run_id, "data-state": r.state },
      el("td", {}, stateBadge(r.state)),
      el("td", {}, link),
      el("td", {}, Object.entries(r.labels || {}).map(([k, v]) => el("span", { class: "label" }, `${k}:${v}`))),
      el("td", { class: "progress-cell" }, bar, el("small", { class: "muted" }, `${done} / ${total}`)),
      el("td", {}, r.created_at && end ? fmtSeconds(end - r.created_at) : "–"),
      el("td", {}, fmtEpoch(r.created_at)),
      el("td", {}, el("code", {}, r.run_id)));
  }
}
