// Rooms: the user's rooms with unread counts (the `rooms` request), join a new one.
const ROOM = /^[A-Za-z0-9_.:-]{1,64}$/;

Page({
  data: { rooms: [], newRoom: '', name: '', state: '' },

  onShow() {
    const app = getApp();
    this.setData({ name: app.globalData.name, state: app.globalData.state });
    this.refresh();
  },

  refresh() {
    const chat = getApp().globalData.chat;
    return chat.rooms().then((rooms) => {
      this.setData({ rooms: rooms.map((r) => ({ room: r.room, unread: r.unread })), state: chat.state });
    }).catch((e) => console.warn('[rooms]', e && e.message));
  },

  onRoomInput(e) { this.setData({ newRoom: e.detail.value.trim() }); },

  onJoin() {
    const room = this.data.newRoom;
    if (!ROOM.test(room)) {
      wx.showToast({ title: 'A–Z a–z 0–9 _ . : -', icon: 'none' });
      return;
    }
    this.setData({ newRoom: '' });
    wx.navigateTo({ url: '/pages/chat/chat?room=' + room });
  },

  onOpen(e) { wx.navigateTo({ url: '/pages/chat/chat?room=' + e.currentTarget.dataset.room }); },
});
