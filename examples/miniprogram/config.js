// The chat server. In a real mini-program this must be a filed (备案) wss:// domain, listed
// under 开发管理 → 开发设置 → 服务器域名 → socket合法域名, with a trusted certificate and TLS >= 1.2.
// For local testing in DevTools: ws://127.0.0.1:8080/chat with "不校验合法域名" ticked.
module.exports = {
  url: 'wss://chat.example.com/chat',
};
