// Small helpers shared by every view: DOM building, formatting, state colours, frame throttling.
// Used by the live dashboard and inlined into `metaagent report --html` (so: no imports here).

export const STATES = ["pending", "ready", "running", "succeeded", "failed", "cancelled", "skipped"];

export const STATE_COLOURS = {
  pending: "#9aa4b1",
  ready: "#e6b422",
  running: "#3b82f6",
  succeeded: "#22a05a",
  failed: "#dc3545",
  cancelled: "#9b59b6",
  skipped: "#c9cdd3",
  lost: "#f08c00",
  error: "#dc3545",
  timeout: "#e8590c",
  crash: "#c2255c",
  verify_failed: "#e03131",
};

export const TERMINAL_STATES = new Set(["succeeded", "failed", "cancelled", "skipped"]);

export function colourOf(state) {
  return STATE_COLOURS[state] || "#868e96";
}

// el("div", {class: "x", onclick: f}, child, "text", [more children])
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "style" && typeof value === "object") Object.assign(node.style, value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  appendAll(node, children);
  return node;
}

function appendAll(node, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) appendAll(node, child);
    else node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

const SVG_NS = "http://www.w3.org/2000/svg";

export function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined) continue;
    if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function stateBadge(state) {
  return el("span", { class: `badge state-${state}`, style: { background: colourOf(state) } }, state || "?");
}

export function fmtSeconds(s) {
  if (s === null || s === undefined || !Number.isFinite(s)) return "–";
  if (s < 1) return `${(s * 1000).toFixed(0)} ms`;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} m ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} m`;
}

export function fmtEpoch(t) {
  if (!t) return "–";
  const d = new Date(t * 1000);
  return d.toISOString().replace("T", " ").slice(0, 19);
}

export function fmtNum(v, places = 3) {
  return typeof v === "number" && Number.isFinite(v) ? v.toFixed(places) : "–";
}

export function fmtValue(v) {
  if (v === null || v === undefined) return "";
  return typeof v === "string" ? v : JSON.stringify(v, null, 2);
}

// Call fn at most once per animation frame, however often schedule() is called.
export function frameThrottle(fn) {
  let pending = false;
  return () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      fn();
    });
  };
}

// Call fn at most every `ms` milliseconds (trailing call kept).
export function timeThrottle(fn, ms) {
  let timer = null;
  let last = 0;
  return () => {
    if (timer !== null) return;
    const wait = Math.max(0, last + ms - performance.now());
    timer = setTimeout(() => {
      timer = null;
      last = performance.now();
      fn();
    }, wait);
  };
}

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

// Mark the page drawn once the browser has painted it (two frames later): `data-ready` for
// tests, `data-rendered-ms` (performance.now(), from navigation start) for the benchmark.
export function markRendered() {
  requestAnimationFrame(() => requestAnimationFrame(() => {
    document.body.dataset.renderedMs = String(performance.now());
    document.body.dataset.ready = "true";
  }));
}
