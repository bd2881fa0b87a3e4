// The chat panel: one room (rooms.<room>) at a time, fed by the page's RealtimeClient.
//
// - who's here: a presence query (client.presence) after every (re)connection or room
//   change, then presence_join / presence_leave; a reload of another user within the
//   room's leave_delay sends neither, so nobody flickers out of the list;
// - typing: a `typing` client message at most every TYPING_EVERY ms while the text
//   changes; shown for TYPING_SHOWN ms after the last one (or until that user's line);
// - chat lines: `chat` client messages, kept in the room's history (ids, replayed on
//   resume); the server's handler stamps the sender's username and cleans the text.
//
// The room's initial_state ({room, users: {id: username}, recent}) names the users and
// brings the latest lines; it comes on a fresh subscription, not after a resume.

import { $, el, fmt } from "./dom.js";

export const TYPING_EVERY = 1500;
export const TYPING_SHOWN = 3000;
const LINES = 200;

export class ChatRoom {
  /** @param {{onError: (context: string, error: unknown) => void}} options */
  constructor({ onError }) {
    this.onError = onError;
    this.client = null;
    this.channel = null;
    this.me = null; // {id, username}
    /** user id -> username (from initial_state, typing and chat). */
    this.names = new Map();
    /** user id -> {role, connections}: who's here. */
    this.members = new Map();
    /** user id -> {until, timer}: who is typing. */
    this.typing = new Map();
    this.lastTypingSent = 0;
    /** What happened, for the tests: {at, type (presence, join, leave, typing,
     * typing_end), user_id, reason (of a typing_end: expired, line, leave)}. */
    this.log = [];
    this.queries = 0;

    $("chat-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.send();
    });
    $("chat-text").addEventListener("input", () => this.typed());
  }

  /** Show `channel` (or nothing: null) for `client`, signed in as `me`. */
  start(client, channel, me) {
    for (const { timer } of this.typing.values()) clearTimeout(timer);
    this.client = client;
    this.channel = channel;
    this.me = me ? { id: String(me.id), username: me.username } : null;
    this.names = new Map(me ? [[String(me.id), me.username]] : []);
    this.members = new Map();
    this.typing = new Map();
    this.lastTypingSent = 0;
    $("chat-lines").replaceChildren();
    $("chat-channel").textContent = channel ?? "";
    const room = channel ? channel.slice("rooms.".length) : "";
    $("chat-text").placeholder = room ? `message #${room}` : "";
    this.renderMembers();
    this.renderTyping();
  }

  /** Ask who is here (after a (re)connection or a room change): the answer replaces the list. */
  async refresh() {
    const { client, channel } = this;
    if (!client || !channel) return;
    try {
      const data = await client.presence(channel);
      if (client !== this.client || channel !== this.channel) return;
      this.queries += 1;
      this.members = new Map((data?.users ?? []).map((u) => [String(u.user_id), { role: u.role, connections: u.connections }]));
      this.log.push({ at: Date.now(), type: "presence", users: [...this.members.keys()] });
      this.renderMembers();
    } catch (e) {
      if (client === this.client && client.isConnected()) this.onError(`presence ${channel}`, e);
    }
  }

  /** A message of the room's channel. */
  onMessage(message) {
    if (message.channel !== this.channel) return;
    const d = message.data && typeof message.data === "object" ? message.data : {};
    const from = message.from?.user_id == null ? null : String(message.from.user_id);
    switch (message.type) {
      case "initial_state":
        for (const [id, name] of Object.entries(d.users ?? {})) this.names.set(String(id), name);
        $("chat-lines").replaceChildren();
        for (const line of d.recent ?? []) this.addLine(line, null, true);
        this.renderMembers();
        return;
      case "presence_join": {
        const id = String(d.user_id);
        this.log.push({ at: Date.now(), type: "join", user_id: id });
        this.members.set(id, { role: d.role, connections: 1, ...this.members.get(id) });
        this.renderMembers();
        return;
      }
      case "presence_leave": {
        const id = String(d.user_id);
        this.log.push({ at: Date.now(), type: "leave", user_id: id });
        this.members.delete(id);
        this.stopTyping(id, "leave");
        this.renderMembers();
        return;
      }
      case "typing":
        if (from === null || from === this.me?.id) return; // our own, echoed
        this.learn(from, d.username);
        this.startTyping(from);
        return;
      case "chat":
        this.learn(from, d.username);
        this.stopTyping(from, "line");
        this.addLine({ ...d, user_id: from, at: message.timestamp }, message.id, false);
        return;
      default:
    }
  }

  learn(id, username) {
    if (id === null || typeof username !== "string" || this.names.get(id) === username) return;
    this.names.set(id, username);
    this.renderMembers();
  }

  name(id) {
    return this.names.get(id) ?? `user ${id}`;
  }

  // -------------------------------------------------------------- sending

  async send() {
    const input = $("chat-text");
    const text = input.value.trim();
    const { client, channel } = this;
    if (!text || !client || !channel) return;
    input.value = "";
    this.lastTypingSent = 0; // the next keystroke says "typing" again
    $("chat-status").textContent = "";
    try {
      await client.publish(channel, "chat", { text });
    } catch (e) {
      if (!input.value) input.value = text; // not sent: give it back
      $("chat-status").textContent = `not sent: ${e.code ?? "error"}`;
      this.onError(`chat ${channel}`, e);
    }
  }

  /** The text changed: say "typing" at most every TYPING_EVERY ms. */
  typed() {
    const { client, channel } = this;
    const now = Date.now();
    if (!client || !channel || !$("chat-text").value.trim() || now - this.lastTypingSent < TYPING_EVERY) return;
    this.lastTypingSent = now;
    client.publish(channel, "typing", {}).catch((e) => console.warn("typing not sent:", e.code, e.message));
  }

  // -------------------------------------------------------------- rendering

  startTyping(id) {
    const entry = this.typing.get(id);
    if (entry) clearTimeout(entry.timer);
    this.log.push({ at: Date.now(), type: "typing", user_id: id });
    const timer = setTimeout(() => this.stopTyping(id, "expired"), TYPING_SHOWN);
    this.typing.set(id, { until: Date.now() + TYPING_SHOWN, timer });
    this.renderTyping();
  }

  stopTyping(id, reason) {
    const entry = this.typing.get(id);
    if (!entry) return;
    clearTimeout(entry.timer);
    this.typing.delete(id);
    this.log.push({ at: Date.now(), type: "typing_end", user_id: id, reason });
    this.renderTyping();
  }

  renderTyping() {
    const names = [...this.typing.keys()].map((id) => this.name(id)).sort();
    let text = "";
    if (names.length === 1) text = `${names[0]} is typing…`;
    else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
    else if (names.length > 2) text = `${names.length} people are typing…`;
    const node = $("chat-typing");
    node.textContent = text;
    node.dataset.users = names.join(",");
  }

  /** Who's here, sorted by name; items are kept (not rebuilt), so one that stays never blinks. */
  renderMembers() {
    const list = $("chat-who");
    const wanted = [...this.members.keys()].sort((a, b) => this.name(a).localeCompare(this.name(b)));
    const items = new Map([...list.children].map((li) => [li.dataset.userId, li]));
    for (const [id, li] of items) if (!this.members.has(id)) li.remove();
    let previous = null;
    for (const id of wanted) {
      const member = this.members.get(id);
      let li = items.get(id);
      if (!li || !li.isConnected) {
        li = el("li", { "data-testid": "chat-member", dataset: { userId: id } });
      }
      const label = `${this.name(id)}${id === this.me?.id ? " (you)" : ""}`;
      if (li.dataset.label !== label || li.dataset.role !== (member.role ?? "")) {
        li.dataset.label = label;
        li.dataset.username = this.name(id);
        li.dataset.role = member.role ?? "";
        li.replaceChildren(el("span", { class: "dot", "aria-hidden": "true" }), el("span", { class: "who-name" }, label), el("span", { class: "muted small" }, member.role ?? ""));
      }
      const at = previous ? previous.nextElementSibling : list.firstElementChild;
      if (at !== li) list.insertBefore(li, at);
      previous = li;
    }
    $("chat-count").textContent = this.channel ? String(this.members.size) : "";
  }

  addLine(line, id, earlier) {
    const mine = line.user_id != null && String(line.user_id) === this.me?.id;
    const item = el(
      "li",
      {
        class: `${mine ? "mine" : ""}${earlier ? " earlier" : ""}`.trim(),
        "data-testid": "chat-line",
        dataset: { id: id ?? "", userId: line.user_id ?? "", username: line.username ?? "" },
      },
      el("span", { class: "time" }, fmt.time(line.at)),
      el("strong", { class: "from" }, line.username ?? this.name(String(line.user_id))),
      el("span", { class: "text" }, line.text ?? ""),
    );
    const list = $("chat-lines");
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 24;
    list.append(item);
    while (list.children.length > LINES) list.firstElementChild.remove();
    if (atBottom || mine) list.scrollTop = list.scrollHeight;
  }
}
