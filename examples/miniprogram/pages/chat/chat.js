// Chat: one room. Joins (resuming from the saved position), shows the latest page of history,
// then live events; scrolling to the top loads older pages (`history` with `before`).
const PAGE = 20;

function toItem(e, me) {
  const b = e.body;
  const text = b && typeof b === 'object' && typeof b.text === 'string' ? b.text : JSON.stringify(b);
  return { seq: e.seq, user: e.user, name: e.name, text, mine: e.user === me, edited: !!e.edited, deleted: !!e.deleted };
}

Page({
  data: { room: '', messages: [], draft: '', more: false, loading: false, pending: 0, typing: '', gap: '', bottom: '' },

  onLoad(query) {
    const app = getApp();
    this.chat = app.globalData.chat;
    this.me = app.globalData.name;
    this.room = query.room;
    this.bySeq = {};
    this.setData({ room: this.room });
    wx.setNavigationBarTitle({ title: this.room });
    const chat = this.chat;
    const mine = (e) => e.room === this.room;
    this.offs = [
      chat.on('message', (e) => { if (mine(e)) { this.merge([e]); this.markRead(); } }),
      chat.on('edit', (e) => { if (mine(e)) this.patch(e.target, { text: toItem(e, this.me).text, edited: true }); }),
      chat.on('delete', (e) => { if (mine(e)) this.patch(e.target, { deleted: true }); }),
      chat.on('typing', (e) => { if (mine(e)) this.setData({ typing: e.active ? e.name : '' }); }),
      chat.on('gap', (e) => { if (mine(e)) this.setData({ gap: e.reason === 'epoch' ? 'History was reset 历史已重置' : 'Some old messages expired 部分旧消息已过期' }); }),
      chat.on('sent', () => this.setData({ pending: chat.pending })),
    ];
    this.ready = chat.join(this.room)
      .then(() => chat.history(this.room, { limit: PAGE }))
      .then((page) => {
        this.merge(page.events);
        this.setData({ more: page.more });
        this.markRead();
      })
      .catch((e) => wx.showToast({ title: (e && e.code) || 'error', icon: 'none' }));
  },

  onUnload() { for (const off of this.offs || []) off(); },

  /** Insert stored events by seq (history and live may overlap: each seq once). */
  merge(events) {
    let changed = false;
    for (const e of events) {
      if (e.op !== 'message' || this.bySeq[e.seq]) continue;
      this.bySeq[e.seq] = toItem(e, this.me);
      changed = true;
    }
    if (!changed) return;
    const messages = Object.keys(this.bySeq).map(Number).sort((a, b) => a - b).map((s) => this.bySeq[s]);
    const last = messages[messages.length - 1];
    this.setData({ messages, bottom: last ? 'm' + last.seq : '' });
  },

  patch(seq, fields) {
    const item = this.bySeq[seq];
    if (!item) return;
    Object.assign(item, fields);
    const i = this.data.messages.findIndex((m) => m.seq === seq);
    if (i >= 0) this.setData({ ['messages[' + i + ']']: Object.assign({}, item) });
  },

  markRead() {
    const ms = this.data.messages;
    if (ms.length) this.chat.read(this.room, ms[ms.length - 1].seq).catch(() => {});
  },

  onInput(e) {
    this.setData({ draft: e.detail.value });
    this.chat.typing(this.room, true).catch(() => {});
  },

  onSend() {
    const text = (this.data.draft || '').trim();
    if (!text) return Promise.resolve();
    this.setData({ draft: '' });
    const p = this.chat.send(this.room, { text });
    this.setData({ pending: this.chat.pending });
    this.chat.typing(this.room, false).catch(() => {});
    return p.then(() => this.setData({ pending: this.chat.pending }))
      .catch((e) => wx.showToast({ title: (e && e.code) || 'error', icon: 'none' }));
  },

  /** Scroll back: the page before the oldest shown message. */
  onScrollToUpper() {
    if (!this.data.more || this.data.loading) return Promise.resolve();
    const first = this.data.messages[0];
    if (!first) return Promise.resolve();
    this.setData({ loading: true });
    return this.chat.history(this.room, { before: first.seq, limit: PAGE })
      .then((page) => { this.merge(page.events); this.setData({ more: page.more, loading: false, bottom: '' }); })
      .catch(() => this.setData({ loading: false }));
  },
});
