#!/usr/bin/python3
"""Side-by-side WebSocket echo benchmark: tongdao-server against peer servers.

Each server runs alone, pinned to CPU 0; the load generator, `tongdao bench` (its echo
engine), runs pinned to CPU 1. For every scenario (connections x message size x mode) the
script reads the server's CPU time from /proc/PID/stat at the start and at the end of the
measured window (`tongdao bench --phases` prints a line at each), so warmup and connection
setup are not counted. Then a memory scenario per server: RSS before and after holding many
idle connections.

    make build && /usr/bin/python3 bench/echo_compare.py [--quick] [--json results.json]

Standard library only. Every process it starts is stopped by its pid (SIGTERM, then SIGKILL
after a bound), also on error and Ctrl-C. See bench/README.md for the columns.
"""

import argparse
import json
import os
import platform
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVER_CPU, LOADGEN_CPU = "0", "1"  # LOADGEN_CPU: where `tongdao bench` runs

_children = []  # every Popen still to be stopped


class BenchError(Exception):
    pass


def _child_setup():
    # 10,000 idle connections need that many descriptors on each side: lift the soft limit.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def spawn(cmd, cpu, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
    # taskset execs the command, so the pid we hold is the program's own. A new session keeps a
    # terminal's Ctrl-C away from the children: this script stops them itself.
    p = subprocess.Popen(["taskset", "-c", cpu] + [str(c) for c in cmd], stdin=stdin, stdout=stdout,
                         stderr=stderr, preexec_fn=_child_setup, start_new_session=True)
    _children.append(p)
    return p


def stop(p, grace=3.0):
    """Stop one child by its pid: SIGTERM, then SIGKILL if it is still there after `grace` s."""
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)
    for f in (p.stdin, p.stdout):
        if f:
            f.close()
    if p in _children:
        _children.remove(p)


def stop_all():
    for p in list(reversed(_children)):
        try:
            stop(p)
        except Exception as e:  # keep going: the others must be stopped too
            print(f"warning: could not stop pid {p.pid}: {e}", file=sys.stderr)


def free_port():
    # The kernel picks a free port; the short race until the server binds it is acceptable here.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"server exited with code {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"server did not listen on port {port} within {timeout} s")


def cpu_ticks(pid):
    """utime + stime of the whole process (all threads), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()  # the name in () may contain spaces
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


def cpu_line_ticks(cpu):
    """(busy, interrupt) ticks of one CPU from /proc/stat: busy is all but idle and iowait
    (every process and the kernel), interrupt is irq + softirq."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                v = [int(x) for x in line.split()[1:9]]
                return sum(v) - v[3] - v[4], v[5] + v[6]
    return 0, 0


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise BenchError(f"no VmRSS for pid {pid}")


class LineReader:
    """Reads a child's stdout line by line with a deadline (never blocks past it)."""

    def __init__(self, f):
        self.fd, self.buf = f.fileno(), b""

    def readline(self, deadline):
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError("tongdao bench timed out")
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    return None
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode(errors="replace").strip()


class Server:
    def __init__(self, name, cmd, raw=False):
        self.name, self.cmd, self.raw = name, cmd, raw
        self.proc, self.port, self.log = None, None, None

    def start(self, logdir):
        self.port = free_port()
        self.log = open(Path(logdir) / f"{self.name}.log", "ab")
        cmd = [str(self.port) if c == "{port}" else c for c in self.cmd]
        self.proc = spawn(cmd, SERVER_CPU, stdout=self.log, stderr=self.log)
        wait_port(self.port, self.proc)
        time.sleep(0.2)  # let a runtime finish starting up (Node compiles lazily)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc:
            stop(self.proc)
            self.proc = None
        if self.log:
            self.log.close()
            self.log = None


def known_servers(bin_dir):
    """A Server for each one that is built, or (name, why it is missing) for the others."""
    node = shutil.which("node")
    ws_ok = node and (REPO / "node_modules" / "ws").is_dir()
    out = []
    tongdao = bin_dir / "tongdao-server"
    # tongdao-server is the chat server too: it needs a way to say hello and a data directory.
    data = tempfile.mkdtemp(prefix="echo_compare.data.")
    out.append(Server("tongdao", [tongdao, "--port", "{port}", "--threads", "1", "--anonymous", "--data-dir", data])
               if tongdao.exists() else
               ("tongdao", f"{tongdao} not built"))
    for name, exe, raw in (("raw_echo", "raw_echo", True), ("beast", "beast_echo", False),
                           ("websocketpp", "wspp_echo", False)):
        path = bin_dir / exe
        out.append(Server(name, [path, "{port}"], raw) if path.exists() else (name, f"{path} not built"))
    out.append(Server("node-ws", [node, REPO / "bench" / "peers" / "ws_echo.js", "{port}"]) if ws_ok else
               ("node-ws", "node or node_modules/ws missing (scripts/install-deps.sh)"))
    return out


# --phases --json --no-progress: "# open N errors E deflate D", "# measuring" and one JSON line on
# stdout, nothing on a terminal. Messages are binary unless --text.
BENCH_REPORT = ["--phases", "--json", "--no-progress"]


def bench_cmd(args, server, extra):
    cmd = [args.tongdao, "bench", f"ws://127.0.0.1:{server.port}/echo", "--source-ips", args.source_ips] + BENCH_REPORT
    return cmd + (["--text"] if args.text else []) + (["--raw"] if server.raw else []) + extra


def run_scenario(args, server, conns, size, mode):
    extra = ["-c", conns, "-s", size, "-p", args.window if mode == "pipe" else 1,
             "--duration", args.seconds, "--warmup", args.warmup, "--connect-timeout", args.connect_timeout]
    p = spawn(bench_cmd(args, server, extra), LOADGEN_CPU, stdout=subprocess.PIPE, stderr=server.log)
    row = {"server": server.name, "connections": conns, "size": size, "mode": mode,
           "window": args.window if mode == "pipe" else 1}
    cpu0 = cpu1 = result = None
    try:
        reader = LineReader(p.stdout)
        deadline = time.monotonic() + args.connect_timeout + args.warmup + args.seconds + 30
        for _ in range(1000):  # three lines; the bound only guards against a runaway
            line = reader.readline(deadline)
            if line is None:
                break
            if line == "# measuring":
                cpu0, core0 = cpu_ticks(server.proc.pid), cpu_line_ticks(SERVER_CPU)
            elif line.startswith("{"):
                if server.alive():
                    cpu1, core1 = cpu_ticks(server.proc.pid), cpu_line_ticks(SERVER_CPU)
                result = json.loads(line)
                break
        p.wait(timeout=30)
    except (BenchError, subprocess.TimeoutExpired) as e:
        row["error"] = str(e)
        return row
    finally:
        stop(p)
    if result is None or cpu0 is None or cpu1 is None:
        row["error"] = "server died" if not server.alive() else "no measurement (see the server log)"
        return row
    msgs, secs = result["messages"], result["seconds"]
    cpu = (cpu1 - cpu0) / CLK_TCK
    # Whatever else kept the server's CPU busy: other processes there make the figures noisy.
    # (With tick-based accounting the server's own softirq work is already in its stime.)
    busy = (core1[0] - core0[0]) / CLK_TCK
    other = max(0.0, busy - cpu)
    row.update(messages=msgs, seconds=secs, msgs_per_sec=result["msgs_per_sec"], errors=result["errors"],
               connections_open=result["connections"], server_cpu_seconds=cpu,
               server_cpu_util=cpu / secs if secs else None,
               loadgen_cpu_util=result.get("client_cpu_seconds", 0) / secs if secs else None,
               cpu_seconds_per_million=cpu / msgs * 1e6 if msgs else None,
               cpu0_busy_util=busy / secs if secs else None,
               cpu0_irq_util=(core1[1] - core0[1]) / CLK_TCK / secs if secs else None,
               cpu0_other_util=other / secs if secs else None,
               latency_us=result.get("latency_us"))
    return row


def stable_rss(pid, alive):
    """VmRSS once it stops moving: the same twice, half a second apart (at most 10 s), as
    issue 13's method reads it (a server may give pages back after a burst of handshakes)."""
    prev = None
    for _ in range(20):
        time.sleep(0.5)
        if not alive():
            break
        cur = rss_bytes(pid)
        if cur == prev:
            return cur
        prev = cur
    return rss_bytes(pid)


def run_memory(args, server):
    # A short echo run first, so one-time start-up costs (JIT, lazy pools) are not charged to
    # the idle connections; then RSS before, hold N connections, RSS after once stable. For
    # tongdao the warm-up changes the figure by under 10 B (the first handshake touches
    # ~70 KiB): it agrees with issue 13's method, which has none (tests/interop/idle_memory_test.py).
    warm = spawn(bench_cmd(args, server, ["-c", 8, "-s", 20, "--duration", 0.3, "--warmup", 0,
                                          "--connect-timeout", args.connect_timeout]), LOADGEN_CPU, stderr=server.log)
    try:
        warm.wait(timeout=30)
    finally:
        stop(warm)
    time.sleep(0.5)
    before = rss_bytes(server.proc.pid)
    extra = ["--idle", "-c", args.idle_connections, "--connect-timeout", args.connect_timeout,
             "--hold-max", args.connect_timeout + 60]
    p = spawn(bench_cmd(args, server, extra), LOADGEN_CPU, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
              stderr=server.log)
    row = {"server": server.name, "idle_connections": args.idle_connections}
    try:
        reader = LineReader(p.stdout)
        line = reader.readline(time.monotonic() + args.connect_timeout + 30)
        if not line or not line.startswith("# open "):
            row["error"] = "tongdao bench did not open the connections"
            return row
        opened, errors = int(line.split()[2]), int(line.split()[4])
        after = stable_rss(server.proc.pid, server.alive)
        if not server.alive():
            row["error"] = "server died"
            return row
        p.stdin.close()  # ends the hold
        p.wait(timeout=30)
    finally:
        stop(p)
    row.update(opened=opened, errors=errors, rss_before=before, rss_after=after,
               bytes_per_connection=(after - before) / opened if opened else None)
    return row


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def print_tables(args, rows, mem_rows):
    raw = {(r["connections"], r["size"], r["mode"]): r.get("cpu_seconds_per_million")
           for r in rows if r["server"] == "raw_echo"}
    print(f"\n## Echo throughput ({args.seconds:g} s measured after {args.warmup:g} s warmup; "
          f"server on CPU {SERVER_CPU}, load generator (tongdao bench) on CPU {LOADGEN_CPU}; pipe window {args.window})\n")
    print("| server | conns | size | mode | msgs/s | server CPU | CPU s / M msgs | CPU/msg vs raw | p50 / p99 / p99.9 ms "
          "| load generator CPU | CPU 0 busy | errors |")
    print("|---|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in rows:
        head = f"| {r['server']} | {r['connections']} | {r['size']} | {r['mode']} "
        if "error" in r:
            print(head + f"| {r['error']} | | | | | | | |")
            continue
        base = raw.get((r["connections"], r["size"], r["mode"]))
        cpm = r["cpu_seconds_per_million"]
        r["cpu_ratio_vs_raw"] = cpm / base if cpm and base else None
        lat = r.get("latency_us") or {}
        lat_ms = " / ".join(f"{lat[k] / 1000:.2f}" for k in ("p50", "p99", "p999")) if lat.get("count") else "–"
        print(head + f"| {r['msgs_per_sec']:,.0f} | {fmt(r['server_cpu_util'], '.0%')} | {fmt(cpm, '.2f')} "
              f"| {fmt(r['cpu_ratio_vs_raw'], '.2f')} | {lat_ms} | {fmt(r['loadgen_cpu_util'], '.0%')} "
              f"| {fmt(r['cpu0_busy_util'], '.0%')} | {r['errors']} |")
    noisy = [r for r in rows if (r.get("cpu0_other_util") or 0) > 0.1]
    if noisy:
        print(f"\nNote: in {len(noisy)} scenario(s) CPU {SERVER_CPU} was busy more than 10% beyond the server's own "
              "time (other processes shared it): msgs/s there is understated; CPU per message less so.")
    if mem_rows:
        print(f"\n## Memory per idle connection ({args.idle_connections} connections)\n")
        print("| server | opened | RSS before | RSS after | bytes / conn |")
        print("|---|--:|--:|--:|--:|")
        for m in mem_rows:
            if "error" in m:
                print(f"| {m['server']} | {m['error']} | | | |")
                continue
            print(f"| {m['server']} | {m['opened']} | {m['rss_before'] / 2**20:.1f} MiB | "
                  f"{m['rss_after'] / 2**20:.1f} MiB | {fmt(m['bytes_per_connection'], ',.0f')} |")


def parse_args():
    ap = argparse.ArgumentParser(description="Side-by-side WebSocket echo benchmark (see bench/README.md).")
    ints = lambda s: [int(x) for x in s.split(",") if x]
    ap.add_argument("--servers", help="comma list of: tongdao,raw_echo,beast,websocketpp,node-ws (default: all built)")
    ap.add_argument("--connections", type=ints, help="connection counts (default 100,1000)")
    ap.add_argument("--sizes", type=ints, help="message sizes in bytes (default 20,16384)")
    ap.add_argument("--modes", help="rr,pipe (default both)")
    ap.add_argument("--window", type=int, default=16, help="messages in flight per connection in pipe mode")
    ap.add_argument("--seconds", type=float, help="measured seconds per scenario (default 5)")
    ap.add_argument("--warmup", type=float, help="warmup seconds per scenario (default 1)")
    ap.add_argument("--idle-connections", type=int, help="connections for the memory scenario, 0 = skip (default 10000)")
    ap.add_argument("--source-ips", default=",".join(f"127.0.0.{i}" for i in range(1, 9)),
                    help="loopback source addresses for tongdao bench (spreads ephemeral ports)")
    ap.add_argument("--text", action="store_true", help="send text messages (default binary)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 s, 100 connections, 2000 idle")
    ap.add_argument("--bin-dir", type=Path, default=REPO / "build" / "release" / "bin",
                    help="where tongdao (the CLI: tongdao bench), the peers and tongdao-server are "
                    "(default build/release/bin)")
    ap.add_argument("--connect-timeout", type=float, default=60.0, help="bound for opening all connections")
    ap.add_argument("--json", type=Path, help="write the results as JSON to this file")
    a = ap.parse_args()
    q = a.quick
    a.connections = a.connections or ([100] if q else [100, 1000])
    a.sizes = a.sizes or [20, 16384]
    a.modes = (a.modes or "rr,pipe").split(",")
    a.seconds = a.seconds if a.seconds is not None else (1.0 if q else 5.0)
    a.warmup = a.warmup if a.warmup is not None else (0.5 if q else 1.0)
    a.idle_connections = a.idle_connections if a.idle_connections is not None else (2000 if q else 10000)
    if any(m not in ("rr", "pipe") for m in a.modes):
        ap.error("--modes takes rr and/or pipe")
    a.tongdao = a.bin_dir / "tongdao"
    return a


def main():
    args = parse_args()
    if not args.tongdao.exists():
        sys.exit(f"echo_compare: {args.tongdao} (tongdao bench) not found: run `make build` first (or pass --bin-dir)")
    if os.cpu_count() < 2:
        sys.exit("echo_compare: needs two CPUs (server on CPU 0, tongdao bench on CPU 1)")
    servers = []
    wanted = args.servers.split(",") if args.servers else None
    for s in known_servers(args.bin_dir):
        name = s.name if isinstance(s, Server) else s[0]
        if wanted is not None and name not in wanted:
            continue
        if isinstance(s, Server):
            servers.append(s)
        else:
            print(f"skipping {name}: {s[1]}", file=sys.stderr)
    if not servers:
        sys.exit("echo_compare: no server to measure")

    logdir = tempfile.mkdtemp(prefix="echo_compare.")
    rows, mem_rows = [], []
    scenarios = [(c, s, m) for c in args.connections for s in args.sizes for m in args.modes]
    for server in servers:
        try:
            server.start(logdir)
            for conns, size, mode in scenarios:
                if not server.alive():
                    rows.append({"server": server.name, "connections": conns, "size": size, "mode": mode,
                                 "error": "server died"})
                    continue
                print(f"{server.name}: {conns} conns, {size} B, {mode} ...", file=sys.stderr, flush=True)
                rows.append(run_scenario(args, server, conns, size, mode))
                time.sleep(0.3)  # let the closed connections drain before the next window
            server.stop()
            if args.idle_connections > 0:
                print(f"{server.name}: memory, {args.idle_connections} idle connections ...", file=sys.stderr,
                      flush=True)
                server.start(logdir)
                mem_rows.append(run_memory(args, server))
        except (BenchError, OSError, subprocess.TimeoutExpired) as e:
            # One server failing (died, did not listen, /proc gone) must not stop the others.
            print(f"{server.name}: {e} (log: {logdir}/{server.name}.log)", file=sys.stderr)
            rows.append({"server": server.name, "connections": "-", "size": "-", "mode": "-", "error": str(e)})
        finally:
            server.stop()

    print_tables(args, rows, mem_rows)
    if args.json:
        cfg = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        doc = {"config": cfg, "machine": {"cpus": os.cpu_count(), "kernel": platform.release(),
                                           "clk_tck": CLK_TCK}, "throughput": rows, "memory": mem_rows}
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"\nJSON results: {args.json}", file=sys.stderr)
    print(f"server logs: {logdir}", file=sys.stderr)


def _on_signal(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    # Installed explicitly: a shell starts background jobs with SIGINT ignored, and the children
    # must be stopped whichever way the script is told to quit.
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        main()
    except KeyboardInterrupt:
        print("\necho_compare: interrupted, stopping children", file=sys.stderr)
        sys.exit(130)
    finally:
        stop_all()
