// The page's one door to the SDK (./sdk/, a copy of web/sdk's ES module build): the calls and
// events the page uses, in the shapes it wants.

import { ChatClient, makeCid, type StoredEvent } from './sdk/index.js';

export interface MessageEvent { op: 'message'; room: string; seq: number; ts?: number; user: string; name?: string; cid?: string; body: unknown; edited?: boolean; deleted?: boolean }
export interface EditEvent { op: 'edit'; room: string; seq: number; ts?: number; user: string; name?: string; target: number; body: unknown }
export interface DeleteEvent { op: 'delete'; room: string; seq: number; ts?: number; user: string; name?: string; target: number }
export interface ReadEvent { op: 'read'; room: string; user: string; name?: string; seq: number }
export interface TypingEvent { op: 'typing'; room: string; user: string; name?: string; active?: boolean; expiresMs?: number }
export interface PresenceEvent { op: 'presence'; room: string; user: string; name?: string; state: 'join' | 'leave'; count?: number }
export interface GapEvent { op: 'gap'; room: string; from?: number; to?: number; reason: string; epoch?: string }
/** What the page gets when the SDK acknowledges a send (also one resent from a stored outbox). */
export interface SentEvent { op: 'sent'; room: string; cid: string; seq: number; ts: number; body: unknown }
export type ChatEvent = MessageEvent | EditEvent | DeleteEvent | ReadEvent | TypingEvent | PresenceEvent | GapEvent | SentEvent;

export interface JoinInfo { seq: number; readSeq: number; unread: number }
export interface HistoryPage { events: ChatEvent[]; more: boolean; oldest: number }
export interface RoomInfo { room: string; seq: number; readSeq: number; unread: number }

export interface Chat {
  /** Resolves once the server accepted hello. */
  connect(): Promise<void>;
  join(room: string): Promise<JoinInfo>;
  /** Queues the message in the SDK's outbox (persisted); `cid` is known at once. */
  send(room: string, body: unknown): { cid: string; done: Promise<{ seq: number; ts: number }> };
  history(room: string, q: { before?: number; limit?: number }): Promise<HistoryPage>;
  read(room: string, seq: number): Promise<unknown>;
  typing(room: string, active: boolean): void;
  presence(room: string): Promise<{ count: number; users: { user: string; name?: string }[] }>;
  rooms(): Promise<RoomInfo[]>;
  /** Waiting in back-off: try now; connected: check the socket with a ping. */
  reconnectNow(): void;
  close(): void;
}

function toEvent(e: StoredEvent): ChatEvent {
  return e as unknown as ChatEvent;
}

export function openChat(
  opts: { url: string; name: string; token: string; user: string },
  onEvent: (ev: ChatEvent) => void,
  onState: (state: string, detail?: string) => void,
): Chat {
  let lastCid = '';
  const c = new ChatClient({
    url: opts.url,
    name: opts.token ? undefined : opts.name,
    token: opts.token || undefined,
    // One storage key per identity: positions and the outbox are the user's.
    storageKey: opts.token ? `tongdao-chat:sub:${opts.user || 'unknown'}` : `tongdao-chat:${opts.name}`,
    cid: () => (lastCid = makeCid()),
  });
  c.on('message', (e) => onEvent(toEvent(e)));
  c.on('edit', (e) => onEvent(toEvent(e)));
  c.on('delete', (e) => onEvent(toEvent(e)));
  c.on('read', (e) => onEvent(e));
  c.on('typing', (e) => onEvent(e));
  c.on('presence', (e) => onEvent(e));
  c.on('gap', (e) => onEvent(e as GapEvent));
  c.on('sent', (e) => onEvent({ op: 'sent', room: e.room, cid: e.cid, seq: e.seq, ts: e.ts, body: e.body }));
  c.on('state', (e) => onState(e.state, e.state === 'reconnecting' && e.reason ? e.reason : undefined));
  return {
    connect: () => c.connect(),
    join: (room) => c.join(room),
    send(room, body) {
      const done = c.send(room, body);
      return { cid: lastCid, done };
    },
    history: async (room, q) => {
      const p = await c.history(room, q);
      return { events: p.events.map(toEvent), more: p.more, oldest: p.oldest };
    },
    read: (room, seq) => c.read(room, seq),
    typing: (room, active) => { c.typing(room, active).catch(() => undefined); },
    presence: (room) => c.presence(room),
    rooms: () => c.rooms(),
    reconnectNow: () => c.check(),
    close: () => c.close(),
  };
}

/** The user id a token names (its `sub`), read without checking it: the server checks. */
export function tokenUser(token: string): { user: string; name: string } | null {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = decodeURIComponent(Array.from(atob(part), (ch) => '%' + ch.charCodeAt(0).toString(16).padStart(2, '0')).join(''));
    const claims = JSON.parse(json) as { sub?: unknown; name?: unknown };
    if (typeof claims.sub !== 'string') return null;
    return { user: claims.sub, name: typeof claims.name === 'string' ? claims.name : claims.sub };
  } catch {
    return null;
  }
}
