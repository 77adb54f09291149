'use strict';
// permessage-deflate window sizes (RFC 7692 §7.1.2) against Node's `ws`, both ways:
//
// - the ws client with perMessageDeflate { serverMaxWindowBits: 9..15 } (with and without
//   clientMaxWindowBits) against interop_server in its shared and its dedicated mode: the
//   101 must name that window and large compressible messages must round-trip. ws inflates
//   with exactly the window agreed on, so a server that compressed with a larger one breaks
//   the echo ("invalid distance too far back");
// - serverMaxWindowBits: 8, which zlib cannot honour: declined, the connection uncompressed;
// - tongdao's own client (client_probe) against a ws server with serverMaxWindowBits and
//   clientMaxWindowBits N, for every N from 9 to 15.
//
// Wire bytes are counted by a relay to prove compression.
//
//   node node_deflate_windows_test.js PATH/TO/interop_server        (or INTEROP_SERVER=...)
//
// client_probe is taken from $CLIENT_PROBE, else beside interop_server.
// Exit 0 all passed, 1 a check failed, 77 the peer is missing.

const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const { execFile } = require('child_process');
const ic = require('./interop_common.js');

const WebSocket = ic.requirePeer('ws');
const wsVersion = require(path.join(ic.repoRoot, 'node_modules', 'ws', 'package.json')).version;
const MIB = 1 << 20;

/** About n bytes of repetitive JSON: chat messages that differ in a counter only. */
function jsonText(n) {
  const parts = [];
  let size = 0;
  for (let i = 0; size < n; i++) {
    const p = JSON.stringify({ id: i % 1000, room: 'lobby', user: `u${i % 7}`, text: 'hello, channel' });
    parts.push(p);
    size += p.length + 1;
  }
  return `[${parts.join(',')}]`.slice(0, n - 1) + ']';
}

/** Random 1.5 KiB blocks of letters, each four times: matches beyond a 9- or 10-bit window. */
function farRepeats(n) {
  const out = Buffer.alloc(n);
  for (let at = 0; at < n;) {
    const block = Buffer.from(crypto.randomBytes(1536).map((b) => 97 + (b % 26)));
    for (let r = 0; r < 4 && at < n; r++) at += block.copy(out, at, 0, Math.min(block.length, n - at));
  }
  return out;
}

/** A ws client with a queue of received messages and a promise of its close event. */
class Client {
  constructor(url, perMessageDeflate) {
    this.ws = new WebSocket(url, { maxPayload: 64 << 20, handshakeTimeout: 20000, perMessageDeflate });
    this.queue = [];
    this.waiters = [];
    this.agreed = null; // the 101's Sec-WebSocket-Extensions
    this.ws.on('upgrade', (res) => { this.agreed = res.headers['sec-websocket-extensions'] || ''; });
    this.ws.on('message', (data, isBinary) => {
      const m = { data: Buffer.isBuffer(data) ? data : Buffer.concat(data), isBinary };
      const w = this.waiters.shift();
      if (w) w(m);
      else this.queue.push(m);
    });
    this.closed = new Promise((resolve) => {
      this.ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() }));
    });
    this.ws.on('error', () => {}); // reported through open() or the close event
  }

  open() {
    return new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve(this));
      this.ws.once('error', reject);
      this.ws.once('unexpected-response', (req, res) => reject(new Error(`unexpected response ${res.statusCode}`)));
    });
  }

  /** The next message, or the close (as an error) if the connection ends first. */
  recv() {
    if (this.queue.length) return Promise.resolve(this.queue.shift());
    return Promise.race([
      new Promise((resolve) => this.waiters.push(resolve)),
      this.closed.then((c) => { throw new Error(`closed ${c.code} ${c.reason}`); }),
    ]);
  }

  send(data, options = {}) {
    return new Promise((resolve, reject) => this.ws.send(data, options, (e) => (e ? reject(e) : resolve())));
  }

  async close() {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.close(1000);
    if (this.ws.readyState !== WebSocket.CLOSED) await ic.withTimeout(this.closed, 20000, 'close');
  }
}

function runProbe(probe, args, timeoutMs = 90000) {
  return new Promise((resolve) => {
    execFile(probe, args, { timeout: timeoutMs, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      resolve({ code: err ? (err.code ?? err.signal) : 0, out: stdout + stderr });
    });
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function main() {
  const binary = ic.serverPath();
  const probe = process.env.CLIENT_PROBE || path.join(path.dirname(binary), 'client_probe');
  fs.accessSync(probe, fs.constants.X_OK);
  const checks = new ic.Checks(`node ws ${wsVersion}: permessage-deflate windows 9 to 15`);
  const bigJson = jsonText(MIB);
  const far = farRepeats(256 * 1024);

  // --- the ws client against interop_server ---------------------------------------------------
  for (const mode of ['shared', 'dedicated']) {
    const server = await ic.startServer(binary, ['--deflate', mode]);
    const relay = await ic.startRelay(server.port);
    const url = `ws://127.0.0.1:${relay.port}/echo`;
    try {
      for (let bits = 9; bits <= 15; bits++) {
        for (const clientBits of [true, false]) {
          const tag = `[${mode}] serverMaxWindowBits ${bits}${clientBits ? ', clientMaxWindowBits' : ''}`;
          await checks.run(`${tag}: agreed, round trips within the window`, async () => {
            const pmd = { serverMaxWindowBits: bits, threshold: 0 };
            if (clientBits) pmd.clientMaxWindowBits = true;
            const c = await new Client(url, pmd).open();
            try {
              ic.expectEq(c.ws.extensions, 'permessage-deflate', 'ws.extensions');
              ic.expect(c.agreed.includes(`server_max_window_bits=${bits}`), `101 says '${c.agreed}'`);
              if (mode === 'shared') {
                ic.expect(c.agreed.includes('server_no_context_takeover') && c.agreed.includes('client_no_context_takeover'),
                  `shared mode must ask for no context takeover both ways: '${c.agreed}'`);
              }
              const wire = [];
              for (const m of ['hello', bigJson, far, Buffer.from(bigJson), crypto.randomBytes(70000), far]) {
                const binary = Buffer.isBuffer(m);
                await sleep(30);
                const before = relay.counts();
                await c.send(m, { binary, compress: true });
                const got = await c.recv();
                ic.expect(got.data.equals(binary ? m : Buffer.from(m)), `echo of ${m.length} units differs`);
                await sleep(30);
                const after = relay.counts();
                wire.push([after.up - before.up, after.down - before.down]);
              }
              ic.expect(wire[1][0] < bigJson.length / 4 && wire[1][1] < bigJson.length / 4,
                `1 MiB of JSON cost [${wire[1]}] (up, down) wire bytes`);
              ic.expect(wire[2][0] < far.length && wire[2][1] < far.length, `far repeats cost [${wire[2]}]`);
              await c.close();
              ic.expectEq((await c.closed).code, 1000, 'close code');
              return `'${c.agreed}'; 1 MiB JSON down ${wire[1][1]} B, 256 KiB far repeats down ${wire[2][1]} B`;
            } finally {
              if (c.ws.readyState !== WebSocket.CLOSED) c.ws.terminate();
            }
          }, 60000);
        }
      }

      await checks.run(`[${mode}] serverMaxWindowBits 8: declined, uncompressed`, async () => {
        const c = await new Client(url, { serverMaxWindowBits: 8, clientMaxWindowBits: true }).open();
        try {
          ic.expectEq(c.agreed, '', 'Sec-WebSocket-Extensions');
          ic.expectEq(c.ws.extensions, '', 'ws.extensions');
          await c.send(bigJson);
          ic.expect((await c.recv()).data.toString() === bigJson, 'echo differs');
          return 'uncompressed';
        } finally {
          await c.close();
        }
      });

      await checks.run(`[${mode}] pub/sub to subscribers of every window`, async () => {
        // Widest first: a frame made for the first subscriber on a loop must not reach the
        // narrower ones after it. Plus one without deflate; the publisher asks for 11 bits.
        const purl = `ws://127.0.0.1:${server.port}/pubsub`;
        const subs = [];
        try {
          for (let bits = 15; bits >= 9; bits--) {
            for (let i = 0; i < 2; i++) {
              const c = await new Client(purl, { serverMaxWindowBits: bits, clientMaxWindowBits: true, threshold: 0 }).open();
              ic.expect(c.agreed.includes(`server_max_window_bits=${bits}`), `101 says '${c.agreed}'`);
              subs.push([bits, c]);
            }
          }
          subs.push([null, await new Client(purl, false).open()]);
          const publisher = await new Client(purl, { serverMaxWindowBits: 11, threshold: 0 }).open();
          subs.push(['publisher', publisher]);
          await sleep(300); // every open handler (the subscribe) has run
          for (const m of [bigJson, far, crypto.randomBytes(5000)]) {
            const binary = Buffer.isBuffer(m);
            await publisher.send(m, { binary, compress: true });
            ic.expectEq((await publisher.recv()).data.toString(), 'published', "publisher's answer");
            for (const [bits, c] of subs) {
              if (c === publisher) continue;
              const got = await c.recv();
              ic.expect(got.data.equals(binary ? m : Buffer.from(m)), `subscriber with window ${bits}: ${m.length} units differ`);
            }
          }
          return `${subs.length - 1} subscribers, 3 messages each`;
        } finally {
          for (const [, c] of subs) await c.close();
        }
      }, 60000);

      await checks.run(`[${mode}] server exits 0 on SIGTERM`, async () => {
        ic.expect(server.alive(), 'server died during the run');
        ic.expectEq(await server.stop(), 0, 'exit status after SIGTERM');
      });
    } finally {
      await relay.close();
      await server.stop();
    }
  }

  // --- tongdao's client against a ws server holding both directions to N bits ---------------------
  const payloadTotal = 5 + 256 + MIB + MIB + 65536; // what client_probe sends, and gets back
  for (let bits = 9; bits <= 15; bits++) {
    await checks.run(`tongdao client -> ws server, windows of ${bits} bits both ways`, async () => {
      const wss = new WebSocket.Server({
        host: '127.0.0.1', port: 0, maxPayload: 64 << 20,
        perMessageDeflate: { serverMaxWindowBits: bits, clientMaxWindowBits: bits, threshold: 0 },
      });
      await new Promise((resolve) => wss.on('listening', resolve));
      wss.on('connection', (ws) => {
        ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
        ws.on('error', () => {});
      });
      const relay = await ic.startRelay(wss.address().port);
      try {
        const { code, out } = await runProbe(probe, [`ws://127.0.0.1:${relay.port}/`, '--deflate']);
        const { up, down } = relay.counts();
        ic.expectEq(code, 0, `client_probe exit status; output:\n${out}`);
        const first = out.trim().split('\n')[0];
        ic.expect(first.includes(`server_max_window_bits=${bits}`) && first.includes(`client_max_window_bits=${bits}`),
          `the 101: ${first}`);
        ic.expect(up < payloadTotal / 4 && down < payloadTotal / 4, `up ${up}, down ${down} wire bytes`);
        return `${first}; up ${up} B, down ${down} B`;
      } finally {
        await relay.close();
        for (const c of wss.clients) c.terminate();
        await new Promise((resolve) => wss.close(resolve));
      }
    }, 120000);
  }
  return checks.finish();
}

main().then((code) => process.exit(code), (e) => {
  console.log(`FAIL: ${e && e.stack ? e.stack : e}`);
  process.exit(1);
});
