// The chat page through nginx, for tests/deploy/nginx_test.py: headless Chromium (Debian
// /usr/bin/chromium, driven by npm playwright-core) opens https://.../ with the test's root CA
// trusted through the NSS database under $HOME (no certificate error is ignored), signs in,
// waits for the messages already in the room, sends one, and waits for an answer to it.
//
//   node tests/deploy/chat_page.mjs '{"url": "https://localhost:PORT/", "home": DIR, "name": "carol",
//     "expect": ["..."], "send": "...", "answer": "...", "screenshot": FILE}'
//
// One line per step on stdout (PASS/FAIL). Exit 0 passed, 1 a check failed, 2 bad setup.

import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const CHROMIUM = '/usr/bin/chromium';
const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '..', '..');
const require = createRequire(import.meta.url);

let spec;
try {
  spec = JSON.parse(process.argv[2] || '');
} catch (e) {
  console.error(`usage: node chat_page.mjs SPEC-JSON (${e.message})`);
  process.exit(2);
}
let chromium;
try {
  ({ chromium } = require(path.join(repoRoot, 'node_modules', 'playwright-core')));
} catch (e) {
  console.error(`playwright-core is not installed in ${repoRoot}/node_modules (${e.code || e.message}); run scripts/install-deps.sh`);
  process.exit(2);
}
if (!fs.existsSync(CHROMIUM)) {
  console.error(`${CHROMIUM} is not installed (Debian package chromium)`);
  process.exit(2);
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms); }),
  ]).finally(() => clearTimeout(timer));
}

let stepFailed = false;
async function step(name, fn, ms = 60000) {
  const t0 = Date.now();
  try {
    const detail = await withTimeout(Promise.resolve().then(fn), ms, name);
    console.log(`PASS ${name} (${((Date.now() - t0) / 1000).toFixed(1)}s)${detail ? ': ' + detail : ''}`);
  } catch (e) {
    console.log(`FAIL ${name}: ${e && e.stack ? e.stack : e}`);
    stepFailed = true;
    throw e;
  }
}

let browser = null;
function emergencyStop(why) {
  console.log(`FAIL ${why}: stopping Chromium`);
  const proc = browser && browser.process && browser.process();
  if (proc && proc.pid) { try { process.kill(proc.pid, 'SIGKILL'); } catch { /* gone */ } }
  process.exit(1);
}
const watchdog = setTimeout(() => emergencyStop('the page took over 100 s'), 100000);
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => emergencyStop(`got ${sig}`));

const origin = new URL(spec.url).origin;
const pageErrors = [];
const sockets = [];
let status = 1;
try {
  // Chromium reads the user's trusted roots from $HOME/.pki/nssdb: the test made one there.
  browser = await withTimeout(chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
    env: { ...process.env, HOME: spec.home },
    timeout: 60000,
  }), 90000, 'launching Chromium');
  console.log(`chromium ${browser.version()}`);
  const ctx = await browser.newContext({ viewport: { width: 1024, height: 700 } });
  const page = await ctx.newPage();
  page.on('pageerror', (e) => { pageErrors.push(e.message); console.log(`page error: ${e.message}`); });
  page.on('console', (m) => { if (m.type() === 'error') console.log(`page console: ${m.text()}`); });
  page.on('websocket', (ws) => sockets.push(ws.url()));
  const log = page.getByRole('log', { name: /^Messages/ });
  const item = (text) => log.getByRole('listitem').filter({ has: page.getByText(text, { exact: true }) });

  await step(`the page loads over https through nginx (${spec.url}), its certificate trusted`, async () => {
    const res = await page.goto(spec.url, { timeout: 30000 });
    if (!res || res.status() !== 200) throw new Error(`status ${res && res.status()}`);
    const secure = await page.evaluate(() => window.isSecureContext && location.protocol);
    if (secure !== 'https:') throw new Error(`not a secure https context: ${secure}`);
    const tls = await res.securityDetails();
    return tls ? `${tls.protocol}, issued by ${tls.issuer}` : 'no security details';
  });

  await step('signs in; the socket is wss:// through nginx', async () => {
    const nick = page.getByRole('textbox', { name: 'Nickname' });
    await nick.fill(spec.name, { timeout: 10000 });
    await nick.press('Enter');
    await page.getByRole('status').filter({ hasText: 'Connected' }).waitFor({ timeout: 20000 });
    await page.getByRole('heading', { name: '# lobby' }).waitFor({ timeout: 20000 });
    const want = `${origin.replace(/^https:/, 'wss:')}/chat`;
    if (!sockets.some((u) => u.startsWith(want))) throw new Error(`no socket to ${want}: ${JSON.stringify(sockets)}`);
    return sockets.join(', ');
  });

  await step(`shows what was sent before: ${JSON.stringify(spec.expect)}`, async () => {
    for (const text of spec.expect) await item(text).waitFor({ timeout: 15000 });
  });

  await step(`sends ${JSON.stringify(spec.send)}; it is stored`, async () => {
    const box = page.getByRole('textbox', { name: 'Message' });
    await box.fill(spec.send, { timeout: 10000 });
    await box.press('Enter');
    await item(spec.send).getByText(/^(Sent|Read by .*)$/).waitFor({ timeout: 15000 });
  });

  await step(`receives the answer ${JSON.stringify(spec.answer)}`, async () => {
    await item(spec.answer).waitFor({ timeout: 20000 });
    if (spec.screenshot) {
      fs.mkdirSync(path.dirname(spec.screenshot), { recursive: true });
      await page.screenshot({ path: spec.screenshot });
      return spec.screenshot;
    }
    return '';
  });

  await step('no uncaught errors in the page', async () => {
    if (pageErrors.length) throw new Error(pageErrors.join('\n'));
  });
  status = 0;
} catch (e) {
  if (!stepFailed) console.log(`FAIL setup: ${e && e.stack ? e.stack : e}`);
  status = 1;
} finally {
  if (browser) await withTimeout(browser.close(), 20000, 'closing Chromium').catch((e) => console.log(String(e)));
}
clearTimeout(watchdog);
process.exit(status);
