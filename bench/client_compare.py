#!/usr/bin/python3
"""Client throughput: tongdao's client beside Boost.Beast's and Node ws's, in one run.

One echo server (tongdao-server, one loop) pinned to CPU 0; each client in turn pinned to
CPU 1, holding C connections in request-reply (one message in flight each) or pipelined
(a window of W) mode. Reports messages/s and the client's CPU seconds per million
messages, the steadier figure on a shared machine.

    /usr/bin/python3 bench/client_compare.py [--bin-dir build/release/bin] [--connections 100]
        [--sizes 20,16384] [--modes rr,pipe] [--seconds 5] [--repeat 3] [--json out.json]
"""

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, seconds=10):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def run_client(cmd, timeout):
    out = subprocess.run(["taskset", "-c", "1"] + cmd, capture_output=True, text=True, timeout=timeout)
    for line in reversed(out.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"{cmd[0]}: no result ({out.stderr.strip()[:200]})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-dir", default="build/release/bin")
    ap.add_argument("--connections", type=int, default=100)
    ap.add_argument("--sizes", default="20,16384")
    ap.add_argument("--modes", default="rr,pipe")
    ap.add_argument("--window", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--warmup", type=float, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json")
    a = ap.parse_args()

    port = free_port()
    server = subprocess.Popen(["taskset", "-c", "0", os.path.join(a.bin_dir, "tongdao-server"), "--port", str(port),
                               "--threads", "1", "--deflate", "off", "--log-level", "warn"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = []
    try:
        if not wait_port(port):
            raise RuntimeError("tongdao-server did not start")
        url = f"ws://127.0.0.1:{port}/echo"
        for size in [int(s) for s in a.sizes.split(",")]:
            for mode in a.modes.split(","):
                common = ["--connections", str(a.connections), "--size", str(size), "--mode", mode,
                          "--window", str(a.window), "--duration", str(a.seconds), "--warmup", str(a.warmup)]
                clients = {
                    "tongdao": [os.path.join(a.bin_dir, "tongdao_client_bench"), "--url", url] + common,
                    "beast": [os.path.join(a.bin_dir, "beast_client_bench"), "--port", str(port)] + common,
                    "node-ws": ["node", os.path.join(HERE, "client", "ws_client_bench.js"), "--url", url] + common,
                }
                for name, cmd in clients.items():
                    if not os.path.exists(cmd[0]) and cmd[0] != "node":
                        continue
                    runs = [run_client(cmd, a.seconds + a.warmup + 60) for _ in range(a.repeat)]
                    rate = statistics.median(r["msgs_per_sec"] for r in runs)
                    cpu = statistics.median(r["client_cpu_seconds"] / max(r["messages"], 1) * 1e6 for r in runs)
                    results.append({"client": name, "size": size, "mode": mode, "msgs_per_sec": rate,
                                    "client_cpu_us_per_msg": cpu, "errors": sum(r.get("errors", 0) for r in runs)})
                    print(f"{size:>6} B {mode:4} {name:8} {rate:>12,.0f} msg/s  {cpu:8.2f} µs CPU/msg", flush=True)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
    print()
    print("| size | mode | client | messages/s | client CPU µs/msg | vs tongdao (msg/s) |")
    print("|---|---|---|--:|--:|--:|")
    for r in results:
        base = next(x for x in results if x["size"] == r["size"] and x["mode"] == r["mode"] and x["client"] == "tongdao")
        print(f"| {r['size']} B | {r['mode']} | {r['client']} | {r['msgs_per_sec']:,.0f} | "
              f"{r['client_cpu_us_per_msg']:.2f} | {r['msgs_per_sec'] / base['msgs_per_sec']:.2f}× |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    sys.exit(main())
