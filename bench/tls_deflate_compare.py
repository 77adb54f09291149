#!/usr/bin/python3
"""wss:// and permessage-deflate: tongdao-server beside Boost.Beast, in the same run.

Three parts, each measuring every server under the same load in one run (servers pinned to
CPU 0, the load generator `tongdao bench` to CPU 1; server CPU time from /proc/PID/stat over its
measured window, as bench/echo_compare.py does):

  tls      wss echo: tongdao-server (--tls-cert/--tls-key, --deflate off) and beast_tls_echo, plus
           the same two over plain ws (tongdao's ws port in the same process, beast_echo) to show
           what TLS costs each. Target: tongdao's wss CPU per message <= 0.7 x Beast's.
  memory   RSS per idle connection at --idle-connections open: tongdao ws, wss, ws + deflate
           shared / dedicated (tongdao bench --deflate, so the extension is agreed), wss + deflate
           shared; Beast ws, wss, ws + deflate. Targets: deflate shared adds <= 1 KiB per idle
           connection over plain ws; an idle TLS connection keeps no TLS record buffers.
  deflate  chat-like JSON (tongdao bench --json-messages): compression ratio (wire bytes /
           payload bytes, counted by the load generator) and CPU per message for tongdao
           --deflate off / shared / dedicated and Beast with permessage-deflate.

The wss:// runs pass `--insecure`: the test certificate is self-signed (the load generator did
not verify it before `tongdao bench` either).

Scenarios run interleaved (every server once per scenario, then the next scenario) and the
whole set --repeat times, rotating the order, so a load change on the shared machine hits all
servers alike; the tables show the median and the spread.

    /usr/bin/python3 bench/tls_deflate_compare.py --bin-dir /tmp/tlsbench/bin [--quick] [--json out.json]

Standard library only. Every process it starts is stopped by its pid (SIGTERM, then SIGKILL),
also on errors and Ctrl-C. See bench/README.md for the commands and the columns.
"""

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, str(Path(__file__).resolve().parent))
import echo_compare as ec  # noqa: E402  (process, /proc and port helpers)

REPO = ec.REPO
SERVER_CPU, LOADGEN_CPU = ec.SERVER_CPU, ec.LOADGEN_CPU
KIB = 1024


class Proc:
    """One server process listening on one or more loopback ports ({ws}, {wss} in its command)."""

    def __init__(self, name, cmd):
        self.name, self.cmd = name, cmd
        self.proc, self.log, self.ports = None, None, {}

    def start(self, logdir):
        for kind in ("ws", "wss"):
            if any(c == "{" + kind + "}" for c in self.cmd):
                self.ports[kind] = ec.free_port()
        cmd = [str(self.ports[c[1:-1]]) if isinstance(c, str) and c in ("{ws}", "{wss}") else c for c in self.cmd]
        self.log = open(Path(logdir) / f"{self.name}.log", "ab")
        self.proc = ec.spawn(cmd, SERVER_CPU, stdout=self.log, stderr=self.log)
        for port in self.ports.values():
            ec.wait_port(port, self.proc)
        time.sleep(0.2)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc:
            ec.stop(self.proc)
            self.proc = None
        if self.log:
            self.log.close()
            self.log = None


def tongdao_cmd(args, deflate, tls=True):
    cmd = [args.bin_dir / "tongdao-server", "--host", "127.0.0.1", "--port", "{ws}", "--threads", "1",
           "--deflate", deflate, "--log-level", "warn",
           # tongdao-server is the chat server too: a way to say hello and a data directory.
           "--anonymous", "--data-dir", tempfile.mkdtemp(prefix="tls_deflate_compare.")]
    if tls:
        cmd += ["--tls-port", "{wss}", "--tls-cert", args.cert, "--tls-key", args.key]
    return cmd


def beast_cmd(args, tls, deflate):
    if tls:
        cmd = [args.bin_dir / "beast_tls_echo", "{wss}", args.cert, args.key]
    else:
        cmd = [args.bin_dir / "beast_echo", "{ws}"]
    return cmd + (["--deflate"] if deflate else [])


def bench_cmd(args, port, kind, extra):
    """`tongdao bench` on the /echo of a `kind` ("ws" or "wss") port, with the stdout lines the
    part runners read (ec.BENCH_REPORT)."""
    return [args.tongdao, "bench", f"{kind}://127.0.0.1:{port}/echo", "--source-ips", args.source_ips] + \
        (["--insecure"] if kind == "wss" else []) + ec.BENCH_REPORT + [str(x) for x in extra]


def run_load(args, proc, kind, extra, row):
    """One `tongdao bench` run against proc's `kind` port; fills row with its figures and the
    server's CPU time over the measured window."""
    p = ec.spawn(bench_cmd(args, proc.ports[kind], kind, extra), LOADGEN_CPU, stdout=subprocess.PIPE,
                 stderr=proc.log)
    cpu0 = cpu1 = result = None
    try:
        reader = ec.LineReader(p.stdout)
        deadline = time.monotonic() + args.connect_timeout + args.warmup + args.seconds + 30
        for _ in range(1000):  # three lines; the bound only guards against a runaway
            line = reader.readline(deadline)
            if line is None:
                break
            if line.startswith("# open "):
                row["deflate_agreed"] = int(line.split()[6]) if len(line.split()) > 6 else 0
            elif line == "# measuring":
                cpu0, core0 = ec.cpu_ticks(proc.proc.pid), ec.cpu_line_ticks(SERVER_CPU)
            elif line.startswith("{"):
                if proc.alive():
                    cpu1, core1 = ec.cpu_ticks(proc.proc.pid), ec.cpu_line_ticks(SERVER_CPU)
                result = json.loads(line)
                break
        p.wait(timeout=30)
    except (ec.BenchError, subprocess.TimeoutExpired) as e:
        row["error"] = str(e)
        return row
    finally:
        ec.stop(p)
    if result is None or cpu0 is None or cpu1 is None:
        row["error"] = "server died" if not proc.alive() else "no measurement (see the server log)"
        return row
    msgs, secs = result["messages"], result["seconds"]
    cpu = (cpu1 - cpu0) / ec.CLK_TCK
    busy = (core1[0] - core0[0]) / ec.CLK_TCK
    row.update(messages=msgs, seconds=secs, msgs_per_sec=result["msgs_per_sec"], errors=result["errors"],
               connections_open=result["connections"], tls=result.get("tls", ""),
               server_cpu_seconds=cpu, server_cpu_util=cpu / secs if secs else None,
               loadgen_cpu_util=result.get("client_cpu_seconds", 0) / secs if secs else None,
               cpu_us_per_msg=cpu / msgs * 1e6 if msgs else None,
               cpu0_busy_util=busy / secs if secs else None,
               cpu0_other_util=max(0.0, busy - cpu) / secs if secs else None)
    for k in ("rx_wire_bytes", "rx_payload_bytes", "tx_wire_bytes", "tx_payload_bytes"):
        row[k] = result.get(k)
    if result.get("rx_payload_bytes"):
        row["ratio_server_to_client"] = result["rx_wire_bytes"] / result["rx_payload_bytes"]
    if result.get("tx_payload_bytes"):
        row["ratio_client_to_server"] = result["tx_wire_bytes"] / result["tx_payload_bytes"]
    if row.get("expect_deflate") and row.get("deflate_agreed") != result["connections"]:
        row["note"] = f"deflate agreed on {row.get('deflate_agreed')} of {result['connections']} connections"
    return row


# --- part runners --------------------------------------------------------------------------

def run_interleaved(args, part, procs, targets, scenarios, logdir):
    """targets: (label, proc key, port kind, tongdao bench extra, expect_deflate). Every server is
    started once; each repeat runs every scenario on every target, rotating the target order."""
    rows = []
    started = {}
    try:
        for key, proc in procs.items():
            proc.start(logdir)
            started[key] = proc
        for rep in range(args.repeat):
            for si, (conns, size, mode) in enumerate(scenarios):
                shift = (rep + si) % len(targets)
                for label, key, kind, extra, expect_deflate in targets[shift:] + targets[:shift]:
                    proc = procs[key]
                    row = {"part": part, "target": label, "connections": conns, "size": size, "mode": mode,
                           "repeat": rep, "expect_deflate": expect_deflate}
                    if not proc.alive():
                        row["error"] = "server died"
                        rows.append(row)
                        continue
                    print(f"{part} #{rep + 1}: {label}: {conns} conns, {size} B, {mode} ...", file=sys.stderr,
                          flush=True)
                    load = ["-c", conns, "-s", size, "-p", args.window if mode == "pipe" else 1,
                            "--duration", args.seconds, "--warmup", args.warmup,
                            "--connect-timeout", args.connect_timeout] + extra
                    rows.append(run_load(args, proc, kind, load, row))
                    time.sleep(0.3)  # let the closed connections drain before the next window
    except (ec.BenchError, OSError, subprocess.TimeoutExpired) as e:
        print(f"{part}: {e} (logs: {logdir})", file=sys.stderr)
        rows.append({"part": part, "target": "-", "error": str(e)})
    finally:
        for proc in started.values():
            proc.stop()
    return rows


def run_memory_row(args, label, proc, kind, extra, expect_deflate, logdir):
    """Fresh server; one warm-up connection with the same client options (TLS, deflate) echoing
    chat messages for a moment; RSS; N idle connections; RSS again one second after."""
    row = {"part": "memory", "target": label, "idle_connections": args.idle_connections,
           "expect_deflate": expect_deflate}
    try:
        proc.start(logdir)
        warm = ec.spawn(bench_cmd(args, proc.ports[kind], kind, ["-c", 1, "--json-messages", "-s", 200,
                                                                  "--duration", 0.3, "--warmup", 0] + extra),
                        LOADGEN_CPU, stderr=proc.log)
        try:
            warm.wait(timeout=30)
        finally:
            ec.stop(warm)
        time.sleep(0.5)
        before = ec.rss_bytes(proc.proc.pid)
        idle = ["--idle", "-c", args.idle_connections, "--connect-timeout", args.connect_timeout,
                "--hold-max", args.connect_timeout + 60] + extra
        p = ec.spawn(bench_cmd(args, proc.ports[kind], kind, idle), LOADGEN_CPU, stdin=subprocess.PIPE,
                     stdout=subprocess.PIPE, stderr=proc.log)
        try:
            line = ec.LineReader(p.stdout).readline(time.monotonic() + args.connect_timeout + 30)
            if not line or not line.startswith("# open "):
                row["error"] = "tongdao bench did not open the connections"
                return row
            f = line.split()
            opened, errors = int(f[2]), int(f[4])
            agreed = int(f[6]) if len(f) > 6 else 0
            time.sleep(1.0)  # let the server finish its per-connection work before sampling
            if not proc.alive():
                row["error"] = "server died"
                return row
            after = ec.rss_bytes(proc.proc.pid)
            p.stdin.close()  # ends the hold
            p.wait(timeout=30)
        finally:
            ec.stop(p)
        row.update(opened=opened, errors=errors, deflate_agreed=agreed, rss_before=before, rss_after=after,
                   bytes_per_connection=(after - before) / opened if opened else None)
        if expect_deflate and agreed != opened:
            row["note"] = f"deflate agreed on {agreed} of {opened} connections"
    except (ec.BenchError, OSError, subprocess.TimeoutExpired) as e:
        row["error"] = str(e)
    finally:
        proc.stop()
    return row


def children_of(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def find_descendant(pid, exe_name, depth=4):
    """The pid of the process running exe_name under pid (heaptrack's script starts it)."""
    for child in children_of(pid):
        try:
            if os.path.basename(os.readlink(f"/proc/{child}/exe")) == exe_name:
                return child
        except OSError:
            pass
        if depth > 0:
            found = find_descendant(child, exe_name, depth - 1)
            if found:
                return found
    return None


def parse_size(text):
    units = {"B": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}
    return float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)


def short_frame(frame):
    """'boost::detail::...::type boost::make_shared<>(args...)' -> 'boost::make_shared<>'."""
    f = frame.strip().replace("(anonymous namespace)::", "")
    return f.split("(")[0].split()[-1] if f.split("(")[0].split() else f


def run_heap_row(args, label, cmd, kind, extra, logdir):
    """The server under heaptrack; one warm-up connection; --heap-connections idle ones; then the
    server is killed (SIGKILL, by its pid) while they are open, so heaptrack's "leaked" list is
    exactly what the open connections hold. Reports the live heap per connection and the
    allocations of a TLS record's size (16 KB or more) that every connection holds."""
    n = args.heap_connections
    row = {"part": "heap", "target": label, "idle_connections": n}
    out = Path(logdir) / f"heap_{label.replace(' ', '_')}"
    proc = Proc("heap_" + label.replace(" ", "_"), [shutil.which("heaptrack"), "-o", out] + cmd)
    p = None
    try:
        proc.start(logdir)
        server_pid = None
        for _ in range(100):  # bounded: 5 s for heaptrack's script to start the server
            server_pid = find_descendant(proc.proc.pid, Path(cmd[0]).name)
            if server_pid:
                break
            time.sleep(0.05)
        if not server_pid:
            row["error"] = "server process not found under heaptrack"
            return row
        warm = ec.spawn(bench_cmd(args, proc.ports[kind], kind, ["-c", 1, "--json-messages", "-s", 200,
                                                                  "--duration", 0.3, "--warmup", 0] + extra),
                        LOADGEN_CPU, stderr=proc.log)
        try:
            warm.wait(timeout=60)
        finally:
            ec.stop(warm)
        idle = ["--idle", "-c", n, "--connect-timeout", args.connect_timeout,
                "--hold-max", args.connect_timeout + 60] + extra
        p = ec.spawn(bench_cmd(args, proc.ports[kind], kind, idle), LOADGEN_CPU, stdin=subprocess.PIPE,
                     stdout=subprocess.PIPE, stderr=proc.log)
        line = ec.LineReader(p.stdout).readline(time.monotonic() + args.connect_timeout + 30)
        if not line or not line.startswith("# open "):
            row["error"] = "tongdao bench did not open the connections"
            return row
        opened = int(line.split()[2])
        time.sleep(1.0)
        os.kill(server_pid, signal.SIGKILL)  # the server we started, by its pid
        proc.proc.wait(timeout=120)  # heaptrack's script writes its file, then exits
    except (ec.BenchError, OSError, subprocess.TimeoutExpired) as e:
        row["error"] = str(e)
        return row
    finally:
        if p:
            ec.stop(p)
        proc.stop()
    files = sorted(Path(logdir).glob(out.name + "*"))
    if not files:
        row["error"] = "no heaptrack file"
        return row
    text = subprocess.run(["heaptrack_print", "-f", files[-1], "--print-leaks", "1", "--print-peaks", "0",
                           "--print-allocators", "0", "--print-temporary", "0"], capture_output=True, text=True,
                          timeout=300).stdout
    total, big, lines = None, [], text.splitlines()
    for i, ln in enumerate(lines):
        f = ln.split()
        if ln.startswith("total memory leaked:"):
            total = parse_size(f[-1])
        # A call stack's line: "17.41M leaked over 1001 calls from:", then its frames.
        if len(f) == 6 and f[1:3] == ["leaked", "over"] and f[5] == "from:":
            size, calls = parse_size(f[0]), int(f[3])
            if abs(calls - opened) <= opened // 20 + 2 and size / calls >= 16000:
                frames = [short_frame(x) for x in lines[i + 1:i + 8] if x.startswith("    ") and not x.startswith("      ")]
                big.append({"bytes_per_call": size / calls, "calls": calls, "site": " < ".join(frames[:2])})
    row.update(opened=opened, heap_bytes_per_connection=total / opened if total and opened else None,
               record_sized_per_connection=len(big), record_sized=big)
    return row


# --- summaries and tables ------------------------------------------------------------------

def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def summarize(rows):
    """Median and spread over the repeats, per (target, connections, size, mode)."""
    groups = {}
    for r in rows:
        if r.get("target") == "-":
            continue
        groups.setdefault((r["target"], r["connections"], r["size"], r["mode"]), []).append(r)
    out = {}
    for key, rs in groups.items():
        ok = [r for r in rs if "error" not in r and r.get("cpu_us_per_msg")]
        s = {"runs": len(rs), "failed": len(rs) - len(ok), "errors": sum(r.get("errors", 0) for r in ok),
             "notes": sorted({r["note"] for r in rs if "note" in r} | {r["error"] for r in rs if "error" in r})}
        if ok:
            cpu = [r["cpu_us_per_msg"] for r in ok]
            med = lambda k: statistics.median([r[k] for r in ok if r.get(k) is not None]) \
                if any(r.get(k) is not None for r in ok) else None
            s.update(cpu_us_median=statistics.median(cpu), cpu_us_min=min(cpu), cpu_us_max=max(cpu),
                     msgs_per_sec_median=med("msgs_per_sec"), server_cpu_util_median=med("server_cpu_util"),
                     loadgen_cpu_util_median=med("loadgen_cpu_util"), cpu0_busy_util_median=med("cpu0_busy_util"),
                     cpu0_other_util_max=max(r.get("cpu0_other_util") or 0 for r in ok),
                     ratio_s2c_median=med("ratio_server_to_client"), ratio_c2s_median=med("ratio_client_to_server"),
                     deflate_agreed=min(r.get("deflate_agreed", 0) for r in ok), tls=ok[0].get("tls", ""))
        out[key] = s
    return out


def cpu_cell(s):
    if s.get("cpu_us_median") is None:
        return "failed"
    return f"{s['cpu_us_median']:.2f} ({s['cpu_us_min']:.2f}–{s['cpu_us_max']:.2f})"


def tls_tables(args, summary, labels):
    out = []
    out.append(f"\n## wss echo ({args.seconds:g} s measured after {args.warmup:g} s warmup, median of {args.repeat}; "
               f"server on CPU {SERVER_CPU}, load generator (tongdao bench) on CPU {LOADGEN_CPU}; "
               f"pipe window {args.window})\n")
    out.append("| conns | size | mode | server | msgs/s | CPU µs/msg (min–max) | vs Beast wss | TLS cost µs/msg "
               "| server CPU | load generator CPU | CPU 0 busy | errors |")
    out.append("|--:|--:|---|---|--:|--:|--:|--:|--:|--:|--:|--:|")
    checks = []
    scen = sorted({k[1:] for k in summary}, key=lambda k: (k[0], k[1], k[2] != "rr"))
    for sc in scen:
        beast_wss = summary.get(("beast wss",) + sc, {}).get("cpu_us_median")
        for label in labels:
            s = summary.get((label,) + sc)
            if s is None:
                continue
            cpm = s.get("cpu_us_median")
            ratio = cpm / beast_wss if cpm and beast_wss and label.endswith("wss") else None
            server = label.split()[0]
            ws = summary.get((f"{server} ws",) + sc, {}).get("cpu_us_median")
            tls_cost = cpm - ws if cpm and ws and label.endswith("wss") else None
            errs = f"{s['errors']}" + (f" ({'; '.join(s['notes'])})" if s["notes"] else "")
            out.append(f"| {sc[0]} | {sc[1]} | {sc[2]} | {label} | {fmt(s.get('msgs_per_sec_median'), ',.0f')} "
                       f"| {cpu_cell(s)} | {fmt(ratio, '.2f')} | {fmt(tls_cost, '+.2f')} "
                       f"| {fmt(s.get('server_cpu_util_median'), '.0%')} | {fmt(s.get('loadgen_cpu_util_median'), '.0%')} "
                       f"| {fmt(s.get('cpu0_busy_util_median'), '.0%')} | {errs} |")
            if label == "tongdao wss" and ratio is not None:
                checks.append((sc, ratio))
    if checks:
        out.append("\nTarget: tongdao wss CPU/msg ≤ 0.70 × Beast wss: " + ", ".join(
            f"{sc[1]} B {sc[2]} {r:.2f} {'met' if r <= 0.70 else 'NOT met'}" for sc, r in checks) + ".")
    tls_names = sorted({s.get("tls") for k, s in summary.items() if s.get("tls")})
    if tls_names:
        out.append(f"TLS agreed: {', '.join(tls_names)}.")
    return out


def memory_table(args, mem_rows):
    out = [f"\n## Memory per idle connection ({args.idle_connections} connections, after one warm-up connection)\n",
           "| server | opened | deflate agreed | RSS before | RSS after | bytes / conn | over the same server's ws |",
           "|---|--:|--:|--:|--:|--:|--:|"]
    per = {m["target"]: m.get("bytes_per_connection") for m in mem_rows if "error" not in m}
    for m in mem_rows:
        if "error" in m:
            out.append(f"| {m['target']} | {m['error']} | | | | | |")
            continue
        base = per.get(m["target"].split()[0] + " ws")
        extra = m["bytes_per_connection"] - base if base is not None and m["target"].split()[1:] != ["ws"] else None
        note = f" ({m['note']})" if "note" in m else ""
        out.append(f"| {m['target']} | {m['opened']}{note} | {m['deflate_agreed']} | {m['rss_before'] / 2**20:.1f} MiB "
                   f"| {m['rss_after'] / 2**20:.1f} MiB | {fmt(m['bytes_per_connection'], ',.0f')} "
                   f"| {fmt(extra, '+,.0f')} |")
    t_ws, t_sh, t_tls = per.get("tongdao ws"), per.get("tongdao ws deflate-shared"), per.get("tongdao wss")
    b_ws, b_tls = per.get("beast ws"), per.get("beast wss")
    if t_ws is not None and t_sh is not None:
        d = t_sh - t_ws
        out.append(f"\nTarget: deflate shared adds ≤ 1 KiB per idle connection over plain ws: {d:+,.0f} B "
                   f"({'met' if d <= KIB else 'NOT met'}).")
    if t_ws is not None and t_tls is not None:
        line = f"TLS per idle connection: tongdao {t_tls - t_ws:+,.0f} B"
        if b_ws is not None and b_tls is not None:
            line += f", Beast {b_tls - b_ws:+,.0f} B"
        out.append(line + ". RSS cannot tell OpenSSL's own state of a connection (about 12 KiB in OpenSSL 3.0) "
                   "from a record buffer (about 17 KiB, possibly untouched): the heap part below names the buffers.")
    return out


def heap_table(args, rows):
    out = [f"\n## Heap held by idle TLS connections (heaptrack, {args.heap_connections} connections)\n",
           "| server | opened | live heap ÷ conns | buffers ≥ 16 KB per conn | where they are allocated |",
           "|---|--:|--:|--:|---|"]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['target']} | {r['error']} | | | |")
            continue
        groups = {}
        for b in r["record_sized"]:
            key = (round(b["bytes_per_call"] / 1024, 1), b["site"])
            groups[key] = groups.get(key, 0) + 1
        sites = "; ".join(f"{k} × {kib} KiB from {site}" for (kib, site), k in groups.items()) or "none"
        out.append(f"| {r['target']} | {r['opened']} | {fmt(r['heap_bytes_per_connection'], ',.0f')} B "
                   f"| {r['record_sized_per_connection']} | {sites} |")
    return out


def deflate_table(args, summary, labels):
    out = [f"\n## permessage-deflate on chat-like JSON ({args.seconds:g} s measured, median of {args.repeat}; "
           f"tongdao bench offers `{'permessage-deflate; client_no_context_takeover; server_no_context_takeover' if args.no_context_takeover else 'permessage-deflate'}`)\n",
           "| conns | size | mode | server | agreed | wire/payload s→c | wire/payload c→s | msgs/s | CPU µs/msg (min–max) "
           "| vs tongdao off | server CPU | load generator CPU | CPU 0 busy | errors |",
           "|--:|--:|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    scen = sorted({k[1:] for k in summary}, key=lambda k: (k[0], k[1], k[2] != "rr"))
    for sc in scen:
        off = summary.get(("tongdao off",) + sc, {}).get("cpu_us_median")
        for label in labels:
            s = summary.get((label,) + sc)
            if s is None:
                continue
            cpm = s.get("cpu_us_median")
            errs = f"{s['errors']}" + (f" ({'; '.join(s['notes'])})" if s["notes"] else "")
            out.append(f"| {sc[0]} | {sc[1]} | {sc[2]} | {label} | {fmt(s.get('deflate_agreed'), 'd')} "
                       f"| {fmt(s.get('ratio_s2c_median'), '.3f')} | {fmt(s.get('ratio_c2s_median'), '.3f')} "
                       f"| {fmt(s.get('msgs_per_sec_median'), ',.0f')} | {cpu_cell(s)} "
                       f"| {fmt(cpm / off if cpm and off else None, '.2f')} "
                       f"| {fmt(s.get('server_cpu_util_median'), '.0%')} | {fmt(s.get('loadgen_cpu_util_median'), '.0%')} "
                       f"| {fmt(s.get('cpu0_busy_util_median'), '.0%')} | {errs} |")
    return out


def load_note(rows):
    noisy = [r for r in rows if (r.get("cpu0_other_util") or 0) > 0.1]
    if not noisy:
        return []
    worst = max(r["cpu0_other_util"] for r in noisy)
    return [f"\nNote: in {len(noisy)} of {len(rows)} runs CPU {SERVER_CPU} was busy more than 10% beyond the "
            f"server's own time (up to {worst:.0%}: other processes shared it). msgs/s there is understated; "
            "CPU per message less so, which is why the tables lead with it."]


# --- main ----------------------------------------------------------------------------------

def parse_args():
    ap = argparse.ArgumentParser(description="wss:// and permessage-deflate beside Boost.Beast (see bench/README.md).")
    ints = lambda s: [int(x) for x in s.split(",") if x]
    ap.add_argument("--parts", default="tls,memory,heap,deflate",
                    help="comma list of tls,memory,heap,deflate (heap needs heaptrack; skipped without it)")
    ap.add_argument("--bin-dir", type=Path, default=REPO / "build" / "release" / "bin",
                    help="where tongdao (the CLI: tongdao bench), beast_echo, beast_tls_echo and tongdao-server are")
    ap.add_argument("--cert-dir", type=Path, help="test certificates (made by scripts/make-test-certs.sh if "
                    "missing; default BIN_DIR/../certs)")
    ap.add_argument("--connections", type=ints, default=[100], help="connection counts (default 100)")
    ap.add_argument("--tls-sizes", type=ints, default=[20, 16384], help="message sizes of the tls part")
    ap.add_argument("--deflate-sizes", type=ints, default=[200, 1024, 16384], help="JSON sizes of the deflate part")
    ap.add_argument("--modes", default="rr,pipe", help="rr,pipe (default both)")
    ap.add_argument("--window", type=int, default=16, help="messages in flight per connection in pipe mode")
    ap.add_argument("--seconds", type=float, help="measured seconds per run (default 3)")
    ap.add_argument("--warmup", type=float, help="warmup seconds per run (default 1)")
    ap.add_argument("--repeat", type=int, help="runs of every scenario (default 3)")
    ap.add_argument("--idle-connections", type=int, help="connections in the memory part (default 10000)")
    ap.add_argument("--heap-connections", type=int, default=1000, help="idle TLS connections in the heap part")
    ap.add_argument("--no-context-takeover", action="store_true",
                    help="deflate part: offer client_no_context_takeover; server_no_context_takeover")
    ap.add_argument("--deflate-over-tls", action="store_true", help="deflate part over wss instead of ws")
    ap.add_argument("--source-ips", default=",".join(f"127.0.0.{i}" for i in range(1, 9)))
    ap.add_argument("--connect-timeout", type=float, default=60.0)
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 s windows, 1 repeat, 2000 idle")
    ap.add_argument("--json", type=Path, help="write every run and the summaries as JSON to this file")
    a = ap.parse_args()
    q = a.quick
    a.seconds = a.seconds if a.seconds is not None else (1.0 if q else 3.0)
    a.warmup = a.warmup if a.warmup is not None else (0.5 if q else 1.0)
    a.repeat = a.repeat if a.repeat is not None else (1 if q else 3)
    a.idle_connections = a.idle_connections if a.idle_connections is not None else (2000 if q else 10000)
    a.modes = a.modes.split(",")
    a.parts = a.parts.split(",")
    if any(m not in ("rr", "pipe") for m in a.modes):
        ap.error("--modes takes rr and/or pipe")
    if any(p not in ("tls", "memory", "heap", "deflate") for p in a.parts):
        ap.error("--parts takes tls, memory, heap and/or deflate")
    a.tongdao = a.bin_dir / "tongdao"
    a.cert_dir = a.cert_dir or a.bin_dir.parent / "certs"
    a.cert, a.key = a.cert_dir / "server.pem", a.cert_dir / "server.key"
    return a


def main():
    args = parse_args()
    need = ["tongdao", "tongdao-server", "beast_echo", "beast_tls_echo"]
    missing = [n for n in need if not (args.bin_dir / n).exists()]
    if missing:
        sys.exit(f"tls_deflate_compare: {', '.join(missing)} not found in {args.bin_dir} "
                 "(run `make build` first, or pass --bin-dir)")
    if os.cpu_count() < 2:
        sys.exit("tls_deflate_compare: needs two CPUs (servers on CPU 0, tongdao bench on CPU 1)")
    if not args.cert.exists() or not args.key.exists():
        subprocess.run(["bash", REPO / "scripts" / "make-test-certs.sh", args.cert_dir], check=True, timeout=60)
    logdir = tempfile.mkdtemp(prefix="tls_deflate_compare.")
    result = {"throughput_tls": [], "memory": [], "heap": [], "deflate": []}
    lines = []

    if "tls" in args.parts:
        procs = {"tongdao": Proc("tongdao", tongdao_cmd(args, "off")),
                 "beast_tls": Proc("beast_tls", beast_cmd(args, True, False)),
                 "beast": Proc("beast", beast_cmd(args, False, False))}
        labels = ["tongdao wss", "beast wss", "tongdao ws", "beast ws"]
        targets = [("tongdao wss", "tongdao", "wss", [], False), ("beast wss", "beast_tls", "wss", [], False),
                   ("tongdao ws", "tongdao", "ws", [], False), ("beast ws", "beast", "ws", [], False)]
        scenarios = [(c, s, m) for c in args.connections for s in args.tls_sizes for m in args.modes]
        rows = run_interleaved(args, "tls", procs, targets, scenarios, logdir)
        summary = summarize(rows)
        result["throughput_tls"] = rows
        result["summary_tls"] = [dict(zip(("target", "connections", "size", "mode"), k), **v) for k, v in summary.items()]
        lines += tls_tables(args, summary, labels) + load_note(rows)

    if "memory" in args.parts and args.idle_connections > 0:
        specs = [("tongdao ws", tongdao_cmd(args, "off"), "ws", [], False),
                 ("tongdao wss", tongdao_cmd(args, "off"), "wss", [], False),
                 ("tongdao ws deflate-shared", tongdao_cmd(args, "shared"), "ws", ["--deflate"], True),
                 ("tongdao ws deflate-dedicated", tongdao_cmd(args, "dedicated"), "ws", ["--deflate"], True),
                 ("tongdao wss deflate-shared", tongdao_cmd(args, "shared"), "wss", ["--deflate"], True),
                 ("beast ws", beast_cmd(args, False, False), "ws", [], False),
                 ("beast wss", beast_cmd(args, True, False), "wss", [], False),
                 ("beast ws deflate", beast_cmd(args, False, True), "ws", ["--deflate"], True)]
        mem = []
        for label, cmd, kind, extra, expect in specs:
            print(f"memory: {label}, {args.idle_connections} idle connections ...", file=sys.stderr, flush=True)
            mem.append(run_memory_row(args, label, Proc(label.replace(" ", "_"), cmd), kind, extra, expect, logdir))
            time.sleep(0.5)
        result["memory"] = mem
        lines += memory_table(args, mem)

    if "heap" in args.parts:
        if not (shutil.which("heaptrack") and shutil.which("heaptrack_print")):
            print("skipping the heap part: heaptrack not installed", file=sys.stderr)
        else:
            heap = []
            for label, cmd in (("tongdao wss", tongdao_cmd(args, "off")), ("beast wss", beast_cmd(args, True, False))):
                print(f"heap: {label}, {args.heap_connections} idle connections under heaptrack ...", file=sys.stderr,
                      flush=True)
                heap.append(run_heap_row(args, label, cmd, "wss", [], logdir))
            result["heap"] = heap
            lines += heap_table(args, heap)

    if "deflate" in args.parts:
        tls = args.deflate_over_tls
        kind = "wss" if tls else "ws"
        offer = ["--deflate", "--json-messages"] + (["--no-context-takeover"] if args.no_context_takeover else [])
        procs = {"off": Proc("tongdao_off", tongdao_cmd(args, "off", tls)),
                 "shared": Proc("tongdao_shared", tongdao_cmd(args, "shared", tls)),
                 "dedicated": Proc("tongdao_dedicated", tongdao_cmd(args, "dedicated", tls)),
                 "beast": Proc("beast_deflate", beast_cmd(args, tls, True))}
        labels = ["tongdao off", "tongdao shared", "tongdao dedicated", "beast deflate"]
        targets = [("tongdao off", "off", kind, offer, False), ("tongdao shared", "shared", kind, offer, True),
                   ("tongdao dedicated", "dedicated", kind, offer, True), ("beast deflate", "beast", kind, offer, True)]
        scenarios = [(c, s, m) for c in args.connections for s in args.deflate_sizes for m in args.modes]
        rows = run_interleaved(args, "deflate", procs, targets, scenarios, logdir)
        summary = summarize(rows)
        result["deflate"] = rows
        result["summary_deflate"] = [dict(zip(("target", "connections", "size", "mode"), k), **v)
                                     for k, v in summary.items()]
        lines += deflate_table(args, summary, labels) + load_note(rows)

    print("\n".join(lines))
    if args.json:
        cfg = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        doc = {"config": cfg, "machine": {"cpus": os.cpu_count(), "kernel": platform.release(),
                                           "clk_tck": ec.CLK_TCK, "loadavg": os.getloadavg()}, **result}
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"\nJSON results: {args.json}", file=sys.stderr)
    print(f"server logs: {logdir}", file=sys.stderr)


if __name__ == "__main__":
    # As in echo_compare.py: a shell starts background jobs with SIGINT ignored, and the children
    # must be stopped whichever way the script is told to quit.
    signal.signal(signal.SIGTERM, ec._on_signal)
    signal.signal(signal.SIGINT, ec._on_signal)
    try:
        main()
    except KeyboardInterrupt:
        print("\ntls_deflate_compare: interrupted, stopping children", file=sys.stderr)
        sys.exit(130)
    finally:
        ec.stop_all()
