#!/usr/bin/python3
"""chat.loss: nothing acked is lost, nothing is stored or delivered twice, through cut
connections and killed servers (docs/PROTOCOL.md §4 send, §5, §6).

    /usr/bin/python3 loss_test.py [PATH/tongdao-server] [--clients 50 --rooms 5 --messages 20000 ...]

50 clients in 5 rooms (10 per room) send 20,000 messages in all, each body {"s": sender,
"c": counter}. Each client keeps an outbox: a send stays in it until its ok reply, and is
resent (same cid, in order) on the next connection. Every connection is cut at random about
every 500 ms (a clean close or a TCP RST); the client then resumes with
hello {v: 1, name, rooms: [{room, since: last seq, epoch}]}. tongdao-server is killed with
SIGKILL and restarted (same port, same data dir) twice during the run; a client that cannot
connect retries with a back-off of 50-500 ms. At the end, once every outbox is empty and every
client has caught up to its room's final seq:

- each client received seqs 1..N of its room exactly once, in order (N: the room's final seq);
- the room's history, paged through, holds every (sender, counter) exactly once, at the seq
  its ack gave, and nothing else; 20,000 messages are stored in all.

Everything is bounded in time (an overall deadline); prints a summary. Exit 0 passed, 1
failed, 77 the websockets module is missing.
"""

import argparse
import asyncio
import collections
import json
import logging
import os
import random
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chat_support as cs  # noqa: E402
from chat_support import ChatClient, ChatServer, ConnectionLost  # noqa: E402

logging.getLogger("websockets").setLevel(logging.CRITICAL)
logging.getLogger("asyncio").setLevel(logging.CRITICAL)

REQUEST_TIMEOUT = 20.0  # a reply not here by then: the connection is treated as dead
HELLO_TIMEOUT = 30.0
STALL_TIMEOUT = 20.0  # final phase: a live connection that delivers nothing for this long
MAX_VIOLATIONS_KEPT = 100


class Item:
    __slots__ = ("cid", "counter", "body", "sends", "retry_at")

    def __init__(self, cid, counter, body):
        self.cid = cid
        self.counter = counter
        self.body = body
        self.sends = 0
        self.retry_at = 0.0


class Session:
    """One connection of a client: what was sent on it and is not answered yet."""

    def __init__(self, conn):
        self.conn = conn
        self.inflight = set()
        self.dead = False  # a reply timed out: reconnect
        self.tasks = set()


class Test:
    def __init__(self, args, servers):
        self.args = args
        self.servers = list(servers)
        self.server = self.servers[0]
        self.total = args.messages
        self.acked = 0
        self.cutting = True
        self.final = None
        self.final_at = None
        self.stats = collections.Counter()
        self.violations = []
        self.violation_count = 0
        self.downtimes = []
        self.t0 = time.monotonic()

    def now(self):
        return time.monotonic() - self.t0

    def url(self):
        """Where a client connects: the server, or a node picked at random when there are several."""
        return self.server.url() if len(self.servers) == 1 else random.choice(self.servers).url()

    def violation(self, text):
        self.violation_count += 1
        if len(self.violations) < MAX_VIOLATIONS_KEPT:
            self.violations.append(f"[{self.now():7.2f}s] {text}")
            print(f"VIOLATION {self.violations[-1]}", flush=True)


class LossClient:
    def __init__(self, test, idx, room, per_client):
        self.t = test
        self.name = f"loss-{idx:02d}"
        self.room = room
        self.per_client = per_client
        self.last = 0
        self.epoch = None
        self.seqs = []      # stored events received in order (accepted: seq == last + 1)
        self.content = []   # their (sender, counter)
        self.outbox = collections.OrderedDict()
        self.acked = {}     # counter -> seq
        self.wake = asyncio.Event()
        self.conn_no = 0
        self.hello_at = 0.0
        self.poisoned = False
        self.done = False
        self.last_progress = time.monotonic()

    # - receiving -

    def on_event(self, msg):
        op = msg.get("op")
        if op in ("message", "edit", "delete"):
            if msg.get("room") != self.room:
                self.t.violation(f"{self.name}: event of a room not joined: {json.dumps(msg)[:200]}")
                return
            if self.poisoned:
                return
            seq = msg.get("seq")
            since = time.monotonic() - self.hello_at
            if seq == self.last + 1:
                self.last = seq
                self.seqs.append(seq)
                body = msg.get("body")
                self.content.append((body.get("s"), body.get("c")) if isinstance(body, dict) else (None, None))
                self.last_progress = time.monotonic()
            elif isinstance(seq, int) and seq <= self.last:
                self.t.stats["duplicate deliveries"] += 1
                self.t.violation(f"{self.name} {self.room}: seq {seq} delivered again (last {self.last}), "
                                 f"connection #{self.conn_no}, {since:.2f}s after hello")
            else:
                self.t.violation(f"{self.name} {self.room}: seq {seq} after {self.last} (a gap), "
                                 f"connection #{self.conn_no}, {since:.2f}s after hello; resuming")
                self.poisoned = True
        elif op == "gap":
            self.t.violation(f"{self.name}: gap event {json.dumps(msg)} (connection #{self.conn_no}, last {self.last})")
            self.poisoned = True
        elif op not in ("presence", "typing", "read"):
            self.t.stats[f"other event {op}"] += 1

    # - sending -

    async def generate(self):
        interval = self.t.args.send_seconds / self.per_client
        await asyncio.sleep(random.uniform(0, interval))
        for c in range(self.per_client):
            while len(self.outbox) >= 200:  # the server is behind: do not pile up more
                await asyncio.sleep(0.05)
            cid = f"{self.name}-{c}"
            self.outbox[cid] = Item(cid, c, {"s": self.name, "c": c})
            self.wake.set()
            await asyncio.sleep(interval * random.uniform(0.5, 1.5))

    async def sender(self, st):
        window = self.t.args.window
        while not st.dead:
            self.wake.clear()
            now = time.monotonic()
            next_retry = None
            for cid, item in list(self.outbox.items()):
                if len(st.inflight) >= window:
                    break
                if cid in st.inflight or cid not in self.outbox:
                    continue
                if item.retry_at > now:
                    next_retry = item.retry_at if next_retry is None else min(next_retry, item.retry_at)
                    continue
                st.inflight.add(cid)
                item.sends += 1
                if item.sends > 1:
                    self.t.stats["resends"] += 1
                try:
                    fut = await st.conn.start("send", room=self.room, cid=cid, body=item.body)
                except ConnectionLost:
                    return
                task = asyncio.create_task(self.await_reply(st, item, fut))
                st.tasks.add(task)
                task.add_done_callback(st.tasks.discard)
            timeout = 0.5 if next_retry is None else max(0.01, next_retry - time.monotonic())
            try:
                await asyncio.wait_for(self.wake.wait(), timeout)
            except asyncio.TimeoutError:
                pass

    async def await_reply(self, st, item, fut):
        try:
            r = await asyncio.wait_for(fut, REQUEST_TIMEOUT)
        except ConnectionLost:
            st.inflight.discard(item.cid)
            return
        except asyncio.TimeoutError:
            self.t.stats["send reply timeouts"] += 1
            st.inflight.discard(item.cid)
            st.dead = True
            return
        st.inflight.discard(item.cid)
        if r.get("ok") is True:
            seq = r.get("seq")
            if r.get("duplicate"):
                self.t.stats["duplicate acks"] += 1
            if "room" in r and r["room"] != self.room:
                self.t.violation(f"{self.name}: ack of {item.cid} names room {r['room']!r}: {json.dumps(r)}")
            if not isinstance(seq, int) or seq < 1:
                self.t.violation(f"{self.name}: ack of {item.cid} without a seq: {json.dumps(r)}")
            prev = self.acked.get(item.counter)
            if prev is None:
                self.acked[item.counter] = seq
                self.t.acked += 1
            elif prev != seq:
                self.t.violation(f"{self.name}: {item.cid} acked with seq {prev}, then with seq {seq}")
            self.outbox.pop(item.cid, None)
        else:
            code = r.get("code")
            self.t.stats[f"send refused: {code}"] += 1
            if code in ("rate_limited", "unavailable"):
                wait = r.get("retryAfterMs")
                item.retry_at = time.monotonic() + (wait if isinstance(wait, (int, float)) and wait > 0 else 100) / 1000
            else:
                self.t.violation(f"{self.name}: send refused: {r}")
                item.retry_at = time.monotonic() + 1.0
        self.wake.set()

    # - connections -

    async def connect(self):
        delay = 0.05
        failing_since = None
        while True:
            try:
                return await ChatClient.connect(self.t.url(), on_event=self.on_event, trace=False,
                                                open_timeout=10)
            except Exception as e:  # noqa: BLE001 - refused while the server restarts, 503, cut handshakes
                self.t.stats["connect failures"] += 1
                self.t.stats[f"connect failure: {type(e).__name__}"] += 1
                now = time.monotonic()
                failing_since = failing_since or now
                if now - failing_since > 60:
                    raise RuntimeError(f"{self.name}: could not connect for 60 s: {e!r}") from None
                await asyncio.sleep(random.uniform(delay, min(0.5, delay * 2)))
                delay = min(0.5, delay * 2)

    async def session(self, conn):
        t = self.t
        self.conn_no += 1
        self.poisoned = False
        spec = {"room": self.room, "since": self.last}
        if self.epoch:
            spec["epoch"] = self.epoch
        try:
            r = await conn.request("hello", timeout=HELLO_TIMEOUT, v=1, name=self.name, rooms=[spec])
        except ConnectionLost:
            t.stats["connections lost during hello"] += 1
            return
        except AssertionError:
            t.stats["hello timeouts"] += 1
            return
        entry = (r.get("rooms") or [None])[0] if r.get("ok") is True else r
        if not isinstance(entry, dict) or entry.get("ok") is not True:
            code = entry.get("code") if isinstance(entry, dict) else None
            t.stats[f"hello refused: {code}"] += 1
            if code != "unavailable":
                t.violation(f"{self.name}: hello {spec} refused: {r}")
            await asyncio.sleep(0.2)
            return
        if self.epoch and entry.get("epoch") != self.epoch:
            t.violation(f"{self.name}: epoch changed from {self.epoch} to {entry.get('epoch')} ({entry})")
        if entry.get("recovered") is not True:
            t.violation(f"{self.name}: resume {spec} not recovered: {entry}")
        if not isinstance(entry.get("seq"), int) or entry["seq"] < spec["since"]:
            t.violation(f"{self.name}: resume {spec}: the room's seq {entry.get('seq')} is below the last seq received")
        self.epoch = entry.get("epoch")
        self.hello_at = time.monotonic()
        st = Session(conn)
        sender = asyncio.create_task(self.sender(st))
        cut = t.args.cut_ms / 1000
        cut_at = time.monotonic() + random.uniform(cut * 0.5, cut * 1.5)
        try:
            while True:
                now = time.monotonic()
                if conn.closed:
                    t.stats[f"closed by the server ({conn.ws.close_code})"] += 1
                    break
                if self.poisoned:
                    t.stats["resumes after a gap"] += 1
                    await conn.cut("clean")
                    break
                if st.dead:
                    await conn.cut("rst")
                    break
                if t.final is not None and self.last >= t.final[self.room] and not self.outbox:
                    self.done = True
                    await conn.close()
                    break
                if t.cutting and now >= cut_at:
                    mode = random.choice(("rst", "clean"))
                    t.stats[f"cuts: {mode}"] += 1
                    await conn.cut(mode)
                    break
                if t.final is not None and now - max(self.last_progress, t.final_at) > STALL_TIMEOUT:
                    t.violation(f"{self.name}: live connection #{self.conn_no} delivered nothing for {STALL_TIMEOUT}s "
                                f"at seq {self.last} of {t.final[self.room]}; resuming")
                    self.last_progress = now
                    await conn.cut("clean")
                    break
                await asyncio.wait([conn.reader], timeout=0.1)
        finally:
            sender.cancel()
            try:
                await sender
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass

    async def run(self):
        gen = asyncio.create_task(self.generate())
        try:
            while not self.done:
                conn = await self.connect()
                try:
                    await self.session(conn)
                except cs.wse.ConnectionClosed:
                    # websockets' close() raises it when the server dies during the close handshake
                    self.t.stats["connections lost during a clean close"] += 1
                finally:
                    if not conn.closed:
                        await conn.cut("rst")
            await gen
        finally:
            gen.cancel()


async def restarter(t):
    n = t.args.restarts
    for k in range(n):
        threshold = t.total * (k + 1) / (n + 1)
        while t.acked < threshold:
            await asyncio.sleep(0.05)
        t.server.kill9()
        t.stats["server restarts (SIGKILL)"] += 1
        down = time.monotonic()
        print(f"[{t.now():7.2f}s] SIGKILL tongdao-server at {t.acked} acked; restarting", flush=True)
        await asyncio.sleep(random.uniform(0.05, 0.3))
        await t.server.astart()
        t.downtimes.append(time.monotonic() - down)
        print(f"[{t.now():7.2f}s] tongdao-server back after {t.downtimes[-1]:.2f}s", flush=True)


async def progress(t, clients):
    while True:
        await asyncio.sleep(10)
        outbox = sum(len(c.outbox) for c in clients)
        cuts = t.stats["cuts: rst"] + t.stats["cuts: clean"]
        print(f"[{t.now():7.2f}s] acked {t.acked}/{t.total}, in outboxes {outbox}, cuts {cuts}, "
              f"connect failures {t.stats['connect failures']}, duplicate acks {t.stats['duplicate acks']}, "
              f"violations {t.violation_count}", flush=True)


async def history_of(conn, room, expect_n):
    events, after = [], 0
    for _ in range(expect_n // 100 + 10):
        r = await conn.request("history", timeout=30, room=room, after=after, limit=100)
        if r.get("ok") is not True:
            raise AssertionError(f"history {room} after {after}: {r}")
        page = r.get("events") or []
        events += page
        if not r.get("more") or not page:
            return events, r
        after = page[-1].get("seq")
    raise AssertionError(f"history of {room}: more pages than {expect_n} events need")


def verify(t, clients, rooms, histories):
    """Failures (strings)."""
    fails = []
    per = t.args.messages // t.args.clients
    stored_total = 0
    for room in rooms:
        events, last_reply = histories[room]
        n = t.final[room]
        members = [c for c in clients if c.room == room]
        got_seqs = [e.get("seq") for e in events]
        stored_total += len(events)
        if got_seqs != list(range(1, n + 1)):
            fails.append(f"{room}: history seqs are not 1..{n}: {len(got_seqs)} events, first {got_seqs[:5]}, "
                         f"breaks at {[i for i in range(1, len(got_seqs)) if got_seqs[i] != got_seqs[i - 1] + 1][:5]}")
        if last_reply.get("oldest") != 1:
            fails.append(f"{room}: oldest {last_reply.get('oldest')}, want 1 (no retention)")
        others = [e for e in events if e.get("op") != "message"]
        if others:
            fails.append(f"{room}: {len(others)} stored events that are not messages: {json.dumps(others[:2])[:300]}")
        pairs = []
        for e in events:
            b = e.get("body")
            pairs.append((b.get("s"), b.get("c")) if isinstance(b, dict) else (None, None))
        counts = collections.Counter(pairs)
        twice = [p for p, k in counts.items() if k > 1]
        want = {(c.name, i) for c in members for i in range(per)}
        missing = want - set(pairs)
        extra = set(pairs) - want
        if twice:
            fails.append(f"{room}: {len(twice)} (sender, counter) stored more than once, e.g. {sorted(twice)[:5]}")
        if missing:
            fails.append(f"{room}: {len(missing)} (sender, counter) never stored, e.g. {sorted(missing)[:5]}")
        if extra:
            fails.append(f"{room}: {len(extra)} stored (sender, counter) nobody sent, e.g. {sorted(extra, key=str)[:5]}")
        for e in events:
            b = e.get("body")
            if isinstance(b, dict) and (e.get("user") != b.get("s") or e.get("cid") != f"{b.get('s')}-{b.get('c')}"):
                fails.append(f"{room}: seq {e.get('seq')} stored as user {e.get('user')!r} cid {e.get('cid')!r} "
                             f"with body {json.dumps(b)}")
                break
        for c in members:
            if c.seqs != list(range(1, n + 1)):
                missing_seqs = sorted(set(range(1, n + 1)) - set(c.seqs))
                fails.append(f"{c.name}: received {len(c.seqs)} of {n} seqs of {room}; missing e.g. {missing_seqs[:5]}")
            elif c.content != pairs:
                bad = [i + 1 for i in range(n) if c.content[i] != pairs[i]]
                fails.append(f"{c.name}: {len(bad)} events differ from the history, e.g. seq {bad[:5]}")
            if len(c.acked) != per:
                fails.append(f"{c.name}: {len(c.acked)} of {per} sends acked")
            wrong = [(k, s) for k, s in c.acked.items() if not (isinstance(s, int) and 1 <= s <= len(pairs)
                                                                 and pairs[s - 1] == (c.name, k))]
            if wrong:
                fails.append(f"{c.name}: {len(wrong)} acks name a seq that holds another message, e.g. "
                             f"(counter, seq) {wrong[:5]}")
    if stored_total != t.args.messages:
        fails.append(f"{stored_total} messages stored, want {t.args.messages}")
    return fails, stored_total


async def main(args, path):
    server = ChatServer(path, "--rate-limit", "1000", "--rate-burst", "1000")
    return await run(args, [server], restarter,
                     lambda: f"tongdao-server on port {server.port}, data dir {server.data_dir}; "
                             f"{args.restarts} restarts")


async def run(args, servers, disrupt, describe, verify_more=None):
    """The run and its verification. `servers`: ChatServer-likes (started here, stopped and
    closed at the end; clients connect to t.url()); `disrupt(t)`: a coroutine that kills and
    restarts things while the messages go, awaited before the final phase; `describe()`: the
    setup's line once the servers run; `verify_more(t, checker, rooms, final, histories)`:
    an optional coroutine giving further failures (strings)."""
    random.seed(args.seed)
    t = Test(args, servers)
    rooms = [f"loss.room-{i}" for i in range(args.rooms)]
    per = args.messages // args.clients
    if per * args.clients != args.messages:
        print("--messages must be a multiple of --clients", file=sys.stderr)
        return 2
    clients = [LossClient(t, i, rooms[i % args.rooms], per) for i in range(args.clients)]
    tasks, restart_task, progress_task = [], None, None

    def outputs():
        for s in servers:
            out = s.output(skip_empty=True)[-3000:] or "(nothing)"
            where = f" (port {s.port})" if len(servers) > 1 else ""
            print(f"--- server output{where} (last 3000 characters) ---\n{out}", flush=True)

    try:
        for s in servers:
            await s.astart()
        print(f"{describe()}; {args.clients} clients in {args.rooms} rooms, {args.messages} messages, "
              f"cuts every ~{args.cut_ms} ms", flush=True)
        t.t0 = time.monotonic()
        tasks = [asyncio.create_task(c.run(), name=c.name) for c in clients]
        restart_task = asyncio.create_task(disrupt(t))
        progress_task = asyncio.create_task(progress(t, clients))

        async def sending_done():
            while t.acked < t.total:
                if restart_task.done():
                    restart_task.result()  # raises if the restart failed
                failed = [x for x in tasks if x.done() and x.exception()]
                if failed:
                    raise failed[0].exception()
                await asyncio.sleep(0.1)
            await restart_task

        deadline = t.t0 + args.deadline
        more = []
        try:
            await asyncio.wait_for(sending_done(), max(1, deadline - time.monotonic()))
            t.stats["all acked at (s)"] = round(t.now(), 2)
            t.cutting = False
            checker, r = await cs.hello_client(t.server, "loss-checker", rooms=[{"room": x} for x in rooms],
                                               timeout=HELLO_TIMEOUT)
            final = {}
            for e in r.get("rooms", []):
                if e.get("ok") is not True:
                    raise AssertionError(f"checker join: {e}")
                final[e["room"]] = e["seq"]
            t.final_at = time.monotonic()
            t.final = final
            print(f"[{t.now():7.2f}s] all {t.total} acked; final seqs {final}; waiting for every client to catch up",
                  flush=True)
            await asyncio.wait_for(asyncio.gather(*tasks), max(1, deadline - time.monotonic()))
            histories = {}
            for room in rooms:
                histories[room] = await asyncio.wait_for(history_of(checker, room, final[room]),
                                                         max(1, deadline - time.monotonic()))
            if verify_more is not None:
                more = await asyncio.wait_for(verify_more(t, checker, rooms, final, histories),
                                              max(1, deadline - time.monotonic()))
            await checker.close()
        except asyncio.TimeoutError:
            not_done = [c for c in clients if not c.done]
            print(f"FAIL deadline ({args.deadline} s) passed: acked {t.acked}/{t.total}, "
                  f"in outboxes {sum(len(c.outbox) for c in clients)}, {len(not_done)} clients not done, e.g. "
                  + ", ".join(f"{c.name} at {c.last}/{(t.final or {}).get(c.room)} outbox {len(c.outbox)}"
                              for c in not_done[:5]), flush=True)
            print_summary(t, None)
            print("0 passed, 1 failed", flush=True)
            return 1
        fails, stored = verify(t, clients, rooms, histories)
        fails += more
        if t.violation_count:
            fails.insert(0, f"{t.violation_count} violations during the run (first: {t.violations[0]})")
        statuses = []
        for s in servers:
            where = f" on port {s.port}" if len(servers) > 1 else ""
            if not s.running():
                fails.append(f"tongdao-server{where} exited (status {s.proc.returncode})")
            statuses.append(s.stop())
            report = s.sanitizer_report()
            if report:
                fails.append(f"sanitizer report in the server output{where}:\n" + report[:3000])
        print_summary(t, stored, statuses[0] if len(servers) == 1 else statuses)
        for f in fails:
            print(f"FAIL {f}", flush=True)
        if not fails:
            print("PASS every acked message stored once and delivered once, in order, to every member", flush=True)
        print(f"{0 if fails else 1} passed, {1 if fails else 0} failed", flush=True)
        if fails:
            outputs()
        return 1 if fails else 0
    except Exception as e:  # noqa: BLE001
        print(f"FAIL {type(e).__name__}: {e}", flush=True)
        print_summary(t, None)
        outputs()
        print("0 passed, 1 failed", flush=True)
        return 1
    finally:
        pending = tasks + [x for x in (restart_task, progress_task) if x is not None]
        for x in pending:
            x.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for s in servers:
            s.close()


def print_summary(t, stored, status=None):
    s = t.stats
    print("--- summary ---", flush=True)
    print(f"messages: {t.args.messages} sent, {t.acked} acked, {stored if stored is not None else '?'} stored", flush=True)
    print(f"cuts: {s['cuts: rst']} RST, {s['cuts: clean']} clean; server restarts: {s['server restarts (SIGKILL)']} "
          f"(down {', '.join(f'{d:.2f}s' for d in t.downtimes) or '-'})", flush=True)
    print(f"duplicate acks: {s['duplicate acks']}; resends: {s['resends']}; connect failures: {s['connect failures']}",
          flush=True)
    print(f"duration: {t.now():.1f}s (all acked at {s.get('all acked at (s)', '?')}s); "
          f"violations: {t.violation_count}; server exit status: {status}", flush=True)
    rest = {k: v for k, v in sorted(s.items()) if k not in ("cuts: rst", "cuts: clean", "duplicate acks", "resends",
                                                            "connect failures", "server restarts (SIGKILL)",
                                                            "all acked at (s)")}
    if rest:
        print("other counts: " + ", ".join(f"{k}: {v}" for k, v in rest.items()), flush=True)


def add_arguments(p):
    """The run's options (their defaults are this test's; another test sets its own)."""
    p.add_argument("server", nargs="?", help="tongdao-server (default: $TONGDAO_SERVER)")
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--rooms", type=int, default=5)
    p.add_argument("--messages", type=int, default=20000)
    p.add_argument("--cut-ms", type=float, default=500)
    p.add_argument("--restarts", type=int, default=2)
    p.add_argument("--send-seconds", type=float, default=60, help="how long generating the messages takes")
    p.add_argument("--window", type=int, default=8, help="sends in flight per connection")
    p.add_argument("--deadline", type=float, default=240)
    p.add_argument("--seed", type=int, default=None)
    return p


def parse(argv):
    return add_arguments(argparse.ArgumentParser(description=__doc__.split("\n")[0])).parse_args(argv)


if __name__ == "__main__":
    args = parse(sys.argv[1:])
    path = cs.server_path([sys.argv[0]] + ([args.server] if args.server else []))
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    print(f"seed {args.seed}", flush=True)
    sys.exit(asyncio.run(main(args, path)))
