// ChatClient: one socket, every room multiplexed on it; outbox, resume, heartbeat, backoff.
// The wire contract is docs/PROTOCOL.md.
import { Connection, MiniSocketApi, Transport, detectTransport, globalObject, miniTransport } from './transport.js';
import { MiniStorageApi, SyncStorage, detectStorage, miniStorage } from './storage.js';

export const SUBPROTOCOL = 'tongdao.chat.v1';

export type ChatState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';

/** A room position: the last seq received, and the epoch it belongs to (PROTOCOL.md §5). */
export interface Position { seq: number; epoch?: string }

export interface Timers {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export interface Lifecycle {
  onShow?(fn: () => void): void;
  onHide?(fn: () => void): void;
  onNetworkChange?(fn: (online: boolean) => void): void;
}

export interface BackoffOptions { baseMs?: number; maxMs?: number; stableMs?: number }

export interface ChatOptions {
  url: string;
  /** Anonymous mode: the nickname (and user id). */
  name?: string;
  /** A JWT, or a function asked for one at the first connect and after 4001 / unauthorized. */
  token?: string | (() => string | Promise<string>);
  transport?: Transport;
  storage?: SyncStorage;
  storageKey?: string;
  heartbeatMs?: number;
  deadAfterMs?: number;
  /** Deadline of the check made on app show / network back. */
  checkMs?: number;
  connectTimeoutMs?: number;
  backoff?: BackoffOptions;
  /** Positions are written to storage at most this often (ms; 0: at every event). The outbox
   * is always written synchronously. Flushed on app hide and close(). Default 250. */
  persistMs?: number;
  /** Sends of one room in flight at once (default 1: strict order even when the server refuses one). */
  sendWindow?: number;
  /** App show/hide and network hooks; default: wx.onAppShow/onAppHide/onNetworkStatusChange when wx exists. false: none. */
  lifecycle?: Lifecycle | false;
  timers?: Timers;
  /** Uniform in [0, 1): the backoff jitter. Default Math.random. */
  random?: () => number;
  /** A `wx` or `uni` object: transport, storage and lifecycle are taken from it (unless given). */
  wx?: MiniApi;
  /** cid generator; default: crypto.getRandomValues when present, else time + Math.random. */
  cid?: () => string;
}

export interface StoredEvent {
  op: 'message' | 'edit' | 'delete';
  room: string;
  seq: number;
  ts: number;
  user: string;
  name: string;
  cid?: string;
  body?: unknown;
  target?: number;
  edited?: boolean;
  deleted?: boolean;
}
export interface ReadEvent { op: 'read'; room: string; user: string; seq: number }
export interface TypingEvent { op: 'typing'; room: string; user: string; name: string; active: boolean; expiresMs?: number }
export interface PresenceEvent { op: 'presence'; room: string; user: string; name: string; state: 'join' | 'leave'; count: number }
export interface GapEvent { op: 'gap'; room: string; reason: 'retention' | 'epoch' | string; from?: number; to?: number; epoch?: string }
export interface StateEvent { state: ChatState; previous: ChatState; code?: number; reason?: string }
export interface SentEvent { room: string; cid: string; seq: number; ts: number; duplicate: boolean; body: unknown }
export interface ErrorEvent { code: string; message: string; room?: string; cid?: string; op?: string }

export interface ChatEvents {
  message: StoredEvent;
  edit: StoredEvent;
  delete: StoredEvent;
  read: ReadEvent;
  typing: TypingEvent;
  presence: PresenceEvent;
  gap: GapEvent;
  state: StateEvent;
  sent: SentEvent;
  error: ErrorEvent;
}

export interface JoinInfo {
  room: string;
  seq: number;
  epoch: string;
  recovered: boolean;
  oldest: number;
  unread: number;
  readSeq: number;
  already?: boolean;
}
export interface SendResult { room: string; cid: string; seq: number; ts: number; duplicate: boolean }
export interface SendOptions { excludeSelf?: boolean }
export interface HistoryQuery { before?: number; after?: number; limit?: number }
export interface HistoryPage { room: string; seq: number; epoch: string; oldest: number; more: boolean; events: StoredEvent[] }
export interface RoomInfo { room: string; seq: number; epoch: string; readSeq: number; unread: number; joined: boolean }
export interface PresenceInfo { room: string; count: number; users: Array<{ user: string; name: string }> }

export class ChatError extends Error {
  readonly code: string;
  readonly retryAfterMs?: number;
  constructor(code: string, message: string, retryAfterMs?: number) {
    super(message);
    this.name = 'ChatError';
    this.code = code;
    if (retryAfterMs !== undefined) this.retryAfterMs = retryAfterMs;
  }
}

interface OutboxItem { cid: string; room: string; body: unknown; excludeSelf?: boolean }
type Json = Record<string, unknown>;
interface Waiter<T> { resolve(v: T): void; reject(e: unknown): void }
interface Pending {
  id: number;
  op: string;
  msg: Json;
  needsRoom?: string;
  resend: boolean;
  sent: boolean;
  w?: Waiter<Json>;
  cid?: string;
}

const RETRYABLE = { rate_limited: 1, unavailable: 1, not_joined: 1, internal: 1 } as Record<string, number>;

const retryAfter = (m: Json): number => (typeof m.retryAfterMs === 'number' ? (m.retryAfterMs as number) : 1000);

/** The ChatError of a refused request: the reply's code and message. */
const refused = (m: Json): ChatError => new ChatError(String(m.code), String(m.message));

/** An option's value, or its default when not given. */
const orDefault = <T>(v: T | undefined, d: T): T => (v !== undefined ? v : d);

function rejectAll(waiters: Array<{ reject(e: unknown): void }>, err: unknown): void {
  for (const w of waiters) w.reject(err);
}

/** The client's timers, one of each at most: started by later(), stopped by stop(). */
type TimerName = 'persist' | 'hb' | 'dead' | 'reconnect' | 'stable' | 'connect' | 'flush';

function defaultTimers(): Timers {
  const g = globalObject();
  return {
    now: () => Date.now(),
    setTimeout: (fn, ms) => g.setTimeout(fn, ms),
    clearTimeout: (h) => g.clearTimeout(h),
  };
}

/** A cid: 16 hex digits from crypto.getRandomValues when the platform has it; otherwise the
 * time in base 36 and 2 × 32 bits from Math.random (unique enough per user, not secret). */
export function makeCid(): string {
  const g = globalObject();
  const c = g && g.crypto;
  if (c && typeof c.getRandomValues === 'function') {
    const a = new Uint8Array(8);
    c.getRandomValues(a);
    let s = 'c-';
    for (let i = 0; i < a.length; i++) s += (a[i] < 16 ? '0' : '') + a[i].toString(16);
    return s;
  }
  const r = () => Math.floor(Math.random() * 0x100000000).toString(36);
  return 'c-' + Date.now().toString(36) + '-' + r() + r();
}

/** What the SDK uses of `wx` / `uni` when given as options.wx. */
export interface MiniApi extends MiniSocketApi, MiniStorageApi {
  onAppShow?(fn: (res: unknown) => void): void;
  onAppHide?(fn: (res: unknown) => void): void;
  onNetworkStatusChange?(fn: (res: { isConnected: boolean }) => void): void;
}

function defaultLifecycle(): Lifecycle | null {
  if (typeof wx === 'undefined' || !wx || typeof wx.onAppShow !== 'function') return null;
  return miniLifecycle(wx as unknown as MiniApi);
}

/** wx.onAppShow / onAppHide / onNetworkStatusChange as a Lifecycle. */
export function miniLifecycle(w: MiniApi): Lifecycle | null {
  if (typeof w.onAppShow !== 'function') return null;
  return {
    onShow: (fn) => { if (w.onAppShow) w.onAppShow(() => fn()); },
    onHide: (fn) => { if (w.onAppHide) w.onAppHide(() => fn()); },
    onNetworkChange: (fn) => { if (w.onNetworkStatusChange) w.onNetworkStatusChange((res) => fn(!!res.isConnected)); },
  };
}

export class ChatClient {
  private readonly opt: ChatOptions;
  private readonly transport: Transport;
  private readonly storage: SyncStorage;
  private readonly key: string;
  private readonly timers: Timers;
  private readonly random: () => number;
  private readonly newCid: () => string;
  private readonly heartbeatMs: number;
  private readonly deadAfterMs: number;
  private readonly checkMs: number;
  private readonly connectTimeoutMs: number;
  private readonly baseMs: number;
  private readonly maxMs: number;
  private readonly stableMs: number;
  private readonly sendWindow: number;
  private readonly persistMs: number;

  private _state: ChatState = 'idle';
  private listeners: { [K in keyof ChatEvents]?: Array<(e: ChatEvents[K]) => void> } = {};
  private conn: Connection | null = null;
  private gen = 0;
  private helloDone = false;
  private wantOpen = false;
  private nextId = 1;
  private attempt = 0;
  private tokenValue: string | undefined;
  private tokenStale = true;
  private extraDelay = 0;

  private positions: Record<string, Position> = {};
  private joined: string[] = [];
  private ready = new Set<string>();
  private joinInfo: Record<string, JoinInfo> = {};
  private joinWaiters: Record<string, Array<Waiter<JoinInfo>>> = {};
  private outbox: OutboxItem[] = [];
  private inflight = new Set<string>();
  private sendWaiters: Record<string, Waiter<SendResult>> = {};
  private requests = new Map<number, Pending>();
  private connectWaiters: Array<Waiter<void>> = [];
  private blockedUntil = 0;

  private lastRecv = 0;
  private lastSend = 0;
  /** The running timers' handles, by name. */
  private running: { [K in TimerName]?: unknown } = {};

  constructor(options: ChatOptions) {
    this.opt = options;
    const mini = options.wx;
    const t = options.transport || (mini ? miniTransport(mini) : detectTransport());
    if (!t) throw new ChatError('bad_request', 'no transport: pass options.transport (wx, uni, WebSocket or ws)');
    this.transport = t;
    this.storage = options.storage || (mini ? miniStorage(mini) : detectStorage());
    this.key = options.storageKey || 'tongdao-chat:' + (options.name || 'default');
    this.timers = options.timers || defaultTimers();
    this.random = options.random || Math.random;
    this.newCid = options.cid || makeCid;
    this.heartbeatMs = orDefault(options.heartbeatMs, 25000);
    this.deadAfterMs = orDefault(options.deadAfterMs, 8000);
    this.checkMs = orDefault(options.checkMs, Math.min(3000, this.deadAfterMs));
    this.connectTimeoutMs = orDefault(options.connectTimeoutMs, 15000);
    const b = options.backoff || {};
    this.baseMs = orDefault(b.baseMs, 500);
    this.maxMs = orDefault(b.maxMs, 30000);
    this.stableMs = orDefault(b.stableMs, 10000);
    this.sendWindow = Math.max(1, options.sendWindow || 1);
    this.persistMs = orDefault(options.persistMs, 250);
    if (typeof options.token === 'string') { this.tokenValue = options.token; this.tokenStale = false; }
    this.load();
    const lc = options.lifecycle === false ? null : options.lifecycle || (mini ? miniLifecycle(mini) : defaultLifecycle());
    if (lc) {
      if (lc.onShow) lc.onShow(() => this.check());
      if (lc.onHide) lc.onHide(() => { if ('persist' in this.running) this.saveState(); });
      if (lc.onNetworkChange) lc.onNetworkChange((online) => { if (online) this.check(); });
    }
  }

  get state(): ChatState { return this._state; }
  /** Sends not yet acknowledged (the outbox, persisted). */
  get pending(): number { return this.outbox.length; }
  /** The rooms this client keeps joined (persisted, resumed at every connect). */
  get joinedRooms(): string[] { return this.joined.slice(); }
  position(room: string): Position | undefined {
    const p = this.positions[room];
    return p ? { seq: p.seq, epoch: p.epoch } : undefined;
  }

  on<K extends keyof ChatEvents>(event: K, fn: (e: ChatEvents[K]) => void): () => void {
    const list = (this.listeners[event] || (this.listeners[event] = [])) as Array<(e: ChatEvents[K]) => void>;
    list.push(fn);
    return () => {
      const i = list.indexOf(fn);
      if (i >= 0) list.splice(i, 1);
    };
  }

  private emit<K extends keyof ChatEvents>(event: K, e: ChatEvents[K]): void {
    const list = this.listeners[event] as Array<(e: ChatEvents[K]) => void> | undefined;
    if (!list) return;
    for (const fn of list.slice()) {
      try { fn(e); } catch (err) { if (event !== 'error') this.report('listener', err); }
    }
  }

  /** An `error` event: the code, the message (a string), where it happened. */
  private report(code: string, message: unknown, where?: { room?: string; cid?: string; op?: string }): void {
    this.emit('error', Object.assign({ code, message: String(message) }, where));
  }

  // ---- persistence -------------------------------------------------------------------------

  private load(): void {
    try {
      const s = this.storage.getItem(this.key);
      if (s) {
        const d = JSON.parse(s) as { positions?: Record<string, Position>; joined?: string[] };
        if (d.positions) this.positions = d.positions;
        if (Array.isArray(d.joined)) this.joined = d.joined;
      }
      const o = this.storage.getItem(this.key + ':outbox');
      if (o) {
        const items = JSON.parse(o) as OutboxItem[];
        if (Array.isArray(items)) this.outbox = items;
      }
    } catch (e) {
      this.positions = {};
      this.joined = [];
    }
    for (const it of this.outbox) if (!this.joined.includes(it.room)) this.joined.push(it.room);
  }

  /** Positions move at every event: written at most every persistMs. */
  private savePositions(): void {
    if (this.persistMs <= 0) return this.saveState();
    if (!('persist' in this.running)) this.later('persist', this.persistMs, () => this.saveState());
  }

  private saveState(): void {
    this.stop('persist');
    try {
      this.storage.setItem(this.key, JSON.stringify({ v: 1, positions: this.positions, joined: this.joined }));
    } catch (e) {
      this.report('storage', e);
    }
  }

  private saveOutbox(): void {
    // Synchronous: the send is on disk before send() returns.
    try {
      this.storage.setItem(this.key + ':outbox', JSON.stringify(this.outbox));
    } catch (e) {
      this.report('storage', e);
    }
  }

  // ---- connection --------------------------------------------------------------------------

  private setState(s: ChatState, code?: number, reason?: string): void {
    if (s === this._state) return;
    const previous = this._state;
    this._state = s;
    const e: StateEvent = { state: s, previous };
    if (code !== undefined) e.code = code;
    if (reason !== undefined) e.reason = reason;
    this.emit('state', e);
  }

  /** Opens the socket (if not yet) and resolves once the server has accepted `hello`. */
  connect(): Promise<void> {
    if (this._state === 'open') return Promise.resolve();
    const p = new Promise<void>((resolve, reject) => this.connectWaiters.push({ resolve, reject }));
    if (!this.wantOpen) {
      this.wantOpen = true;
      this.open();
    }
    return p;
  }

  /** Starts the timer `name` (stopping it first if running); it is no longer running when fn runs. */
  private later(name: TimerName, ms: number, fn: () => void): void {
    this.stop(name);
    this.running[name] = this.timers.setTimeout(() => {
      delete this.running[name];
      fn();
    }, ms);
  }

  private stop(...names: TimerName[]): void {
    for (const n of names) {
      if (n in this.running) this.timers.clearTimeout(this.running[n]);
      delete this.running[n];
    }
  }

  private open(): void {
    this.stop('reconnect');
    if (!this.wantOpen) return;
    this.setState(this._state === 'idle' || this._state === 'closed' ? 'connecting' : 'reconnecting');
    const gen = ++this.gen;
    this.helloDone = false;
    this.ready.clear();
    this.inflight.clear();
    this.later('connect', this.connectTimeoutMs, () => {
      if (gen === this.gen && !this.helloDone) this.drop(gen, 1006, 'connect timeout');
    });
    try {
      this.conn = this.transport.connect(this.opt.url, [SUBPROTOCOL], {
        onOpen: () => { if (gen === this.gen) this.onOpen(gen); },
        onMessage: (d) => { if (gen === this.gen) this.onMessage(d); },
        onClose: (code, reason) => { if (gen === this.gen) this.onClose(gen, code, reason); },
        onError: (m) => { if (gen === this.gen) this.report('socket', m); },
      });
    } catch (e) {
      this.conn = null;
      this.report('socket', e);
      this.scheduleReconnect();
    }
  }

  private async onOpen(gen: number): Promise<void> {
    this.lastRecv = this.timers.now();
    let token: string | undefined;
    if (this.opt.token !== undefined) {
      try {
        if (this.tokenStale && typeof this.opt.token === 'function') {
          this.tokenValue = await this.opt.token();
          this.tokenStale = false;
        }
        token = this.tokenValue;
      } catch (e) {
        if (gen !== this.gen) return;
        this.report('unauthorized', 'token function failed: ' + String(e));
        this.drop(gen, 1006, 'no token');
        return;
      }
    }
    if (gen !== this.gen) return;
    const rooms = this.joined.map((room) => this.resumeFrom(room));
    this.track('hello', { v: 1, name: this.opt.name, token, rooms: rooms.length ? rooms : undefined }, {}, true);
    this.armHeartbeat();
  }

  /** `{room, since, epoch}`: where a room resumes (hello's rooms, join). */
  private resumeFrom(room: string): Json {
    const p = this.positions[room];
    const r: Json = { room };
    if (p) {
      r.since = p.seq;
      if (p.epoch) r.epoch = p.epoch;
    }
    return r;
  }

  /** A new request `{op, id, ...fields}` (fields left undefined are not sent), waiting for its
   * reply in `requests`; sent at once when `now`, otherwise by flush(). Not resent after a
   * disconnection unless p.resend. */
  private track(op: string, fields: Json, p: Partial<Pick<Pending, 'needsRoom' | 'resend' | 'w' | 'cid'>>, now: boolean): void {
    const id = this.nextId++;
    const msg = Object.assign({ op, id }, fields);
    const r: Pending = Object.assign({ id, op, msg, resend: false, sent: now }, p);
    this.requests.set(id, r);
    if (now) this.raw(msg);
  }

  /** Connected, and the server has accepted hello. */
  private live(): boolean {
    return !!this.conn && this.helloDone;
  }

  private raw(msg: Json): boolean {
    if (!this.conn) return false;
    this.lastSend = this.timers.now();
    return this.conn.send(JSON.stringify(msg));
  }

  /** Forget the current socket at once (its late events are ignored) and reconnect. */
  private drop(gen: number, code: number, reason: string): void {
    if (gen !== this.gen) return;
    const c = this.conn;
    this.gen++;
    if (c) c.close(code === 1006 ? 4000 : code, reason);
    this.onClose(this.gen, code, reason);
  }

  private onClose(gen: number, code: number, reason: string): void {
    if (gen !== this.gen) return;
    this.gen++;
    this.conn = null;
    this.helloDone = false;
    this.ready.clear();
    this.inflight.clear();
    this.stop('hb', 'dead', 'stable', 'connect', 'flush');
    for (const p of this.requests.values()) {
      if (p.resend) p.sent = false;
      else {
        this.requests.delete(p.id);
        if (p.w) p.w.reject(new ChatError('disconnected', 'the connection closed before the reply'));
      }
    }
    if (!this.wantOpen) {
      this.setState('closed', code, reason);
      return;
    }
    if (code === 4001) {
      this.tokenStale = true;
      if (typeof this.opt.token !== 'function') {
        this.report('unauthorized', 'token expired (4001) and no token function to renew it');
        this.fail(new ChatError('unauthorized', 'token expired'));
        return;
      }
    }
    if (code === 1008 && /bad request/.test(reason)) this.extraDelay = this.maxMs / 2;
    this.setState('reconnecting', code, reason);
    this.scheduleReconnect();
  }

  private fail(err: ChatError): void {
    this.wantOpen = false;
    this.stop('reconnect');
    const c = this.conn;
    this.conn = null;
    this.gen++;
    if (c) c.close(1000, '');
    this.setState('closed');
    this.settleConnect(err);
  }

  /** Settles the promises of connect(): resolved, or rejected with err. */
  private settleConnect(err?: ChatError): void {
    const w = this.connectWaiters;
    this.connectWaiters = [];
    for (const x of w) if (err) x.reject(err); else x.resolve();
  }

  /** Full jitter: uniform in [0, min(maxMs, baseMs·2^attempt)); reset after stableMs open. */
  backoffDelay(attempt: number): number {
    const cap = Math.min(this.maxMs, this.baseMs * Math.pow(2, attempt));
    return Math.floor(this.random() * cap);
  }

  private scheduleReconnect(): void {
    let delay = this.backoffDelay(this.attempt);
    if (this.extraDelay) {
      delay = this.extraDelay + Math.floor(this.random() * this.extraDelay);
      this.extraDelay = 0;
    }
    this.attempt++;
    this.later('reconnect', delay, () => this.open());
  }

  /** Check the socket now (app shown, network back): a ping with a short deadline, or an
   * immediate reconnect when waiting in back-off. */
  check(): void {
    if (!this.wantOpen) return;
    if ('reconnect' in this.running) {
      this.open();
      return;
    }
    if (this.live()) this.ping(this.checkMs);
  }

  private armHeartbeat(): void {
    const gen = this.gen;
    const now = this.timers.now();
    // Ping when either direction has been silent for heartbeatMs: nothing received (is the
    // link alive?) or nothing sent (the server's idle timeout counts what the client sends).
    const quiet = now - Math.min(this.lastRecv, this.lastSend);
    const wait = Math.max(0, this.heartbeatMs - quiet);
    this.later('hb', wait, () => {
      if (gen !== this.gen) return;
      const t = this.timers.now();
      const idle = t - Math.min(this.lastRecv, this.lastSend);
      if (idle >= this.heartbeatMs) this.ping(this.deadAfterMs);
      else this.armHeartbeat();
    });
  }

  private ping(deadline: number): void {
    if (!this.conn) return;
    const gen = this.gen;
    const sentAt = this.timers.now();
    this.track('ping', {}, {}, true);
    if ('dead' in this.running) return; // an earlier deadline is already running
    this.later('dead', deadline, () => {
      if (gen !== this.gen) return;
      if (this.lastRecv <= sentAt) this.drop(gen, 1006, 'no reply to ping within ' + deadline + ' ms');
      else this.armHeartbeat();
    });
  }

  // ---- incoming ----------------------------------------------------------------------------

  private onMessage(data: string): void {
    this.lastRecv = this.timers.now();
    if ('dead' in this.running) {
      this.stop('dead');
      this.armHeartbeat();
    } else if (!('hb' in this.running)) this.armHeartbeat();
    let m: Json;
    try {
      m = JSON.parse(data) as Json;
    } catch (e) {
      this.report('bad_frame', 'not JSON from the server');
      return;
    }
    if (!m || typeof m !== 'object') return;
    if (m.op === 'reply') this.onReply(m);
    else this.onEvent(m);
  }

  private onReply(m: Json): void {
    const id = m.id as number;
    const p = this.requests.get(id);
    if (!p) {
      if (!m.ok) this.report(String(m.code), m.message);
      return;
    }
    this.requests.delete(id);
    switch (p.op) {
      case 'hello': return this.onHello(m);
      case 'ping': return;
      case 'join': return this.onJoinReply(p.needsRoom as string, m);
      case 'send': return this.onSendReply(p.cid as string, m);
      default:
        if (!p.w) return;
        if (m.ok) p.w.resolve(m);
        else if (RETRYABLE[m.code as string] && p.resend && m.code !== 'internal') {
          p.sent = false;
          this.requests.set(p.id, p);
          this.retryLater(retryAfter(m));
        } else p.w.reject(refused(m));
    }
  }

  private onHello(m: Json): void {
    if (!m.ok) {
      const err = refused(m);
      const code = err.code;
      this.report(code, err.message, { op: 'hello' });
      if (code === 'unsupported_version' || (code === 'unauthorized' && typeof this.opt.token !== 'function')) {
        this.fail(err);
        return;
      }
      if (code === 'unauthorized') this.tokenStale = true;
      this.drop(this.gen, 1006, 'hello refused: ' + code);
      return;
    }
    this.helloDone = true;
    this.stop('connect');
    this.setState('open');
    const gen = this.gen;
    this.later('stable', this.stableMs, () => {
      if (gen === this.gen) this.attempt = 0;
    });
    this.settleConnect();
    const rooms = Array.isArray(m.rooms) ? (m.rooms as Json[]) : [];
    for (const r of rooms) this.onJoinReply(String(r.room), r, false);
    this.flush();
  }

  private onJoinReply(room: string, m: Json, flush = true): void {
    const i = this.joined.indexOf(room);
    if (i < 0) return; // left meanwhile
    const waiters = this.joinWaiters[room] || [];
    if (!m.ok) {
      if (m.code === 'unavailable') {
        this.retryLater(retryAfter(m));
        return;
      }
      delete this.joinWaiters[room];
      this.joined.splice(i, 1);
      this.saveState();
      const err = refused(m);
      this.report(err.code, err.message, { room, op: 'join' });
      rejectAll(waiters, err);
      this.rejectRoomSends(room, err);
      return;
    }
    const epoch = String(m.epoch);
    const p = this.positions[room];
    if (!p) this.positions[room] = { seq: m.seq as number, epoch };
    else p.epoch = epoch; // with since, the events (or a gap) follow the reply
    this.saveState();
    this.ready.add(room);
    const info: JoinInfo = {
      room,
      seq: m.seq as number,
      epoch,
      recovered: m.recovered !== false,
      oldest: m.oldest as number,
      unread: m.unread as number,
      readSeq: m.readSeq as number,
    };
    if (m.already) info.already = true;
    this.joinInfo[room] = info;
    delete this.joinWaiters[room];
    for (const x of waiters) x.resolve(info);
    if (flush) this.flush();
  }

  private onEvent(m: Json): void {
    const room = m.room as string;
    const op = m.op as string;
    if (op === 'message' || op === 'edit' || op === 'delete') {
      if (!this.ready.has(room)) return;
      const seq = m.seq as number;
      const p = this.positions[room];
      if (p && seq <= p.seq) return; // already delivered
      if (p && seq !== p.seq + 1) {
        // A hole the server did not announce (it never should): resume from our position.
        this.report('sequence', 'seq ' + seq + ' after ' + p.seq + ' in ' + room + ': resuming', { room });
        this.drop(this.gen, 1006, 'unannounced gap');
        return;
      }
      if (p) p.seq = seq;
      else this.positions[room] = { seq };
      this.savePositions();
      this.emit(op, m as unknown as StoredEvent);
      return;
    }
    if (op === 'gap') {
      const p = this.positions[room] || (this.positions[room] = { seq: 0 });
      if (m.reason === 'epoch') {
        p.seq = 0;
        p.epoch = m.epoch as string;
      } else if (typeof m.to === 'number' && m.to > p.seq) p.seq = m.to;
      this.savePositions();
      this.emit('gap', m as unknown as GapEvent);
      return;
    }
    if (op === 'read' || op === 'typing' || op === 'presence') {
      this.emit(op, m as never);
    }
  }

  // ---- outgoing ----------------------------------------------------------------------------

  private retryLater(ms: number): void {
    this.blockedUntil = Math.max(this.blockedUntil, this.timers.now() + ms);
    if (!('flush' in this.running)) this.later('flush', ms, () => this.flush());
  }

  /** Send what waits: join requests, the outbox in order, other requests. */
  private flush(): void {
    if (!this.live()) return;
    if (this.timers.now() < this.blockedUntil) {
      this.retryLater(this.blockedUntil - this.timers.now());
      return;
    }
    for (const room of this.joined) {
      if (!this.ready.has(room) && !this.joinSent(room)) this.sendJoin(room);
    }
    // Per room at most sendWindow sends in flight (1 by default: a refused one — rate_limited,
    // unavailable — is retried before any later one of its room is sent, so order holds).
    const busy: Record<string, number> = {};
    for (const it of this.outbox) {
      const n = busy[it.room] || 0;
      if (this.inflight.has(it.cid)) { busy[it.room] = n + 1; continue; }
      if (!this.ready.has(it.room) || n >= this.sendWindow) { busy[it.room] = Infinity; continue; }
      busy[it.room] = n + 1;
      this.inflight.add(it.cid);
      this.track('send', { room: it.room, cid: it.cid, body: it.body, excludeSelf: it.excludeSelf || undefined }, { cid: it.cid }, true);
    }
    for (const p of Array.from(this.requests.values())) {
      if (p.sent) continue;
      if (p.needsRoom && !this.ready.has(p.needsRoom)) continue;
      p.sent = true;
      this.raw(p.msg);
    }
  }

  private joinSent(room: string): boolean {
    for (const p of this.requests.values()) if (p.op === 'join' && p.needsRoom === room && p.sent) return true;
    return false;
  }

  private sendJoin(room: string): void {
    this.track('join', this.resumeFrom(room), { needsRoom: room }, true);
  }

  private onSendReply(cid: string, m: Json): void {
    this.inflight.delete(cid);
    const i = this.outbox.findIndex((x) => x.cid === cid);
    if (i < 0) return;
    const it = this.outbox[i];
    if (m.ok) {
      this.outbox.splice(i, 1);
      this.saveOutbox();
      const r: SendResult = { room: it.room, cid, seq: m.seq as number, ts: m.ts as number, duplicate: !!m.duplicate };
      const w = this.takeSendWaiter(cid);
      this.emit('sent', Object.assign({}, r, { body: it.body }));
      if (w) w.resolve(r);
      this.flush();
      return;
    }
    const err = refused(m);
    if (RETRYABLE[err.code]) {
      if (err.code === 'not_joined') this.ready.delete(it.room);
      // Everything of this room sent after it is resent after the pause (dedupe keeps it once).
      this.retryLater(retryAfter(m));
      return;
    }
    this.outbox.splice(i, 1);
    this.saveOutbox();
    this.report(err.code, err.message, { room: it.room, cid, op: 'send' });
    const w = this.takeSendWaiter(cid);
    if (w) w.reject(err);
    this.flush();
  }

  private takeSendWaiter(cid: string): Waiter<SendResult> | undefined {
    const w = this.sendWaiters[cid];
    delete this.sendWaiters[cid];
    return w;
  }

  private rejectRoomSends(room: string, err: ChatError): void {
    const keep: OutboxItem[] = [];
    for (const it of this.outbox) {
      if (it.room !== room) { keep.push(it); continue; }
      const w = this.takeSendWaiter(it.cid);
      if (w) w.reject(err);
    }
    if (keep.length !== this.outbox.length) {
      this.outbox = keep;
      this.saveOutbox();
    }
  }

  private request(op: string, fields: Json, opts: { room?: string; resend?: boolean } = {}): Promise<Json> {
    if (this._state === 'closed' && !this.wantOpen) return Promise.reject(new ChatError('closed', 'the client is closed'));
    const room = opts.room;
    return new Promise<Json>((resolve, reject) => {
      this.track(op, fields, { needsRoom: room, resend: opts.resend !== false, w: { resolve, reject } },
        this.live() && (!room || this.ready.has(room)));
    });
  }

  // ---- API ---------------------------------------------------------------------------------

  /** Join a room (kept across reconnections and reloads; resumed from its saved position). */
  join(room: string): Promise<JoinInfo> {
    const info = this.joinInfo[room];
    if (this.joined.includes(room) && this.ready.has(room) && info) return Promise.resolve(Object.assign({}, info, { already: true }));
    const p = new Promise<JoinInfo>((resolve, reject) => {
      (this.joinWaiters[room] || (this.joinWaiters[room] = [])).push({ resolve, reject });
    });
    if (!this.joined.includes(room)) {
      this.joined.push(room);
      this.saveState();
    }
    if (this.live() && !this.joinSent(room)) this.sendJoin(room);
    return p;
  }

  async leave(room: string): Promise<void> {
    const i = this.joined.indexOf(room);
    if (i >= 0) this.joined.splice(i, 1);
    this.ready.delete(room);
    delete this.positions[room];
    delete this.joinInfo[room];
    this.saveState();
    const err = new ChatError('left', 'left the room ' + room);
    rejectAll(this.joinWaiters[room] || [], err);
    delete this.joinWaiters[room];
    this.rejectRoomSends(room, err);
    await this.request('leave', { room });
  }

  /** Queue a message (persisted at once) and resolve when the server has stored it. */
  send(room: string, body: unknown, options: SendOptions = {}): Promise<SendResult> {
    if (!this.joined.includes(room)) this.join(room).catch(() => undefined);
    const it: OutboxItem = { cid: this.newCid(), room, body };
    if (options.excludeSelf) it.excludeSelf = true;
    this.outbox.push(it);
    this.saveOutbox();
    const p = new Promise<SendResult>((resolve, reject) => { this.sendWaiters[it.cid] = { resolve, reject }; });
    this.flush();
    return p;
  }

  async edit(room: string, target: number, body: unknown): Promise<{ seq: number; ts: number }> {
    const r = await this.request('edit', { room, target, body, cid: this.newCid() }, { room });
    return { seq: r.seq as number, ts: r.ts as number };
  }

  async delete(room: string, target: number): Promise<{ seq: number; ts: number }> {
    const r = await this.request('delete', { room, target, cid: this.newCid() }, { room });
    return { seq: r.seq as number, ts: r.ts as number };
  }

  async read(room: string, seq: number): Promise<{ seq: number }> {
    const r = await this.request('read', { room, seq }, { room });
    return { seq: r.seq as number };
  }

  /** Ephemeral: dropped (resolved) when not connected. */
  async typing(room: string, active = true): Promise<void> {
    if (!this.live() || !this.ready.has(room)) return;
    await this.request('typing', { room, active }, { room, resend: false });
  }

  async presence(room: string): Promise<PresenceInfo> {
    const r = await this.request('presence', { room }, { room });
    return { room, count: r.count as number, users: r.users as PresenceInfo['users'] };
  }

  async rooms(): Promise<RoomInfo[]> {
    const r = await this.request('rooms', {});
    return r.rooms as RoomInfo[];
  }

  async history(room: string, q: HistoryQuery = {}): Promise<HistoryPage> {
    const r = await this.request('history', { room, before: q.before, after: q.after, limit: q.limit });
    return {
      room,
      seq: r.seq as number,
      epoch: r.epoch as string,
      oldest: r.oldest as number,
      more: !!r.more,
      events: r.events as StoredEvent[],
    };
  }

  /** A room-bound view: chat.room('lobby').history({before: 40}). */
  room(name: string) {
    return {
      name,
      join: () => this.join(name),
      leave: () => this.leave(name),
      send: (body: unknown, o?: SendOptions) => this.send(name, body, o),
      edit: (target: number, body: unknown) => this.edit(name, target, body),
      delete: (target: number) => this.delete(name, target),
      read: (seq: number) => this.read(name, seq),
      typing: (active?: boolean) => this.typing(name, active),
      presence: () => this.presence(name),
      history: (q?: HistoryQuery) => this.history(name, q),
      position: () => this.position(name),
    };
  }

  /** Close the socket for good. The outbox stays in storage: a later client over the same
   * storage sends it (its results come as `sent` events). Pending promises are rejected. */
  close(): void {
    if ('persist' in this.running) this.saveState();
    this.wantOpen = false;
    this.stop('reconnect', 'flush');
    const c = this.conn;
    const err = new ChatError('closed', 'the client was closed');
    if (c) {
      this.onClose(this.gen, 1000, 'closed by the client');
      c.close(1000, '');
    } else this.setState('closed');
    for (const p of this.requests.values()) if (p.w) p.w.reject(err);
    this.requests.clear();
    rejectAll(Object.values(this.sendWaiters), err);
    this.sendWaiters = {};
    for (const waiters of Object.values(this.joinWaiters)) rejectAll(waiters, err);
    this.joinWaiters = {};
    this.settleConnect(err);
  }
}
