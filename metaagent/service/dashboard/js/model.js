// RunModel: one run as the views see it (the `metaagent run --json` report, plus `state` and
// each task's `depends_on`), kept current by the events of the run.

import { TERMINAL_STATES } from "./util.js";

const TERMINAL_RUN_STATES = new Set(["succeeded", "failed", "cancelled", "finished"]);

export class RunModel {
  constructor(report) {
    this.load(report);
  }

  load(report) {
    this.report = report;
    this.runId = report.run_id;
    this.name = report.name || report.run_id;
    this.state = report.state || (report.finished ? "finished" : "running");
    this.tasks = (report.tasks || []).map((t) => ({ ...t, attempts: [...(t.attempts || [])] }));
    this.byId = new Map(this.tasks.map((t) => [t.id, t]));
    this.decisions = [...(report.decisions || [])];
    this.agents = report.agents || {};
    this.version = 0;
    this.computeLevels();
    this.anchor = { at: this.span(), wall: performance.now() };
  }

  // The run's clock now: on a live page, the latest event's time plus the time since it came
  // (so running attempts grow); else the end of what is known.
  now() {
    if (!this.live || TERMINAL_RUN_STATES.has(this.state)) return this.span();
    return Math.max(this.span(), this.anchor.at + (performance.now() - this.anchor.wall) / 1000);
  }

  // Level of a task = 1 + the highest level of its dependencies (roots: 0). Iterative, so a
  // chain of 10,000 tasks does not overflow the stack; a cycle (never journaled) ends at 0.
  computeLevels() {
    const indegree = new Map();
    const children = new Map();
    for (const t of this.tasks) {
      const deps = (t.depends_on || []).filter((d) => this.byId.has(d));
      indegree.set(t.id, deps.length);
      for (const d of deps) {
        if (!children.has(d)) children.set(d, []);
        children.get(d).push(t.id);
      }
      t.level = 0;
    }
    const queue = this.tasks.filter((t) => indegree.get(t.id) === 0).map((t) => t.id);
    for (let i = 0; i < queue.length; i++) {
      const id = queue[i];
      const level = this.byId.get(id).level;
      for (const c of children.get(id) || []) {
        const child = this.byId.get(c);
        child.level = Math.max(child.level, level + 1);
        indegree.set(c, indegree.get(c) - 1);
        if (indegree.get(c) === 0) queue.push(c);
      }
    }
    this.maxLevel = this.tasks.reduce((m, t) => Math.max(m, t.level), 0);
    this.hasEdges = this.tasks.some((t) => (t.depends_on || []).length > 0);
  }

  counts() {
    const counts = {};
    for (const t of this.tasks) counts[t.state] = (counts[t.state] || 0) + 1;
    return counts;
  }

  // The end of the timeline: the last time anything is known to have happened.
  span() {
    let end = this.report.makespan_s || 0;
    for (const t of this.tasks) {
      for (const a of t.attempts) end = Math.max(end, a.finished_at ?? a.started_at ?? 0);
    }
    for (const d of this.decisions) if (typeof d.at === "number") end = Math.max(end, d.at);
    return end;
  }

  // Attempts grouped by the agent instance that ran them: the Gantt's rows.
  lanes() {
    const lanes = new Map();
    for (const t of this.tasks) {
      for (const a of t.attempts) {
        const key = a.agent_instance || a.agent || "?";
        if (!lanes.has(key)) lanes.set(key, []);
        lanes.get(key).push({ task: t, attempt: a });
      }
    }
    return [...lanes.entries()].sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));
  }

  // Apply one event of the service (docs/service.md: `type` run | task | decision). Returns
  // true if it changed anything the views show.
  apply(event) {
    if (event.run_id && event.run_id !== this.runId) return false;
    const kind = event.type || event.kind;
    this.version++;
    if (typeof event.at === "number" && event.at >= this.anchor.at) {
      this.anchor = { at: event.at, wall: performance.now() };
    }
    if (kind === "decision") return event.decision ? this.applyDecision(event.decision, event.at) : false;
    if (kind === "run") {
      if (event.state === "finished") this.state = event.run_state || "finished";
      else if (event.state === "submitted" || event.state === "resumed") this.state = "running";
      return true;
    }
    if (kind !== "task" || !event.task_id) return false;
    const task = this.taskFor(event.task_id);
    if (event.decision) this.applyDecision(event.decision, event.at);
    const state = event.state === "retrying" ? "ready" : event.state || task.state;
    task.state = state;
    if (event.agent) task.agent = event.agent;
    const open = openAttempt(task);
    if (state === "running" && !open) {
      const instance = event.instance || event.agent;
      task.attempts.push({ number: task.attempts.length + 1, agent: event.agent,
        agent_instance: instance, started_at: event.at ?? 0, finished_at: null, outcome: null });
    } else if (open && (TERMINAL_STATES.has(state) || event.state === "retrying")) {
      open.finished_at = event.at ?? open.started_at;
      open.outcome = event.state === "retrying" ? "error" : state;
      if (event.instance) open.agent_instance = event.instance;
    }
    if (TERMINAL_STATES.has(state) && typeof event.at === "number") task.finished_at = event.at;
    return true;
  }

  taskFor(id) {
    let task = this.byId.get(id);
    if (!task) {  // a sub-task added by a decomposition
      task = { id, capability: "", state: "pending", agent: null, attempts: [], depends_on: [],
        level: this.maxLevel + 1 };
      this.tasks.push(task);
      this.byId.set(id, task);
    }
    return task;
  }

  applyDecision(decision, at) {
    this.decisions.push(decision);
    if (decision.type !== "route_task" || !decision.task_id) return true;
    const task = this.byId.get(decision.task_id);
    if (!task) return true;
    task.agent = decision.agent;
    task.agent_instance = decision.instance;
    const open = openAttempt(task);
    if (open) {
      open.agent = decision.agent;
      open.agent_instance = decision.instance;
      open.number = decision.attempt || open.number;
    } else {
      task.attempts.push({ number: decision.attempt || task.attempts.length + 1,
        agent: decision.agent, agent_instance: decision.instance,
        started_at: decision.at ?? at ?? 0, finished_at: null, outcome: null });
    }
    return true;
  }
}

function openAttempt(task) {
  return task.attempts.find((a) => a.finished_at === null || a.finished_at === undefined);
}
