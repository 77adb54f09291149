// ws_client_bench.js: the same measurement with Node's `ws` client.
//   node ws_client_bench.js --url ws://127.0.0.1:P/echo [--connections C] [--size N]
//        [--mode rr|pipe] [--window W] [--duration S] [--warmup S]
'use strict';
const path = require('path');
const WebSocket = require(path.join(__dirname, '..', '..', 'node_modules', 'ws'));

const args = { url: '', connections: 100, size: 20, mode: 'rr', window: 16, duration: 5, warmup: 1 };
for (let i = 2; i + 1 < process.argv.length; i += 2) {
  const k = process.argv[i].replace(/^--/, '');
  args[k] = k === 'url' || k === 'mode' ? process.argv[i + 1] : Number(process.argv[i + 1]);
}
const payload = Buffer.alloc(args.size, 'x');
const inFlight = args.mode === 'pipe' ? args.window : 1;
let received = 0, opened = 0, errors = 0;
const sockets = [];
for (let i = 0; i < args.connections; i++) {
  const ws = new WebSocket(args.url, { perMessageDeflate: false });
  ws.on('open', () => {
    opened++;
    ws._socket.setNoDelay(true);
    for (let k = 0; k < inFlight; k++) ws.send(payload);
  });
  ws.on('message', () => { received++; ws.send(payload); });
  ws.on('error', (e) => { if (++errors <= 3) console.error('ws_client_bench:', e.message); });
  sockets.push(ws);
}
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };
const waitOpen = setInterval(() => {
  if (opened + errors < args.connections) return;
  clearInterval(waitOpen);
  setTimeout(() => {
    const m0 = received, c0 = cpu(), t0 = process.hrtime.bigint();
    setTimeout(() => {
      const m1 = received, c1 = cpu();
      const secs = Number(process.hrtime.bigint() - t0) / 1e9;
      for (const ws of sockets) ws.terminate();
      console.log(JSON.stringify({ messages: m1 - m0, seconds: secs, msgs_per_sec: (m1 - m0) / secs,
        client_cpu_seconds: c1 - c0, open: opened, errors }));
      process.exit(0);
    }, args.duration * 1000);
  }, args.warmup * 1000);
}, 50);
setTimeout(() => { console.error('ws_client_bench: gave up'); process.exit(1); }, (args.duration + args.warmup + 60) * 1000);
