'use strict';
// A WebSocket server on Node's `ws` for tongdao's client interop test
// (client_interop_test.py). It listens on 127.0.0.1 and a free port, prints "PORT n", then
// one JSON object per line for what it sees. Paths:
//   /echo        echoes every message, text as text and binary as binary
//   /close4001   closes at once with 4001 "bye"
//   /fragmented  sends "alpha"+"beta"+"gamma" as one fragmented text message and
//                01 02 + 03 as one fragmented binary message, then echoes
//   /ping        pings with "probe"; when the pong comes back, sends "pong:<payload>", then echoes
// Every path selects the sub-protocol "superchat" when the client offers it.
// It exits on SIGTERM, or by itself after 10 minutes at most.

const path = require('path');
const WebSocket = require(path.join(__dirname, '..', '..', 'node_modules', 'ws'));

function log(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

const server = new WebSocket.WebSocketServer({
  host: '127.0.0.1',
  port: 0,
  maxPayload: 64 * 1024 * 1024,
  perMessageDeflate: false,
  handleProtocols: (protocols) => (protocols.has('superchat') ? 'superchat' : false),
});

server.on('listening', () => process.stdout.write(`PORT ${server.address().port}\n`));

server.on('connection', (ws, req) => {
  const where = req.url;
  log({ server: 'open', path: where, subprotocol: ws.protocol || '', headers: req.headers });
  ws.on('close', (code, reason) => log({ server: 'close', path: where, code, reason: reason.toString() }));
  ws.on('error', (e) => log({ server: 'error', path: where, message: e.message }));
  const echo = () => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));

  if (where === '/close4001') {
    ws.close(4001, 'bye');
  } else if (where === '/fragmented') {
    ws.send('alpha', { fin: false });
    ws.send('beta', { fin: false });
    ws.send('gamma', { fin: true });
    ws.send(Buffer.from([1, 2]), { binary: true, fin: false });
    ws.send(Buffer.from([3]), { binary: true, fin: true });
    echo();
  } else if (where === '/ping') {
    ws.on('pong', (data) => {
      log({ server: 'pong', path: where, data: data.toString() });
      ws.send('pong:' + data.toString());
    });
    ws.ping('probe');
    echo();
  } else {
    echo();
  }
});

process.on('SIGTERM', () => {
  for (const c of server.clients) c.terminate();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
});
setTimeout(() => process.exit(3), 10 * 60 * 1000).unref();
