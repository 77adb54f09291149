'use strict';
// Interop over ws:// and wss:// with permessage-deflate (RFC 7692) against Node's `ws`, both ways:
//
// - the ws client (perMessageDeflate: true) against interop_server in its shared and its
//   dedicated deflate mode, over ws:// and over wss:// (the throwaway test CA given as `ca`);
// - tongdao's own client (client_probe) against a ws server with perMessageDeflate: true,
//   over ws:// and wss:// (an https server with the test certificate).
//
// Compression is proven on the wire with a byte-counting TCP relay between the peers.
//
//   node node_deflate_tls_test.js PATH/TO/interop_server        (or INTEROP_SERVER=...)
//
// client_probe is taken from $CLIENT_PROBE, else beside interop_server.
// Exit 0 all passed, 1 a check failed, 77 the peer is missing.

const crypto = require('crypto');
const fs = require('fs');
const https = require('https');
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

/** A ws client with a queue of received messages and a promise of its close event. */
class Client {
  constructor(url, options = {}) {
    this.ws = new WebSocket(url, { maxPayload: 64 << 20, handshakeTimeout: 20000, perMessageDeflate: true, ...options });
    this.queue = [];
    this.waiters = [];
    this.agreed = null; // the 101's Sec-WebSocket-Extensions (ws.extensions gives the names only)
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

  async close() {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.close(1000);
    if (this.ws.readyState !== WebSocket.CLOSED) await ic.withTimeout(this.closed, 20000, 'close');
  }

  terminate() {
    if (this.ws.readyState !== WebSocket.CLOSED) this.ws.terminate();
  }
}

function probePath() {
  const p = process.env.CLIENT_PROBE || path.join(path.dirname(ic.serverPath()), 'client_probe');
  fs.accessSync(p, fs.constants.X_OK);
  return p;
}

function runProbe(probe, args, timeoutMs = 90000) {
  return new Promise((resolve) => {
    execFile(probe, args, { timeout: timeoutMs, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      resolve({ code: err ? (err.code ?? err.signal) : 0, out: stdout + stderr });
    });
  });
}

async function main() {
  const binary = ic.serverPath();
  const probe = probePath();
  const certs = ic.makeCerts();
  const ca = fs.readFileSync(certs.ca);
  const checks = new ic.Checks(`node ws ${wsVersion}: deflate over ws:// and wss://`);

  // --- the ws client against interop_server ---------------------------------------------------
  for (const mode of ['shared', 'dedicated']) {
    const server = await ic.startServer(binary, ['--deflate', mode, ...certs.serverArgs]);
    const relays = { ws: await ic.startRelay(server.port), wss: await ic.startRelay(server.tlsPort) };
    try {
      for (const scheme of ['ws', 'wss']) {
        const relay = relays[scheme];
        const tag = `[${mode}, ${scheme}://]`;
        const base = `${scheme}://127.0.0.1:${relay.port}`;
        const tlsOptions = scheme === 'wss' ? { ca } : {};
        const client = async (p = '/echo', options = {}) => new Client(base + p, { ...tlsOptions, ...options }).open();

        await checks.run(`${tag} permessage-deflate negotiated`, async () => {
          const c = await client();
          try {
            ic.expectEq(c.ws.extensions, 'permessage-deflate', 'ws.extensions');
            const ext = c.agreed;
            ic.expect(ext.startsWith('permessage-deflate'), `Sec-WebSocket-Extensions '${ext}'`);
            if (mode === 'shared') {
              ic.expect(ext.includes('server_no_context_takeover') && ext.includes('client_no_context_takeover'),
                `shared mode must ask for no context takeover both ways: '${ext}'`);
            } else {
              ic.expect(!ext.includes('no_context_takeover'), `dedicated mode should keep context: '${ext}'`);
            }
            return `'${ext}'`;
          } finally {
            await c.close();
          }
        });

        await checks.run(`${tag} text, binary, 1 MiB and fragmented round trips`, async () => {
          const c = await client();
          try {
            const messages = ['hello', '通道 héllo ✓ 😀'.repeat(100), '', Buffer.alloc(0), Buffer.from([...Array(256).keys()]),
              crypto.randomBytes(70000), jsonText(MIB), Buffer.from(jsonText(MIB)), crypto.randomBytes(MIB)];
            for (const m of messages) {
              const binary = Buffer.isBuffer(m);
              await c.send(m, { binary, compress: true });
              const got = await c.recv();
              ic.expectEq(got.isBinary, binary, 'message type');
              ic.expect(got.data.equals(binary ? m : Buffer.from(m)), `echo of ${m.length} units differs`);
            }
            // A compressed message in three frames (RSV1 on the first only).
            const parts = [jsonText(100000), jsonText(200000), jsonText(50000)];
            c.send(parts[0], { fin: false, compress: true });
            c.send(parts[1], { fin: false, compress: true });
            await c.send(parts[2], { fin: true, compress: true });
            const got = await c.recv();
            ic.expect(!got.isBinary && got.data.toString() === parts.join(''), 'fragmented compressed message differs');
            await c.close();
            ic.expectEq((await c.closed).code, 1000, 'close code');
          } finally {
            c.terminate();
          }
        }, 90000);

        await checks.run(`${tag} 1 MiB of JSON is compressed on the wire both ways`, async () => {
          const c = await client();
          try {
            const payload = jsonText(MIB);
            await c.send('warm-up');
            await c.recv();
            const before = relay.counts();
            await c.send(payload, { compress: true });
            const got = await c.recv();
            ic.expect(got.data.toString() === payload, '1 MiB JSON echo differs');
            const after = relay.counts();
            const up = after.up - before.up, down = after.down - before.down;
            console.log(`  wire bytes for a ${payload.length}-byte JSON message: up ${up}, down ${down} ` +
              `(${(payload.length / up).toFixed(0)}x and ${(payload.length / down).toFixed(0)}x smaller)`);
            ic.expect(up < payload.length / 10, `client to server: ${up} wire bytes for ${payload.length}`);
            ic.expect(down < payload.length / 10, `server to client: ${down} wire bytes for ${payload.length}`);
            return `up ${up} B, down ${down} B for ${payload.length} B`;
          } finally {
            await c.close();
          }
        }, 60000);

        await checks.run(`${tag} context takeover as negotiated`, async () => {
          const c = await client();
          try {
            const blob = crypto.randomBytes(24 * 1024);
            const costs = [];
            for (let i = 0; i < 2; i++) {
              const before = relay.counts();
              await c.send(blob, { binary: true, compress: true });
              ic.expect((await c.recv()).data.equals(blob), 'echo differs');
              const after = relay.counts();
              costs.push([after.up - before.up, after.down - before.down]);
            }
            const [up2, down2] = costs[1];
            if (mode === 'dedicated') {
              ic.expect(up2 < 2048 && down2 < 2048, `repeat cost up ${up2}, down ${down2}: context takeover not in use`);
            } else {
              ic.expect(up2 > blob.length && down2 > blob.length, `repeat cost up ${up2}, down ${down2}: context kept against the agreement`);
            }
            return `first [${costs[0]}], repeat [${costs[1]}] (up, down) for ${blob.length} B`;
          } finally {
            await c.close();
          }
        });

        await checks.run(`${tag} /small counts inflated bytes: 1025 -> 1009`, async () => {
          const c = await client('/small');
          try {
            await c.send('a'.repeat(1024), { compress: true });
            ic.expectEq((await c.recv()).data.toString(), 'a'.repeat(1024), '1024 bytes on /small');
            await c.send('a'.repeat(1025), { compress: true });
            ic.expectEq((await c.closed).code, 1009, 'close code for 1025 inflated bytes');
          } finally {
            c.terminate();
          }
        });

        if (scheme === 'wss') {
          await checks.run(`${tag} SNI other.test -> other.pem`, async () => {
            const c = await client('/echo', { servername: 'other.test' });
            try {
              const cn = c.ws._socket.getPeerCertificate().subject.CN;
              ic.expectEq(cn, 'other', 'certificate CN for SNI other.test (other.pem)');
              await c.send('sni');
              ic.expectEq((await c.recv()).data.toString(), 'sni', 'echo');
              return `CN ${cn}`;
            } finally {
              await c.close();
            }
          });

          await checks.run(`${tag} CA not trusted -> the handshake fails`, async () => {
            const ws = new WebSocket(`${base}/echo`, { handshakeTimeout: 20000 });
            const err = await new Promise((resolve) => {
              ws.once('open', () => resolve(null));
              ws.once('error', resolve);
            });
            ws.terminate();
            ic.expect(err, 'connected without trusting the CA');
            return err.code || err.message;
          });
        }
      }

      await checks.run(`[${mode}] metrics: no connection left open`, () => ic.expectAllClosed(server.port));
      await checks.run(`[${mode}] server exits 0 on SIGTERM`, async () => {
        ic.expect(server.alive(), 'server died during the run');
        ic.expectEq(await server.stop(), 0, 'exit status after SIGTERM');
      });
    } finally {
      await relays.ws.close();
      await relays.wss.close();
      await server.stop();
    }
  }

  // --- tongdao's client against a ws server -------------------------------------------------------
  const payloadTotal = 5 + 256 + MIB + MIB + 65536; // what client_probe sends, and gets back
  for (const scheme of ['ws', 'wss']) {
    const offers = [];
    let http = null;
    let wss;
    if (scheme === 'wss') {
      http = https.createServer({ cert: fs.readFileSync(certs.serverPem), key: fs.readFileSync(certs.serverKey) });
      wss = new WebSocket.Server({ server: http, perMessageDeflate: true, maxPayload: 64 << 20 });
      await new Promise((resolve) => http.listen(0, '127.0.0.1', resolve));
    } else {
      wss = new WebSocket.Server({ host: '127.0.0.1', port: 0, perMessageDeflate: true, maxPayload: 64 << 20 });
      await new Promise((resolve) => wss.on('listening', resolve));
    }
    const port = (http || wss).address().port;
    wss.on('connection', (ws, req) => {
      offers.push({ offer: req.headers['sec-websocket-extensions'] || '', agreed: ws.extensions });
      ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
      ws.on('error', () => {});
    });
    const relay = await ic.startRelay(port);
    try {
      const tlsArgs = scheme === 'wss' ? ['--ca', certs.ca] : [];
      for (const host of scheme === 'wss' ? ['127.0.0.1', 'localhost'] : ['127.0.0.1']) {
        const url = `${scheme}://${host}:${relay.port}/`;
        await checks.run(`tongdao client -> ws server, ${url}, deflate: compressed both ways`, async () => {
          relay.reset();
          offers.length = 0;
          const { code, out } = await runProbe(probe, [url, '--deflate', ...tlsArgs]);
          const { up, down } = relay.counts();
          console.log(`  ${out.trim().replace(/\n/g, '\n  ')}`);
          ic.expectEq(code, 0, 'client_probe exit status');
          ic.expect(/^OPEN permessage-deflate/m.test(out), 'deflate not in the 101');
          ic.expect(offers.length === 1 && offers[0].agreed.startsWith('permessage-deflate'), `server side: ${JSON.stringify(offers)}`);
          console.log(`  wire bytes for ${payloadTotal} payload bytes each way: up ${up}, down ${down}`);
          ic.expect(up < payloadTotal * 0.1, `client to server: ${up} wire bytes`);
          ic.expect(down < payloadTotal * 0.1, `server to client: ${down} wire bytes`);
          return `offer '${offers[0].offer}', agreed '${offers[0].agreed}'; up ${up} B, down ${down} B for ${payloadTotal} B`;
        }, 120000);
      }
      await checks.run(`tongdao client -> ws server, ${scheme}://, no deflate: uncompressed (control)`, async () => {
        relay.reset();
        const { code, out } = await runProbe(probe, [`${scheme}://127.0.0.1:${relay.port}/`, ...tlsArgs]);
        const { up, down } = relay.counts();
        ic.expectEq(code, 0, `client_probe exit status; output:\n${out}`);
        ic.expect(/^OPEN -$/m.test(out), `an extension without the offer: ${out}`);
        ic.expect(up > payloadTotal && down > payloadTotal, `up ${up}, down ${down}`);
        return `up ${up} B, down ${down} B for ${payloadTotal} B`;
      }, 120000);
    } finally {
      await relay.close();
      for (const c of wss.clients) c.terminate();
      await new Promise((resolve) => wss.close(resolve));
      if (http) await new Promise((resolve) => http.close(resolve));
    }
  }
  return checks.finish();
}

main().then((code) => process.exit(code), (e) => {
  console.log(`FAIL: ${e && e.stack ? e.stack : e}`);
  process.exit(1);
});
