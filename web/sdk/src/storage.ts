import { globalObject } from './transport.js';

/** A synchronous key/value store: the outbox must be on disk before send() returns. */
export interface SyncStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

export function memoryStorage(): SyncStorage {
  const m = new Map<string, string>();
  return {
    getItem: (k) => (m.has(k) ? (m.get(k) as string) : null),
    setItem: (k, v) => { m.set(k, v); },
    removeItem: (k) => { m.delete(k); },
  };
}

export interface MiniStorageApi {
  getStorageSync(key: string): unknown;
  setStorageSync(key: string, data: unknown): void;
  removeStorageSync(key: string): void;
}

/** wx.setStorageSync / uni.setStorageSync (never the async variants). */
export function miniStorage(api: MiniStorageApi): SyncStorage {
  return {
    getItem(k) {
      const v = api.getStorageSync(k);
      return typeof v === 'string' && v !== '' ? v : null;
    },
    setItem: (k, v) => api.setStorageSync(k, v),
    removeItem: (k) => api.removeStorageSync(k),
  };
}

export function detectStorage(): SyncStorage {
  const g = globalObject();
  if (typeof wx !== 'undefined' && wx && typeof wx.setStorageSync === 'function') return miniStorage(wx as unknown as MiniStorageApi);
  if (g && g.uni && typeof g.uni.setStorageSync === 'function') return miniStorage(g.uni as MiniStorageApi);
  try {
    if (g && g.localStorage && typeof g.localStorage.setItem === 'function') return g.localStorage as SyncStorage;
  } catch (e) {
    // localStorage access can throw (privacy mode): fall through.
  }
  return memoryStorage();
}
