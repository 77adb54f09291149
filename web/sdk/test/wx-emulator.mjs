// A `wx` emulator for tests, on top of npm `ws`, following WeChat's documentation of
// wx.connectSocket / SocketTask (developers.weixin.qq.com/miniprogram/dev/api/network/websocket/):
//  - connectSocket({url, header, protocols, success, fail, complete}) returns a SocketTask;
//    callbacks get {errMsg: 'connectSocket:ok'} or 'connectSocket:fail ...';
//  - at most 5 SocketTasks at once (the 6th fails: 'connectSocket:fail exceed max task count');
//  - SocketTask.send/close with success/fail/complete ('sendSocketMessage:ok',
//    'sendSocketMessage:fail WebSocket is not connected', 'closeSocket:ok'); onOpen, onMessage
//    ({data}), onError ({errMsg}), onClose ({code, reason}); no ping API;
//  - close() on a task still CONNECTING does nothing (the pitfall of the classic tutorial: the
//    socket opens anyway);
//  - the request's Referer is https://servicewechat.com/{appid}/{version}/page-frame.html;
//  - getStorageSync / setStorageSync / removeStorageSync (a missing key reads as '');
//  - the app lifecycle: hide() fires onAppHide; 5 s later timers stop and every socket is cut
//    without any close event (the task still says OPEN; what is sent goes nowhere); show()
//    resumes the timers and fires onAppShow; setNetwork(false/true) fires onNetworkStatusChange
//    (offline: sockets fail with 1006, connects fail).
import WebSocket from 'ws';

const CONNECTING = 0, OPEN = 1, CLOSING = 2, CLOSED = 3;

export function createWx(opts = {}) {
  const appid = opts.appid || 'touristappid';
  const maxTasks = opts.maxTasks || 5;
  const hideCutMs = opts.hideCutMs !== undefined ? opts.hideCutMs : 5000;
  const storage = opts.storage || new Map();
  const listeners = { show: [], hide: [], net: [] };
  const tasks = new Set();
  const emu = { hidden: false, suspended: false, online: true, tasks, storage, stats: { connects: 0, capRefusals: 0, silentCuts: 0 } };
  let hideTimer = null;

  // ---- timers that stop while the app is suspended ----
  const timers = new Map();
  let nextTimer = 1;
  function arm(t) { t.h = setTimeout(() => { timers.delete(t.id); t.fn(); }, Math.max(0, t.at - Date.now())); }
  const timerApi = {
    now: () => Date.now(),
    setTimeout(fn, ms) {
      const t = { id: nextTimer++, fn, at: Date.now() + Math.max(0, ms || 0), h: null, left: 0 };
      timers.set(t.id, t);
      if (emu.suspended) t.left = Math.max(0, ms || 0);
      else arm(t);
      return t.id;
    },
    clearTimeout(id) { const t = timers.get(id); if (!t) return; clearTimeout(t.h); timers.delete(id); },
  };
  function suspend() {
    emu.suspended = true;
    for (const t of timers.values()) { clearTimeout(t.h); t.left = Math.max(0, t.at - Date.now()); }
    for (const task of tasks) task._silentCut();
  }
  function resume() {
    emu.suspended = false;
    for (const t of timers.values()) { t.at = Date.now() + t.left; arm(t); }
  }

  const async = (fn) => setImmediate(fn);
  const cb = (o, ok, errMsg) => {
    if (!o) return;
    const res = { errMsg };
    if (ok && o.success) o.success(res);
    if (!ok && o.fail) o.fail(res);
    if (o.complete) o.complete(res);
  };

  class SocketTask {
    constructor(o) {
      this.CONNECTING = CONNECTING; this.OPEN = OPEN; this.CLOSING = CLOSING; this.CLOSED = CLOSED;
      this.readyState = CONNECTING;
      this._l = { open: [], message: [], error: [], close: [] };
      this._frozen = false;
      this._ws = null;
      this._o = o;
    }
    _emit(k, v) { for (const f of this._l[k].slice()) f(v); }
    _start() {
      const o = this._o;
      const headers = Object.assign({}, o.header || {}, { Referer: `https://servicewechat.com/${appid}/0/page-frame.html` });
      let ws;
      try {
        ws = new WebSocket(o.url, o.protocols && o.protocols.length ? o.protocols : undefined, { headers, handshakeTimeout: o.timeout || 60000 });
      } catch (e) {
        this._end();
        async(() => { cb(o, false, 'connectSocket:fail ' + e.message); this._emit('error', { errMsg: 'connectSocket:fail ' + e.message }); });
        return;
      }
      this._ws = ws;
      async(() => cb(o, true, 'connectSocket:ok'));
      ws.on('open', () => { if (this._frozen) return; this.readyState = OPEN; this._emit('open', { header: {}, profile: {} }); });
      ws.on('message', (data, isBinary) => {
        if (this._frozen) return;
        this._emit('message', { data: isBinary ? new Uint8Array(data).buffer : data.toString() });
      });
      ws.on('error', (e) => { if (!this._frozen) this._emit('error', { errMsg: e.message }); });
      ws.on('close', (code, reason) => {
        if (this._frozen) return;
        this._end();
        const c = code === 1005 ? 1000 : code;
        this._emit('close', { code: c, reason: c === 1006 ? 'abnormal closure' : reason.toString() });
      });
    }
    _end() { this.readyState = CLOSED; tasks.delete(this); }
    _silentCut() {
      if (this.readyState === CLOSED || this._frozen) return;
      this._frozen = true;
      emu.stats.silentCuts++;
      if (this._ws) this._ws.terminate();
    }
    _cut() { if (this._ws && !this._frozen) this._ws.terminate(); }
    onOpen(f) { this._l.open.push(f); }
    onMessage(f) { this._l.message.push(f); }
    onError(f) { this._l.error.push(f); }
    onClose(f) { this._l.close.push(f); }
    send(o) {
      if (this.readyState !== OPEN) return async(() => cb(o, false, 'sendSocketMessage:fail WebSocket is not connected'));
      if (!this._frozen) {
        try { this._ws.send(o.data); } catch (e) { return async(() => cb(o, false, 'sendSocketMessage:fail ' + e.message)); }
      }
      async(() => cb(o, true, 'sendSocketMessage:ok'));
    }
    close(o = {}) {
      if (this.readyState === CONNECTING) return async(() => cb(o, true, 'closeSocket:ok')); // does nothing
      if (this.readyState === CLOSED || this.readyState === CLOSING) return async(() => cb(o, false, 'closeSocket:fail WebSocket is not connected'));
      this.readyState = CLOSING;
      const code = o.code || 1000;
      if (this._frozen) {
        // the link is already gone: the close completes locally
        this._end();
        async(() => { cb(o, true, 'closeSocket:ok'); this._emit('close', { code, reason: o.reason || '' }); });
        return;
      }
      try { this._ws.close(code, o.reason || ''); } catch (e) { this._ws.terminate(); }
      async(() => cb(o, true, 'closeSocket:ok'));
    }
  }

  const wx = {
    connectSocket(o) {
      const task = new SocketTask(o);
      if (tasks.size >= maxTasks) {
        emu.stats.capRefusals++;
        task.readyState = CLOSED;
        async(() => cb(o, false, 'connectSocket:fail exceed max task count'));
        return task;
      }
      if (!emu.online) {
        task.readyState = CLOSED;
        async(() => { cb(o, false, 'connectSocket:fail network is down'); task._emit('error', { errMsg: 'network is down' }); task._emit('close', { code: 1006, reason: 'abnormal closure' }); });
        return task;
      }
      tasks.add(task);
      emu.stats.connects++;
      task._start();
      return task;
    },
    getStorageSync(k) { return storage.has(k) ? JSON.parse(storage.get(k)) : ''; },
    setStorageSync(k, v) { storage.set(k, JSON.stringify(v)); },
    removeStorageSync(k) { storage.delete(k); },
    onAppShow(f) { listeners.show.push(f); },
    offAppShow(f) { listeners.show = listeners.show.filter((x) => x !== f); },
    onAppHide(f) { listeners.hide.push(f); },
    offAppHide(f) { listeners.hide = listeners.hide.filter((x) => x !== f); },
    onNetworkStatusChange(f) { listeners.net.push(f); },
    offNetworkStatusChange(f) { listeners.net = listeners.net.filter((x) => x !== f); },
    getNetworkType(o) { async(() => o && o.success && o.success({ errMsg: 'getNetworkType:ok', networkType: emu.online ? 'wifi' : 'none' })); },
  };

  emu.wx = wx;
  emu.timers = timerApi;
  emu.hide = () => {
    if (emu.hidden) return;
    emu.hidden = true;
    for (const f of listeners.hide.slice()) f({});
    hideTimer = setTimeout(() => { hideTimer = null; if (emu.hidden) suspend(); }, hideCutMs);
  };
  emu.show = () => {
    if (!emu.hidden) return;
    emu.hidden = false;
    if (hideTimer) { clearTimeout(hideTimer); hideTimer = null; }
    if (emu.suspended) resume();
    for (const f of listeners.show.slice()) f({ path: 'pages/index/index', scene: 1001 });
  };
  emu.setNetwork = (online) => {
    emu.online = online;
    if (!online) for (const t of tasks) t._cut();
    for (const f of listeners.net.slice()) f({ isConnected: online, networkType: online ? 'wifi' : 'none' });
  };
  /** Cut every socket abruptly (onClose 1006). */
  emu.cut = () => { for (const t of tasks) t._cut(); };
  /** Stop everything (end of test). */
  emu.destroy = () => {
    if (hideTimer) clearTimeout(hideTimer);
    for (const t of timers.values()) clearTimeout(t.h);
    timers.clear();
    for (const t of tasks) { t._frozen = true; if (t._ws) t._ws.terminate(); }
    tasks.clear();
  };
  return emu;
}
