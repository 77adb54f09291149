'use strict';
// socketio_server: the Socket.IO 4.8 peer of bench/chat/chat_compare.py.
//
// The same chat as tongdao-server's fan-out path, kept in memory and nothing else: no store,
// no auth, no presence. Rooms are Socket.IO's own (socket.join, io.to(room).emit, the default
// in-memory adapter); a per-room counter gives each message its seq.
//
//   join {room}               -> socket.join(room); ack {ok: true, room} when asked for one
//   send {room, cid, body}    -> ack {seq, ts}, then io.to(room).emit('message',
//                                {room, seq, ts, user, cid, body}) to every member, sender included
//   hello {name}              -> optional: sets `user` (the socket id otherwise); ack {ok: true}
//
// Engine.IO runs the websocket transport only (no HTTP long-polling), so a client connects
// straight to ws://127.0.0.1:PORT/socket.io/?EIO=4&transport=websocket. permessage-deflate is
// off (Engine.IO's default), and so is the HTTP compression of polling, unused here.
// `socket.io` comes from the repository's node_modules (package.json devDependencies).
//
//   node bench/chat/socketio_server.js PORT [MAX_SECONDS]   listens on 127.0.0.1:PORT; exits
//                                                           on SIGTERM/SIGINT or after MAX_SECONDS (3600)

const http = require('http');
const { Server } = require('socket.io');

const port = Number(process.argv[2]);
const maxSeconds = Number(process.argv[3] || 3600);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error('usage: node socketio_server.js PORT [MAX_SECONDS]');
  process.exit(2);
}

const httpServer = http.createServer((req, res) => {
  res.writeHead(404);
  res.end();
});
const io = new Server(httpServer, {
  transports: ['websocket'],
  serveClient: false,
  perMessageDeflate: false,
  httpCompression: false,
  maxHttpBufferSize: 1e6,
});

const seqs = new Map(); // room -> last seq given out

io.on('connection', (socket) => {
  socket.data.user = socket.id;
  socket.on('hello', (msg, ack) => {
    if (msg && typeof msg.name === 'string' && msg.name.length > 0) socket.data.user = msg.name;
    if (typeof ack === 'function') ack({ ok: true, user: socket.data.user });
  });
  socket.on('join', (msg, ack) => {
    const room = msg && msg.room;
    if (typeof room !== 'string' || room.length === 0) {
      if (typeof ack === 'function') ack({ ok: false, code: 'bad_request' });
      return;
    }
    socket.join(room);
    if (typeof ack === 'function') ack({ ok: true, room, seq: seqs.get(room) || 0 });
  });
  socket.on('send', (msg, ack) => {
    const room = msg && msg.room;
    if (typeof room !== 'string' || !socket.rooms.has(room)) {
      if (typeof ack === 'function') ack({ ok: false, code: 'not_joined' });
      return;
    }
    const seq = (seqs.get(room) || 0) + 1;
    seqs.set(room, seq);
    const ts = Date.now();
    if (typeof ack === 'function') ack({ seq, ts });
    io.to(room).emit('message', { room, seq, ts, user: socket.data.user, cid: msg.cid, body: msg.body });
  });
  // A client that resets its connection must not take the process down.
  socket.on('error', () => {});
});

httpServer.on('error', (err) => {
  console.error(`socketio_server: ${err.message}`);
  process.exit(1);
});
httpServer.listen({ host: '127.0.0.1', port, backlog: 4096 });

const stop = () => process.exit(0);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
setTimeout(stop, maxSeconds * 1000).unref();
