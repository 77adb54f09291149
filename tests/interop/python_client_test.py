#!/usr/bin/python3
"""Interop: Python `websockets` (Debian python3-websockets) as the client of interop_server.

    /usr/bin/python3 python_client_test.py PATH/TO/interop_server     (or INTEROP_SERVER=...)

Uses websockets.sync.client when the installed version has it (>= 11), else the asyncio
client of older versions, behind one small synchronous adapter. Raw sockets cover what the
library will not send (bad handshakes, invalid UTF-8). Exit 0 all passed, 1 a check failed,
77 the peer is missing.
"""

import asyncio
import os
import socket
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import interop_common as ic  # noqa: E402

try:
    import websockets
    import websockets.exceptions as wse
except ImportError as e:
    print(f"SKIP: Python websockets is not installed ({e}); install python3-websockets", flush=True)
    sys.exit(ic.SKIP)

try:
    import websockets.sync.client as wsync  # websockets >= 11
except ImportError:
    wsync = None

TIMEOUT = 30.0  # every single operation; 16 MiB under ASan takes a few seconds
MAX_SIZE = 64 * 1024 * 1024


class Client:
    """The few calls the checks need, over either client flavour, each bounded by TIMEOUT."""

    def __init__(self, url, subprotocols=None):
        self.loop = None
        if wsync is not None:
            self.ws = wsync.connect(url, subprotocols=subprotocols, max_size=MAX_SIZE,
                                    open_timeout=TIMEOUT, close_timeout=TIMEOUT)
        else:
            self.loop = asyncio.new_event_loop()

            async def open_():  # made inside the loop: the connection binds to the running loop
                return await websockets.connect(url, subprotocols=subprotocols, max_size=MAX_SIZE,
                                                open_timeout=TIMEOUT, close_timeout=TIMEOUT)

            try:
                self.ws = self._run(open_())
            except BaseException:
                self.loop.close()
                raise

    def _run(self, coro, timeout=TIMEOUT):
        return self.loop.run_until_complete(asyncio.wait_for(coro, timeout))

    @property
    def subprotocol(self):
        return self.ws.subprotocol

    def send(self, data):
        if self.loop is None:
            self.ws.send(data)
        else:
            self._run(self.ws.send(data))

    def recv(self, timeout=TIMEOUT):
        if self.loop is None:
            return self.ws.recv(timeout)
        return self._run(self.ws.recv(), timeout)

    def ping(self, payload):
        """Sends a ping; returns once the matching pong arrived (raises on timeout)."""
        if self.loop is None:
            if not self.ws.ping(payload).wait(TIMEOUT):
                raise TimeoutError("no pong")
        else:
            waiter = self._run(self.ws.ping(payload))
            self._run(waiter)

    def close(self, code=1000, reason=""):
        if self.loop is None:
            self.ws.close(code, reason)
        else:
            self._run(self.ws.close(code, reason))

    def wait_closed(self):
        if self.loop is not None:
            self._run(self.ws.wait_closed())

    def closed_with(self):
        """(close_code, close_reason) as the client library reports them."""
        ws = self.ws
        code = getattr(ws, "close_code", None)
        reason = getattr(ws, "close_reason", None)
        if code is None and hasattr(ws, "protocol"):  # sync connections of some versions
            code, reason = ws.protocol.close_code, ws.protocol.close_reason
        return code, reason

    def expect_server_close(self):
        """Reads until the server closes; returns (close_code, close_reason)."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the server did not close")
            try:
                self.recv(left)
            except wse.ConnectionClosed:
                break
        self.wait_closed()
        return self.closed_with()

    def shutdown(self):
        try:
            if self.loop is None:
                self.ws.close()
            else:
                self._run(self.ws.close(), 10)
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass
        if self.loop is not None:
            self.loop.close()


def rejected_status(exc):
    """The HTTP status of a refused handshake, whichever exception flavour carries it."""
    if hasattr(exc, "status_code"):
        return exc.status_code
    if hasattr(exc, "response"):
        return exc.response.status_code
    raise exc


REJECTIONS = tuple(getattr(wse, n) for n in ("InvalidStatus", "InvalidStatusCode") if hasattr(wse, n))


def main():
    path = ic.server_path(sys.argv)
    flavour = "sync" if wsync is not None else "asyncio"
    checks = ic.Checks(f"python websockets {websockets.__version__} ({flavour} client)")
    with ic.Server(path) as server:
        port = server.port
        base = f"ws://127.0.0.1:{port}"

        def client(p="/echo", subprotocols=None):
            return Client(base + p, subprotocols)

        def round_trip(messages):
            c = client()
            try:
                for m in messages:
                    c.send(m)
                    got = c.recv()
                    ic.expect_eq(type(got), type(m), "message type")
                    ic.expect(got == m, f"echo of a {len(m)}-unit {type(m).__name__} message differs")
                c.close()
                ic.expect_eq(c.closed_with(), (1000, ""), "close after echo")
            finally:
                c.shutdown()

        checks.run("text round-trip", round_trip, ["hello", "通道 héllo ✓ 😀", "x" * 125, "y" * 126, "z" * 65536])
        checks.run("binary round-trip", round_trip, [bytes(range(256)) * 4, b"\x00", os.urandom(70000)])
        checks.run("empty text and binary", round_trip, ["", b""])
        checks.run("1 MiB text and binary", round_trip,
                   [("abcdefgh" * 131072), os.urandom(1 << 20)])
        checks.run("16 MiB binary (the limit)", round_trip, [os.urandom(16 << 20)])
        checks.run("16 MiB text (the limit)", round_trip, ["t" * (16 << 20)])

        def fragmented():
            c = client()
            try:
                c.send(["frag-one ", "frag-two ", "frag-three"])
                ic.expect_eq(c.recv(), "frag-one frag-two frag-three", "fragmented text echo")
                c.send([b"\x01\x02", b"", b"\x03" * 70000])
                ic.expect_eq(c.recv(), b"\x01\x02" + b"\x03" * 70000, "fragmented binary echo")
                c.close()
            finally:
                c.shutdown()

        checks.run("fragmented message echoed whole", fragmented)

        def ping_pong():
            c = client()
            try:
                c.ping(b"ping-payload-123")
                c.ping(b"")
                c.send("after pings")
                ic.expect_eq(c.recv(), "after pings", "echo after pings")
                c.close()
            finally:
                c.shutdown()

        checks.run("ping with payload answered by pong", ping_pong)

        def subprotocol(offer, want):
            c = client(subprotocols=offer)
            try:
                ic.expect_eq(c.subprotocol, want, f"sub-protocol for offer {offer}")
                c.send("hi")
                ic.expect_eq(c.recv(), "hi", "echo")
                c.close()
            finally:
                c.shutdown()

        checks.run("sub-protocol ['chat','superchat'] -> superchat", subprotocol, ["chat", "superchat"], "superchat")
        checks.run("sub-protocol ['chat','other'] -> chat", subprotocol, ["chat", "other"], "chat")
        checks.run("no sub-protocol offered -> none", subprotocol, None, None)

        def rejected():
            try:
                c = client("/reject")
            except REJECTIONS as e:
                ic.expect_eq(rejected_status(e), 403, "status of the refused upgrade")
                return
            c.shutdown()
            raise AssertionError("/reject accepted the upgrade")

        checks.run("rejected upgrade -> 403", rejected)

        def rejected_raw():
            with ic.connect(port) as s:
                s.sendall(ic.upgrade_request(port, "/reject"))
                status, headers, rest = ic.read_head(s)
                ic.expect_eq(status, 403, "status")
                body = ic.read_until_closed(s, 10, rest)
                ic.expect(b"forbidden" in body, f"reason in the body: {body!r}")

        checks.run("rejected upgrade body says forbidden", rejected_raw)

        def bad_upgrade(request, want_status, want_headers=None):
            with ic.connect(port) as s:
                s.sendall(request.encode())
                status, headers, rest = ic.read_head(s)
                ic.expect_eq(status, want_status, f"status for {request.splitlines()[0]!r}")
                for name, value in (want_headers or {}).items():
                    ic.expect_eq(headers.get(name.lower()), value, f"header {name}")
                ic.read_until_closed(s, 10, rest)  # and the server closes the connection

        host = f"Host: 127.0.0.1:{port}\r\n"
        up = "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        checks.run("upgrade without key -> 400", bad_upgrade,
                   f"GET /echo HTTP/1.1\r\n{host}{up}Sec-WebSocket-Version: 13\r\n\r\n", 400)
        checks.run("upgrade with version 8 -> 426 + Sec-WebSocket-Version: 13", bad_upgrade,
                   f"GET /echo HTTP/1.1\r\n{host}{up}{key}Sec-WebSocket-Version: 8\r\n\r\n", 426,
                   {"Sec-WebSocket-Version": "13"})
        checks.run("plain GET of a WebSocket endpoint -> 426", bad_upgrade,
                   f"GET /echo HTTP/1.1\r\n{host}\r\n", 426)
        checks.run("POST to a WebSocket endpoint -> 405", bad_upgrade,
                   f"POST /echo HTTP/1.1\r\n{host}Content-Length: 0\r\n\r\n", 405)
        checks.run("upgrade to an unknown path -> 404", bad_upgrade,
                   f"GET /nowhere HTTP/1.1\r\n{host}{up}{key}Sec-WebSocket-Version: 13\r\n\r\n", 404)

        def small_limit():
            c = client("/small")
            try:
                c.send(b"k" * 1024)
                ic.expect_eq(c.recv(), b"k" * 1024, "1024 bytes on /small")
                c.send(b"k" * 1025)
                code, _ = c.expect_server_close()
                ic.expect_eq(code, 1009, "close code for 1025 bytes on /small")
            finally:
                c.shutdown()

        checks.run("oversize on /small -> 1009", small_limit)

        def small_fragmented():
            c = client("/small")
            try:
                c.send(["a" * 600, "b" * 600])
                code, _ = c.expect_server_close()
                ic.expect_eq(code, 1009, "close code for 1200 bytes in two fragments on /small")
            finally:
                c.shutdown()

        checks.run("oversize fragmented message on /small -> 1009", small_fragmented)

        def client_close(code, reason):
            c = client()
            try:
                c.send("before close")
                ic.expect_eq(c.recv(), "before close", "echo")
                c.close(code, reason)
                ic.expect_eq(c.closed_with(), (code, reason), "close code/reason the server echoed")
            finally:
                c.shutdown()

        checks.run("client close 1000 'done'", client_close, 1000, "done")
        checks.run("client close 4000 'bye'", client_close, 4000, "bye")
        checks.run("client close 1001 with a 123-byte reason", client_close, 1001, "r" * 123)

        def server_close(text, want):
            c = client("/close")
            try:
                c.send(text)
                ic.expect_eq(c.expect_server_close(), want, f"close after {text!r}")
            finally:
                c.shutdown()

        checks.run("server close '4001 bye' -> 4001 bye", server_close, "4001 bye", (4001, "bye"))
        checks.run("server close '1000 ' -> 1000, empty reason", server_close, "1000 ", (1000, ""))
        checks.run("server close '3000 通道' -> 3000 通道", server_close, "3000 通道", (3000, "通道"))

        def server_abort():
            c = client("/abort")
            try:
                c.send("go")
                code, _ = c.expect_server_close()
                ic.expect_eq(code, 1006, "close code after the server dropped TCP")
            finally:
                c.shutdown()

        checks.run("server abort -> 1006", server_abort)

        def raw_close_code(frames, want_code):
            s, rest = ic.raw_websocket(port, "/echo")
            with s:
                for f in frames:
                    s.sendall(f)
                while True:
                    fin, opcode, payload, rest = ic.read_frame(s, rest)
                    if opcode == 0x8:
                        break
                code, reason = ic.parse_close(payload)
                ic.expect_eq(code, want_code, f"close code (reason {reason!r})")
                try:
                    s.sendall(ic.close_frame(code))
                except OSError:
                    pass
                ic.read_until_closed(s, 10, b"")  # the server then closes TCP
                return f"reason {reason!r}"

        checks.run("invalid UTF-8 text -> 1007", raw_close_code, [ic.frame(0x1, b"ok \xff\xfe")], 1007)
        checks.run("invalid UTF-8 across fragments -> 1007", raw_close_code,
                   [ic.frame(0x1, b"ab\xe9", fin=False), ic.frame(0x0, b"\x28")], 1007)
        checks.run("truncated UTF-8 at the end of a message -> 1007", raw_close_code,
                   [ic.frame(0x1, b"ab\xe2\x82")], 1007)

        def utf8_split():
            s, rest = ic.raw_websocket(port, "/echo")
            with s:
                text = "é通😀".encode()
                s.sendall(ic.frame(0x1, text[:1], fin=False) + ic.frame(0x0, text[1:4], fin=False)
                          + ic.frame(0x0, text[4:], fin=True))
                fin, opcode, payload, rest = ic.read_frame(s, rest)
                ic.expect_eq((fin, opcode, payload), (True, 0x1, text), "echo of split UTF-8")
                s.sendall(ic.close_frame(1000))
                fin, opcode, payload, rest = ic.read_frame(s, rest)
                ic.expect_eq((opcode, ic.parse_close(payload)[0]), (0x8, 1000), "close reply")
                ic.read_until_closed(s, 10, b"")

        checks.run("UTF-8 split across fragments is accepted", utf8_split)

        def flood_reader(count, size):
            # /flood stops at the first dropped send and goes on from its drain handler: a
            # client that reads must get every message, however the backlog drained.
            c = client("/flood")
            try:
                c.send(f"{count} {size}")
                got = 0
                try:
                    while got < count:
                        m = c.recv(5)
                        ic.expect_eq((type(m), len(m)), (bytes, size), f"message {got}")
                        got += 1
                except (TimeoutError, asyncio.TimeoutError):
                    raise AssertionError(f"only {got} of {count} messages of {size} bytes arrived; "
                                         "nothing more within 5 s") from None
                c.close()
                return f"{got} messages"
            finally:
                c.shutdown()

        # Large enough that the backlog fills and drains many times over (a stall is a race
        # between the end-of-turn flush and the writable event: small runs may miss it).
        checks.run("/flood 1000 x 64 KiB to a reading client: all arrive", flood_reader, 1000, 65536)
        checks.run("/flood 20000 x 4 KiB to a reading client: all arrive", flood_reader, 20000, 4096)

        def all_closed():
            deadline = time.monotonic() + 10
            while True:
                m = ic.metrics(port)
                if m.get("tongdao_connections_open") == 0:
                    return f"connections_total {m.get('tongdao_connections_total')}"
                if time.monotonic() > deadline:
                    raise AssertionError(f"connections_open stays {m.get('tongdao_connections_open')}")
                time.sleep(0.2)

        checks.run("metrics: no connection left open", all_closed)

        def clean_exit():
            ic.expect(server.alive(), "server died during the run")
            ic.expect_eq(server.stop(), 0, "exit status after SIGTERM")

        checks.run("server exits 0 on SIGTERM", clean_exit)
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())
