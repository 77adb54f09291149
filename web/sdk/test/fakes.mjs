// Test doubles for the SDK unit tests: fake timers/clock, a seeded RNG, and a scripted
// transport backed by a tiny in-memory model of tongdao-server (PROTOCOL.md) whose every
// frame can be inspected, held back, dropped or cut.

export class FakeTimers {
  constructor() { this.t = 1000; this.q = []; this.nextId = 1; }
  now() { return this.t; }
  setTimeout(fn, ms) { const id = this.nextId++; this.q.push({ id, at: this.t + Math.max(0, ms | 0), fn }); return id; }
  clearTimeout(id) { this.q = this.q.filter((x) => x.id !== id); }
  /** Advance the clock by ms, running due timers in order (and microtasks between them). */
  async advance(ms) {
    const end = this.t + ms;
    for (;;) {
      await flush();
      this.q.sort((a, b) => a.at - b.at || a.id - b.id);
      const next = this.q[0];
      if (!next || next.at > end) break;
      this.q.shift();
      this.t = next.at;
      next.fn();
    }
    this.t = end;
    await flush();
  }
  get api() { return { now: () => this.now(), setTimeout: (f, m) => this.setTimeout(f, m), clearTimeout: (h) => this.clearTimeout(h) }; }
}

export async function flush() { for (let i = 0; i < 20; i++) await Promise.resolve(); }

export function seeded(seed = 1) {
  let s = seed >>> 0;
  return () => { s = (s * 1664525 + 1013904223) >>> 0; return s / 0x100000000; };
}

export function memStorage() {
  const m = new Map();
  return { map: m, getItem: (k) => (m.has(k) ? m.get(k) : null), setItem: (k, v) => m.set(k, String(v)), removeItem: (k) => m.delete(k) };
}

/** An in-memory chat server model; connections come through `transport`. */
export class FakeServer {
  constructor() {
    this.rooms = new Map(); // name -> {epoch, events: []}
    this.cids = new Map(); // user|cid -> reply
    this.conns = [];
    this.log = []; // every request received: {conn, msg}
    this.autoOpen = true;
    this.silent = false; // when true, requests get no reply (a dead link)
  }
  room(name) {
    if (!this.rooms.has(name)) this.rooms.set(name, { epoch: 'e1', events: [] });
    return this.rooms.get(name);
  }
  /** Store an event as another user would, delivering it live. */
  post(name, body, user = 'bob') {
    const r = this.room(name);
    const ev = { op: 'message', room: name, seq: r.events.length + 1, ts: 1, user, name: user, cid: 'x' + Math.random(), body };
    r.events.push(ev);
    for (const c of this.conns) if (c.open && c.joined.has(name)) c.deliver(ev);
    return ev;
  }
  get transport() {
    const server = this;
    return {
      name: 'fake',
      connect(url, protocols, h) {
        const c = new FakeConn(server, h, protocols);
        server.conns.push(c);
        if (server.autoOpen) Promise.resolve().then(() => c.openNow());
        return { send: (d) => c.fromClient(d), close: (code, reason) => c.clientClose(code, reason) };
      },
    };
  }
  get current() { return this.conns[this.conns.length - 1]; }
  requests(op) { return this.log.filter((x) => x.msg.op === op).map((x) => x.msg); }
}

class FakeConn {
  constructor(server, h, protocols) {
    this.server = server; this.h = h; this.protocols = protocols;
    this.open = false; this.closed = false; this.joined = new Set(); this.user = null; this.sent = [];
    this.hold = false; // true: frames to the client are queued in this.held
    this.held = [];
  }
  openNow() { if (this.closed) return; this.open = true; this.h.onOpen(); }
  toClient(obj) {
    if (this.closed) return;
    this.sent.push(obj);
    if (this.hold) this.held.push(obj);
    else this.h.onMessage(JSON.stringify(obj));
  }
  release() { const q = this.held; this.held = []; this.hold = false; for (const o of q) this.h.onMessage(JSON.stringify(o)); }
  deliver(ev) { this.toClient(ev); }
  cut(code = 1006, reason = 'abnormal closure') { if (this.closed) return; this.closed = true; this.open = false; this.h.onClose(code, reason); }
  clientClose(code, reason) { if (this.closed) return; this.closed = true; this.open = false; Promise.resolve().then(() => this.h.onClose(code || 1000, reason || '')); }
  fromClient(d) {
    if (!this.open || this.closed) return false;
    const m = JSON.parse(d);
    this.server.log.push({ conn: this, msg: m });
    if (this.server.silent) return true;
    Promise.resolve().then(() => this.handle(m));
    return true;
  }
  joinReply(name, since, epoch) {
    const r = this.server.room(name);
    const seq = r.events.length;
    const rep = { ok: true, room: name, seq, epoch: r.epoch, recovered: true, oldest: 1, unread: 0, readSeq: seq };
    const after = [];
    if (since !== undefined) {
      if (epoch && epoch !== r.epoch) { rep.recovered = false; after.push({ op: 'gap', room: name, reason: 'epoch', epoch: r.epoch }); since = 0; }
      for (const e of r.events) if (e.seq > since) after.push(e);
    }
    this.joined.add(name);
    return { rep, after };
  }
  handle(m) {
    const S = this.server;
    const reply = (x) => this.toClient(Object.assign({ op: 'reply', id: m.id }, x));
    switch (m.op) {
      case 'hello': {
        this.user = m.name || 'anon';
        const rooms = []; const after = [];
        for (const e of m.rooms || []) { const j = this.joinReply(e.room, e.since, e.epoch); rooms.push(j.rep); after.push(...j.after); }
        reply({ ok: true, user: this.user, name: this.user, server: {}, rooms });
        for (const e of after) this.toClient(e);
        return;
      }
      case 'join': { const j = this.joinReply(m.room, m.since, m.epoch); reply(j.rep); for (const e of j.after) this.toClient(e); return; }
      case 'ping': return reply({ ok: true, ts: 1 });
      case 'send': {
        const key = this.user + '|' + m.cid;
        if (S.cids.has(key)) return reply(Object.assign({}, S.cids.get(key), { duplicate: true }));
        if (!this.joined.has(m.room)) return reply({ ok: false, code: 'not_joined', message: 'join first' });
        const r = S.room(m.room);
        const ev = { op: 'message', room: m.room, seq: r.events.length + 1, ts: 2, user: this.user, name: this.user, cid: m.cid, body: m.body };
        r.events.push(ev);
        const rep = { ok: true, seq: ev.seq, ts: ev.ts };
        S.cids.set(key, rep);
        reply(rep);
        for (const c of S.conns) if (c.open && c.joined.has(m.room) && !(c === this && m.excludeSelf)) c.deliver(ev);
        return;
      }
      case 'history': {
        const r = S.room(m.room); const lim = m.limit || 50;
        let ev = r.events;
        if (m.before) ev = ev.filter((e) => e.seq < m.before).slice(-lim);
        else if (m.after !== undefined) ev = ev.filter((e) => e.seq > m.after).slice(0, lim);
        else ev = ev.slice(-lim);
        return reply({ ok: true, room: m.room, seq: r.events.length, epoch: r.epoch, oldest: 1, more: false, events: ev });
      }
      case 'leave': this.joined.delete(m.room); return reply({ ok: true });
      default: return reply({ ok: true });
    }
  }
}
