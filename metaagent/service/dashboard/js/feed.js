// The decisions feed: spawn, scale, route, optimise, quarantine (and the rest) with reasons,
// newest first, filtered by kind; the newest FEED_CAP that match are drawn.

import { clear, el, fmtSeconds } from "./util.js";

const FEED_CAP = 200;

export const DECISION_KINDS = {
  spawn: ["spawn_agent"],
  scale: ["scale_resources", "terminate_agent"],
  route: ["route_task"],
  optimise: ["optimize_workflow", "decompose_task"],
  quarantine: ["quarantine_agent"],
  retry: ["retry_task", "fail_task", "skip_task", "cancel_task"],
};

export class DecisionFeed {
  constructor(container, decisions, options = {}) {
    this.container = container;
    this.decisions = decisions;  // shared array, appended to by the owner
    this.kind = options.kind || "";
    this.onKind = options.onKind || (() => {});
    this.onTask = options.onTask || null;
    this.showRun = Boolean(options.showRun);
  }

  render() {
    clear(this.container);
    const select = el("select", { class: "feed-kind", "aria-label": "decision kind" },
      el("option", { value: "" }, "all decisions"),
      Object.keys(DECISION_KINDS).map((k) => el("option", { value: k, selected: k === this.kind }, k)));
    select.addEventListener("change", () => {
      this.kind = select.value;
      this.onKind(this.kind);
      this.update();
    });
    this.summary = el("span", { class: "muted" });
    this.list = el("ol", { class: "feed", reversed: true });
    this.container.append(el("div", { class: "toolbar" }, select, this.summary), this.list);
    this.update();
  }

  update() {
    if (!this.list) return;
    const types = this.kind ? new Set(DECISION_KINDS[this.kind]) : null;
    const shown = [];
    let matching = 0;
    for (let i = this.decisions.length - 1; i >= 0; i--) {
      const d = this.decisions[i];
      if (types && !types.has(d.type)) continue;
      matching++;
      if (shown.length < FEED_CAP) shown.push(d);
    }
    this.summary.textContent = matching > shown.length
      ? `newest ${shown.length} of ${matching}` : `${matching} decisions`;
    clear(this.list);
    for (const d of shown) this.list.append(this.item(d));
  }

  item(d) {
    const who = d.instance || d.agent;
    const task = d.task_id ? el("a", { href: "#", class: "task-link", "data-task-id": d.task_id }, d.task_id) : null;
    if (task && this.onTask) {
      task.addEventListener("click", (e) => {
        e.preventDefault();
        this.onTask(d.task_id, d.run_id);
      });
    }
    return el("li", { class: `decision d-${d.type}`, "data-type": d.type },
      el("span", { class: "at" }, d.when ? new Date(d.when * 1000).toLocaleTimeString()
        : typeof d.at === "number" ? fmtSeconds(d.at) : ""),
      el("code", {}, d.type),
      this.showRun && d.run_id ? el("span", { class: "muted" }, ` ${d.run_id}`) : null,
      task ? [" ", task] : null,
      who ? el("span", {}, ` → ${who}`) : null,
      el("span", { class: "reason" }, ` ${d.reason || ""}`));
  }
}
