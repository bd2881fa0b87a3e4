// Small DOM helpers for the ops console. Event data is untrusted: everything goes into
// the page as text nodes or attribute values, never as HTML.

export const $ = (id) => document.getElementById(id);

/** el("li", {class: "x", dataset: {id}}, "text", child): children are nodes or text. */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "style") Object.assign(node.style, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child)); // a string becomes a text node
  }
  return node;
}

/** Set an element's text (by id); "–" for a missing value. */
export function setText(id, value) {
  const node = $(id);
  if (node) node.textContent = value === null || value === undefined || value === "" ? "–" : String(value);
}

/** Prepend `node` to `list` and keep at most `cap` children. */
export function prependCapped(list, node, cap) {
  list.querySelector(":scope > .empty")?.remove();
  list.prepend(node);
  while (list.children.length > cap) list.lastElementChild.remove();
}

/** A class name made safe from untrusted text (letters, digits, dashes). */
export const token = (value) => String(value ?? "").toLowerCase().replace(/[^a-z0-9-]/g, "");

// ------------------------------------------------------------------ formatting

const isNum = (v) => typeof v === "number" && Number.isFinite(v);

export const fmt = {
  int: (v) => (isNum(v) ? Math.round(v).toLocaleString("en-US") : "–"),
  num: (v, digits = 1) => (isNum(v) ? v.toFixed(digits) : "–"),
  /** A ratio 0..1 as "97.5 %". */
  pct: (v, digits = 1) => (isNum(v) ? `${(v * 100).toFixed(digits)} %` : "–"),
  /** A percentage 0..100 as "42.0 %". */
  percent: (v, digits = 1) => (isNum(v) ? `${v.toFixed(digits)} %` : "–"),
  ms: (v) => (isNum(v) ? `${v.toFixed(v < 10 ? 1 : 0)} ms` : "–"),
  bytes(v) {
    if (!isNum(v)) return "–";
    const units = ["B", "KB", "MB", "GB", "TB"];
    let i = 0;
    while (Math.abs(v) >= 1024 && i < units.length - 1) (v /= 1024), i++;
    return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
  },
  /** hh:mm:ss of an ISO timestamp (or now). */
  time(iso) {
    const date = iso ? new Date(iso) : new Date();
    return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleTimeString("en-GB");
  },
  duration(seconds) {
    if (!isNum(seconds)) return "–";
    const s = Math.floor(seconds);
    const d = Math.floor(s / 86400);
    const h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60);
    return d ? `${d}d ${h}h ${m}m` : h ? `${h}h ${m}m` : `${m}m ${s % 60}s`;
  },
};

// ------------------------------------------------------------------ toasts

const TOAST_MS = 6000;
const TOASTS_SHOWN = 3;
/** title + message -> the toast showing it: a repeat bumps its counter instead. */
const showing = new Map();

/** Pop a toast that fades after a few seconds; returns its element. */
export function toast(title, message, level = "info") {
  const key = `${title}\n${message}`;
  let entry = showing.get(key);
  if (entry) {
    entry.count += 1;
    entry.counter.textContent = ` ×${entry.count}`;
    clearTimeout(entry.timer);
  } else {
    const counter = el("span", { class: "repeat" });
    const node = el(
      "div",
      { class: `toast ${token(level)}`, "data-testid": "toast", role: "status" },
      el("div", { class: "title" }, title, counter),
      el("div", { class: "message" }, message),
    );
    entry = { node, counter, count: 1, timer: null };
    showing.set(key, entry);
    const box = $("toasts");
    box.append(node);
    while (box.children.length > TOASTS_SHOWN) {
      const oldest = box.firstElementChild;
      for (const [k, e] of showing) if (e.node === oldest) (clearTimeout(e.timer), showing.delete(k));
      oldest.remove();
    }
  }
  const { node } = entry;
  entry.timer = setTimeout(() => {
    showing.delete(key);
    node.classList.add("fade");
    setTimeout(() => node.remove(), 700);
  }, TOAST_MS);
  return node;
}
