// Types of the sanic-realtime browser client, served at {url_prefix}/client.d.ts beside
// {url_prefix}/client.js. The wire protocol is described in docs/protocol.md.

// ---------------------------------------------------------------- the protocol's names
// As docs/protocol.md (and the server's sanic_realtime/protocol package) define them; a
// test checks these unions, and PROTOCOL in client.js, against the server's definitions.

/** The `type` of each control message the server sends (an event's `type` is the one it was published with). */
export type ServerMessageType =
  | "connection_established"
  | "subscribed"
  | "unsubscribed"
  | "refreshed"
  | "initial_state"
  | "pong"
  | "error"
  | "messages_dropped"
  | "presence"
  | "published"
  | "presence_join"
  | "presence_leave";

/** The `type` of each message a client sends. */
export type ClientMessageType =
  "subscribe" | "unsubscribe" | "ping" | "refresh" | "presence" | "publish";

/**
 * Every close code the server sends (docs/protocol.md, "Close codes"), and 4000, the
 * clients' own when they give up on a connection (heartbeat or connect timeout). A browser
 * also reports 1006 for a connection that ended without a close frame (a refused
 * handshake, a server out of reach).
 */
export type CloseCode = 1000 | 1001 | 1002 | 1007 | 1008 | 1009 | 1011 | 4000 | 4008 | 4429;

/** The `code` of an in-band `error` message (docs/protocol.md, "In-band errors"). */
export type InBandErrorCode =
  | "invalid_json"
  | "invalid_message"
  | "unknown_type"
  | "binary_not_supported"
  | "unknown_channel"
  | "invalid_channel"
  | "unknown_filter"
  | "bad_filter_value"
  | "bad_since"
  | "forbidden"
  | "authorize_failed"
  | "too_many_subscriptions"
  | "too_many_channels"
  | "invalid_token"
  | "token_expired"
  | "auth_disabled"
  | "anonymous"
  | "backplane_unavailable"
  | "initial_state_failed"
  | "message_too_large"
  | "rate_limited"
  | "busy"
  | "handler_failed"
  | "handler_timeout"
  | "no_presence";

/**
 * The `error.code` of an HTTP refusal before the upgrade (docs/protocol.md, "Refusals").
 * A browser's WebSocket does not show these: the socket closes with 1006.
 */
export type HttpErrorCode =
  | "bad_request"
  | "invalid_body"
  | "invalid_json"
  | "invalid_message"
  | "invalid_handshake"
  | "unknown_channel"
  | "invalid_channel"
  | "unknown_filter"
  | "bad_filter_value"
  | "bad_since"
  | "too_many_subscriptions"
  | "too_many_channels"
  | "no_presence"
  | "authorize_failed"
  | "unauthorized"
  | "invalid_token"
  | "token_expired"
  | "invalid_ticket"
  | "forbidden"
  | "origin_not_allowed"
  | "auth_disabled"
  | "upgrade_required"
  | "rate_limited"
  | "too_many_connections"
  | "server_full"
  | "shutting_down"
  | "backplane_unavailable";

/** Any error code the server sends. */
export type ErrorCode = InBandErrorCode | HttpErrorCode;

/** The client's own error codes (RealtimeError.code when the server did not give one). */
export type ClientErrorCode =
  | "connection_failed"
  | "connection_closed"
  | "connect_timeout"
  | "heartbeat_timeout"
  | "token_failed"
  | "closed_1007"
  | "closed_1008"
  | "closed_1009"
  | "invalid_token"
  | "not_general_route"
  | "gave_up"
  | "disconnected"
  | "not_connected"
  | "too_many_requests"
  | "request_timeout"
  | "connection_lost";

/** Why the server lost events before they reached it (messages_dropped's `reason`). */
export type LossReason = "backplane_gap" | "history_reset";

/** The protocol's names as client.js exports them (frozen). */
export declare const PROTOCOL: {
  /** The `type` of each control message. */
  readonly serverMessages: {
    readonly CONNECTION_ESTABLISHED: "connection_established";
    readonly SUBSCRIBED: "subscribed";
    readonly UNSUBSCRIBED: "unsubscribed";
    readonly REFRESHED: "refreshed";
    readonly INITIAL_STATE: "initial_state";
    readonly PONG: "pong";
    readonly ERROR: "error";
    readonly MESSAGES_DROPPED: "messages_dropped";
    readonly PRESENCE: "presence";
    readonly PUBLISHED: "published";
    readonly PRESENCE_JOIN: "presence_join";
    readonly PRESENCE_LEAVE: "presence_leave";
  };
  /** The `type` of each client message. */
  readonly clientMessages: {
    readonly SUBSCRIBE: "subscribe";
    readonly UNSUBSCRIBE: "unsubscribe";
    readonly PING: "ping";
    readonly REFRESH: "refresh";
    readonly PRESENCE: "presence";
    readonly PUBLISH: "publish";
  };
  /** The close codes the client acts on. */
  readonly closeCodes: {
    readonly NORMAL: 1000;
    readonly INVALID_DATA: 1007;
    readonly POLICY: 1008;
    readonly TOO_BIG: 1009;
    readonly HEARTBEAT: 4000;
  };
  /** The in-band error codes the client acts on. */
  readonly errorCodes: {
    readonly INITIAL_STATE_FAILED: "initial_state_failed";
    readonly BACKPLANE_UNAVAILABLE: "backplane_unavailable";
  };
};

// ---------------------------------------------------------------- messages and options

/** A filter value: a string ("a,b" = any of), a number, a boolean, or a list of those. */
export type FilterValue = string | number | boolean | Array<string | number | boolean>;

/** Filter name to value; each applies to the listed channels that declare it. */
export type Filter = Record<string, FilterValue>;

/** Where the token comes from: a fixed string, or a function called on every (re)connect. */
export type TokenSource =
  string | (() => string | null | undefined | Promise<string | null | undefined>);

/** Who sent a client message: stamped by the server, never taken from the sender. */
export interface Sender {
  /** The sender's user; null without authentication. */
  user_id: string | null;
  /** The sender's connection (its ConnectionStatus.clientId). */
  client_id: string;
}

/**
 * A message from the server: an event (it has `channel` and `id`) or a control message.
 * Every server message has this shape.
 */
export interface RealtimeMessage<D = any> {
  /** The event type given to publish, or a control message type. */
  type: string;
  /** Events, `initial_state`, `presence`, `presence_join` and `presence_leave` only. */
  channel?: string;
  /**
   * Events only: opaque, strictly increasing per channel; what a resume sends back. Null
   * for a client message of a type the channel does not keep in history (never a resume
   * point: the client does not record it).
   */
  id?: string | null;
  /** UTC, RFC 3339 with milliseconds. */
  timestamp?: string;
  data: D;
  /** Client messages only (events a client sent with publish()): the sender. */
  from?: Sender;
}

/**
 * A published event: always has `channel` and `id`. `id` is a string but for a client
 * message of a type not kept in history (null); a client message has `from`.
 */
export interface RealtimeEvent<D = any> extends RealtimeMessage<D> {
  channel: string;
  id: string | null;
  timestamp: string;
}

/** An event a client sent with publish(): it has `from`. */
export interface ClientMessageEvent<D = any> extends RealtimeEvent<D> {
  from: Sender;
}

/** `initial_state`: the channel's current state, sent after subscribing. */
export interface InitialStateMessage<D = any> extends RealtimeMessage<D> {
  type: "initial_state";
  channel: string;
}

/** Events of a channel were lost for this client (see docs/protocol.md#messages_dropped). */
export interface MessagesDroppedMessage extends RealtimeMessage<{
  channel: string;
  count: number | null;
  reason?: LossReason;
}> {
  type: "messages_dropped";
}

/**
 * An unsolicited `error` (not the reply to a request): `initial_state_failed`, or a
 * re-subscription refused on reconnect (then the client adds `channels`: the channels it
 * stopped re-sending).
 */
export interface ErrorMessage extends RealtimeMessage<{
  code: InBandErrorCode;
  message: string;
  channels?: string[];
}> {
  type: "error";
}

/** A user whose connection is subscribed to a presence channel (`presence` query). */
export interface PresenceUser {
  user_id: string;
  /** The user's primary role, or null. */
  role: string | null;
  /** The user's connections subscribed to the channel, on every worker. */
  connections: number;
  /** Present since (the first join): UTC, RFC 3339 with milliseconds. */
  since: string;
}

/** What presence() resolves with: who is subscribed to the channel, on every worker. */
export interface PresenceData {
  /** The users; null when the channel's presence has `list: false` (counts only). */
  users: PresenceUser[] | null;
  /** Distinct users present. */
  count: number;
  /** Connections without a user. */
  anonymous: number;
  /** Set when `users` holds only the first of `count` users. */
  truncated?: true;
}

/** The data of `presence_join` and `presence_leave`. */
export interface PresenceChange {
  user_id: string;
  role: string | null;
}

/**
 * `presence_join`: a user's first connection subscribed to a presence channel;
 * `presence_leave`: their last one left it (`leave_delay` ago). Sent to every subscriber
 * of the channel (with `presence.events`); no id, never replayed.
 */
export interface PresenceChangeMessage extends RealtimeMessage<PresenceChange> {
  type: "presence_join" | "presence_leave";
  channel: string;
  timestamp: string;
}

/**
 * What publish() resolves with (the `published` reply's data): the message was accepted.
 * - `{id: "epoch:n"}`: a type kept in history: its event id;
 * - `{id: null}`: an ephemeral type, delivered live only;
 * - `{id: null, dropped: true}`: the channel's message handler dropped it (nobody got it).
 */
export interface PublishResult {
  id: string | null;
  dropped?: true;
}

/** The server removed channels by itself (after a token refresh): `reason` says why. */
export interface UnsubscribedMessage extends RealtimeMessage<{
  channels: string[];
  reason: string;
}> {
  type: "unsubscribed";
}

/**
 * Made by the client (not sent by the server): a reconnection asked to resume `channel`
 * after `since`, and the server could not replay the gap (`recovered: false`). Events were
 * lost: reload the channel's state. Reported again by every later reconnection that cannot
 * resume either.
 */
export interface ResumeFailedMessage {
  type: "resume_failed";
  channel: string;
  data: { channel: string; since: string | null };
}

/** What `on("*")` handlers get. */
export type AnyMessage = RealtimeMessage | ResumeFailedMessage;

/**
 * - `disconnected`: initial, and after disconnect()
 * - `connecting`: the first attempt after connect()
 * - `connected`: connected, and the recorded subscriptions confirmed
 * - `reconnecting`: after a failed first attempt or a lost connection: waiting for the next attempt, or attempting
 * - `failed`: gave up; `lastError` says why. connect() starts again.
 */
export type ConnectionState =
  "disconnected" | "connecting" | "connected" | "reconnecting" | "failed";

/** A snapshot: getConnectionStatus() and onConnectionChange listeners get a new object each time. */
export interface ConnectionStatus {
  state: ConnectionState;
  /** The retry being waited for or made: 1 for the first after a failed attempt or a lost connection; 0 when connected. */
  attempt: number;
  /** The server's id of the current (or last) connection, from connection_established. */
  clientId: string | null;
  /** The token's user (null with auth.mode: none). */
  userId: string | null;
  /** The token's roles (empty with auth.mode: none). */
  roles: string[];
  /** When the token expires (the server then closes with 1008), or null. */
  expiresAt: string | null;
  /** The most recent error (kept after a successful reconnection); null if none yet. */
  lastError: RealtimeError | null;
  /** The code of the last close: the server's (see CloseCode), or ours (1000 disconnect, 4000 timeout). */
  closeCode: number | null;
  closeReason: string | null;
  /** The delay of the scheduled retry in ms, while one is scheduled; else null. */
  nextRetryMs: number | null;
  /**
   * channel -> resume point: the id of the newest event received, or, until one arrives
   * (and after a resume that failed), the channel's position when it was subscribed.
   */
  lastIds: Record<string, string>;
  /** channel -> whether the server could resume it, for the resumes of the current connection. */
  recovered: Record<string, boolean>;
}

export interface RealtimeClientOptions {
  /** Channels to subscribe to on every connect ("all" = every channel the client may see). Default []. */
  channels?: string[];
  /** The filter of those channels. Default none. */
  filter?: Filter | null;
  /**
   * A JWT, sent as the subprotocol pair ["bearer", token] (never in the URL). A function is
   * called on every connection attempt (and lets the client reconnect after a 1008 close).
   * Default none.
   */
  token?: TokenSource | null;
  /** Reconnect after a lost connection or a failed attempt. Default true. */
  reconnect?: boolean;
  /** ms. The k-th retry in a row waits random(0, min(maxReconnectDelay, minReconnectDelay * 2**(k-1))). Default 500. */
  minReconnectDelay?: number;
  /** ms. Default 20000. */
  maxReconnectDelay?: number;
  /**
   * Retries before giving up (state "failed", error code "gave_up"): after a lost
   * connection, or after the first attempt of connect(), this many attempts in a row may
   * fail. An integer >= 0 (0: never retry), or Infinity (default).
   */
  maxReconnectAttempts?: number;
  /** ms between the client's {"type":"ping"} messages while connected; 0 turns the heartbeat off. Default 30000. */
  pingInterval?: number;
  /** ms: no message at all within this time after a ping closes the socket (4000, "heartbeat timeout") and reconnects. Default 10000. */
  pongTimeout?: number;
  /** ms for one attempt, up to "connected": the token, the handshake, connection_established and the subscriptions' replies; 0: no limit. Default 10000. */
  connectTimeout?: number;
  /** ms a presence() or publish() waits for its reply before it rejects with "request_timeout"; 0: no limit. Default 10000. */
  requestTimeout?: number;
}

/** The reply to a subscribe. */
export interface SubscribedData {
  /** The channels subscribed ("all" expanded). */
  channels: string[];
  /** Present when a resume was asked. */
  recovered?: Record<string, boolean>;
  /** channel -> the id of its newest event when the subscription began (the client asks for them). */
  positions?: Record<string, string>;
}

/** The reply to an unsubscribe. */
export interface UnsubscribedData {
  /** The channels removed (those that were not subscribed are left out). */
  channels: string[];
}

/**
 * An error of the server (its code, e.g. "unknown_channel", "forbidden", "unknown_filter",
 * or a message handler's own code for a refused publish()) or of the client:
 * "connection_failed", "connection_closed", "connect_timeout", "closed_1007",
 * "closed_1008", "closed_1009" (a close the client does not retry), "heartbeat_timeout",
 * "token_failed", "invalid_token", "not_general_route", "gave_up", "disconnected"; and for
 * presence() and publish(): "not_connected", "too_many_requests", "request_timeout",
 * "connection_lost".
 */
export declare class RealtimeError extends Error {
  constructor(
    code: string,
    message: string,
    details?: { closeCode?: number | null; closeReason?: string | null; cause?: unknown },
  );
  readonly name: "RealtimeError";
  /** The server's code, or the client's own (any string for an error made by the app). */
  code: InBandErrorCode | ClientErrorCode | (string & {});
  /** The WebSocket close code behind the error, if any. */
  closeCode: number | null;
  closeReason: string | null;
}

export declare class RealtimeClient {
  /**
   * @param url the general route, e.g. "wss://host/ws"; relative ("/ws") in a page.
   * @throws TypeError for a bad URL or option (unknown options included).
   */
  constructor(url: string | URL, options?: RealtimeClientOptions);
  /** The resolved ws:// or wss:// URL. */
  readonly url: string;

  /**
   * Connect, subscribe and resume. Resolves once connected with the subscriptions
   * confirmed; rejects with a RealtimeError if the client ends up "failed" first (attempts
   * exhausted, a subscription refused, a channel route) or disconnect() is called first.
   */
  connect(): Promise<ConnectionStatus>;
  /** Close with 1000; no reconnection, no timer left; state "disconnected". */
  disconnect(): void;
  /**
   * Subscribe (replacing the filter of a channel already subscribed). Recorded and re-sent
   * on reconnect. Resolves with the reply, or null when not connected (only recorded).
   * Rejects with the server's RealtimeError (code, message).
   */
  subscribe(channels: string | string[], filter?: Filter | null): Promise<SubscribedData | null>;
  /** Unsubscribe ("all": every channel) and forget the channels. Null when not connected. */
  unsubscribe(channels: string | string[]): Promise<UnsubscribedData | null>;
  /**
   * Who is subscribed to a presence channel this client is subscribed to (an admin: any).
   * Rejects with a RealtimeError: the server's code ("forbidden": not subscribed,
   * "no_presence", "unknown_channel", ...), or "not_connected" (only while connected),
   * "too_many_requests" (1024 requests already await their reply), "request_timeout",
   * "connection_lost" or "disconnected" (the connection ended before the reply).
   * @throws TypeError for a channel that is not a non-empty string.
   */
  presence(channel: string): Promise<PresenceData>;
  /**
   * Send a client message of type `event` to the channel's subscribers (this client must
   * be subscribed; the channel's `client_messages` must take `event`). They get it as an
   * event with `from` (and `id: null` for a type not kept in history); the sender does not
   * unless the channel has `echo: true`. Resolves once the server accepted it (see
   * PublishResult). Rejects with a RealtimeError: the server's code ("forbidden",
   * "unknown_type", "message_too_large", "rate_limited", "busy", "handler_failed",
   * "handler_timeout", "invalid_message", "unknown_channel", "invalid_channel", or a
   * handler's own), or the client's as presence(); after "request_timeout",
   * "connection_lost" or "disconnected" whether it was sent is unknown (it is not resent).
   * @throws TypeError for a bad channel or event, or data that JSON.stringify rejects.
   */
  publish(channel: string, event: string, data?: unknown): Promise<PublishResult>;

  on(type: "initial_state", handler: (message: InitialStateMessage) => void): () => void;
  on(type: "messages_dropped", handler: (message: MessagesDroppedMessage) => void): () => void;
  on(type: "error", handler: (message: ErrorMessage) => void): () => void;
  on(type: "unsubscribed", handler: (message: UnsubscribedMessage) => void): () => void;
  on(type: "resume_failed", handler: (message: ResumeFailedMessage) => void): () => void;
  on(type: "presence_join", handler: (message: PresenceChangeMessage) => void): () => void;
  on(type: "presence_leave", handler: (message: PresenceChangeMessage) => void): () => void;
  on(type: "*", handler: (message: AnyMessage) => void): () => void;
  /**
   * An event type (as published, or as a client sent it: then with `from`), or a control
   * message type. Returns a remover.
   */
  on<D = any>(type: string, handler: (event: RealtimeEvent<D>) => void): () => void;

  /**
   * Called with a fresh status on every change of state, and on each retry scheduled while
   * "reconnecting" (attempt, nextRetryMs). Returns a remover.
   */
  onConnectionChange(listener: (status: ConnectionStatus) => void): () => void;
  isConnected(): boolean;
  getConnectionStatus(): ConnectionStatus;
  /** The newest event or initial_state received for the channel, or null. */
  latest<D = any>(channel: string): RealtimeMessage<D> | null;
}

export default RealtimeClient;
