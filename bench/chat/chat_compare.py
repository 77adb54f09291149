#!/usr/bin/python3
"""Chat benchmarks: tongdao-server beside a Socket.IO 4.8 server, in the same run.

Every server runs alone, pinned to CPU 0 (in the redis mode every node and redis-server share
it); the load generator, `tongdao bench --chat` (one engine for both protocols), runs pinned
to CPU 1. Server CPU time is utime + stime of the server process (all its threads) from
/proc/PID/stat, read when `tongdao bench --phases` prints "# measuring" and again on its result
line (the redis mode: on "# window end"), so connection set-up, warm-up and drain are not
counted.

Modes (--modes, comma list, in this order; default fanout):

  fanout      R rooms x M members (10 x 100), every member sends --rate (1) message/s spread
              evenly, a ~100 B JSON body carrying its send time; end-to-end latency at every
              receiving member (p50/p90/p99/max), deliveries/s, server CPU per delivery.
              tongdao vs bench/chat/socketio_server.js; ratios tongdao / Socket.IO against the
              targets (CPU per delivery <= 1/5, p99 <= 1/3).
  saturation  stored messages/s with many senders in closed loop (each waits for its ack), with
              --durability full and normal, beside SQLite's own batched insert rate of rows of
              the same shape, in transactions of the server's own mean batch size (from its
              /metrics) and the same synchronous setting (bench/chat/sqlite_batch, C API).
  idle        RSS per idle user joined to one room at --idle-users (10,000), beside an idle
              plain WebSocket on tongdao's /echo (and an idle Socket.IO socket in one room).
  storm       --storm-clients (5,000) clients, each --behind (2,000) messages behind, join
              {room, since} at once: time until all are caught up, and the server's peak RSS.
  redis       several nodes acting as one chat server through Redis: --nodes (3) tongdao-server
              processes on one redis-server (--redis), beside as many bench/chat/socketio_server.js
              processes with @socket.io/redis-adapter on a redis-server of their own. The fan-out
              load of --rooms x --members at each of --redis-rates (0.25) msg/s per member, each
              room's members spread over the nodes round-robin (tongdao bench URL1 URL2 URL3), so
              two thirds of the deliveries cross nodes. Per server kind: cross-node deliveries/s
              and their latency, cross-node deliveries per server CPU second (utime + stime of
              the nodes, summed), Redis CPU per send (redis-server's own utime + stime), Redis
              commands per send by command (INFO commandstats over the window), and whether every
              delivery owed for the window's sends arrived (--drain seconds after it); ratios
              tongdao / Socket.IO (target: cross-node deliveries per server CPU second >= 5x).
              Nodes and redis-server all on CPU 0 (two cores: five processes there, the load on
              CPU 1); redis-server runs with no RDB snapshot and no AOF. With --redis-replicas N,
              tongdao's redis-server has N replicas (on CPU 0 too) and tongdao runs twice: as
              before, and with --redis-wait-replicas N (what waiting for replicas costs; Redis
              CPU is the master's).

    /usr/bin/python3 bench/chat/chat_compare.py [--modes fanout,saturation,idle,storm,redis] [--quick] [--json out.json]

It builds nothing: it expects build/release/bin/{tongdao-server,tongdao,sqlite_batch}
(`make build`, or --bin-dir) and node_modules/socket.io (npm ci); the redis mode also
redis-server (Debian's package) and node_modules/@socket.io/redis-adapter and redis. Standard
library only; every process it starts is stopped by its pid (SIGTERM, then SIGKILL after 3 s),
also on errors and Ctrl-C.
"""

import argparse
import http.client
import json
import os
import platform
import shutil
import select
import signal
import socket
import threading
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import echo_compare as ec  # noqa: E402  (process, /proc and port helpers)

REPO = ec.REPO
SERVER_CPU, LOADGEN_CPU = ec.SERVER_CPU, ec.LOADGEN_CPU
CLK_TCK = ec.CLK_TCK
BenchError = ec.BenchError
SOURCE_IPS = ",".join(f"127.0.0.{i}" for i in range(1, 9))
MAX_CONNS_PER_BENCH = 15000  # a process may hold at most 20,000 descriptors here


# --- servers ---------------------------------------------------------------------------------

class Server:
    """One server process on a free loopback port, pinned to CPU 0, with a fresh data dir."""

    def __init__(self, name, proto, cmd_fn):
        self.name, self.proto, self.cmd_fn = name, proto, cmd_fn
        self.proc, self.port, self.log, self.data_dir = None, None, None, None

    def start(self, logdir):
        self.port = ec.free_port()
        self.data_dir = tempfile.mkdtemp(prefix=f"{self.name}-data.", dir=logdir)
        self.log = open(Path(logdir) / f"{self.name}.log", "ab")
        self.proc = ec.spawn(self.cmd_fn(self.port, self.data_dir), SERVER_CPU, stdout=self.log, stderr=self.log)
        ec.wait_port(self.port, self.proc, timeout=30)
        time.sleep(0.3)  # let a runtime finish starting up (Node compiles lazily)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc:
            ec.stop(self.proc, grace=10)  # tongdao-server finishes its store's queue on SIGTERM
            self.proc = None
        if self.log:
            self.log.close()
            self.log = None
        if self.data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None


def tongdao_server(args, durability="full", extra=()):
    """tongdao-server on one loop; `extra`: more of its options (a --variant), named in the row."""
    exe = args.bin_dir / "tongdao-server"
    name = "tongdao" if durability == "full" else f"tongdao-{durability}"
    if extra:
        name += " " + " ".join(str(a) for a in extra)

    def cmd(port, data_dir):
        return [exe, "--host", "127.0.0.1", "--port", port, "--threads", "1", "--anonymous", "--data-dir", data_dir,
                "--durability", durability, "--rate-limit", "1000", "--rate-burst", "1000", "--log-level", "warn",
                *extra]
    return Server(name, "tongdao", cmd)


def socketio_server(args):
    node = shutil.which("node") or "node"

    def cmd(port, data_dir):
        return [node, REPO / "bench" / "chat" / "socketio_server.js", port]
    return Server("socketio", "socketio", cmd)


def metrics(port):
    """tongdao-server's /metrics as {name: value} (no labels), or {} when there are none."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode(errors="replace")
        conn.close()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name, value = line.rsplit(" ", 1)
        try:
            out[name] = float(value)
        except ValueError:
            pass
    return out


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise BenchError(f"no {field} for pid {pid}")


def reset_peak_rss(pid):
    """Resets VmHWM to the current RSS (proc(5): writing 5 to clear_refs). False if refused."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# --- running tongdao bench --------------------------------------------------------------------

def bench_url(proto, port):
    """tongdao's /chat; Socket.IO with no path (tongdao bench puts /socket.io/?EIO=4&transport=
    websocket); "ws", a plain WebSocket on tongdao's /echo (the echo engine)."""
    return {"tongdao": f"ws://127.0.0.1:{port}/chat", "socketio": f"ws://127.0.0.1:{port}",
            "ws": f"ws://127.0.0.1:{port}/echo"}[proto]


def bench_cmd(args, proto, ports, extra):
    """`tongdao bench` on one URL per port (the members of each room round-robin over them).
    --phases --json --no-progress: the "# open", "# ready", "# measuring", "# window end" lines and
    one JSON line on stdout. `extra` selects the engine: --chat ROOMS for tongdao and socketio."""
    return ([args.bin_dir / "tongdao", "bench"] + [bench_url(proto, p) for p in ports] +
            (["--proto", proto] if proto != "ws" else []) +
            ["--source-ips", SOURCE_IPS, "--phases", "--json", "--no-progress"] + extra)


def run_measured(args, server, extra, timeout, on_ready=None, label=""):
    """Runs tongdao bench to its JSON line; returns (result, server figures over the window)."""
    p = ec.spawn(bench_cmd(args, server.proto, [server.port], extra), LOADGEN_CPU, stdin=subprocess.PIPE,
                 stdout=subprocess.PIPE, stderr=server.log)
    out = {"label": label}
    cpu0 = cpu1 = core0 = core1 = None
    result, m0, m1 = None, {}, {}
    try:
        reader = ec.LineReader(p.stdout)
        deadline = time.monotonic() + timeout
        for _ in range(100):  # a handful of lines; the bound guards against a runaway
            line = reader.readline(deadline)
            if line is None:
                break
            if line.startswith("# open"):
                out["open_line"] = line
            elif line == "# ready" and on_ready:
                on_ready(p)
            elif line == "# measuring":
                cpu0, core0 = ec.cpu_ticks(server.proc.pid), ec.cpu_line_ticks(SERVER_CPU)
                if server.proto == "tongdao":
                    m0 = metrics(server.port)
            elif line.startswith("{"):
                if server.alive():
                    cpu1, core1 = ec.cpu_ticks(server.proc.pid), ec.cpu_line_ticks(SERVER_CPU)
                    out["vm_hwm_kib"] = status_kib(server.proc.pid, "VmHWM")
                    out["vm_rss_kib"] = status_kib(server.proc.pid, "VmRSS")
                    if server.proto == "tongdao":
                        m1 = metrics(server.port)
                result = json.loads(line)
                break
        p.stdin.close()
        p.wait(timeout=30)
    except (BenchError, subprocess.TimeoutExpired) as e:
        out["error"] = str(e)
        return None, out
    finally:
        ec.stop(p)
    if result is None or cpu0 is None or cpu1 is None:
        out["error"] = "server died" if not server.alive() else "no measurement (see the server log)"
        return result, out
    secs = result["seconds"] or 1e-9
    cpu = (cpu1 - cpu0) / CLK_TCK
    busy = (core1[0] - core0[0]) / CLK_TCK
    out.update(server_cpu_seconds=cpu, server_cpu_util=cpu / secs, cpu0_busy_util=busy / secs,
               loadgen_cpu_util=result.get("client_cpu_seconds", 0) / secs)
    for key in ("tongdao_chat_events_stored_total", "tongdao_chat_commit_seconds_count",
                "tongdao_chat_deliveries_total", "tongdao_chat_commit_seconds_sum"):
        if key in m0 and key in m1:
            out[key] = m1[key] - m0[key]
    return result, out


def run_fanout(args, server, rate):
    extra = ["--chat", args.rooms, "--members", args.members, "--rate", rate,
             "-s", args.body_size, "--duration", args.seconds, "--warmup", args.warmup,
             "--name-prefix", f"fo{int(time.time()) % 100000}", "--connect-timeout", args.connect_timeout]
    res, row = run_measured(args, server, extra, args.connect_timeout + args.warmup + args.seconds + 60)
    row.update(server=server.name, rate=rate, rooms=args.rooms, members=args.members)
    if res:
        row["load"] = res
        d = res["deliveries"]
        if "server_cpu_seconds" in row and d:
            row["cpu_us_per_delivery"] = row["server_cpu_seconds"] / d * 1e6
        # Every send in the window is owed to every member of its room.
        row["delivery_ratio"] = d / (res["sends"] * args.members) if res["sends"] else None
    return row


# --- tables ----------------------------------------------------------------------------------

def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def ms(us):
    return None if us is None else us / 1000.0


def fanout_table(args, rows):
    print(f"\n## Fan-out: {args.rooms} rooms x {args.members} members, ~{args.body_size} B bodies "
          f"({args.seconds:g} s measured after {args.warmup:g} s warm-up; server on CPU {SERVER_CPU}, "
          f"load generator (tongdao bench) on CPU {LOADGEN_CPU})\n")
    print("| server | msgs/s/member | sends/s | deliveries/s | delivered | server CPU | CPU µs / delivery "
          "| p50 ms | p90 ms | p99 ms | max ms | ack p99 ms | load generator CPU | CPU 0 busy | errors |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in rows:
        head = f"| {r['server']} | {r['rate']:g} "
        if "error" in r or "load" not in r:
            print(head + f"| {r.get('error', 'no result')} |" + " |" * 13)
            continue
        L = r["load"]
        lat, ack = L["latency_us"], L["ack_latency_us"]
        errs = L["errors"] + L["rejects"]
        print(head + f"| {L['sends_per_sec']:,.0f} | {L['deliveries_per_sec']:,.0f} "
              f"| {fmt(r.get('delivery_ratio'), '.1%')} | {fmt(r.get('server_cpu_util'), '.0%')} "
              f"| {fmt(r.get('cpu_us_per_delivery'), '.2f')} | {ms(lat['p50']):.2f} | {ms(lat['p90']):.2f} "
              f"| {ms(lat['p99']):.2f} | {ms(lat['max']):.2f} | {ms(ack['p99']):.2f} "
              f"| {fmt(r.get('loadgen_cpu_util'), '.0%')} | {fmt(r.get('cpu0_busy_util'), '.0%')} | {errs} |")
    for rate, t in ((r["rate"], r) for r in rows if r["server"].startswith("tongdao") and "load" in r):
        s = next((r for r in rows if r["rate"] == rate and r["server"] == "socketio" and "load" in r), None)
        if not s:
            continue
        cpu_ratio = (t["cpu_us_per_delivery"] / s["cpu_us_per_delivery"]
                     if t.get("cpu_us_per_delivery") and s.get("cpu_us_per_delivery") else None)
        p99_ratio = (t["load"]["latency_us"]["p99"] / s["load"]["latency_us"]["p99"]
                     if s["load"]["latency_us"]["p99"] else None)
        ok = lambda v, lim: "-" if v is None else ("met" if v <= lim else "NOT met")
        print(f"\nAt {rate:g} msg/s per member: {t['server']} ÷ Socket.IO — CPU per delivery {fmt(cpu_ratio, '.3f')} "
              f"(target ≤ 0.200: {ok(cpu_ratio, 0.2)}), p99 latency {fmt(p99_ratio, '.3f')} "
              f"(target ≤ 0.333: {ok(p99_ratio, 1 / 3)}).")
        for r in (t, s):
            if (r.get("loadgen_cpu_util") or 0) > 0.85:
                print(f"Note: tongdao bench used {r['loadgen_cpu_util']:.0%} of its CPU against {r['server']}: "
                      "the load generator may have been the limit.")
            if (r.get("cpu0_busy_util") or 0) > (r.get("server_cpu_util") or 0) + 0.15:
                print(f"Note: /proc/stat shows CPU {SERVER_CPU} busier than {r['server']} alone (other processes, or "
                      "softirq time not charged to the server; see bench/README.md).")
            if r.get("delivery_ratio") is not None and r["delivery_ratio"] < 0.98:
                print(f"Note: {r['server']} delivered {r['delivery_ratio']:.1%} of what was sent in the window: "
                      "it fell behind (latency grows with the backlog).")
        out = {"cpu_per_delivery_ratio": cpu_ratio, "p99_ratio": p99_ratio}
        t["ratios_vs_socketio"] = out


# --- saturation ------------------------------------------------------------------------------

def run_saturation(args, logdir):
    rows = []
    senders = args.sat_rooms * args.sat_members
    extra = ["--chat", args.sat_rooms, "--members", args.sat_members, "-p", args.sat_window,
             "-s", args.body_size, "--duration", args.sat_seconds, "--warmup", args.warmup,
             "--connect-timeout", args.connect_timeout]
    servers = [tongdao_server(args, d) for d in ("full", "normal")]
    if "socketio" in args.servers:
        servers.append(socketio_server(args))
    for server in servers:
        if server.proto == "tongdao" and "tongdao" not in args.servers:
            continue
        print(f"saturation: {server.name}, {senders} senders in closed loop ...", file=sys.stderr, flush=True)
        row = {"server": server.name, "senders": senders, "window": args.sat_window}
        try:
            server.start(logdir)
            res, out = run_measured(args, server, extra + ["--name-prefix", f"sat{len(rows)}"],
                                    args.connect_timeout + args.warmup + args.sat_seconds + 60)
            row.update(out)
            if res:
                row["load"] = res
                if res["acks"] and "server_cpu_seconds" in out:
                    row["cpu_us_per_stored"] = out["server_cpu_seconds"] / res["acks"] * 1e6
                ev, commits = out.get("tongdao_chat_events_stored_total"), out.get("tongdao_chat_commit_seconds_count")
                if ev and commits:
                    row["mean_batch"] = ev / commits
                    row["commits_per_sec"] = commits / res["seconds"]
        except (BenchError, OSError, subprocess.TimeoutExpired) as e:
            row["error"] = str(e)
        finally:
            server.stop()
        rows.append(row)
        if server.proto != "tongdao":
            continue
        # The yardstick: SQLite alone, rows of the same shape, the server's mean batch size.
        sync = "full" if server.name == "tongdao" else "normal"
        batch = max(1, round(row.get("mean_batch") or senders * args.sat_window))
        exe = args.bin_dir / "sqlite_batch"
        yrow = {"server": f"SQLite alone ({sync})", "batch": batch, "yardstick": True}
        if not exe.exists():
            yrow["error"] = f"{exe} not built"
            rows.append(yrow)
            continue
        ddir = tempfile.mkdtemp(prefix="sqlite-yardstick.", dir=logdir)
        try:
            cmd = [exe, "--db", Path(ddir) / "chat.db", "--batch", batch, "--synchronous", sync, "--rooms", args.sat_rooms,
                   "--senders", senders, "--body-size", args.body_size, "--seconds", int(args.sat_seconds),
                   "--rows", 100_000_000]
            p = ec.spawn(cmd, SERVER_CPU, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            try:
                so, se = p.communicate(timeout=args.sat_seconds + 60)
            finally:
                ec.stop(p)
            if p.returncode != 0:
                yrow["error"] = se.decode(errors="replace").strip()[:200]
            else:
                yrow["sqlite"] = json.loads(so.decode().strip().splitlines()[-1])
        except (OSError, subprocess.TimeoutExpired, ValueError) as e:
            yrow["error"] = str(e)
        finally:
            shutil.rmtree(ddir, ignore_errors=True)
        rows.append(yrow)
    return rows


def saturation_table(args, rows):
    senders = args.sat_rooms * args.sat_members
    print(f"\n## Saturation: {senders} senders ({args.sat_rooms} rooms x {args.sat_members}) in closed loop, "
          f"{args.sat_window} send(s) in flight each, ~{args.body_size} B bodies ({args.sat_seconds:g} s measured)\n")
    print("| server | stored msgs/s | vs SQLite alone | deliveries/s | mean batch | commits/s | server CPU "
          "| CPU µs / stored msg | ack p50 ms | ack p99 ms | load generator CPU | errors |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    yard = {}
    for r in rows:
        if r.get("yardstick") and "sqlite" in r:
            yard[r["sqlite"]["synchronous"]] = r["sqlite"]["rows_per_sec"]
    for r in rows:
        if r.get("yardstick"):
            if "error" in r:
                print(f"| {r['server']} | {r['error']} |" + " |" * 10)
                continue
            s = r["sqlite"]
            print(f"| {r['server']}: sqlite_batch, batch {s['batch']} | {s['rows_per_sec']:,.0f} | 1.00 | | {s['batch']} "
                  f"| {s['transactions'] / s['seconds']:,.0f} | | | | | | |")
            continue
        if "error" in r or "load" not in r:
            print(f"| {r['server']} | {r.get('error', 'no result')} |" + " |" * 10)
            continue
        L = r["load"]
        sync = "full" if r["server"] == "tongdao" else "normal" if r["server"] == "tongdao-normal" else None
        vs = L["acks_per_sec"] / yard[sync] if sync in yard and yard[sync] else None
        r["vs_sqlite"] = vs
        name = {"tongdao": "tongdao --durability full", "tongdao-normal": "tongdao --durability normal",
                "socketio": "Socket.IO (memory only, no store)"}.get(r["server"], r["server"])
        print(f"| {name} | {L['acks_per_sec']:,.0f} | {fmt(vs, '.2f')} | {L['deliveries_per_sec']:,.0f} "
              f"| {fmt(r.get('mean_batch'), '.1f')} | {fmt(r.get('commits_per_sec'), ',.0f')} "
              f"| {fmt(r.get('server_cpu_util'), '.0%')} | {fmt(r.get('cpu_us_per_stored'), '.2f')} "
              f"| {ms(L['ack_latency_us']['p50']):.2f} | {ms(L['ack_latency_us']['p99']):.2f} "
              f"| {fmt(r.get('loadgen_cpu_util'), '.0%')} | {L['errors'] + L['rejects']} |")
    print("\nSQLite alone: bench/chat/sqlite_batch (SQLite C API, one prepared INSERT, WAL, the same synchronous "
          "setting, tongdao's schema, one UPDATE of rooms.seq per room per transaction), pinned to CPU 0, in "
          "transactions of the server's mean batch size in the same run (events stored ÷ commits from /metrics).")


# --- idle memory -----------------------------------------------------------------------------

def hold_idle(args, server, users, extra):
    """Opens `users` idle connections with tongdao bench processes (at most 15,000 each), waits one
    second after the last is set up, and returns (opened, errors, RSS after in KiB)."""
    procs, opened, errors = [], 0, 0
    try:
        left, k = users, 0
        while left > 0:
            n = min(left, MAX_CONNS_PER_BENCH)
            hold = ["--idle", "-c", n, "--connect-timeout", args.connect_timeout, "--hold-max", args.connect_timeout + 120]
            if server.proto != "ws":  # a chat user: hello, then join the one room
                hold += ["--chat", 1, "--name-prefix", f"idle{k}", "--room-prefix", "idle"]
            cmd = bench_cmd(args, server.proto, [server.port], hold + extra)
            procs.append(ec.spawn(cmd, LOADGEN_CPU, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=server.log))
            left -= n
            k += 1
        for p in procs:
            line = ec.LineReader(p.stdout).readline(time.monotonic() + args.connect_timeout + 60)
            # "# open N errors E", the echo engine's with " deflate D" after it
            if not line or not line.startswith("# open "):
                raise BenchError("tongdao bench did not open the connections")
            opened += int(line.split()[2])
            errors += int(line.split()[4])
        time.sleep(1.0)  # let the server finish its per-connection work before sampling
        if not server.alive():
            raise BenchError("server died")
        return opened, errors, status_kib(server.proc.pid, "VmRSS")
    finally:
        for p in procs:
            ec.stop(p)


def run_idle(args, logdir):
    rows = []
    cases = []
    if "tongdao" in args.servers:
        cases.append(("tongdao: chat user, hello + join 1 room", lambda: tongdao_server(args), "tongdao", []))
        cases.append(("tongdao: plain WebSocket on /echo", lambda: tongdao_server(args), "ws", []))
    if "socketio" in args.servers:
        cases.append(("Socket.IO: socket joined to 1 room", lambda: socketio_server(args), "socketio", []))
    for label, make, proto, extra in cases:
        print(f"idle: {label}, {args.idle_users} users ...", file=sys.stderr, flush=True)
        server = make()
        row = {"case": label, "users": args.idle_users}
        try:
            server.start(logdir)
            server.proto = proto
            # A short warm-up first (a few connections, a few messages where there are any), so
            # one-time costs (JIT, lazily made pools, the first room) are not charged to the users.
            if proto == "ws":
                # Held for --hold-max: the echo engine's --idle ends when its standard input
                # closes, so it gets a pipe that stays open.
                warm = ["--idle", "-c", 8, "--hold-max", 0.5, "--connect-timeout", args.connect_timeout]
                p = ec.spawn(bench_cmd(args, proto, [server.port], warm), LOADGEN_CPU, stdin=subprocess.PIPE,
                             stderr=server.log)
            else:
                warm = ["--chat", 1, "--members", 8, "--rate", 10, "--duration", 0.5, "--warmup", 0.2,
                        "--name-prefix", "warm", "--connect-timeout", args.connect_timeout]
                p = ec.spawn(bench_cmd(args, proto, [server.port], warm), LOADGEN_CPU, stderr=server.log)
            try:
                p.wait(timeout=60)
            finally:
                ec.stop(p)
            time.sleep(0.5)
            before = status_kib(server.proc.pid, "VmRSS")
            cpu0, m0 = ec.cpu_ticks(server.proc.pid), metrics(server.port) if proto != "socketio" else {}
            opened, errors, after = hold_idle(args, server, args.idle_users, extra)
            cpu1, m1 = ec.cpu_ticks(server.proc.pid), metrics(server.port) if proto != "socketio" else {}
            row.update(opened=opened, errors=errors, rss_before_kib=before, rss_after_kib=after,
                       bytes_per_user=(after - before) * 1024 / opened if opened else None,
                       setup_cpu_seconds=(cpu1 - cpu0) / CLK_TCK)
            key = "tongdao_messages_sent_total"
            if key in m0 and key in m1:
                row["setup_messages_sent"] = m1[key] - m0[key]
        except (BenchError, OSError, subprocess.TimeoutExpired) as e:
            row["error"] = str(e)
        finally:
            server.stop()
        rows.append(row)
    return rows


def idle_table(args, rows):
    print(f"\n## Memory per idle user ({args.idle_users} connections; VmRSS of the server before and one second "
          "after the last one is set up)\n")
    print("| case | set up | errors | RSS before | RSS after | bytes / user | vs plain /echo | server CPU for the set-up "
          "| messages the server sent meanwhile |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|")
    echo = next((r.get("bytes_per_user") for r in rows if "/echo" in r["case"]), None)
    for r in rows:
        if "error" in r:
            print(f"| {r['case']} | {r['error']} | | | | | | | |")
            continue
        bpu = r["bytes_per_user"]
        print(f"| {r['case']} | {r['opened']} | {r['errors']} | {r['rss_before_kib'] / 1024:.1f} MiB "
              f"| {r['rss_after_kib'] / 1024:.1f} MiB | {fmt(bpu, ',.0f')} "
              f"| {fmt(bpu - echo if bpu is not None and echo is not None else None, '+,.0f')} "
              f"| {fmt(r.get('setup_cpu_seconds'), '.2f')} s | {fmt(r.get('setup_messages_sent'), ',.0f')} |")
    print("\nThe last column is tongdao's tongdao_messages_sent_total (/metrics) over the set-up: with every user in "
          "one room, each join's presence event goes to every member already there (about N²/2 in all).")


# --- storm -----------------------------------------------------------------------------------

def run_storm(args, logdir):
    server = tongdao_server(args)
    rooms = args.storm_rooms
    members = args.storm_clients // rooms
    row = {"clients": rooms * members, "rooms": rooms, "behind": args.behind}
    print(f"storm: {rooms * members} clients, {args.behind} messages behind, {rooms} rooms ...", file=sys.stderr,
          flush=True)
    extra = ["--chat", rooms, "--members", members, "--storm", args.behind, "--go-on-stdin",
             "-s", args.body_size, "--storm-timeout", args.storm_timeout, "--name-prefix", "storm",
             "--connect-timeout", args.connect_timeout]
    state = {}

    def on_ready(p):
        time.sleep(1.0)  # connections settled
        state["rss_before_kib"] = status_kib(server.proc.pid, "VmRSS")
        state["hwm_reset"] = reset_peak_rss(server.proc.pid)
        state["hwm_before_kib"] = status_kib(server.proc.pid, "VmHWM")
        p.stdin.write(b"go\n")
        p.stdin.flush()

    try:
        server.start(logdir)
        res, out = run_measured(args, server, extra, args.connect_timeout * 2 + args.storm_timeout + 120,
                                on_ready=on_ready)
        row.update(out)
        row.update(state)
        if res:
            row["load"] = res
    except (BenchError, OSError, subprocess.TimeoutExpired) as e:
        row["error"] = str(e)
    finally:
        server.stop()
    return row


def storm_table(args, r):
    print(f"\n## Reconnect storm: {r['clients']} clients in {r['rooms']} rooms, each {r['behind']} messages behind, "
          "join {room, since} at once\n")
    if "error" in r or "load" not in r:
        print(f"error: {r.get('error', 'no result')}")
        return
    L = r["load"]
    cu = L.get("catch_up_us", {})
    print("| clients caught up | time to all caught up | per client p50 / p99 | deliveries | deliveries/s "
          "| server CPU | load generator CPU | RSS before | peak RSS (VmHWM) | order errors | gaps | errors |")
    print("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    secs = L["storm_seconds"]
    print(f"| {L['caught_up']} of {L['storm_clients']} | {secs:.2f} s | {cu.get('p50', 0) / 1e6:.2f} / "
          f"{cu.get('p99', 0) / 1e6:.2f} s | {L['storm_deliveries']:,} | {L['storm_deliveries'] / secs if secs else 0:,.0f} "
          f"| {fmt(r.get('server_cpu_seconds'), '.2f')} s ({fmt(r.get('server_cpu_util'), '.0%')}) "
          f"| {fmt(r.get('loadgen_cpu_util'), '.0%')} "
          f"| {r.get('rss_before_kib', 0) / 1024:.1f} MiB | {r.get('vm_hwm_kib', 0) / 1024:.1f} MiB "
          f"| {L['order_errors']} | {L['gaps']} | {L['errors']} |")
    print(f"\nFill: {L['fill_messages']:,} messages stored in {L['fill_seconds']:.2f} s before the storm. Peak RSS "
          + ("is over the storm alone (VmHWM reset through /proc/PID/clear_refs just before it)."
             if r.get("hwm_reset") else "includes the fill (VmHWM could not be reset)."))


# --- several nodes through Redis -------------------------------------------------------------

class RedisServer:
    """A redis-server of its own on a free loopback port, pinned to CPU 0: no RDB snapshots and no
    AOF (a forked snapshot would land in some windows and not others), its files in a temp dir."""

    def __init__(self, name, replicas=0):
        self.name = name
        self.proc, self.port, self.log, self.dir = None, None, None, None
        self.replicas = [RedisServer(f"{name}-replica{i}") for i in range(replicas)]

    def start(self, logdir, replicaof=None):
        self.port = ec.free_port()
        self.dir = tempfile.mkdtemp(prefix=f"{self.name}.", dir=logdir)
        self.log = open(Path(logdir) / f"{self.name}.log", "ab")
        exe = shutil.which("redis-server") or "redis-server"
        follow = ["--replicaof", "127.0.0.1", replicaof] if replicaof else []
        self.proc = ec.spawn([exe, "--bind", "127.0.0.1", "--port", self.port, "--save", "", "--appendonly", "no",
                              "--dir", self.dir, "--daemonize", "no", "--protected-mode", "yes", "--logfile", ""] + follow,
                             SERVER_CPU, stdout=self.log, stderr=self.log)
        ec.wait_port(self.port, self.proc, timeout=15)
        for r in self.replicas:
            r.start(logdir, replicaof=self.port)
        # Online, past the first sync (diskless, after repl-diskless-sync-delay): WAIT counts them then.
        deadline = time.monotonic() + 30
        while self.replicas:
            info = self.info("replication")
            if sum("state=online" in str(info.get(f"slave{i}", "")) for i in range(len(self.replicas))) == len(self.replicas):
                break
            if time.monotonic() > deadline:
                raise BenchError(f"{self.name}: its {len(self.replicas)} replicas were not in sync within 30 s")
            time.sleep(0.1)

    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def command(self, *words):
        """One command over RESP; returns the reply (str, int, list or None). Errors raise."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            req = f"*{len(words)}\r\n" + "".join(f"${len(str(w).encode())}\r\n{w}\r\n" for w in words)
            s.sendall(req.encode())
            f = s.makefile("rb")
            return self._reply(f, 0)

    def _reply(self, f, depth):
        line = f.readline().rstrip(b"\r\n")
        kind, rest = line[:1], line[1:].decode(errors="replace")
        if kind == b"+":
            return rest
        if kind == b"-":
            raise BenchError(f"redis: {rest}")
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else f.read(n + 2)[:-2].decode(errors="replace")
        if kind == b"*" and depth < 4:
            n = int(rest)
            return None if n < 0 else [self._reply(f, depth + 1) for _ in range(min(n, 100000))]
        raise BenchError(f"redis: unexpected reply {line[:80]!r}")

    def info(self, section):
        """INFO SECTION as {key: value}, values as numbers where they are one."""
        out = {}
        for line in (self.command("INFO", section) or "").splitlines():
            if ":" in line and not line.startswith("#"):
                k, v = line.split(":", 1)
                try:
                    out[k] = float(v)
                except ValueError:
                    out[k] = v
        return out

    def commandstats(self):
        """{command: (calls, usec)} from INFO commandstats (cmdstat_evalsha:calls=N,usec=U,...);
        a script's usec includes the commands it runs, which have their own lines too."""
        out = {}
        for line in (self.command("INFO", "commandstats") or "").splitlines():
            if line.startswith("cmdstat_") and ":" in line:
                name, fields = line[len("cmdstat_"):].split(":", 1)
                kv = dict(f.split("=", 1) for f in fields.split(",") if "=" in f)
                out[name] = (int(kv.get("calls", 0)), int(kv.get("usec", 0)))
        return out

    def monitor(self, seconds):
        """MONITOR for `seconds` (bounded, and at most 64 MiB read): {(source, command): count},
        source "client" for a command a client sent, "script" for one a Lua script ran."""
        counts, buf, got = {}, b"", 0
        deadline = time.monotonic() + seconds
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(b"MONITOR\r\n")
            while got < 64 << 20:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                ready, _, _ = select.select([s], [], [], left)
                if not ready:
                    continue
                chunk = s.recv(1 << 16)
                if not chunk:
                    break
                got += len(chunk)
                buf += chunk
                *lines, buf = buf.split(b"\r\n")
                for line in lines:
                    # +1796139141.898564 [0 127.0.0.1:42520] "EVALSHA" "..." / [0 lua] "HGET" ...
                    head, _, rest = line.partition(b"] \"")
                    if not rest:
                        continue
                    src = "script" if head.endswith(b" lua") else "client"
                    cmd = rest.split(b"\"", 1)[0].decode(errors="replace").lower()
                    counts[(src, cmd)] = counts.get((src, cmd), 0) + 1
        return counts

    def stop(self):
        for r in self.replicas:
            r.stop()
        if self.proc:
            ec.stop(self.proc, grace=5)
            self.proc = None
        if self.log:
            self.log.close()
            self.log = None
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


def tongdao_redis_node(args, k, redis, wait=0, extra=()):
    exe = args.bin_dir / "tongdao-server"

    def cmd(port, data_dir):
        return [exe, "--host", "127.0.0.1", "--port", port, "--threads", "1", "--anonymous", "--redis", redis.url(),
                "--node-id", f"n{k}", "--rate-limit", "1000", "--rate-burst", "1000", "--log-level", "warn",
                "--redis-wait-replicas", wait, *extra]
    return Server(f"tongdao-n{k}", "tongdao", cmd)


def socketio_redis_node(args, k, redis):
    node = shutil.which("node") or "node"

    def cmd(port, data_dir):
        return [node, REPO / "bench" / "chat" / "socketio_server.js", port, "--redis", redis.url()]
    return Server(f"socketio-n{k}", "socketio", cmd)


def user_sys_ticks(pid):
    """(utime, stime) of a whole process, in clock ticks (fields 14 and 15 of proc(5))."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


def cpu_idle_ticks(cpu):
    """idle + iowait ticks of one CPU from /proc/stat. On this machine the busy fields of a CPU's
    line can add up to more than the time that passed (irq and softirq time counted on top), so
    CPU 0's busy share is taken as 1 - idle / elapsed here."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                v = [int(x) for x in line.split()[1:6]]
                return v[3] + v[4]
    return 0


class Sample:
    """CPU ticks of every node and of redis-server, CPU 0's idle time, and Redis's counters, at one moment."""

    def __init__(self, nodes, redis):
        split = [user_sys_ticks(n.proc.pid) for n in nodes]
        self.nodes = [u + k for u, k in split]
        self.node_user = sum(u for u, _ in split)
        self.redis = ec.cpu_ticks(redis.proc.pid)
        self.idle, self.at = cpu_idle_ticks(SERVER_CPU), time.monotonic()
        self.cmds = redis.commandstats()
        self.mem = redis.info("memory").get("used_memory")


def run_redis_case(args, kind, rate, logdir, extra=()):
    """3 nodes of one kind on one redis-server, tongdao bench over all of them; returns one row.
    `extra`: more options of tongdao-server's own (a --variant), named in the row."""
    if extra:
        kind += " " + " ".join(extra)
    row = {"server": kind, "rate": rate, "nodes": args.nodes, "rooms": args.rooms, "members": args.members}
    tongdao = kind.startswith("tongdao")
    wait = args.redis_replicas if kind == "tongdao-wait" else 0
    redis = RedisServer("redis-" + "-".join(kind.replace("-", " ").split()), args.redis_replicas if tongdao else 0)
    nodes = []
    try:
        redis.start(logdir)
        for k in range(1, args.nodes + 1):
            n = tongdao_redis_node(args, k, redis, wait, extra) if tongdao else socketio_redis_node(args, k, redis)
            nodes.append(n)
            n.start(logdir)
        extra = ["--chat", args.rooms, "--members", args.members, "--rate", rate,
                 "-s", args.body_size, "--duration", args.seconds, "--warmup", args.warmup,
                 "--drain", args.drain, "--name-prefix", f"rd{int(time.time()) % 100000}",
                 "--connect-timeout", args.connect_timeout]
        cmd = bench_cmd(args, nodes[0].proto, [n.port for n in nodes], extra)
        p = ec.spawn(cmd, LOADGEN_CPU, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=nodes[0].log)
        s0 = s1 = res = monitor = None
        mon, mon_secs = {}, 0
        try:
            reader = ec.LineReader(p.stdout)
            deadline = time.monotonic() + args.connect_timeout + args.warmup + args.seconds + args.drain + 60
            for _ in range(100):  # a handful of lines; the bound guards against a runaway
                line = reader.readline(deadline)
                if line is None:
                    break
                if line.startswith("# open"):
                    row["open_line"] = line
                elif line == "# measuring":
                    s0 = Sample(nodes, redis)
                elif line == "# window end" and s0:
                    s1 = Sample(nodes, redis)
                    # Which commands clients send and which scripts run: MONITOR during the drain,
                    # after the window (it costs Redis CPU of its own).
                    mon_secs = min(1.0, args.drain / 2)
                    if mon_secs > 0:
                        def watch():
                            try:
                                mon["counts"] = redis.monitor(mon_secs)
                            except (OSError, BenchError) as e:
                                mon["error"] = str(e)
                        monitor = threading.Thread(target=watch, daemon=True)
                        monitor.start()
                elif line.startswith("{"):
                    if s0 and s1 is None:  # --drain 0: the window ended with this line
                        s1 = Sample(nodes, redis)
                    res = json.loads(line)
                    break
            p.stdin.close()
            p.wait(timeout=30)
        finally:
            ec.stop(p)
            if monitor:
                monitor.join(timeout=mon_secs + 10)
        dead = [n.name for n in nodes if not n.alive()] + ([redis.name] if not redis.alive() else [])
        if dead:
            row["error"] = "died: " + ", ".join(dead) + " (see the logs)"
        if res is None or s0 is None or s1 is None:
            row.setdefault("error", "no measurement (see the server logs)")
            if res:
                row["load"] = res
            return row
        row["load"] = res
        secs = res["seconds"] or 1e-9
        node_cpu = [(b - a) / CLK_TCK for a, b in zip(s0.nodes, s1.nodes)]
        cpu = sum(node_cpu)
        rcpu = (s1.redis - s0.redis) / CLK_TCK
        cmds = {c: s1.cmds[c][0] - s0.cmds.get(c, (0, 0))[0] for c in s1.cmds}
        cmds.pop("info", None)  # the two samples' own INFO calls
        cmds = {c: v for c, v in cmds.items() if v > 0}
        # Time Redis spent executing what clients sent (scripts whole), from commandstats' usec:
        # a script's usec holds those of the commands it runs, so only top-level ones are summed.
        scripted = {"eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro"}
        usec = {c: s1.cmds[c][1] - s0.cmds.get(c, (0, 0))[1] for c in s1.cmds if c != "info"}
        sends = res["sends"] or 0
        cross = res["cross_deliveries"]
        user = (s1.node_user - s0.node_user) / CLK_TCK
        row.update(node_cpu_seconds=node_cpu, server_cpu_seconds=cpu, server_cpu_util=cpu / secs,
                   server_user_seconds=user, server_kernel_seconds=cpu - user,
                   server_us_per_delivery=cpu / res["deliveries"] * 1e6 if res["deliveries"] else None,
                   server_user_us_per_delivery=user / res["deliveries"] * 1e6 if res["deliveries"] else None,
                   redis_cpu_seconds=rcpu, redis_cpu_util=rcpu / secs,
                   cpu0_busy_util=1 - (s1.idle - s0.idle) / CLK_TCK / max(s1.at - s0.at, 1e-9),
                   loadgen_cpu_util=res.get("client_cpu_seconds", 0) / secs, redis_commands=cmds,
                   redis_commands_per_send=sum(cmds.values()) / sends if sends else None,
                   redis_commands_per_send_by_command={c: v / sends for c, v in cmds.items()} if sends else {},
                   redis_cpu_us_per_send=rcpu / sends * 1e6 if sends else None,
                   redis_usec_by_command=usec,
                   redis_memory_growth_per_send=(s1.mem - s0.mem) / sends if sends and s0.mem and s1.mem else None,
                   cross_per_server_cpu_second=cross / cpu if cpu else None,
                   cross_per_cpu_second_with_redis=cross / (cpu + rcpu) if cpu + rcpu else None,
                   window_lost=res["window_owed"] - res["window_delivered"])
        # The top-level commands are those MONITOR saw the nodes send (and any script); without
        # MONITOR (--drain 0) they cannot be told from those scripts ran, and this is left out.
        top = None
        if mon.get("counts"):
            top = {c for (src, c) in mon["counts"] if src == "client"} | (scripted & set(usec))
        if top and sends:
            row["redis_command_us_per_send"] = sum(v for c, v in usec.items() if c in top) / sends
        if mon.get("counts") and res["sends_per_sec"]:
            # Per send at the window's send rate (the load goes on unchanged through the drain).
            n = res["sends_per_sec"] * mon_secs
            row["monitor_seconds"] = mon_secs
            row["monitor_per_send"] = {f"{src}:{c}": v / n for (src, c), v in mon["counts"].items()}
        elif mon.get("error"):
            row["monitor_error"] = mon["error"]
    except (BenchError, OSError, subprocess.TimeoutExpired, ValueError) as e:
        row["error"] = str(e)
    finally:
        for n in nodes:
            n.stop()
        redis.stop()
    return row


def run_redis(args, logdir):
    rows = []
    kinds = [(k, ()) for k in args.servers]
    if "tongdao" in args.servers:
        at = args.servers.index("tongdao") + 1
        kinds[at:at] = [("tongdao-wait", ())] * bool(args.redis_replicas) + [("tongdao", v) for v in args.variants if v]
    for rate in args.redis_rates:
        for kind, extra in kinds:
            print(f"redis: {args.nodes} {kind} {' '.join(extra)} nodes on one redis-server, {args.rooms} x "
                  f"{args.members}, {rate:g} msg/s per member ...", file=sys.stderr, flush=True)
            rows.append(run_redis_case(args, kind, rate, logdir, extra))
    return rows


def redis_table(args, rows):
    print(f"\n## Several nodes through Redis: {args.nodes} nodes of each server on one redis-server of their own, "
          f"{args.rooms} rooms x {args.members} members spread over the nodes round-robin, ~{args.body_size} B bodies "
          f"({args.seconds:g} s measured after {args.warmup:g} s warm-up, then {args.drain:g} s of drain; every node "
          f"and redis-server pinned to CPU {SERVER_CPU}, load generator (tongdao bench) on CPU {LOADGEN_CPU})\n")
    print("| server | msgs/s/member | sends/s | deliveries/s | cross-node deliveries/s | window sends delivered "
          "| cross-node p50 / p99 ms | all p99 ms | server CPU (sum of nodes) | cross-node deliveries / server CPU s "
          "| Redis CPU | Redis CPU µs / send | Redis commands / send | cross-node deliveries / CPU s, Redis included "
          "| load generator CPU | CPU 0 busy | errors |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    name = {"tongdao": "tongdao (Redis engine)", "socketio": "Socket.IO + @socket.io/redis-adapter",
            "tongdao-wait": f"tongdao, --redis-wait-replicas {args.redis_replicas}"}
    if args.redis_replicas:
        name["tongdao"] += f" ({args.redis_replicas} replicas, not waited for)"
    for r in rows:
        head = f"| {name.get(r['server'], r['server'])} | {r['rate']:g} "
        if "load" not in r or "server_cpu_seconds" not in r:
            print(head + f"| {r.get('error', 'no result')} |" + " |" * 15)
            continue
        L = r["load"]
        cl, al = L["cross_latency_us"], L["latency_us"]
        owed = L["window_owed"]
        errs = L["errors"] + L["rejects"]
        print(head + f"| {L['sends_per_sec']:,.0f} | {L['deliveries_per_sec']:,.0f} | {L['cross_deliveries_per_sec']:,.0f} "
              f"| {fmt(L['window_delivered'] / owed if owed else None, '.2%')} "
              f"| {ms(cl['p50']):.2f} / {ms(cl['p99']):.2f} | {ms(al['p99']):.2f} "
              f"| {r['server_cpu_util']:.0%} | {fmt(r['cross_per_server_cpu_second'], ',.0f')} "
              f"| {r['redis_cpu_util']:.0%} | {fmt(r['redis_cpu_us_per_send'], '.1f')} "
              f"| {fmt(r['redis_commands_per_send'], '.2f')} | {fmt(r['cross_per_cpu_second_with_redis'], ',.0f')} "
              f"| {r['loadgen_cpu_util']:.0%} | {r['cpu0_busy_util']:.0%} | {errs} |")
    for r in rows:
        if r.get("redis_commands"):
            per = r["redis_commands_per_send_by_command"]
            parts = ", ".join(f"{c} {v:.2f}" for c, v in sorted(per.items(), key=lambda kv: -kv[1]))
            print(f"\nRedis commands per send, {r['server']} at {r['rate']:g} msg/s per member (INFO commandstats over "
                  f"the window; commands a script runs count too): {parts}.", end="")
            if r.get("redis_command_us_per_send") is not None:
                print(f" Redis spent {r['redis_command_us_per_send']:.1f} µs per send executing the nodes' commands "
                      "(commandstats usec; the rest of its CPU is network I/O and its event loop).", end="")
            if r.get("redis_memory_growth_per_send") is not None:
                print(f" Redis memory grew {r['redis_memory_growth_per_send']:,.0f} B per send.", end="")
            print(f" Per node CPU: {', '.join(f'{c:.2f} s' for c in r['node_cpu_seconds'])}; per delivery (every delivery, "
                  f"the nodes summed) {fmt(r.get('server_us_per_delivery'), '.2f')} µs, of which "
                  f"{fmt(r.get('server_user_us_per_delivery'), '.2f')} µs in user space (utime), the rest the kernel's.")
        if r.get("monitor_per_send"):
            per = r["monitor_per_send"]
            for src, what in (("client", "sent by the nodes"), ("script", "run inside scripts")):
                parts = ", ".join(f"{k.split(':', 1)[1]} {v:.2f}" for k, v in sorted(per.items(), key=lambda kv: -kv[1])
                                  if k.startswith(src + ":"))
                print(f"  {what} (MONITOR for {r['monitor_seconds']:g} s of the drain, per send at the window's rate): "
                      f"{parts or 'none'}.")
        if "error" in r:
            print(f"\nNote: {r['server']} at {r['rate']:g}: {r['error']}")
    for r in rows:
        if "server_cpu_seconds" in r:
            L = r["load"]
            # A few are the sends still in flight when tongdao bench stops.
            if L.get("unacked", 0) > max(5, 0.01 * L["sends"]):
                print(f"\nNote: {r['server']}: {L['unacked']:,} sends (warm-up, window and drain) were never answered: "
                      "no ack, no refusal, by the end of the run.")
            if r["window_lost"] > 0:
                print(f"\nNote: {r['server']}: {r['window_lost']:,} of the {L['window_owed']:,} deliveries owed for the "
                      f"window's sends had not arrived {args.drain:g} s after it (lost, or that late).")
            if L["errors"] or L["rejects"]:
                print(f"\nNote: {r['server']}: {L['errors']} connection errors, {L['rejects']} refused sends "
                      f"{L.get('reject_codes') or ''} (the server log says more).")
            if r["cpu0_busy_util"] > 0.95:
                print(f"\nNote: CPU {SERVER_CPU} was {r['cpu0_busy_util']:.0%} busy with {r['server']}'s nodes, Redis and the "
                      "kernel's loopback work: saturated, the figures are those of an overloaded server.")
            if r["loadgen_cpu_util"] > 0.85:
                print(f"\nNote: tongdao bench used {r['loadgen_cpu_util']:.0%} of CPU {LOADGEN_CPU} against {r['server']}.")
    for t in rows:
        if not t["server"].startswith("tongdao") or t["server"] == "tongdao-wait" or "server_cpu_seconds" not in t:
            continue
        rate = t["rate"]
        s = next((r for r in rows if r["rate"] == rate and r["server"] == "socketio" and "server_cpu_seconds" in r), None)
        if not s:
            continue
        ratio = lambda a, b: a / b if a is not None and b else None
        eff = ratio(t["cross_per_server_cpu_second"], s["cross_per_server_cpu_second"])
        eff_r = ratio(t["cross_per_cpu_second_with_redis"], s["cross_per_cpu_second_with_redis"])
        p99 = ratio(t["load"]["cross_latency_us"]["p99"], s["load"]["cross_latency_us"]["p99"])
        rcpu = ratio(t["redis_cpu_us_per_send"], s["redis_cpu_us_per_send"])
        rcmd = ratio(t["redis_commands_per_send"], s["redis_commands_per_send"])
        thr = ratio(t["load"]["cross_deliveries_per_sec"], s["load"]["cross_deliveries_per_sec"])
        ok = "-" if eff is None else ("met" if eff >= 5 else "NOT met")
        print(f"\nAt {rate:g} msg/s per member: {t['server']} ÷ Socket.IO — cross-node deliveries per server CPU second "
              f"{fmt(eff, '.2f')} (target ≥ 5: {ok}); the same with Redis's CPU added {fmt(eff_r, '.2f')}; cross-node "
              f"deliveries/s {fmt(thr, '.3f')}; cross-node p99 {fmt(p99, '.3f')}; Redis CPU per send {fmt(rcpu, '.2f')}; "
              f"Redis commands per send {fmt(rcmd, '.2f')} (tongdao stores each message in Redis, Socket.IO stores "
              "nothing: its Redis work is the PUBLISH alone).")
        t["ratios_vs_socketio"] = {"cross_per_server_cpu_second": eff, "cross_per_cpu_second_with_redis": eff_r,
                                   "cross_deliveries_per_sec": thr, "cross_p99": p99, "redis_cpu_per_send": rcpu,
                                   "redis_commands_per_send": rcmd}
    for rate in args.redis_rates:
        t = next((r for r in rows if r["rate"] == rate and r["server"] == "tongdao" and "server_cpu_seconds" in r), None)
        w = next((r for r in rows if r["rate"] == rate and r["server"] == "tongdao-wait" and "server_cpu_seconds" in r), None)
        if not t or not w:
            continue
        ratio = lambda a, b: a / b if a is not None and b else None
        cpu = ratio(w["server_us_per_delivery"], t["server_us_per_delivery"])
        rcpu = ratio(w["redis_cpu_us_per_send"], t["redis_cpu_us_per_send"])
        print(f"\nAt {rate:g} msg/s per member, waiting for {args.redis_replicas} replicas ÷ not: nodes' CPU per delivery "
              f"{fmt(cpu, '.2f')}; master's CPU per send {fmt(rcpu, '.2f')}; cross-node p50 / p99 "
              f"{ms(w['load']['cross_latency_us']['p50']):.2f} / {ms(w['load']['cross_latency_us']['p99']):.2f} ms against "
              f"{ms(t['load']['cross_latency_us']['p50']):.2f} / {ms(t['load']['cross_latency_us']['p99']):.2f}; Redis "
              f"commands per send {fmt(w['redis_commands_per_send'], '.2f')} against {fmt(t['redis_commands_per_send'], '.2f')}.")
        w["ratios_vs_not_waiting"] = {"cpu_per_delivery": cpu, "redis_cpu_per_send": rcpu}


# --- main ------------------------------------------------------------------------------------

def parse_args():
    ap = argparse.ArgumentParser(description="Chat benchmarks: tongdao-server beside Socket.IO (see bench/README.md).")
    ap.add_argument("--modes", default="fanout", help="comma list of fanout,saturation,idle,storm,redis (default fanout)")
    ap.add_argument("--servers", default="tongdao,socketio", help="comma list of tongdao,socketio")
    ap.add_argument("--rooms", type=int, default=10, help="fanout: rooms")
    ap.add_argument("--members", type=int, default=100, help="fanout: members per room")
    ap.add_argument("--rates", default="1", help="fanout: messages/s per member, comma list (default 1)")
    ap.add_argument("--variant", action="append", default=[], metavar="OPTIONS",
                    help="fanout, redis: tongdao also runs with these options of its own, a row of their own "
                         "(repeatable), e.g. --variant='--write-delay 50 --commit-delay 5'")
    ap.add_argument("--body-size", type=int, default=100, help="bytes of each message's JSON body")
    ap.add_argument("--seconds", type=float, default=20, help="fanout: measured seconds")
    ap.add_argument("--warmup", type=float, default=5, help="seconds of traffic before the window")
    ap.add_argument("--sat-rooms", type=int, default=100, help="saturation: rooms")
    ap.add_argument("--sat-members", type=int, default=5, help="saturation: senders per room")
    ap.add_argument("--sat-window", type=int, default=1, help="saturation: sends in flight per sender")
    ap.add_argument("--sat-seconds", type=float, default=10, help="saturation: measured seconds")
    ap.add_argument("--idle-users", type=int, default=10000, help="idle: connections")
    ap.add_argument("--storm-clients", type=int, default=5000, help="storm: clients")
    ap.add_argument("--storm-rooms", type=int, default=10, help="storm: rooms the clients are spread over")
    ap.add_argument("--behind", type=int, default=2000, help="storm: messages each client is behind")
    ap.add_argument("--storm-timeout", type=float, default=120, help="storm: bound for the catch-up")
    ap.add_argument("--nodes", type=int, default=3, help="redis: nodes of each server on one redis-server")
    ap.add_argument("--redis-rates", default="0.25", help="redis: messages/s per member, comma list (default 0.25)")
    ap.add_argument("--drain", type=float, default=2, help="redis: seconds after the window to wait for its deliveries")
    ap.add_argument("--redis-replicas", type=int, default=0,
                    help="redis: replicas of tongdao's redis-server, and a second tongdao run waiting for them")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 3 s windows, 2 x 20 fan-out, 1,000 idle, a storm of 500 x 200")
    ap.add_argument("--bin-dir", type=Path, default=REPO / "build" / "release" / "bin")
    ap.add_argument("--connect-timeout", type=float, default=120.0, help="bound for setting up all connections")
    ap.add_argument("--json", type=Path, help="write every figure as JSON to this file")
    a = ap.parse_args()
    a.modes = [m for m in a.modes.split(",") if m]
    a.servers = [s for s in a.servers.split(",") if s]
    a.variants = [()] + [tuple(v.split()) for v in a.variant]
    a.rates = [float(x) for x in a.rates.split(",") if x]
    a.redis_rates = [float(x) for x in a.redis_rates.split(",") if x]
    if any(m not in ("fanout", "saturation", "idle", "storm", "redis") for m in a.modes):
        ap.error("--modes takes fanout, saturation, idle, storm, redis")
    if not 2 <= a.nodes <= 16:
        ap.error("--nodes takes 2 to 16")
    if any(s not in ("tongdao", "socketio") for s in a.servers):
        ap.error("--servers takes tongdao and/or socketio")
    if a.quick:
        a.seconds, a.warmup, a.sat_seconds = 3, 1, 3
        a.rooms, a.members = 2, 20
        a.sat_rooms, a.sat_members = 10, 5
        a.idle_users, a.storm_clients, a.storm_rooms, a.behind = 1000, 500, 5, 200
    return a


def main():
    args = parse_args()
    if os.cpu_count() < 2:
        sys.exit("chat_compare: needs two CPUs (servers on CPU 0, tongdao bench on CPU 1)")
    need = [args.bin_dir / "tongdao"]
    if "tongdao" in args.servers:
        need.append(args.bin_dir / "tongdao-server")
    for exe in need:
        if not exe.exists():
            sys.exit(f"chat_compare: {exe} not found: run `make build` first (or pass --bin-dir)")
    if "socketio" in args.servers and not (REPO / "node_modules" / "socket.io").is_dir():
        sys.exit("chat_compare: node_modules/socket.io missing: run `npm ci` (or scripts/install-deps.sh)")
    if "redis" in args.modes:
        if not shutil.which("redis-server"):
            sys.exit("chat_compare: redis-server not found: scripts/install-deps.sh installs it")
        if "socketio" in args.servers and not (REPO / "node_modules" / "@socket.io" / "redis-adapter").is_dir():
            sys.exit("chat_compare: node_modules/@socket.io/redis-adapter missing: run `npm ci` (or scripts/install-deps.sh)")
    logdir = tempfile.mkdtemp(prefix="chat_compare.")
    doc = {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
           "machine": {"cpus": os.cpu_count(), "kernel": platform.release(), "clk_tck": CLK_TCK}}

    if "fanout" in args.modes:
        rows = []
        for rate in args.rates:
            servers = [tongdao_server(args, extra=v) for v in args.variants if "tongdao" in args.servers]
            if "socketio" in args.servers:
                servers.append(socketio_server(args))
            for server in servers:
                print(f"fanout: {server.name}, {args.rooms} x {args.members}, {rate:g} msg/s per member ...",
                      file=sys.stderr, flush=True)
                try:
                    server.start(logdir)
                    rows.append(run_fanout(args, server, rate))
                except (BenchError, OSError, subprocess.TimeoutExpired) as e:
                    rows.append({"server": server.name, "rate": rate, "error": str(e)})
                finally:
                    server.stop()
        fanout_table(args, rows)
        doc["fanout"] = rows
    if "saturation" in args.modes:
        rows = run_saturation(args, logdir)
        saturation_table(args, rows)
        doc["saturation"] = rows
    if "idle" in args.modes:
        rows = run_idle(args, logdir)
        idle_table(args, rows)
        doc["idle"] = rows
    if "storm" in args.modes:
        if "tongdao" not in args.servers:
            print("storm: tongdao only (Socket.IO keeps no history to catch up from); skipped", file=sys.stderr)
        else:
            row = run_storm(args, logdir)
            storm_table(args, row)
            doc["storm"] = row
    if "redis" in args.modes:
        rows = run_redis(args, logdir)
        redis_table(args, rows)
        doc["redis"] = rows
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"\nJSON results: {args.json}", file=sys.stderr)
    print(f"server logs: {logdir}", file=sys.stderr)


def _on_signal(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        main()
    except KeyboardInterrupt:
        print("\nchat_compare: interrupted, stopping children", file=sys.stderr)
        sys.exit(130)
    finally:
        ec.stop_all()
