// The service's API as the dashboard uses it: the token (sessionStorage, never in a URL),
// JSON over fetch with `Authorization: Bearer`, and the event stream over the WebSocket
// (token in the first message, resumed with `after_seq` after any disconnect).

const TOKEN_KEY = "metaagent.token";

export class AuthError extends Error {}

export function takeTokenFromFragment() {
  const match = /(?:^#|&)token=([^&]+)/.exec(window.location.hash);
  if (!match) return false;
  sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
  // Out of the address bar and the history: a fragment is never sent, but could be shared.
  history.replaceState(history.state, "", window.location.pathname + window.location.search);
  return true;
}

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

async function request(method, path, body) {
  const headers = { Authorization: `Bearer ${getToken()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (response.status === 401) throw new AuthError("the token was refused");
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { detail: text };
  }
  if (!response.ok) {
    const detail = data && data.detail !== undefined ? data.detail : response.statusText;
    throw new Error(`${response.status}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
  }
  return data;
}

export const api = {
  get: (path) => request("GET", path),
  post: (path, body) => request("POST", path, body ?? {}),
  runs: (query) => request("GET", `/v1/runs?${query}`),
  run: (id) => request("GET", `/v1/runs/${encodeURIComponent(id)}`),
  task: (id, task) => request("GET", `/v1/runs/${encodeURIComponent(id)}/tasks/${encodeURIComponent(task)}`),
  explain: (id, task) => request("GET", `/v1/runs/${encodeURIComponent(id)}/tasks/${encodeURIComponent(task)}/explain`),
  cancel: (id, taskIds) => request("POST", `/v1/runs/${encodeURIComponent(id)}/cancel`, taskIds ? { task_ids: taskIds } : {}),
  retry: (id) => request("POST", `/v1/runs/${encodeURIComponent(id)}/retry`, {}),
  agents: () => request("GET", "/v1/agents"),
};

// A resumable subscription: onEvents(events) gets every event once, in seq order; onStatus
// ("live" | "reconnecting" | "auth") tells the page. `backlog`: on the first connect, replay
// that many stored events before the live ones.
export class EventStream {
  constructor({ runId = null, afterSeq = null, backlog = 0, onEvents, onStatus, onHello }) {
    this.runId = runId;
    this.lastSeq = afterSeq;
    this.backlog = backlog;
    this.onEvents = onEvents;
    this.onStatus = onStatus || (() => {});
    this.onHello = onHello || (() => {});
    this.closed = false;
    this.delay = 250;
    this.connect();
  }

  url() {
    const params = new URLSearchParams();
    if (this.runId) params.set("run_id", this.runId);
    if (this.lastSeq !== null) params.set("after_seq", String(this.lastSeq));
    const scheme = window.location.protocol === "https:" ? "wss" : "ws";
    const query = params.toString();
    return `${scheme}://${window.location.host}/v1/events${query ? `?${query}` : ""}`;
  }

  connect() {
    const ws = new WebSocket(this.url());
    this.ws = ws;
    ws.onopen = () => ws.send(JSON.stringify({ token: getToken() }));
    ws.onmessage = (message) => this.receive(ws, JSON.parse(message.data));
    ws.onclose = (e) => {
      if (this.ws !== ws || this.closed) return;
      if (e.code === 4401) {
        this.onStatus("auth");
        return;
      }
      this.onStatus("reconnecting");
      setTimeout(() => !this.closed && this.connect(), this.delay);
      this.delay = Math.min(this.delay * 2, 5000);
    };
  }

  receive(ws, frame) {
    if (frame.type === "hello") {
      this.delay = 250;
      if (this.lastSeq === null && this.backlog > 0 && frame.head_seq > 0) {
        this.lastSeq = Math.max(0, frame.head_seq - this.backlog);  // replay the recent past
        this.backlog = 0;
        this.ws = null;
        ws.close();
        this.connect();
        return;
      }
      if (this.lastSeq === null) this.lastSeq = frame.head_seq;
      this.onHello(frame.head_seq);
      this.onStatus("live");
      return;
    }
    if (frame.type !== "events") return;
    const fresh = frame.events.filter((e) => this.lastSeq === null || e.seq > this.lastSeq);
    if (!fresh.length) return;
    this.lastSeq = fresh[fresh.length - 1].seq;
    this.onEvents(fresh);
  }

  close() {
    this.closed = true;
    if (this.ws) this.ws.close();
  }
}
