// The chat page served on / by tongdao-server: sign in with a nickname (anonymous mode) or a
// token, rooms with unread counts, messages with scroll-back, compose, each message's state
// (sending, sent, read by others), who is online and typing, and the connection's state.
// Everything on the wire goes through the SDK (./sdk/, the ES module build of web/sdk).

import { bodyText, byId, clockTime, h, replaceChildren } from './dom.js';
import { openChat, tokenUser, type Chat, type ChatEvent } from './chat.js';

const IDENTITY_KEY = 'tongdao.page.identity';
const ROOM_KEY = 'tongdao.page.room';
const DEFAULT_ROOM = 'lobby';
const ROOM_RE = /^[A-Za-z0-9_.:-]{1,64}$/;
const PAGE = 50;

interface Identity {
  name: string;
  token: string;
}

interface Msg {
  seq?: number;
  cid?: string;
  user: string;
  name: string;
  ts?: number;
  body: unknown;
  edited: boolean;
  deleted: boolean;
  pending: boolean;
  failed?: string;
  el: HTMLLIElement;
}

interface Room {
  name: string;
  bySeq: Map<number, Msg>;
  byCid: Map<string, Msg>;
  list: HTMLOListElement;
  unread: number;
  /** The seq up to which `unread` is accounted for: a reply's count at its seq, then each later event. */
  countedTo: number;
  readSeq: number;
  lastSeq: number;
  more: boolean;
  loaded: boolean;
  loading: boolean;
  /** Others' read marks from `read` events: user -> {name, seq}. */
  marks: Map<string, { name: string; seq: number }>;
  typing: Map<string, { name: string; timer: number }>;
  online: Map<string, string>;
}

// --- elements ---------------------------------------------------------------------------------

const el = {
  banner: byId('banner'),
  retry: byId<HTMLButtonElement>('retry'),
  notice: byId('notice'),
  whoami: byId('whoami'),
  whoamiName: byId('whoami-name'),
  signout: byId<HTMLButtonElement>('signout'),
  login: byId('login'),
  loginForm: byId<HTMLFormElement>('login-form'),
  nickname: byId<HTMLInputElement>('nickname'),
  token: byId<HTMLInputElement>('token'),
  loginError: byId('login-error'),
  app: byId('app'),
  roomList: byId('room-list'),
  joinForm: byId<HTMLFormElement>('join-form'),
  roomName: byId<HTMLInputElement>('room-name'),
  onlineList: byId('online-list'),
  onlineTitle: byId('online-title'),
  roomTitle: byId('room-title'),
  roomOnline: byId('room-online'),
  log: byId('log'),
  logLists: byId('log-lists'),
  older: byId<HTMLButtonElement>('older'),
  jump: byId<HTMLButtonElement>('jump'),
  logStart: byId('log-start'),
  typing: byId('typing'),
  compose: byId<HTMLFormElement>('compose'),
  message: byId<HTMLTextAreaElement>('message'),
};

// --- state ------------------------------------------------------------------------------------

let chat: Chat | null = null;
let me = '';
let active: Room | null = null;
const rooms = new Map<string, Room>();
let lastTypingSent = 0; // when this page last said "typing" (0: it said it stopped)
let lastTypingAt = 0; // when the last active:true went, stopped or not
let typingTimer = 0;
let readTimer = 0;

function room(name: string): Room {
  let r = rooms.get(name);
  if (!r) {
    r = {
      name, bySeq: new Map(), byCid: new Map(),
      list: h('ol', { class: 'messages', 'aria-label': `Messages in ${name}` }),
      unread: 0, countedTo: 0, readSeq: 0, lastSeq: 0, more: false, loaded: false, loading: false,
      marks: new Map(), typing: new Map(), online: new Map(),
    };
    rooms.set(name, r);
    renderRooms();
  }
  return r;
}

// --- connection banner ------------------------------------------------------------------------

function showState(state: string, detail?: string): void {
  const text: Record<string, string> = {
    idle: 'Not connected',
    connecting: 'Connecting…',
    open: 'Connected',
    reconnecting: 'Connection lost — reconnecting…',
    offline: 'Offline — reconnecting…',
    closed: 'Disconnected',
  };
  const kind = state === 'open' ? 'open' : state === 'connecting' ? 'connecting' : state === 'idle' || state === 'closed' ? 'idle' : 'offline';
  el.banner.dataset.state = kind;
  el.retry.hidden = state !== 'reconnecting';
  document.body.dataset.conn = kind;
  // Presence events missed while away: ask again once back.
  if (state === 'open' && active) void loadPresence(active);
  el.banner.textContent = (text[state] ?? state) + (detail ? ` (${detail})` : '');
}

let noticeTimer = 0;

/** A problem worth telling, for a few seconds (not the connection's: the banner has that). */
function notify(text: string): void {
  el.notice.textContent = text;
  el.notice.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = window.setTimeout(() => { el.notice.hidden = true; }, 8000);
}

// --- messages ---------------------------------------------------------------------------------

function nearBottom(): boolean {
  const l = el.log;
  return l.scrollHeight - l.scrollTop - l.clientHeight < 48;
}

function scrollToBottom(): void {
  el.log.scrollTop = el.log.scrollHeight;
}

function stateOf(r: Room, m: Msg): { state: string; text: string } {
  if (m.failed) return { state: 'failed', text: `Not sent: ${m.failed}` };
  if (m.pending || m.seq === undefined) return { state: 'sending', text: 'Sending…' };
  const readers: string[] = [];
  for (const [user, mark] of r.marks) if (user !== me && mark.seq >= m.seq) readers.push(mark.name);
  if (readers.length === 0) return { state: 'sent', text: 'Sent' };
  readers.sort();
  const shown = readers.length <= 3 ? readers.join(', ') : `${readers.slice(0, 3).join(', ')} and ${readers.length - 3} more`;
  return { state: 'read', text: `Read by ${shown}` };
}

function renderMsg(r: Room, m: Msg): void {
  const mine = m.user === me;
  const li = m.el;
  const cont = li.classList.contains('cont');
  li.className = `msg${mine ? ' mine' : ''}${m.deleted ? ' deleted' : ''}${cont ? ' cont' : ''}`;
  if (m.seq !== undefined) li.dataset.seq = String(m.seq);
  else delete li.dataset.seq;
  li.dataset.user = m.user;
  if (m.ts) li.dataset.ts = String(m.ts);
  const meta = h('div', { class: 'meta' },
    h('span', { class: 'author' }, mine ? `${m.name} (you)` : m.name),
    m.ts ? h('time', { datetime: new Date(m.ts).toISOString() }, clockTime(m.ts)) : null,
    m.edited && !m.deleted ? h('span', { class: 'edited' }, 'edited') : null);
  const text = h('p', { class: 'text' }, m.deleted ? 'Message deleted' : bodyText(m.body));
  let state: HTMLElement | null = null;
  if (mine) {
    const s = stateOf(r, m);
    state = h('span', { class: 'state', 'data-state': s.state }, s.text);
  }
  replaceChildren(li, meta, text, state);
}

/** An own message's state shows only where it differs from the next own message's (a run of
 * "Read by bob" reads once, on its last message). */
function tidyStates(r: Room): void {
  let after: string | null = null;
  for (let c = r.list.lastElementChild; c; c = c.previousElementSibling) {
    const span = c.querySelector<HTMLElement>('.state');
    if (!span) continue;
    const text = span.textContent;
    span.classList.toggle('same', text === after);
    after = text;
  }
}

function refreshMine(r: Room): void {
  for (const m of r.bySeq.values()) {
    if (m.user !== me) continue;
    const s = stateOf(r, m);
    const span = m.el.querySelector<HTMLElement>('.state');
    if (span && span.textContent !== s.text) {
      span.textContent = s.text;
      span.dataset.state = s.state;
    }
  }
  tidyStates(r);
}

const GROUP_MS = 5 * 60 * 1000;

/** Consecutive messages of one author within 5 minutes show the author and time once. */
function regroup(li: Element | null): void {
  if (!li || !(li instanceof HTMLElement) || !li.classList.contains('msg')) return;
  const prev = li.previousElementSibling as HTMLElement | null;
  const cont = !!prev && prev.classList.contains('msg') && prev.dataset.user === li.dataset.user &&
    Math.abs(Number(li.dataset.ts || Date.now()) - Number(prev.dataset.ts || Date.now())) < GROUP_MS;
  li.classList.toggle('cont', cont);
}

function inserted(li: Element): void {
  regroup(li);
  regroup(li.nextElementSibling);
}

/** Puts a stored message at its seq's place: after every smaller seq, before pending ones. */
function place(r: Room, m: Msg): void {
  const seq = m.seq as number;
  let before: Element | null = null;
  for (let c = r.list.lastElementChild; c; c = c.previousElementSibling) {
    const s = (c as HTMLElement).dataset.seq;
    const pending = (c as HTMLElement).dataset.pending === '1';
    if (pending || (s !== undefined && Number(s) > seq) || (s === undefined && (c as HTMLElement).dataset.before !== undefined && Number((c as HTMLElement).dataset.before) > seq)) before = c;
    else break;
  }
  const next = m.el.nextElementSibling;
  r.list.insertBefore(m.el, before);
  inserted(m.el);
  regroup(next); // the one it left
  if (m.user === me) tidyStates(r);
}

interface StoredMessage {
  seq: number;
  ts?: number;
  user: string;
  name?: string;
  cid?: string;
  body: unknown;
  edited?: boolean;
  deleted?: boolean;
}

/** A stored `message` (live, caught up or from history); false when it was already shown. */
function addMessage(r: Room, ev: StoredMessage): boolean {
  if (r.bySeq.has(ev.seq)) return false;
  const wasBottom = r === active && nearBottom();
  const mine = ev.user === me && ev.cid ? r.byCid.get(ev.cid) : undefined;
  if (mine && mine.seq === undefined) {
    settle(r, mine, ev.seq, ev.ts);
    if (wasBottom) scrollToBottom();
    return true;
  }
  const m: Msg = {
    seq: ev.seq, cid: ev.cid, user: ev.user, name: ev.name || ev.user, ts: ev.ts, body: ev.body,
    edited: !!ev.edited, deleted: !!ev.deleted, pending: false, el: h('li', {}),
  };
  if (ev.cid && ev.user === me) r.byCid.set(ev.cid, m);
  r.bySeq.set(ev.seq, m);
  renderMsg(r, m);
  place(r, m);
  if (r === active && wasBottom) scrollToBottom();
  return true;
}

function addNotice(r: Room, text: string, beforeSeq: number): void {
  const li = h('li', { class: 'notice' }, text);
  li.dataset.before = String(beforeSeq);
  let before: Element | null = null;
  for (let c = r.list.lastElementChild; c; c = c.previousElementSibling) {
    const s = (c as HTMLElement).dataset.seq;
    if ((c as HTMLElement).dataset.pending === '1' || (s !== undefined && Number(s) >= beforeSeq)) before = c;
    else break;
  }
  r.list.insertBefore(li, before);
}

/** One of this page's sends was stored (its reply, or its event first): show it at its seq. */
function settle(r: Room, m: Msg, seq: number, ts: number | undefined): void {
  if (m.seq !== undefined) return;
  m.pending = false;
  m.failed = undefined;
  delete m.el.dataset.pending;
  const next = m.el.nextElementSibling;
  m.el.remove();
  regroup(next);
  if (seq > r.lastSeq) r.lastSeq = seq;
  if (r.bySeq.has(seq)) return; // shown already
  m.seq = seq;
  m.ts = ts;
  r.bySeq.set(seq, m);
  renderMsg(r, m);
  place(r, m);
  if (r === active) scrollToBottom();
}

function onEvent(ev: ChatEvent): void {
  switch (ev.op) {
    case 'sent': {
      const r = room(ev.room);
      const m = r.byCid.get(ev.cid);
      if (m) settle(r, m, ev.seq, ev.ts);
      break;
    }
    case 'message': {
      const r = room(ev.room);
      if (ev.seq > r.lastSeq) r.lastSeq = ev.seq;
      const added = addMessage(r, ev);
      const uncounted = ev.seq > r.countedTo;
      if (uncounted) r.countedTo = ev.seq;
      if (added && uncounted && ev.user !== me && ev.seq > r.readSeq) {
        if (r === active && !nearBottom()) el.jump.hidden = false;
        if (r === active && canSeeBottom()) scheduleRead();
        else {
          r.unread += 1;
          renderRooms();
        }
      }
      const t = r.typing.get(ev.user);
      if (t) {
        clearTimeout(t.timer);
        r.typing.delete(ev.user);
        if (r === active) renderTyping();
      }
      break;
    }
    case 'edit':
    case 'delete': {
      const r = room(ev.room);
      if (ev.seq > r.lastSeq) r.lastSeq = ev.seq;
      const m = r.bySeq.get(ev.target);
      if (m) {
        if (ev.op === 'edit') {
          m.body = ev.body;
          m.edited = true;
        } else {
          m.deleted = true;
          m.body = null;
        }
        renderMsg(r, m);
      }
      break;
    }
    case 'read': {
      const r = room(ev.room);
      if (ev.user === me) {
        if (ev.seq > r.readSeq) r.readSeq = ev.seq;
        let unread = 0;
        for (const m of r.bySeq.values()) if (m.user !== me && !m.deleted && (m.seq as number) > r.readSeq) unread += 1;
        if (unread < r.unread || r.readSeq >= r.lastSeq) {
          r.unread = unread;
          renderRooms();
        }
      } else {
        const old = r.marks.get(ev.user);
        if (!old || ev.seq > old.seq) r.marks.set(ev.user, { name: ev.name || old?.name || ev.user, seq: ev.seq });
        refreshMine(r);
      }
      break;
    }
    case 'typing': {
      if (ev.user === me) break;
      const r = room(ev.room);
      const t = r.typing.get(ev.user);
      if (t) clearTimeout(t.timer);
      if (ev.active === false) r.typing.delete(ev.user);
      else {
        const timer = window.setTimeout(() => {
          r.typing.delete(ev.user);
          if (r === active) renderTyping();
        }, ev.expiresMs || 5000);
        r.typing.set(ev.user, { name: ev.name || ev.user, timer });
      }
      if (r === active) renderTyping();
      break;
    }
    case 'presence': {
      const r = room(ev.room);
      if (ev.state === 'join') r.online.set(ev.user, ev.name || ev.user);
      else r.online.delete(ev.user);
      if (r === active) renderOnline();
      break;
    }
    case 'gap': {
      const r = room(ev.room);
      if (ev.reason === 'epoch') {
        // The room's history was lost and began again: what is shown belongs to the old one.
        r.bySeq.clear();
        r.byCid.clear();
        replaceChildren(r.list);
        r.lastSeq = 0;
        r.readSeq = 0;
        addNotice(r, 'This room’s history was reset on the server.', 1);
      } else {
        addNotice(r, `Messages ${ev.from}–${ev.to} are no longer kept.`, (ev.to ?? 0) + 1);
      }
      break;
    }
  }
}

// --- reading, typing, presence ----------------------------------------------------------------

function canSeeBottom(): boolean {
  return document.visibilityState === 'visible' && nearBottom();
}

function scheduleRead(): void {
  if (readTimer) return;
  readTimer = window.setTimeout(() => {
    readTimer = 0;
    markRead();
  }, 150);
}

function markRead(): void {
  const r = active;
  if (!r || !chat || !canSeeBottom()) return;
  if (r.lastSeq > r.readSeq || r.unread > 0) {
    const seq = r.lastSeq;
    if (seq > r.readSeq) {
      r.readSeq = seq;
      chat.read(r.name, seq).catch(() => { /* the next one carries it */ });
    }
    r.unread = 0;
    r.countedTo = Math.max(r.countedTo, seq);
    renderRooms();
  }
}

function renderTyping(): void {
  const r = active;
  const names = r ? [...r.typing.values()].map((t) => t.name).sort() : [];
  el.typing.textContent =
    names.length === 0 ? '' :
    names.length === 1 ? `${names[0]} is typing…` :
    names.length <= 3 ? `${names.join(', ')} are typing…` : 'Several people are typing…';
}

function renderOnline(): void {
  const r = active;
  const people = r ? [...r.online.entries()].sort((a, b) => a[1].localeCompare(b[1])) : [];
  replaceChildren(el.onlineList, ...people.map(([user, name]) => h('li', {}, user === me ? `${name} (you)` : name)));
  el.onlineTitle.textContent = r ? `Online (${people.length})` : 'Online';
  const names = people.slice(0, 5).map((p) => p[1]).join(', ') + (people.length > 5 ? ` and ${people.length - 5} more` : '');
  el.roomOnline.textContent = r ? `${people.length} online${people.length ? ': ' + names : ''}` : '';
}

async function loadPresence(r: Room): Promise<void> {
  if (!chat) return;
  try {
    const p = await chat.presence(r.name);
    r.online.clear();
    for (const u of p.users) r.online.set(u.user, u.name || u.user);
    if (r === active) renderOnline();
  } catch { /* shown as it was */ }
}

// --- rooms --------------------------------------------------------------------------------------

/** The server's count of unread messages at `seq` (a join or rooms reply), unless newer is known. */
function setUnread(r: Room, unread: number, seq: number): void {
  if (seq < r.countedTo) return;
  r.unread = unread;
  r.countedTo = seq;
}

function renderRooms(): void {
  const names = [...rooms.keys()].sort();
  replaceChildren(el.roomList, ...names.map((name) => {
    const r = rooms.get(name) as Room;
    const b = h('button', {
      type: 'button', 'aria-current': r === active ? 'true' : undefined,
      'aria-label': r.unread > 0 ? `${name} (${r.unread} unread)` : name,
    },
      h('span', { class: 'name' }, name),
      r.unread > 0 ? h('span', { class: 'badge' }, String(r.unread)) : null);
    b.addEventListener('click', () => activate(r));
    return h('li', {}, b);
  }));
  const total = [...rooms.values()].reduce((n, r) => n + r.unread, 0);
  document.title = total > 0 ? `(${total}) tongdao chat` : 'tongdao chat';
}

async function joinRoom(name: string, focus: boolean): Promise<void> {
  if (!chat) return;
  const r = room(name);
  try {
    const rep = await chat.join(name);
    r.readSeq = Math.max(r.readSeq, rep.readSeq);
    r.lastSeq = Math.max(r.lastSeq, rep.seq);
    if (r !== active) setUnread(r, rep.unread, rep.seq);
    renderRooms();
  } catch (e) {
    notify(`Could not join ${name}: ${errText(e)}`);
    return;
  }
  if (focus || !active) await activate(r);
  else void loadPresence(r);
}

/** Composing needs a room: until one is open, the box and its button are disabled. */
function setComposable(on: boolean): void {
  el.message.disabled = !on;
  const send = el.compose.querySelector<HTMLButtonElement>('button[type="submit"]');
  if (send) send.disabled = !on;
}

async function activate(r: Room): Promise<void> {
  active = r;
  setComposable(true);
  localStorage.setItem(ROOM_KEY, r.name);
  el.roomTitle.textContent = `# ${r.name}`;
  replaceChildren(el.logLists, r.list);
  el.log.setAttribute('aria-label', `Messages in ${r.name}`);
  renderRooms();
  renderTyping();
  renderOnline();
  el.jump.hidden = true;
  updateOlder(r);
  scrollToBottom();
  void loadPresence(r);
  if (!r.loaded) await loadOlder(r, true);
  scrollToBottom();
  markRead();
}

function updateOlder(r: Room): void {
  if (r !== active) return;
  const hadFocus = document.activeElement === el.older;
  el.older.hidden = !r.more;
  if (hadFocus && el.older.hidden) el.log.focus(); // not lost to the body
  el.logStart.hidden = !r.loaded || r.more || r.bySeq.size === 0;
}

/** Scroll-back: the page of history before the oldest message shown (or the latest page). */
async function loadOlder(r: Room, first = false): Promise<void> {
  if (!chat || r.loading) return;
  r.loading = true;
  el.older.disabled = true;
  try {
    const oldest = r.bySeq.size ? Math.min(...r.bySeq.keys()) : 0;
    const res = await chat.history(r.name, first || !oldest ? { limit: PAGE } : { before: oldest, limit: PAGE });
    const log = el.log;
    const fromBottom = log.scrollHeight - log.scrollTop;
    for (const ev of res.events) {
      if (ev.op === 'message') {
        addMessage(r, ev);
        if (ev.seq > r.lastSeq) r.lastSeq = ev.seq;
      }
    }
    if (!first && r === active) log.scrollTop = log.scrollHeight - fromBottom; // keep the view still
    r.more = !!res.more || (first && res.events.length > 0 && ((res.events[0] as { seq?: number }).seq ?? 0) > (res.oldest ?? 1));
    r.loaded = true;
  } catch (e) {
    notify(`Could not load the history of ${r.name}: ${errText(e)}`);
  } finally {
    r.loading = false;
    el.older.disabled = false;
    updateOlder(r);
  }
}

// --- compose ------------------------------------------------------------------------------------

function sendCurrent(): void {
  const r = active;
  const text = el.message.value;
  if (!chat || !r || text.trim() === '') return;
  el.message.value = '';
  autosize();
  const body = { text };
  const m: Msg = {
    user: me, name: me, body, edited: false, deleted: false, pending: true, el: h('li', {}),
  };
  m.el.dataset.pending = '1';
  renderMsg(r, m);
  r.list.appendChild(m.el);
  inserted(m.el);
  tidyStates(r);
  scrollToBottom();
  const sent = chat.send(r.name, body);
  m.cid = sent.cid;
  r.byCid.set(sent.cid, m);
  sent.done.then((rep) => settle(r, m, rep.seq, rep.ts), (e: unknown) => {
    if (m.seq !== undefined) return;
    m.failed = errText(e);
    renderMsg(r, m);
    tidyStates(r);
  });
  if (typingTimer) clearTimeout(typingTimer);
  typingTimer = 0;
  if (lastTypingSent) {
    lastTypingSent = 0;
    chat.typing(r.name, false);
  }
}

function autosize(): void {
  const t = el.message;
  t.style.height = 'auto';
  t.style.height = `${Math.min(t.scrollHeight + 2, 140)}px`;
}

// --- sign in and out ----------------------------------------------------------------------------

function errText(e: unknown): string {
  if (e && typeof e === 'object') {
    const o = e as { code?: string; message?: string };
    if (o.message) return o.message;
    if (o.code) return o.code;
  }
  return String(e);
}

function savedIdentity(): Identity | null {
  try {
    const v = JSON.parse(localStorage.getItem(IDENTITY_KEY) || 'null') as Identity | null;
    return v && (v.name || v.token) ? v : null;
  } catch {
    return null;
  }
}

function showLogin(error = ''): void {
  el.app.hidden = true;
  el.whoami.hidden = true;
  el.login.hidden = false;
  el.loginError.textContent = error;
  el.nickname.focus();
}

async function start(id: Identity): Promise<void> {
  el.loginError.textContent = '';
  if (chat) chat.close(); // a second Connect while the first still tries
  showState('connecting');
  const fromToken = id.token ? tokenUser(id.token) : null;
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/chat`;
  const c = openChat({ url, name: id.name, token: id.token, user: fromToken ? fromToken.user : '' }, onEvent,
    (s, detail) => { if (chat === c) showState(s, detail); });
  chat = c;
  try {
    await c.connect();
  } catch (e) {
    if (chat !== c) return; // replaced meanwhile
    c.close();
    chat = null;
    showState('idle');
    localStorage.removeItem(IDENTITY_KEY);
    showLogin(`Could not sign in: ${errText(e)}`);
    return;
  }
  if (chat !== c) return;
  me = fromToken ? fromToken.user : id.name;
  localStorage.setItem(IDENTITY_KEY, JSON.stringify(id));
  el.whoamiName.textContent = `Signed in as ${fromToken ? fromToken.name : id.name}`;
  el.login.hidden = true;
  el.app.hidden = false;
  el.whoami.hidden = false;
  let mine: { room: string; unread: number; readSeq: number; seq: number }[] = [];
  try {
    mine = await c.rooms();
  } catch { /* start with the default room */ }
  for (const x of mine) {
    const r = room(x.room);
    setUnread(r, x.unread, x.seq);
    r.readSeq = Math.max(r.readSeq, x.readSeq);
    r.lastSeq = Math.max(r.lastSeq, x.seq);
  }
  renderRooms();
  const want = localStorage.getItem(ROOM_KEY) || DEFAULT_ROOM;
  const names = new Set([...mine.map((x) => x.room), want]);
  await Promise.all([...names].map((n) => joinRoom(n, n === want)));
  el.message.focus();
}

function signOut(): void {
  if (chat) chat.close();
  chat = null;
  me = '';
  active = null;
  setComposable(false);
  rooms.clear();
  replaceChildren(el.logLists);
  renderRooms();
  localStorage.removeItem(IDENTITY_KEY);
  localStorage.removeItem(ROOM_KEY);
  showState('idle');
  showLogin();
}

// --- wiring -------------------------------------------------------------------------------------

el.loginForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const name = el.nickname.value.trim();
  const token = el.token.value.trim();
  if (!name && !token) {
    el.loginError.textContent = 'Enter a nickname or a token.';
    el.nickname.focus();
    return;
  }
  void start({ name, token });
});

el.signout.addEventListener('click', signOut);
el.retry.addEventListener('click', () => chat?.reconnectNow());
window.addEventListener('online', () => chat?.reconnectNow());

el.joinForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const name = el.roomName.value.trim();
  if (!ROOM_RE.test(name)) {
    el.roomName.setCustomValidity('1–64 letters, digits, _ . : -');
    el.roomName.reportValidity();
    return;
  }
  el.roomName.setCustomValidity('');
  el.roomName.value = '';
  const r = rooms.get(name);
  if (r && chat) void activate(r);
  else void joinRoom(name, true);
});
el.roomName.addEventListener('input', () => el.roomName.setCustomValidity(''));

el.compose.addEventListener('submit', (e) => {
  e.preventDefault();
  sendCurrent();
});

el.message.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    sendCurrent();
  }
});

el.message.addEventListener('input', () => {
  autosize();
  typingTick();
});

/** Tells the room this user types: at most one `typing` every 2.1 s (the server passes one per
 * 2 s and drops the rest), the next one sent when the window ends if the box still has text. */
function typingTick(): void {
  const r = active;
  if (!chat || !r) return;
  const now = Date.now();
  if (el.message.value === '') {
    if (typingTimer) clearTimeout(typingTimer);
    typingTimer = 0;
    if (lastTypingSent) chat.typing(r.name, false);
    lastTypingSent = 0;
    return;
  }
  const wait = lastTypingAt + 2100 - now;
  if (wait <= 0) {
    lastTypingAt = lastTypingSent = now;
    chat.typing(r.name, true);
  } else if (!typingTimer) {
    typingTimer = window.setTimeout(() => { typingTimer = 0; typingTick(); }, wait);
  }
}

el.older.addEventListener('click', () => {
  if (active) void loadOlder(active);
});

el.log.addEventListener('scroll', () => {
  if (active && el.log.scrollTop < 24 && active.more && !active.loading) void loadOlder(active);
  if (nearBottom()) {
    el.jump.hidden = true;
    scheduleRead();
  }
});

el.jump.addEventListener('click', () => {
  scrollToBottom();
  el.jump.hidden = true;
  el.message.focus();
  markRead();
});

document.addEventListener('visibilitychange', scheduleRead);
// Leaving (or reloading): close the client, which writes its room positions at once (it batches
// them otherwise). Back from the back-forward cache, start again.
window.addEventListener('pagehide', () => { if (chat) chat.close(); });
window.addEventListener('pageshow', (e) => { if (e.persisted) location.reload(); });
window.addEventListener('focus', scheduleRead);

setComposable(false);
const saved = savedIdentity();
if (saved) {
  el.nickname.value = saved.name;
  el.token.value = saved.token;
  void start(saved);
} else {
  showLogin();
}
