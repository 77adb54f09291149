'use strict';
// Interop: Node's `ws` (npm, the repository's node_modules) as the client of interop_server.
//
//   node node_client_test.js PATH/TO/interop_server        (or INTEROP_SERVER=...)
//
// Exit 0 all passed, 1 a check failed, 77 the peer is missing.

const crypto = require('crypto');
const ic = require('./interop_common.js');

const WebSocket = ic.requirePeer('ws');
const wsVersion = require(require('path').join(ic.repoRoot, 'node_modules', 'ws', 'package.json')).version;

/** A ws client with a queue of received messages and a promise of its close event. */
class Client {
  constructor(url, protocols) {
    this.ws = new WebSocket(url, protocols, { maxPayload: 64 << 20, handshakeTimeout: 20000 });
    this.queue = [];
    this.waiters = [];
    this.pongs = [];
    this.ws.on('message', (data, isBinary) => {
      const m = { data: Buffer.isBuffer(data) ? data : Buffer.concat(data), isBinary };
      const w = this.waiters.shift();
      if (w) w(m);
      else this.queue.push(m);
    });
    this.ws.on('pong', (data) => this.pongs.push(Buffer.from(data)));
    this.closed = new Promise((resolve) => {
      this.ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() }));
    });
    this.errors = [];
    this.ws.on('error', (e) => this.errors.push(e));
  }

  open() {
    return new Promise((resolve, reject) => {
      if (this.ws.readyState === WebSocket.OPEN) return resolve(this);
      this.ws.once('open', () => resolve(this));
      this.ws.once('error', reject);
      this.ws.once('unexpected-response', (req, res) => reject(new Error(`unexpected response ${res.statusCode}`)));
    });
  }

  recv() {
    if (this.queue.length) return Promise.resolve(this.queue.shift());
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  send(data, options = {}) {
    return new Promise((resolve, reject) => this.ws.send(data, options, (e) => (e ? reject(e) : resolve())));
  }

  terminate() {
    if (this.ws.readyState !== WebSocket.CLOSED) this.ws.terminate();
  }
}

async function main() {
  const binary = ic.serverPath();
  const checks = new ic.Checks(`node ws ${wsVersion}`);
  const server = await ic.startServer(binary);
  const base = `ws://127.0.0.1:${server.port}`;
  const client = async (p = '/echo', protocols = undefined) => new Client(base + p, protocols).open();

  try {
    const roundTrip = (messages) => async () => {
      const c = await client();
      try {
        for (const m of messages) {
          const binary = Buffer.isBuffer(m);
          await c.send(m, { binary });
          const got = await c.recv();
          ic.expectEq(got.isBinary, binary, 'message type');
          const want = binary ? m : Buffer.from(m, 'utf8');
          ic.expect(got.data.equals(want), `echo of a ${want.length}-byte message differs`);
        }
        c.ws.close(1000);
        ic.expectEq(await c.closed, { code: 1000, reason: '' }, 'close after echo');
      } finally {
        c.terminate();
      }
    };

    await checks.run('text round-trip', roundTrip(['hello', '通道 héllo ✓ 😀', 'x'.repeat(125), 'y'.repeat(126), 'z'.repeat(65536)]));
    await checks.run('binary round-trip', roundTrip([Buffer.from([...Array(256).keys()]), Buffer.from([0]), crypto.randomBytes(70000)]));
    await checks.run('empty text and binary', roundTrip(['', Buffer.alloc(0)]));
    await checks.run('1 MiB text and binary', roundTrip(['abcdefgh'.repeat(131072), crypto.randomBytes(1 << 20)]));
    await checks.run('16 MiB binary (the limit)', roundTrip([crypto.randomBytes(16 << 20)]), 60000);
    await checks.run('16 MiB text (the limit)', roundTrip(['t'.repeat(16 << 20)]), 60000);

    await checks.run('fragmented message echoed whole', async () => {
      const c = await client();
      try {
        c.send('frag-one ', { fin: false });
        c.send('frag-two ', { fin: false });
        await c.send('frag-three', { fin: true });
        let got = await c.recv();
        ic.expectEq([got.isBinary, got.data.toString()], [false, 'frag-one frag-two frag-three'], 'fragmented text echo');
        c.send(Buffer.from([1, 2]), { binary: true, fin: false });
        c.send(Buffer.alloc(0), { binary: true, fin: false });
        await c.send(Buffer.alloc(70000, 3), { binary: true, fin: true });
        got = await c.recv();
        ic.expect(got.isBinary && got.data.equals(Buffer.concat([Buffer.from([1, 2]), Buffer.alloc(70000, 3)])),
          'fragmented binary echo differs');
        c.ws.close(1000);
        await c.closed;
      } finally {
        c.terminate();
      }
    });

    await checks.run('ping with payload answered by pong', async () => {
      const c = await client();
      try {
        const payload = Buffer.from('ping-payload-123');
        const pong = new Promise((resolve) => c.ws.once('pong', resolve));
        c.ws.ping(payload);
        ic.expect(Buffer.from(await pong).equals(payload), 'pong payload differs from the ping');
        await c.send('after ping');
        ic.expectEq((await c.recv()).data.toString(), 'after ping', 'echo after ping');
        c.ws.close(1000);
        await c.closed;
      } finally {
        c.terminate();
      }
    });

    const subprotocol = (offer, want) => async () => {
      const c = await client('/echo', offer);
      try {
        ic.expectEq(c.ws.protocol, want, `sub-protocol for offer ${JSON.stringify(offer)}`);
        await c.send('hi');
        ic.expectEq((await c.recv()).data.toString(), 'hi', 'echo');
        c.ws.close(1000);
        await c.closed;
      } finally {
        c.terminate();
      }
    };
    await checks.run("sub-protocol ['chat','superchat'] -> superchat", subprotocol(['chat', 'superchat'], 'superchat'));
    await checks.run("sub-protocol ['chat','other'] -> chat", subprotocol(['chat', 'other'], 'chat'));
    await checks.run('no sub-protocol offered -> none', subprotocol(undefined, ''));

    await checks.run('rejected upgrade -> 403 (unexpected-response)', async () => {
      const ws = new WebSocket(`${base}/reject`);
      ws.on('error', () => {}); // aborting the request below may report one
      const { status, body } = await new Promise((resolve, reject) => {
        ws.once('open', () => reject(new Error('/reject accepted the upgrade')));
        ws.once('unexpected-response', (req, res) => {
          let b = '';
          res.on('data', (c) => { b += c; });
          res.on('end', () => { resolve({ status: res.statusCode, body: b }); req.destroy(); });
        });
      });
      ic.expectEq(status, 403, 'status');
      ic.expect(body.includes('forbidden'), `reason in the body: ${JSON.stringify(body)}`);
    });

    await checks.run('oversize on /small -> 1009', async () => {
      const c = await client('/small');
      try {
        await c.send(Buffer.alloc(1024, 7), { binary: true });
        ic.expect((await c.recv()).data.equals(Buffer.alloc(1024, 7)), '1024 bytes on /small not echoed');
        await c.send(Buffer.alloc(1025, 7), { binary: true });
        ic.expectEq((await c.closed).code, 1009, 'close code for 1025 bytes on /small');
      } finally {
        c.terminate();
      }
    });

    await checks.run('oversize fragmented message on /small -> 1009', async () => {
      const c = await client('/small');
      try {
        c.send('a'.repeat(600), { fin: false });
        await c.send('b'.repeat(600), { fin: true });
        ic.expectEq((await c.closed).code, 1009, 'close code for 1200 bytes in two fragments on /small');
      } finally {
        c.terminate();
      }
    });

    const clientClose = (code, reason) => async () => {
      const c = await client();
      try {
        await c.send('before close');
        ic.expectEq((await c.recv()).data.toString(), 'before close', 'echo');
        c.ws.close(code, reason);
        ic.expectEq(await c.closed, { code, reason }, 'close code/reason the server echoed');
      } finally {
        c.terminate();
      }
    };
    await checks.run("client close 1000 'done'", clientClose(1000, 'done'));
    await checks.run("client close 4000 'bye'", clientClose(4000, 'bye'));
    await checks.run('client close 1001 with a 123-byte reason', clientClose(1001, 'r'.repeat(123)));

    const serverClose = (text, want) => async () => {
      const c = await client('/close');
      try {
        await c.send(text);
        ic.expectEq(await c.closed, want, `close after ${JSON.stringify(text)}`);
      } finally {
        c.terminate();
      }
    };
    await checks.run("server close '4001 bye' -> 4001 bye", serverClose('4001 bye', { code: 4001, reason: 'bye' }));
    await checks.run("server close '1000 ' -> 1000, empty reason", serverClose('1000 ', { code: 1000, reason: '' }));
    await checks.run("server close '3000 通道' -> 3000 通道", serverClose('3000 通道', { code: 3000, reason: '通道' }));

    await checks.run('server abort -> 1006', async () => {
      const c = await client('/abort');
      try {
        await c.send('go');
        ic.expectEq((await c.closed).code, 1006, 'close code after the server dropped TCP');
      } finally {
        c.terminate();
      }
    });

    await checks.run('metrics: no connection left open', () => ic.expectAllClosed(server.port));
    await checks.run('server exits 0 on SIGTERM', async () => {
      ic.expect(server.alive(), 'server died during the run');
      ic.expectEq(await server.stop(), 0, 'exit status after SIGTERM');
    });
  } finally {
    await server.stop();
  }
  return checks.finish();
}

main().then((code) => process.exit(code), (e) => {
  console.log(`FAIL: ${e && e.stack ? e.stack : e}`);
  process.exit(1);
});
