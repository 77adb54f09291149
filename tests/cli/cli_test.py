#!/usr/bin/python3
"""cli.tongdao: `tongdao connect` against tongdao-server's /echo and against small Python
`websockets` servers started here (request headers, binary messages, echo mode, close codes).

usage: cli_test.py --cli PATH/tongdao --server PATH/tongdao-server

Everything is on 127.0.0.1; every wait is bounded; the processes started here are stopped
by their pid (SIGTERM, then SIGKILL). The checks that need Python's `websockets` module
(Debian python3-websockets) are skipped, and say so, when it is missing.
"""

import argparse
import asyncio
import contextlib
import base64
import hashlib
import json
import logging
import os
import queue
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request

try:
    import websockets
except ImportError as e:  # the checks that need it say SKIP
    websockets = None
    WEBSOCKETS_MISSING = str(e)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from echo_server import EchoServer, free_port, stop_process  # noqa: E402

RUN_TIMEOUT = 30.0  # seconds for one run of the client

# Handshakes that fail on purpose (TLS) would be logged by websockets; the checks report.
logging.getLogger("websockets").setLevel(logging.CRITICAL)
logging.getLogger("asyncio").setLevel(logging.CRITICAL)


# --- processes ---------------------------------------------------------------------------

class Result:
    def __init__(self, status, stdout, stderr):
        self.status = status  # None: did not exit in time (killed)
        self.stdout = stdout
        self.stderr = stderr
        self.lines = stdout.splitlines()

    def __str__(self):
        return (f"status {self.status}\n  stdout: {self.stdout!r}\n  stderr: "
                + self.stderr.strip().replace("\n", "\n          "))


def run_cli(cli, *args, stdin=b"", keep_stdin_open=False, timeout=RUN_TIMEOUT):
    """Runs `tongdao ARGS`, writes `stdin` (then closes it unless keep_stdin_open)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([cli, *args], stdin=subprocess.PIPE, stdout=out, stderr=err)

        def feed():  # in a thread: a client that reads nothing must not block the test
            try:
                if stdin:
                    proc.stdin.write(stdin)
                    proc.stdin.flush()
                if not keep_stdin_open:
                    proc.stdin.close()
            except (BrokenPipeError, ValueError, OSError):
                pass

        writer = threading.Thread(target=feed, daemon=True)
        writer.start()
        try:
            try:
                status = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                status = None
        finally:
            stop_process(proc)
            writer.join(10)
            try:
                proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
        out.seek(0)
        err.seek(0)
        result = Result(status, out.read().decode(errors="replace"), err.read().decode(errors="replace"))
        check_sanitizers(result.stderr)
        return result


def check_sanitizers(stderr):
    """A sanitizer's report fails the check even where exit status 1 is expected."""
    for sign in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:", "WARNING: ThreadSanitizer"):
        if sign in stderr:
            raise AssertionError(f"sanitizer report on stderr:\n{stderr}")


class Interactive:
    """`tongdao connect` with standard input and output as pipes, read line by line."""

    def __init__(self, cli, *args):
        self.proc = subprocess.Popen([cli, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.lines = queue.Queue()
        self.err = []
        self.readers = [threading.Thread(target=self._read, args=(self.proc.stdout, self.lines.put), daemon=True),
                        threading.Thread(target=self._read, args=(self.proc.stderr, self.err.append), daemon=True)]
        for t in self.readers:
            t.start()

    @staticmethod
    def _read(pipe, put):
        for raw in iter(pipe.readline, b""):
            put(raw.decode(errors="replace").rstrip("\n"))

    def send(self, text):
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def expect_line(self, want, timeout=10.0):
        try:
            got = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output line within {timeout}s (wanted {want!r}); stderr: {self.err}")
        if got != want:
            raise AssertionError(f"got line {got!r}, wanted {want!r}")

    def wait_stderr(self, fragment, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(fragment in line for line in list(self.err)):
                return
            time.sleep(0.02)
        raise AssertionError(f"no {fragment!r} on stderr within {timeout}s: {self.err}")

    def finish(self, timeout=10.0, close_stdin=True):
        """Closes stdin (unless told not to) and waits for the exit; returns the status
        (None: it did not exit in time and was killed)."""
        if close_stdin and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            stop_process(self.proc)
            return None
        deadline = time.monotonic() + 5  # the reader threads see the end of the pipes
        while any(t.is_alive() for t in self.readers) and time.monotonic() < deadline:
            time.sleep(0.02)
        check_sanitizers("\n".join(self.err))
        return status


# --- Python websockets servers -----------------------------------------------------------

class PyServer:
    """A `websockets` server on a loopback port (of `host`), in a thread with its own event loop.
    `handler(ws, record)` is a coroutine; `record` is a dict the test reads afterwards."""

    def __init__(self, handler, host="127.0.0.1", **serve_args):
        self.host = host
        self.record = {}
        self.port = None
        self.error = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, args=(handler, serve_args), daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or self.port is None:
            raise RuntimeError(f"python websockets server did not start: {self.error}")

    def _main(self, handler, serve_args):
        asyncio.set_event_loop(self._loop)

        async def wrapped(ws, path=None):
            try:
                await handler(ws, self.record)
            except Exception as e:  # recorded for the test to report
                self.record.setdefault("errors", []).append(f"{type(e).__name__}: {e}")

        try:
            server = self._loop.run_until_complete(
                websockets.serve(wrapped, self.host, 0, close_timeout=5, **serve_args))
            self.port = list(server.sockets)[0].getsockname()[1]
        except Exception as e:
            self.error = e
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        server.close()
        try:
            self._loop.run_until_complete(asyncio.wait_for(server.wait_closed(), 10))
        except Exception:
            pass
        self._loop.close()

    def url(self, path="/"):
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}{path}"

    def stop(self):
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(15)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


def request_headers(ws):
    headers = getattr(ws, "request_headers", None)  # websockets < 13
    if headers is None:
        headers = ws.request.headers
    return {name.lower(): value for name, value in headers.raw_items()}


async def send_headers_then_close(ws, record):
    """Answers with the request's header fields and the chosen sub-protocol, then closes."""
    await ws.send(json.dumps({"headers": request_headers(ws), "subprotocol": ws.subprotocol}))
    await ws.close(1000, "done")


BINARY = bytes([0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF])


async def send_binary_then_close(ws, record):
    await ws.send(BINARY)
    await ws.send("done")
    await ws.close(1000, "bye")


ECHO_SCRIPT = ["alpha", bytes([1, 2, 3]), "通道 ok"]


async def expect_echoes(ws, record):
    """Sends ECHO_SCRIPT, expects each back with its type, then closes: 1000 if all came
    back right, 4000 if not."""
    for m in ECHO_SCRIPT:
        await ws.send(m)
    got = []
    try:
        for _ in ECHO_SCRIPT:
            got.append(await asyncio.wait_for(ws.recv(), 10))
    except Exception as e:
        record["recv_error"] = f"{type(e).__name__}: {e}"
    record["echoed"] = got
    await ws.close(1000 if got == ECHO_SCRIPT else 4000, "bye" if got == ECHO_SCRIPT else "mismatch")


async def close_1011(ws, record):
    await ws.send("about to fail")
    await ws.close(1011, "oops")


@contextlib.contextmanager
def self_signed():
    """A key and a self-signed certificate for 127.0.0.1 and localhost, in a temporary
    directory while the block runs: (cert path, key path, a server SSLContext holding them),
    or None when there is no openssl command (the caller says it skips)."""
    openssl = shutil.which("openssl")
    if not openssl:
        yield None
        return
    with tempfile.TemporaryDirectory() as d:
        cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "1", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                       check=True, capture_output=True, timeout=60)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        yield cert, key, ctx


# --- the checks --------------------------------------------------------------------------

class Checks:
    def __init__(self):
        self.passed = self.failed = self.skipped = 0

    def run(self, name, fn, needs_websockets=False):
        if needs_websockets and websockets is None:
            self.skipped += 1
            print(f"SKIP {name}: Python websockets is missing ({WEBSOCKETS_MISSING}); install python3-websockets")
            return
        try:
            fn()
        except Exception as e:
            self.failed += 1
            print(f"FAIL {name}: {e}")
            if not isinstance(e, AssertionError):
                traceback.print_exc()
        else:
            self.passed += 1
            print(f"ok   {name}")


def expect(cond, what, result=None):
    if not cond:
        raise AssertionError(what + (f"\n  {result}" if result is not None else ""))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", required=True, help="the tongdao binary")
    ap.add_argument("--server", required=True, help="the tongdao-server binary")
    opts = ap.parse_args()
    cli = opts.cli
    checks = Checks()

    # --- usage ---------------------------------------------------------------------------
    def usage_errors():
        for args in ([], ["connect"], ["frobnicate"], ["connect", "ws://127.0.0.1:1/", "--bogus"],
                     ["connect", "ws://127.0.0.1:1/", "-H", "NoColonHere"],
                     ["connect", "ws://127.0.0.1:1/", "--wait", "soon"],
                     ["connect", "ws://127.0.0.1:1/", "--timeout", "0"],
                     ["connect", "ws://127.0.0.1:1/", "-x"]):
            r = run_cli(cli, *args)
            expect(r.status == 2, f"tongdao {' '.join(args)}: exit 2 expected", r)
            expect(r.stderr.startswith("tongdao: ") and "Usage: tongdao" in r.stderr,
                   f"tongdao {' '.join(args)}: the error, then usage on stderr", r)
        r = run_cli(cli, "--help")
        expect(r.status == 0 and "Usage: tongdao" in r.stdout and "connect" in r.stdout and "--execute" in r.stdout,
               "--help: every command and option on stdout, exit 0", r)
        r = run_cli(cli, "connect", "--help")
        expect(r.status == 0 and "--echo" in r.stdout, "connect --help: usage on stdout, exit 0", r)

    checks.run("usage errors exit 2", usage_errors)

    # --- failures before open ------------------------------------------------------------
    def unreachable():
        holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        holder.bind(("127.0.0.1", 0))  # bound, not listening: connecting is refused
        try:
            url = f"ws://127.0.0.1:{holder.getsockname()[1]}/echo"
            r = run_cli(cli, "connect", url, "-x", "hello")
        finally:
            holder.close()
        expect(r.status == 1, "unreachable port: exit 1", r)
        expect("connectSocket:fail" in r.stderr, "unreachable port: the errMsg on stderr", r)
        expect(r.stdout == "", "unreachable port: nothing on stdout", r)

    checks.run("unreachable port exits 1 with the errMsg", unreachable)

    def bad_url():
        for url in ("http://127.0.0.1:8080/", "ws://", "not a url"):
            r = run_cli(cli, "connect", url, "-x", "hello")
            expect(r.status in (1, 2), f"bad url {url!r}: exit 1 or 2", r)
            expect("invalid url" in r.stderr, f"bad url {url!r}: 'invalid url' on stderr", r)

    checks.run("bad URL fails with 'invalid url'", bad_url)

    def connect_timeout():
        # Accepts TCP (the kernel's backlog) and never answers the handshake.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
            silent.bind(("127.0.0.1", 0))
            silent.listen(8)
            start = time.monotonic()
            r = run_cli(cli, "connect", f"ws://127.0.0.1:{silent.getsockname()[1]}/", "--timeout", "500",
                        "-x", "hello", timeout=15)
            took = time.monotonic() - start
        expect(r.status == 1, "silent server: exit 1", r)
        expect("timeout" in r.stderr, "silent server: a timeout errMsg", r)
        expect(took < 10, f"silent server: --timeout 500 took {took:.1f}s", r)

    checks.run("--timeout bounds the opening handshake", connect_timeout)

    def referer_header_refused():
        r = run_cli(cli, "connect", "ws://127.0.0.1:1/", "-H", "Referer: https://example.invalid/", "-x", "hi")
        expect(r.status == 1, "-H Referer: exit 1", r)
        expect("Referer is not allowed" in r.stderr, "-H Referer: the library's errMsg", r)

    checks.run("-H Referer is refused (use --appid)", referer_header_refused)

    # --- against tongdao-server ----------------------------------------------------------
    server = EchoServer(opts.server)
    url = f"ws://127.0.0.1:{server.port}/echo"
    try:
        def execute():
            r = run_cli(cli, "connect", url, "-x", "hello", "-x", "world", "--wait", "1")
            expect(r.status == 0, "-x: exit 0", r)
            expect(r.lines == ["hello", "world"], "-x: both echoes, in order, on stdout", r)
            expect(f"connected to {url}" in r.stderr, "-x: 'connected to URL' on stderr", r)
            expect("closed: 1000" in r.stderr, "-x: 'closed: 1000' on stderr", r)

        checks.run("-x hello -x world --wait 1", execute)

        def execute_unicode_and_empty():
            r = run_cli(cli, "connect", url, "-x", "通道", "-x", "", "-x", "end", "--wait", "0.5")
            expect(r.status == 0 and r.lines == ["通道", "", "end"], "-x with UTF-8 and an empty message", r)

        checks.run("-x with UTF-8 text and an empty message", execute_unicode_and_empty)

        def stdin_lines():
            p = Interactive(cli, "connect", url)
            try:
                p.wait_stderr("connected to")
                p.send("one\n")
                p.expect_line("one")
                p.send("two\r\n")  # CRLF input: the CR is not part of the message
                p.expect_line("two")
                p.send("three")  # no newline: sent at the end of input
                status = p.finish()
                p.expect_line("three")
            finally:
                if p.proc.poll() is None:
                    stop_process(p.proc)
            expect(status == 0, f"stdin mode: exit 0 after end of input, got {status}; stderr: {p.err}")
            expect(any("closed: 1000" in line for line in p.err), f"stdin mode: 'closed: 1000': {p.err}")

        checks.run("stdin lines are sent, echoes printed; EOF closes", stdin_lines)

        def stdin_at_once():
            r = run_cli(cli, "connect", url, stdin=b"a\nb\n\nc\n")
            expect(r.status == 0, "stdin at once: exit 0", r)
            expect(r.lines == ["a", "b", "", "c"], "stdin at once: every line echoed in order", r)

        checks.run("stdin given at once", stdin_at_once)

        def stdin_many():
            lines = [f"line {i}" for i in range(3000)] + ["x" * 300000]
            data = ("\n".join(lines) + "\n").encode()
            r = run_cli(cli, "connect", url, stdin=data)
            expect(r.status == 0, "3000 lines and a 300 kB one: exit 0", r if r.status != 0 else None)
            expect(r.lines == lines, f"3000 lines and a 300 kB one: all echoed in order "
                                     f"(got {len(r.lines)} lines)")

        checks.run("stdin with 3000 lines and a long one", stdin_many)

        def interrupt():
            p = Interactive(cli, "connect", url)
            try:
                p.wait_stderr("connected to")
                p.proc.send_signal(signal.SIGINT)
                status = p.finish(close_stdin=False)  # stdin stays open: the signal alone ends it
            finally:
                if p.proc.poll() is None:
                    stop_process(p.proc)
            expect(status == 0, f"SIGINT: a clean close and exit 0, got {status}; stderr: {p.err}")
            expect(any("closed: 1000" in line for line in p.err), f"SIGINT: 'closed: 1000': {p.err}")

        checks.run("SIGINT closes with 1000", interrupt)

        def subprotocol_from_server():
            r = run_cli(cli, "connect", url, "-s", "chat", "-s", "superchat", "-x", "hi", "--wait", "1")
            expect(r.status == 0 and r.lines == ["hi"], "-s: exit 0 and the echo", r)
            expect(f"connected to {url} (protocol: chat)" in r.stderr, "-s: the agreed protocol on stderr", r)

        checks.run("-s offers a sub-protocol (tongdao-server takes the first)", subprotocol_from_server)

        def insecure_plain():
            r = run_cli(cli, "connect", url, "--insecure", "-x", "hi", "--wait", "1")
            expect(r.status == 0 and r.lines == ["hi"], "--insecure is accepted with ws://", r)

        checks.run("--insecure is accepted", insecure_plain)

        def wss_to_plain_server():
            # The port speaks plain WebSocket. A wss:// URL must not quietly fall back to
            # plain TCP: either TLS is not there yet and the library refuses wss://, or the
            # TLS handshake fails against a plain server. Both are "connectSocket:fail ...".
            r = run_cli(cli, "connect", f"wss://127.0.0.1:{server.port}/echo", "--insecure", "-x", "hi",
                        "--wait", "0.3", timeout=20)
            expect(r.status == 1, "wss:// to a plain server: exit 1", r)
            expect("connectSocket:fail" in r.stderr, "wss:// to a plain server: a connectSocket:fail errMsg", r)
            expect("connected to" not in r.stderr and r.stdout == "", "wss:// to a plain server: never open", r)

        checks.run("wss:// never falls back to plain TCP", wss_to_plain_server)
    finally:
        code = server.stop()
        if code not in (0, -signal.SIGTERM):
            checks.failed += 1
            print(f"FAIL tongdao-server exited with status {code}:\n{server.output()}")

    # --- against Python websockets servers -----------------------------------------------
    def headers_reach_server():
        with PyServer(send_headers_then_close, subprotocols=["superchat"]) as py:
            r = run_cli(cli, "connect", py.url("/room?x=1"), "-H", "X-Test: yes please", "-H", "X-Other:2",
                        "-s", "chat", "-s", "superchat", "--appid", "wx1234567890", "--version", "7",
                        keep_stdin_open=True)
            errors = py.record.get("errors")
        expect(errors is None, f"python server errors: {errors}")
        expect(r.status == 0, "headers: exit 0 after the server's normal close", r)
        expect(len(r.lines) == 1, "headers: one message", r)
        got = json.loads(r.lines[0])
        h = got["headers"]
        expect(h.get("x-test") == "yes please", f"-H X-Test reached the server: {h}")
        expect(h.get("x-other") == "2", f"-H X-Other reached the server: {h}")
        expect(h.get("referer") == "https://servicewechat.com/wx1234567890/7/page-frame.html",
               f"--appid/--version produce the Referer: {h}")
        expect(h.get("sec-websocket-protocol") == "chat, superchat", f"-s offers both, in order: {h}")
        expect(got["subprotocol"] == "superchat", f"the server chose superchat: {got}")
        expect("(protocol: superchat)" in r.stderr, "the chosen protocol on stderr", r)
        expect("closed: 1000 done" in r.stderr, "'closed: 1000 done' on stderr", r)

    checks.run("-H, -s, --appid/--version reach the server", headers_reach_server, needs_websockets=True)

    def appid_default_version():
        with PyServer(send_headers_then_close) as py:
            r = run_cli(cli, "connect", py.url(), "--appid", "wxabc", keep_stdin_open=True)
        expect(r.status == 0 and len(r.lines) == 1, "--appid alone: exit 0, one message", r)
        h = json.loads(r.lines[0])["headers"]
        expect(h.get("referer") == "https://servicewechat.com/wxabc/0/page-frame.html",
               f"--appid alone: version 0 (the development version): {h}")
        expect("sec-websocket-protocol" not in h, f"no -s: no protocol offered: {h}")

    checks.run("--appid without --version", appid_default_version, needs_websockets=True)

    def binary_hex():
        with PyServer(send_binary_then_close) as py:
            r = run_cli(cli, "connect", py.url(), "--binary", keep_stdin_open=True)
        expect(r.status == 0, "--binary: exit 0 after the server's normal close", r)
        expect(r.lines == [BINARY.hex(), "done"], "--binary: the binary message as hex, then the text", r)
        expect("closed: 1000 bye" in r.stderr, "--binary: 'closed: 1000 bye'", r)

    checks.run("--binary prints binary messages as hex", binary_hex, needs_websockets=True)

    def binary_default():
        with PyServer(send_binary_then_close) as py:
            r = run_cli(cli, "connect", py.url(), keep_stdin_open=True)
        expect(r.status == 0 and r.lines == [f"<binary {len(BINARY)} bytes>", "done"],
               "without --binary: '<binary N bytes>'", r)

    checks.run("without --binary: <binary N bytes>", binary_default, needs_websockets=True)

    def echo_mode():
        with PyServer(expect_echoes) as py:
            r = run_cli(cli, "connect", py.url(), "--echo", "--binary")
            record = dict(py.record)
        expect(record.get("echoed") == ECHO_SCRIPT,
               f"--echo: every message came back with its type: {record}")
        expect(r.status == 0, "--echo: exit 0 when the server closes normally", r)
        expect(r.lines == ["alpha", "010203", "通道 ok"], "--echo: each message printed", r)
        expect("closed: 1000 bye" in r.stderr, "--echo: 'closed: 1000 bye'", r)

    checks.run("--echo sends every message back until the server closes", echo_mode, needs_websockets=True)

    def abnormal_close():
        with PyServer(close_1011) as py:
            r = run_cli(cli, "connect", py.url(), keep_stdin_open=True)
        expect(r.status == 1, "server closes with 1011: exit 1", r)
        expect(r.lines == ["about to fail"], "1011: the message before the close", r)
        expect("closed: 1011 oops" in r.stderr, "1011: 'closed: 1011 oops' on stderr", r)

    checks.run("a close with 1011 exits 1", abnormal_close, needs_websockets=True)

    def tls():
        with self_signed() as made:
            if made is None:
                print("  (no openssl command: the wss:// checks are skipped)")
                return
            _, _, ctx = made
            with PyServer(send_headers_then_close, ssl=ctx) as py:
                url = f"wss://127.0.0.1:{py.port}/tls"
                verified = run_cli(cli, "connect", url, keep_stdin_open=True, timeout=20)
                insecure = run_cli(cli, "connect", url, "--insecure", keep_stdin_open=True, timeout=20)
        expect(verified.status == 1, "wss:// with a self-signed certificate: exit 1 without --insecure", verified)
        expect("connectSocket:fail" in verified.stderr and "certificate" in verified.stderr,
               "wss:// with a self-signed certificate: the errMsg names the certificate", verified)
        expect(insecure.status == 0, "wss:// --insecure: exit 0 after the server's normal close", insecure)
        expect(len(insecure.lines) == 1 and "headers" in json.loads(insecure.lines[0]),
               "wss:// --insecure: the server's message", insecure)
        expect(f"connected to {url}" in insecure.stderr, "wss:// --insecure: 'connected to'", insecure)

    checks.run("wss:// verifies certificates; --insecure skips that", tls, needs_websockets=True)

    def hand_made(frames, wait_close):
        """Runs the client against a server written here by hand: it answers the handshake,
        sends `frames` (raw bytes), then either drops TCP at once or, with wait_close,
        reads the client's close frame first (bounded). Returns (Result, server record)."""
        record = {}
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            listener.settimeout(10)
            port = listener.getsockname()[1]

            def serve():
                try:
                    conn, _ = listener.accept()
                    with conn:
                        conn.settimeout(10)
                        data = b""
                        while b"\r\n\r\n" not in data:
                            chunk = conn.recv(4096)
                            if not chunk:
                                return
                            data += chunk
                        key = [line.split(b":", 1)[1].strip() for line in data.split(b"\r\n")
                               if line.lower().startswith(b"sec-websocket-key:")][0]
                        accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
                        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n" + frames)
                        if wait_close:
                            # The client's close frame: 2 header bytes, a 4-byte mask, the payload.
                            got = b""
                            while len(got) < 6 or len(got) < 6 + (got[1] & 0x7F):
                                chunk = conn.recv(4096)
                                if not chunk:
                                    break
                                got += chunk
                            record["client_close"] = got
                        record["ok"] = True
                except (OSError, IndexError) as e:
                    record["error"] = f"{type(e).__name__}: {e}"

            t = threading.Thread(target=serve, daemon=True)
            t.start()
            r = run_cli(cli, "connect", f"ws://127.0.0.1:{port}/", keep_stdin_open=True, timeout=20)
            t.join(15)
        expect(record.get("ok"), f"the hand-made server ran: {record}")
        return r, record

    def dropped_connection():
        r, _ = hand_made(b"\x81\x02hi", wait_close=False)
        expect(r.status == 1, "a dropped connection: exit 1", r)
        expect(r.lines == ["hi"], "a dropped connection: the message before the drop", r)
        expect("closed: 1006" in r.stderr, "a dropped connection: 'closed: 1006'", r)

    checks.run("a dropped connection (1006) exits 1", dropped_connection)

    def close_without_code():
        r, record = hand_made(b"\x81\x02hi\x88\x00", wait_close=True)  # a close frame with no code
        expect(record.get("client_close", b"")[:1] == b"\x88", f"the client answered the close: {record}")
        expect(r.status == 0, "a close without a code (1005): exit 0", r)
        expect(r.lines == ["hi"] and "closed: 1005" in r.stderr, "a close without a code: 'closed: 1005'", r)

    checks.run("a close without a code (1005) exits 0", close_without_code)

    def going_away():
        r, _ = hand_made(b"\x88\x0a\x03\xe9shutdown", wait_close=True)  # 1001 "shutdown"
        expect(r.status == 0, "a close with 1001: exit 0", r)
        expect("closed: 1001 shutdown" in r.stderr, "a close with 1001: 'closed: 1001 shutdown'", r)

    checks.run("a close with 1001 (going away) exits 0", going_away)

    print(f"{checks.passed} passed, {checks.failed} failed" + (f", {checks.skipped} skipped" if checks.skipped else ""))
    return 0 if checks.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
