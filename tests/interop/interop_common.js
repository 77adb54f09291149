'use strict';
// Helpers shared by the Node interop tests: the repository root (for node_modules), starting
// and stopping interop_server, and a small runner of named checks, each with a time bound.

const { spawn } = require('child_process');
const path = require('path');
const fs = require('fs');

const SKIP = 77; // ctest SKIP_RETURN_CODE
const repoRoot = path.resolve(__dirname, '..', '..');

/** require() of a package from the repository's node_modules, or exit 77 if it is not there. */
function requirePeer(name) {
  const dir = path.join(repoRoot, 'node_modules', name);
  try {
    return require(dir);
  } catch (e) {
    console.log(`SKIP: ${name} is not installed in ${dir} (${e.code || e.message}); run scripts/install-deps.sh`);
    process.exit(SKIP);
  }
}

function serverPath() {
  const p = process.argv[2] || process.env.INTEROP_SERVER || '';
  try {
    fs.accessSync(p, fs.constants.X_OK);
  } catch {
    console.error(`interop_server not found (got '${p}'); pass it as the first argument or in INTEROP_SERVER`);
    process.exit(2);
  }
  return p;
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Starts interop_server; resolves to {port, pid, stop()} once it printed "PORT n". */
function startServer(binary, args = [], timeoutMs = 20000) {
  const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  let exitCode = null;
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => {
    exitCode = code === null ? `signal ${signal}` : code;
    resolve(exitCode);
  }));
  const stop = async (termMs = 15000) => {
    if (exitCode === null) {
      try { process.kill(child.pid, 'SIGTERM'); } catch { /* already gone */ }
      const t = setTimeout(() => {
        console.error(`interop_server ${child.pid} ignored SIGTERM for ${termMs} ms: SIGKILL`);
        try { process.kill(child.pid, 'SIGKILL'); } catch { /* gone */ }
      }, termMs);
      await exited;
      clearTimeout(t);
    }
    return exitCode;
  };
  const ready = new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (chunk) => {
      out += chunk.toString();
      const m = /^PORT (\d+)\n/.exec(out);
      if (m) resolve(Number(m[1]));
      else if (out.includes('\n')) reject(new Error(`unexpected first line from interop_server: ${JSON.stringify(out)}`));
    });
    child.on('error', reject);
    exited.then((code) => reject(new Error(`interop_server exited before listening (${code})`)));
  });
  return withTimeout(ready, timeoutMs, 'interop_server start').then(
    (port) => ({ port, pid: child.pid, stop, alive: () => exitCode === null }),
    async (e) => { await stop(); throw e; });
}

/** Named checks: each runs with a bound; a failure is reported and the run goes on. */
class Checks {
  constructor(title) {
    this.title = title;
    this.passed = 0;
    this.failed = [];
  }

  async run(name, fn, timeoutMs = 30000) {
    const start = Date.now();
    try {
      const detail = await withTimeout(Promise.resolve().then(fn), timeoutMs, name);
      this.passed += 1;
      console.log(`PASS ${name} (${((Date.now() - start) / 1000).toFixed(2)}s)${detail ? ': ' + detail : ''}`);
    } catch (e) {
      this.failed.push(name);
      console.log(`FAIL ${name}: ${e && e.stack ? e.stack : e}`);
    }
  }

  finish() {
    console.log(`${this.title}: ${this.passed} passed, ${this.failed.length} failed`);
    for (const n of this.failed) console.log(`  failed: ${n}`);
    return this.failed.length ? 1 : 0;
  }
}

function expect(cond, message) {
  if (!cond) throw new Error(message);
}

function expectEq(got, want, what) {
  const g = JSON.stringify(got), w = JSON.stringify(want);
  if (g !== w) throw new Error(`${what}: got ${String(g).slice(0, 200)}, want ${String(w).slice(0, 200)}`);
}

/** GET /metrics, parsed into {name: value}. */
async function metrics(port) {
  const http = require('http');
  const body = await withTimeout(new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: '/metrics', agent: false }, (res) => {
      let b = '';
      res.on('data', (c) => { b += c; });
      res.on('end', () => (res.statusCode === 200 ? resolve(b) : reject(new Error(`/metrics: ${res.statusCode}`))));
    }).on('error', reject);
  }), 10000, 'GET /metrics');
  const out = {};
  for (const line of body.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out[line.slice(0, i)] = Number(line.slice(i + 1));
  }
  return out;
}

/** Polls /metrics until no WebSocket connection is open (bounded). */
async function expectAllClosed(port, timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const m = await metrics(port);
    if (m.tongdao_connections_open === 0) return `connections_total ${m.tongdao_connections_total}`;
    if (Date.now() > deadline) throw new Error(`connections_open stays ${m.tongdao_connections_open}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

module.exports = {
  SKIP, repoRoot, requirePeer, serverPath, withTimeout, startServer, Checks, expect, expectEq, metrics,
  expectAllClosed,
};
