'use strict';
// Interop over ws:// and wss:// with permessage-deflate (RFC 7692) against headless Chromium
// (Debian /usr/bin/chromium, driven by npm playwright-core), with interop_server in its shared
// and its dedicated deflate mode.
//
// Trusting the test CA: Chromium has no per-launch option naming a CA file (on Linux it reads
// an NSS database in the profile, which needs certutil to fill), so the browser context is
// created with `ignoreHTTPSErrors: true`. That skips the chain check only; the TLS handshake,
// ALPN and everything above it are Chromium's own. tongdao's chain and host name are verified by
// the other peers (Node ws with `ca`, Python ssl with the CA, tongdao's own client).
//
// Compression is proven on the wire: the page talks to the server through a byte-counting TCP
// relay, and the bytes that crossed it are compared with the payload bytes.
//
//   node chromium_deflate_tls_test.js PATH/TO/interop_server        (or INTEROP_SERVER=...)
//
// Exit 0 all passed, 1 a check failed, 77 Chromium or playwright-core is missing.

const fs = require('fs');
const os = require('os');
const path = require('path');
const ic = require('./interop_common.js');

const CHROMIUM = '/usr/bin/chromium';
const { chromium } = ic.requirePeer('playwright-core');
if (!fs.existsSync(CHROMIUM)) {
  console.log(`SKIP: ${CHROMIUM} is not installed (Debian package chromium)`);
  process.exit(ic.SKIP);
}
const MIB = 1 << 20;

// Runs in the page: helpers every check uses, installed once per page.
function installHelpers() {
  window.td = {
    open(url) {
      const ws = new WebSocket(url);
      ws.binaryType = 'arraybuffer';
      const c = { ws, queue: [], waiters: [] };
      ws.onmessage = (e) => {
        const w = c.waiters.shift();
        if (w) w(e.data);
        else c.queue.push(e.data);
      };
      c.closed = new Promise((resolve) => {
        ws.onclose = (e) => resolve({ code: e.code, reason: e.reason, wasClean: e.wasClean });
      });
      c.opened = new Promise((resolve, reject) => {
        ws.onopen = () => resolve(c);
        c.closed.then((e) => reject(new Error(`closed before open: ${e.code}`)));
      });
      c.recv = () => (c.queue.length ? Promise.resolve(c.queue.shift()) : new Promise((r) => c.waiters.push(r)));
      return c;
    },
    json(n) {
      const parts = [];
      let size = 0;
      for (let i = 0; size < n; i++) {
        const p = JSON.stringify({ id: i % 1000, room: 'lobby', user: `u${i % 7}`, text: 'hello, channel' });
        parts.push(p);
        size += p.length + 1;
      }
      return `[${parts.join(',')}]`.slice(0, n - 1) + ']';
    },
    bytes(n, seed) {
      const a = new Uint8Array(n);
      let x = seed >>> 0 || 1;
      for (let i = 0; i < n; i++) {
        x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
        a[i] = x & 0xff;
      }
      return a;
    },
    same(buf, want) {
      if (!(buf instanceof ArrayBuffer)) return false;
      const a = new Uint8Array(buf);
      if (a.length !== want.length) return false;
      for (let i = 0; i < a.length; i++) if (a[i] !== want[i]) return false;
      return true;
    },
  };
}

async function main() {
  const binary = ic.serverPath();
  const certs = ic.makeCerts();
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tongdao-chromium-'));
  process.on('exit', () => fs.rmSync(userDataDir, { recursive: true, force: true }));
  let context = null;
  let checks = null;
  try {
    context = await ic.withTimeout(chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      ignoreHTTPSErrors: true, // see the top of this file
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync'],
      timeout: 60000,
    }), 90000, 'launching Chromium');
    const version = context.browser() ? context.browser().version() : 'unknown version';
    checks = new ic.Checks(`chromium ${version}: deflate over ws:// and wss://`);
    const page = context.pages()[0] || await context.newPage();
    page.on('console', (m) => console.log(`page console: ${m.text()}`));
    await page.route('**/favicon.ico', (route) => route.fulfill({ status: 204, body: '' }));

    for (const mode of ['shared', 'dedicated']) {
      const server = await ic.startServer(binary, ['--deflate', mode, ...certs.serverArgs]);
      const relays = { ws: await ic.startRelay(server.port), wss: await ic.startRelay(server.tlsPort) };
      try {
        // The page comes from the server's own origin: Chromium refuses loopback WebSockets from about:blank.
        const resp = await page.goto(`http://127.0.0.1:${server.port}/health`, { timeout: 30000 });
        ic.expectEq(resp.status(), 200, 'GET /health from the page');
        await page.evaluate(installHelpers);
        for (const scheme of ['ws', 'wss']) {
          const relay = relays[scheme];
          const tag = `[${mode}, ${scheme}://]`;
          const base = `${scheme}://127.0.0.1:${relay.port}`;

          await checks.run(`${tag} permessage-deflate negotiated, as offered`, async () => {
            const r = await page.evaluate(async (url) => {
              const c = await td.open(url + '/headers').opened;
              const headers = await c.recv();
              const ext = c.ws.extensions;
              c.ws.close(1000);
              await c.closed;
              const offer = (headers.split('\n').find((l) => /^sec-websocket-extensions:/i.test(l)) || '').replace(/^[^:]*:\s*/, '');
              return { ext, offer };
            }, base);
            ic.expect(r.offer.startsWith('permessage-deflate'), `Chromium's offer '${r.offer}'`);
            ic.expect(r.ext.startsWith('permessage-deflate'), `ws.extensions '${r.ext}'`);
            if (mode === 'shared') {
              ic.expect(r.ext.includes('server_no_context_takeover') && r.ext.includes('client_no_context_takeover'),
                `shared mode must ask for no context takeover both ways: '${r.ext}'`);
            }
            return `offer '${r.offer}', agreed '${r.ext}'`;
          });

          await checks.run(`${tag} text and binary round trips, compressed`, () => page.evaluate(async (url) => {
            const c = await td.open(url + '/echo').opened;
            for (const t of ['hello', '通道 héllo ✓ 😀'.repeat(100), '', 'x'.repeat(70000), td.json(1 << 20)]) {
              c.ws.send(t);
              const got = await c.recv();
              if (got !== t) throw new Error(`text echo of ${t.length} chars differs`);
            }
            for (const n of [0, 256, 70000, 1 << 20]) {
              const b = td.bytes(n, n + 7);
              c.ws.send(b.buffer);
              if (!td.same(await c.recv(), b)) throw new Error(`binary echo of ${n} bytes differs`);
            }
            c.ws.close(1000);
            const e = await c.closed;
            if (e.code !== 1000) throw new Error(`close code ${e.code}`);
          }, base), 60000);

          await checks.run(`${tag} 1 MiB of JSON is compressed on the wire both ways`, async () => {
            // Open and warm up first, so the handshake is not counted; then one message each way.
            await page.evaluate(async (url) => {
              window.big = await td.open(url + '/echo').opened;
              window.big.ws.send('warm-up');
              await window.big.recv();
              window.payload = td.json(1 << 20);
            }, base);
            const before = relay.counts();
            const ok = await page.evaluate(async () => {
              window.big.ws.send(window.payload);
              return (await window.big.recv()) === window.payload;
            });
            const after = relay.counts();
            await page.evaluate(async () => {
              window.big.ws.close(1000);
              await window.big.closed;
            });
            ic.expect(ok, '1 MiB JSON echo differs');
            const up = after.up - before.up, down = after.down - before.down;
            console.log(`  wire bytes for a ${MIB}-byte JSON message: up ${up}, down ${down} ` +
              `(${(MIB / up).toFixed(0)}x and ${(MIB / down).toFixed(0)}x smaller)`);
            ic.expect(up < MIB / 10, `browser to server: ${up} wire bytes for ${MIB}`);
            ic.expect(down < MIB / 10, `server to browser: ${down} wire bytes for ${MIB}`);
            return `up ${up} B, down ${down} B for ${MIB} B`;
          }, 60000);

          await checks.run(`${tag} context takeover as negotiated`, async () => {
            // The same 24 KiB of random bytes twice: with context takeover (dedicated) the second
            // costs a back-reference; without (shared) it costs it all again.
            await page.evaluate(async (url) => {
              window.ctx = await td.open(url + '/echo').opened;
              window.blob = td.bytes(24 * 1024, 99);
            }, base);
            const costs = [];
            for (let i = 0; i < 2; i++) {
              const before = relay.counts();
              const ok = await page.evaluate(async () => {
                window.ctx.ws.send(window.blob.buffer);
                return td.same(await window.ctx.recv(), window.blob);
              });
              const after = relay.counts();
              ic.expect(ok, 'echo differs');
              costs.push([after.up - before.up, after.down - before.down]);
            }
            await page.evaluate(async () => {
              window.ctx.ws.close(1000);
              await window.ctx.closed;
            });
            const [up2, down2] = costs[1];
            if (mode === 'dedicated') {
              ic.expect(up2 < 2048 && down2 < 2048, `repeat cost up ${up2}, down ${down2}: context takeover not in use`);
            } else {
              ic.expect(up2 > 24 * 1024 && down2 > 24 * 1024, `repeat cost up ${up2}, down ${down2}: context kept against the agreement`);
            }
            return `first [${costs[0]}], repeat [${costs[1]}] (up, down) for ${24 * 1024} B`;
          });

          await checks.run(`${tag} /small counts inflated bytes: 1025 -> 1009`, () => page.evaluate(async (url) => {
            const c = await td.open(url + '/small').opened;
            c.ws.send('a'.repeat(1024));
            if ((await c.recv()) !== 'a'.repeat(1024)) throw new Error('1024 bytes on /small not echoed');
            c.ws.send('a'.repeat(1025));
            const e = await c.closed;
            if (e.code !== 1009) throw new Error(`close event ${JSON.stringify(e)}`);
          }, base));
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
  } finally {
    if (context) {
      await ic.withTimeout(context.close(), 30000, 'closing Chromium').catch((e) => console.log(`warning: ${e.message}`));
    }
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
  return checks.finish();
}

main().then((code) => process.exit(code), (e) => {
  console.log(`FAIL: ${e && e.stack ? e.stack : e}`);
  process.exit(1);
});
