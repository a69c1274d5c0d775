// The task table, virtualised: only the rows in view are in the DOM, so 10,000 tasks scroll as
// smoothly as ten. Filter by text and state, sort by any column, click a row for its drawer.

import { STATES, clear, el, fmtSeconds, stateBadge } from "./util.js";

const ROW_H = 28, OVERSCAN = 8;

const COLUMNS = [
  { key: "id", label: "task", value: (t) => t.id },
  { key: "capability", label: "capability", value: (t) => t.capability || "" },
  { key: "state", label: "state", value: (t) => t.state },
  { key: "agent", label: "agent", value: (t) => lastAttempt(t)?.agent_instance || t.agent || "" },
  { key: "attempts", label: "tries", value: (t) => t.attempts.length },
  { key: "time", label: "time", value: (t) => runTime(t) },
  { key: "error", label: "error", value: (t) => t.error || "" },
];

function lastAttempt(t) {
  return t.attempts.length ? t.attempts[t.attempts.length - 1] : null;
}

function runTime(t) {
  const a = lastAttempt(t);
  return a && a.finished_at !== null && a.finished_at !== undefined ? a.finished_at - a.started_at : -1;
}

export class TaskTable {
  constructor(container, model, onTask) {
    this.container = container;
    this.model = model;
    this.onTask = onTask;
    this.filter = "";
    this.stateFilter = "";
    this.sortKey = "";
    this.sortDir = 1;
    this.rows = [];
  }

  render() {
    clear(this.container);
    const search = el("input", { type: "search", placeholder: "filter tasks", class: "table-filter",
      "aria-label": "filter tasks", value: this.filter });
    search.addEventListener("input", () => {
      this.filter = search.value.trim().toLowerCase();
      this.refresh();
    });
    const state = el("select", { class: "table-state", "aria-label": "state" },
      el("option", { value: "" }, "all states"),
      STATES.map((s) => el("option", { value: s, selected: s === this.stateFilter }, s)));
    state.addEventListener("change", () => {
      this.stateFilter = state.value;
      this.refresh();
    });
    this.summary = el("span", { class: "muted table-summary" });
    const head = el("div", { class: "trow thead" }, COLUMNS.map((c) => {
      const cell = el("div", { class: `tcell c-${c.key}`, role: "columnheader" }, c.label);
      cell.addEventListener("click", () => this.sortBy(c.key));
      return cell;
    }));
    this.viewport = el("div", { class: "tviewport", role: "table" });
    this.spacer = el("div", { class: "tspacer" });
    this.viewport.append(this.spacer);
    this.viewport.addEventListener("scroll", () => this.paint());
    this.container.append(el("div", { class: "toolbar" }, search, state, this.summary), head, this.viewport);
    this.refresh();
  }

  sortBy(key) {
    this.sortDir = this.sortKey === key ? -this.sortDir : 1;
    this.sortKey = key;
    this.refresh();
  }

  update() {
    this.refresh();
  }

  refresh() {
    const q = this.filter, s = this.stateFilter;
    let rows = this.model.tasks.filter((t) => (!s || t.state === s) && (!q ||
      t.id.toLowerCase().includes(q) || (t.capability || "").toLowerCase().includes(q) ||
      String(t.agent || "").toLowerCase().includes(q)));
    if (this.sortKey) {
      const col = COLUMNS.find((c) => c.key === this.sortKey);
      const dir = this.sortDir;
      rows = rows.slice().sort((a, b) => {
        const x = col.value(a), y = col.value(b);
        return (x < y ? -1 : x > y ? 1 : 0) * dir;
      });
    }
    this.rows = rows;
    this.summary.textContent = `${rows.length} of ${this.model.tasks.length} tasks`;
    this.spacer.style.height = `${rows.length * ROW_H}px`;
    this.viewport.style.height = `${Math.min(420, Math.max(rows.length, 3) * ROW_H + 2)}px`;
    this.paintedKey = "";
    this.paint();
  }

  paint() {
    const top = this.viewport.scrollTop;
    const height = this.viewport.clientHeight || 420;
    const first = Math.max(0, Math.floor(top / ROW_H) - OVERSCAN);
    const last = Math.min(this.rows.length, Math.ceil((top + height) / ROW_H) + OVERSCAN);
    const key = `${first}:${last}:${this.model.version}`;
    if (key === this.paintedKey) return;
    this.paintedKey = key;
    clear(this.spacer);
    for (let i = first; i < last; i++) this.spacer.append(this.row(this.rows[i], i));
  }

  row(t, i) {
    const a = lastAttempt(t);
    const time = runTime(t);
    const row = el("div", { class: "trow", role: "row", style: { top: `${i * ROW_H}px` },
      "data-task-id": t.id, tabindex: 0 },
      el("div", { class: "tcell c-id", title: t.id }, t.id),
      el("div", { class: "tcell c-capability" }, t.capability || ""),
      el("div", { class: "tcell c-state" }, stateBadge(t.state)),
      el("div", { class: "tcell c-agent" }, a?.agent_instance || t.agent || "–"),
      el("div", { class: "tcell c-attempts" }, String(t.attempts.length)),
      el("div", { class: "tcell c-time" }, time >= 0 ? fmtSeconds(time) : "–"),
      el("div", { class: "tcell c-error", title: t.error || "" }, t.error || ""));
    row.addEventListener("click", () => this.onTask(t.id));
    row.addEventListener("keydown", (e) => {
      if (e.key === "Enter") this.onTask(t.id);
    });
    return row;
  }
}
