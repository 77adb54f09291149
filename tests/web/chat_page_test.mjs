// The chat page at / (web/page/) in headless Chromium against a real tongdao-server: two
// browser contexts chat in a room; one loses its connection — cut outside the browser by a TCP
// proxy of this test's own, which destroys its sockets and refuses new ones — while the other
// sends 50 messages; let through again, the page shows all 50, once each, in order; a reload
// keeps the history; scroll-back, unread counts, read receipts, typing and presence; a phone
// viewport without horizontal scrolling. Elements are found by role and accessible name.
//
//   TONGDAO_SERVER=build/release/bin/tongdao-server TONGDAO_WEB_ROOT=build/release/share/tongdao/web \
//     node tests/web/chat_page_test.mjs
//
// Screenshots go to $TONGDAO_ARTIFACTS (default: <web root>/../../../artifacts).
// Exit 0 passed, 1 a check failed, 2 bad setup, 77 (skip) Chromium or playwright-core missing.

import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const SKIP = 77;
const CHROMIUM = '/usr/bin/chromium';
const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '..', '..');
const require = createRequire(import.meta.url);

let chromium;
try {
  ({ chromium } = require(path.join(repoRoot, 'node_modules', 'playwright-core')));
} catch (e) {
  console.log(`SKIP: playwright-core is not installed in ${repoRoot}/node_modules (${e.code || e.message}); run scripts/install-deps.sh`);
  process.exit(SKIP);
}
if (!fs.existsSync(CHROMIUM)) {
  console.log(`SKIP: ${CHROMIUM} is not installed (Debian package chromium)`);
  process.exit(SKIP);
}
const serverBin = process.env.TONGDAO_SERVER || '';
const webRoot = process.env.TONGDAO_WEB_ROOT || '';
if (!serverBin || !fs.existsSync(serverBin)) {
  console.error(`tongdao-server not found (TONGDAO_SERVER='${serverBin}')`);
  process.exit(2);
}
if (!webRoot || !fs.existsSync(path.join(webRoot, 'index.html'))) {
  console.error(`the built page is not in TONGDAO_WEB_ROOT='${webRoot}' (build the web_page target)`);
  process.exit(2);
}
const artifacts = process.env.TONGDAO_ARTIFACTS || path.resolve(webRoot, '..', '..', '..', 'artifacts');

// --- bounded waits ------------------------------------------------------------------------------

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms); }),
  ]).finally(() => clearTimeout(timer));
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls fn until it returns a truthy value; throws with the last value after ms. */
async function until(fn, ms, what) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms (last: ${JSON.stringify(last)})`);
    await sleep(100);
  }
}

// --- the server and the proxy -------------------------------------------------------------------

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

function healthy(port) {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/health', agent: false, timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => { req.destroy(); resolve(false); });
  });
}

const SECRET = 'chat-page-test-secret';

/** An HS256 JWT (PROTOCOL.md §9) signed with SECRET. */
function token(claims) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const head = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${head}.${crypto.createHmac('sha256', SECRET).update(head).digest('base64url')}`;
}

async function startServer(dataDir) {
  const secretFile = path.join(dataDir, 'jwt.secret');
  fs.writeFileSync(secretFile, SECRET + '\n');
  const port = await freePort();
  // Every option can also come from a TONGDAO_* variable: none of ours may reach the server.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TONGDAO_')));
  const args = ['--host', '127.0.0.1', '--port', String(port), '--threads', '2', '--anonymous', '--auth-secret-file', secretFile, '--data-dir', dataDir,
    '--web-root', webRoot, '--rate-limit', '1000', '--rate-burst', '1000', '--log-level', 'warn'];
  const child = spawn(serverBin, args, { stdio: ['ignore', 'inherit', 'inherit'], env });
  let exit = null;
  const exited = new Promise((resolve) => child.on('exit', (code, sig) => { exit = code ?? `signal ${sig}`; resolve(exit); }));
  const stop = async () => {
    if (exit !== null) return exit;
    try { process.kill(child.pid, 'SIGTERM'); } catch { /* gone */ }
    const t = setTimeout(() => { try { process.kill(child.pid, 'SIGKILL'); } catch { /* gone */ } }, 15000);
    await exited;
    clearTimeout(t);
    return exit;
  };
  try {
    await until(async () => exit === null ? healthy(port) : Promise.reject(new Error(`tongdao-server exited (${exit})`)),
      30000, 'tongdao-server /health');
  } catch (e) {
    await stop();
    throw e;
  }
  return { port, pid: child.pid, stop };
}

/** A TCP proxy to the server that can be cut: cut() destroys every socket and refuses new ones. */
function startProxy(targetPort) {
  const sockets = new Set();
  let open = true;
  let refused = 0;
  const server = net.createServer((client) => {
    if (!open) { refused += 1; client.destroy(); return; }
    const upstream = net.connect(targetPort, '127.0.0.1');
    for (const s of [client, upstream]) {
      s.setNoDelay(true);
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    }
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve({
      port: server.address().port,
      cut() { open = false; for (const s of sockets) s.destroy(); },
      restore() { open = true; },
      refused: () => refused,
      close: () => withTimeout(new Promise((r) => { open = false; for (const s of sockets) s.destroy(); server.close(() => r()); }), 5000, 'proxy close'),
    }));
  });
}

// --- the page, as a person would use it --------------------------------------------------------

const log = (page) => page.getByRole('log', { name: /^Messages/ });
const banner = (page) => page.getByRole('status');
const compose = (page) => page.getByRole('textbox', { name: 'Message' });

async function signIn(page, url, nickname) {
  await page.goto(url, { timeout: 30000 });
  const nick = page.getByRole('textbox', { name: 'Nickname' });
  await nick.fill(nickname, { timeout: 10000 });
  await nick.press('Enter'); // the keyboard alone signs in
  await banner(page).filter({ hasText: 'Connected' }).waitFor({ timeout: 20000 });
  await page.getByRole('heading', { name: '# lobby' }).waitFor({ timeout: 20000 });
}

async function say(page, text) {
  const box = compose(page);
  await box.fill(text, { timeout: 10000 });
  await box.press('Enter');
}

/** The text of every message shown, in page order. */
function texts(page) {
  return log(page).getByRole('listitem').evaluateAll((items) =>
    items.map((li) => { const p = li.querySelector('.text'); return p ? p.textContent : null; }).filter((t) => t !== null));
}

function item(page, text) {
  return log(page).getByRole('listitem').filter({ has: page.getByText(text, { exact: true }) });
}

function bursts(list) {
  return list.filter((t) => /^burst \d\d$/.test(t));
}

const want50 = Array.from({ length: 50 }, (_, i) => `burst ${String(i + 1).padStart(2, '0')}`);

function sameList(got, want, what) {
  if (JSON.stringify(got) !== JSON.stringify(want))
    throw new Error(`${what}: got ${got.length} [${got.join(', ')}], want ${want.length} [${want.join(', ')}]`);
}

// --- the run -----------------------------------------------------------------------------------

const results = [];
async function step(name, fn, ms = 60000) {
  const t0 = Date.now();
  await withTimeout(Promise.resolve().then(fn), ms, name).then(
    (detail) => { results.push(['PASS', name]); console.log(`PASS ${name} (${((Date.now() - t0) / 1000).toFixed(1)}s)${detail ? ': ' + detail : ''}`); },
    (e) => { results.push(['FAIL', name]); console.log(`FAIL ${name}: ${e && e.stack ? e.stack : e}`); throw e; });
}

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tongdao-web-'));
let server = null, proxy = null, browser = null;

// Whatever happens (a hang past every bound, ctest's SIGTERM), the server and Chromium go.
function emergencyStop(why) {
  console.log(`FAIL ${why}: stopping tongdao-server and Chromium`);
  if (server) { try { process.kill(server.pid, 'SIGKILL'); } catch { /* gone */ } }
  const proc = browser && browser.process && browser.process();
  if (proc && proc.pid) { try { process.kill(proc.pid, 'SIGKILL'); } catch { /* gone */ } }
  fs.rmSync(dataDir, { recursive: true, force: true });
  process.exit(1);
}
const watchdog = setTimeout(() => emergencyStop('the whole test took over 240 s'), 240000);
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => emergencyStop(`got ${sig}`));
const pageErrors = [];
let status = 1;
try {
  server = await startServer(dataDir);
  proxy = await startProxy(server.port);
  const direct = `http://127.0.0.1:${server.port}/`;
  const viaProxy = `http://127.0.0.1:${proxy.port}/`;
  console.log(`tongdao-server pid ${server.pid} on ${direct}, proxy on ${viaProxy}, page from ${webRoot}`);
  browser = await withTimeout(chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
    timeout: 60000,
  }), 90000, 'launching Chromium');
  console.log(`chromium ${browser.version()}`);
  const open = async (who, viewport) => {
    const ctx = await browser.newContext({ viewport });
    const page = await ctx.newPage();
    page.on('pageerror', (e) => { pageErrors.push(`${who}: ${e.message}`); console.log(`page error (${who}): ${e.message}`); });
    page.on('console', (m) => { if (m.type() === 'error') console.log(`page console (${who}): ${m.text()}`); });
    return page;
  };
  const alice = await open('alice', { width: 1280, height: 800 });
  const bob = await open('bob', { width: 1280, height: 800 });

  await step('both sign in with a nickname (alice through the proxy)', async () => {
    await signIn(alice, viaProxy, 'alice');
    await signIn(bob, direct, 'bob');
  });

  await step('a message each way; presence', async () => {
    await say(bob, 'hello from bob');
    await item(alice, 'hello from bob').waitFor({ timeout: 15000 });
    await say(alice, 'hi bob');
    await item(bob, 'hi bob').waitFor({ timeout: 15000 });
    const online = alice.getByRole('list', { name: /^Online/ });
    await online.getByRole('listitem').filter({ hasText: /^bob$/ }).waitFor({ timeout: 15000 });
  });

  await step("alice's message goes sending -> sent -> read by bob", async () => {
    await item(alice, 'hi bob').getByText('Read by bob').waitFor({ timeout: 15000 });
  });

  await step('bob is typing, as alice sees it', async () => {
    await compose(bob).pressSequentially('wri', { delay: 20 });
    await alice.getByText('bob is typing…').waitFor({ timeout: 10000 });
    await compose(bob).fill('');
  });

  await step('unread count of another room', async () => {
    const roomBox = (p) => p.getByRole('textbox', { name: 'Room name' });
    for (const p of [alice, bob]) {
      await roomBox(p).fill('random');
      await roomBox(p).press('Enter');
      await p.getByRole('heading', { name: '# random' }).waitFor({ timeout: 15000 });
    }
    await alice.getByRole('button', { name: /^lobby/ }).click();
    await alice.getByRole('heading', { name: '# lobby' }).waitFor({ timeout: 10000 });
    await say(bob, 'psst in random');
    await alice.getByRole('button', { name: 'random (1 unread)' }).waitFor({ timeout: 15000 });
    await bob.getByRole('button', { name: /^lobby/ }).click();
    await bob.getByRole('heading', { name: '# lobby' }).waitFor({ timeout: 10000 });
  });

  await step('the proxy cuts alice off; the banner says so', async () => {
    proxy.cut();
    await banner(alice).filter({ hasNotText: /^Connected/ }).waitFor({ timeout: 15000 });
    fs.mkdirSync(artifacts, { recursive: true });
    await say(alice, 'sent while cut off'); // into the SDK's outbox
    await item(alice, 'sent while cut off').getByText('Sending…').waitFor({ timeout: 5000 });
    const file = path.join(artifacts, 'chat-page-offline.png');
    await alice.screenshot({ path: file });
    return `banner: ${await banner(alice).textContent()}; ${file}`;
  });

  await step('bob sends 50 messages while alice is away', async () => {
    for (const t of want50) await say(bob, t);
    await until(async () => {
      const list = bursts(await texts(bob));
      const sending = await log(bob).getByText('Sending…').count();
      return list.length === 50 && sending === 0;
    }, 30000, 'bob sees his 50 sent');
    sameList(bursts(await texts(bob)), want50, "bob's page");
    const meanwhile = bursts(await texts(alice));
    if (meanwhile.length !== 0) throw new Error(`alice got ${meanwhile.length} through the cut`);
    await until(() => proxy.refused() >= 1, 40000, "alice's page tries to reconnect (and is refused)");
    return `${proxy.refused()} connection attempts refused so far`;
  }, 90000);

  await step('let through again: alice shows all 50, once each, in order', async () => {
    proxy.restore();
    await banner(alice).filter({ hasText: /^Connected/ }).waitFor({ timeout: 60000 });
    await until(async () => bursts(await texts(alice)).length >= 50, 30000, 'alice shows 50');
    await sleep(500); // nothing more may come
    sameList(bursts(await texts(alice)), want50, "alice's page");
    const all = await texts(alice);
    sameList(all.filter((t) => !/^burst/.test(t)), ['hello from bob', 'hi bob', 'sent while cut off'], 'the other messages');
    // The outbox went once the connection was back: stored once, after bob's 50.
    await item(alice, 'sent while cut off').getByText(/^(Sent|Read by .*)$/).waitFor({ timeout: 15000 });
    await until(async () => (await texts(bob)).includes('sent while cut off'), 15000, 'bob gets what alice sent while cut off');
    await sleep(300);
    sameList((await texts(bob)).slice(-2), ['burst 50', 'sent while cut off'], "the end of bob's page");
    const times = (await texts(bob)).filter((t) => t === 'sent while cut off').length;
    if (times !== 1) throw new Error(`bob shows it ${times} times`);
  }, 120000);

  await step('a reload keeps the history; scroll-back reaches the start', async () => {
    await alice.reload({ timeout: 30000 });
    await banner(alice).filter({ hasText: /^Connected/ }).waitFor({ timeout: 20000 });
    await alice.getByRole('heading', { name: '# lobby' }).waitFor({ timeout: 20000 });
    // The latest page of history (50 events), in order: the end of the room.
    const room = ['hello from bob', 'hi bob', ...want50, 'sent while cut off'];
    await until(async () => (await texts(alice)).length >= 50, 20000, 'alice shows 50 after the reload');
    const shown = await texts(alice);
    sameList(shown, room.slice(-shown.length), 'after the reload');
    // The other room's count comes back as it was (the server's, not counted twice).
    await alice.getByRole('button', { name: 'random (1 unread)' }).waitFor({ timeout: 10000 });
    // The keyboard's way: focus the button and press Enter. Focusing scrolls it into view, and
    // the page loads older messages when the log is scrolled to its top: either does it.
    const older = alice.getByRole('button', { name: 'Load older messages' });
    await older.waitFor({ timeout: 10000 });
    await older.press('Enter', { timeout: 5000 }).catch(() => undefined);
    await item(alice, 'hello from bob').waitFor({ timeout: 15000 });
    sameList(await texts(alice), room, 'the whole room');
  });

  await step('scrolled up, a new message is announced by a button that scrolls to it', async () => {
    await log(alice).evaluate((l) => { l.scrollTop = 0; });
    await say(bob, 'while alice reads old ones');
    const jump = alice.getByRole('button', { name: 'New messages below' });
    await jump.click({ timeout: 15000 });
    await jump.waitFor({ state: 'hidden', timeout: 5000 });
    const l = await log(alice).boundingBox();
    const m = await item(alice, 'while alice reads old ones').boundingBox();
    if (!l || !m || m.y < l.y || m.y + m.height > l.y + l.height + 1) throw new Error(`not in view: log ${JSON.stringify(l)}, message ${JSON.stringify(m)}`);
    await alice.getByRole('button', { name: 'lobby', exact: true }).waitFor({ timeout: 5000 }); // read: no unread count
  });

  await step('screenshot', async () => {
    fs.mkdirSync(artifacts, { recursive: true });
    await compose(alice).fill('');
    const file = path.join(artifacts, 'chat-page.png');
    await alice.screenshot({ path: file });
    const fileBob = path.join(artifacts, 'chat-page-bob.png');
    await bob.screenshot({ path: fileBob });
    return `${file} ${fileBob}`;
  });

  await step('a phone viewport (375x667) has no horizontal scrolling', async () => {
    const phone = await open('carol', { width: 375, height: 667 });
    await phone.goto(direct, { timeout: 30000 });
    await phone.getByRole('button', { name: 'Connect' }).waitFor({ timeout: 10000 });
    const login = path.join(artifacts, 'chat-page-phone-login.png');
    await phone.screenshot({ path: login });
    await signIn(phone, direct, 'carol');
    await item(phone, 'burst 50').waitFor({ timeout: 15000 });
    const long = `https://example.com/${'a'.repeat(300)}`; // one word wider than any phone
    await say(bob, long);
    await item(phone, long).waitFor({ timeout: 15000 });
    const m = await phone.evaluate(() => ({
      scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth, inner: window.innerWidth,
    }));
    if (m.scroll > m.client) throw new Error(`the page is ${m.scroll} px wide in a ${m.client} px viewport`);
    for (const [what, loc] of [['Message box', compose(phone)], ['Send button', phone.getByRole('button', { name: 'Send' })]]) {
      const b = await loc.boundingBox();
      if (!b || b.x < 0 || b.x + b.width > 375 || b.y + b.height > 667) throw new Error(`${what} is outside the viewport: ${JSON.stringify(b)}`);
    }
    const file = path.join(artifacts, 'chat-page-phone.png');
    await phone.screenshot({ path: file });
    return `${m.scroll} px in ${m.client} px; ${file} ${login}`;
  });

  await step('a token signs in as its subject, shown by its name', async () => {
    const page = await open('dave', { width: 1024, height: 700 });
    await page.goto(direct, { timeout: 30000 });
    await page.getByRole('textbox', { name: /^Token/ }).fill(token({ sub: 'u-dave', name: 'Dave', exp: Math.floor(Date.now() / 1000) + 3600 }));
    await page.getByRole('button', { name: 'Connect' }).click();
    await banner(page).filter({ hasText: /^Connected/ }).waitFor({ timeout: 20000 });
    await page.getByText('Signed in as Dave').waitFor({ timeout: 10000 });
    await page.getByRole('heading', { name: '# lobby' }).waitFor({ timeout: 20000 });
    await say(page, 'dave with a token');
    await item(page, 'dave with a token').getByText(/^(Sent|Read by .*)$/).waitFor({ timeout: 15000 }); // bob may read it first
    await item(bob, 'dave with a token').getByText('Dave', { exact: true }).waitFor({ timeout: 15000 });
    await page.context().close();
    const bad = await open('mallory', { width: 1024, height: 700 });
    await bad.goto(direct, { timeout: 30000 });
    await bad.getByRole('textbox', { name: /^Token/ }).fill('not.a.token');
    await bad.getByRole('button', { name: 'Connect' }).click();
    await bad.getByRole('alert').filter({ hasText: /Could not sign in/ }).waitFor({ timeout: 20000 });
    await bad.context().close();
  });

  await step('every control has an accessible name; Tab reaches the message box', async () => {
    for (const role of ['button', 'textbox', 'link', 'checkbox', 'combobox']) {
      const all = await alice.getByRole(role).count();
      const named = await alice.getByRole(role, { name: /\S/ }).count();
      if (all !== named) throw new Error(`${all - named} of ${all} ${role}s have no accessible name`);
    }
    await log(alice).focus();
    let reached = false;
    for (let i = 0; i < 12 && !reached; i++) {
      await alice.keyboard.press('Tab');
      reached = await alice.evaluate(() => document.activeElement && document.activeElement.id === 'message');
    }
    if (!reached) throw new Error('Tab never reached the message box');
    await alice.keyboard.type('typed with the keyboard alone');
    await alice.keyboard.press('Enter');
    await item(bob, 'typed with the keyboard alone').waitFor({ timeout: 15000 });
  });

  await step('no uncaught errors in the pages', async () => {
    if (pageErrors.length) throw new Error(pageErrors.join('\n'));
  });
  status = 0;
} catch (e) {
  if (!results.length || results[results.length - 1][0] !== 'FAIL') console.log(`FAIL setup: ${e && e.stack ? e.stack : e}`);
  status = 1;
} finally {
  if (browser) await withTimeout(browser.close(), 20000, 'closing Chromium').catch((e) => console.log(String(e)));
  if (proxy) await proxy.close().catch(() => undefined);
  if (server) {
    const code = await server.stop();
    if (code !== 0 && status === 0) { console.log(`FAIL tongdao-server exited with ${code}`); status = 1; }
  }
  fs.rmSync(dataDir, { recursive: true, force: true });
}
clearTimeout(watchdog);
console.log(`chat page: ${results.filter((r) => r[0] === 'PASS').length} passed, ${results.filter((r) => r[0] === 'FAIL').length} failed`);
process.exit(status);
