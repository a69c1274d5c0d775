// The DAG of a run as SVG, tasks coloured by state. A small run shows every task in columns by
// level; a large one collapses into groups (by level, or by a range of levels, and capability)
// each with a stacked bar of its states; a click on a group expands it into its tasks.

import { STATES, clear, colourOf, svg } from "./util.js";

const SMALL_LIMIT = 300;  // tasks drawn one by one up to this many
const MAX_GROUPS = 160;  // collapsed: at most this many groups (levels merged into ranges)
const EXPANDED_CAP = 600;  // squares drawn in one expanded group
const NODE_W = 150, NODE_H = 26, COL_W = 190, ROW_H = 34, PAD = 16;
const GROUP_W = 170, GROUP_H = 58, GROUP_GAP = 14, SQ = 9, SQ_PER_ROW = 16;

export class DagView {
  constructor(container, model, onTask) {
    this.container = container;
    this.model = model;
    this.onTask = onTask;
    this.expanded = new Set();
    this.nodes = new Map();
    this.mode = "";
  }

  render() {
    clear(this.container);
    this.nodes.clear();
    const m = this.model;
    this.mode = m.tasks.length <= SMALL_LIMIT ? "tasks" : "groups";
    this.container.dataset.mode = this.mode;
    this.renderedCount = m.tasks.length;
    if (m.tasks.length === 0) {
      this.container.append(document.createTextNode("no tasks"));
      return;
    }
    this.container.append(this.mode === "tasks" ? this.taskGraph() : this.groupGraph());
  }

  // Recolour in place when only states changed; re-render when tasks were added.
  update() {
    if (this.model.tasks.length !== this.renderedCount || this.mode === "groups") {
      const scroll = [this.container.scrollLeft, this.container.scrollTop];
      this.render();
      [this.container.scrollLeft, this.container.scrollTop] = scroll;
      return;
    }
    for (const t of this.model.tasks) {
      const node = this.nodes.get(t.id);
      if (node && node.dataset.state !== t.state) {
        node.dataset.state = t.state;
        node.firstChild.setAttribute("fill", colourOf(t.state));
      }
    }
  }

  taskGraph() {
    const m = this.model;
    const columns = [];
    for (const t of m.tasks) (columns[t.level] ||= []).push(t);
    const pos = new Map();
    columns.forEach((col, level) => {
      if (level > 0) {  // order by the mean row of the dependencies: fewer crossings
        const key = (t) => {
          const rows = (t.depends_on || []).map((d) => pos.get(d)?.row).filter((r) => r !== undefined);
          return rows.length ? rows.reduce((a, b) => a + b, 0) / rows.length : 0;
        };
        col.sort((a, b) => key(a) - key(b));
      }
      col.forEach((t, row) => pos.set(t.id, { x: PAD + level * COL_W, y: PAD + row * ROW_H, row }));
    });
    const rows = Math.max(...columns.map((c) => (c ? c.length : 0)));
    const width = PAD * 2 + (m.maxLevel + 1) * COL_W;
    const height = PAD * 2 + rows * ROW_H;
    const root = svg("svg", { width, height, class: "dag", role: "img", "aria-label": "task graph" });
    const edges = svg("g", { class: "edges" });
    for (const t of m.tasks) {
      const to = pos.get(t.id);
      for (const d of t.depends_on || []) {
        const from = pos.get(d);
        if (!from) continue;
        const x1 = from.x + NODE_W, y1 = from.y + NODE_H / 2, x2 = to.x, y2 = to.y + NODE_H / 2;
        const mid = (x1 + x2) / 2;
        edges.append(svg("path", { d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}` }));
      }
    }
    root.append(edges);
    for (const t of m.tasks) {
      const p = pos.get(t.id);
      const label = t.id.length > 20 ? `${t.id.slice(0, 19)}…` : t.id;
      const node = svg("g", { class: "dag-node", transform: `translate(${p.x},${p.y})`,
        "data-task-id": t.id, "data-state": t.state, tabindex: 0 },
        svg("rect", { width: NODE_W, height: NODE_H, rx: 5, fill: colourOf(t.state) }),
        svg("text", { x: 8, y: 17 }, label),
        svg("title", {}, `${t.id} (${t.capability}): ${t.state}${t.agent ? ` on ${t.agent}` : ""}`));
      node.addEventListener("click", () => this.onTask(t.id));
      this.nodes.set(t.id, node);
      root.append(node);
    }
    return root;
  }

  // Groups: levels merged into ranges when there are too many, split by capability when
  // there are few capabilities; never more than MAX_GROUPS groups.
  groups() {
    const m = this.model;
    const levels = m.maxLevel + 1;
    const caps = new Set(m.tasks.map((t) => t.capability)).size;
    const byCap = caps <= MAX_GROUPS / 8;
    const slots = Math.max(1, Math.floor(MAX_GROUPS / (byCap ? caps : 1)));
    const perBucket = Math.max(1, Math.ceil(levels / slots));
    const keyOf = (t) => `${Math.floor(t.level / perBucket)}|${byCap ? t.capability : "*"}`;
    const groups = new Map();
    for (const t of m.tasks) {
      const key = keyOf(t);
      let g = groups.get(key);
      if (!g) {
        const bucket = Math.floor(t.level / perBucket);
        const lo = bucket * perBucket, hi = Math.min(levels - 1, lo + perBucket - 1);
        g = { key, bucket, capability: byCap ? t.capability : `${caps} capabilities`, tasks: [],
          counts: {}, label: lo === hi ? `L${lo}` : `L${lo}–${hi}` };
        groups.set(key, g);
      }
      g.tasks.push(t);
      g.counts[t.state] = (g.counts[t.state] || 0) + 1;
    }
    return { groups, keyOf };
  }

  groupGraph() {
    const { groups, keyOf } = this.groups();
    const columns = [];
    for (const g of groups.values()) (columns[g.bucket] ||= []).push(g);
    const pos = new Map();
    let width = PAD;
    let height = 0;
    for (const col of columns) {
      if (!col) continue;
      let y = PAD;
      let colWidth = GROUP_W;
      for (const g of col) {
        const h = this.groupHeight(g);
        colWidth = Math.max(colWidth, this.groupWidth(g));
        pos.set(g.key, { x: width, y, h });
        y += h + GROUP_GAP;
      }
      for (const g of col) pos.get(g.key).w = colWidth;
      width += colWidth + 50;
      height = Math.max(height, y);
    }
    const root = svg("svg", { width: width + PAD, height: height + PAD, class: "dag collapsed",
      role: "img", "aria-label": "task graph by level" });
    root.append(this.groupEdges(groups, pos, keyOf));
    for (const g of groups.values()) root.append(this.groupNode(g, pos.get(g.key)));
    return root;
  }

  groupEdges(groups, pos, keyOf) {
    const layer = svg("g", { class: "edges" });
    const seen = new Set();
    for (const g of groups.values()) {
      for (const t of g.tasks) {
        for (const d of t.depends_on || []) {
          const dep = this.model.byId.get(d);
          if (!dep) continue;
          const from = keyOf(dep);
          const pair = `${from}>${g.key}`;
          if (from === g.key || seen.has(pair)) continue;
          seen.add(pair);
          const a = pos.get(from), b = pos.get(g.key);
          const x1 = a.x + a.w, y1 = a.y + 20, x2 = b.x, y2 = b.y + 20, mid = (x1 + x2) / 2;
          layer.append(svg("path", { d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}` }));
        }
      }
    }
    return layer;
  }

  groupWidth(g) {
    return this.expanded.has(g.key) ? Math.max(GROUP_W, SQ_PER_ROW * (SQ + 2) + 12) : GROUP_W;
  }

  groupHeight(g) {
    if (!this.expanded.has(g.key)) return GROUP_H;
    const shown = Math.min(g.tasks.length, EXPANDED_CAP);
    return GROUP_H + Math.ceil(shown / SQ_PER_ROW) * (SQ + 2) + (g.tasks.length > shown ? 16 : 4);
  }

  groupNode(g, p) {
    const open = this.expanded.has(g.key);
    const node = svg("g", { class: "dag-group", transform: `translate(${p.x},${p.y})`,
      "data-group": g.key, "data-count": g.tasks.length, tabindex: 0 });
    node.append(svg("rect", { class: "group-box", width: p.w, height: p.h, rx: 6 }));
    node.append(svg("text", { x: 8, y: 16, class: "group-title" },
      `${open ? "▾" : "▸"} ${g.label} · ${g.capability}`));
    node.append(svg("text", { x: 8, y: 32, class: "group-count" }, `${g.tasks.length} tasks`));
    let x = 8;
    const barW = p.w - 16;
    for (const s of STATES) {
      const n = g.counts[s] || 0;
      if (!n) continue;
      const w = (n / g.tasks.length) * barW;
      node.append(svg("rect", { x, y: 40, width: Math.max(w, 0.5), height: 10, fill: colourOf(s) },
        svg("title", {}, `${n} ${s}`)));
      x += w;
    }
    node.firstChild.addEventListener("click", () => this.toggle(g.key));
    node.children[1].addEventListener("click", () => this.toggle(g.key));
    if (open) this.squares(node, g);
    return node;
  }

  squares(node, g) {
    const shown = g.tasks.slice(0, EXPANDED_CAP);
    shown.forEach((t, i) => {
      const sq = svg("rect", { class: "dag-square", x: 8 + (i % SQ_PER_ROW) * (SQ + 2),
        y: GROUP_H + Math.floor(i / SQ_PER_ROW) * (SQ + 2), width: SQ, height: SQ,
        fill: colourOf(t.state), "data-task-id": t.id, "data-state": t.state },
        svg("title", {}, `${t.id}: ${t.state}`));
      sq.addEventListener("click", (e) => {
        e.stopPropagation();
        this.onTask(t.id);
      });
      this.nodes.set(t.id, sq);
      node.append(sq);
    });
    if (g.tasks.length > shown.length) {
      const y = GROUP_H + Math.ceil(shown.length / SQ_PER_ROW) * (SQ + 2) + 10;
      node.append(svg("text", { x: 8, y, class: "group-count" },
        `+${g.tasks.length - shown.length} more: see the table`));
    }
  }

  toggle(key) {
    if (this.expanded.has(key)) this.expanded.delete(key);
    else this.expanded.add(key);
    const scroll = [this.container.scrollLeft, this.container.scrollTop];
    this.render();
    [this.container.scrollLeft, this.container.scrollTop] = scroll;
  }
}
