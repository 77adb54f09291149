// examples/miniprogram in Node: App/Page/getApp/setData/wx.navigateTo emulated minimally over
// the wx emulator; the SDK loaded from its built CJS dir (what DevTools copies to
// miniprogram_npm/tongdao-chat). Driven as a user would against a real tongdao-server: open a
// room, send, receive from another client, scroll back through the history.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import Module, { createRequire } from 'node:module';
import path from 'node:path';
import WebSocket from 'ws';
import { createWx } from './wx-emulator.mjs';
import { startServer, serverBinary } from './server.mjs';

const here = path.dirname(new URL(import.meta.url).pathname);
const root = path.resolve(here, '../../..');
const appDir = path.join(root, 'examples/miniprogram');
const sdkCjs = path.join(root, 'web/sdk/dist/cjs/index.js');
const require = createRequire(import.meta.url);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(what, fn, ms = 20000) {
  const end = Date.now() + ms;
  while (Date.now() < end) { if (fn()) return; await sleep(20); }
  throw new Error('timed out waiting for ' + what);
}

/** A minimal mini-program runtime: App, Page, getApp, setData (top-level and 'a[i]' keys), navigation. */
function runtime(emu, url) {
  const stack = [];
  let app = null;
  let registered = null;
  const g = globalThis;
  const saved = { wx: g.wx, App: g.App, Page: g.Page, getApp: g.getApp, getCurrentPages: g.getCurrentPages };
  const toasts = [];
  g.wx = Object.assign(emu.wx, {
    navigateTo({ url: u, success }) { open(u); if (success) success({ errMsg: 'navigateTo:ok' }); },
    navigateBack() { const p = stack.pop(); if (p && p.onUnload) p.onUnload(); const top = stack[stack.length - 1]; if (top && top.onShow) top.onShow(); },
    showToast(o) { toasts.push(o.title); },
    setNavigationBarTitle() {},
    stopPullDownRefresh() {},
  });
  g.App = (o) => { app = o; };
  g.Page = (o) => { registered = o; };
  g.getApp = () => app;
  g.getCurrentPages = () => stack.slice();
  // require('tongdao-chat') -> the built CJS; config.js -> the test server
  const origResolve = Module._resolveFilename;
  Module._resolveFilename = function (req, parent, ...rest) {
    if (req === 'tongdao-chat') return sdkCjs;
    return origResolve.call(this, req, parent, ...rest);
  };
  const configPath = path.join(appDir, 'config.js');
  require.cache[configPath] = { id: configPath, filename: configPath, loaded: true, exports: { url } };

  function instantiate(route, query) {
    const file = path.join(appDir, route + '.js');
    delete require.cache[file];
    registered = null;
    require(file);
    const def = registered;
    const page = Object.create(null);
    for (const k of Object.keys(def)) page[k] = typeof def[k] === 'function' ? def[k] : def[k];
    page.route = route;
    page.data = JSON.parse(JSON.stringify(def.data || {}));
    page.setData = function (obj) {
      for (const k of Object.keys(obj)) {
        const m = /^(\w+)\[(\d+)\]$/.exec(k);
        if (m) this.data[m[1]][Number(m[2])] = obj[k];
        else this.data[k] = obj[k];
      }
    };
    stack.push(page);
    if (page.onLoad) page.onLoad(query);
    if (page.onShow) page.onShow();
    return page;
  }
  function open(u) {
    const [p, qs] = u.replace(/^\//, '').split('?');
    const query = {};
    for (const part of (qs || '').split('&').filter(Boolean)) { const [k, v] = part.split('='); query[k] = decodeURIComponent(v || ''); }
    return instantiate(p, query);
  }
  return {
    launch() {
      const file = path.join(appDir, 'app.js');
      delete require.cache[file];
      require(file);
      app.onLaunch && app.onLaunch({ path: 'pages/rooms/rooms', query: {} });
      return instantiate('pages/rooms/rooms', {});
    },
    get app() { return app; },
    stack, toasts,
    restore() { Module._resolveFilename = origResolve; delete require.cache[configPath]; Object.assign(g, saved); },
  };
}

test('sample mini-program: rooms -> chat, send, receive, scroll back', { skip: !serverBinary() && 'no tongdao-server', timeout: 150000 }, async () => {
  const srv = await startServer();
  const emu = createWx();
  emu.wx.setStorageSync('nickname', 'alice');
  const rt = runtime(emu, srv.url);
  const { ChatClient, webSocketTransport } = require(sdkCjs);
  const bob = new ChatClient({ url: srv.url, name: 'bob', transport: webSocketTransport(WebSocket, 'ws'), lifecycle: false });
  try {
    await bob.connect();
    await bob.join('lobby');
    for (let i = 1; i <= 45; i++) await bob.send('lobby', { text: 'old ' + i });

    const rooms = rt.launch();
    const chat = rt.app.globalData.chat;
    await until('the app connects', () => chat.state === 'open');
    assert.equal(rooms.data.name, 'alice');

    // the user types a room name and taps Join
    rooms.onRoomInput({ detail: { value: 'lobby' } });
    rooms.onJoin();
    const page = rt.stack[rt.stack.length - 1];
    assert.equal(page.route, 'pages/chat/chat');
    await page.ready;
    await until('the latest page of history', () => page.data.messages.length === 20);
    assert.deepEqual(page.data.messages.map((m) => m.seq), Array.from({ length: 20 }, (_, i) => 26 + i));
    assert.equal(page.data.more, true);

    // another client writes: it shows up live
    await bob.send('lobby', { text: 'hello alice' });
    await until('bob\'s live message', () => page.data.messages.some((m) => m.text === 'hello alice'));

    // alice sends: acked, and bob receives it
    const bobGot = [];
    bob.on('message', (e) => bobGot.push(e));
    page.onInput({ detail: { value: 'hi bob' } });
    await page.onSend();
    assert.equal(page.data.pending, 0);
    await until('bob receives alice\'s message', () => bobGot.some((e) => e.user === 'alice' && e.body.text === 'hi bob'));
    await until('alice sees her own message', () => page.data.messages.some((m) => m.mine && m.text === 'hi bob'));

    // scroll back twice: everything down to seq 1, in order, each once
    await page.onScrollToUpper();
    assert.equal(page.data.messages[0].seq, 6);
    await page.onScrollToUpper();
    assert.equal(page.data.messages[0].seq, 1);
    assert.equal(page.data.more, false);
    const seqs = page.data.messages.map((m) => m.seq);
    assert.deepEqual(seqs, Array.from({ length: 47 }, (_, i) => i + 1));

    // back to the rooms list: lobby is there; bob's new message counts as unread after a read mark
    globalThis.wx.navigateBack();
    await bob.send('lobby', { text: 'unread one' });
    await until('alice gets it', () => chat.position('lobby').seq === 48);
    await rooms.refresh();
    const lobby = rooms.data.rooms.find((r) => r.room === 'lobby');
    assert.ok(lobby, 'lobby in the rooms list');
    assert.equal(lobby.unread, 1);

    // hide the app past 5 s (socket cut silently), show it: the SDK notices and resumes
    emu.hide();
    await sleep(5300);
    await bob.send('lobby', { text: 'while hidden' });
    emu.show();
    await until('resumed after show', () => chat.position('lobby').seq === 49, 20000);
    assert.ok(emu.stats.silentCuts >= 1);
    assert.deepEqual(rt.toasts, []);
  } finally {
    bob.close();
    if (rt.app && rt.app.globalData.chat) rt.app.globalData.chat.close();
    emu.destroy();
    rt.restore();
    await srv.kill('SIGTERM');
    srv.cleanup();
  }
});
