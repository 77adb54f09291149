#!/usr/bin/python3
"""Abuse: interop_server against misbehaving clients over raw sockets. Release builds only
(RSS numbers mean nothing under ASan).

    /usr/bin/python3 abuse_test.py PATH/TO/interop_server     (or INTEROP_SERVER=...)

(a) a handshake trickled one byte a second gets 408 and is closed at the handshake timeout;
(b) a client that never reads what /flood sends: the server's memory stays bounded and the
    backpressure drops show in /metrics;
(c) garbage instead of HTTP gets 400 and is closed;
(d) 10,000 WebSocket connections opened and closed: descriptors, memory and the open-connection
    gauge come back to where they were.
Exit 0 all passed, 1 a check failed.
"""

import os
import random
import resource
import selectors
import socket
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import interop_common as ic  # noqa: E402

MIB = 1024


def mib(kib):
    return f"{kib / 1024:.1f} MiB"


def wait_open_connections(port, want, timeout):
    """Polls /metrics until connections_open == want; returns (value, seconds waited)."""
    start = time.monotonic()
    while True:
        value = ic.metrics(port).get("tongdao_connections_open")
        if value == want or time.monotonic() - start > timeout:
            return value, time.monotonic() - start
        time.sleep(0.2)


# --- (a) trickled handshake ---------------------------------------------------------------

def trickle(server, timeout_s):
    request = ic.upgrade_request(server.port, "/echo")
    start = time.monotonic()
    s = ic.connect(server.port)
    received = b""
    closed_at = None
    sent = 0
    with s:
        s.setblocking(False)
        sel = selectors.DefaultSelector()
        sel.register(s, selectors.EVENT_READ)
        next_byte = start
        while time.monotonic() - start < timeout_s + 8:
            now = time.monotonic()
            if now >= next_byte and sent < len(request):
                try:
                    s.send(request[sent:sent + 1])
                    sent += 1
                except OSError:
                    pass  # the server is done with us
                next_byte += 1.0
            for _ in sel.select(max(0.0, min(0.2, next_byte - time.monotonic()))):
                try:
                    chunk = s.recv(65536)
                except (ConnectionResetError, BlockingIOError):
                    chunk = b"" if not received else None
                if chunk is None:
                    continue
                if not chunk:
                    closed_at = time.monotonic() - start
                    break
                received += chunk
            if closed_at is not None:
                break
        sel.close()
    ic.expect(closed_at is not None, f"connection still open after {timeout_s + 8}s; got {received[:80]!r}")
    ic.expect(received.startswith(b"HTTP/1.1 408"), f"response to the trickled handshake: {received[:80]!r}")
    ic.expect(1.5 <= closed_at <= 4.0, f"closed after {closed_at:.2f}s, want 1.5-4 s (handshake timeout {timeout_s}s)")
    return f"408 and closed after {closed_at:.2f}s, {sent} of {len(request)} bytes sent"


# --- (b) never-reading client ---------------------------------------------------------------

def never_reads(server, ask_again):
    """Asks /flood for 200 x 64 KiB and never reads; with ask_again, asks for 200 more every
    50 ms for 3 s (12,000 messages, 750 MiB in all)."""
    port = server.port
    m0 = ic.metrics(port)
    base_rss = server.rss_kib()
    s, _ = ic.raw_websocket(port, "/flood")
    peak = base_rss
    asked = 0
    with s:
        s.setblocking(True)
        s.settimeout(5)
        s.sendall(ic.frame(0x1, b"200 65536"))
        asked += 200
        end = time.monotonic() + 3.0
        while time.monotonic() < end:  # never read; watch the server's memory
            peak = max(peak, server.rss_kib())
            time.sleep(0.05)
            if ask_again:
                s.sendall(ic.frame(0x1, b"200 65536"))
                asked += 200
        m1 = ic.metrics(port)
    drops = m1.get("tongdao_backpressure_drops_total", 0) - m0.get("tongdao_backpressure_drops_total", 0)
    sent = m1.get("tongdao_messages_sent_total", 0) - m0.get("tongdao_messages_sent_total", 0)
    growth = peak - base_rss
    print(f"  never-reading client: RSS baseline {mib(base_rss)}, peak {mib(peak)} (+{mib(growth)}), "
          f"backpressure drops {drops}, messages queued {sent} of {asked} x 64 KiB asked for", flush=True)
    ic.expect(growth < 64 * MIB, f"RSS grew by {mib(growth)} (limit 64 MiB)")
    ic.expect(drops > 0, "no backpressure drop counted in /metrics")
    value, _ = wait_open_connections(port, 0, 10)
    ic.expect(value == 0, f"connections_open {value} after the flooded client left")
    return f"RSS +{mib(growth)} (peak {mib(peak)}), {drops} drops"


# --- (c) garbage --------------------------------------------------------------------------------

def garbage(server, payload, want_status):
    with ic.connect(server.port) as s:
        try:
            s.sendall(payload)
        except OSError:
            pass  # the server may answer and close before taking all of it
        status, _, rest = ic.read_head(s)
        ic.expect_eq(status, want_status, "status")
        ic.read_until_closed(s, 10, rest)
    return f"{status}, closed"


def random_garbage(seed, size):
    rng = random.Random(seed)
    out = bytearray(rng.getrandbits(8) for _ in range(size))
    for i in range(0, size, 97):
        out[i:i + 2] = b"\r\n"
    return bytes(out)


# --- (d) many connections ------------------------------------------------------------------

SOURCES = ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"]


def open_many(port, count, batch=500, batch_timeout=60.0):
    """Opens `count` WebSocket connections (full handshake each), `batch` at a time, without
    blocking; returns the open sockets. Raises if any connection fails."""
    opened = []
    request_cache = {}
    sel = selectors.DefaultSelector()
    try:
        while len(opened) < count:
            n = min(batch, count - len(opened))
            pending = {}
            for i in range(n):
                src = SOURCES[(len(opened) + i) % len(SOURCES)]
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                s.bind((src, 0))
                err = s.connect_ex(("127.0.0.1", port))
                if err not in (0, 115):  # EINPROGRESS
                    s.close()
                    raise OSError(err, f"connect from {src}: {os.strerror(err)}")
                pending[s] = b""
                sel.register(s, selectors.EVENT_WRITE)
            deadline = time.monotonic() + batch_timeout
            while pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(pending)} handshakes of a batch of {n} not done in {batch_timeout}s")
                for key, events in sel.select(min(left, 1.0)):
                    s = key.fileobj
                    if events & selectors.EVENT_WRITE:
                        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        if err:
                            raise OSError(err, f"connect: {os.strerror(err)}")
                        req = request_cache.setdefault("r", ic.upgrade_request(port, "/echo"))
                        s.send(req)  # small: goes at once on a fresh socket
                        sel.modify(s, selectors.EVENT_READ)
                        continue
                    chunk = s.recv(4096)
                    if not chunk:
                        raise ConnectionError(f"closed during the handshake: {pending[s][:80]!r}")
                    pending[s] += chunk
                    if b"\r\n\r\n" in pending[s]:
                        if not pending[s].startswith(b"HTTP/1.1 101"):
                            raise RuntimeError(f"handshake answered {pending[s][:80]!r}")
                        sel.unregister(s)
                        del pending[s]
                        opened.append(s)
    except BaseException:
        for s in opened:
            s.close()
        for key in list(sel.get_map().values()):
            key.fileobj.close()
        raise
    finally:
        sel.close()
    return opened


def open_and_close(server, count, base_fds, base_rss, label):
    """One round: `count` connections opened, checked, closed; returns (peak fds, peak RSS, RSS after)."""
    port = server.port
    start = time.monotonic()
    socks = open_many(port, count)
    took = time.monotonic() - start
    try:
        value, _ = wait_open_connections(port, count, 10)
        peak_fds, peak_rss = server.fd_count(), server.rss_kib()
        print(f"  {label}: {count} connections open in {took:.1f}s: server fds {base_fds} -> {peak_fds}, "
              f"RSS {mib(base_rss)} -> {mib(peak_rss)} ({(peak_rss - base_rss) * 1024 / count:.0f} B per connection), "
              f"connections_open {value}", flush=True)
        ic.expect_eq(value, count, "connections_open with all connected")
        # A sign of life from some of them.
        for s in socks[:: max(1, count // 20)]:
            s.setblocking(True)
            s.settimeout(10)
            s.sendall(ic.frame(0x1, b"alive?"))
            fin, opcode, payload, _ = ic.read_frame(s)
            ic.expect_eq((opcode, payload), (0x1, b"alive?"), "echo on a connection among many")
    finally:
        # Half leave with a closing handshake started, half just drop TCP.
        for i, s in enumerate(socks):
            if i % 2 == 0:
                try:
                    s.setblocking(True)
                    s.settimeout(1)
                    s.sendall(ic.close_frame(1000))
                except OSError:
                    pass
            s.close()

    start = time.monotonic()
    value, waited = wait_open_connections(port, 0, 10)
    fds = server.fd_count()
    while abs(fds - base_fds) > 5 and time.monotonic() - start < 10:
        time.sleep(0.2)
        fds = server.fd_count()
    time.sleep(0.5)
    fds, rss = server.fd_count(), server.rss_kib()
    print(f"  {label}: after closing all: connections_open {value} (after {waited:.1f}s), server fds {fds} "
          f"(baseline {base_fds}), RSS {mib(rss)} (baseline {mib(base_rss)}, +{mib(rss - base_rss)})", flush=True)
    ic.expect_eq(value, 0, "connections_open after closing all")
    ic.expect(abs(fds - base_fds) <= 5, f"server fds {fds}, baseline {base_fds} (allowed +-5)")
    ic.expect(rss - base_rss <= 10 * MIB, f"RSS {mib(rss)} is more than baseline {mib(base_rss)} + 10 MiB")
    return peak_fds, peak_rss, rss


def many_connections(server, count):
    port = server.port
    # Warm up: a few connections and requests, so one-time allocations are in the baseline.
    warm = open_many(port, 50)
    for s in warm:
        s.close()
    value, _ = wait_open_connections(port, 0, 10)
    ic.expect(value == 0, f"connections_open {value} after the warm-up")
    time.sleep(0.5)
    base_fds, base_rss = server.fd_count(), server.rss_kib()
    peak_fds, peak_rss, rss1 = open_and_close(server, count, base_fds, base_rss, "round 1")
    # Again: memory freed in round 1 must be reused, not added to.
    _, peak_rss2, rss2 = open_and_close(server, count, base_fds, base_rss, "round 2")
    ic.expect(rss2 - rss1 <= 2 * MIB, f"RSS grew from {mib(rss1)} to {mib(rss2)} between two identical rounds")
    return (f"fds {base_fds}->{peak_fds}->{server.fd_count()}, RSS {mib(base_rss)}->{mib(peak_rss)}->{mib(rss1)}, "
            f"round 2 peak {mib(peak_rss2)} -> {mib(rss2)}")


def main():
    path = ic.server_path(sys.argv)
    checks = ic.Checks("abuse")

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the servers inherit it too
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    count = 10000
    if soft < count + 500:
        count = max(1000, soft - 500)
        print(f"WARNING: RLIMIT_NOFILE is {soft}; opening {count} connections instead of 10000", flush=True)

    with ic.Server(path, "--handshake-timeout", "2") as server:
        checks.run("(a) trickled handshake -> 408, closed at the 2 s handshake timeout", trickle, server, 2)
        checks.run("(c) 2 KiB of random bytes with line breaks -> 400", garbage, server, random_garbage(6455, 2048), 400)
        checks.run("(c) binary junk then a blank line -> 400", garbage, server,
                   bytes(range(256)) * 4 + b"\r\n\r\n", 400)
        checks.run("(c) a request line of 3 words of junk -> 400", garbage, server,
                   b"\x16\x03\x01 \xff\xfe /\x00 HTTP/9.9\r\n\r\n", 400)
        checks.run("(c) a TLS ClientHello on the plain port -> 400", garbage, server,
                   bytes.fromhex("160301002001000200030300") + os.urandom(32) + b"\r\n\r\n", 400)
        checks.run("server (a, c) alive and exits 0 on SIGTERM", lambda: ic.expect_eq(
            (server.alive(), server.stop()), (True, 0), "(alive, exit status)"))

    with ic.Server(path) as server:
        checks.run("(b) client that never reads /flood: RSS bounded, drops counted", never_reads, server, False)
        checks.run("(b) ... and keeps asking for more for 3 s: RSS bounded, drops counted", never_reads,
                   server, True)
        checks.run("server (b) alive and exits 0 on SIGTERM", lambda: ic.expect_eq(
            (server.alive(), server.stop()), (True, 0), "(alive, exit status)"))

    with ic.Server(path) as server:
        limits = open(f"/proc/{server.pid}/limits").read()
        line = next((l for l in limits.splitlines() if l.startswith("Max open files")), "?")
        print(f"  server {line}", flush=True)
        checks.run(f"(d) {count} connections opened then closed: fds, RSS and gauge back", many_connections,
                   server, count)
        checks.run("server (d) alive and exits 0 on SIGTERM", lambda: ic.expect_eq(
            (server.alive(), server.stop()), (True, 0), "(alive, exit status)"))
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())
