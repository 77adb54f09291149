#!/usr/bin/python3
"""Many concurrent WebSocket connections: how many one process holds, and 100,000 in all.

A process here may hold at most 20,000 file descriptors (the hard limit cannot be raised),
so one tongdao-server process holds what that allows, and the full count is reached with
several processes sharing the port (SO_REUSEPORT: the kernel spreads new connections
among them). The load comes from several `tongdao bench --idle` processes (the CLI's load
generator), each opening its share from several 127.0.0.x source addresses (one address has
~28,000 ephemeral ports).

    /usr/bin/python3 bench/many_connections.py [--bin-dir build/release/bin]
        [--total 100000] [--servers 6] [--single 19900]

Reports, for the single-process run and the shared-port run: connections asked for and
held, each server's descriptors and RSS, and bytes per connection.
"""

import argparse
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time

HARD = resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def raise_limit():
    resource.setrlimit(resource.RLIMIT_NOFILE, (HARD, HARD))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def stable_rss_kib(pid):
    """VmRSS once the same twice, half a second apart (at most 10 s)."""
    prev = None
    for _ in range(20):
        cur = rss_kib(pid)
        if cur == prev:
            return cur
        prev = cur
        time.sleep(0.5)
    return rss_kib(pid)


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_port(port, deadline):
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def stop(procs):
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.time() + 15
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def run(bin_dir, servers, total, per_client):
    """Starts `servers` servers on one port and opens `total` idle connections to them."""
    port = free_port()
    srv = []
    loads = []
    try:
        for _ in range(servers):
            srv.append(subprocess.Popen(
                [os.path.join(bin_dir, "tongdao-server"), "--port", str(port), "--threads", "1",
                 "--idle-timeout", "0", "--deflate", "off", "--log-level", "warn",
                 "--anonymous", "--data-dir", tempfile.mkdtemp(prefix="many_connections.")],
                preexec_fn=raise_limit, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        if not wait_port(port, time.time() + 10):
            raise RuntimeError("servers did not start")
        # One warm-up connection per server would not reach each one reliably (the kernel
        # picks): the baseline is taken right after start, code pages loaded by the first
        # handshake are counted; with ~17,000 connections each that is noise.
        time.sleep(0.5)
        base = {p.pid: (rss_kib(p.pid), fds(p.pid)) for p in srv}
        left = total
        index = 0
        while left > 0:
            n = min(per_client, left)
            ips = ",".join(f"127.0.{index}.{k}" for k in range(1, 9))
            # --phases: the "# open N errors E deflate D" line read below (--json: a result line
            # at the end, unread).
            loads.append(subprocess.Popen(
                [os.path.join(bin_dir, "tongdao"), "bench", f"ws://127.0.0.1:{port}/echo", "-c", str(n), "--idle",
                 "--source-ips", ips, "--connect-timeout", "120", "--hold-max", "600",
                 "--phases", "--json", "--no-progress"],
                preexec_fn=raise_limit, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                text=True))
            left -= n
            index += 1
        opened = errors = 0
        for lg in loads:
            line = lg.stdout.readline()  # "# open N errors E deflate D"
            parts = line.split()
            if len(parts) >= 5 and parts[1] == "open":
                opened += int(parts[2])
                errors += int(parts[4])
        time.sleep(2)  # let the servers finish their handshakes
        rows = []
        for p in srv:
            r0, f0 = base[p.pid]
            r1 = stable_rss_kib(p.pid)  # as issue 13's method (tests/interop/idle_memory_test.py)
            f1 = fds(p.pid)
            held = f1 - f0
            rows.append({"pid": p.pid, "connections": held, "fds": f1, "rss_kib": r1,
                         "bytes_per_connection": round((r1 - r0) * 1024 / held) if held > 0 else None})
        return {"servers": servers, "asked": total, "opened_by_clients": opened, "client_errors": errors,
                "held": sum(r["connections"] for r in rows), "per_server": rows}
    finally:
        for lg in loads:
            try:
                lg.stdin.close()
            except OSError:
                pass
        stop(loads)
        stop(srv)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-dir", default="build/release/bin")
    ap.add_argument("--total", type=int, default=100000)
    ap.add_argument("--servers", type=int, default=6)
    ap.add_argument("--single", type=int, default=HARD - 100, help="connections for the one-process run")
    ap.add_argument("--json")
    args = ap.parse_args()
    for exe in ("tongdao", "tongdao-server"):
        if not os.path.exists(os.path.join(args.bin_dir, exe)):
            sys.exit(f"many_connections: {os.path.join(args.bin_dir, exe)} not found: run `make build` first "
                     "(or pass --bin-dir)")
    per_client = HARD - 100  # connections per tongdao bench process
    results = {"fd_hard_limit": HARD}
    print(f"file descriptor hard limit: {HARD}")
    one = run(args.bin_dir, 1, args.single, per_client)
    results["single"] = one
    print(f"one process: asked {one['asked']}, held {one['held']} "
          f"({one['per_server'][0]['bytes_per_connection']} B RSS each)")
    many = run(args.bin_dir, args.servers, args.total, per_client)
    results["shared_port"] = many
    print(f"{args.servers} processes on one port: asked {many['asked']}, clients opened "
          f"{many['opened_by_clients']} ({many['client_errors']} errors), servers held {many['held']}")
    for r in many["per_server"]:
        print(f"  pid {r['pid']}: {r['connections']} connections, {r['rss_kib']} KiB RSS, "
              f"{r['bytes_per_connection']} B each")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    ok = one["held"] == one["asked"] and many["held"] == many["asked"]
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
