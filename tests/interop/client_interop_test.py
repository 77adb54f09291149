#!/usr/bin/python3
"""tongdao's client against WebSocket servers no one here wrote: Python `websockets`
(Debian python3-websockets) and Node's `ws` (node_modules/ws), each started by this script
on 127.0.0.1 and a free port.

The client side is client_script_probe, a small program on the client library that runs a
script given on its command line and prints JSON lines (see client_script_probe.cpp). The
servers print JSON lines too, so both ends of every check are seen.

Covered, against each server: text, binary and empty round trips; 1 MiB and 16 MiB round
trips; a fragmented message from the server; a server ping answered by the client (the
server sees the pong); close codes both ways; sub-protocol selection.

    /usr/bin/python3 client_interop_test.py PATH/TO/client_script_probe   (or CLIENT_SCRIPT_PROBE=...)

Exit 0 all passed, 1 a check failed, 77 both peers are missing (one missing peer is
reported and skipped). Every wait is bounded; the servers are stopped by pid.
"""

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback

SKIP = 77
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PROBE_TIMEOUT = 120.0  # one probe run, 16 MiB each way under ASan included
START_TIMEOUT = 20.0


# --- the Python websockets server (this file, run with --serve-python) ---------------------

def serve_python():
    import asyncio
    import websockets

    def log(obj):
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    async def handler(ws, path=None):
        where = ws.path
        log({"server": "open", "path": where, "subprotocol": ws.subprotocol or "",
             "headers": dict(ws.request_headers.raw_items())})
        try:
            if where == "/close4001":
                await ws.close(4001, "bye")
            else:
                if where == "/fragmented":
                    await ws.send(["alpha", "beta", "gamma"])
                    await ws.send([b"\x01\x02", b"\x03"])
                elif where == "/ping":
                    waiter = await ws.ping(b"probe")
                    await asyncio.wait_for(waiter, 10)
                    log({"server": "pong", "path": where, "data": "probe"})
                    await ws.send("pong:probe")
                async for message in ws:
                    await ws.send(message)
        except websockets.exceptions.ConnectionClosed:
            pass
        except Exception as e:  # reported, not raised: the server keeps serving
            log({"server": "error", "path": where, "message": repr(e)})
        await ws.wait_closed()
        log({"server": "close", "path": where, "code": ws.close_code, "reason": ws.close_reason})

    async def main():
        stop = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
        async with websockets.serve(handler, "127.0.0.1", 0, subprotocols=["superchat"], max_size=None,
                                    compression=None, ping_interval=None, close_timeout=5) as server:
            port = server.sockets[0].getsockname()[1]
            sys.stdout.write(f"PORT {port}\n")
            sys.stdout.flush()
            await asyncio.wait_for(stop, 600)

    try:
        asyncio.run(main())
    except asyncio.TimeoutError:
        pass


# --- running the servers and the probe -----------------------------------------------------

class PeerServer:
    """A server subprocess: first line "PORT n", then JSON lines, collected by a thread."""

    def __init__(self, name, argv):
        self.name = name
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        self.lines = []
        self.lock = threading.Lock()
        self.port = None
        try:
            self.port = self._read_port()
        except BaseException:
            self.stop()
            raise
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read_port(self):
        fd = self.proc.stdout.fileno()
        line = b""
        deadline = time.monotonic() + START_TIMEOUT
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"{self.name} printed no PORT line in {START_TIMEOUT} s")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 1)
            if not chunk:
                raise RuntimeError(f"{self.name} exited before listening (status {self.proc.wait(5)})")
            line += chunk
        words = line.decode().split()
        if len(words) != 2 or words[0] != "PORT":
            raise RuntimeError(f"unexpected first line from {self.name}: {line!r}")
        return int(words[1])

    def _read(self):
        for raw in self.proc.stdout:
            try:
                obj = json.loads(raw)
            except ValueError:
                obj = {"unparsed": raw.decode(errors="replace")}
            with self.lock:
                self.lines.append(obj)

    def events(self, **match):
        with self.lock:
            return [e for e in self.lines if all(e.get(k) == v for k, v in match.items())]

    def wait_for(self, timeout=10.0, **match):
        deadline = time.monotonic() + timeout
        while True:
            found = self.events(**match)
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.02)

    def url(self, path):
        return f"ws://127.0.0.1:{self.port}{path}"

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        return self.proc.returncode


def run_probe(probe, url, *args):
    """Runs the probe; returns (exit status, JSON objects, raw output)."""
    try:
        done = subprocess.run([probe, url, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=PROBE_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"client_script_probe gave no result within {PROBE_TIMEOUT} s; output:\n"
                             f"{(e.output or b'').decode(errors='replace')[-2000:]}")
    out = done.stdout.decode(errors="replace")
    objs = []
    for line in out.splitlines():
        try:
            objs.append(json.loads(line))
        except ValueError:
            pass
    return done.returncode, objs, out


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def probe_ok(probe, url, *args):
    """Runs the probe and checks that every step passed; returns its JSON objects."""
    code, objs, out = run_probe(probe, url, *args)
    failed = [o for o in objs if o.get("ok") is False and "step" in o]
    expect(code == 0 and not failed and objs and objs[-1] == {"done": True, "ok": True},
           f"probe exit {code}, failed steps {failed}; output:\n{out[-3000:]}")
    return objs


def event(objs, name):
    return [o for o in objs if o.get("event") == name]


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = []

    def run(self, name, fn):
        t0 = time.monotonic()
        try:
            detail = fn()
            self.passed += 1
            print(f"PASS {name} ({time.monotonic() - t0:.2f}s){': ' + str(detail) if detail else ''}", flush=True)
        except Exception as e:
            self.failed.append(name)
            print(f"FAIL {name}: {e}", flush=True)
            if not isinstance(e, AssertionError):
                traceback.print_exc()


# --- the checks, the same against each server --------------------------------------------------

def check_server(checks, tag, server, probe):
    def text_binary_protocol():
        objs = probe_ok(probe, server.url("/echo"), "--protocol", "chat", "--protocol", "superchat",
                        "expect-protocol:superchat", "send-text:hello", "expect-echo",
                        "send-text:\u901a\u9053 h\u00e9llo \u2713", "expect-echo",
                        "send-binary:00ff7f80", "expect-echo", "send-text:", "expect-echo",
                        "send-binary:", "expect-echo", "close:1000", "expect-close:1000")
        expect(event(objs, "open")[0]["protocol"] == "superchat", f"protocol {event(objs, 'open')}")
        opened = server.wait_for(server="open", path="/echo")
        expect(opened and opened[-1]["subprotocol"] == "superchat", f"server side: {opened}")
        headers = {k.lower(): v for k, v in opened[-1]["headers"].items()}
        expect(headers.get("sec-websocket-protocol", "").replace(" ", "") == "chat,superchat",
               f"offered protocols as the server saw them: {headers.get('sec-websocket-protocol')}")
        closed = server.wait_for(server="close", path="/echo")
        expect(closed and closed[-1]["code"] == 1000, f"server saw {closed}")
        return f"{len(event(objs, 'message'))} echoes"

    checks.run(f"{tag}: text, binary and empty round trips; sub-protocol superchat chosen", text_binary_protocol)

    def no_matching_protocol():
        before = len(server.events(server="open"))
        probe_ok(probe, server.url("/echo"), "--protocol", "other", "expect-protocol:", "send-text:x",
                 "expect-echo", "close:1000", "expect-close:1000")
        probe_ok(probe, server.url("/echo"), "expect-protocol:", "close:1000", "expect-close:1000")
        deadline = time.monotonic() + 10
        while len(server.events(server="open")) < before + 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        opens = server.events(server="open")[before:]
        expect([o["subprotocol"] for o in opens] == ["", ""], f"server chose {opens}")

    checks.run(f"{tag}: no sub-protocol when none matches or none is offered", no_matching_protocol)

    def large_1mib():
        probe_ok(probe, server.url("/echo"), "send-large-text:1048576", "expect-echo",
                 "send-large-binary:1048576", "expect-echo", "close:1000", "expect-close:1000")
        return "1 MiB text and binary"

    checks.run(f"{tag}: 1 MiB round trips", large_1mib)

    def large_16mib():
        probe_ok(probe, server.url("/echo"), "send-large-binary:16777216", "expect-echo",
                 "send-large-text:16777216", "expect-echo", "close:1000", "expect-close:1000")
        return "16 MiB binary and text"

    checks.run(f"{tag}: 16 MiB round trips", large_16mib)

    def fragmented():
        probe_ok(probe, server.url("/fragmented"), "expect-text:alphabetagamma", "expect-binary:010203",
                 "send-text:after", "expect-echo", "close:1000", "expect-close:1000")

    checks.run(f"{tag}: fragmented messages from the server are reassembled", fragmented)

    def ping():
        probe_ok(probe, server.url("/ping"), "expect-text:pong:probe", "close:1000", "expect-close:1000")
        pongs = server.wait_for(server="pong", path="/ping")
        expect(pongs and pongs[-1]["data"] == "probe", f"server saw {pongs}")

    checks.run(f"{tag}: the server's ping is answered with a pong", ping)

    def client_close():
        before = len(server.events(server="close", path="/echo"))
        probe_ok(probe, server.url("/echo"), "send-text:bye soon", "expect-echo",
                 "close:4000:client-bye", "expect-close:4000:client-bye")
        deadline = time.monotonic() + 10
        while len(server.events(server="close", path="/echo")) <= before and time.monotonic() < deadline:
            time.sleep(0.02)
        closes = server.events(server="close", path="/echo")[before:]
        expect(closes and (closes[-1]["code"], closes[-1]["reason"]) == (4000, "client-bye"),
               f"server saw {closes}")

    checks.run(f"{tag}: close 4000 \"client-bye\" from the client reaches the server", client_close)

    def server_close():
        objs = probe_ok(probe, server.url("/close4001"), "expect-close:4001:bye")
        closes = event(objs, "close")
        expect(len(closes) == 1 and (closes[0]["code"], closes[0]["reason"]) == (4001, "bye"), f"{closes}")
        expect(not event(objs, "error"), f"unexpected onError: {event(objs, 'error')}")
        seen = server.wait_for(server="close", path="/close4001")
        expect(seen and seen[-1]["code"] == 4001, f"the client's answer as the server saw it: {seen}")

    checks.run(f"{tag}: close 4001 \"bye\" from the server reaches onClose", server_close)

    def no_server_errors():
        errors = server.events(server="error")
        expect(not errors, f"server errors: {errors}")

    checks.run(f"{tag}: the server logged no error", no_server_errors)


def main():
    probe = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("CLIENT_SCRIPT_PROBE", "")
    if not probe or not os.access(probe, os.X_OK):
        print(f"client_script_probe not found (got {probe!r}); pass it as the first argument "
              "or in CLIENT_SCRIPT_PROBE", file=sys.stderr)
        return 2
    peers = []
    try:
        import websockets
        peers.append((f"python websockets {websockets.__version__}",
                      [sys.executable, os.path.abspath(__file__), "--serve-python"]))
    except ImportError as e:
        print(f"SKIP python websockets: not installed ({e}); install python3-websockets", flush=True)
    node = shutil.which("node")
    ws_dir = os.path.join(REPO, "node_modules", "ws")
    if node and os.path.isdir(ws_dir):
        version = json.load(open(os.path.join(ws_dir, "package.json")))["version"]
        peers.append((f"node ws {version}", [node, os.path.join(HERE, "client_ws_server.js")]))
    else:
        print(f"SKIP node ws: {'no node' if not node else 'no ' + ws_dir}", flush=True)
    if not peers:
        return SKIP

    checks = Checks()
    for tag, argv in peers:
        server = PeerServer(tag, argv)
        try:
            check_server(checks, tag, server, probe)
        finally:
            status = server.stop()
            if status not in (0, -signal.SIGTERM):
                checks.failed.append(f"{tag}: server exit status {status}")
                print(f"FAIL {tag}: server exit status {status}", flush=True)
    print(f"client interop: {checks.passed} passed, {len(checks.failed)} failed", flush=True)
    for name in checks.failed:
        print(f"  failed: {name}", flush=True)
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.dont_write_bytecode = True
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-python":
        serve_python()
        sys.exit(0)
    sys.exit(main())
