// Start and stop a real tongdao-server for the SDK tests (binary from $TONGDAO_SERVER).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';

const here = path.dirname(new URL(import.meta.url).pathname);
const root = path.resolve(here, '../../..');

// Servers still running when the test process exits (a failed assertion, a timeout) are killed.
const live = new Set();
process.on('exit', () => { for (const p of live) { try { p.kill('SIGKILL'); } catch (e) { /* gone */ } } });

export function serverBinary() {
  const cands = [process.env.TONGDAO_SERVER, path.join(root, 'build/asan/bin/tongdao-server'), path.join(root, 'build/release/bin/tongdao-server')];
  for (const c of cands) if (c && fs.existsSync(c)) return c;
  return null;
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

function health(port) {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/health', timeout: 1000 }, (res) => { res.resume(); resolve(res.statusCode === 200); });
    req.on('error', () => resolve(false));
    req.on('timeout', () => { req.destroy(); resolve(false); });
  });
}

export async function startServer({ port, dataDir, extra = [] } = {}) {
  const bin = serverBinary();
  if (!bin) throw new Error('no tongdao-server: set TONGDAO_SERVER');
  port = port || (await freePort());
  dataDir = dataDir || fs.mkdtempSync(path.join(os.tmpdir(), 'tongdao-sdk-'));
  const args = ['--host', '127.0.0.1', '--port', String(port), '--anonymous', '--data-dir', dataDir,
    '--rate-limit', '1000', '--rate-burst', '1000', ...extra];
  const env = Object.assign({}, process.env, { ASAN_OPTIONS: process.env.ASAN_OPTIONS || 'detect_leaks=0' });
  const proc = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'], env });
  live.add(proc);
  proc.once('exit', () => live.delete(proc));
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; if (stderr.length > 20000) stderr = stderr.slice(-10000); });
  const deadline = Date.now() + 20000;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error('tongdao-server exited: ' + stderr);
    if (await health(port)) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  if (!(await health(port))) { proc.kill('SIGKILL'); throw new Error('tongdao-server did not answer /health: ' + stderr); }
  const srv = {
    port, dataDir, proc, url: `ws://127.0.0.1:${port}/chat`,
    stderr: () => stderr,
    kill(sig = 'SIGTERM') {
      return new Promise((resolve) => {
        if (proc.exitCode !== null || proc.signalCode) return resolve();
        const t = setTimeout(() => { try { proc.kill('SIGKILL'); } catch (e) { /* gone */ } }, 10000);
        proc.once('exit', () => { clearTimeout(t); resolve(); });
        proc.kill(sig);
      });
    },
    async restart() { return startServer({ port, dataDir, extra }); },
    cleanup() { try { fs.rmSync(dataDir, { recursive: true, force: true }); } catch (e) { /* ignore */ } },
  };
  return srv;
}
