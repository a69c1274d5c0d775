// The task drawer: a task's attempts, output and log, and its routing decisions ("why this
// agent": every candidate's score breakdown, the runner-up, the shares of the margin, waits).

import { clear, el, fmtNum, fmtSeconds, fmtValue, stateBadge } from "./util.js";

export class TaskDrawer {
  constructor(root, onClose) {
    this.root = root;
    this.onClose = onClose;
  }

  close() {
    this.root.hidden = true;
    clear(this.root);
  }

  loading(taskId) {
    this.root.hidden = false;
    clear(this.root).append(this.head(taskId, null), el("p", { class: "muted" }, "loading…"));
  }

  error(taskId, message) {
    this.root.hidden = false;
    clear(this.root).append(this.head(taskId, null), el("p", { class: "error" }, message));
  }

  // task: a task of the report (attempts with logs, output, error); explain: the JSON of
  // `metaagent explain --json` (decisions with `route`); actions: buttons to show.
  show(task, explain, actions = []) {
    this.root.hidden = false;
    this.root.dataset.taskId = task.id;
    const parts = [
      this.head(task.id, task),
      actions.length ? el("div", { class: "actions" }, actions) : null,
      this.why(task, explain),
      this.attempts(task),
      el("section", {}, el("h3", {}, "output"),
        task.error ? el("p", { class: "error task-error" }, task.error) : null,
        el("pre", { class: "output" }, fmtValue(task.output) || "(none)")),
      this.otherDecisions(explain)];
    clear(this.root).append(...parts.filter(Boolean));
  }

  head(taskId, task) {
    const close = el("button", { class: "close", "aria-label": "close", title: "close" }, "×");
    close.addEventListener("click", () => this.onClose());
    return el("header", {}, el("h2", {}, taskId), task ? stateBadge(task.state) : null,
      task ? el("span", { class: "muted" }, ` ${task.capability || ""}`) : null, close);
  }

  why(task, explain) {
    const routes = (explain?.decisions || []).filter((d) => d.route);
    const section = el("section", { class: "why" }, el("h3", {}, "why this agent"));
    if (!routes.length) {
      section.append(el("p", { class: "muted" }, "not routed yet"));
      return section;
    }
    if (explain.weights_note) section.append(el("p", { class: "note" }, explain.weights_note));
    const weights = explain.weights || {};
    for (const step of routes) section.append(this.route(step, weights, task));
    return section;
  }

  route(step, weights, task) {
    const r = step.route;
    const parts = Object.keys(weights);
    const box = el("div", { class: "route", "data-attempt": r.attempt },
      el("p", {}, el("b", {}, `attempt ${r.attempt}: `), "chose ",
        el("b", { class: "why-agent" }, r.instance), ` (${r.spec}) with score ${fmtNum(r.score)}`,
        r.runner_up ? ` — runner-up ${r.runner_up}, margin ${fmtNum(r.margin)}` : ""),
      el("p", { class: "why-summary" }, r.summary));
    if (r.candidates.length) {
      box.append(el("table", { class: "candidates" },
        el("thead", {}, el("tr", {}, el("th", {}, "candidate"), el("th", {}, "score"),
          parts.map((p) => el("th", {}, p)))),
        el("tbody", {},
          el("tr", { class: "weights" }, el("td", {}, "(weight)"), el("td", {}),
            parts.map((p) => el("td", {}, String(weights[p])))),
          r.candidates.map((c) => el("tr", { class: c.agent === r.instance ? "winner" : "" },
            el("td", {}, c.agent === r.instance ? `★ ${c.agent}` : c.agent),
            el("td", {}, fmtNum(c.score)),
            parts.map((p) => el("td", { title: `weighted ${fmtNum(c.weighted?.[p])}` },
              fmtNum(c.breakdown?.[p], p === "cost" ? 4 : 2))))))));  // cost: USD
    }
    if (r.contributions.length) {
      box.append(el("p", { class: "muted" }, "share of the margin: ",
        r.contributions.map((c) => `${c.part} ${c.delta >= 0 ? "+" : ""}${fmtNum(c.delta)}`).join(", ")));
    }
    const wait = this.wait(task, r.attempt);
    if (wait) box.append(el("p", { class: "wait" }, wait));
    return box;
  }

  wait(task, number) {
    const attempts = task.attempts || [];
    const i = attempts.findIndex((a) => a.number === number);
    if (i < 0) return "";
    const start = attempts[i].started_at;
    if (i > 0 && attempts[i - 1].finished_at !== null && attempts[i - 1].finished_at !== undefined) {
      return `waited ${fmtSeconds(start - attempts[i - 1].finished_at)} after attempt ` +
        `${attempts[i - 1].number} ended (back-off and queue)`;
    }
    if (typeof task.ready_at === "number") return `waited ${fmtSeconds(start - task.ready_at)} in the queue`;
    return "";
  }

  attempts(task) {
    const section = el("section", {}, el("h3", {}, `attempts (${task.attempts.length})`));
    for (const a of task.attempts) {
      const end = a.finished_at;
      section.append(el("div", { class: "attempt" },
        el("p", {}, el("b", {}, `#${a.number} `), `${a.agent_instance || a.agent || "?"} `,
          stateBadge(a.outcome || "running"),
          ` started ${fmtSeconds(a.started_at)}`,
          end !== null && end !== undefined ? `, took ${fmtSeconds(end - a.started_at)}` : ", running"),
        a.error ? el("p", { class: "error" }, a.error) : null,
        a.log ? el("details", {}, el("summary", {}, "log"), el("pre", { class: "log" }, a.log)) : null));
    }
    return section;
  }

  otherDecisions(explain) {
    const rest = (explain?.decisions || []).filter((d) => !d.route);
    if (!rest.length) return null;
    return el("section", {}, el("h3", {}, "other decisions"), el("ul", { class: "plain" },
      rest.map((d) => el("li", {}, el("code", {}, d.type), ` at ${fmtSeconds(d.at)}: ${d.reason}`,
        d.detail ? ` (${d.detail})` : ""))));
  }
}
