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

/**
 * Starts interop_server; resolves to {port, tlsPort, pid, stop()} once it printed "PORT n"
 * (and "TLSPORT n" when started with --tls-cert).
 */
function startServer(binary, args = [], timeoutMs = 20000) {
  const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const tls = args.includes('--tls-cert');
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
    const pattern = tls ? /^PORT (\d+)\nTLSPORT (\d+)\n/ : /^PORT (\d+)\n/;
    const lines = tls ? 2 : 1;
    child.stdout.on('data', (chunk) => {
      out += chunk.toString();
      const m = pattern.exec(out);
      if (m) resolve({ port: Number(m[1]), tlsPort: tls ? Number(m[2]) : null });
      else if (out.split('\n').length > lines) reject(new Error(`unexpected first lines from interop_server: ${JSON.stringify(out)}`));
    });
    child.on('error', reject);
    exited.then((code) => reject(new Error(`interop_server exited before listening (${code})`)));
  });
  return withTimeout(ready, timeoutMs, 'interop_server start').then(
    ({ port, tlsPort }) => ({ port, tlsPort, pid: child.pid, stop, alive: () => exitCode === null }),
    async (e) => { await stop(); throw e; });
}

/**
 * A throwaway CA and certificates (scripts/make-test-certs.sh) in a fresh temporary directory,
 * removed when the process exits: {dir, ca, serverPem, serverKey, otherPem, otherKey, serverArgs}.
 * Exits 77 (SKIP) if the openssl command is missing.
 */
function makeCerts() {
  const os = require('os');
  const { execFileSync } = require('child_process');
  const onPath = (process.env.PATH || '').split(':').some((d) => d && fs.existsSync(path.join(d, 'openssl')));
  if (!onPath) {
    console.log('SKIP: the openssl command is missing (Debian openssl); it makes the test certificates');
    process.exit(SKIP);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tongdao-certs-'));
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  execFileSync('bash', [path.join(repoRoot, 'scripts', 'make-test-certs.sh'), dir], { stdio: ['ignore', 'ignore', 'inherit'], timeout: 60000 });
  const f = (name) => path.join(dir, name);
  return {
    dir,
    ca: f('ca.pem'),
    serverPem: f('server.pem'),
    serverKey: f('server.key'),
    otherPem: f('other.pem'),
    otherKey: f('other.key'),
    serverArgs: ['--tls-cert', f('server.pem'), '--tls-key', f('server.key'),
      '--tls-cert', f('other.pem'), '--tls-key', f('other.key')],
  };
}

/**
 * A byte-counting TCP relay on 127.0.0.1 and a free port, to targetPort: `up` counts client
 * to server bytes, `down` server to client, over all connections. What it counts is what
 * travels on the wire (frames after compression, TLS records under wss://).
 * Resolves to {port, counts(), reset(), close()}.
 */
function startRelay(targetPort, targetHost = '127.0.0.1') {
  const net = require('net');
  const state = { up: 0, down: 0, connections: 0 };
  const sockets = new Set();
  const server = net.createServer((client) => {
    state.connections += 1;
    const upstream = net.connect(targetPort, targetHost);
    for (const s of [client, upstream]) {
      s.setNoDelay(true);
      s.setTimeout(60000, () => s.destroy());
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    }
    // An end of stream passes on through pipe(); a failure on one side ends the other.
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('data', (d) => { state.up += d.length; });
    upstream.on('data', (d) => { state.down += d.length; });
    client.pipe(upstream);
    upstream.pipe(client);
  });
  return withTimeout(new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve({
      port: server.address().port,
      counts: () => ({ up: state.up, down: state.down, connections: state.connections }),
      reset: () => { state.up = 0; state.down = 0; },
      close: () => new Promise((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
    }));
  }), 10000, 'relay listen');
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
  SKIP, repoRoot, requirePeer, serverPath, withTimeout, startServer, makeCerts, startRelay, Checks, expect,
  expectEq, metrics, expectAllClosed,
};
