#!/usr/bin/python3
"""chat.redis_nodes / chat.redis_cluster_nodes: three tongdao-server nodes on one Redis behave
as one chat server (docs/PROTOCOL.md): one room with members on every node, seqs assigned
once for all of them, history and resume from any node, presence across nodes, the
(user, cid) dedupe of a room across nodes, read events, marks and unread counts; a node's
subscriber connection killed (CLIENT KILL: it fills the gap), a node killed with SIGKILL (its
users' presence ends), Redis stopped (sends fail fast with `unavailable`, the connections stay
open), Redis back (nothing acked lost, sends work on every node) and Redis's data lost
(FLUSHALL: a resume with the old epoch gets a `gap` with reason epoch); and two nodes with
--write-delay (a room's events wait for it on both, the replies do not).

    /usr/bin/python3 redis_nodes_test.py [PATH/tongdao-server] [--cluster] [-k=NAME ...]

Without --cluster the nodes share a standalone redis-server (`--redis redis://...`); with it
a Redis Cluster of three masters (`--redis-cluster`, each node given another subset of the
masters as seeds). Redis runs with appendonly yes, appendfsync always, on a free loopback port
with a directory of its own; the nodes run with --presence-grace 1. Prints PASS/FAIL per
check and ends with "N passed, N failed"; exit 0 all passed, 1 a check failed, 77
redis-server, redis-cli (--cluster) or the websockets module is missing.
"""

import asyncio
import logging
import os
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chat_nodes  # noqa: E402
import chat_support as cs  # noqa: E402
from chat_support import expect, expect_eq, expect_error, expect_ok, hello_client, seqs, stored, uniq  # noqa: E402

logging.getLogger("websockets").setLevel(logging.CRITICAL)
logging.getLogger("asyncio").setLevel(logging.CRITICAL)

GRACE = 1  # --presence-grace
ROOM_IDLE = 2  # --room-idle-seconds: every room of the checks is let go soon after they end
NODE_PRESENCE_TTL = 30  # a killed node's presence entries expire within this
UNAVAILABLE_WITHIN = 2.0  # a send with Redis down is answered within this
BACK_WITHIN = 20.0  # after Redis is back, a send succeeds on every node within this
PATH = None
REDIS = None
NODES = []


async def joined(node, name, room, **join):
    """A client on `node` that said hello and joined `room`; (client, join reply)."""
    c, _ = await hello_client(node, name)
    r = expect_ok(await c.request("join", room=room, **join), f"join {room} on {node}")
    return c, r


async def close_all(*clients):
    for c in clients:
        try:
            await c.close()
        except Exception:  # noqa: BLE001 - best effort
            pass


def trace_index(client, msg):
    return next(i for i, m in enumerate(client.trace) if m is msg)


async def all_of(client, room, n, what, timeout=20.0, before=()):
    """The stored events of `room` client receives until seq n, then 0.5 s more: with those
    it had `before`, exactly seqs 1..n, each once, in order (else AssertionError naming `what`)."""
    got = list(before) + await client.collect(room, n, timeout=timeout)
    await asyncio.sleep(0.5)
    got += client.take(room=room, pred=stored)
    expect_eq(seqs(got), list(range(1, n + 1)), f"{what}: seqs received")
    gaps = client.take(op="gap", room=room)
    expect(not gaps, f"{what}: gap events {gaps}")
    return got


async def presence_event(client, room, user, state, timeout):
    return await client.event(op="presence", room=room, timeout=timeout,
                              pred=lambda m: m.get("user") == user and m.get("state") == state)


# --- checks ----------------------------------------------------------------------------------

async def t_nodes_up():
    room = uniq("r.up")
    details = []
    for node in NODES:
        status, _, _ = node.http("GET", "/health")
        expect_eq(status, 200, f"GET /health of {node}")
        c, _ = await joined(node, uniq("up"), room)
        expect_ok(await c.request("send", room=room, cid="up", body="up"), f"send on {node}")
        await c.close()
        conns = chat_nodes.redis_connections_of(REDIS, node)
        expect(conns, f"{node} has no connection to Redis after a send")
        subs = [c for c in conns if chat_nodes.redis_fixture.is_subscriber(c)]
        details.append(f"{node.node_id}: {len(conns)} connections ({len(subs)} subscriber"
                       f"{', named ' + ' '.join(sorted(c.get('name') or '-' for c in conns)) if any(c.get('name') for c in conns) else ''})")
    return "; ".join(details)


async def t_fanout():
    room = uniq("r.fan")
    k = 6
    members = []
    for i, node in enumerate(NODES):
        c, j = await joined(node, uniq(f"fan{i}"), room)
        members.append((node, c, j))
    expect(len({j.get("epoch") for _, _, j in members}) == 1, f"epochs differ between nodes: {[j for _, _, j in members]}")

    async def sender(i, c):
        acks = []
        for m in range(k):
            acks.append(expect_ok(await c.request("send", room=room, cid=f"f{i}-{m}", body={"n": i, "m": m}),
                                  f"send on node {i}"))
        return acks

    acks = await asyncio.gather(*(sender(i, c) for i, (_, c, _) in enumerate(members)))
    n = 3 * k
    by_seq = {}
    for i, node_acks in enumerate(acks):
        for m, r in enumerate(node_acks):
            expect(r.get("seq") not in by_seq, f"seq {r.get('seq')} acked twice: {by_seq.get(r.get('seq'))} and f{i}-{m}")
            by_seq[r.get("seq")] = (members[i][1], f"f{i}-{m}", r)
    expect_eq(sorted(by_seq), list(range(1, n + 1)), "acked seqs of 18 sends over three nodes")
    for i, (node, c, _) in enumerate(members):
        got = await all_of(c, room, n, f"member on {node}")
        for e in got:
            sender_conn, cid, r = by_seq[e["seq"]]
            expect_eq((e.get("cid"), e.get("ts")), (cid, r.get("ts")), f"seq {e['seq']} on {node} (cid, ts)")
            if sender_conn is c:
                expect(trace_index(c, r) < trace_index(c, e), f"on {node}: own copy of seq {e['seq']} before its reply")
    return f"{n} messages from 3 nodes, seqs 1..{n} on every node"


async def t_history_every_node():
    room = uniq("r.hist")
    w, j = await joined(NODES[0], uniq("hw"), room)
    c1, _ = await joined(NODES[1], uniq("hw1"), room)
    for i in range(12):
        node_c = (w, c1)[i % 2]
        expect_ok(await node_c.request("send", room=room, cid=f"h-{i}", body={"i": i}), "send")
    views = []
    for node in NODES:
        c, _ = await hello_client(node, uniq("hr"))
        h = expect_ok(await c.request("history", room=room, limit=100), f"history on {node}")
        p = expect_ok(await c.request("history", room=room, before=10, limit=3), f"history before 10 on {node}")
        a = expect_ok(await c.request("history", room=room, after=10, limit=100), f"history after 10 on {node}")
        expect_eq((h.get("seq"), h.get("epoch"), h.get("oldest"), h.get("more")), (12, j["epoch"], 1, False),
                  f"history on {node} (seq, epoch, oldest, more)")
        expect_eq(seqs(h.get("events", [])), list(range(1, 13)), f"history seqs on {node}")
        expect_eq((seqs(p.get("events", [])), p.get("more")), ([7, 8, 9], True), f"history before 10 on {node}")
        expect_eq(seqs(a.get("events", [])), [11, 12], f"history after 10 on {node}")
        views.append(h.get("events"))
        await c.close()
    for i in (1, 2):
        expect_eq(views[i], views[0], f"history on {NODES[i]} vs {NODES[0]}")
    await close_all(w, c1)


async def t_resume_other_node():
    room = uniq("r.res")
    w, j = await joined(NODES[0], uniq("rw"), room)
    bname, cname = uniq("rb"), uniq("rc")
    b, _ = await joined(NODES[1], bname, room)
    c, _ = await joined(NODES[1], cname, room)
    for i in range(2):
        expect_ok(await w.request("send", room=room, cid=f"a-{i}", body=i))
    await all_of(b, room, 2, "before the cut")
    await all_of(c, room, 2, "before the cut")
    await b.cut("rst")
    await c.cut("clean")
    for i in range(2, 5):
        expect_ok(await w.request("send", room=room, cid=f"a-{i}", body=i), "send while they are away")
    # b comes back on node 2 with join, c on node 0 with hello rooms; both sent on node 0
    b2, _ = await hello_client(NODES[2], bname)
    r = expect_ok(await b2.request("join", room=room, since=2, epoch=j["epoch"]), f"join since 2 on {NODES[2]}")
    expect_eq((r.get("recovered"), r.get("seq"), r.get("epoch")), (True, 5, j["epoch"]),
              "join since 2 on another node (recovered, seq, epoch)")
    c2, hr = await hello_client(NODES[2], cname, rooms=[{"room": room, "since": 2, "epoch": j["epoch"]}])
    e = hr["rooms"][0]
    expect_eq((e.get("ok"), e.get("recovered"), e.get("seq")), (True, True, 5), "hello rooms since 2 on another node")
    expect_ok(await w.request("send", room=room, cid="a-5", body=5), "a live send after the resume")
    for who, cl in (("join", b2), ("hello rooms", c2)):
        got = await cl.collect(room, 6)
        await asyncio.sleep(0.4)
        got += cl.take(room=room, pred=stored)
        expect_eq(seqs(got), [3, 4, 5, 6], f"resume by {who} on {NODES[2]}: the missed events, then the live one")
        expect(not cl.take(op="gap"), f"resume by {who}: a gap event")
    await close_all(w, b2, c2)


async def presence_room():
    """Three users, one per node, joined to a new room in turn; (room, names, clients)."""
    room = uniq("r.pres")
    names = [uniq(f"pu{i}") for i in range(3)]
    clients = []
    for node, name in zip(NODES, names):
        c, _ = await joined(node, name, room)
        clients.append(c)
    return room, names, clients


async def t_presence_events():
    room = uniq("r.pres")
    names = [uniq(f"pu{i}") for i in range(3)]
    p0, _ = await joined(NODES[0], names[0], room)
    p1, _ = await joined(NODES[1], names[1], room)
    ev = await presence_event(p0, room, names[1], "join", timeout=10)
    expect_eq(ev.get("count"), 2, f"join of {names[1]} (on {NODES[1]}) seen on {NODES[0]}: count")
    p2, _ = await joined(NODES[2], names[2], room)
    for who, c in ((NODES[0], p0), (NODES[1], p1)):
        ev = await presence_event(c, room, names[2], "join", timeout=10)
        expect_eq(ev.get("count"), 3, f"join of {names[2]} (on {NODES[2]}) seen on {who}, with {names[0]} on "
                  f"{NODES[0]} and {names[1]} on {NODES[1]} online: count")
    await asyncio.sleep(0.5)
    extra = {f"{u}@{n.node_id}": [f"{e.get('user')} {e.get('state')} {e.get('count')}" for e in c.take(op="presence")]
             for u, n, c in zip(names, NODES, (p0, p1, p2))}
    await close_all(p0, p1, p2)
    extra = {k: v for k, v in extra.items() if v}
    return f"other presence events: {extra}" if extra else ""


async def t_presence_request():
    room, names, clients = await presence_room()
    start = time.monotonic()
    first = None
    while True:
        views = [expect_ok(await c.request("presence", room=room), f"presence on {node}")
                 for node, c in zip(NODES, clients)]
        got = [(r.get("count"), sorted(u.get("user") for u in r.get("users", []))) for r in views]
        first = first or got
        if all(g == (3, sorted(names)) for g in got):
            break
        expect(time.monotonic() - start < 2.0, f"presence on the three nodes (count, users) 2 s after the joins: {got}, "
               f"want (3, {sorted(names)}) on each")
        await asyncio.sleep(0.1)
    took = time.monotonic() - start
    await close_all(*clients)
    return "" if took < 0.05 else f"complete after {took:.2f}s (first answers {first})"


async def t_presence_leave():
    room, names, (p0, p1, p2) = await presence_room()
    await asyncio.sleep(0.5)
    start = time.monotonic()
    await p1.cut("rst")
    for who, c in ((NODES[0], p0), (NODES[2], p2)):
        ev = await presence_event(c, room, names[1], "leave", timeout=GRACE + 10)
        expect_eq(ev.get("count"), 2, f"leave of {names[1]} (on {NODES[1]}) seen on {who}: count")
    took = time.monotonic() - start
    r = expect_ok(await p2.request("presence", room=room))
    expect_eq(sorted(u.get("user") for u in r.get("users", [])), sorted([names[0], names[2]]),
              f"presence on {NODES[2]} after the leave")
    await close_all(p0, p2)
    return f"leave seen on the other nodes {took:.2f}s after the disconnect (grace {GRACE}s)"


async def t_duplicate_other_node():
    room = uniq("r.dup")
    name = uniq("dup")
    a0, _ = await joined(NODES[0], name, room)
    a1, _ = await joined(NODES[1], name, room)
    oname = uniq("dobs")
    o, _ = await joined(NODES[2], oname, room)
    r1 = expect_ok(await a0.request("send", room=room, cid="d-1", body="first"), f"send on {NODES[0]}")
    r2 = expect_ok(await a1.request("send", room=room, cid="d-1", body="first"), f"same cid on {NODES[1]}")
    expect(r2.get("duplicate") is True and r2.get("seq") == r1["seq"] and r2.get("ts") == r1["ts"],
           f"same (user, cid, room) on another node: want the first reply (seq {r1['seq']}, ts {r1['ts']}) "
           f"with duplicate true: {r2}")
    r3 = expect_ok(await o.request("send", room=room, cid="d-1", body="another user's"), "same cid, another user")
    expect(not r3.get("duplicate") and r3.get("seq") == r1["seq"] + 1, f"another user's cid is its own: {r3}")
    for node, c in ((NODES[0], a0), (NODES[1], a1), (NODES[2], o)):
        await all_of(c, room, 2, f"member on {node}")
    h = expect_ok(await o.request("history", room=room))
    expect_eq([(e.get("seq"), e.get("user"), e.get("cid")) for e in h.get("events", [])],
              [(1, name, "d-1"), (2, oname, "d-1")], "stored events (seq, user, cid)")
    await close_all(a0, a1, o)


async def t_read_events():
    room = uniq("r.rdev")
    rname = uniq("rd")
    s0, _ = await joined(NODES[0], uniq("rs"), room)
    r1, _ = await joined(NODES[1], rname, room)
    o2, _ = await joined(NODES[2], uniq("ro"), room)
    for i in range(3):
        expect_ok(await s0.request("send", room=room, cid=f"m-{i}", body=i))
    await all_of(r1, room, 3, f"reader on {NODES[1]}")
    expect_eq(expect_ok(await r1.request("read", room=room, seq=2), f"read 2 on {NODES[1]}").get("seq"), 2,
              "read reply seq")
    missing = []
    for who, c in ((NODES[1], r1), (NODES[0], s0), (NODES[2], o2)):
        try:
            ev = await c.event(op="read", room=room, timeout=5)
            expect_eq((ev.get("user"), ev.get("seq")), (rname, 2), f"read event on {who}")
        except AssertionError as e:
            if "no read event" not in str(e):
                raise
            missing.append(str(who))
    expect(not missing, f"no read event within 5 s on {', '.join(missing)} after {rname} read 2 on {NODES[1]}")
    await close_all(s0, r1, o2)


async def t_read_unread():
    room = uniq("r.read")
    rname = uniq("rd")
    s, _ = await joined(NODES[0], uniq("rs"), room)
    r0, _ = await joined(NODES[1], rname, room)
    for i in range(5):
        expect_ok(await s.request("send", room=room, cid=f"m-{i}", body=i))
    r = expect_ok(await r0.request("read", room=room, seq=3), f"read 3 on {NODES[1]}")
    expect_eq(r.get("seq"), 3, "read reply seq")
    r2, j = await joined(NODES[2], rname, room)
    expect_eq((j.get("readSeq"), j.get("unread")), (3, 2), f"join on {NODES[2]} after read 3 of 5 (readSeq, unread)")
    expect_ok(await s.request("send", room=room, cid="m-5", body=5))
    c, h = await hello_client(NODES[0], rname)
    rooms = expect_ok(await c.request("rooms"), f"rooms on {NODES[0]}").get("rooms", [])
    entry = next((e for e in rooms if e.get("room") == room), None)
    expect(entry is not None, f"rooms on {NODES[0]} without {room}: {rooms} (hello {h})")
    expect_eq((entry.get("seq"), entry.get("readSeq"), entry.get("unread"), entry.get("joined")), (6, 3, 3, False),
              f"rooms entry on {NODES[0]} (seq, readSeq, unread, joined)")
    r = expect_ok(await r2.request("read", room=room, seq=2), f"read 2 on {NODES[2]}")
    expect_eq(r.get("seq"), 3, "read mark monotonic across nodes")
    await close_all(s, r0, r2, c)


async def t_idle_room_released():
    # A room this node no longer has a member in is let go (--room-idle-seconds): its channel
    # is unsubscribed; a join opens it again, subscribed, with its history.
    room = uniq("r.idle")
    node = NODES[1]
    a, j = await joined(node, uniq("ia"), room)
    for i in range(2):
        expect_ok(await a.request("send", room=room, cid=f"i-{i}", body=i))
    expect_eq(REDIS.room_subscribers(room), 1, f"subscribers of the room's channel while {node} has a member")
    expect_ok(await a.request("leave", room=room), "leave")
    deadline = time.monotonic() + 15
    while REDIS.room_subscribers(room) != 0:
        expect(time.monotonic() < deadline, f"{node} still subscribed 15 s after its last member left "
               f"(--room-idle-seconds {ROOM_IDLE})")
        await asyncio.sleep(0.2)
    b, jb = await joined(node, uniq("ib"), room, since=0)
    expect_eq((jb.get("seq"), jb.get("epoch")), (2, j["epoch"]), "the room opened again: seq and epoch")
    history = await all_of(b, room, 2, f"history on {node} after the room was let go")
    expect_eq(REDIS.room_subscribers(room), 1, "subscribed again")
    w, _ = await joined(NODES[0], uniq("iw"), room)
    expect_ok(await w.request("send", room=room, cid="i-2", body=2), f"send on {NODES[0]}")
    await all_of(b, room, 3, f"a send from {NODES[0]} reaches {node} again", before=history)
    await close_all(a, b, w)


WRITE_DELAY = 1.0  # --write-delay of the two nodes of t_write_delay, in seconds


async def t_write_delay():
    """Two more nodes with --write-delay: a room's events wait for it, on the sender's node and
    on the other, and those of the wait leave together; the replies do not wait (and the
    sender's own copies leave with them)."""
    extra = chat_nodes.make_nodes(PATH, REDIS, 2, "--write-delay", int(WRITE_DELAY * 1000), "--rate-limit", "1000",
                                  "--rate-burst", "1000", prefix="delay")
    try:
        for node in extra:
            await node.astart()
        room = uniq("r.delay")
        # The sender and a member on the first node, a member on the second.
        on = [extra[0], extra[0], extra[1]]
        arrived = {i: [] for i in range(len(on))}
        clients = []
        for i, node in enumerate(on):
            c, _ = await hello_client(node, uniq(f"wd{i}"),
                                      on_event=lambda m, i=i: arrived[i].append((time.monotonic(), m)))
            expect_ok(await c.request("join", room=room), f"join on {node}")
            clients.append(c)
        k = 5
        t0 = time.monotonic()
        for m in range(k):
            expect_ok(await clients[0].request("send", room=room, cid=f"d{m}", body=m), f"send {m}")
        replies = time.monotonic() - t0
        expect(replies < WRITE_DELAY, f"{k} replies took {replies:.2f}s: a reply waited for the write delay")
        deadline = time.monotonic() + 10 + 2 * WRITE_DELAY
        summary = []
        for i in range(len(on)):
            while time.monotonic() < deadline and len([m for _, m in arrived[i] if stored(m)]) < k:
                await asyncio.sleep(0.05)
            got = [(t, m) for t, m in arrived[i] if stored(m)]
            who = "the sender" if i == 0 else f"a member on {on[i]}"
            expect_eq(seqs([m for _, m in got]), list(range(1, k + 1)), f"{who}: seqs")
            if i == 0:
                continue  # its copies left with its replies
            first, last = got[0][0] - t0, got[-1][0] - t0
            # The first event queued started the loop's wait; the others joined it.
            expect(first >= 0.9 * WRITE_DELAY, f"{who}: the first event came after {first:.2f}s")
            expect(last - first < 0.5 * WRITE_DELAY,
                   f"{who}: the events came {first:.2f}..{last:.2f}s after the first send, not together")
            summary.append(f"{on[i].node_id} {first:.2f}-{last:.2f}s")
        await close_all(*clients)
        return f"{k} replies in {replies:.2f}s; events after the delay, together: " + ", ".join(summary)
    finally:
        for node in extra:
            node.close()


async def t_subscriber_killed():
    room = uniq("r.sub")
    target = NODES[2]
    w, j = await joined(NODES[0], uniq("sw"), room)
    m, _ = await joined(target, uniq("sm"), room)
    for i in range(3):
        expect_ok(await w.request("send", room=room, cid=f"s-{i}", body=i))
    before = await m.collect(room, 3)
    subs = chat_nodes.node_subscribers(REDIS, target)
    expect(subs, f"no subscriber connection of {target} in CLIENT LIST: "
           f"{chat_nodes.redis_connections_of(REDIS, target)}")
    for c in subs:
        REDIS.kill_client(c)
    acks = [expect_ok(await w.request("send", room=room, cid=f"s-{i}", body=i), f"send on {NODES[0]}")
            for i in range(3, 6)]
    expect_eq([a.get("seq") for a in acks], [4, 5, 6], "seqs acked after the CLIENT KILL")
    # a client that has everything up to 6 (from node 0) resumes on the node that lost its subscriber
    y, _ = await hello_client(target, uniq("sy"))
    r = expect_ok(await y.request("join", room=room, since=6, epoch=j["epoch"]), f"join since 6 on {target}")
    expect_eq((r.get("recovered"), r.get("epoch"), r.get("seq")), (True, j["epoch"], 6),
              f"join since 6 (all acked on {NODES[0]}) on {target} right after its subscriber connection was "
              f"killed (recovered, epoch, seq); reply {r}")
    await y.no_event(pred=stored, room=room, within=0.5)
    expect(not y.take(op="gap"), "a gap event")
    await all_of(m, room, 6, f"member on {target} through the CLIENT KILL", before=before)
    deadline = time.monotonic() + 10
    while not chat_nodes.node_subscribers(REDIS, target):
        expect(time.monotonic() < deadline, f"{target} has no subscriber connection 10 s after the CLIENT KILL")
        await asyncio.sleep(0.1)
    await close_all(w, m, y)


async def t_node_killed():
    room = uniq("r.kill")
    kname = uniq("kk")
    victim = NODES[2]
    w0, _ = await joined(NODES[0], uniq("kw0"), room)
    w1, _ = await joined(NODES[1], uniq("kw1"), room)
    k, _ = await joined(victim, kname, room)
    for c in (w0, w1):
        await presence_event(c, room, kname, "join", timeout=10)
    victim.kill9()
    killed = time.monotonic()
    r = expect_ok(await w0.request("send", room=room, cid="after-kill-0", body=0), f"send on {NODES[0]} after the kill")
    r1 = expect_ok(await w1.request("send", room=room, cid="after-kill-1", body=1), f"send on {NODES[1]} after the kill")
    expect_eq((r.get("seq"), r1.get("seq")), (1, 2), "seqs after the kill")
    seen = {}
    for who, c in ((NODES[0], w0), (NODES[1], w1)):
        seen[c] = await all_of(c, room, 2, f"member on {who} after {victim} was killed")
    limit = NODE_PRESENCE_TTL + GRACE + 3
    tooks = []
    for who, c in ((NODES[0], w0), (NODES[1], w1)):
        ev = await presence_event(c, room, kname, "leave", timeout=max(0.5, killed + limit - time.monotonic()))
        tooks.append(time.monotonic() - killed)
        expect_eq(ev.get("count"), 2, f"leave of {kname} (on the killed node) seen on {who}: count")
    r = expect_ok(await w0.request("presence", room=room))
    expect_eq(r.get("count"), 2, "presence count once the killed node's user left")
    await victim.astart()
    k2, _ = await joined(victim, kname, room)
    expect_ok(await k2.request("send", room=room, cid="back", body="back"), f"send on the restarted {victim}")
    await all_of(w0, room, 3, f"member on {NODES[0]} after {victim} came back", before=seen[w0])
    await close_all(w0, w1, k2)
    return f"leave seen {max(tooks):.1f}s after the SIGKILL (limit {NODE_PRESENCE_TTL}s + grace {GRACE}s)"


class Outage:
    """State shared by the Redis-down and Redis-back checks."""
    room = None
    clients = []
    epoch = None
    acked = []  # (seq, cid) acked before Redis went down
    seen = []  # per client, the events it received before
    refused = []  # (client, cid) answered unavailable while it was down


async def t_redis_down():
    room = uniq("r.down")
    Outage.room = room
    Outage.clients, Outage.acked, Outage.refused, Outage.seen = [], [], [], []
    for i, node in enumerate(NODES):
        c, j = await joined(node, uniq(f"dn{i}"), room)
        Outage.clients.append(c)
        Outage.epoch = j["epoch"]
    for i, c in enumerate(Outage.clients):
        for m in range(2):
            r = expect_ok(await c.request("send", room=room, cid=f"pre-{i}-{m}", body=[i, m]), "send before the outage")
            Outage.acked.append((r["seq"], f"pre-{i}-{m}"))
    for c in Outage.clients:
        Outage.seen.append(await c.collect(room, 6))
    REDIS.kill9()
    times = []
    for attempt in range(2):
        for i, (node, c) in enumerate(zip(NODES, Outage.clients)):
            cid = f"down-{i}-{attempt}"
            t0 = time.monotonic()
            r = await c.request("send", room=room, cid=cid, body="during the outage", timeout=UNAVAILABLE_WITHIN + 10)
            took = time.monotonic() - t0
            times.append(took)
            expect_error(r, "unavailable", f"send on {node} with Redis down")
            expect(took < UNAVAILABLE_WITHIN, f"send on {node} with Redis down answered after {took:.2f}s "
                   f"(want < {UNAVAILABLE_WITHIN}s): {r}")
            Outage.refused.append((c, cid))
            expect_ok(await c.request("ping"), f"ping on {node} with Redis down")
            expect(not c.closed, f"connection to {node} closed with Redis down")
        await asyncio.sleep(1.0)
    for node in NODES:
        expect(node.running(), f"{node} exited with Redis down (status {node.proc.returncode})")
    return f"unavailable in {max(times) * 1000:.0f} ms at most"


async def t_redis_back():
    expect(Outage.room is not None and Outage.clients, "needs the Redis-down check first")
    room = Outage.room
    if not REDIS.running():
        await REDIS.astart()
    back = time.monotonic()
    firsts = []
    acked = list(Outage.acked)
    for c, cid in Outage.refused:
        deadline = back + BACK_WITHIN
        while True:
            r = await c.request("send", room=room, cid=cid, body="during the outage", timeout=BACK_WITHIN)
            if r.get("ok") is True:
                break
            expect_error(r, "unavailable", "send after Redis came back")
            expect(time.monotonic() < deadline, f"sends still {r.get('code')} {BACK_WITHIN}s after Redis came back: {r}")
            await asyncio.sleep(0.2)
        firsts.append(time.monotonic() - back)
        acked.append((r["seq"], cid))
    n = len(acked)
    expect_eq(sorted(s for s, _ in acked), list(range(1, n + 1)), "acked seqs before and after the outage")
    for node, c, seen in zip(NODES, Outage.clients, Outage.seen):
        expect(not c.closed, f"connection to {node} closed during the outage")
        await all_of(c, room, n, f"member on {node} that stayed connected through the outage", before=seen)
    want = [cid for _, cid in sorted(acked)]
    for node in NODES:
        c, j = await joined(node, uniq("bk"), room)
        expect_eq((j.get("epoch"), j.get("seq")), (Outage.epoch, n), f"join on {node} after the outage (epoch, seq)")
        h = expect_ok(await c.request("history", room=room, limit=100), f"history on {node} after the outage")
        expect_eq([e.get("cid") for e in h.get("events", [])], want, f"history on {node}: every acked send, once")
        await c.close()
    await close_all(*Outage.clients)
    return f"sends ok again {max(firsts):.2f}s after Redis came back; {n} messages, none lost"


async def send_until_acked(node, name, room, cid, body, within=15.0):
    """A send as a client with an outbox makes it: on `node`, joined to `room`, again with the
    same cid after `unavailable` or a closed connection, until acked (bounded). (ack, closes seen)."""
    deadline = time.monotonic() + within
    closes, refusals = [], []
    while True:
        expect(time.monotonic() < deadline, f"{cid} not acked on {node} within {within}s "
               f"(closes {closes}, refusals {refusals[-3:]})")
        c = None
        try:
            c, _ = await hello_client(node, name)
            r = await c.request("join", room=room)
            if r.get("ok") is True:
                r = await c.request("send", room=room, cid=cid, body=body)
                if r.get("ok") is True:
                    return r, closes + [f"unavailable: {m}" for m in refusals]
            expect_error(r, "unavailable", f"join and send {cid} on {node}")
            refusals.append(r.get("message"))
        except cs.ConnectionLost:
            closes.append((c.ws.close_code, c.ws.close_reason) if c is not None else None)
        finally:
            if c is not None:
                await c.close()
        await asyncio.sleep(0.2)


async def t_flushall():
    room = uniq("r.flush")
    x0, j = await joined(NODES[0], uniq("fx0"), room)
    xname, wname = uniq("fx1"), uniq("fxw")
    x1, _ = await joined(NODES[1], xname, room)
    for i in range(3):
        expect_ok(await x0.request("send", room=room, cid=f"old-{i}", body=i))
    await all_of(x1, room, 3, "before FLUSHALL")
    await all_of(x0, room, 3, "before FLUSHALL")
    old_epoch = j["epoch"]
    await x1.cut("rst")
    REDIS.flushall()
    # Sends on the node where the room is in use (x0 stays joined there): a new history.
    news, closes = [], []
    for i in range(2):
        r, cl = await send_until_acked(NODES[0], wname, room, f"new-{i}", i)
        news.append(r)
        closes += cl
    y, _ = await hello_client(NODES[2], xname)
    r = expect_ok(await y.request("join", room=room, since=3, epoch=old_epoch), f"join since 3, old epoch, on {NODES[2]}")
    new_epoch = r.get("epoch")
    expect(r.get("recovered") is False and isinstance(new_epoch, str) and new_epoch != old_epoch,
           f"resume with the epoch of the lost history: want recovered false and a new epoch "
           f"(old {old_epoch}); acks after FLUSHALL {[(a.get('seq'), a.get('ts')) for a in news]}; reply {r}")
    gap = await y.event(op="gap", room=room, timeout=5)
    expect_eq((gap.get("reason"), gap.get("epoch")), ("epoch", new_epoch), f"gap event {gap}")
    got = await y.collect(room, r.get("seq", 0), timeout=10) if r.get("seq", 0) > 0 else []
    expect_eq([e.get("cid") for e in got], [f"new-{i}" for i in range(2)],
              f"events of the new epoch after the gap (acks {[a.get('seq') for a in news]})")
    expect(trace_index(y, gap) < trace_index(y, got[0]), "the gap event came after the events")
    # The member that stayed on node 0 through FLUSHALL: the new history's seqs must not come
    # to it as if they followed its seq 3 (closed, or a gap first, is fine).
    await asyncio.sleep(0.5)
    later = x0.take(room=room)
    silent = [e for e in later if stored(e) and e.get("seq", 0) <= 3]
    gaps = [e for e in later if e.get("op") == "gap"]
    expect(not silent or (gaps and later.index(gaps[0]) < later.index(silent[0])),
           f"the member on {NODES[0]} got seqs {seqs(silent)} of the new history after its seq 3 without a gap")
    fate = (f"closed {x0.ws.close_code} {x0.ws.close_reason!r}" if x0.closed
            else f"open, got {[e.get('op') for e in later]}")
    await close_all(x0, y)
    return (f"epoch {old_epoch} -> {new_epoch}, new seqs {[a.get('seq') for a in news]}; the member that stayed: "
            f"{fate}; the sender's closes: {closes or 'none'}")


async def t_logs():
    bad = [f"{n}:\n{n.sanitizer_report()}" for n in NODES if n.sanitizer_report()]
    expect(not bad, "sanitizer reports in the node output:\n" + "\n".join(bad)[:4000])


CHECKS = [
    ("three nodes on one Redis", t_nodes_up),
    ("a send on each node reaches every member on every node, once, in seq order", t_fanout),
    ("history the same from every node", t_history_every_node),
    ("resume on another node: the missed events, recovered", t_resume_other_node),
    ("presence events across nodes", t_presence_events),
    ("presence request lists the users of every node", t_presence_request),
    ("presence leave across nodes", t_presence_leave),
    ("duplicate cid on another node", t_duplicate_other_node),
    ("read events to members on every node", t_read_events),
    ("read marks and unread counts from another node", t_read_unread),
    ("a room with no member on a node is let go there: unsubscribed, opened again on a join", t_idle_room_released),
    ("--write-delay: events wait for it and leave together, on both nodes; replies do not", t_write_delay),
    ("subscriber connection killed: the node fills the gap, a resume there is recovered", t_subscriber_killed),
    ("SIGKILL one node: the others go on, its users leave", t_node_killed),
    ("Redis down: unavailable fast, connections open", t_redis_down),
    ("Redis back (AOF): sends work on every node, nothing acked lost", t_redis_back),
    ("FLUSHALL: a resume with the old epoch gets gap epoch", t_flushall),
    ("node logs: no sanitizer report", t_logs),
]


async def ensure_up(runner, after):
    """Redis and every node running again after a check that left one down."""
    if not REDIS.running():
        print(f"NOTE Redis was down after '{after}': starting it again", flush=True)
        await REDIS.astart()
    for node in NODES:
        if not node.running():
            print(f"FAIL {node} is not running after '{after}' (status {node.proc.returncode}):\n"
                  f"{node.output(last=True)[-3000:]}", flush=True)
            runner.failed.append(f"{node} alive after {after}")
            await node.astart()


async def main(cluster, only):
    global REDIS, NODES
    title = "chat.redis_cluster_nodes" if cluster else "chat.redis_nodes"
    runner = cs.Runner(title)
    REDIS = chat_nodes.Redis(cluster=cluster, appendonly=True, appendfsync="always")
    NODES = chat_nodes.make_nodes(PATH, REDIS, 3, "--presence-grace", GRACE, "--rate-limit", "1000",
                                  "--rate-burst", "1000", "--room-idle-seconds", ROOM_IDLE)
    t0 = time.monotonic()
    try:
        try:
            await REDIS.astart()
            for node in NODES:
                await node.astart()
        except RuntimeError as e:
            print(f"FAIL start: {e}", flush=True)
            print("0 passed, 1 failed", flush=True)
            return 1
        print(f"{REDIS.describe()}; nodes {', '.join(map(repr, NODES))} ({time.monotonic() - t0:.1f}s to start)",
              flush=True)
        for name, fn in CHECKS:
            if only and not any(o in name for o in only):
                continue
            await runner.run(name, fn, timeout=60)
            if fn is not t_redis_down:  # the next check starts Redis again itself
                await ensure_up(runner, name)
    finally:
        for node in NODES:
            node.close()
        if runner.failed:
            for node in NODES:
                out = node.output(skip_empty=True).strip()
                if out:
                    print(f"--- output of {node} (last 3000 characters) ---\n{out[-3000:]}", flush=True)
            print(f"--- Redis output (last 2000 characters) ---\n{REDIS.output()[-2000:]}", flush=True)
        REDIS.close()
    print(f"{title}: {time.monotonic() - t0:.1f}s", flush=True)
    return runner.finish()


if __name__ == "__main__":
    argv = [a for a in sys.argv if a != "--cluster"]
    cluster = len(argv) != len(sys.argv)
    PATH = cs.server_path([a for a in argv if not a.startswith("-k=")])
    chat_nodes.require_redis(cluster)
    only = [a[3:] for a in argv[1:] if a.startswith("-k=")]
    try:
        sys.exit(asyncio.run(asyncio.wait_for(main(cluster, only), 240)))
    except asyncio.TimeoutError:
        print("FAIL overall deadline (240 s) passed\n0 passed, 1 failed", flush=True)
        sys.exit(1)
