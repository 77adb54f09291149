// The app owns ONE ChatClient (one socket; every room multiplexed on it). Pages reach it with
// getApp().globalData.chat. The SDK comes from npm: DevTools "构建 npm" (build npm) copies
// node_modules/tongdao-chat/dist/cjs (its "miniprogram" field) to miniprogram_npm/tongdao-chat.
const { ChatClient } = require('tongdao-chat');
const config = require('./config.js');

App({
  globalData: { chat: null, name: '', state: 'idle' },

  onLaunch() {
    let name = wx.getStorageSync('nickname');
    if (!name) {
      name = 'guest-' + Math.floor(Math.random() * 100000);
      wx.setStorageSync('nickname', name);
    }
    this.globalData.name = name;
    // wx gives the transport (SocketTask), the storage (setStorageSync) and the lifecycle
    // (onAppShow / onAppHide / onNetworkStatusChange) to the SDK.
    const chat = new ChatClient({ url: config.url, name, wx });
    chat.on('state', (e) => { this.globalData.state = e.state; });
    chat.on('error', (e) => console.warn('[chat]', e.code, e.message));
    this.globalData.chat = chat;
    chat.connect().catch((e) => console.warn('[chat] connect', e && e.message));
  },
});
