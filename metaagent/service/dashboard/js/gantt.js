// The Gantt timeline of a run on a canvas: one row per agent instance, one bar per attempt,
// coloured by its outcome (running attempts reach to the latest known time). Click a bar for
// its task.

import { clear, colourOf, el, fmtSeconds } from "./util.js";

const ROW_H = 18, LABEL_W = 150, AXIS_H = 22, MAX_ROWS = 1500;

export class GanttView {
  constructor(container, model, onTask) {
    this.container = container;
    this.model = model;
    this.onTask = onTask;
    this.canvas = null;
  }

  render() {
    clear(this.container);
    this.lanes = packLanes(this.model.lanes()).slice(0, MAX_ROWS);
    const rows = this.lanes.length;
    const width = Math.max(400, this.container.clientWidth || 900);
    const height = AXIS_H + Math.max(1, rows) * ROW_H + 4;
    const ratio = window.devicePixelRatio || 1;
    this.canvas = el("canvas", { class: "gantt", width: width * ratio, height: height * ratio,
      style: { width: `${width}px`, height: `${height}px` }, "aria-label": "timeline per agent instance" });
    this.canvas.dataset.lanes = String(rows);
    this.canvas.dataset.bars = String(this.lanes.reduce((n, [, bars]) => n + bars.length, 0));
    this.width = width;
    this.container.append(this.canvas);
    if (this.lanes.length >= MAX_ROWS) {
      this.container.append(el("p", { class: "muted" }, `first ${MAX_ROWS} instances shown`));
    }
    this.canvas.addEventListener("click", (e) => {
      const hit = this.hit(e);
      if (hit) this.onTask(hit.task.id);
    });
    this.canvas.addEventListener("mousemove", (e) => {
      const hit = this.hit(e);
      this.canvas.title = hit ? this.describe(hit) : "";
      this.canvas.style.cursor = hit ? "pointer" : "default";
    });
    this.draw(ratio);
  }

  update() {
    this.render();
  }

  describe({ task, attempt }) {
    const end = attempt.finished_at ?? this.end;
    return `${task.id} #${attempt.number} on ${attempt.agent_instance}: ` +
      `${attempt.outcome || "running"}, ${fmtSeconds(end - attempt.started_at)}`;
  }

  scale() {
    this.end = Math.max(this.model.now(), 1e-3);
    return (this.width - LABEL_W - 10) / this.end;
  }

  draw(ratio) {
    const ctx = this.canvas.getContext("2d");
    ctx.scale(ratio, ratio);
    const k = this.scale();
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = "#6b7280";
    ctx.strokeStyle = "#e5e7eb";
    const step = niceStep(this.end / 8);
    for (let t = 0; t <= this.end + 1e-9; t += step) {
      const x = LABEL_W + t * k;
      ctx.beginPath();
      ctx.moveTo(x, AXIS_H - 4);
      ctx.lineTo(x, this.canvas.height / ratio);
      ctx.stroke();
      ctx.fillText(fmtSeconds(t), x + 2, 12);
    }
    this.lanes.forEach(([name, bars, first], row) => {
      const y = AXIS_H + row * ROW_H;
      ctx.fillStyle = "#374151";
      if (first) ctx.fillText(name.length > 22 ? `${name.slice(0, 21)}…` : name, 4, y + 13);
      for (const { attempt } of bars) {
        const end = attempt.finished_at ?? this.end;
        const x = LABEL_W + attempt.started_at * k;
        ctx.fillStyle = colourOf(attempt.outcome || "running");
        ctx.fillRect(x, y + 3, Math.max(1, (end - attempt.started_at) * k), ROW_H - 6);
      }
    });
  }

  hit(e) {
    const rect = this.canvas.getBoundingClientRect();
    const x = e.clientX - rect.left, y = e.clientY - rect.top;
    const row = Math.floor((y - AXIS_H) / ROW_H);
    if (row < 0 || row >= this.lanes.length || x < LABEL_W) return null;
    const k = this.scale();
    const t = (x - LABEL_W) / k, slack = 2 / k;
    let best = null;
    for (const bar of this.lanes[row][1]) {
      const end = bar.attempt.finished_at ?? this.end;
      if (t >= bar.attempt.started_at - slack && t <= end + slack) best = bar;
    }
    return best;
  }
}

// An instance with several slots runs attempts at once: its bars go to as many sub-rows as
// needed (each bar on the first sub-row free at its start), so none hides another.
function packLanes(lanes) {
  const rows = [];
  for (const [name, bars] of lanes) {
    const sorted = bars.slice().sort((a, b) => a.attempt.started_at - b.attempt.started_at);
    const subs = [];
    for (const bar of sorted) {
      const end = bar.attempt.finished_at ?? Infinity;
      let sub = subs.find((s) => s.end <= bar.attempt.started_at);
      if (!sub) {
        sub = { end: -Infinity, bars: [] };
        subs.push(sub);
      }
      sub.bars.push(bar);
      sub.end = end;
    }
    subs.forEach((s, i) => rows.push([name, s.bars, i === 0]));
  }
  return rows;
}

function niceStep(raw) {
  if (!(raw > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (raw <= m * p) return m * p;
  return 10 * p;
}
