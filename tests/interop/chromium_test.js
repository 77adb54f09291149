'use strict';
// Interop: headless Chromium (Debian /usr/bin/chromium, driven by npm playwright-core) as the
// client of interop_server. The page is loaded from the server's own origin (/health) first:
// Chromium refuses loopback WebSockets from about:blank.
//
//   node chromium_test.js PATH/TO/interop_server        (or INTEROP_SERVER=...)
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

// Runs in the page: helpers every check uses, installed once after the page loaded.
function installHelpers() {
  window.td = {
    // Opens a WebSocket; resolves to a connection object with a message queue and the close event.
    open(url, protocols) {
      const ws = protocols === undefined ? new WebSocket(url) : new WebSocket(url, protocols);
      ws.binaryType = 'arraybuffer';
      const c = { ws, queue: [], waiters: [], errors: 0 };
      ws.onmessage = (e) => {
        const w = c.waiters.shift();
        if (w) w(e.data);
        else c.queue.push(e.data);
      };
      ws.onerror = () => { c.errors += 1; };
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
  const server = await ic.startServer(binary);
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tongdao-chromium-'));
  // Also when this process dies early (a broken stdout pipe, an uncaught error).
  process.on('exit', () => fs.rmSync(userDataDir, { recursive: true, force: true }));
  let context = null;
  let checks = null;
  try {
    context = await ic.withTimeout(chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync'],
      timeout: 60000,
    }), 90000, 'launching Chromium');
    const version = context.browser() ? context.browser().version() : 'unknown version';
    checks = new ic.Checks(`chromium ${version}`);
    const page = context.pages()[0] || await context.newPage();
    page.on('console', (m) => console.log(`page console: ${m.text()}`));
    await page.route('**/favicon.ico', (route) => route.fulfill({ status: 204, body: '' })); // no 404 noise
    const origin = `http://127.0.0.1:${server.port}`;
    const resp = await page.goto(`${origin}/health`, { timeout: 30000 });
    ic.expectEq(resp.status(), 200, 'GET /health from the page');
    await page.evaluate(installHelpers);
    const base = `ws://127.0.0.1:${server.port}`;
    const inPage = (fn, arg) => page.evaluate(fn, arg);

    await checks.run('text, binary and empty round-trips', () => inPage(async (url) => {
      const c = await td.open(url + '/echo').opened;
      const texts = ['hello', '通道 héllo ✓ 😀', '', 'x'.repeat(125), 'y'.repeat(126), 'z'.repeat(65536)];
      for (const t of texts) {
        c.ws.send(t);
        const got = await c.recv();
        if (got !== t) throw new Error(`text echo of ${t.length} chars differs: ${String(got).slice(0, 40)}`);
      }
      for (const n of [0, 1, 256, 70000]) {
        const b = td.bytes(n, n + 7);
        c.ws.send(b.buffer);
        if (!td.same(await c.recv(), b)) throw new Error(`binary echo of ${n} bytes differs`);
      }
      c.ws.close(1000);
      const e = await c.closed;
      if (e.code !== 1000) throw new Error(`close code ${e.code}`);
      return `extensions '${c.ws.extensions}'`;
    }, base));

    await checks.run('1 MiB and 16 MiB round-trips', () => inPage(async (url) => {
      const c = await td.open(url + '/echo').opened;
      for (const n of [1 << 20, 16 << 20]) {
        const b = td.bytes(n, n);
        c.ws.send(b.buffer);
        if (!td.same(await c.recv(), b)) throw new Error(`binary echo of ${n} bytes differs`);
        const t = 'abcdefgh'.repeat(n / 8);
        c.ws.send(t);
        if ((await c.recv()) !== t) throw new Error(`text echo of ${n} chars differs`);
      }
      c.ws.close(1000);
      await c.closed;
    }, base), 90000);

    await checks.run("sub-protocol ['chat','superchat'] -> superchat", () => inPage(async (url) => {
      const c = await td.open(url + '/echo', ['chat', 'superchat']).opened;
      const p = c.ws.protocol;
      c.ws.close(1000);
      await c.closed;
      if (p !== 'superchat') throw new Error(`protocol '${p}'`);
    }, base));

    await checks.run('no sub-protocol offered -> none', () => inPage(async (url) => {
      const c = await td.open(url + '/echo').opened;
      const p = c.ws.protocol;
      c.ws.close(1000);
      await c.closed;
      if (p !== '') throw new Error(`protocol '${p}'`);
    }, base));

    await checks.run("client close(4000,'bye') -> CloseEvent 4000 bye", () => inPage(async (url) => {
      const c = await td.open(url + '/echo').opened;
      c.ws.send('before close');
      await c.recv();
      c.ws.close(4000, 'bye');
      const e = await c.closed;
      if (e.code !== 4000 || e.reason !== 'bye' || !e.wasClean) throw new Error(`close event ${JSON.stringify(e)}`);
    }, base));

    await checks.run("server close '4001 bye' -> CloseEvent 4001 bye", () => inPage(async (url) => {
      const c = await td.open(url + '/close').opened;
      c.ws.send('4001 bye');
      const e = await c.closed;
      if (e.code !== 4001 || e.reason !== 'bye' || !e.wasClean) throw new Error(`close event ${JSON.stringify(e)}`);
    }, base));

    await checks.run('oversize on /small -> 1009', () => inPage(async (url) => {
      const c = await td.open(url + '/small').opened;
      c.ws.send(td.bytes(1024, 3).buffer);
      if (!td.same(await c.recv(), td.bytes(1024, 3))) throw new Error('1024 bytes on /small not echoed');
      c.ws.send(td.bytes(1025, 3).buffer);
      const e = await c.closed;
      if (e.code !== 1009) throw new Error(`close event ${JSON.stringify(e)}`);
    }, base));

    await checks.run('/reject -> error event and close code 1006', () => inPage(async (url) => {
      const c = td.open(url + '/reject');
      const opened = await c.opened.then(() => true, () => false);
      const e = await c.closed;
      if (opened) throw new Error('/reject opened');
      if (c.errors !== 1 || e.code !== 1006) throw new Error(`errors ${c.errors}, close event ${JSON.stringify(e)}`);
    }, base));

    await checks.run('server abort -> 1006', () => inPage(async (url) => {
      const c = await td.open(url + '/abort').opened;
      c.ws.send('go');
      const e = await c.closed;
      if (e.code !== 1006 || e.wasClean) throw new Error(`close event ${JSON.stringify(e)}`);
    }, base));

    await checks.run('metrics: no connection left open', () => ic.expectAllClosed(server.port));
  } finally {
    if (context) {
      await ic.withTimeout(context.close(), 30000, 'closing Chromium').catch((e) => console.log(`warning: ${e.message}`));
    }
    fs.rmSync(userDataDir, { recursive: true, force: true });
    const code = await server.stop();
    if (checks) await checks.run('server exits 0 on SIGTERM', () => ic.expectEq(code, 0, 'exit status after SIGTERM'));
  }
  return checks.finish();
}

main().then((code) => process.exit(code), (e) => {
  console.log(`FAIL: ${e && e.stack ? e.stack : e}`);
  process.exit(1);
});
