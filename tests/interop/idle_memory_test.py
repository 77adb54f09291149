#!/usr/bin/python3
"""Memory per idle WebSocket, measured as issue 13 does. Release builds only (RSS means
nothing under ASan); run alone (RUN_SERIAL): another process's load skews nothing here, but
10,000 descriptors on each side leave no room for a second test's.

    /usr/bin/python3 idle_memory_test.py PATH/TO/tongdao-server     (or TONGDAO_SERVER=...)

tongdao-server --threads 1 --anonymous on a free loopback port; VmRSS before; 10,000
connections from a plain asyncio client (200 at a time) that sends the upgrade request for
/echo, reads the 101 and stays silent; once RSS is stable, (after - before) / connections.
Nothing is warmed up first: code and tables the first handshake touches count too.
Fails above the target, 273 B (uWebSockets' figure), plus 5 %. Exit 0 pass, 1 fail, 77 skip.
"""

import asyncio
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time

TARGET = 273             # bytes per idle connection (docs/PERFORMANCE.md)
LIMIT = TARGET * 1.05    # the margin: run-to-run noise is a few bytes
COUNT = 10000
IN_FLIGHT = 200
REQUEST = (b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def hold(port, pid, count):
    """Opens `count` idle connections; returns (connections held, RSS once stable)."""
    held = []
    sem = asyncio.Semaphore(IN_FLIGHT)

    async def one():
        async with sem:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(REQUEST)
            await w.drain()
            head = await r.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 101"):
                raise RuntimeError(f"not upgraded: {head[:40]!r}")
            held.append(w)

    await asyncio.gather(*[one() for _ in range(count)])
    # Stable: the same figure twice, half a second apart (at most 10 s).
    prev = None
    for _ in range(20):
        await asyncio.sleep(0.5)
        cur = rss(pid)
        if cur == prev:
            break
        prev = cur
    after = rss(pid)
    for w in held:
        w.close()
    return len(held), after


def main():
    if os.environ.get("TONGDAO_SANITIZE", "").lower() in ("1", "on", "true", "yes"):
        print("SKIP: RSS under a sanitizer means nothing (Release builds only)")
        return 77
    path = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("TONGDAO_SERVER", "")
    if not os.path.exists(path):
        print(f"SKIP: no tongdao-server at '{path}'")
        return 77
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the server inherits it too
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < COUNT + 200:
        print(f"SKIP: RLIMIT_NOFILE is {soft}; {COUNT} connections need more")
        return 77
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="idle_memory.") as data:
        proc = subprocess.Popen([path, "--host", "127.0.0.1", "--port", str(port), "--threads", "1", "--anonymous",
                                 "--data-dir", data, "--log-level", "warn"])
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        print("FAIL: the server did not start")
                        return 1
                    time.sleep(0.05)
            time.sleep(1.0)  # let start-up settle; the probe above was plain TCP, no handshake
            before = rss(proc.pid)
            held, after = asyncio.run(hold(port, proc.pid, COUNT))
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    per = (after - before) / held
    print(f"{held} idle connections: RSS {before / 2**20:.2f} -> {after / 2**20:.2f} MiB, "
          f"{per:.0f} B per connection (target {TARGET}, fails above {LIMIT:.0f})")
    if held != COUNT:
        print(f"FAIL: held {held} of {COUNT}")
        return 1
    if per > LIMIT:
        print(f"FAIL: {per:.0f} B per idle connection > {LIMIT:.0f}")
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
