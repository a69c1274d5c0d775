// The pool view: instances per spec over time (sampled while the page is open), busy and idle
// instances, utilisation, queue depth per capability, and the learned proficiency of every
// agent per capability.

import { api, getToken } from "./api.js";
import { clear, el, fmtNum } from "./util.js";

const SAMPLE_MS = 2000, HISTORY = 300, PALETTE = ["#2563eb", "#22a05a", "#e8590c", "#9b59b6",
  "#0ca678", "#d6336c", "#f59f00", "#495057"];

// Field names of /v1/agents (docs/service.md), read in one place.
export function instanceFields(i) {
  const slots = i.slots ?? i.concurrency ?? 1;
  const running = i.running ?? i.load ?? i.busy ?? 0;
  return { id: i.id ?? i.instance ?? i.name, spec: i.spec ?? i.agent, state: i.state ?? "?",
    running, slots, busy: running > 0 };
}

// A learned statistic: the service's `proficiency` (the declared one moved by evidence) when
// it sends one, else the observed success rate; with the declared proficiency beside it.
function statFields(s, declared) {
  const n = (s.successes ?? 0) + (s.failures ?? 0);
  const learned = s.proficiency ?? (n ? s.successes / n : null);
  return { agent: s.spec ?? s.agent, capability: s.capability, learned, n,
    declared: s.declared ?? declared.get(`${s.spec ?? s.agent}|${s.capability}`), mean: s.mean_duration_s,
    kind: s.proficiency !== undefined ? "learned proficiency" : "observed success rate" };
}

export async function queueDepths(data) {
  if (data.queue_depth) return data.queue_depth;
  const response = await fetch("/metrics", { headers: { Authorization: `Bearer ${getToken()}` } });
  if (!response.ok) return {};
  const depths = {};
  for (const line of (await response.text()).split("\n")) {
    const m = /^metaagent_queue_depth\{capability="([^"]*)"\}\s+([0-9.eE+-]+)/.exec(line);
    if (m) depths[m[1]] = Number(m[2]);
  }
  return depths;
}

export class PoolView {
  constructor(root) {
    this.root = root;
    this.history = [];
    this.timer = null;
  }

  async render() {
    clear(this.root);
    this.cards = el("div", { class: "cards", id: "pool-cards" });
    this.chart = el("canvas", { class: "chart", id: "pool-chart", height: 220 });
    this.instances = el("div", { id: "pool-instances" });
    this.queues = el("div", { id: "pool-queues" });
    this.learned = el("div", { id: "pool-learned" });
    this.root.append(
      el("section", { class: "panel" }, el("h2", {}, "pool"), this.cards),
      el("section", { class: "panel" }, el("h2", {}, "instances per spec over time"), this.chart,
        el("p", { class: "muted" }, "solid: instances; dashed: busy instances (sampled every 2 s while this page is open)")),
      el("section", { class: "panel" }, el("h2", {}, "queue depth per capability"), this.queues),
      el("section", { class: "panel" }, el("h2", {}, "instances"), this.instances),
      el("section", { class: "panel" }, el("h2", {}, "learned proficiency"), this.learned));
    await this.sample();
    this.timer = setInterval(() => this.sample().catch(() => {}), SAMPLE_MS);
  }

  stop() {
    clearInterval(this.timer);
  }

  async sample() {
    const data = await api.agents();
    const instances = (data.instances || []).map(instanceFields);
    const specs = (data.specs || []).map((s) => s.name ?? s.spec);
    const point = { t: Date.now() / 1000, specs: {} };
    for (const name of specs) point.specs[name] = { n: 0, busy: 0 };
    for (const i of instances) {
      const s = (point.specs[i.spec] ||= { n: 0, busy: 0 });
      s.n++;
      if (i.busy) s.busy++;
    }
    this.history.push(point);
    if (this.history.length > HISTORY) this.history.shift();
    this.paintCards(instances, data);
    this.paintChart();
    this.paintInstances(instances);
    this.paintQueues(await queueDepths(data));
    const declared = new Map();
    for (const spec of data.specs || []) {
      for (const [cap, v] of Object.entries(spec.capabilities || {})) declared.set(`${spec.name}|${cap}`, v);
    }
    const stats = (data.stats || []).map((s) => statFields(s, declared));
    const seen = new Set(stats.map((s) => `${s.agent}|${s.capability}`));
    for (const [key, value] of declared) {  // what nothing was learned of yet: declared only
      if (seen.has(key)) continue;
      const [agent, capability] = key.split("|");
      stats.push({ agent, capability, learned: null, n: 0, declared: value, mean: null,
        kind: "nothing learned yet" });
    }
    this.paintLearned(stats);
  }

  paintCards(instances, data) {
    const slots = instances.reduce((a, i) => a + i.slots, 0);
    const running = instances.reduce((a, i) => a + Math.min(i.running, i.slots), 0);
    const busy = instances.filter((i) => i.busy).length;
    const card = (label, value, id) => el("div", { class: "card", id }, el("b", {}, value), label);
    clear(this.cards).append(
      card("specs", String((data.specs || []).length), "card-specs"),
      card("instances", String(instances.length), "card-instances"),
      card("busy / idle", `${busy} / ${instances.length - busy}`, "card-busy"),
      card("utilisation (slots busy)", slots ? `${fmtNum((100 * running) / slots, 0)}%` : "–", "card-util"));
  }

  paintChart() {
    const canvas = this.chart;
    const width = canvas.clientWidth || 900, height = 220, ratio = window.devicePixelRatio || 1;
    canvas.width = width * ratio;
    canvas.height = height * ratio;
    canvas.style.height = `${height}px`;
    const ctx = canvas.getContext("2d");
    ctx.scale(ratio, ratio);
    const names = [...new Set(this.history.flatMap((p) => Object.keys(p.specs)))].sort();
    const max = Math.max(1, ...this.history.flatMap((p) => Object.values(p.specs).map((s) => s.n)));
    const t0 = this.history[0]?.t ?? 0, t1 = this.history[this.history.length - 1]?.t ?? 1;
    const x = (t) => 40 + ((t - t0) / Math.max(t1 - t0, 1)) * (width - 160);
    const y = (v) => height - 20 - (v / max) * (height - 40);
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = "#6b7280";
    ctx.fillText(String(max), 4, y(max) + 4);
    ctx.fillText("0", 4, y(0) + 4);
    names.forEach((name, k) => {
      const colour = PALETTE[k % PALETTE.length];
      for (const [field, dash] of [["n", []], ["busy", [4, 3]]]) {
        ctx.strokeStyle = colour;
        ctx.setLineDash(dash);
        ctx.beginPath();
        this.history.forEach((p, i) => {
          const v = p.specs[name]?.[field] ?? 0;
          if (i === 0) ctx.moveTo(x(p.t), y(v));
          else ctx.lineTo(x(p.t), y(v));
        });
        ctx.stroke();
      }
      ctx.setLineDash([]);
      const last = this.history[this.history.length - 1];
      if (last) {  // the latest sample as a dot: a single sample is a point, not a line
        ctx.fillStyle = colour;
        ctx.beginPath();
        ctx.arc(x(last.t), y(last.specs[name]?.n ?? 0), 3, 0, 2 * Math.PI);
        ctx.fill();
      }
      ctx.fillStyle = colour;
      ctx.fillText(name, width - 110, 16 + k * 14);
    });
  }

  paintInstances(instances) {
    const rows = instances.slice().sort((a, b) => (a.spec + a.id < b.spec + b.id ? -1 : 1));
    clear(this.instances).append(el("table", { class: "grid" },
      el("thead", {}, el("tr", {}, ["instance", "spec", "state", "running", "slots", "load"].map((h) => el("th", {}, h)))),
      el("tbody", {}, rows.slice(0, 1000).map((i) => el("tr", { "data-instance": i.id, "data-busy": i.busy },
        el("td", {}, i.id), el("td", {}, i.spec), el("td", {}, i.busy ? `${i.state} (busy)` : i.state),
        el("td", {}, String(i.running)), el("td", {}, String(i.slots)),
        el("td", {}, el("span", { class: "meter" }, el("span", { style: { width: `${Math.min(100, (100 * i.running) / Math.max(1, i.slots))}%` } }))))))));
  }

  paintQueues(depths) {
    const entries = Object.entries(depths).sort((a, b) => b[1] - a[1]);
    const max = Math.max(1, ...entries.map((e) => e[1]));
    clear(this.queues).append(entries.length ? el("table", { class: "grid" },
      el("tbody", {}, entries.map(([cap, n]) => el("tr", { "data-capability": cap },
        el("td", {}, cap), el("td", {}, String(n)),
        el("td", {}, el("span", { class: "meter" }, el("span", { style: { width: `${(100 * n) / max}%` } })))))))
      : el("p", { class: "muted" }, "no queued tasks"));
  }

  paintLearned(stats) {
    const caps = [...new Set(stats.map((s) => s.capability))].sort();
    const agents = [...new Set(stats.map((s) => s.agent))].sort();
    const cell = new Map(stats.map((s) => [`${s.agent}|${s.capability}`, s]));
    clear(this.learned).append(stats.length ? el("table", { class: "grid", id: "learned" },
      el("thead", {}, el("tr", {}, el("th", {}, "agent"), caps.map((c) => el("th", {}, c)))),
      el("tbody", {}, agents.map((a) => el("tr", {}, el("td", {}, a), caps.map((c) => {
        const s = cell.get(`${a}|${c}`);
        if (!s) return el("td", {});
        return el("td", { title: `${s.kind} over ${s.n} attempts; declared ${fmtNum(s.declared, 2)}; ` +
          `mean ${fmtNum(s.mean, 2)} s`, "data-cell": `${a}|${c}` },
        el("b", {}, s.learned === null ? "–" : fmtNum(s.learned, 2)),
        el("span", { class: "muted" }, ` (declared ${fmtNum(s.declared, 2)}, n=${s.n})`));
      })))))
      : el("p", { class: "muted" }, "nothing learned yet"));
  }
}
