// Transports: one small interface over wx/uni SocketTask, the browser WebSocket and Node's `ws`.

/** What a transport reports about one connection. */
export interface ConnectionHandlers {
  onOpen(): void;
  onMessage(data: string): void;
  /** Called once per connection, also when it never opened (code 1006). */
  onClose(code: number, reason: string): void;
  onError(message: string): void;
}

export interface Connection {
  /** Returns false when the data could not be handed to the socket. */
  send(data: string): boolean;
  close(code?: number, reason?: string): void;
}

export interface Transport {
  readonly name: string;
  connect(url: string, protocols: string[], handlers: ConnectionHandlers): Connection;
}

/** The part of `wx` / `uni` the SDK uses (WechatMiniprogram.Wx satisfies it). */
export interface MiniSocketApi {
  connectSocket(option: {
    url: string;
    protocols?: string[];
    success?: (res: { errMsg: string }) => void;
    fail?: (res: { errMsg: string }) => void;
  }): MiniSocketTask;
}

export interface MiniSocketTask {
  send(option: { data: string; success?: (res: { errMsg: string }) => void; fail?: (res: { errMsg: string }) => void }): void;
  close(option: { code?: number; reason?: string; success?: (res: { errMsg: string }) => void; fail?: (res: { errMsg: string }) => void }): void;
  onOpen(listener: (res: unknown) => void): void;
  onClose(listener: (res: { code: number; reason: string }) => void): void;
  onError(listener: (res: { errMsg: string }) => void): void;
  onMessage(listener: (res: { data: string | ArrayBuffer }) => void): void;
}

// Compile-time check that the official typings fit the interfaces above.
type Fits<T extends MiniSocketApi> = T;
type _WxFits = Fits<WechatMiniprogram.Wx>;
type FitsTask<T extends MiniSocketTask> = T;
type _TaskFits = FitsTask<WechatMiniprogram.SocketTask>;

/** The errMsg of a wx/uni callback, or `fallback` when it has none. */
const errMsg = (res: { errMsg?: string } | undefined, fallback: string): string => (res && res.errMsg ? res.errMsg : fallback);

/** A received frame: text goes to onMessage, binary is reported (the protocol is JSON text). */
function deliver(h: ConnectionHandlers, data: unknown): void {
  if (typeof data === 'string') h.onMessage(data);
  else h.onError('binary message ignored');
}

/** The code and reason of a close event ({code, reason} from SocketTask and WebSocket alike). */
function closeOf(ev: { code?: unknown; reason?: string } | undefined, finish: (code: number, reason: string) => void): void {
  finish(ev && typeof ev.code === 'number' ? ev.code : 1006, (ev && ev.reason) || '');
}

/**
 * wx.connectSocket (or uni.connectSocket) through the SocketTask object only; the global
 * wx.onSocket* listeners are never used. Handles the close-before-open pitfall: a close()
 * asked before onOpen is kept and done in onOpen (closing a connecting task does nothing on
 * some base libraries, and the task would stay open and count against the 5-socket cap).
 */
export function miniTransport(api: MiniSocketApi, name = 'wx'): Transport {
  return {
    name,
    connect(url, protocols, h) {
      let opened = false;
      let closed = false;
      let closeAsked: { code: number; reason: string } | null = null;
      const finish = (code: number, reason: string) => {
        if (closed) return;
        closed = true;
        h.onClose(code, reason);
      };
      const task = api.connectSocket({
        url,
        protocols,
        fail: (res) => {
          const msg = errMsg(res, 'connectSocket:fail');
          h.onError(msg);
          finish(1006, msg);
        },
      });
      const doClose = (code: number, reason: string) => {
        try {
          task.close({ code, reason, fail: () => finish(1006, 'closeSocket:fail') });
        } catch (e) {
          finish(1006, String(e));
        }
      };
      if (task) {
        task.onOpen(() => {
          opened = true;
          if (closeAsked) doClose(closeAsked.code, closeAsked.reason);
          else if (!closed) h.onOpen();
        });
        task.onMessage((res) => {
          if (!closed && !closeAsked) deliver(h, res.data);
        });
        task.onError((res) => {
          if (!closed) h.onError(errMsg(res, 'socket error'));
        });
        task.onClose((res) => closeOf(res, finish));
      }
      return {
        send(data) {
          if (!opened || closed || closeAsked || !task) return false;
          let ok = true;
          try {
            task.send({ data, fail: (res) => h.onError(errMsg(res, 'sendSocketMessage:fail')) });
          } catch (e) {
            ok = false;
          }
          return ok;
        },
        close(code = 1000, reason = '') {
          if (closed || closeAsked) return;
          closeAsked = { code, reason };
          if (opened && task) doClose(code, reason);
        },
      };
    },
  };
}

/** A constructor with the WHATWG WebSocket shape: the browser's, or Node's `ws` (injected). */
export interface WebSocketLike {
  readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

export function webSocketTransport(Ctor: WebSocketConstructor, name = 'websocket'): Transport {
  return {
    name,
    connect(url, protocols, h) {
      let closed = false;
      const finish = (code: number, reason: string) => {
        if (closed) return;
        closed = true;
        h.onClose(code, reason);
      };
      let ws: WebSocketLike;
      try {
        ws = new Ctor(url, protocols);
      } catch (e) {
        const msg = String(e);
        setTimeoutSafe(() => { h.onError(msg); finish(1006, msg); });
        return { send: () => false, close: () => undefined };
      }
      ws.onopen = () => { if (!closed) h.onOpen(); };
      ws.onmessage = (ev) => {
        if (!closed) deliver(h, ev.data);
      };
      ws.onerror = (ev) => {
        const m = ev ? (ev as { message?: string }).message : undefined;
        if (!closed) h.onError(typeof m === 'string' && m ? m : 'socket error');
      };
      ws.onclose = (ev) => closeOf(ev, finish);
      return {
        send(data) {
          if (closed || ws.readyState !== 1) return false;
          try { ws.send(data); return true; } catch (e) { return false; }
        },
        close(code = 1000, reason = '') {
          if (closed) return;
          // Closing a CONNECTING browser WebSocket is allowed (it fails the handshake).
          try { ws.close(code, reason); } catch (e) { finish(1006, String(e)); }
        },
      };
    },
  };
}

function setTimeoutSafe(fn: () => void): void {
  const g = globalObject();
  if (g && typeof g.setTimeout === 'function') g.setTimeout(fn, 0);
  else Promise.resolve().then(fn);
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function globalObject(): any {
  if (typeof globalThis !== 'undefined') return globalThis;
  // eslint-disable-next-line no-new-func
  return Function('return this')();
}

/** wx first, then uni, then a global WebSocket. */
export function detectTransport(): Transport | null {
  const g = globalObject();
  if (typeof wx !== 'undefined' && wx && typeof wx.connectSocket === 'function') return miniTransport(wx as unknown as MiniSocketApi, 'wx');
  if (g && g.uni && typeof g.uni.connectSocket === 'function') return miniTransport(g.uni as MiniSocketApi, 'uni');
  if (g && typeof g.WebSocket === 'function') return webSocketTransport(g.WebSocket as WebSocketConstructor, 'websocket');
  return null;
}
