"""Support for the chat system tests (docs/PROTOCOL.md): tongdao-server with a temporary
--data-dir on a free loopback port, killed and restarted on the same port and data dir;
an asyncio client over Python `websockets` (replies matched by id, events buffered or
handed to a callback, cut by a clean close or a TCP RST); JWTs; raw HTTP; a check runner.

Every wait here is bounded. Processes are stopped by their pid (SIGTERM, then SIGKILL).
"""

import asyncio
import base64
import hashlib
import hmac
import itertools
import http.client
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))
from echo_server import ManagedProcess, free_port  # noqa: E402

try:
    import websockets
    import websockets.client
    import websockets.exceptions as wse
    WEBSOCKETS_MISSING = None
except ImportError as e:  # the scripts say SKIP
    websockets = None
    wse = None
    WEBSOCKETS_MISSING = str(e)

SKIP = 77  # ctest SKIP_RETURN_CODE
SUBPROTOCOL = "tongdao.chat.v1"
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "WARNING: ThreadSanitizer", "SUMMARY: UndefinedBehaviorSanitizer")
STORED = ("message", "edit", "delete")  # the ops of stored events
_n = itertools.count(1)


def uniq(prefix):
    """A name not used before in this process (rooms, cids, users)."""
    return f"{prefix}-{next(_n)}"


def stored(m):
    return m.get("op") in STORED


def seqs(events):
    return [e.get("seq") for e in events]


def server_path(argv):
    """tongdao-server: first argument, else $TONGDAO_SERVER. Exits 77 (skip) without the
    websockets module, 2 without a usable server."""
    if websockets is None:
        print(f"SKIP: Python websockets is not installed ({WEBSOCKETS_MISSING}); install python3-websockets",
              flush=True)
        sys.exit(SKIP)
    path = argv[1] if len(argv) > 1 and not argv[1].startswith("-") else os.environ.get("TONGDAO_SERVER", "")
    if not path or not os.access(path, os.X_OK):
        print(f"tongdao-server not found (got {path!r}); pass it as the first argument or in TONGDAO_SERVER",
              file=sys.stderr)
        sys.exit(2)
    return path


# --- the server ------------------------------------------------------------------------------

class ChatServer(ManagedProcess):
    """tongdao-server --anonymous on 127.0.0.1:port with its own --data-dir (a temporary
    directory unless given). The port and the data dir stay the same across restarts;
    each run's output goes to a temporary file of its own (`output()` has them all)."""

    stop_name = "tongdao-server"
    term_timeout = 20.0  # it waits for the store to finish what it was given

    def __init__(self, path, *args, anonymous=True, data_dir=None, port=None, threads=2,
                 log_level="warn", start_timeout=60.0):
        self.path = path
        self.args = [str(a) for a in args]
        self.anonymous = anonymous
        self.port = port or free_port()
        self.own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="tongdao-chat-")
        self.threads = threads
        self.log_level = log_level
        self.start_timeout = start_timeout
        self.proc = None
        self.logs = []  # (run number, file)
        self.runs = 0

    # - life -

    def command(self):
        cmd = [self.path, "--host", "127.0.0.1", "--port", str(self.port), "--threads", str(self.threads),
               "--data-dir", self.data_dir, "--log-level", self.log_level]
        if self.anonymous:
            cmd.append("--anonymous")
        return cmd + self.args

    def _spawn(self):
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("tongdao-server is already running")
        self.runs += 1
        log = tempfile.TemporaryFile()
        self.logs.append((self.runs, log))
        # Every option of tongdao-server can also come from a TONGDAO_* variable: none of the
        # caller's may change the server under test.
        env = {k: v for k, v in os.environ.items() if not k.startswith("TONGDAO_")}
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                     env=env)

    def _early_exit(self):
        return RuntimeError(f"tongdao-server exited early (status {self.proc.returncode}); "
                            f"command: {' '.join(self.command())}\n{self.output(last=True)}")

    def start(self):
        """Starts it and waits for GET /health == 200 (bounded)."""
        self._spawn()
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                raise self._early_exit()
            if self.healthy():
                return self
            if time.monotonic() > deadline:
                self.kill9()
                raise RuntimeError(f"tongdao-server not healthy within {self.start_timeout}s\n{self.output(last=True)}")
            time.sleep(0.05)

    async def astart(self):
        """start() without blocking the event loop."""
        self._spawn()
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                raise self._early_exit()
            if await self.ahealthy():
                return self
            if time.monotonic() > deadline:
                self.kill9()
                raise RuntimeError(f"tongdao-server not healthy within {self.start_timeout}s\n{self.output(last=True)}")
            await asyncio.sleep(0.05)

    def restart_after_kill(self):
        self.kill9()
        return self.start()

    async def arestart_after_kill(self):
        self.kill9()
        return await self.astart()

    def wipe_data(self):
        """Deletes everything in the data dir (the server must be stopped): its history is lost."""
        if self.running():
            raise RuntimeError("wipe_data with the server running")
        for entry in os.listdir(self.data_dir):
            p = os.path.join(self.data_dir, entry)
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p)
            else:
                os.unlink(p)

    def close(self):
        status = self.stop()
        if self.own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        return status

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    # - probes -

    def healthy(self):
        try:
            status, _, _ = http_request(self.port, "GET", "/health", timeout=2)
            return status == 200
        except OSError:
            return False

    async def ahealthy(self):
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), 2)
        except (OSError, asyncio.TimeoutError):
            return False
        try:
            writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            line = await asyncio.wait_for(reader.readline(), 2)
            return line.split()[1:2] == [b"200"]
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            return False
        finally:
            writer.close()

    def url(self, path="/chat"):
        return f"ws://127.0.0.1:{self.port}{path}"

    def http(self, method, path, body=None, headers=None, timeout=10.0):
        return http_request(self.port, method, path, body, headers, timeout)

    def output(self, last=False, skip_empty=False):
        parts = []
        for run, log in (self.logs[-1:] if last else self.logs):
            log.seek(0)
            text = log.read().decode(errors="replace")
            if skip_empty and not text.strip():
                continue
            parts.append(f"--- tongdao-server run {run} ---\n{text}")
        return "\n".join(parts)

    def sanitizer_report(self):
        """The lines of every run's output that a sanitizer wrote ("" when none)."""
        lines = [line for line in self.output().splitlines() if any(m in line for m in SANITIZER_MARKS)]
        return "\n".join(lines)


# --- HTTP ------------------------------------------------------------------------------------

def http_request(port, method, path, body=None, headers=None, timeout=10.0):
    """(status, {lower-case header: value}, body bytes). `body` may be bytes, str or a JSON value."""
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        conn.close()


def raw_upgrade(port, path="/chat", headers=None, timeout=10.0):
    """A WebSocket upgrade over a plain socket, for refusals: (status, {header: value}, body)."""
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket", "Connection: Upgrade",
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        buf = b""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in buf:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        head_lines = head.decode(errors="replace").split("\r\n")
        parts = head_lines[0].split(" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
        hdrs = {}
        for line in head_lines[1:]:
            k, _, v = line.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        if status == 101:
            return status, hdrs, b""
        length = int(hdrs["content-length"]) if hdrs.get("content-length", "").isdigit() else None
        while (length is None or len(rest) < length) and time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            rest += chunk
        return status, hdrs, rest


# --- tokens ----------------------------------------------------------------------------------

def b64url(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(secret, claims, alg="HS256", header=None, signature=None):
    """A JWT of `claims`, signed HS256 (HS512 when alg says so) with `secret`; `signature`
    replaces the signature (e.g. "" for alg none)."""
    head = header if header is not None else {"alg": alg, "typ": "JWT"}
    signing_input = f"{b64url(json.dumps(head, separators=(',', ':')))}.{b64url(json.dumps(claims, separators=(',', ':')))}"
    if signature is None:
        digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}.get(alg, hashlib.sha256)
        sig = b64url(hmac.new(secret.encode() if isinstance(secret, str) else secret,
                              signing_input.encode(), digest).digest())
    else:
        sig = signature
    return f"{signing_input}.{sig}"


# --- the client ------------------------------------------------------------------------------

class ConnectionLost(Exception):
    """The connection closed before the reply came (or before the request could be sent)."""


class Reply(dict):
    """A reply; `.request` is the request it answers (when matched by id)."""
    request = None

    def __str__(self):
        return f"sent {json.dumps(self.request)[:300] if self.request else '?'} got {json.dumps(self)[:400]}"


def _key(rid):
    return (isinstance(rid, str), rid)


class ChatClient:
    """One connection to /chat. `request(op, **fields)` sends {"op", "id", ...} and returns
    the reply with that id (a Reply); replies with `id: null` or an unknown id go to
    `stray`; events go to `on_event` when given, else they are buffered for `event()`.
    `trace` keeps every message received, in order (for order checks)."""

    def __init__(self, ws, on_event=None, trace=True):
        self.ws = ws
        self.on_event = on_event
        self.trace = [] if trace else None
        self.next_id = 1
        self.pending = {}
        self.requests = {}
        self.events = []
        self.stray = []
        self.binary = []
        self.unparsable = []
        self.closed = False
        self.arrived = asyncio.Event()
        self.reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def connect(cls, url, subprotocols=(SUBPROTOCOL,), origin=None, headers=None, compression=None,
                      open_timeout=10.0, max_size=2 ** 24, on_event=None, trace=True):
        ws = await websockets.client.connect(
            url, subprotocols=list(subprotocols) if subprotocols else None, origin=origin, extra_headers=headers,
            compression=compression, open_timeout=open_timeout, ping_interval=None, close_timeout=3,
            max_size=max_size)
        return cls(ws, on_event=on_event, trace=trace)

    @property
    def subprotocol(self):
        return self.ws.subprotocol

    async def _read(self):
        try:
            async for raw in self.ws:
                self._dispatch(raw)
        except wse.ConnectionClosed:
            pass
        except Exception as e:  # noqa: BLE001 - reported to whoever waits
            self.reader_error = e
        finally:
            self.closed = True
            for fut in self.pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionLost(f"closed {self.ws.close_code} {self.ws.close_reason!r}"))
                    fut.exception()  # retrieved: no "never retrieved" noise when nobody waits any more
            self.pending.clear()
            self.arrived.set()

    def _dispatch(self, raw):
        if isinstance(raw, bytes):
            self.binary.append(raw)
            self.arrived.set()
            return
        try:
            msg = json.loads(raw)
        except ValueError:
            self.unparsable.append(raw)
            self.arrived.set()
            return
        if isinstance(msg, dict) and msg.get("op") == "reply":
            msg = Reply(msg)
            rid = msg.get("id")
            fut = self.pending.pop(_key(rid), None) if rid is not None and not isinstance(rid, (dict, list)) else None
            if self.trace is not None:
                self.trace.append(msg)
            if fut is not None:
                msg.request = self.requests.pop(_key(rid), None)
                if not fut.done():
                    fut.set_result(msg)
            else:
                self.stray.append(msg)
        else:
            if self.trace is not None:
                self.trace.append(msg)
            if self.on_event is not None:
                self.on_event(msg)
            else:
                self.events.append(msg)
        self.arrived.set()

    # - requests -

    async def _start(self, op, id=None, **fields):  # noqa: A002 - the protocol's name
        if id is None:
            id = self.next_id  # noqa: A001
            self.next_id += 1
        msg = {"op": op, "id": id, **fields}
        fut = asyncio.get_running_loop().create_future()
        if self.closed:
            raise ConnectionLost("closed before the request")
        key = _key(id)
        self.pending[key] = fut
        self.requests[key] = msg
        try:
            await self.ws.send(json.dumps(msg))
        except wse.ConnectionClosed as e:
            self.pending.pop(key, None)
            self.requests.pop(key, None)
            raise ConnectionLost(str(e)) from e
        return key, fut

    async def start(self, op, id=None, **fields):  # noqa: A002
        """Sends a request; returns the future of its reply (ConnectionLost if it closes first)."""
        return (await self._start(op, id=id, **fields))[1]

    async def request(self, op, timeout=15.0, id=None, **fields):  # noqa: A002
        """Sends a request and waits (bounded) for its reply."""
        key, fut = await self._start(op, id=id, **fields)
        try:
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            self.pending.pop(key, None)
            req = self.requests.pop(key, None)
            raise AssertionError(f"no reply within {timeout}s to {json.dumps(req)[:300]}") from None

    async def send_raw(self, data):
        """A text (str) or binary (bytes) message as is."""
        try:
            await self.ws.send(data)
        except wse.ConnectionClosed as e:
            raise ConnectionLost(str(e)) from e

    async def raw_request(self, text, rid=None, timeout=10.0):
        """Sends `text` as is; returns the reply with id `rid` (when given) or the next reply
        not matched to a request (id null), whichever comes first."""
        key = _key(rid) if rid is not None else None
        fut = None
        if key is not None:
            fut = asyncio.get_running_loop().create_future()
            self.pending[key] = fut
            self.requests[key] = text
        await self.send_raw(text)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if fut is not None and fut.done():
                    return fut.result()
                if self.stray:
                    return self.stray.pop(0)
                if self.closed:
                    raise ConnectionLost(f"closed {self.ws.close_code} {self.ws.close_reason!r} before a reply to {text[:100]}")
                await self._wait(deadline, f"reply to {text[:100]}")
        finally:
            if key is not None:
                self.pending.pop(key, None)
                self.requests.pop(key, None)

    async def stray_reply(self, timeout=10.0):
        """The next reply not matched to a request (id null or unknown)."""
        deadline = time.monotonic() + timeout
        while not self.stray:
            if self.closed:
                raise ConnectionLost(f"closed {self.ws.close_code} {self.ws.close_reason!r} before a reply")
            await self._wait(deadline, "a reply with id null")
        return self.stray.pop(0)

    async def _wait(self, deadline, what):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {what} in time; last received: {json.dumps(self.trace[-3:] if self.trace else self.events[-3:])[:600]}")
        self.arrived.clear()
        try:
            await asyncio.wait_for(self.arrived.wait(), left)
        except asyncio.TimeoutError:
            pass

    # - events -

    @staticmethod
    def _match(msg, op, room, pred):
        return ((op is None or msg.get("op") == op) and (room is None or msg.get("room") == room)
                and (pred is None or pred(msg)))

    async def event(self, op=None, room=None, pred=None, timeout=10.0):
        """The first buffered event that matches (removed from the buffer); waits for one."""
        deadline = time.monotonic() + timeout
        while True:
            for i, msg in enumerate(self.events):
                if self._match(msg, op, room, pred):
                    return self.events.pop(i)
            if self.closed:
                raise ConnectionLost(f"closed {self.ws.close_code} {self.ws.close_reason!r} waiting for {op} event")
            await self._wait(deadline, f"{op or 'any'} event{' in ' + room if room else ''}")

    async def no_event(self, op=None, room=None, pred=None, within=0.5):
        """Fails when a matching event is buffered or arrives within `within` seconds."""
        deadline = time.monotonic() + within
        while True:
            for msg in self.events:
                if self._match(msg, op, room, pred):
                    raise AssertionError(f"unexpected event: {json.dumps(msg)[:400]}")
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                return
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), left)
            except asyncio.TimeoutError:
                pass

    def take(self, op=None, room=None, pred=None):
        """Removes and returns every buffered matching event."""
        got = [m for m in self.events if self._match(m, op, room, pred)]
        self.events = [m for m in self.events if not self._match(m, op, room, pred)]
        return got

    async def collect(self, room, until_seq, timeout=20.0, ops=("message", "edit", "delete")):
        """Stored events of `room` (buffered and arriving) until one with seq >= until_seq."""
        got = []
        deadline = time.monotonic() + timeout
        while True:
            taken = self.take(room=room, pred=lambda m: m.get("op") in ops)
            got += taken
            if got and got[-1].get("seq", 0) >= until_seq:
                return got
            if until_seq <= 0:
                return got
            if self.closed:
                raise ConnectionLost(f"closed {self.ws.close_code} {self.ws.close_reason!r}; "
                                     f"got seqs {[m.get('seq') for m in got][-10:]} of {until_seq}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{room}: events up to seq {until_seq} not received within {timeout}s; "
                                     f"got seqs {[m.get('seq') for m in got][-10:]}")
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), left)
            except asyncio.TimeoutError:
                pass

    # - ending -

    async def closed_with(self, timeout=10.0):
        """Waits until the connection is closed; (close code, reason) as received."""
        try:
            await asyncio.wait_for(asyncio.shield(self.reader), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"connection not closed within {timeout}s") from None
        return self.ws.close_code, self.ws.close_reason

    async def cut(self, mode="clean", timeout=5.0):
        """Ends the connection: "clean" (close handshake, 1000) or "rst" (SO_LINGER {1, 0},
        then close: the kernel sends a TCP RST and the server sees no close frame)."""
        if mode == "rst":
            transport = self.ws.transport
            sock = transport.get_extra_info("socket") if transport is not None else None
            if sock is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
            if transport is not None:
                transport.abort()
        else:
            try:
                await asyncio.wait_for(self.ws.close(1000, "bye"), timeout)
            except (asyncio.TimeoutError, OSError):
                if self.ws.transport is not None:
                    self.ws.transport.abort()
        try:
            await asyncio.wait_for(asyncio.shield(self.reader), timeout)
        except asyncio.TimeoutError:
            pass

    async def close(self):
        if not self.closed:
            await self.cut("clean")


async def hello_client(server_or_url, name=None, rooms=None, token=None, expect_ok=True, timeout=15.0, **connect):
    """Connects and says hello; returns (client, reply)."""
    url = server_or_url.url() if isinstance(server_or_url, ChatServer) else server_or_url
    c = await ChatClient.connect(url, **connect)
    fields = {"v": 1}
    if name is not None:
        fields["name"] = name
    if token is not None:
        fields["token"] = token
    if rooms is not None:
        fields["rooms"] = rooms
    r = await c.request("hello", timeout=timeout, **fields)
    if expect_ok and r.get("ok") is not True:
        await c.cut("rst")
        raise AssertionError(f"hello failed: {r}")
    return c, r


# --- checks ----------------------------------------------------------------------------------

def expect(cond, message):
    if not cond:
        raise AssertionError(message)


def expect_eq(got, want, what):
    if got != want:
        raise AssertionError(f"{what}: got {json.dumps(got, default=str)[:400]}, want {json.dumps(want, default=str)[:400]}")


def expect_ok(reply, what=""):
    if not isinstance(reply, dict) or reply.get("ok") is not True:
        raise AssertionError(f"{what + ': ' if what else ''}expected ok: {reply}")
    return reply


def expect_error(reply, code, what="", id_null=False):
    """ok: false with `code` (a string or a tuple of accepted codes)."""
    codes = code if isinstance(code, tuple) else (code,)
    if not isinstance(reply, dict) or reply.get("ok") is not False or reply.get("code") not in codes:
        raise AssertionError(f"{what + ': ' if what else ''}expected code {'|'.join(codes)}: {reply}")
    expect(isinstance(reply.get("message"), str), f"{what}: error reply without a message string: {reply}")
    if id_null:
        expect("id" in reply and reply["id"] is None, f"{what}: expected id null: {reply}")
    return reply


class Runner:
    """Runs named async checks, each bounded in time; prints PASS/FAIL/SKIP per check and
    ends with the line "N passed, N failed"."""

    def __init__(self, title):
        self.title = title
        self.passed = 0
        self.failed = []
        self.skipped = []
        self.notes = []

    async def run(self, name, fn, *args, timeout=90.0):
        start = time.monotonic()
        try:
            detail = await asyncio.wait_for(fn(*args), timeout)
        except Skip as e:
            self.skipped.append(name)
            print(f"SKIP {name}: {e}", flush=True)
            return None
        except asyncio.TimeoutError:
            self.failed.append(name)
            print(f"FAIL {name}: did not finish within {timeout}s", flush=True)
            return False
        except Exception as e:  # noqa: BLE001 - one failing check does not stop the others
            self.failed.append(name)
            print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
            tb = traceback.extract_tb(e.__traceback__)
            ours = [f for f in tb if f.filename.endswith(("_test.py",))]
            for f in ours[-2:]:
                print(f"     at {os.path.basename(f.filename)}:{f.lineno} {f.line}", flush=True)
            return False
        self.passed += 1
        took = time.monotonic() - start
        print(f"PASS {name} ({took:.2f}s){': ' + detail if isinstance(detail, str) and detail else ''}", flush=True)
        return True

    def note(self, text):
        self.notes.append(text)
        print(f"NOTE {text}", flush=True)

    def finish(self):
        if self.failed:
            print(f"{self.title}: failed: {', '.join(self.failed)}", flush=True)
        if self.skipped:
            print(f"{self.title}: skipped: {', '.join(self.skipped)}", flush=True)
        print(f"{self.passed} passed, {len(self.failed)} failed", flush=True)
        return 1 if self.failed else 0


class Skip(Exception):
    """Raised by a check that cannot run here."""
