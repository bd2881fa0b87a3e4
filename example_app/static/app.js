// The ops console: every panel is fed by ONE RealtimeClient on the general route (/ws);
// HTTP is used only for login/register, the user routes, tasks and the admin routes; the
// chat (chat.js) sends its messages over the same WebSocket.
//
// Test hooks: window.demo (see the bottom of this file).

import { RealtimeClient } from "/ws/client.js";
import { ThroughputChart } from "./chart.js";
import { ChatRoom } from "./chat.js";
import { $, el, fmt, prependCapped, setText, toast, token } from "./dom.js";

const LEVELS = ["debug", "info", "warn", "error", "critical"];
const LOG_ROWS = 200;
const ANOMALY_CARDS = 20;
const FEED_ITEMS = 80;
/** Per channel, the test hooks keep the last KEEP events (ids and data). */
const KEEP = 5000;
/** Channels every connection subscribes to without a filter (users: signed in only). */
const PLAIN = ["log_stats", "anomalies", "alerts", "providers", "system", "tasks", "announcements"];

const state = {
  config: null,
  token: sessionStorage.getItem("demo.token"),
  user: JSON.parse(sessionStorage.getItem("demo.user") || "null"),
  requestsPerSecond: null, // from the gateway stats, for the chart
  adminTimer: null,
  taskDetail: null, // the task whose own channel (tasks.<id>) is open
  room: sessionStorage.getItem("demo.room"), // the chat room shown (rooms.<room>)
};
let dropping = false; // "Drop connection" is running

/** Test hooks and a window on what the page received. */
const demo = (window.demo = {
  client: null,
  /** How many clients this page made (a new one on login and logout). */
  generation: 0,
  /** channel -> event ids in the order received (events only, not control messages). */
  received: {},
  /** channel -> [{seq, id, type, data, at}]: the same events with their data. */
  events: {},
  /** channel -> how many events arrived on it with the current client. */
  seq: {},
  /** channel -> {filter, seq}: the filter in force for events with seq >= this seq. */
  marks: {},
  /** The signed-in user's inbox channel (users.<id>), or null. */
  inbox: null,
  /** The chat room's channel (rooms.<room>) when signed in, or null; chat: its panel. */
  room: null,
  chat: null,
  /** Follow one task on its own channel, tasks.<id>, as a click on it does. */
  openTask: (id) => openTask(id),
  /** Ids of the tasks started with the button. */
  startedTasks: [],
  /** Outcomes of "Drop connection". */
  drops: [],
  errors: [],
  toasts: [],
  chart: null,
  status: () => demo.client && plainStatus(demo.client.getConnectionStatus()),
  get user() {
    return state.user;
  },
  ready: null,
});

const plainStatus = (s) => ({
  ...s,
  lastError: s.lastError && { code: s.lastError.code, message: s.lastError.message },
});

// ------------------------------------------------------------------ errors

function showError(context, error) {
  const code = error?.code ? `${error.code}: ` : "";
  const text = `${context}: ${code}${error?.message ?? String(error)}`;
  demo.errors.push({ context, code: error?.code ?? null, message: error?.message ?? String(error) });
  setText("error-text", text);
  $("error-line").hidden = false;
  console.warn(text);
}

$("error-clear").addEventListener("click", () => ($("error-line").hidden = true));

class HttpError extends Error {
  constructor(code, message, status) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

/** fetch() a JSON route; throws an HttpError with the server's code and message. */
async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new HttpError("network", `${method} ${path}: ${e.message}`, 0);
  }
  const text = await response.text();
  let payload = null;
  try {
    payload = text ? JSON.parse(text) : null;
  } catch {
    payload = null;
  }
  if (!response.ok) {
    const err = payload?.error;
    const message = err?.message ?? (text.slice(0, 200) || response.statusText);
    throw new HttpError(err?.code ?? `http_${response.status}`, `${method} ${path} → ${response.status} ${message}`, response.status);
  }
  return payload;
}

/** Run an async UI action; its error goes to the error line. */
const guarded = (context, fn) => async (...args) => {
  try {
    return await fn(...args);
  } catch (e) {
    showError(context, e);
    return undefined;
  }
};

// ------------------------------------------------------------------ the client

const logFilter = () => {
  const filter = {};
  const level = $("log-level").value;
  if (level !== "debug") filter.level = level;
  const components = [...document.querySelectorAll("#log-components input:checked")].map((i) => i.value);
  if (components.length) filter.component = components.join(",");
  return filter;
};

const requestFilter = () => {
  const filter = {};
  if ($("req-provider").value) filter.provider_id = $("req-provider").value;
  if ($("req-model").value) filter.model_id = $("req-model").value;
  if ($("req-errors").checked) filter.only_errors = true;
  return filter;
};

const statsFilter = () => ({ window: $("gw-window").value, interval: $("gw-interval").value });

/** A new client with the current token and the UI's filters (the old one is dropped). */
function startClient() {
  const old = demo.client;
  if (old) {
    old.disconnect();
    demo.offs?.forEach((off) => off());
  }
  const client = new RealtimeClient(state.config?.ws ?? "/ws", {
    token: state.token || null,
    pingInterval: 15000,
  });
  // One subscribe() per distinct filter; not connected yet, so these are only recorded.
  const plain = state.user ? [...PLAIN, "users"] : PLAIN;
  client.subscribe(plain);
  // The user's private inbox: a channel of the template users.{user_id}, which only they
  // (or an admin) may subscribe to.
  demo.inbox = state.user ? `users.${state.user.id}` : null;
  if (demo.inbox) client.subscribe(demo.inbox);
  // The chat room: presence, typing and chat lines (signed-in users only).
  demo.room = state.user && state.room ? `rooms.${state.room}` : null;
  if (demo.room) client.subscribe(demo.room);
  const filters = { logs: logFilter(), requests: requestFilter(), stats: statsFilter() };
  for (const [channel, filter] of Object.entries(filters)) client.subscribe(channel, filter);

  demo.client = client;
  demo.generation += 1;
  demo.received = {};
  demo.events = {};
  demo.seq = {};
  demo.marks = Object.fromEntries(Object.entries(filters).map(([c, f]) => [c, { filter: f, seq: 0 }]));
  demo.offs = [
    client.on("*", onMessage),
    client.onConnectionChange((status) => {
      if (client !== demo.client) return;
      showStatus(status);
      if (status.state === "failed") onFailed(status);
      // Presence events are not replayed: ask who is here after every (re)connection.
      if (status.state === "connected") demo.chat.refresh();
    }),
  ];
  resetPanels();
  demo.chat.start(client, demo.room, state.user);
  showStatus(client.getConnectionStatus());
  return client.connect().then((status) => {
    if (client === demo.client && state.user?.role === "admin") refreshAdminStats();
    return status;
  }); // a failure is shown by onFailed (state "failed")
}

/** Subscribe `channel` again with a new filter (it replaces the old one). */
async function resubscribe(channel, filter) {
  const client = demo.client;
  try {
    await client.subscribe(channel, filter);
    if (client === demo.client) demo.marks[channel] = { filter, seq: demo.seq[channel] ?? 0 };
  } catch (e) {
    showError(`subscribe ${channel}`, e);
  }
}

function showStatus(status) {
  $("connection").dataset.state = status.state;
  setText("conn-state", status.state);
  let detail = "";
  if (status.state === "connected") {
    detail = `client ${status.clientId ?? "?"}${status.userId ? ` · user ${status.userId}` : " · anonymous"}`;
  } else if (status.state === "reconnecting") {
    const next = status.nextRetryMs === null ? "" : `, next in ${status.nextRetryMs} ms`;
    detail = `attempt ${status.attempt}${next}${status.lastError ? ` · ${status.lastError.message}` : ""}`;
  } else if (status.state === "failed") {
    detail = status.lastError ? `${status.lastError.code}: ${status.lastError.message}` : "";
  }
  $("conn-detail").textContent = detail;
  $("drop").disabled = status.state !== "connected" || dropping;
}

/** The client gave up (a refused subscription, a 1008 close, ...): say why. */
function onFailed(status) {
  showError("connection", status.lastError ?? { code: "failed", message: "the client stopped" });
  if (status.lastError?.code === "closed_1008" && state.user) {
    // The server revoked this session (account deleted, token expired): carry on anonymously.
    showError("connection", { code: "signed_out", message: `${status.lastError.message}; signed out` });
    setIdentity(null, null);
  }
}

/** Every message of the client: record events, then hand them to their panel. */
function onMessage(message) {
  const { type, channel } = message;
  if (channel && message.id !== undefined && message.id !== null) {
    const seq = (demo.seq[channel] = (demo.seq[channel] ?? 0) + 1);
    const ids = (demo.received[channel] ??= []);
    const events = (demo.events[channel] ??= []);
    ids.push(message.id);
    events.push({ seq, id: message.id, type, data: message.data, timestamp: message.timestamp, at: Date.now() });
    if (ids.length > KEEP * 1.2) ids.splice(0, ids.length - KEEP);
    if (events.length > KEEP * 1.2) events.splice(0, events.length - KEEP);
  }
  switch (type) {
    case "resume_failed":
      return showError("resume", { code: "resume_failed", message: `events of ${channel} were lost while disconnected` });
    case "messages_dropped":
      return showError("delivery", {
        code: "messages_dropped",
        message: `${message.data?.count ?? "some"} events of ${message.data?.channel} were dropped (${message.data?.reason ?? "slow client"})`,
      });
    case "error":
      return showError("server", message.data);
    case "unsubscribed":
      return showError("server", { code: "unsubscribed", message: `removed ${message.data?.channels} (${message.data?.reason})` });
    default:
      const panel = channel && (panels[channel] ?? templatePanel(channel));
      if (panel) {
        try {
          panel(message);
        } catch (e) {
          console.error("panel", channel, e);
        }
      }
  }
}

// ------------------------------------------------------------------ panels

const data = (m) => (m && typeof m.data === "object" && m.data !== null ? m.data : {});

const panels = {
  logs(message) {
    if (message.type !== "log_update") return;
    const d = data(message);
    const level = LEVELS.includes(d.level) ? d.level : "info";
    const row = el(
      "tr",
      { class: `new log-${level}`, "data-testid": "log-row", dataset: { id: message.id, level: d.level } },
      el("td", {}, fmt.time(d.timestamp ?? message.timestamp)),
      el("td", { class: `level level-${level}` }, d.level ?? "?"),
      el("td", {}, d.component ?? ""),
      el("td", {}, d.source ?? ""),
      el("td", {}, d.message ?? ""),
    );
    prependCapped($("log-rows"), row, LOG_ROWS);
    setText("log-count", `${$("log-rows").children.length} rows`);
  },

  anomalies(message) {
    if (message.type !== "new_anomaly") return;
    const d = data(message);
    const score = Math.max(0, Math.min(1, Number(d.anomalyScore) || 0));
    const list = (title, items) =>
      Array.isArray(items) && items.length
        ? [el("div", { class: "section" }, title), el("ul", {}, items.map((item) => el("li", {}, item)))]
        : [];
    const card = el(
      "article",
      { class: `card sev-${token(d.severity)}`, "data-testid": "anomaly-card", dataset: { id: message.id } },
      el(
        "div",
        { class: "head" },
        el("span", { class: `badge ${token(d.severity)}` }, d.severity ?? "?"),
        el("strong", {}, d.component ?? ""),
        el("span", { class: "time" }, fmt.time(d.timestamp ?? message.timestamp)),
      ),
      el("div", {}, d.message ?? ""),
      el("div", { class: "score", title: `anomaly score ${score.toFixed(2)}` }, el("span", { style: { width: `${score * 100}%` } })),
      el("div", { class: "muted small", "data-testid": "anomaly-score" }, `score ${score.toFixed(2)}`),
      list("root causes", d.rootCauses),
      list("recommendations", d.recommendations),
    );
    prependCapped($("anomaly-list"), card, ANOMALY_CARDS);
  },

  log_stats(message) {
    const d = data(message);
    setText("stat-total", fmt.int(d.totalLogs));
    setText("stat-anomalies", fmt.int(d.anomalyCount));
    setText("stat-rate", fmt.pct(d.anomalyRate, 2));
    setText("stat-services", fmt.int(d.activeServices));
    setText("stat-lps", fmt.num(d.logsPerSecond));
    demo.chart.push(d.logsPerSecond, state.requestsPerSecond);
  },

  alerts(message) {
    if (message.type !== "alert" && message.type !== "system_alert") return;
    const d = data(message);
    const status = d.status ? el("span", { class: `badge ${token(d.status)}` }, d.status) : null;
    const item = el(
      "li",
      { "data-testid": "alert-item", dataset: { id: message.id, type: message.type } },
      el("span", { class: "time" }, fmt.time(message.timestamp)),
      el("span", { class: `badge ${token(d.severity)}` }, d.severity ?? "?"),
      status,
      el("span", { class: "msg" }, d.message ?? d.rule_name ?? d.alertType ?? ""),
    );
    prependCapped($("alert-list"), item, FEED_ITEMS);
    if (d.severity === "high" || d.severity === "critical") {
      notify(`${d.severity} ${message.type === "alert" ? `alert · ${d.rule_name ?? d.rule ?? ""}` : `system alert · ${d.alertType ?? ""}`}`, d.message ?? "", d.severity);
    }
  },

  providers(message) {
    if (message.type === "initial_state") {
      $("provider-rows").replaceChildren();
      for (const provider of data(message).providers ?? []) upsertProvider(provider);
    } else if (message.type === "provider_status") {
      upsertProvider(data(message));
    }
  },

  requests(message) {
    if (message.type !== "request") return;
    const d = data(message);
    const item = el(
      "li",
      { class: d.success === false ? "err" : "", "data-testid": "request-item", dataset: { id: message.id } },
      el("span", { class: "time" }, fmt.time(message.timestamp)),
      el("span", {}, `${d.status_code ?? "?"} ${d.success === false ? "✗" : "✓"}`),
      el("span", {}, `${d.provider_id ?? "?"}/${d.model_id ?? "?"}`),
      el("span", { class: "muted" }, fmt.ms(d.latency_ms)),
      el("span", { class: "muted" }, d.tokens === undefined ? "" : `${d.tokens} tok`),
    );
    prependCapped($("request-list"), item, FEED_ITEMS);
  },

  stats(message) {
    const d = data(message);
    if (message.type !== "initial_state" && message.type !== "stats_update") return;
    setText("gw-shown-window", d.window);
    setText("gw-total", fmt.int(d.total_requests));
    setText("gw-success", fmt.pct(d.success_rate));
    setText("gw-latency", fmt.ms(d.avg_latency_ms));
    setText("gw-rpm", fmt.num(d.requests_per_min));
    setText("gw-updated", `${fmt.time()}${d.calculated_at ? ` (calculated ${fmt.time(d.calculated_at)})` : ""}`);
    state.requestsPerSecond = typeof d.requests_per_min === "number" ? d.requests_per_min / 60 : null;
    const rows = (d.provider_stats ?? []).map((p) =>
      el("tr", {}, el("td", {}, p.provider_id ?? "?"), el("td", {}, fmt.int(p.requests)), el("td", {}, fmt.pct(p.success_rate)), el("td", {}, fmt.ms(p.avg_latency_ms))),
    );
    $("gw-providers").replaceChildren(...rows);
  },

  system(message) {
    const d = data(message);
    if (message.type === "initial_state") {
      if (d.system_status) showSystem(d.system_status);
      if (d.metrics_summary) showSystem(d.metrics_summary);
      const firing = d.alert_stats?.firing;
      setText("sys-firing", Array.isArray(firing) ? (firing.length ? firing.join(", ") : "none") : firing);
      for (const task of d.active_tasks ?? []) upsertTask(task);
    } else if (message.type === "system_status" || message.type === "metrics_update") {
      showSystem(d);
    }
  },

  tasks(message) {
    if (message.type === "initial_state") {
      for (const task of data(message).tasks ?? []) upsertTask(task);
    } else if (message.type === "task_update") {
      upsertTask(data(message));
    }
  },

  announcements(message) {
    if (message.type === "initial_state") return;
    const d = data(message);
    const text = typeof message.data === "string" ? message.data : d.message ?? JSON.stringify(message.data);
    notify(`${message.type}${d.severity ? ` · ${d.severity}` : ""}`, text, d.severity ?? "info");
  },

  users(message) {
    if (message.type === "initial_state") return;
    const d = data(message);
    const summary = Object.entries(d)
      .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`)
      .join(" ");
    const item = el(
      "li",
      { "data-testid": "user-event", dataset: { id: message.id, type: message.type } },
      el("span", { class: "time" }, fmt.time(message.timestamp)),
      el("strong", {}, message.type),
      el("span", { class: "muted" }, summary),
    );
    prependCapped($("user-events"), item, FEED_ITEMS);
    if (state.user?.role === "admin" && message.type.startsWith("user.")) refreshUsers();
    if (message.type === "user.role.changed" && d.user_id === state.user?.id) {
      notify("your role changed", `${d.old_role} → ${d.new_role}: log in again for it to apply`, "medium");
    }
  },
};

/** The panel of a template's instance: the user's inbox, the open task. */
function templatePanel(channel) {
  if (channel === demo.inbox) return showInbox;
  if (channel === demo.room) return (message) => demo.chat.onMessage(message);
  if (state.taskDetail && channel === `tasks.${state.taskDetail}`) return showTaskDetail;
  return null;
}

function showInbox(message) {
  if (message.type === "initial_state") {
    $("inbox").replaceChildren();
    for (const note of data(message).notifications ?? []) addNote(note, null);
  } else if (message.type === "notification") {
    addNote(data(message), message.id);
  }
}

function addNote(d, id) {
  const item = el(
    "li",
    { "data-testid": "inbox-item", dataset: { id: id ?? "", level: d.level ?? "info" } },
    el("span", { class: "time" }, fmt.time(d.at)),
    el("span", { class: `badge ${token(d.level ?? "info")}` }, d.title ?? "notification"),
    el("span", { class: "msg" }, d.message ?? ""),
  );
  prependCapped($("inbox"), item, FEED_ITEMS);
}

function showTaskDetail(message) {
  const task = message.type === "initial_state" ? data(message).task : message.type === "task_update" ? data(message) : null;
  if (!task) {
    if (message.type === "initial_state") addTaskLine("no such task now: only its future events");
    return;
  }
  setText("task-detail-name", task.name ?? task.id);
  const details = task.details ?? {};
  const counts = details.total === undefined ? "" : ` · ${details.processed ?? 0}/${details.total}${details.errors ? ` · ${details.errors} errors` : ""}`;
  addTaskLine(`${task.status ?? "?"} ${Number(task.progress) || 0} %${counts}`, message, task);
}

function addTaskLine(text, message = null, task = null) {
  const item = el(
    "li",
    {
      "data-testid": "task-detail-event",
      dataset: { id: message?.id ?? "", type: message?.type ?? "", status: task?.status ?? "", progress: String(task?.progress ?? "") },
    },
    el("span", { class: "time" }, fmt.time(message?.timestamp)),
    el("span", {}, text),
  );
  prependCapped($("task-detail-events"), item, FEED_ITEMS);
}

/** Follow task `id` on tasks.<id>: its current state, then each of its updates. */
async function openTask(id) {
  const client = demo.client;
  if (!client) return null;
  const previous = state.taskDetail;
  if (previous === id) return null;
  state.taskDetail = id;
  for (const li of $("task-list").children) li.classList.toggle("selected", li.dataset.id === id);
  $("task-detail-events").replaceChildren();
  setText("task-detail-name", id);
  setText("task-detail-channel", `tasks.${id}`);
  $("task-detail").hidden = false;
  try {
    if (previous) await client.unsubscribe(`tasks.${previous}`);
    return await client.subscribe(`tasks.${id}`);
  } catch (e) {
    showError(`subscribe tasks.${id}`, e);
    return null;
  }
}

function closeTask() {
  const previous = state.taskDetail;
  state.taskDetail = null;
  $("task-detail").hidden = true;
  for (const li of $("task-list").children) li.classList.remove("selected");
  if (previous && demo.client) demo.client.unsubscribe(`tasks.${previous}`).catch((e) => showError("unsubscribe", e));
}

function notify(title, message, level) {
  toast(title, message, level);
  demo.toasts.push({ title, message, level, at: Date.now() });
}

function upsertProvider(p) {
  const id = String(p.provider_id ?? p.id ?? "?");
  const rows = $("provider-rows");
  let row = [...rows.children].find((r) => r.dataset.id === id);
  const cells = [
    el("td", {}, p.name ?? id),
    el("td", {}, el("span", { class: `badge ${token(p.status)}`, "data-testid": "provider-status", title: p.message ?? "" }, p.status ?? "?")),
    el("td", {}, fmt.ms(p.latency_ms)),
    el("td", {}, fmt.pct(p.success_rate)),
  ];
  if (!row) {
    row = el("tr", { "data-testid": "provider-row", dataset: { id } });
    rows.append(row);
  }
  row.replaceChildren(...cells);
}

function showSystem(d) {
  if (d.status) {
    setText("sys-status", d.status);
    $("sys-status").className = `badge ${token(d.status)}`;
  }
  if (d.hostname) setText("sys-host", d.hostname);
  if (d.uptime_s !== undefined || d.uptime !== undefined) {
    setText("sys-uptime", typeof d.uptime === "string" ? d.uptime : fmt.duration(d.uptime_s ?? d.uptime));
  }
  const meter = (key, value, text) => {
    if (typeof value !== "number") return;
    setText(`sys-${key}`, text);
    $(`sys-${key}-bar`).style.width = `${Math.min(100, Math.max(0, value))}%`;
  };
  meter("cpu", d.cpu_usage, fmt.percent(d.cpu_usage));
  // memory_usage is bytes (system_status), memory_usage_mb megabytes (metrics_update).
  const memory = typeof d.memory_usage_mb === "number" ? d.memory_usage_mb * 2 ** 20 : d.memory_usage;
  meter("mem", d.memory_percent, `${fmt.percent(d.memory_percent)}${typeof memory === "number" ? ` · ${fmt.bytes(memory)}` : ""}`);
  meter("disk", d.disk_usage, fmt.percent(d.disk_usage));
  if (d.net_in_per_s !== undefined) {
    setText("sys-net", `↓ ${fmt.bytes(d.net_in_per_s)}/s  ↑ ${fmt.bytes(d.net_out_per_s)}/s`);
  } else if (d.network_io) {
    setText("sys-net", `↓ ${fmt.bytes(d.network_io.bytes_in)}  ↑ ${fmt.bytes(d.network_io.bytes_out)}`);
  }
  if (d.active_tasks !== undefined) setText("sys-tasks", Array.isArray(d.active_tasks) ? d.active_tasks.length : d.active_tasks);
}

function upsertTask(t) {
  if (!t || t.id === undefined) return;
  const id = String(t.id);
  const list = $("task-list");
  let item = [...list.children].find((li) => li.dataset.id === id);
  if (!item) {
    item = el("li", { "data-testid": "task", dataset: { id }, title: `follow ${id} (tasks.${id})` });
    item.classList.toggle("selected", state.taskDetail === id);
    item.addEventListener("click", () => openTask(id));
    list.prepend(item);
    while (list.children.length > 20) list.lastElementChild.remove();
  }
  const progress = Math.max(0, Math.min(100, Number(t.progress) || 0));
  const details = t.details ?? {};
  item.dataset.status = t.status ?? "";
  item.dataset.progress = String(progress);
  item.replaceChildren(
    el(
      "div",
      { class: "line" },
      el("strong", {}, t.name ?? id),
      el("span", { class: `badge ${token(t.status)}`, "data-testid": "task-status" }, t.status ?? "?"),
      el("span", { class: "muted small" }, details.total === undefined ? "" : `${details.processed ?? 0}/${details.total}${details.errors ? ` · ${details.errors} errors` : ""}`),
      el("span", { class: "pct", "data-testid": "task-progress" }, `${progress.toFixed(0)} %`),
    ),
    el("div", { class: `progress ${token(t.status)}` }, el("span", { style: { width: `${progress}%` } })),
  );
}

function resetPanels() {
  $("log-rows").replaceChildren();
  setText("log-count", "");
  $("user-events").replaceChildren();
  $("inbox").replaceChildren();
  setText("inbox-channel", demo.inbox ?? "");
  // A new client: the task detail closes (its subscription was the old client's).
  state.taskDetail = null;
  $("task-detail").hidden = true;
  for (const li of $("task-list").children) li.classList.remove("selected");
}

// ------------------------------------------------------------------ controls

function setupControls(config) {
  for (const component of config.components ?? []) {
    const box = el("input", { type: "checkbox", value: component, "data-testid": `log-component-${component}` });
    box.addEventListener("change", onLogFilter);
    $("log-components").append(el("label", {}, box, component));
  }
  $("log-level").addEventListener("change", onLogFilter);

  const providers = config.providers ?? [];
  for (const p of providers) $("req-provider").append(el("option", { value: p.id }, p.name ?? p.id));
  const fillModels = () => {
    const provider = $("req-provider").value;
    const models = provider ? config.models?.[provider] ?? [] : Object.values(config.models ?? {}).flat();
    $("req-model").replaceChildren(el("option", { value: "" }, "all models"), ...[...new Set(models)].map((m) => el("option", { value: m }, m)));
  };
  fillModels();
  $("req-provider").addEventListener("change", () => {
    fillModels();
    resubscribe("requests", requestFilter());
  });
  $("req-model").addEventListener("change", () => resubscribe("requests", requestFilter()));
  $("req-errors").addEventListener("change", () => resubscribe("requests", requestFilter()));

  if (config.windows?.length) {
    $("gw-window").replaceChildren(...config.windows.map((w) => el("option", { value: w }, w)));
  }
  $("gw-window").addEventListener("change", () => resubscribe("stats", statsFilter()));
  $("gw-interval").addEventListener("change", () => resubscribe("stats", statsFilter()));

  const severities = config.severities ?? ["low", "medium", "high", "critical"];
  $("bc-severity").replaceChildren(...severities.map((s) => el("option", { value: s, selected: s === "high" }, s)));
  // Every channel may be broadcast to; announcements first (the default).
  const channels = ["announcements", ...(config.channels ?? ["alerts", "logs"]).filter((c) => c !== "announcements")];
  $("bc-channel").replaceChildren(...channels.map((c) => el("option", { value: c }, c)));

  $("start-task").addEventListener(
    "click",
    guarded("start task", async () => {
      const reply = await api("POST", "/api/tasks", { name: `bulk import ${new Date().toLocaleTimeString("en-GB")}` });
      upsertTask(reply?.task);
      if (reply?.task) demo.startedTasks.push(reply.task.id);
    }),
  );
  $("task-detail-close").addEventListener("click", closeTask);

  const rooms = config.rooms ?? ["ops"];
  if (!rooms.includes(state.room)) state.room = rooms[0];
  $("chat-room").replaceChildren(...rooms.map((r) => el("option", { value: r, selected: r === state.room }, r)));
  $("chat-room").addEventListener("change", () => switchRoom($("chat-room").value));
  $("drop").addEventListener("click", dropConnection);
}

function onLogFilter() {
  const filter = logFilter();
  const label = Object.entries(filter).map(([k, v]) => `${k}=${v}`).join(" ") || "none";
  prependCapped($("log-rows"), el("tr", { class: "divider" }, el("td", { colspan: 5, class: "muted" }, `— filter: ${label} —`)), LOG_ROWS);
  resubscribe("logs", filter);
}

/** Leave the chat room shown and join `room` (the same client). */
async function switchRoom(room) {
  const client = demo.client;
  const previous = demo.room;
  state.room = room;
  sessionStorage.setItem("demo.room", room);
  if (!client || !state.user) return;
  demo.room = `rooms.${room}`;
  demo.chat.start(client, demo.room, state.user);
  try {
    if (previous && previous !== demo.room) await client.unsubscribe(previous);
    await client.subscribe(demo.room);
    if (client === demo.client) await demo.chat.refresh();
  } catch (e) {
    showError(`subscribe ${demo.room}`, e);
  }
}

// ------------------------------------------------------------------ drop connection

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Simulate an outage: disconnect(), wait 2 s, connect(); the client resumes with since. */
async function dropConnection() {
  const client = demo.client;
  if (!client || dropping) return;
  dropping = true;
  const outcome = $("drop-outcome");
  outcome.className = "drop-outcome";
  outcome.hidden = false;
  const record = { startedAt: Date.now(), reconnectAt: null, recovered: null, replayed: null, error: null };
  try {
    client.disconnect();
    for (let s = 2; s > 0; s -= 1) {
      outcome.textContent = `offline, reconnecting in ${s} s…`;
      await sleep(1000);
    }
    if (client !== demo.client) return;
    outcome.textContent = "reconnecting…";
    const reconnectAt = (record.reconnectAt = Date.now());
    const seqBefore = { ...demo.seq };
    const status = await client.connect();
    record.recovered = status.recovered;
    const failed = Object.entries(status.recovered).filter(([, ok]) => !ok).map(([c]) => c);
    const resumed = Object.entries(status.recovered).map(([c, ok]) => `${c} ${ok ? "✓" : "✗"}`).join(" ");
    outcome.className = `drop-outcome ${failed.length ? "bad" : "ok"}`;
    outcome.textContent = failed.length
      ? `⚠ could not resume ${failed.join(", ")}: events lost · ${resumed}`
      : `resumed: ${resumed}`;
    // Replayed events come right after the subscriptions' replies: count, after a moment,
    // the events received since that were published before the reconnection.
    await sleep(1000);
    let replayed = 0;
    for (const [channel, events] of Object.entries(demo.events)) {
      const from = seqBefore[channel] ?? 0;
      replayed += events.filter((e) => e.seq > from && Date.parse(e.timestamp) < reconnectAt).length;
    }
    record.replayed = replayed;
    if (client === demo.client) outcome.textContent += ` · ${replayed} events replayed from the outage`;
  } catch (e) {
    record.error = { code: e.code, message: e.message };
    outcome.className = "drop-outcome bad";
    outcome.textContent = "reconnect failed";
    showError("reconnect", e);
  } finally {
    demo.drops.push(record);
    dropping = false;
    if (demo.client) showStatus(demo.client.getConnectionStatus());
  }
}

// ------------------------------------------------------------------ identity

function showIdentity() {
  const user = state.user;
  $("login-form").hidden = Boolean(user);
  $("whoami").hidden = !user;
  $("panel-users").hidden = !user;
  $("panel-chat").hidden = !user;
  const admin = user?.role === "admin";
  $("admin-users").hidden = !admin;
  $("admin-tools").hidden = !admin;
  if (user) {
    setText("whoami-name", user.username);
    setText("whoami-role", user.role);
    $("profile-name").value = user.name ?? "";
    $("profile-email").value = user.email ?? "";
  }
  clearInterval(state.adminTimer);
  state.adminTimer = null;
  if (admin) {
    refreshUsers();
    state.adminTimer = setInterval(refreshAdminStats, 5000);
  }
}

/** Sign in or out: a new client with (or without) the token, same filters. */
function setIdentity(tokenValue, user) {
  state.token = tokenValue;
  state.user = user;
  if (tokenValue) {
    sessionStorage.setItem("demo.token", tokenValue);
    sessionStorage.setItem("demo.user", JSON.stringify(user));
  } else {
    sessionStorage.removeItem("demo.token");
    sessionStorage.removeItem("demo.user");
  }
  showIdentity();
  return startClient().catch(() => undefined);
}

async function signIn(path) {
  const username = $("login-username").value.trim();
  const password = $("login-password").value;
  if (!username || !password) throw new HttpError("invalid", "enter a username and a password", 0);
  const reply = await api("POST", path, { username, password });
  $("login-password").value = "";
  await setIdentity(reply.token, reply.user);
}

$("login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  guarded("login", () => signIn("/api/login"))();
});
$("register-button").addEventListener("click", guarded("register", () => signIn("/api/register")));
$("logout").addEventListener("click", () => setIdentity(null, null));

$("profile-form").addEventListener("submit", (e) => {
  e.preventDefault();
  guarded("profile", async () => {
    const body = {};
    if ($("profile-name").value.trim()) body.name = $("profile-name").value.trim();
    if ($("profile-email").value.trim()) body.email = $("profile-email").value.trim();
    const reply = await api("PATCH", "/api/me", body);
    state.user = { ...state.user, ...reply.user };
    sessionStorage.setItem("demo.user", JSON.stringify(state.user));
    setText("profile-result", "profile saved");
  })();
});

$("password-form").addEventListener("submit", (e) => {
  e.preventDefault();
  guarded("password", async () => {
    await api("POST", "/api/me/password", { old_password: $("pw-old").value, new_password: $("pw-new").value });
    $("pw-old").value = "";
    $("pw-new").value = "";
    setText("profile-result", "password changed");
  })();
});

// ------------------------------------------------------------------ admin

let usersPending = null;
function refreshUsers() {
  // Coalesce bursts of user.* events into one request.
  usersPending ??= sleep(200).then(
    guarded("users", async () => {
      usersPending = null;
      if (state.user?.role !== "admin") return;
      const reply = await api("GET", "/api/users");
      $("user-rows").replaceChildren(...(reply?.users ?? []).map(userRow));
    }),
  );
}

function userRow(user) {
  const role = el(
    "select",
    { "data-testid": "user-role", "aria-label": `role of ${user.username}` },
    ["user", "admin"].map((r) => el("option", { value: r, selected: r === user.role }, r)),
  );
  role.addEventListener(
    "change",
    guarded("change role", async () => {
      await api("PATCH", `/api/users/${encodeURIComponent(user.id)}/role`, { role: role.value });
    }),
  );
  const remove = el("button", { type: "button", class: "small", "data-testid": "user-delete" }, "Delete");
  let armed = false;
  remove.addEventListener(
    "click",
    guarded("delete user", async () => {
      if (!armed) {
        armed = true;
        remove.textContent = "Sure?";
        setTimeout(() => ((armed = false), (remove.textContent = "Delete")), 3000);
        return;
      }
      await api("DELETE", `/api/users/${encodeURIComponent(user.id)}`);
      refreshUsers();
    }),
  );
  return el(
    "tr",
    { "data-testid": "user-row", dataset: { id: user.id, username: user.username } },
    el("td", {}, user.username),
    el("td", {}, user.name ?? ""),
    el("td", {}, role),
    el("td", {}, remove),
  );
}

const refreshAdminStats = guarded("admin stats", async () => {
  if (state.user?.role !== "admin") return;
  const s = await api("GET", state.config?.stats_path ?? "/admin/ws/stats");
  setText("as-clients", fmt.int(s.total_clients));
  setText("as-sent", fmt.int(s.messages_sent));
  setText("as-dropped", fmt.int(s.messages_dropped));
  const channels = Object.entries(s.by_channel ?? {}).map(([c, n]) => `${c} ${n}`).join(" · ");
  setText("as-channels", channels);
  setText("admin-stats-at", `at ${fmt.time()}`);
});

$("broadcast-form").addEventListener("submit", (e) => {
  e.preventDefault();
  guarded("broadcast", async () => {
    setText("bc-result", "");
    const body = {
      channel: $("bc-channel").value,
      type: $("bc-type").value.trim() || "announcement",
      data: { message: $("bc-message").value, severity: $("bc-severity").value },
    };
    const reply = await api("POST", state.config?.broadcast_path ?? "/admin/ws/broadcast", body);
    setText("bc-result", `sent ${reply.id} to ${reply.recipients} connection(s)`);
  })();
});

// ------------------------------------------------------------------ start

async function main() {
  demo.chart = new ThroughputChart($("chart"));
  demo.chat = new ChatRoom({ onError: showError });
  state.config = await api("GET", "/api/config");
  setupControls(state.config);
  if (state.token) {
    // A token kept from an earlier visit may have expired: check it first.
    try {
      state.user = (await api("GET", "/api/me")).user;
    } catch (e) {
      showError("session", e);
      state.token = null;
      state.user = null;
      sessionStorage.removeItem("demo.token");
      sessionStorage.removeItem("demo.user");
    }
  }
  showIdentity();
  return startClient();
}

demo.ready = main().catch((e) => {
  if (e?.name !== "RealtimeError") showError("start", e); // a client's failure: onFailed
  throw e;
});
demo.ready.catch(() => undefined); // shown in the error line already
