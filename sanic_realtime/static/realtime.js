// sanic-realtime browser client: an ES module with no dependencies and no build step.
//
//   import { RealtimeClient } from "/ws/client.js";
//   const client = new RealtimeClient("/ws", { channels: ["logs"], filter: { level: "error" } });
//   client.on("log_update", (event) => console.log(event.data));
//   await client.connect();
//
//   // A presence channel with client messages (the server's config says which):
//   await client.subscribe("rooms.a");
//   client.on("presence_join", (m) => console.log(m.data.user_id, "joined"));
//   const { users, count } = await client.presence("rooms.a");
//   await client.publish("rooms.a", "typing", { on: true }); // {id: null}: not kept
//
// The wire protocol is described in docs/protocol.md; this client speaks it over the
// general route ({url_prefix}, e.g. /ws) and subscribes with `subscribe` messages, so the
// server's refusals of a subscription arrive in-band with their code and message.
// Types: {url_prefix}/client.d.ts.

/** Options and their defaults. */
const DEFAULTS = Object.freeze({
  channels: [],
  filter: null,
  token: null,
  reconnect: true,
  minReconnectDelay: 500,
  maxReconnectDelay: 20000,
  maxReconnectAttempts: Infinity,
  pingInterval: 30000,
  pongTimeout: 10000,
  connectTimeout: 10000,
  requestTimeout: 10000,
});

/** The longest delay setTimeout accepts (2**31 - 1 ms); longer ones fire at once. */
const MAX_TIMER_MS = 2147483647;

/** Requests awaiting their reply at most: presence() and publish() refuse one more. */
const MAX_PENDING = 1024;

/**
 * The wire protocol's names, as docs/protocol.md (and the server's
 * sanic_realtime/protocol package) define them: the type of every control message the
 * server sends and of every message a client sends, and the close codes and error codes
 * this client acts on. A test checks them against the server's definitions.
 */
export const PROTOCOL = Object.freeze({
  /** The `type` of each control message (an event's `type` is the one it was published with). */
  serverMessages: Object.freeze({
    CONNECTION_ESTABLISHED: "connection_established",
    SUBSCRIBED: "subscribed",
    UNSUBSCRIBED: "unsubscribed",
    REFRESHED: "refreshed",
    INITIAL_STATE: "initial_state",
    PONG: "pong",
    ERROR: "error",
    MESSAGES_DROPPED: "messages_dropped",
    PRESENCE: "presence",
    PUBLISHED: "published",
    PRESENCE_JOIN: "presence_join",
    PRESENCE_LEAVE: "presence_leave",
  }),
  /** The `type` of each client message. */
  clientMessages: Object.freeze({
    SUBSCRIBE: "subscribe",
    UNSUBSCRIBE: "unsubscribe",
    PING: "ping",
    REFRESH: "refresh",
    PRESENCE: "presence",
    PUBLISH: "publish",
  }),
  /** The close codes this client acts on. */
  closeCodes: Object.freeze({
    /** A normal close: disconnect(), and every socket the client drops. */
    NORMAL: 1000,
    /** A text frame that is not UTF-8: not retried. */
    INVALID_DATA: 1007,
    /** Token expired or access revoked: retried only with a token function. */
    POLICY: 1008,
    /** A message over max_message_size: not retried. */
    TOO_BIG: 1009,
    /** The client's own: it gave up on the connection (heartbeat or connect timeout). */
    HEARTBEAT: 4000,
  }),
  /** The in-band error codes this client acts on. */
  errorCodes: Object.freeze({
    /** Unsolicited (not the reply to a request): dispatched to on("error"). */
    INITIAL_STATE_FAILED: "initial_state_failed",
    /** A subscription the server could not set up: the attempt is retried. */
    BACKPLANE_UNAVAILABLE: "backplane_unavailable",
  }),
});

const MSG = PROTOCOL.serverMessages;
const SEND = PROTOCOL.clientMessages;
const CLOSE = PROTOCOL.closeCodes;
const ERR = PROTOCOL.errorCodes;

/** The reply to each request this client sends; an `error` may answer any of them. */
const REPLY = Object.freeze({
  [SEND.SUBSCRIBE]: MSG.SUBSCRIBED,
  [SEND.UNSUBSCRIBE]: MSG.UNSUBSCRIBED,
  [SEND.PRESENCE]: MSG.PRESENCE,
  [SEND.PUBLISH]: MSG.PUBLISHED,
});

/** Requests whose promise resolves with the reply's data and rejects on any failure. */
const ASKS = new Set([SEND.PRESENCE, SEND.PUBLISH]);

/** Close codes after which reconnecting cannot help (1008 only with a fixed token). */
const FATAL_CLOSE = new Set([CLOSE.INVALID_DATA, CLOSE.POLICY, CLOSE.TOO_BIG]);

/** Our close code for a connection we gave up on (heartbeat or connect timeout). */
const CLOSE_TIMEOUT = CLOSE.HEARTBEAT;

/**
 * An error of the client or of the server, with a machine-readable `code`.
 *
 * Server codes are those of docs/protocol.md (e.g. `unknown_channel`, `forbidden`).
 * The client's own codes: `connection_failed`, `connection_closed`, `closed_1007`,
 * `closed_1008`, `closed_1009`, `connect_timeout`, `heartbeat_timeout`, `token_failed`,
 * `invalid_token`, `not_general_route`, `gave_up`, `disconnected`, and for presence()
 * and publish(): `not_connected`, `too_many_requests`, `request_timeout`,
 * `connection_lost`.
 */
export class RealtimeError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {{closeCode?: number|null, closeReason?: string|null, cause?: unknown}} [details]
   */
  constructor(code, message, details = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = "RealtimeError";
    /** @type {string} */
    this.code = code;
    /** The WebSocket close code behind this error, if any. @type {number|null} */
    this.closeCode = details.closeCode ?? null;
    /** The WebSocket close reason behind this error, if any. @type {string|null} */
    this.closeReason = details.closeReason ?? null;
  }
}

/**
 * A client of a sanic-realtime server: one WebSocket to the general route, with its
 * subscriptions re-sent (and resumed with `since`) after every reconnection.
 */
export class RealtimeClient {
  /**
   * @param {string} url The general route, e.g. "wss://host/ws", or relative ("/ws") in a
   *   page (resolved against location; http becomes ws, https becomes wss).
   * @param {object} [options] See client.d.ts (RealtimeClientOptions) for each option.
   */
  constructor(url, options = {}) {
    if (options === null || typeof options !== "object") {
      throw new TypeError("RealtimeClient: options must be an object");
    }
    for (const key of Object.keys(options)) {
      if (!(key in DEFAULTS)) {
        throw new TypeError(
          `RealtimeClient: unknown option '${key}' (known: ${Object.keys(DEFAULTS).join(", ")})`,
        );
      }
    }
    const o = { ...DEFAULTS };
    for (const [key, value] of Object.entries(options)) {
      if (value !== undefined) o[key] = value;
    }
    for (const key of [
      "minReconnectDelay",
      "maxReconnectDelay",
      "pingInterval",
      "pongTimeout",
      "connectTimeout",
      "requestTimeout",
    ]) {
      if (typeof o[key] !== "number" || !(o[key] >= 0)) {
        throw new TypeError(`RealtimeClient: ${key} must be a number >= 0 (milliseconds)`);
      }
    }
    const attempts = o.maxReconnectAttempts;
    if (attempts !== Infinity && !(Number.isInteger(attempts) && attempts >= 0)) {
      throw new TypeError(
        "RealtimeClient: maxReconnectAttempts must be an integer >= 0 or Infinity",
      );
    }
    if (o.token !== null && typeof o.token !== "string" && typeof o.token !== "function") {
      throw new TypeError("RealtimeClient: token must be a string or a function returning one");
    }
    /** The resolved ws:// or wss:// URL. @type {string} */
    this.url = resolveUrl(url);
    this._options = o;

    /** channel -> filter, in subscription order: what is re-sent on every connect. */
    this._subscriptions = new Map();
    const filter = checkFilter(o.filter);
    for (const channel of checkChannels(o.channels, "channels", true)) {
      this._subscriptions.set(channel, filter);
    }

    /** @type {Map<string, Set<Function>>} */
    this._handlers = new Map();
    /** @type {Set<Function>} */
    this._statusListeners = new Set();
    /** Promises of connect() waiting for "connected". */
    this._waiters = [];
    /**
     * Requests awaiting their reply, by the `ref` each was sent with (oldest first). The
     * server echoes the ref on the reply; it may answer out of order (a publish waits
     * for the channel's message handler, the requests sent after it do not).
     */
    this._pending = new Map();
    this._refs = 0; // refs given so far: the next is `r${this._refs + 1}`

    this._state = "disconnected";
    this._attempt = 0; // failed attempts in a row
    this._retry = 0; // retries scheduled since the last successful connection
    this._clientId = null;
    this._userId = null;
    this._roles = [];
    this._expiresAt = null;
    this._lastError = null;
    this._closeCode = null;
    this._closeReason = null;
    this._nextRetryMs = null;
    this._lastIds = new Map(); // channel -> id of the newest event received
    this._recovered = {}; // channel -> recovered, for this connection's resumes
    this._latest = new Map(); // channel -> newest event or initial_state

    this._ws = null; // the current socket (null between attempts)
    this._established = false; // connection_established received on this._ws
    this._live = false; // this._ws reached "connected"
    this._everConnected = false; // connected at least once since connect() started
    this._batch = 0; // subscriptions of the connect still unanswered
    this._batchError = null; // the first refusal among them
    this._generation = 0; // bumped when an attempt is abandoned, to ignore its late callbacks
    this._connectTimer = null;
    this._retryTimer = null;
    this._pingTimer = null;
    this._pongTimer = null;
  }

  // ----------------------------------------------------------------- public API

  /**
   * Connect (the first attempt at once), subscribe to the recorded channels and resume
   * them. Resolves with the status once connected and the subscriptions confirmed;
   * rejects with a RealtimeError if the client ends up "failed" first, or if
   * disconnect() is called first. While already connecting, returns a promise for the
   * same outcome; once connected, resolves at once.
   * @returns {Promise<object>}
   */
  connect() {
    if (this._state === "connected") return Promise.resolve(this.getConnectionStatus());
    const promise = new Promise((resolve, reject) => this._waiters.push({ resolve, reject }));
    if (this._state === "disconnected" || this._state === "failed") {
      this._attempt = 0;
      this._retry = 0;
      this._everConnected = false;
      this._setState("connecting");
      this._open();
    }
    return promise;
  }

  /**
   * Close the connection (code 1000) and stop: no reconnection, no timer left. State
   * "disconnected". The subscriptions and last event ids are kept: a later connect()
   * re-subscribes and resumes. A pending connect() rejects (code "disconnected").
   */
  disconnect() {
    this._generation++;
    this._clearTimer("_retryTimer");
    this._stopSocketTimers();
    this._nextRetryMs = null;
    if (this._ws !== null) {
      this._dropSocket(CLOSE.NORMAL, "");
      this._closeCode = CLOSE.NORMAL;
      this._closeReason = "";
    }
    this._settlePending(true);
    // Taken before the listeners run: a listener may call connect() again.
    const waiters = this._waiters.splice(0);
    this._setState("disconnected");
    const error = new RealtimeError(
      "disconnected",
      "disconnect() was called before the client connected",
    );
    for (const { reject } of waiters) reject(error);
  }

  /**
   * Subscribe to `channels` with `filter`. Recorded, so it is re-sent on every
   * reconnection. Connected: resolves with the `subscribed` message's data
   * (`{channels, positions}`), or rejects with a RealtimeError carrying the server's
   * code and message (and the subscription is not recorded). Not connected: only
   * recorded; resolves null, and the subscription is made at the next connect.
   * Subscribing to a channel again replaces its filter.
   * @param {string|string[]} channels Channel names; "all" = every channel the client may see.
   * @param {Record<string, unknown>|null} [filter]
   * @returns {Promise<{channels: string[], positions?: Record<string, string>}|null>}
   */
  subscribe(channels, filter = null) {
    const names = checkChannels(channels, "subscribe(channels)", false);
    const clean = checkFilter(filter);
    const previous = names.map((name) => [name, this._subscriptions.get(name)]);
    for (const name of names) {
      this._subscriptions.delete(name); // re-insert: the newest subscription goes last
      this._subscriptions.set(name, clean);
    }
    if (!this._established) return Promise.resolve(null);
    return new Promise((resolve, reject) => {
      const message = { type: SEND.SUBSCRIBE, channels: names, positions: true };
      if (!isEmpty(clean)) message.filter = clean;
      this._request(message, {
        kind: SEND.SUBSCRIBE,
        names,
        filter: clean,
        previous,
        since: {},
        batch: false,
        resolve,
        reject,
      });
    });
  }

  /**
   * Unsubscribe from `channels` ("all": every one) and forget them: they are not
   * re-sent on reconnection, and their last event ids are dropped. Connected: resolves
   * with the `unsubscribed` data (`{channels}`: those removed) or rejects with the
   * server's error. Not connected: resolves null.
   * @param {string|string[]} channels
   * @returns {Promise<{channels: string[]}|null>}
   */
  unsubscribe(channels) {
    const names = checkChannels(channels, "unsubscribe(channels)", false);
    const removed = names.includes("all") ? [...this._subscriptions.keys()] : names;
    const previous = removed.map((name) => [name, this._subscriptions.get(name)]);
    for (const name of removed) this._subscriptions.delete(name);
    if (!this._established) {
      for (const name of removed) this._forget(name);
      return Promise.resolve(null);
    }
    return new Promise((resolve, reject) => {
      this._request(
        { type: SEND.UNSUBSCRIBE, channels: names },
        {
          kind: SEND.UNSUBSCRIBE,
          names: removed,
          previous,
          resolve,
          reject,
        },
      );
    });
  }

  /**
   * Who is subscribed to `channel`, a presence channel this client is subscribed to (or
   * any, for an admin). Resolves with the `presence` reply's data: `{users, count,
   * anonymous}` (`users`: `[{user_id, role, connections, since}]`, or null when the
   * channel does not list them; `truncated: true` when it holds only the first of
   * `count`). Rejects with a RealtimeError: the server's code (`forbidden`: not
   * subscribed; `no_presence`; `unknown_channel`...), or the client's: `not_connected`,
   * `request_timeout` (no reply within requestTimeout), `too_many_requests`,
   * `connection_lost` / `disconnected` (the connection ended first).
   * @param {string} channel
   * @returns {Promise<{users: object[]|null, count: number, anonymous: number, truncated?: true}>}
   */
  presence(channel) {
    const name = checkChannel(channel, "presence(channel)");
    return this._ask({ type: SEND.PRESENCE, channel: name }, `presence('${name}')`);
  }

  /**
   * Send a client message: an event of type `event` to the subscribers of `channel`,
   * which this client must be subscribed to and whose `client_messages` take `event`.
   * The server stamps it with `from` (the sender's user_id and client_id); the sender
   * does not get it back unless the channel has `echo: true`. Resolves with the
   * `published` reply's data: `{id: "epoch:n"}` for a type kept in history, `{id: null}`
   * for an ephemeral one, `{id: null, dropped: true}` when the channel's message handler
   * dropped it (nobody got it). Rejects with a RealtimeError: the server's code
   * (`forbidden`, `unknown_type`, `message_too_large`, `rate_limited`, `busy`,
   * `handler_failed`, `handler_timeout`, `invalid_message`, or a handler's own), or the
   * client's, as presence() does; after `request_timeout`, `connection_lost` or
   * `disconnected` whether the message went out is unknown (it is not sent again).
   * @param {string} channel
   * @param {string} event
   * @param {unknown} [data] any JSON (default null)
   * @returns {Promise<{id: string|null, dropped?: true}>}
   */
  publish(channel, event, data = null) {
    const name = checkChannel(channel, "publish(channel)");
    if (typeof event !== "string" || event === "")
      throw new TypeError("publish(channel, event): event must be a non-empty string");
    return this._ask(
      { type: SEND.PUBLISH, channel: name, event, data },
      `publish('${event}' to '${name}')`,
    );
  }

  /**
   * Call `handler(message)` for each message of `type`, or of every type with "*":
   * events (client messages among them, with `from`), `initial_state`,
   * `messages_dropped`, `presence_join`, `presence_leave`, the server's unsolicited
   * `error` and `unsubscribed`, and the client's `resume_failed`. A handler that throws
   * is logged with console.error; the others still run.
   * @param {string} type
   * @param {(message: object) => void} handler
   * @returns {() => void} removes the handler
   */
  on(type, handler) {
    if (typeof type !== "string" || type === "")
      throw new TypeError("on(type): type must be a non-empty string");
    if (typeof handler !== "function")
      throw new TypeError("on(type, handler): handler must be a function");
    let set = this._handlers.get(type);
    if (set === undefined) this._handlers.set(type, (set = new Set()));
    set.add(handler);
    return () => {
      set.delete(handler);
    };
  }

  /**
   * Call `listener(status)` with a fresh status snapshot on every change of `state`, and
   * on each retry scheduled while "reconnecting" (`attempt` and `nextRetryMs` change).
   * @param {(status: object) => void} listener
   * @returns {() => void} removes the listener
   */
  onConnectionChange(listener) {
    if (typeof listener !== "function")
      throw new TypeError("onConnectionChange(listener): listener must be a function");
    this._statusListeners.add(listener);
    return () => {
      this._statusListeners.delete(listener);
    };
  }

  /** @returns {boolean} whether the state is "connected" */
  isConnected() {
    return this._state === "connected";
  }

  /**
   * A snapshot of the connection's state (a new object each call).
   * @returns {object} see ConnectionStatus in client.d.ts
   */
  getConnectionStatus() {
    return {
      state: this._state,
      attempt: this._retry, // the retry waited for or made (1: the first); 0 when connected
      clientId: this._clientId,
      userId: this._userId,
      roles: [...this._roles],
      expiresAt: this._expiresAt,
      lastError: this._lastError,
      closeCode: this._closeCode,
      closeReason: this._closeReason,
      nextRetryMs: this._nextRetryMs,
      lastIds: Object.fromEntries(this._lastIds),
      recovered: { ...this._recovered },
    };
  }

  /**
   * The newest event or `initial_state` received for `channel`, or null.
   * @param {string} channel
   * @returns {object|null}
   */
  latest(channel) {
    return this._latest.get(channel) ?? null;
  }

  // ------------------------------------------------------------ connecting

  /** One connection attempt: token, socket, then _onMessage / _onClose take over. */
  async _open() {
    const generation = ++this._generation;
    const o = this._options;
    // Covers the token, the handshake, connection_established and the replies to the
    // subscriptions: everything up to "connected".
    this._setTimer("_connectTimer", o.connectTimeout, () => {
      const what = this._established
        ? "the server did not answer the subscriptions"
        : `no connection_established from ${this.url}`;
      this._dropSocket(CLOSE_TIMEOUT, "connect timeout");
      this._socketGone(
        new RealtimeError("connect_timeout", `${what} within ${o.connectTimeout} ms`),
        false,
      );
    });
    let token = null;
    try {
      token = typeof o.token === "function" ? await o.token() : o.token;
    } catch (error) {
      if (generation !== this._generation) return;
      this._clearTimer("_connectTimer");
      this._socketGone(
        new RealtimeError("token_failed", `the token function failed: ${describe(error)}`, {
          cause: error,
        }),
        false,
      );
      return;
    }
    if (generation !== this._generation) return; // disconnect() or a timeout meanwhile
    if (token !== null && token !== undefined && typeof token !== "string") {
      this._clearTimer("_connectTimer");
      this._fail(
        new RealtimeError(
          "invalid_token",
          `the token function returned ${typeof token}, not a string`,
        ),
      );
      return;
    }
    let ws;
    try {
      // The token travels as the subprotocol pair ["bearer", token], never in the URL.
      ws = token ? new WebSocket(this.url, ["bearer", token]) : new WebSocket(this.url);
    } catch (error) {
      this._clearTimer("_connectTimer");
      this._fail(
        new RealtimeError(
          token ? "invalid_token" : "connection_failed",
          `cannot open a WebSocket to ${this.url}${token ? " with this token as a subprotocol" : ""}: ${describe(error)}`,
          { cause: error },
        ),
      );
      return;
    }
    this._ws = ws;
    this._established = false;
    this._live = false;
    ws.onmessage = (event) => this._onMessage(ws, event);
    ws.onclose = (event) => this._onClose(ws, event);
  }

  /** connection_established: check the route, then (re)subscribe with `since`. */
  _onEstablished(message) {
    const data = isObject(message.data) ? message.data : {};
    if (Array.isArray(data.channels) && data.channels.length > 0) {
      this._clearTimer("_connectTimer");
      this._dropSocket(CLOSE.NORMAL, "");
      if (this._subscriptions.size > 0) {
        this._fail(
          new RealtimeError("not_general_route", channelRouteAdvice(this.url, data.channels)),
        );
        return;
      }
      // A URL that subscribes by itself (a channel URL, ?channels=): from now on the
      // general route with those channels and filters, so that reconnections resume.
      const plan = planFromUrl(this.url, data.channels);
      this.url = plan.url;
      for (const channel of data.channels) this._subscriptions.set(channel, plan.filter);
      for (const [channel, id] of Object.entries(plan.since)) this._lastIds.set(channel, id);
      this._open();
      return;
    }
    this._established = true;
    this._clientId = data.client_id ?? null;
    this._userId = data.user_id ?? null;
    this._roles = Array.isArray(data.roles) ? data.roles : [];
    this._expiresAt = data.expires_at ?? null;
    this._recovered = {};
    this._startHeartbeat();
    const groups = this._groups();
    this._batch = groups.length;
    this._batchError = null;
    for (const { channels, filter } of groups) {
      const since = {};
      for (const channel of channels) {
        const id = this._lastIds.get(channel);
        if (id !== undefined) since[channel] = id;
      }
      const message = { type: SEND.SUBSCRIBE, channels, positions: true };
      if (!isEmpty(filter)) message.filter = filter;
      if (!isEmpty(since)) message.since = since;
      this._request(message, {
        kind: SEND.SUBSCRIBE,
        names: channels,
        filter,
        previous: [],
        since,
        batch: true,
      });
    }
    if (this._batch === 0) this._connected();
  }

  /** The recorded subscriptions, one group per distinct filter, in order. */
  _groups() {
    const groups = new Map();
    for (const [channel, filter] of this._subscriptions) {
      const key = stableJson(filter);
      let group = groups.get(key);
      if (group === undefined) groups.set(key, (group = { channels: [], filter }));
      group.channels.push(channel);
    }
    return [...groups.values()];
  }

  /** One reply to the subscriptions sent at connect time. */
  _batchReply(request, error) {
    if (error !== null) {
      if (error.code === ERR.BACKPLANE_UNAVAILABLE) {
        // Transient (the server could not set the subscription up): try again later,
        // keeping the subscription.
        this._dropSocket(CLOSE.NORMAL, "");
        this._socketGone(error, false);
        return;
      }
      // Refused for good (unknown channel, filter, role...): not re-sent again.
      for (const name of request.names) {
        this._subscriptions.delete(name);
        this._forget(name);
      }
      if (this._batchError === null) this._batchError = error;
      this._lastError = error;
      if (this._everConnected) {
        const ws = this._ws;
        this._dispatch(refusal(error, request));
        if (this._ws !== ws) return; // a handler called disconnect()
      }
    }
    if (--this._batch > 0) return;
    if (this._batchError !== null && !this._everConnected) {
      this._dropSocket(CLOSE.NORMAL, "");
      this._fail(this._batchError);
      return;
    }
    this._connected();
  }

  _connected() {
    this._clearTimer("_connectTimer");
    this._live = true;
    this._everConnected = true;
    this._attempt = 0;
    this._retry = 0;
    this._nextRetryMs = null;
    const waiters = this._waiters.splice(0);
    this._setState("connected");
    const status = this.getConnectionStatus();
    for (const { resolve } of waiters) resolve(status);
  }

  // ------------------------------------------------------------ messages

  _onMessage(ws, event) {
    if (ws !== this._ws) return;
    this._clearTimer("_pongTimer"); // any message proves the connection alive
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      console.warn("sanic-realtime: ignored a message that is not JSON:", event.data);
      return;
    }
    if (!isObject(message) || typeof message.type !== "string") {
      console.warn("sanic-realtime: ignored a message without a type:", message);
      return;
    }
    if (!this._established) {
      if (message.type === MSG.CONNECTION_ESTABLISHED) this._onEstablished(message);
      else
        console.warn("sanic-realtime: ignored a message before connection_established:", message);
      return;
    }
    const data = isObject(message.data) ? message.data : {};
    switch (message.type) {
      case MSG.PONG:
        return;
      case MSG.SUBSCRIBED:
      case MSG.PRESENCE:
      case MSG.PUBLISHED:
        this._reply(message);
        return;
      case MSG.UNSUBSCRIBED:
        if (data.reason !== undefined && data.reason !== null) {
          // The server removed channels by itself (after a refresh): not a reply.
          for (const name of Array.isArray(data.channels) ? data.channels : []) {
            this._subscriptions.delete(name);
            this._forget(name);
          }
          this._dispatch(message);
        } else {
          this._reply(message);
        }
        return;
      case MSG.ERROR:
        // Without a ref it answers no request: initial_state_failed, say.
        if (data.code === ERR.INITIAL_STATE_FAILED || typeof message.ref !== "string")
          this._dispatch(message);
        else this._reply(message);
        return;
      case MSG.PRESENCE_JOIN:
      case MSG.PRESENCE_LEAVE:
        this._dispatch(message);
        return;
      case MSG.CONNECTION_ESTABLISHED:
        console.warn("sanic-realtime: ignored a second connection_established:", message);
        return;
      default:
        if (typeof message.channel === "string") {
          // An event; `id: null`: a client message of a type the channel does not keep
          // in history. It is no resume point (nor the channel's latest).
          if (typeof message.id === "string") {
            this._lastIds.set(message.channel, message.id);
            this._latest.set(message.channel, message);
          } else if (message.type === MSG.INITIAL_STATE) {
            this._latest.set(message.channel, message);
          }
        }
        this._dispatch(message);
    }
  }

  /** Match a reply (or an error with a ref) with its request, by the ref it echoes. */
  _reply(message) {
    const ref = message.ref;
    const request = typeof ref === "string" ? this._pending.get(ref) : undefined;
    if (request === undefined) {
      // A ref no request has: the answer to a presence() or publish() that timed out
      // (its promise has rejected). No ref at all: the answer to nothing this client sent.
      if (typeof ref !== "string" || !isOurRef(ref, this._refs)) {
        console.warn("sanic-realtime: a reply that matches no request:", message);
      }
      return;
    }
    if (message.type !== MSG.ERROR && message.type !== REPLY[request.kind]) {
      console.warn(`sanic-realtime: a ${message.type} reply to a ${request.kind}:`, message);
      return;
    }
    this._pending.delete(ref);
    const data = isObject(message.data) ? message.data : {};
    if (ASKS.has(request.kind)) {
      clearTimeout(request.timer);
      if (message.type !== MSG.ERROR) request.resolve(data);
      else
        request.reject(new RealtimeError(String(data.code ?? "error"), String(data.message ?? "")));
      return;
    }
    if (message.type === MSG.ERROR) {
      const error = new RealtimeError(String(data.code ?? "error"), String(data.message ?? ""));
      if (request.batch) {
        this._batchReply(request, error);
        return;
      }
      // The server changed nothing: undo what the request recorded.
      if (request.kind === SEND.SUBSCRIBE) {
        for (const name of request.names) this._subscriptions.delete(name);
      }
      for (const [name, filter] of request.previous) {
        if (filter !== undefined) this._subscriptions.set(name, filter);
      }
      request.reject(error);
      return;
    }
    if (request.kind === SEND.UNSUBSCRIBE) {
      for (const name of request.names) this._forget(name);
      request.resolve(data);
      return;
    }
    // subscribed: "all" becomes the channels it stood for.
    const channels = Array.isArray(data.channels) ? data.channels : [];
    if (request.names.includes("all") && this._subscriptions.has("all")) {
      this._subscriptions.delete("all");
      for (const name of channels) {
        this._subscriptions.delete(name);
        this._subscriptions.set(name, request.filter);
      }
    }
    const failed = [];
    if (isObject(data.recovered)) {
      for (const [channel, recovered] of Object.entries(data.recovered)) {
        this._recovered[channel] = recovered;
        if (recovered === false) failed.push(channel);
      }
    }
    // Positions (asked for with every subscribe): where each channel stood when the
    // subscription began. It is the resume point until an event of the channel arrives,
    // so a channel that had no event yet still resumes without loss; and it replaces an
    // id the server could not resume from, so the next reconnection can resume again.
    if (isObject(data.positions)) {
      for (const [channel, position] of Object.entries(data.positions)) {
        if (typeof position !== "string") continue;
        if (!this._lastIds.has(channel) || failed.includes(channel)) {
          this._lastIds.set(channel, position);
        }
      }
    }
    const ws = this._ws;
    for (const channel of failed) {
      // The server could not replay the gap: say so (the app should reload its state).
      const since = request.since[channel] ?? null;
      this._dispatch({ type: "resume_failed", channel, data: { channel, since } });
    }
    if (!request.batch) request.resolve(data);
    else if (this._ws === ws) this._batchReply(request, null); // unless a handler disconnected
  }

  _dispatch(message) {
    for (const type of [message.type, "*"]) {
      const set = this._handlers.get(type);
      if (set === undefined) continue;
      for (const handler of [...set]) {
        try {
          handler(message);
        } catch (error) {
          console.error(`sanic-realtime: a '${type}' handler threw:`, error);
        }
      }
    }
  }

  /** Send a request with a new ref, and record it to await its reply. Returns the ref. */
  _request(message, request) {
    const ref = `r${++this._refs}`;
    this._pending.set(ref, request);
    this._send({ ...message, ref });
    return ref;
  }

  /**
   * presence() and publish(): a request whose promise resolves with the reply's data, and
   * rejects with the server's error, after requestTimeout, or when the connection ends.
   */
  _ask(message, what) {
    if (!this._live) {
      return Promise.reject(
        new RealtimeError(
          "not_connected",
          `${what}: the client is ${this._state}; call it once connected`,
        ),
      );
    }
    if (this._pending.size >= MAX_PENDING) {
      return Promise.reject(
        new RealtimeError(
          "too_many_requests",
          `${what}: ${this._pending.size} requests already await their reply (at most ${MAX_PENDING})`,
        ),
      );
    }
    try {
      JSON.stringify(message); // here, rather than in the socket's send: throws TypeError
    } catch (error) {
      throw new TypeError(`${what}: data must be JSON-serializable (${describe(error)})`);
    }
    return new Promise((resolve, reject) => {
      const request = { kind: message.type, what, resolve, reject, timer: null };
      const ref = this._request(message, request);
      const ms = this._options.requestTimeout;
      if (!(ms > 0 && ms <= MAX_TIMER_MS)) return; // 0 or Infinity: no limit
      request.timer = setTimeout(() => {
        if (this._pending.get(ref) !== request) return;
        this._pending.delete(ref);
        const unknown = request.kind === SEND.PUBLISH ? "; whether it was sent is unknown" : "";
        reject(
          new RealtimeError(
            "request_timeout",
            `${what}: no reply within ${ms} ms (requestTimeout)${unknown}`,
          ),
        );
      }, ms);
    });
  }

  _send(message) {
    const ws = this._ws;
    if (ws !== null && ws.readyState === 1 /* OPEN */) ws.send(JSON.stringify(message));
  }

  /** Forget an unsubscribed channel's resume point. */
  _forget(channel) {
    this._lastIds.delete(channel);
    delete this._recovered[channel];
  }

  // ------------------------------------------------------------ heartbeat

  _startHeartbeat() {
    const o = this._options;
    if (!(o.pingInterval > 0 && o.pingInterval <= MAX_TIMER_MS)) return;
    this._pingTimer = setInterval(() => {
      this._send({ type: SEND.PING });
      if (this._pongTimer === null) {
        this._setTimer("_pongTimer", o.pongTimeout, () => this._heartbeatTimeout());
      }
    }, o.pingInterval);
  }

  _heartbeatTimeout() {
    const wasLive = this._live;
    this._dropSocket(CLOSE_TIMEOUT, "heartbeat timeout");
    this._closeCode = CLOSE_TIMEOUT;
    this._closeReason = "heartbeat timeout";
    this._socketGone(
      new RealtimeError(
        "heartbeat_timeout",
        `no message from the server within ${this._options.pongTimeout} ms of a ping: ` +
          `closed the connection (${CLOSE_TIMEOUT}) to reconnect`,
        { closeCode: CLOSE_TIMEOUT, closeReason: "heartbeat timeout" },
      ),
      wasLive,
    );
  }

  // ------------------------------------------------------------ losing the socket

  _onClose(ws, event) {
    if (ws !== this._ws) return;
    const wasLive = this._live;
    const established = this._established;
    this._ws = null;
    this._established = false;
    this._live = false;
    this._stopSocketTimers();
    this._closeCode = event.code;
    this._closeReason = event.reason;
    const code = event.code;
    const shown = `${code}${event.reason ? ` (${event.reason})` : ""}`;
    const details = { closeCode: code, closeReason: event.reason };
    if (
      FATAL_CLOSE.has(code) &&
      !(code === CLOSE.POLICY && typeof this._options.token === "function")
    ) {
      const advice =
        code === CLOSE.POLICY
          ? "; pass token as a function to get a new token on each reconnection"
          : "";
      this._fail(
        new RealtimeError(
          `closed_${code}`,
          `the server closed the connection with ${shown}: not reconnecting${advice}`,
          details,
        ),
      );
      return;
    }
    if (established) {
      this._socketGone(
        new RealtimeError(
          "connection_closed",
          `the server closed the connection with ${shown}`,
          details,
        ),
        wasLive,
      );
    } else {
      this._socketGone(
        new RealtimeError(
          "connection_failed",
          `could not connect to ${this.url}: closed with ${shown} before connection_established. ` +
            "A handshake the server refused with an HTTP status (401 token, 403 origin or role, " +
            "404 route or channel, 429, 503) also looks like this in a browser: the Python client " +
            "or CLI shows the status",
          details,
        ),
        false,
      );
    }
  }

  /**
   * The socket is gone (closed, or dropped by us). `wasLive`: it had reached
   * "connected", so this is a lost connection rather than a failed attempt.
   */
  _socketGone(error, wasLive) {
    this._ws = null;
    this._established = false;
    this._live = false;
    this._generation++;
    this._stopSocketTimers();
    this._settlePending();
    this._lastError = error;
    if (!wasLive) this._attempt++;
    if (!this._options.reconnect) {
      this._fail(error);
      return;
    }
    // maxReconnectAttempts counts retries: after a lost connection, or after the first
    // attempt of connect().
    const retries = this._retry;
    if (retries >= this._options.maxReconnectAttempts) {
      const what = this._everConnected ? "reconnection" : "connection";
      const n = this._attempt;
      this._fail(
        new RealtimeError(
          "gave_up",
          `gave up after ${n} failed ${what} attempt${n === 1 ? "" : "s"} in a row ` +
            `(maxReconnectAttempts: ${this._options.maxReconnectAttempts}); the last: ${error.message}`,
          { closeCode: error.closeCode, closeReason: error.closeReason, cause: error },
        ),
      );
      return;
    }
    this._scheduleRetry();
    this._setState("reconnecting", true); // each retry is reported: attempt, nextRetryMs
  }

  /** Full jitter: the k-th retry in a row waits random(0, min(max, min * 2**(k-1))). */
  _scheduleRetry() {
    const o = this._options;
    this._retry++;
    const cap = Math.min(o.maxReconnectDelay, o.minReconnectDelay * 2 ** (this._retry - 1));
    const delay = Math.round(Math.random() * cap);
    this._nextRetryMs = delay;
    this._retryTimer = setTimeout(
      () => {
        this._retryTimer = null;
        this._nextRetryMs = null;
        this._open();
      },
      Math.min(delay, MAX_TIMER_MS),
    );
  }

  /** Give up: state "failed", connect() rejects with `error`. */
  _fail(error) {
    this._generation++;
    if (this._ws !== null) this._dropSocket(CLOSE.NORMAL, "");
    this._clearTimer("_retryTimer");
    this._stopSocketTimers();
    this._settlePending();
    this._nextRetryMs = null;
    this._lastError = error;
    const waiters = this._waiters.splice(0);
    this._setState("failed");
    for (const { reject } of waiters) reject(error);
  }

  /** Detach from the current socket and close it; its events are no longer heard. */
  _dropSocket(code, reason) {
    const ws = this._ws;
    this._ws = null;
    this._established = false;
    this._live = false;
    this._stopSocketTimers();
    if (ws === null) return;
    ws.onmessage = null;
    ws.onclose = null;
    try {
      ws.close(code, reason);
    } catch (error) {
      console.warn("sanic-realtime: closing the socket failed:", error);
    }
  }

  /**
   * Requests without a reply when the connection ends. Subscriptions stay recorded (made
   * at the next connect), so their promises resolve null; presence() and publish()
   * reject: `disconnected` after disconnect() (`byDisconnect`), else `connection_lost`.
   */
  _settlePending(byDisconnect = false) {
    const pending = [...this._pending.values()];
    this._pending.clear();
    this._batch = 0;
    for (const request of pending) {
      if (ASKS.has(request.kind)) {
        clearTimeout(request.timer);
        const unknown = request.kind === SEND.PUBLISH ? "; whether it was sent is unknown" : "";
        request.reject(
          byDisconnect
            ? new RealtimeError(
                "disconnected",
                `${request.what}: disconnect() was called before its reply${unknown}`,
              )
            : new RealtimeError(
                "connection_lost",
                `${request.what}: the connection ended before its reply${unknown}`,
              ),
        );
        continue;
      }
      if (request.kind === SEND.UNSUBSCRIBE) {
        for (const name of request.names) this._forget(name);
      }
      if (request.resolve) request.resolve(null);
    }
  }

  // ------------------------------------------------------------ state and timers

  /** Set the state; listeners hear of a change (or of every call, with `always`). */
  _setState(state, always = false) {
    if (state === this._state && !always) return;
    this._state = state;
    const status = this.getConnectionStatus();
    for (const listener of [...this._statusListeners]) {
      try {
        listener(status);
      } catch (error) {
        console.error("sanic-realtime: a connection listener threw:", error);
      }
    }
  }

  _setTimer(name, ms, callback) {
    this._clearTimer(name);
    if (!(ms > 0 && ms <= MAX_TIMER_MS)) return; // 0 or Infinity: no limit
    this[name] = setTimeout(() => {
      this[name] = null;
      callback();
    }, ms);
  }

  _clearTimer(name) {
    if (this[name] !== null) {
      clearTimeout(this[name]);
      this[name] = null;
    }
  }

  _stopSocketTimers() {
    this._clearTimer("_connectTimer");
    this._clearTimer("_pongTimer");
    if (this._pingTimer !== null) {
      clearInterval(this._pingTimer);
      this._pingTimer = null;
    }
  }
}

export default RealtimeClient;

// ---------------------------------------------------------------- helpers

/** Resolve `url` against the page, and turn http(s) into ws(s). */
function resolveUrl(url) {
  if (typeof url !== "string" && !(url instanceof URL)) {
    throw new TypeError("RealtimeClient: url must be a string or a URL");
  }
  const base = typeof location !== "undefined" ? location.href : undefined;
  let resolved;
  try {
    resolved = new URL(url, base);
  } catch {
    throw new TypeError(`RealtimeClient: not a valid URL: ${url}`);
  }
  if (resolved.protocol === "http:") resolved.protocol = "ws:";
  else if (resolved.protocol === "https:") resolved.protocol = "wss:";
  if (resolved.protocol !== "ws:" && resolved.protocol !== "wss:") {
    throw new TypeError(
      `RealtimeClient: the URL must be ws:, wss:, http: or https:, got ${resolved.protocol}`,
    );
  }
  resolved.hash = "";
  return resolved.href;
}

function checkChannels(channels, what, emptyOk) {
  const list = typeof channels === "string" ? [channels] : channels;
  if (!Array.isArray(list) || !list.every((c) => typeof c === "string" && c !== "")) {
    throw new TypeError(`${what} must be a channel name or a list of them`);
  }
  if (!emptyOk && list.length === 0) throw new TypeError(`${what} needs at least one channel`);
  return [...new Set(list)];
}

function checkChannel(channel, what) {
  if (typeof channel !== "string" || channel === "") {
    throw new TypeError(`${what} must be a channel name`);
  }
  return channel;
}

/** Whether `ref` is one this client gave (r1 .. r<refs>). */
function isOurRef(ref, refs) {
  const match = /^r([0-9]+)$/.exec(ref);
  return match !== null && Number(match[1]) >= 1 && Number(match[1]) <= refs;
}

function checkFilter(filter) {
  if (filter === null || filter === undefined) return {};
  if (!isObject(filter)) throw new TypeError("a filter must be an object: {name: value}");
  return { ...filter };
}

function isObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function isEmpty(object) {
  return Object.keys(object).length === 0;
}

/** JSON with sorted keys: equal filters give equal text. */
function stableJson(value) {
  if (Array.isArray(value)) return `[${value.map(stableJson).join(",")}]`;
  if (isObject(value)) {
    const keys = Object.keys(value).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${stableJson(value[k])}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

function describe(error) {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/** The server's `error` for a re-subscription refused on reconnect, with its channels. */
function refusal(error, request) {
  return {
    type: MSG.ERROR,
    timestamp: new Date().toISOString(),
    data: { code: error.code, message: error.message, channels: [...request.names] },
  };
}

/** The general route, filter and resume points a self-subscribing URL stands for. */
function planFromUrl(url, channels) {
  const u = new URL(url);
  const query = new Map();
  for (const [key, value] of u.searchParams) {
    query.set(key, query.has(key) ? `${query.get(key)},${value}` : value);
  }
  if (query.has("channels")) query.delete("channels");
  else u.pathname = u.pathname.replace(/\/[^/]*\/?$/, "") || "/";
  const kept = new URLSearchParams();
  for (const key of ["token", "ticket"]) {
    if (query.has(key)) kept.set(key, query.get(key));
    query.delete(key);
  }
  const since = {};
  if (query.has("since") && channels.length === 1) since[channels[0]] = query.get("since");
  query.delete("since");
  for (const key of [...query.keys()]) {
    if (key.startsWith("since.")) {
      since[key.slice(6)] = query.get(key);
      query.delete(key);
    }
  }
  u.search = kept.toString();
  const filter = Object.fromEntries(query);
  return { url: u.href, filter, since };
}

function channelRouteAdvice(url, channels) {
  const list = JSON.stringify(channels);
  const u = new URL(url);
  if (u.searchParams.has("channels")) {
    u.search = "";
    return (
      `${url} subscribes with ?channels=, which RealtimeClient cannot re-send with since on ` +
      `reconnection: use new RealtimeClient("${u.href}", {channels: ${list}})`
    );
  }
  u.search = "";
  u.pathname = u.pathname.replace(/\/[^/]*\/?$/, "") || "/";
  return (
    `${url} is a channel route (the server subscribed the connection to ${list}): ` +
    `RealtimeClient needs the general route, e.g. new RealtimeClient("${u.href}", {channels: ${list}})`
  );
}
