#!/usr/bin/python3
"""cli.bench: `tongdao bench` against servers no one here wrote — Python `websockets` (echo,
permessage-deflate, TLS, a slow echo, a corrupting echo), Node `ws` and Socket.IO — and against
tongdao-server's /echo and /chat.

usage: bench_test.py --cli PATH/tongdao --server PATH/tongdao-server [--node PATH] [--repo DIR]

What is checked: the figures agree with each other and with what the servers saw (messages/s
with the count and the window, a latency per message, p50 <= p90 <= p99 <= p99.9 <= max);
a wrong echo is counted as an error; --rate keeps its schedule and, against a server slower
than the schedule, times each message from its slot (the latency grows, sends are missed);
--ramp-up spreads the connections over its seconds; wss:// verifies unless --insecure; the
chat engine's deliveries match its sends times the members; the progress line appears on a
terminal only; bad input exits 2 with a reason.

Everything is on 127.0.0.1; every wait is bounded; the processes started here are stopped by
their pid. Runs are short (1-2 s): the figures are checked for consistency, not for speed.
"""

import argparse
import asyncio
import json
import os
import pty
import select
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from cli_test import Checks, PyServer, expect, run_cli, self_signed  # noqa: E402
from echo_server import EchoServer, ManagedProcess, free_port, stop_process  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SHORT = ["-d", "1.5", "--warmup", "0.3", "--no-progress"]


def bench(cli, *args, timeout=60):
    return run_cli(cli, "bench", *args, timeout=timeout)


def bench_json(cli, *args, timeout=60):
    r = bench(cli, *args, "--json", timeout=timeout)
    expect(r.status == 0, "tongdao bench exits 0", r)
    lines = [l for l in r.lines if l.startswith("{")]
    expect(len(lines) == 1, "one JSON object on stdout", r)
    return json.loads(lines[0]), r


def check_latency(h, count, what):
    expect(h["count"] == count, f"{what}: one latency per message ({h['count']} for {count})")
    expect(count == 0 or 0 < h["p50"] <= h["p90"] <= h["p99"] <= h["p999"] <= h["max"],
           f"{what}: p50 <= p90 <= p99 <= p99.9 <= max: {h}")


def check_echo(res, connections, what):
    expect(res["errors"] == 0, f"{what}: no error: {res}")
    expect(res["connections"] == connections, f"{what}: {connections} connections open: {res}")
    expect(res["messages"] > 0, f"{what}: messages echoed: {res}")
    # seconds is printed to the millisecond: msgs/s agrees with messages / seconds within that.
    expect(abs(res["msgs_per_sec"] * res["seconds"] - res["messages"]) <= res["messages"] * 0.005 + 1,
           f"{what}: msgs/s = messages / seconds: {res}")
    check_latency(res["latency_us"], res["messages"], what)


# --- peers ---------------------------------------------------------------------------------

async def echo(ws, record):
    record["connections"] = record.get("connections", 0) + 1
    async for m in ws:
        record["messages"] = record.get("messages", 0) + 1
        await ws.send(m)


async def slow_echo(ws, record):
    async for m in ws:
        await asyncio.sleep(0.02)
        await ws.send(m)


async def corrupting_echo(ws, record):
    n = 0
    async for m in ws:
        n += 1
        if n % 10 == 0:  # every tenth echo has its first byte changed
            m = (bytes([m[0] ^ 1]) + m[1:]) if isinstance(m, bytes) else chr(ord(m[0]) ^ 1) + m[1:]
        await ws.send(m)


class NodeWs(ManagedProcess):
    """bench/peers/ws_echo.js: Node's `ws` echo server."""

    def __init__(self, node):
        self.port = free_port()
        self.proc = subprocess.Popen([node, os.path.join(REPO, "bench", "peers", "ws_echo.js"), str(self.port), "300"],
                                     cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, self.proc, "node ws_echo.js")


class SocketIo(ManagedProcess):
    """bench/chat/socketio_server.js: Socket.IO 4.8's chat peer."""

    def __init__(self, node):
        self.port = free_port()
        self.proc = subprocess.Popen([node, os.path.join(REPO, "bench", "chat", "socketio_server.js"), str(self.port), "300"],
                                     cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, self.proc, "node socketio_server.js")


def wait_port(port, proc, name, timeout=20):
    import socket
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{name} not listening within {timeout}s")


def on_pty(cmd, timeout=30):
    """Runs cmd with standard error on a pseudo-terminal; returns (status, what it wrote there)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the other side closed
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    try:
        status = proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        status = None
    proc.stdout.close()
    return status, out.decode(errors="replace")


# --- the checks ------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", required=True)
    ap.add_argument("--server", required=True)
    ap.add_argument("--node", default=shutil.which("node"))
    opts = ap.parse_args()
    cli = opts.cli
    checks = Checks()
    # The chat checks send far faster than a person: the server's per-user limit goes up.
    server = EchoServer(opts.server, extra=["--rate-limit", "100000", "--rate-burst", "100000"])
    echo_url = f"ws://127.0.0.1:{server.port}/echo"
    chat_url = f"ws://127.0.0.1:{server.port}/chat"
    try:
        def closed_loop():
            res, _ = bench_json(cli, echo_url, "-c", "8", *SHORT)
            check_echo(res, 8, "closed loop against tongdao-server")
            expect(res["mode"] == "closed" and res["window"] == 1, f"closed loop, one in flight: {res}")
            expect(res["tx_payload_bytes"] == res["rx_payload_bytes"] or abs(res["tx_payload_bytes"] - res["rx_payload_bytes"]) <= 8 * 20,
                   f"what went out came back (at most one message in flight each): {res}")

        checks.run("closed loop: messages/s, a latency per echo, against tongdao-server", closed_loop)

        def pipelined_deflate_python():
            with PyServer(echo) as py:
                res, _ = bench_json(cli, py.url("/"), "-c", "4", "-p", "8", "--deflate", "--json-messages", "-s", "300", *SHORT)
                check_echo(res, 4, "pipelined, permessage-deflate, against Python websockets")
                expect(res["deflate_connections"] == 4, f"Python websockets agreed to permessage-deflate: {res}")
                expect(res["tx_wire_bytes"] < res["tx_payload_bytes"], f"the JSON went compressed: {res}")
                # Every echo the server made was counted (the measured window is part of the run).
                expect(py.record.get("messages", 0) >= res["messages"], f"the server echoed at least what was counted: {py.record}")

        checks.run("--pipeline 8 --deflate --json-messages against Python websockets", pipelined_deflate_python,
                   needs_websockets=True)

        def wrong_echo_counted():
            with PyServer(corrupting_echo) as py:
                r = bench(cli, py.url("/"), "-c", "2", "-d", "1", "--warmup", "0", "--json", "--no-progress")
            res = json.loads([l for l in r.lines if l.startswith("{")][0])
            expect(res["errors"] >= res["messages"] // 10 - 2 and res["errors"] > 0,
                   f"every tenth echo, changed by the server, is an error: {res}")
            expect("wrong echo" in r.stderr, "the wrong echo is reported on stderr", r)

        checks.run("an echo that differs from what was sent is an error", wrong_echo_counted, needs_websockets=True)

        def rate_schedule():
            res, _ = bench_json(cli, echo_url, "-c", "10", "-r", "50", "-d", "2", "--warmup", "0.5", "--no-progress")
            check_echo(res, 10, "--rate 50 x 10 connections")
            expect(res["mode"] == "rate" and res["missed"] == 0, f"open loop, nothing missed: {res}")
            expect(450 <= res["msgs_per_sec"] <= 550, f"--rate 50 on 10 connections: about 500 msg/s: {res}")

        checks.run("--rate keeps its schedule", rate_schedule)

        def rate_slower_server():
            # 20 ms per echo: 50/s per connection at most, against a schedule of 200/s.
            with PyServer(slow_echo) as py:
                res, _ = bench_json(cli, py.url("/"), "-c", "2", "-r", "200", "-d", "1.5", "--warmup", "0", "--no-progress")
            expect(res["missed"] > 0, f"sends the schedule could not make are counted as missed: {res}")
            expect(res["msgs_per_sec"] < 120, f"the slow server echoes about 100/s in all: {res}")
            # Timed from their slots, the waiting messages show the server's delay, far above 20 ms.
            expect(res["latency_us"]["p50"] > 200_000, f"latency from the schedule, not from the write: {res}")

        checks.run("--rate against a slower server: latency from each slot, missed sends counted", rate_slower_server,
                   needs_websockets=True)

        def ramp_up():
            started = time.monotonic()
            r = bench(cli, echo_url, "-c", "20", "--ramp-up", "1", "-d", "0.3", "--warmup", "0", "--phases", "--json",
                      "--no-progress")
            took = time.monotonic() - started
            expect(r.status == 0 and r.lines and r.lines[0] == "# open 20 errors 0 deflate 0", "the phase lines come first", r)
            expect("# measuring" in r.lines, "'# measuring' is printed", r)
            expect(took >= 1.2, f"20 connections over --ramp-up 1, then 0.3 s: took {took:.2f} s", r)
            res = json.loads(r.lines[-1])
            check_echo(res, 20, "--ramp-up")

        checks.run("--ramp-up opens the connections over its seconds; --phases", ramp_up)

        def several_urls():
            with PyServer(echo) as py:
                res, _ = bench_json(cli, echo_url, py.url("/"), "-c", "6", *SHORT)
            check_echo(res, 6, "two URLs")
            expect(py.record.get("connections") == 3, f"the second URL got half the connections: {py.record}")

        checks.run("several URLs share the connections", several_urls, needs_websockets=True)

        def ipv6():
            with PyServer(echo, host="::1") as py:
                res, _ = bench_json(cli, py.url("/"), "-c", "3", "-p", "4", *SHORT)
                expect(py.url("/").startswith("ws://[::1]:"), f"an IPv6 literal in the URL: {py.url('/')}")
            check_echo(res, 3, "ws://[::1]")
            expect(py.record.get("connections") == 3, f"the connections reached the IPv6 server: {py.record}")
            bad = bench(cli, "ws://[::1/", "-d", "0.2")
            expect(bad.status == 2 and "no ']'" in bad.stderr, "an IPv6 literal without its ']': exit 2", bad)

        checks.run("ws://[::1]: IPv6 literals", ipv6, needs_websockets=True)

        def idle():
            # Standard input closes at once: the connections still open, then the hold ends.
            r = bench(cli, echo_url, "--idle", "-c", "5", "--phases", "--no-progress")
            expect(r.status == 0 and r.lines[:1] == ["# open 5 errors 0 deflate 0"], "--idle opens every connection", r)
            expect("5 of 5 connections open, 0 errors" in r.stdout, "--idle: the connections counted", r)

        checks.run("--idle holds until standard input closes", idle)

        def node_ws():
            if not opts.node:
                print("  (no node: the Node ws check is skipped)")
                return
            peer = NodeWs(opts.node)
            try:
                res, _ = bench_json(cli, f"ws://127.0.0.1:{peer.port}/", "-c", "4", "-p", "4", "--text", *SHORT)
            finally:
                peer.stop()
            check_echo(res, 4, "Node ws")

        checks.run("against Node's ws", node_ws)

        def tls():
            with self_signed() as made:
                if made is None:
                    print("  (no openssl command: the wss:// checks are skipped)")
                    return
                cert, _, ctx = made
                with PyServer(echo, ssl=ctx) as py:
                    url = f"wss://127.0.0.1:{py.port}/"
                    refused = bench(cli, url, "-c", "2", "-d", "0.5", "--warmup", "0", "--connect-timeout", "5", "--no-progress")
                    trusted, _ = bench_json(cli, url, "-c", "2", "--ca", cert, *SHORT)
                    insecure, _ = bench_json(cli, url.replace("127.0.0.1", "localhost"), "-c", "2", "--insecure", *SHORT)
                    wrong_name = bench(cli, url.replace("127.0.0.1", "127.0.0.2"), "-c", "1", "--ca", cert, "-d", "0.3",
                                       "--warmup", "0", "--connect-timeout", "5", "--no-progress")
            expect(refused.status == 1 and "certificate verify failed" in refused.stderr,
                   "a self-signed certificate is refused without --ca or --insecure", refused)
            check_echo(trusted, 2, "wss:// with --ca")
            expect(trusted["tls"].startswith("TLS"), f"the TLS version and cipher are reported: {trusted}")
            check_echo(insecure, 2, "wss:// --insecure")
            expect(wrong_name.status == 1, "a certificate for another address is refused", wrong_name)

        checks.run("wss:// verifies the certificate and its address unless --insecure", tls, needs_websockets=True)

        def chat_fanout():
            res, _ = bench_json(cli, chat_url, "--chat", "3", "--members", "4", "-r", "5", "-d", "1.5", "--warmup", "0.3",
                                "--drain", "1", "--name-prefix", "fo", "--no-progress")
            expect(res["errors"] == 0 and res["ready"] == 12 and res["rejects"] == 0, f"12 members, no error: {res}")
            expect(40 <= res["sends_per_sec"] <= 80, f"12 members x 5 msg/s: about 60 sends/s: {res}")
            expect(res["window_owed"] == res["window_delivered"] > 0,
                   f"every send of the window reached every member of its room: {res}")
            check_latency(res["latency_us"], res["deliveries"], "chat deliveries")
            check_latency(res["ack_latency_us"], res["acks"], "chat acks")

        checks.run("--chat with --rate: every delivery timed, none missing", chat_fanout)

        def chat_closed_ramp():
            res, _ = bench_json(cli, chat_url, "--chat", "2", "-c", "6", "-p", "2", "--ramp-up", "0.5", "--name-prefix", "cl",
                                *SHORT)
            expect(res["mode"] == "closed" and res["errors"] == 0 and res["ready"] == 6, f"closed loop, 6 members: {res}")
            expect(res["acks"] > 0 and res["deliveries"] >= res["acks"], f"acks, each delivered to 3 members: {res}")

        checks.run("--chat closed loop with --pipeline and --ramp-up", chat_closed_ramp)

        def chat_storm():
            res, _ = bench_json(cli, chat_url, "--chat", "2", "-c", "4", "--storm", "60", "--name-prefix", "st", "--no-progress")
            expect(res["caught_up"] == res["storm_clients"] == 4, f"4 clients caught up: {res}")
            expect(res["storm_deliveries"] == 4 * 60 and res["order_errors"] == 0 and res["gaps"] == 0,
                   f"each got its room's 60 messages, in order: {res}")

        checks.run("--chat --storm: every client catches up, in order", chat_storm)

        def chat_tls():
            with self_signed() as made:
                if made is None:
                    print("  (no openssl command: the wss:// chat check is skipped)")
                    return
                cert, key, _ = made
                tls_port = free_port()
                tls_server = EchoServer(opts.server, extra=["--tls-port", str(tls_port), "--tls-cert", cert, "--tls-key", key,
                                                            "--rate-limit", "100000", "--rate-burst", "100000"])
                try:
                    url = f"wss://127.0.0.1:{tls_port}/chat"
                    fan, _ = bench_json(cli, url, "--chat", "2", "--members", "3", "-r", "5", "--drain", "0.5", "--ca", cert,
                                        "--name-prefix", "tf", *SHORT)
                    closed, _ = bench_json(cli, url.replace("127.0.0.1", "localhost"), "--chat", "2", "-c", "4", "-p", "8",
                                           "--insecure", "--name-prefix", "tc", *SHORT)
                    storm, _ = bench_json(cli, url, "--chat", "2", "-c", "4", "--storm", "50", "--ca", cert,
                                          "--name-prefix", "ts", "--no-progress")
                    refused = bench(cli, url, "--chat", "1", "-c", "2", "-d", "0.3", "--warmup", "0", "--connect-timeout", "5",
                                    "--no-progress")
                finally:
                    tls_server.stop()
            expect(fan["tls"].startswith("TLS") and fan["errors"] == 0 and fan["ready"] == 6, f"6 members over wss://: {fan}")
            expect(fan["window_owed"] == fan["window_delivered"] > 0, f"every delivery over wss:// counted: {fan}")
            expect(closed["errors"] == 0 and closed["acks"] > 0, f"closed loop over wss://, 8 in flight: {closed}")
            expect(storm["caught_up"] == 4 and storm["storm_deliveries"] == 4 * 50 and storm["order_errors"] == 0,
                   f"a storm over wss://: {storm}")
            expect(refused.status == 1 and "certificate verify failed" in refused.stderr,
                   "wss:// chat: a self-signed certificate refused without --ca or --insecure", refused)

        checks.run("--chat over wss:// against tongdao-server's TLS port", chat_tls)

        def chat_idle():
            r = bench(cli, chat_url, "--chat", "1", "-c", "3", "--idle", "--phases", "--name-prefix", "id", "--no-progress")
            expect(r.status == 0 and r.lines[:1] == ["# open 3 errors 0"] and "3 connections ready of 3" in r.stdout,
                   "--chat --idle: standard input closed at once, every member still set up, then the hold ends", r)

        checks.run("--chat --idle holds until standard input closes", chat_idle)

        def headers():
            only = EchoServer(opts.server, extra=["--allowed-origin", "https://ok.example"])
            try:
                url = f"ws://127.0.0.1:{only.port}/chat"
                refused = bench(cli, url, "--chat", "1", "-c", "2", "-d", "0.2", "--warmup", "0", "--no-progress")
                res, _ = bench_json(cli, url, "--chat", "1", "-c", "2", "-H", "Origin: https://ok.example", "--name-prefix", "hd",
                                    "-d", "0.5", "--warmup", "0", "--no-progress")
            finally:
                only.stop()
            expect(refused.status == 1 and "403" in refused.stderr, "without the allowed Origin: refused with 403", refused)
            expect(res["ready"] == 2 and res["errors"] == 0, f"-H 'Origin: …' is sent with the opening handshake: {res}")
            bad = bench(cli, chat_url, "--chat", "1", "-H", "no colon")
            expect(bad.status == 2 and "Name: value" in bad.stderr, "a header without a colon: exit 2", bad)

        checks.run("-H adds header fields to the opening handshake", headers)

        def tokens():
            with tempfile.TemporaryDirectory() as d:
                secret, wrong = os.path.join(d, "secret"), os.path.join(d, "wrong")
                with open(secret, "w") as f:
                    f.write("  0123456789abcdef0123456789abcdef\n")  # the whitespace is not the secret's
                with open(wrong, "w") as f:
                    f.write("fedcba9876543210fedcba9876543210\n")
                authed = subprocess.Popen([opts.server, "--host", "127.0.0.1", "--port", str(port := free_port()),
                                           "--threads", "1", "--auth-secret-file", secret, "--data-dir", d,
                                           "--rate-limit", "100000", "--rate-burst", "100000"],
                                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                    wait_port(port, authed, "tongdao-server --auth-secret-file")
                    url = f"ws://127.0.0.1:{port}/chat"
                    anonymous = bench(cli, url, "--chat", "1", "-c", "2", "-d", "0.2", "--warmup", "0", "--no-progress")
                    signed, _ = bench_json(cli, url, "--chat", "2", "-c", "4", "--token-secret-file", secret, *SHORT)
                    forged = bench(cli, url, "--chat", "1", "-c", "2", "--token-secret-file", wrong, "-d", "0.2",
                                   "--warmup", "0", "--no-progress")
                finally:
                    stop_process(authed)
            expect(anonymous.status == 1 and "unauthorized" in anonymous.stderr, "no token: hello refused", anonymous)
            expect(signed["ready"] == 4 and signed["errors"] == 0 and signed["acks"] > 0,
                   f"tokens signed with the server's secret: every member set up and sending: {signed}")
            expect(forged.status == 1 and "unauthorized" in forged.stderr, "tokens signed with another secret: refused", forged)

        checks.run("--token-secret-file signs each member's hello token", tokens)

        def socketio():
            if not opts.node or not os.path.isdir(os.path.join(REPO, "node_modules", "socket.io")):
                print("  (no node or no node_modules/socket.io: the Socket.IO check is skipped)")
                return
            peer = SocketIo(opts.node)
            try:
                res, _ = bench_json(cli, f"ws://127.0.0.1:{peer.port}", "--chat", "2", "--members", "3", "--proto", "socketio",
                                    "-r", "5", "--drain", "0.5", *SHORT)
            finally:
                peer.stop()
            expect(res["proto"] == "socketio" and res["errors"] == 0 and res["ready"] == 6, f"6 Socket.IO members: {res}")
            expect(res["window_owed"] == res["window_delivered"] > 0, f"every delivery counted: {res}")

        checks.run("--chat --proto socketio against Socket.IO", socketio)

        def progress_on_terminal():
            status, err = on_pty([cli, "bench", echo_url, "-c", "2", "-d", "2.2", "--warmup", "0"])
            expect(status == 0, f"exit 0 (status {status})")
            expect("\r\x1b[K" in err and "msg/s" in err and "open" in err, f"a progress line on the terminal: {err!r}")
            piped = bench(cli, echo_url, "-c", "2", "-d", "1.2", "--warmup", "0")
            expect("\x1b[K" not in piped.stderr, "no progress line when stderr is not a terminal", piped)
            expect(any(l.startswith("latency ") and "p99.9" in l for l in piped.lines),
                   "the readable result has the latency line", piped)

        checks.run("the progress line goes to a terminal only", progress_on_terminal)

        def bad_input():
            cases = [
                (["http://127.0.0.1:1/"], "ws://HOST:PORT/PATH"),
                (["ws://127.0.0.1:99999/"], "bad port"),
                (["ws://no-such-host.invalid/"], "has no address"),
                ([echo_url, "--no-context-takeover"], "goes with --deflate"),
                ([chat_url, "wss://127.0.0.1:1/chat", "--chat", "2"], "all ws:// or all wss://"),
                ([chat_url, "--chat", "2", "--deflate"], "echo options"),
                ([echo_url, "-p", "0"], "--pipeline"),
            ]
            for args, reason in cases:
                r = bench(cli, *args, "-d", "0.2", "--warmup", "0", "--no-progress")
                expect(r.status == 2 and reason in r.stderr, f"{args}: exit 2 naming {reason!r}", r)
            r = bench(cli, "ws://127.0.0.1:1/", "-c", "2", "-d", "0.2", "--warmup", "0", "--connect-timeout", "2", "--no-progress")
            expect(r.status == 1 and "0 of 2 connections open" in r.stdout and "refused" in r.stderr,
                   "nothing listening: exit 1, what failed on stderr", r)

        checks.run("bad input exits 2 with the reason; no server exits 1", bad_input)
    finally:
        server.stop()
    print(f"{checks.passed} passed, {checks.failed} failed" + (f", {checks.skipped} skipped" if checks.skipped else ""))
    return 0 if checks.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
