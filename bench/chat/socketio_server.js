'use strict';
// socketio_server: the Socket.IO 4.8 peer of bench/chat/chat_compare.py.
//
// The same chat as tongdao-server's fan-out path, kept in memory and nothing else: no store,
// no auth, no presence. Rooms are Socket.IO's own (socket.join, io.to(room).emit, the default
// in-memory adapter); a per-room counter gives each message its seq.
//
// With --redis URL, several of these processes act as one server through Redis, the way
// Socket.IO documents it: @socket.io/redis-adapter over two clients of the `redis` package (one
// publishes, one subscribes). Each io.to(room).emit is then one PUBLISH, which every process
// receives and delivers to the room's members it holds. Nothing is stored in Redis; the seq
// counter stays per process (chat_compare.py --modes redis measures delivery, not seq order).
//
//   join {room}               -> socket.join(room); ack {ok: true, room} when asked for one
//   send {room, cid, body}    -> ack {seq, ts}, then io.to(room).emit('message',
//                                {room, seq, ts, user, cid, body}) to every member, sender included
//   hello {name}              -> optional: sets `user` (the socket id otherwise); ack {ok: true}
//
// Engine.IO runs the websocket transport only (no HTTP long-polling), so a client connects
// straight to ws://127.0.0.1:PORT/socket.io/?EIO=4&transport=websocket. permessage-deflate is
// off (Engine.IO's default), and so is the HTTP compression of polling, unused here.
// `socket.io` (and, for --redis, `@socket.io/redis-adapter` and `redis`) come from the
// repository's node_modules (package.json devDependencies, pinned by package-lock.json).
//
//   node bench/chat/socketio_server.js PORT [MAX_SECONDS] [--redis redis://127.0.0.1:6379]
//       listens on 127.0.0.1:PORT (once Redis is connected, with --redis); exits on SIGTERM/SIGINT,
//       after MAX_SECONDS (3600), or when its Redis connection fails

const http = require('http');
const { Server } = require('socket.io');

const usage = () => {
  console.error('usage: node socketio_server.js PORT [MAX_SECONDS] [--redis URL]');
  process.exit(2);
};
const positional = [];
let redisUrl = null;
for (let i = 2; i < process.argv.length; i++) {
  if (process.argv[i] === '--redis') {
    redisUrl = process.argv[++i];
    if (!redisUrl || !/^redis:\/\/(127\.[0-9.]+|localhost|\[::1\]):[0-9]+(\/[0-9]+)?$/.test(redisUrl)) usage();
  } else {
    positional.push(process.argv[i]);
  }
}
const port = Number(positional[0]);
const maxSeconds = Number(positional[1] || 3600);
if (!Number.isInteger(port) || port <= 0 || port > 65535 || !(maxSeconds > 0)) usage();

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
const listen = () => httpServer.listen({ host: '127.0.0.1', port, backlog: 4096 });

if (redisUrl) {
  const { createClient } = require('redis');
  const { createAdapter } = require('@socket.io/redis-adapter');
  const fatal = (what) => (err) => {
    console.error(`socketio_server: redis ${what}: ${err && err.message}`);
    process.exit(1);
  };
  // No reconnection: a benchmark whose Redis went away has no figures worth keeping.
  const pubClient = createClient({ url: redisUrl, socket: { reconnectStrategy: false } });
  const subClient = pubClient.duplicate();
  pubClient.on('error', fatal('publisher'));
  subClient.on('error', fatal('subscriber'));
  // The adapter does not wait for its PUBLISHes; one that the client gives up on (its command
  // timeout, 5 s, when the process is overloaded) is a broadcast lost, not a reason to exit.
  let lost = 0;
  process.on('unhandledRejection', (err) => {
    if (lost++ < 5) console.error(`socketio_server: a Redis command failed (${err && err.name}): broadcast lost`);
  });
  Promise.all([pubClient.connect(), subClient.connect()]).then(() => {
    io.adapter(createAdapter(pubClient, subClient));
    listen();
  }, fatal('connect'));
} else {
  listen();
}

const stop = () => process.exit(0);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
setTimeout(stop, maxSeconds * 1000).unref();
