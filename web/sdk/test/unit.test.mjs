// SDK unit tests: node --test, a scripted transport (no network), fake timers and RNG.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChatClient } from '../dist/esm/index.js';
import { FakeTimers, FakeServer, flush, seeded, memStorage } from './fakes.mjs';

function make(server, over = {}) {
  const timers = over.timers || new FakeTimers();
  const storage = over.storage || memStorage();
  let n = 0;
  const chat = new ChatClient(Object.assign({
    url: 'ws://fake/chat', name: 'alice', transport: server.transport, storage, timers: timers.api,
    random: seeded(7), lifecycle: false, cid: () => 'cid-' + (over.cidPrefix || '') + (++n),
  }, over.options || {}));
  return { chat, timers, storage };
}

test('hello offers the sub-protocol, state events run connecting -> open', async () => {
  const s = new FakeServer();
  const { chat, timers } = make(s);
  const states = [];
  chat.on('state', (e) => states.push(e.state));
  const p = chat.connect();
  await timers.advance(1);
  await p;
  assert.deepEqual(s.current.protocols, ['tongdao.chat.v1']);
  assert.equal(s.requests('hello')[0].v, 1);
  assert.equal(s.requests('hello')[0].name, 'alice');
  assert.deepEqual(states, ['connecting', 'open']);
  chat.close();
  assert.equal(chat.state, 'closed');
  assert.deepEqual(states, ['connecting', 'open', 'closed']);
});

test('outbox: persisted synchronously, sent in order, resent with the same cid after a cut', async () => {
  const s = new FakeServer();
  const { chat, timers, storage } = make(s);
  chat.connect();
  await timers.advance(1);
  await chat.join('lobby');
  s.current.hold = true; // replies held back: nothing acked yet
  const ps = [chat.send('lobby', 'a'), chat.send('lobby', 'b'), chat.send('lobby', 'c')];
  const saved = JSON.parse(storage.getItem('tongdao-chat:alice:outbox'));
  assert.deepEqual(saved.map((x) => x.body), ['a', 'b', 'c']);
  assert.equal(chat.pending, 3);
  await flush();
  s.current.cut(); // the replies are lost
  await timers.advance(60000); // backoff, reconnect
  const results = await Promise.all(ps);
  const sends = s.requests('send');
  // one send per room in flight: cid-1 was sent (its reply lost), resent after the cut, then the others
  assert.deepEqual(sends.map((x) => x.cid), ['cid-1', 'cid-1', 'cid-2', 'cid-3']);
  assert.deepEqual(results.map((r) => [r.seq, r.duplicate]), [[1, true], [2, false], [3, false]]);
  assert.deepEqual(s.room('lobby').events.map((e) => e.body), ['a', 'b', 'c']); // stored once each
  assert.equal(chat.pending, 0);
  assert.deepEqual(JSON.parse(storage.getItem('tongdao-chat:alice:outbox')), []);
  chat.close();
});

test('dedupe: a stored event at or below the position is dropped; order kept', async () => {
  const s = new FakeServer();
  const { chat, timers } = make(s);
  const got = [];
  chat.on('message', (e) => got.push(e.seq));
  chat.connect();
  await timers.advance(1);
  await chat.join('r');
  s.post('r', 1); s.post('r', 2);
  await flush();
  const c = s.current;
  c.deliver(s.room('r').events[0]); // replayed
  c.deliver(s.room('r').events[1]);
  s.post('r', 3);
  await flush();
  assert.deepEqual(got, [1, 2, 3]);
  assert.deepEqual(chat.position('r'), { seq: 3, epoch: 'e1' });
  chat.close();
});

test('an unannounced seq hole: the event is not delivered, the client resumes from its position', async () => {
  const s = new FakeServer();
  const { chat, timers } = make(s);
  const got = [];
  chat.on('message', (e) => got.push(e.seq));
  chat.connect();
  await timers.advance(1);
  await chat.join('r');
  s.post('r', 1);
  await flush();
  // seq 2 is stored but the live copy "lost"; seq 3 arrives
  const r = s.room('r');
  r.events.push({ op: 'message', room: 'r', seq: 2, ts: 1, user: 'bob', name: 'bob', cid: 'k2', body: 2 });
  const ev3 = { op: 'message', room: 'r', seq: 3, ts: 1, user: 'bob', name: 'bob', cid: 'k3', body: 3 };
  r.events.push(ev3);
  s.current.deliver(ev3);
  await timers.advance(60000);
  assert.deepEqual(got, [1, 2, 3]);
  const hellos = s.requests('hello');
  assert.equal(hellos.length, 2);
  assert.deepEqual(hellos[1].rooms, [{ room: 'r', since: 1, epoch: 'e1' }]);
  chat.close();
});

test('gap events are surfaced and move the position (retention and epoch)', async () => {
  const s = new FakeServer();
  const { chat, timers } = make(s);
  const gaps = [];
  const got = [];
  chat.on('gap', (g) => gaps.push(g));
  chat.on('message', (e) => got.push(e.seq));
  chat.connect();
  await timers.advance(1);
  await chat.join('r');
  s.current.deliver({ op: 'gap', room: 'r', from: 1, to: 5, reason: 'retention' });
  s.current.deliver({ op: 'message', room: 'r', seq: 6, ts: 1, user: 'b', name: 'b', body: 'x' });
  await flush();
  assert.equal(gaps[0].reason, 'retention');
  assert.deepEqual(got, [6]);
  // the history is lost on the server: new epoch
  s.rooms.set('r', { epoch: 'e2', events: [] });
  s.post('r', 'new1');
  s.current.cut();
  await timers.advance(60000);
  assert.equal(gaps[1].reason, 'epoch');
  assert.deepEqual(got, [6, 1]);
  assert.deepEqual(chat.position('r'), { seq: 1, epoch: 'e2' });
  chat.close();
});

test('backoff: full jitter within [0, min(max, base*2^n)), reset after a stable period', async () => {
  const s = new FakeServer();
  const vals = [0.999, 0.5, 0.25, 0.999, 0.999, 0.999, 0.999, 0.999, 0.999];
  let i = 0;
  const timers = new FakeTimers();
  const chat = new ChatClient({ url: 'ws://x', name: 'a', transport: s.transport, storage: memStorage(), timers: timers.api, lifecycle: false,
    random: () => vals[i++ % vals.length], backoff: { baseMs: 100, maxMs: 1000, stableMs: 5000 } });
  assert.equal(chat.backoffDelay(0), Math.floor(0.999 * 100));
  assert.equal(chat.backoffDelay(1), Math.floor(0.5 * 200));
  assert.equal(chat.backoffDelay(3), Math.floor(0.25 * 800));
  assert.equal(chat.backoffDelay(10), Math.floor(0.999 * 1000));
  // property: with any random in [0,1) the delay is in [0, cap)
  const r = seeded(3);
  const c2 = new ChatClient({ url: 'ws://x', name: 'b', transport: s.transport, storage: memStorage(), timers: timers.api, lifecycle: false, random: r, backoff: { baseMs: 500, maxMs: 30000 } });
  for (let n = 0; n < 40; n++) {
    const d = c2.backoffDelay(n);
    assert.ok(d >= 0 && d < Math.min(30000, 500 * 2 ** n), `attempt ${n}: ${d}`);
  }
  // the server refuses to open: attempts grow; after a stable open they reset
  i = 0;
  s.autoOpen = false;
  chat.connect().catch(() => {});
  await flush();
  const opens = () => s.conns.length;
  s.current.cut();                 // attempt 0 -> delay 99
  await timers.advance(98); assert.equal(opens(), 1);
  await timers.advance(1); assert.equal(opens(), 2);
  s.current.cut();                 // attempt 1 -> delay floor(0.5*200)=100
  await timers.advance(99); assert.equal(opens(), 2);
  await timers.advance(1); assert.equal(opens(), 3);
  s.current.openNow();
  await timers.advance(5000);      // stable: attempt reset
  i = 0;
  s.current.cut();                 // attempt 0 again -> 99
  await timers.advance(99); assert.equal(opens(), 4);
  chat.close();
  c2.close();
});

test('heartbeat: ping after heartbeatMs of silence; no reply within deadAfterMs -> reconnect', async () => {
  const s = new FakeServer();
  const { chat, timers } = make(s, { options: { heartbeatMs: 25000, deadAfterMs: 8000 } });
  const states = [];
  chat.on('state', (e) => states.push(e.state));
  chat.connect();
  await timers.advance(1);
  await timers.advance(24990);
  assert.equal(s.requests('ping').length, 0);
  await timers.advance(20);
  assert.equal(s.requests('ping').length, 1); // answered: still the same socket
  assert.equal(s.conns.length, 1);
  s.silent = true; // the link dies silently: no close event, no reply
  await timers.advance(25000);
  assert.equal(s.requests('ping').length, 2);
  await timers.advance(7990);
  assert.equal(s.conns.length, 1);
  s.silent = false;
  await timers.advance(20); // dead: dropped, reconnect after a backoff
  assert.ok(states.includes('reconnecting'));
  await timers.advance(1000);
  assert.equal(s.conns.length, 2);
  assert.equal(chat.state, 'open');
  chat.close();
});

test('check() on app show: a short-deadline ping replaces a socket that died silently', async () => {
  const s = new FakeServer();
  let show;
  const timers = new FakeTimers();
  const chat = new ChatClient({ url: 'ws://x', name: 'a', transport: s.transport, storage: memStorage(), timers: timers.api, random: seeded(1),
    lifecycle: { onShow: (f) => { show = f; } }, checkMs: 2000 });
  chat.connect();
  await timers.advance(1);
  s.silent = true;
  show();
  assert.equal(s.requests('ping').length, 1);
  await timers.advance(2001);
  s.silent = false;
  await timers.advance(1000);
  assert.equal(s.conns.length, 2);
  assert.equal(chat.state, 'open');
  chat.close();
});

test('resume: several rooms in ONE hello with their positions', async () => {
  const s = new FakeServer();
  const { chat, timers } = make(s);
  const got = [];
  chat.on('message', (e) => got.push(e.room + e.seq));
  chat.connect();
  await timers.advance(1);
  await Promise.all([chat.join('a'), chat.join('b'), chat.join('c')]);
  s.post('a', 1); s.post('b', 1); s.post('b', 2);
  await flush();
  s.current.cut();
  s.post('a', 2); s.post('c', 1);
  await timers.advance(60000);
  const h = s.requests('hello');
  assert.equal(h.length, 2);
  assert.deepEqual(h[1].rooms, [{ room: 'a', since: 1, epoch: 'e1' }, { room: 'b', since: 2, epoch: 'e1' }, { room: 'c', since: 0, epoch: 'e1' }]);
  assert.equal(s.requests('join').length, 3); // no join after the resume
  assert.deepEqual(got, ['a1', 'b1', 'b2', 'a2', 'c1']);
  chat.close();
});

test('storage reload: a new client over the same storage sends the old outbox and reports it as sent', async () => {
  const s = new FakeServer();
  const storage = memStorage();
  const first = make(s, { storage });
  first.chat.connect();
  await first.timers.advance(1);
  await first.chat.join('lobby');
  s.post('lobby', 'before');
  await flush();
  s.silent = true;
  const lost = first.chat.send('lobby', 'survives');
  lost.catch(() => {});
  await flush();
  first.chat.close(); // the page reloads before the reply
  await assert.rejects(lost);
  s.silent = false;
  const second = make(s, { storage, cidPrefix: 'b' });
  assert.equal(second.chat.pending, 1);
  const sent = [];
  const msgs = [];
  second.chat.on('sent', (e) => sent.push(e));
  second.chat.on('message', (e) => msgs.push(e.body));
  second.chat.connect();
  await second.timers.advance(1);
  await flush();
  assert.deepEqual(s.requests('hello').at(-1).rooms, [{ room: 'lobby', since: 1, epoch: 'e1' }]);
  assert.equal(sent.length, 1);
  assert.equal(sent[0].cid, 'cid-1');
  assert.equal(sent[0].body, 'survives');
  assert.deepEqual(s.room('lobby').events.map((e) => e.body), ['before', 'survives']);
  assert.deepEqual(msgs, ['survives']);
  assert.equal(second.chat.pending, 0);
  second.chat.close();
});

test('4001 asks the token function again; a static token ends in closed', async () => {
  const s = new FakeServer();
  let asked = 0;
  const { chat, timers } = make(s, { options: { token: () => { asked++; return 'tok' + asked; } } });
  chat.connect();
  await timers.advance(1);
  assert.equal(s.requests('hello')[0].token, 'tok1');
  s.current.cut(4001, 'token expired');
  await timers.advance(60000);
  assert.equal(asked, 2);
  assert.equal(s.requests('hello')[1].token, 'tok2');
  chat.close();
  const s2 = new FakeServer();
  const b = make(s2, { options: { token: 'static' } });
  const errs = [];
  b.chat.on('error', (e) => errs.push(e.code));
  b.chat.connect();
  await b.timers.advance(1);
  s2.current.cut(4001, 'token expired');
  await b.timers.advance(60000);
  assert.equal(b.chat.state, 'closed');
  assert.equal(s2.conns.length, 1);
  assert.ok(errs.includes('unauthorized'));
});

test('1008 too many bad requests backs off at least maxMs/2', async () => {
  const s = new FakeServer();
  const { chat, timers } = make(s, { options: { backoff: { baseMs: 100, maxMs: 10000 } } });
  chat.connect();
  await timers.advance(1);
  s.current.cut(1008, 'too many bad requests');
  await timers.advance(4999);
  assert.equal(s.conns.length, 1);
  await timers.advance(10001);
  assert.equal(s.conns.length, 2);
  chat.close();
});

test('history, also through room(name)', async () => {
  const s = new FakeServer();
  const { chat, timers } = make(s);
  chat.connect();
  await timers.advance(1);
  for (let i = 1; i <= 10; i++) s.post('h', i);
  const page = await chat.room('h').history({ before: 6, limit: 3 });
  assert.deepEqual(page.events.map((e) => e.seq), [3, 4, 5]);
  chat.close();
});

test('miniTransport (uni shape): close before onOpen is done in onOpen; errMsg of a refused connect reaches error', async () => {
  const { miniTransport } = await import('../dist/esm/index.js');
  const log = [];
  let task;
  const uni = {
    connectSocket(o) {
      task = {
        l: {}, state: 0,
        onOpen(f) { this.l.open = f; }, onMessage(f) { this.l.message = f; }, onError(f) { this.l.error = f; }, onClose(f) { this.l.close = f; },
        send() {},
        close(c) { log.push('close:' + this.state); if (this.state === 1) { this.state = 3; this.l.close({ code: c.code, reason: c.reason }); } },
      };
      if (o.url === 'bad') Promise.resolve().then(() => o.fail({ errMsg: 'connectSocket:fail exceed max task count' }));
      return task;
    },
  };
  const t = miniTransport(uni, 'uni');
  const ev = [];
  const conn = t.connect('ws://x', ['tongdao.chat.v1'], { onOpen: () => ev.push('open'), onMessage: () => {}, onClose: (c) => ev.push('close:' + c), onError: (m) => ev.push('error:' + m) });
  conn.close(1000, 'bye'); // still connecting: nothing is called on the task yet
  assert.deepEqual(log, []);
  task.state = 1; task.l.open({});
  assert.deepEqual(log, ['close:1']);
  assert.deepEqual(ev, ['close:1000']); // never reported open
  const ev2 = [];
  t.connect('bad', [], { onOpen: () => {}, onMessage: () => {}, onClose: (c) => ev2.push('close:' + c), onError: (m) => ev2.push(m) });
  await flush();
  assert.deepEqual(ev2, ['connectSocket:fail exceed max task count', 'close:1006']);
});

test('transport detection: wx, then uni, then WebSocket', async () => {
  const { detectTransport } = await import('../dist/esm/index.js');
  const g = globalThis;
  const saved = { uni: g.uni, WebSocket: g.WebSocket };
  try {
    g.WebSocket = function () {};
    g.uni = undefined;
    assert.equal(detectTransport().name, 'websocket');
    g.uni = { connectSocket() {} };
    assert.equal(detectTransport().name, 'uni');
  } finally { g.uni = saved.uni; g.WebSocket = saved.WebSocket; }
});

test('rate_limited: retried after retryAfterMs with the same cid, and order holds', async () => {
  const s = new FakeServer();
  const { chat, timers } = make(s);
  chat.connect();
  await timers.advance(1);
  await chat.join('r');
  let refused = 0;
  const orig = s.current.handle.bind(s.current);
  s.current.handle = function (m) {
    if (m.op === 'send' && m.cid === 'cid-1' && refused === 0) {
      refused++;
      return this.toClient({ op: 'reply', id: m.id, ok: false, code: 'rate_limited', message: 'too many', retryAfterMs: 180 });
    }
    return orig(m);
  };
  const ps = [chat.send('r', 'a'), chat.send('r', 'b'), chat.send('r', 'c')];
  await timers.advance(100);
  assert.equal(s.room('r').events.length, 0);
  await timers.advance(100);
  await Promise.all(ps);
  assert.deepEqual(s.room('r').events.map((e) => e.body), ['a', 'b', 'c']);
  assert.deepEqual(s.requests('send').map((x) => x.cid), ['cid-1', 'cid-1', 'cid-2', 'cid-3']);
  chat.close();
});

test('sendWindow > 1 pipelines sends of a room', async () => {
  const s = new FakeServer();
  const { chat, timers } = make(s, { options: { sendWindow: 8 } });
  chat.connect();
  await timers.advance(1);
  await chat.join('r');
  s.current.hold = true;
  for (let i = 0; i < 10; i++) chat.send('r', i).catch(() => {});
  await flush();
  assert.equal(s.requests('send').length, 8);
  s.current.release();
  chat.close();
});

test('positions: written at most every persistMs, flushed on hide and close; the outbox at once', async () => {
  const s = new FakeServer();
  let hide;
  const timers = new FakeTimers();
  const storage = memStorage();
  const chat = new ChatClient({ url: 'ws://x', name: 'p', transport: s.transport, storage, timers: timers.api, random: seeded(1),
    lifecycle: { onHide: (f) => { hide = f; } }, persistMs: 250 });
  const saved = () => JSON.parse(storage.getItem('tongdao-chat:p')).positions.r.seq;
  chat.connect();
  await timers.advance(1);
  await chat.join('r');
  for (let i = 0; i < 5; i++) s.post('r', i);
  await flush();
  assert.equal(saved(), 0);
  await timers.advance(250);
  assert.equal(saved(), 5);
  s.post('r', 'x');
  await flush();
  hide();
  assert.equal(saved(), 6);
  s.post('r', 'y');
  await flush();
  chat.close();
  assert.equal(saved(), 7);
});
