// The run view: a summary with progress, the DAG, the Gantt timeline per agent instance, the
// task table and the run's decisions, and the task drawer. Shared by the live dashboard and
// the self-contained HTML report; `source` says where a task's details come from.

import { DagView } from "./dag.js";
import { TaskDrawer } from "./drawer.js";
import { DecisionFeed } from "./feed.js";
import { GanttView } from "./gantt.js";
import { TaskTable } from "./table.js";
import { STATES, clear, colourOf, el, fmtNum, fmtSeconds, stateBadge, timeThrottle } from "./util.js";

// Escape closes the drawer of the run view on the page (one listener, whichever view).
let current = null;
document.addEventListener("keydown", (e) => {
  if (e.key === "Escape" && current && current.openId && document.body.contains(current.root)) current.closeTask();
});

// source: { task(id) -> Promise<{task, explain}>, actions?: {cancelRun, retryRun, cancelTask},
//           onTaskOpened?(id) }
export class RunView {
  constructor(root, model, source) {
    this.root = root;
    this.model = model;
    this.source = source;
    this.scheduled = timeThrottle(() => this.update(), 250);
  }

  render() {
    clear(this.root);
    const open = (id) => this.openTask(id);
    this.header = el("div", { class: "run-head" });
    const dagBox = el("div", { class: "dag-box", id: "dag" });
    const ganttBox = el("div", { class: "gantt-box", id: "gantt" });
    const tableBox = el("div", { class: "table-box", id: "tasks" });
    const feedBox = el("div", { class: "feed-box", id: "run-decisions" });
    const drawerRoot = el("aside", { class: "drawer", id: "drawer", hidden: true });
    this.root.append(this.header,
      el("section", { class: "panel" }, el("h2", {}, "graph"), dagBox),
      el("section", { class: "panel" }, el("h2", {}, "timeline per agent instance"), ganttBox),
      el("section", { class: "panel" }, el("h2", {}, "tasks"), tableBox),
      el("section", { class: "panel" }, el("h2", {}, "decisions"), feedBox),
      drawerRoot);
    this.drawer = new TaskDrawer(drawerRoot, () => this.closeTask());
    current = this;
    this.dag = new DagView(dagBox, this.model, open);
    this.gantt = new GanttView(ganttBox, this.model, open);
    this.table = new TaskTable(tableBox, this.model, open);
    this.feed = new DecisionFeed(feedBox, this.model.decisions, { onTask: open });
    this.renderHeader();
    this.dag.render();
    this.table.render();
    this.feed.render();
    this.gantt.render();
    if (this.source.live) {  // running attempts grow on the timeline between events
      this.ticker = setInterval(() => {
        if (!document.body.contains(this.root) || !this.model.live) return clearInterval(this.ticker);
        if (this.model.now() > this.model.span()) {
          this.gantt.update();
          this.renderHeader();
        }
      }, 1000);
    }
  }

  stop() {
    clearInterval(this.ticker);
  }

  update() {
    this.renderHeader();
    this.dag.update();
    this.gantt.update();
    this.table.update();
    this.feed.decisions = this.model.decisions;
    this.feed.update();
    const t = this.openId ? this.model.byId.get(this.openId) : null;
    const sig = t ? `${t.state}:${t.attempts.length}` : "";
    if (t && this.source.live && sig !== this.openSig) this.refreshTask();
  }

  renderHeader() {
    const m = this.model;
    const counts = m.counts();
    const total = m.tasks.length || 1;
    const done = ["succeeded", "failed", "cancelled", "skipped"].reduce((n, s) => n + (counts[s] || 0), 0);
    const bar = el("div", { class: "progress", title: `${done} of ${m.tasks.length} done` },
      STATES.filter((s) => counts[s]).map((s) => el("span", {
        style: { width: `${(100 * counts[s]) / total}%`, background: colourOf(s) }, title: `${counts[s]} ${s}` })));
    const actions = this.source.actions ? this.actionButtons() : null;
    const r = m.report;
    clear(this.header).append(
      el("div", { class: "run-title" }, el("h1", {}, m.name), stateBadge(m.state),
        el("code", { class: "muted run-id" }, m.runId), actions),
      bar,
      el("p", { class: "counts" },
        STATES.filter((s) => counts[s]).map((s) => el("span", { class: "count", "data-state": s },
          el("i", { style: { background: colourOf(s) } }), `${counts[s]} ${s}`)),
        el("span", { class: "muted" }, ` · makespan ${fmtSeconds(Math.max(r.makespan_s ?? 0, m.now()))}` +
          ` · utilisation ${fmtNum((r.utilisation ?? 0) * 100, 0)}%` +
          ` · speed-up ${fmtNum(r.speedup ?? 0, 2)}×`)));
  }

  actionButtons() {
    const a = this.source.actions;
    const finished = ["succeeded", "failed", "cancelled", "finished"].includes(this.model.state);
    const cancel = el("button", { class: "danger", id: "cancel-run", disabled: finished }, "cancel run");
    cancel.addEventListener("click", () => this.act(cancel, () => a.cancelRun()));
    const retry = el("button", { id: "retry-run" }, "retry failed");
    retry.addEventListener("click", () => this.act(retry, () => a.retryRun()));
    const note = this.actionNote
      ? el("span", { class: this.actionNote.ok ? "muted action-note" : "error action-error" }, this.actionNote.text)
      : null;
    return el("span", { class: "actions" }, note, cancel, retry);
  }

  // Run an action of a button; a refusal (a read-only token: 403) is shown beside the buttons.
  async act(button, fn) {
    button.disabled = true;
    const label = button.textContent;
    try {
      await fn();
      this.actionNote = { ok: true, text: `${label}: requested` };
    } catch (e) {
      this.actionNote = { ok: false, text: `${label}: ${e.message || e}` };
      button.classList.add("failed");
    } finally {
      button.disabled = false;
      this.renderHeader();
    }
  }

  async openTask(id) {
    this.openId = id;
    if (this.source.onTaskOpened) this.source.onTaskOpened(id);
    this.drawer.loading(id);
    await this.refreshTask();
  }

  async refreshTask() {
    const id = this.openId;
    const t = this.model.byId.get(id);
    this.openSig = t ? `${t.state}:${t.attempts.length}` : "";
    try {
      const { task, explain } = await this.source.task(id);
      if (this.openId !== id) return;
      if (typeof task.ready_at !== "number") task.ready_at = this.readyAt(task);
      const actions = [];
      if (this.source.actions?.cancelTask && !["succeeded", "failed", "cancelled", "skipped"].includes(task.state)) {
        const b = el("button", { class: "danger", id: "cancel-task" }, "cancel task");
        b.addEventListener("click", () => this.act(b, () => this.source.actions.cancelTask(id)));
        actions.push(b);
      }
      this.drawer.show(task, explain, actions);
    } catch (e) {
      if (this.openId === id) this.drawer.error(id, String(e.message || e));
    }
  }

  // When a task became ready, if the report does not say: when its last dependency finished
  // (a root: when the run started).
  readyAt(task) {
    let at = 0;
    for (const d of task.depends_on || this.model.byId.get(task.id)?.depends_on || []) {
      const dep = this.model.byId.get(d);
      if (!dep || typeof dep.finished_at !== "number") return null;
      at = Math.max(at, dep.finished_at);
    }
    return at;
  }

  closeTask() {
    this.openId = null;
    this.drawer.close();
    if (this.source.onTaskOpened) this.source.onTaskOpened(null);
  }
}
