// dist/cjs as a mini-program loads it (the package's "miniprogram" directory, copied by
// DevTools' 构建 npm): one file, ES2017 syntax at most, no require() (no Node built-ins, nothing
// left outside the bundle), no Node globals, and it runs in a bare JavaScript context. The
// ES modules of dist/esm are checked to be ES2020 at most.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import vm from 'node:vm';
import * as esm from '../dist/esm/index.js';

const here = path.dirname(new URL(import.meta.url).pathname);
const dist = path.join(here, '..', 'dist');
const require = createRequire(import.meta.url);
const acorn = require('acorn');
const code = fs.readFileSync(path.join(dist, 'cjs', 'index.js'), 'utf8');

test('dist/cjs holds index.js (the bundle) and its package.json only', () => {
  assert.deepEqual(fs.readdirSync(path.join(dist, 'cjs')).sort(), ['index.js', 'package.json']);
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(dist, 'cjs', 'package.json'), 'utf8')), { type: 'commonjs' });
});

test('syntax: dist/cjs ES2017 at most, dist/esm ES2020 at most', () => {
  // acorn refuses syntax newer than ecmaVersion (object spread is ES2018):
  assert.throws(() => acorn.parse('const a = { ...b };', { ecmaVersion: 2017 }), SyntaxError);
  acorn.parse(code, { ecmaVersion: 2017, sourceType: 'script' });
  for (const f of fs.readdirSync(path.join(dist, 'esm')).filter((n) => n.endsWith('.js'))) {
    acorn.parse(fs.readFileSync(path.join(dist, 'esm', f), 'utf8'), { ecmaVersion: 2020, sourceType: 'module' });
  }
});

/** Identifiers used as variables (not property names after a dot, nor object keys). */
function variables(node, out = new Set()) {
  if (Array.isArray(node)) { for (const n of node) variables(n, out); return out; }
  if (!node || typeof node.type !== 'string') return out;
  if (node.type === 'Identifier') out.add(node.name);
  const noVar = (node.type === 'MemberExpression' && !node.computed) ? node.property
    : ((node.type === 'Property' || node.type === 'MethodDefinition') && !node.computed) ? node.key : null;
  for (const k of Object.keys(node)) {
    const v = node[k];
    if (v === noVar) continue;
    if (v && typeof v === 'object') variables(v, out);
  }
  return out;
}

test('no require(), no Node globals in dist/cjs', () => {
  const used = variables(acorn.parse(code, { ecmaVersion: 2017, sourceType: 'script' }));
  assert.ok(used.has('module') && used.has('ChatClient'), 'the walk sees the bundle');
  for (const name of ['require', 'process', 'Buffer', 'global', '__dirname', '__filename', 'setImmediate']) {
    assert.ok(!used.has(name), `dist/cjs uses ${name}`);
  }
});

test('dist/cjs runs in a bare context (no Node globals): same exports as dist/esm, join + send', async () => {
  const context = vm.createContext({}); // the language's own globals only: no require, no timers, no crypto
  const mod = { exports: {} };
  vm.runInContext('(function (module, exports) {' + code + '\n})', context)(mod, mod.exports);
  const sdk = mod.exports;
  assert.deepEqual(Object.keys(sdk).sort(), Object.keys(esm).sort());

  // A scripted server: replies to hello, join and send.
  const frames = [];
  let h = null;
  const transport = {
    name: 'script',
    connect(url, protocols, handlers) {
      h = handlers;
      assert.deepEqual([...protocols], ['tongdao.chat.v1']);
      return { send: (d) => { frames.push(JSON.parse(d)); return true; }, close() {} };
    },
  };
  const reply = (op, fields) => {
    const req = frames.filter((f) => f.op === op).at(-1);
    assert.ok(req, 'a ' + op + ' request was sent');
    h.onMessage(JSON.stringify(Object.assign({ op: 'reply', id: req.id, ok: true }, fields)));
    return req;
  };
  const tick = () => new Promise((r) => setImmediate(r));
  const timers = { now: () => 1000, setTimeout: () => 1, clearTimeout() {} };
  const chat = new sdk.ChatClient({ url: 'wss://chat.example.com/chat', name: 'alice', transport, storage: sdk.memoryStorage(), timers, lifecycle: false });
  const connected = chat.connect();
  h.onOpen();
  await tick();
  assert.equal(reply('hello', {}).name, 'alice');
  await connected;
  assert.equal(chat.state, 'open');
  const sent = chat.send('lobby', { text: 'hi' });
  assert.equal(reply('join', { room: 'lobby', seq: 0, epoch: 'e1', recovered: true, oldest: 1, unread: 0, readSeq: 0 }).room, 'lobby');
  const req = reply('send', { seq: 1, ts: 5 });
  assert.match(req.cid, /^c-[0-9a-z]+-[0-9a-z]+$/); // no crypto here: time + Math.random
  assert.deepEqual(req.body, { text: 'hi' });
  const r = await sent;
  assert.equal(r.seq, 1);
  assert.equal(r.cid, req.cid);
  chat.close();
  assert.equal(chat.state, 'closed');
});
