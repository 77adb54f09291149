// The SDK over the wx emulator against a real tongdao-server: the mini-program pitfalls.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ChatClient } from '../dist/esm/index.js';
import { createWx } from './wx-emulator.mjs';
import { startServer, serverBinary } from './server.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(what, fn, ms = 15000) {
  const end = Date.now() + ms;
  while (Date.now() < end) { if (fn()) return; await sleep(20); }
  throw new Error('timed out waiting for ' + what);
}
const skip = !serverBinary() && 'no tongdao-server';
let srv;
before(async () => { if (!skip) srv = await startServer(); });
after(async () => { if (srv) { await srv.kill('SIGTERM'); srv.cleanup(); } });

test('emulator: errMsg strings, send before open fails, no ping API', { skip }, async () => {
  const emu = createWx();
  try {
    const res = {};
    const task = emu.wx.connectSocket({ url: srv.url, protocols: ['tongdao.chat.v1'], success: (r) => { res.connect = r.errMsg; } });
    assert.equal(typeof task.ping, 'undefined');
    task.send({ data: 'x', fail: (r) => { res.early = r.errMsg; } });
    const opened = new Promise((r) => task.onOpen(r));
    await opened;
    const msgs = [];
    task.onMessage((m) => msgs.push(JSON.parse(m.data)));
    task.send({ data: JSON.stringify({ op: 'ping', id: 1 }), success: (r) => { res.send = r.errMsg; } });
    await until('ping reply', () => msgs.length === 1);
    const closed = new Promise((r) => task.onClose(r));
    task.close({ code: 1000, reason: 'bye', success: (r) => { res.close = r.errMsg; } });
    const c = await closed;
    assert.deepEqual(res, { connect: 'connectSocket:ok', early: 'sendSocketMessage:fail WebSocket is not connected', send: 'sendSocketMessage:ok', close: 'closeSocket:ok' });
    assert.equal(c.code, 1000);
    assert.equal(msgs[0].ok, true);
  } finally { emu.destroy(); }
});

test('close before onOpen: the SDK closes the task once it opens (no socket left behind)', { skip }, async () => {
  const emu = createWx();
  try {
    const chat = new ChatClient({ url: srv.url, name: 'early', wx: emu.wx, timers: emu.timers });
    chat.connect().catch(() => {});
    assert.equal(emu.tasks.size, 1);
    chat.close();
    assert.equal(chat.state, 'closed');
    await until('the task is closed after it opened', () => emu.tasks.size === 0);
    await sleep(200);
    assert.equal(emu.stats.connects, 1);
  } finally { emu.destroy(); }
});

test('the 5-socket cap: a refused connectSocket is retried with back-off until a slot frees', { skip }, async () => {
  const emu = createWx();
  const others = [];
  try {
    for (let i = 0; i < 5; i++) others.push(emu.wx.connectSocket({ url: srv.url }));
    const chat = new ChatClient({ url: srv.url, name: 'capped', wx: emu.wx, timers: emu.timers, backoff: { baseMs: 50, maxMs: 200 } });
    const errs = [];
    chat.on('error', (e) => errs.push(e.message));
    const p = chat.connect();
    await until('refusals', () => emu.stats.capRefusals >= 2);
    assert.ok(errs.some((m) => m === 'connectSocket:fail exceed max task count'), errs.join('; '));
    assert.notEqual(chat.state, 'open');
    await until('other tasks open', () => others.every((t) => t.readyState === 1));
    others[0].close({});
    await p;
    assert.equal(chat.state, 'open');
    chat.close();
  } finally { emu.destroy(); }
});

test('network lost and back: reconnects at once on onNetworkStatusChange; hello resumes the room', { skip }, async () => {
  const emu = createWx();
  try {
    const chat = new ChatClient({ url: srv.url, name: 'net', wx: emu.wx, timers: emu.timers, backoff: { baseMs: 20000, maxMs: 30000 } });
    const states = [];
    chat.on('state', (e) => states.push(e.state));
    await chat.connect();
    await chat.join('net-room');
    await chat.send('net-room', 'one');
    emu.setNetwork(false);
    await until('reconnecting', () => chat.state === 'reconnecting');
    const t0 = Date.now();
    emu.setNetwork(true);
    await until('open again', () => chat.state === 'open', 5000);
    assert.ok(Date.now() - t0 < 5000, 'did not wait for the 20 s back-off');
    const r = await chat.send('net-room', 'two');
    assert.equal(r.seq, 2);
    assert.deepEqual(states.slice(0, 3), ['connecting', 'open', 'reconnecting']);
    chat.close();
  } finally { emu.destroy(); }
});
