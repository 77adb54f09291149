'use strict';
// ws_echo: a Node `ws` WebSocket echo peer for bench/echo_compare.py.
//
// Every message goes back with its type. permessage-deflate is off (ws would otherwise
// offer it), client tracking is off (the benchmark never iterates clients), and `ws`
// already sets TCP_NODELAY on its sockets. `ws` comes from the repository's node_modules.
//
//   node bench/peers/ws_echo.js PORT [MAX_SECONDS]   listens on 127.0.0.1:PORT; exits on
//                                                    SIGTERM/SIGINT or after MAX_SECONDS (3600)

const { WebSocketServer } = require('ws');

const port = Number(process.argv[2]);
const maxSeconds = Number(process.argv[3] || 3600);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error('usage: node ws_echo.js PORT [MAX_SECONDS]');
  process.exit(2);
}

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port,
  backlog: 4096,
  perMessageDeflate: false,
  clientTracking: false,
});

wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  // A peer that resets the connection must not take the process down.
  ws.on('error', () => {});
});
wss.on('error', (err) => {
  console.error(`ws_echo: ${err.message}`);
  process.exit(1);
});

const stop = () => process.exit(0);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
setTimeout(stop, maxSeconds * 1000).unref();
