// The SDK through the wx emulator against a real tongdao-server, in the chat server's loss
// scenario: clients in shared rooms sending a few thousand messages while connections are cut,
// apps hidden and shown (sockets cut silently after 5 s), and the server killed with SIGKILL and
// restarted on the same port and data dir. At the end every member has every message of its
// rooms exactly once and in seq order, and every send was acked exactly once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChatClient } from '../dist/esm/index.js';
import { createWx } from './wx-emulator.mjs';
import { startServer, serverBinary } from './server.mjs';

const CLIENTS = Number(process.env.SDK_LOSS_CLIENTS || 6);
const PER_ROOM = Number(process.env.SDK_LOSS_PER_ROOM || 250); // per client and room
const ROOMS = ['r0', 'r1', 'r2'];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, fn, ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) { if (fn()) return; await sleep(50); }
  throw new Error('timed out waiting for ' + what);
}

test('loss: cuts, hide/show, SIGKILL + restart: exactly once, in order', { skip: !serverBinary() && 'no tongdao-server', timeout: 280000 }, async () => {
  let srv = await startServer();
  const clients = [];
  try {
    for (let i = 0; i < CLIENTS; i++) {
      const emu = createWx();
      const rooms = [ROOMS[i % 3], ROOMS[(i + 1) % 3]];
      const chat = new ChatClient({ url: srv.url, name: 'u' + i, wx: emu.wx, timers: emu.timers,
        heartbeatMs: 4000, deadAfterMs: 3000, checkMs: 1500, backoff: { baseMs: 100, maxMs: 1500, stableMs: 3000 } });
      const c = { i, emu, chat, rooms, got: {}, acks: new Map(), sentCids: {}, errors: [] };
      for (const r of rooms) { c.got[r] = []; c.sentCids[r] = []; }
      chat.on('message', (e) => c.got[e.room].push(e));
      chat.on('sent', (e) => c.acks.set(e.cid, (c.acks.get(e.cid) || 0) + 1));
      chat.on('gap', (g) => c.errors.push('gap ' + JSON.stringify(g)));
      clients.push(c);
    }
    await Promise.all(clients.map((c) => c.chat.connect()));
    await Promise.all(clients.map((c) => Promise.all(c.rooms.map((r) => c.chat.join(r)))));

    let stop = false;
    const promises = [];
    const senders = clients.map(async (c) => {
      for (let k = 0; k < PER_ROOM; k++) {
        while (c.emu.hidden) await sleep(20); // a hidden app runs no code
        for (const r of c.rooms) {
          const p = c.chat.send(r, { from: c.i, k });
          promises.push(p.then((res) => ({ c, r, res })));
        }
        await sleep(70); // about 20 s of sending, under the chaos below
      }
    });
    const chaos = (async () => {
      let n = 0;
      let killed = 0;
      while (!stop) {
        await sleep(400);
        if (stop) break;
        n++;
        const c = clients[n % clients.length];
        if (n % 7 === 3) {
          c.emu.hide();
          setTimeout(() => c.emu.show(), 5600 + (n % 3) * 300); // past the 5 s cut
        } else if (n === 6 || n === 25) {
          killed++;
          await srv.kill('SIGKILL');
          await sleep(300);
          srv = await srv.restart();
        } else c.emu.cut();
      }
      return killed;
    })();
    await Promise.all(senders);
    let guard;
    const results = await Promise.race([
      Promise.all(promises),
      new Promise((_, rej) => { guard = setTimeout(() => rej(new Error('sends not all acked: pending ' + clients.map((c) => c.chat.pending).join(','))), 150000); }),
    ]);
    clearTimeout(guard);
    stop = true;
    const killed = await chaos;
    for (const c of clients) c.emu.show();

    const total = {};
    for (const r of ROOMS) total[r] = clients.filter((c) => c.rooms.includes(r)).length * PER_ROOM;
    await until('every member has every message', () => clients.every((c) => c.rooms.every((r) => c.got[r].length >= total[r])), 120000);
    await sleep(300);

    for (const r of ROOMS) {
      const cids = new Set();
      for (const { c, r: rr, res } of results) if (rr === r) { assert.ok(!cids.has(res.cid)); cids.add(res.cid); }
      assert.equal(cids.size, total[r]);
      for (const c of clients.filter((x) => x.rooms.includes(r))) {
        const got = c.got[r];
        assert.equal(got.length, total[r], `u${c.i} in ${r}: ${got.length} of ${total[r]}`);
        got.forEach((e, idx) => assert.equal(e.seq, idx + 1, `u${c.i} ${r}: event ${idx} has seq ${e.seq}`));
        assert.deepEqual(new Set(got.map((e) => e.cid)), cids);
        // each sender's own messages in the order it sent them
        for (const s of clients) {
          const ks = got.filter((e) => e.user === 'u' + s.i).map((e) => e.body.k);
          for (let x = 1; x < ks.length; x++) assert.ok(ks[x] > ks[x - 1], `u${s.i}'s messages out of order in ${r}`);
        }
      }
    }
    for (const c of clients) {
      assert.equal(c.chat.pending, 0);
      for (const [cid, n] of c.acks) assert.equal(n, 1, `cid ${cid} acked ${n} times`);
      assert.equal(c.acks.size, PER_ROOM * c.rooms.length);
      assert.deepEqual(c.errors, []);
    }
    const cuts = clients.reduce((a, c) => a + c.emu.stats.silentCuts, 0);
    const connects = clients.reduce((a, c) => a + c.emu.stats.connects, 0);
    console.log(`# loss: ${results.length} sends, ${killed} server kills, ${cuts} silent cuts, ${connects} connects`);
    assert.equal(killed, 2);
    assert.ok(cuts >= 1);
  } finally {
    for (const c of clients) { c.chat.close(); c.emu.destroy(); }
    await srv.kill('SIGTERM');
    srv.cleanup();
  }
});
