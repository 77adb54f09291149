#!/usr/bin/python3
"""chat.protocol: tongdao-server's chat endpoint checked against docs/PROTOCOL.md, one check
per request and per documented error, with the Python `websockets` library as the client.

    /usr/bin/python3 chat_protocol_test.py [PATH/tongdao-server]     (or TONGDAO_SERVER=...)

Each check uses rooms and users of its own. Several servers are started (the flags a check
needs: token auth, origins, rate limit, retention, restarts), each on a free loopback port
with a temporary --data-dir. TONGDAO_CHAT_SLOW=1 also runs the 30 s hello-timeout check.
Prints PASS/FAIL per check and ends with "N passed, N failed"; exit 0 all passed, 1 a check
failed, 77 the websockets module is missing.
"""

import asyncio
import itertools
import json
import logging
import os
import random
import shutil
import sys
import tempfile
import time
import urllib.parse

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chat_support as cs  # noqa: E402
from chat_support import (ChatClient, ChatServer, ConnectionLost, Skip, expect, expect_eq, expect_error,  # noqa: E402
                          expect_ok, hello_client, seqs, stored, uniq)

logging.getLogger("websockets").setLevel(logging.CRITICAL)
logging.getLogger("asyncio").setLevel(logging.CRITICAL)

PATH = None
MAIN = None  # the shared server: --anonymous and the flags below
MAIN_MAX_BODY = 2048
MAIN_MAX_ROOMS = 4
MAIN_GRACE = 2
API_KEY = "k-" + "%016x" % random.getrandbits(64)
SERVERS = []
TMP = tempfile.mkdtemp(prefix="tongdao-chat-test-")


def new_server(*args, **kw):
    s = ChatServer(PATH, *args, **kw)
    SERVERS.append(s)
    return s.start()


def write_file(name, text):
    path = os.path.join(TMP, name)
    with open(path, "w") as f:
        f.write(text)
    return path


async def joined(server, name, room, **join):
    """A client that said hello and joined `room`; (client, join reply)."""
    c, _ = await hello_client(server, name)
    r = expect_ok(await c.request("join", room=room, **join), "join")
    return c, r


async def send_n(client, room, n, prefix=None):
    """n sends, one after another; their replies."""
    prefix = prefix or uniq("c")
    out = []
    for i in range(n):
        out.append(expect_ok(await client.request("send", room=room, cid=f"{prefix}-{i}", body={"i": i}), "send"))
    return out


async def close_all(*clients):
    for c in clients:
        try:
            await c.close()
        except Exception:  # noqa: BLE001 - best effort
            pass


# --- the connection --------------------------------------------------------------------------

async def t_health():
    status, _, body = MAIN.http("GET", "/health")
    expect_eq(status, 200, "GET /health status")


async def t_subprotocol_offered():
    c = await ChatClient.connect(MAIN.url(), subprotocols=[cs.SUBPROTOCOL])
    expect_eq(c.subprotocol, cs.SUBPROTOCOL, "negotiated sub-protocol")
    expect_ok(await c.request("hello", v=1, name=uniq("sp")))
    await c.close()
    c = await ChatClient.connect(MAIN.url(), subprotocols=["other.v1", cs.SUBPROTOCOL])
    expect_eq(c.subprotocol, cs.SUBPROTOCOL, "negotiated sub-protocol (offered second)")
    await c.close()


async def t_subprotocol_not_offered():
    c = await ChatClient.connect(MAIN.url(), subprotocols=None)
    expect_eq(c.subprotocol, None, "sub-protocol when none offered")
    expect_ok(await c.request("hello", v=1, name=uniq("nosp")))
    await c.close()


async def t_subprotocol_other_refused():
    try:
        c = await ChatClient.connect(MAIN.url(), subprotocols=["other.v1"])
    except cs.wse.InvalidStatusCode as e:
        expect_eq(e.status_code, 400, "status when offering only another sub-protocol")
        return
    except cs.wse.InvalidHandshake as e:
        raise AssertionError(f"expected HTTP 400, got {type(e).__name__}: {e}") from None
    sub = c.subprotocol
    await c.close()
    raise AssertionError(f"upgrade offering only 'other.v1' was accepted (sub-protocol {sub!r}); the doc says HTTP 400")


async def t_ping_before_hello():
    c = await ChatClient.connect(MAIN.url())
    r = expect_ok(await c.request("ping"), "ping before hello")
    expect(isinstance(r.get("ts"), int) and abs(r["ts"] - time.time() * 1000) < 300_000,
           f"ping ts is not the server's clock in ms: {r}")
    expect_ok(await c.request("hello", v=1, name=uniq("pinger")))
    r = expect_ok(await c.request("ping", id="p-1"), "ping after hello")
    expect_eq(r["id"], "p-1", "ping reply id")
    await c.close()


async def t_requests_before_hello():
    c = await ChatClient.connect(MAIN.url())
    room = uniq("r.before")
    cases = [("join", {"room": room}), ("leave", {"room": room}),
             ("send", {"room": room, "cid": "x", "body": "hi"}),
             ("edit", {"room": room, "target": 1, "body": "x"}), ("delete", {"room": room, "target": 1}),
             ("history", {"room": room}), ("read", {"room": room, "seq": 1}), ("typing", {"room": room}),
             ("presence", {"room": room}), ("rooms", {})]
    for op, fields in cases:
        expect_error(await c.request(op, **fields), "unauthorized", f"{op} before hello")
    expect_ok(await c.request("hello", v=1, name=uniq("late")), "hello after refused requests")
    expect_ok(await c.request("join", room=room), "join after hello")
    await c.close()


# --- hello -----------------------------------------------------------------------------------

async def t_hello_anonymous():
    name = uniq("alice")
    c = await ChatClient.connect(MAIN.url())
    r = expect_ok(await c.request("hello", v=1, name=name))
    expect_eq(r.get("user"), name, "hello user")
    expect_eq(r.get("name"), name, "hello name")
    srv = r.get("server")
    expect(isinstance(srv, dict), f"hello reply without server: {r}")
    want = {"name": "tongdao", "protocol": 1, "maxBody": MAIN_MAX_BODY, "maxFrame": MAIN_MAX_BODY + 8192,
            "heartbeatMs": 25000, "idleTimeoutMs": 60000}
    for k, v in want.items():
        expect_eq(srv.get(k), v, f"hello server.{k} (--max-body {MAIN_MAX_BODY})")
    await c.close()


async def t_hello_second():
    c, _ = await hello_client(MAIN, uniq("twice"))
    expect_error(await c.request("hello", v=1, name=uniq("again")), "bad_request", "second hello")
    expect_ok(await c.request("ping"), "ping after a second hello")
    await c.close()


async def t_hello_unsupported_version():
    c = await ChatClient.connect(MAIN.url())
    r = expect_error(await c.request("hello", v=2, name=uniq("v2")), "unsupported_version", "hello v 2")
    expect_eq(r.get("versions"), [1], "versions in unsupported_version")
    expect_ok(await c.request("hello", v=1, name=uniq("v1")), "hello v 1 after a failed hello")
    await c.close()


async def t_hello_missing_v():
    c = await ChatClient.connect(MAIN.url())
    r = await c.request("hello", name=uniq("nov"))
    expect_error(r, ("bad_request", "unsupported_version"), "hello without v")
    r = await c.request("hello", v="1", name=uniq("strv"))
    expect_error(r, ("bad_request", "unsupported_version"), "hello with v \"1\"")
    await c.close()
    return f"without v: {r['code']}"


async def t_hello_names():
    c = await ChatClient.connect(MAIN.url())
    for bad, what in (("", "empty"), ("x" * 33, "33 characters"), ("a\x01b", "a control character"),
                      ("a\nb", "a newline"), (5, "a number")):
        expect_error(await c.request("hello", v=1, name=bad), "bad_request", f"hello name {what}")
    await c.close()
    for good in ("x" * 32, "通道用户", "一二三四五六七八九十一", "Ana María"):
        c = await ChatClient.connect(MAIN.url())
        r = expect_ok(await c.request("hello", v=1, name=good), f"hello name {good!r} ({len(good)} characters)")
        expect_eq(r.get("user"), good, "user of an anonymous hello")
        await c.close()


async def t_hello_no_name():
    c = await ChatClient.connect(MAIN.url())
    r = await c.request("hello", v=1)
    expect_error(r, ("bad_request", "unauthorized"), "anonymous hello without a name or token")
    await c.close()
    return f"code {r['code']}"


async def t_hello_same_name_same_user():
    name = uniq("same")
    room = uniq("r.same")
    a1, _ = await joined(MAIN, name, room)
    a2, _ = await joined(MAIN, name, room)
    r = expect_ok(await a1.request("send", room=room, cid="s-1", body="one"))
    r2 = await a2.request("send", room=room, cid="s-1", body="one")
    expect_ok(r2, "same cid from the other connection of the same name")
    expect(r2.get("duplicate") is True and r2.get("seq") == r["seq"], f"same name is not the same user: {r2}")
    await close_all(a1, a2)


async def t_hello_rooms():
    room_a, room_b = uniq("r.ha"), uniq("r.hb")
    w, jw = await joined(MAIN, uniq("w"), room_a)
    acks = await send_n(w, room_a, 3)
    epoch = jw.get("epoch")
    c = await ChatClient.connect(MAIN.url())
    r = expect_ok(await c.request("hello", v=1, name=uniq("hr"), rooms=[
        {"room": room_a, "since": 1, "epoch": epoch}, {"room": room_b}]), "hello with rooms")
    rooms = r.get("rooms")
    expect(isinstance(rooms, list) and len(rooms) == 2, f"hello reply rooms: {r}")
    by = {e.get("room"): e for e in rooms}
    ea = by.get(room_a) or {}
    expect(ea.get("ok") is True and ea.get("seq") == 3 and ea.get("epoch") == epoch and ea.get("recovered") is True
           and ea.get("oldest") == 1, f"hello rooms entry for {room_a}: {ea}")
    eb = by.get(room_b) or {}
    expect(eb.get("ok") is True and eb.get("seq") == 0, f"hello rooms entry for new room {room_b}: {eb}")
    evs = await c.collect(room_a, 3)
    expect_eq(seqs(evs), [2, 3], "catch-up after hello rooms since 1")
    expect_eq([e.get("body") for e in evs], [{"i": 1}, {"i": 2}], "catch-up bodies")
    idx_reply = next(i for i, m in enumerate(c.trace) if m is r)
    idx_first = next(i for i, m in enumerate(c.trace) if m is evs[0])
    expect(idx_reply < idx_first, "catch-up event arrived before the hello reply")
    expect_ok(await c.request("send", room=room_b, cid="x", body="in b"), "send in a room joined by hello")
    expect_eq(acks[-1]["seq"], 3, "seq of the third send")
    await close_all(w, c)


async def t_hello_rooms_bad_entry():
    """A malformed entry: the doc lets it be read as an entry that could not be joined
    ({room, ok: false, code}) or as a malformed hello (bad_request of the whole)."""
    room = uniq("r.hbad")
    c = await ChatClient.connect(MAIN.url())
    r = await c.request("hello", v=1, name=uniq("hb"), rooms=[{"room": room}, {"room": "bad room!"}])
    if r.get("ok") is True:
        by = {e.get("room"): e for e in r.get("rooms", [])}
        expect_eq((by.get(room) or {}).get("ok"), True, "the good entry")
        expect_error(by.get("bad room!"), "bad_request", "the entry with a bad room name")
        how = "per entry"
    else:
        expect_error(r, "bad_request", "hello with a bad room entry")
        expect_ok(await c.request("hello", v=1, name=uniq("hb2"), rooms=[{"room": room}]), "hello after it failed")
        how = "the whole hello refused"
    await c.close()
    return how


# --- join / leave ----------------------------------------------------------------------------

async def t_join_new_room():
    c, _ = await hello_client(MAIN, uniq("jn"))
    room = uniq("r.new")
    r = expect_ok(await c.request("join", room=room))
    expect_eq(r.get("room"), room, "join reply room")
    expect_eq(r.get("seq"), 0, "seq of a new room")
    expect(isinstance(r.get("epoch"), str) and r["epoch"], f"join reply epoch: {r}")
    expect_eq(r.get("recovered"), True, "recovered without since")
    expect_eq(r.get("oldest"), 1, "oldest of an empty room (seq + 1)")
    expect_eq(r.get("unread"), 0, "unread of a new member")
    expect_eq(r.get("readSeq"), 0, "readSeq of a new member of an empty room")
    expect(not r.get("already"), f"already on a first join: {r}")
    expect_ok(await c.request("join", room="A-z_0.9:-" + "x" * 55), "join a 64-character room of every allowed class")
    await c.close()


async def t_join_bad_rooms():
    c, _ = await hello_client(MAIN, uniq("jb"))
    for bad in ("", "x" * 65, "bad room", "bad/room", "é", "a\u0000b", 7, None, ["r"]):
        expect_error(await c.request("join", room=bad), "bad_request", f"join room {bad!r}")
    expect_error(await c.request("join"), "bad_request", "join without room")
    await c.close()
    c, _ = await hello_client(MAIN, uniq("jb2"))
    for fields in ({"since": "3"}, {"since": -1}, {"since": 1.5}, {"since": 0, "epoch": 5}):
        expect_error(await c.request("join", room=uniq("r.jb"), **fields), "bad_request", f"join with {fields}")
    await c.close()


async def t_join_already():
    room = uniq("r.already")
    w, _ = await joined(MAIN, uniq("w"), room)
    await send_n(w, room, 2)
    c, r = await joined(MAIN, uniq("a"), room, since=0)
    expect_eq(seqs(await c.collect(room, 2)), [1, 2], "catch-up")
    r2 = expect_ok(await c.request("join", room=room, since=0), "second join")
    expect_eq(r2.get("already"), True, "already on a second join")
    await c.no_event(room=room, pred=stored, within=0.7)
    await send_n(w, room, 1)
    expect_eq(seqs(await c.collect(room, 3)), [3], "live event after an already-join (once)")
    await c.no_event(room=room, pred=stored, within=0.3)
    await close_all(w, c)


async def t_join_without_since():
    room = uniq("r.nosince")
    w, _ = await joined(MAIN, uniq("w"), room)
    await send_n(w, room, 3)
    c, r = await joined(MAIN, uniq("c"), room)
    expect_eq(r.get("seq"), 3, "join reply seq")
    expect_eq(r.get("recovered"), True, "recovered without since")
    await c.no_event(room=room, pred=stored, within=0.7)
    await send_n(w, room, 1)
    expect_eq(seqs(await c.collect(room, 4)), [4], "only live events after a join without since")
    await close_all(w, c)


async def t_join_since_equal_seq():
    room = uniq("r.eq")
    w, _ = await joined(MAIN, uniq("w"), room)
    await send_n(w, room, 3)
    c, r = await joined(MAIN, uniq("c"), room, since=3)
    expect_eq((r.get("seq"), r.get("recovered")), (3, True), "join since = seq")
    await c.no_event(room=room, pred=stored, within=0.7)
    await send_n(w, room, 1)
    expect_eq(seqs(await c.collect(room, 4)), [4], "live only after since = seq")
    await close_all(w, c)


async def t_join_catchup_concurrent():
    """A reader resumes again and again (hello rooms / join with since, cut clean or by RST)
    while a writer keeps sending: across all its connections it gets 1..N, once each."""
    room = uniq("r.catchup")
    w, _ = await joined(MAIN, uniq("writer"), room)
    total = 150
    acks = []

    async def write():
        for i in range(total):
            r = expect_ok(await w.request("send", room=room, cid=f"k{i}", body={"i": i}), "writer send")
            acks.append(r["seq"])
            await asyncio.sleep(0.01)

    wt = asyncio.create_task(write())
    reader = uniq("reader")
    seen, bodies = [], []
    last, epoch, rounds = 0, None, 0
    try:
        while True:
            rounds += 1
            final = wt.done()
            if final:
                wt.result()
            c = await ChatClient.connect(MAIN.url())
            spec = {"room": room, "since": last}
            if epoch:
                spec["epoch"] = epoch
            if rounds % 2:
                r = expect_ok(await c.request("hello", v=1, name=reader, rooms=[spec]), "hello with rooms")
                entry = r["rooms"][0]
            else:
                expect_ok(await c.request("hello", v=1, name=reader))
                entry = await c.request("join", **spec)
            expect(entry.get("ok") is True and entry.get("recovered") is True, f"resume {spec}: {entry}")
            if epoch:
                expect_eq(entry.get("epoch"), epoch, "epoch across resumes")
            epoch = entry.get("epoch")
            if final:
                evs = await c.collect(room, total, timeout=30) if last < total else []
                await asyncio.sleep(0.3)
            else:
                await asyncio.sleep(random.uniform(0.1, 0.4))
                evs = []
            await c.cut("rst" if rounds % 3 == 0 else "clean")
            evs += c.take(room=room, pred=stored)
            for e in evs:
                seen.append(e.get("seq"))
                bodies.append((e.get("body") or {}).get("i"))
            if seen:
                last = seen[-1]
            if final:
                break
            expect(rounds < 200, "too many rounds")
    finally:
        if not wt.done():
            wt.cancel()
    expect_eq(acks, list(range(1, total + 1)), "writer's acked seqs")
    dups = len(seen) - len(set(seen))
    missing = sorted(set(range(1, total + 1)) - set(seen))
    expect(seen == list(range(1, total + 1)),
           f"reader's seqs over {rounds} connections are not 1..{total}: {dups} duplicates, missing {missing[:20]}, "
           f"out of order at {[i for i in range(1, len(seen)) if seen[i] != seen[i - 1] + 1][:10]}")
    expect_eq(bodies, list(range(total)), "bodies in seq order")
    await w.close()
    return f"{rounds} connections"


async def t_leave():
    room = uniq("r.leave")
    w, _ = await joined(MAIN, uniq("w"), room)
    name = uniq("lv")
    c, _ = await joined(MAIN, name, room)
    r = expect_ok(await c.request("leave", room=room), "leave")
    await send_n(w, room, 1)
    await c.no_event(room=room, pred=stored, within=0.7)
    expect_error(await c.request("send", room=room, cid="after-leave", body="x"), "not_joined", "send after leave")
    rooms = expect_ok(await c.request("rooms")).get("rooms")
    expect(all(e.get("room") != room for e in rooms), f"rooms still lists a left room: {rooms}")
    expect_ok(await c.request("leave", room=uniq("r.never")), "leave of a room never joined")
    # leaving on a connection that did not join still ends the membership
    other = uniq("r.leave2")
    c2, _ = await joined(MAIN, name, other)
    expect_ok(await c.request("leave", room=other), "leave of a room joined on another connection")
    rooms = expect_ok(await c2.request("rooms")).get("rooms")
    expect(all(e.get("room") != other for e in rooms), f"membership kept after leave from another connection: {rooms}")
    await close_all(w, c, c2)
    return f"reply {json.dumps(r)}"


async def t_limit_exceeded():
    c, _ = await hello_client(MAIN, uniq("many"))
    rooms = [uniq("r.lim") for _ in range(MAIN_MAX_ROOMS + 1)]
    for room in rooms[:-1]:
        expect_ok(await c.request("join", room=room), f"join within --max-rooms-per-connection {MAIN_MAX_ROOMS}")
    expect_error(await c.request("join", room=rooms[-1]), "limit_exceeded", f"join of room {MAIN_MAX_ROOMS + 1}")
    expect_ok(await c.request("join", room=rooms[0]), "join of an already joined room at the limit")
    expect_ok(await c.request("leave", room=rooms[0]))
    expect_ok(await c.request("join", room=rooms[-1]), "join after a leave")
    await c.close()
    c = await ChatClient.connect(MAIN.url())
    r = expect_ok(await c.request("hello", v=1, name=uniq("many2"), rooms=[{"room": x} for x in rooms[:MAIN_MAX_ROOMS]]))
    expect(all(e.get("ok") for e in r.get("rooms", [])), f"hello with {MAIN_MAX_ROOMS} rooms: {r}")
    await c.close()


# --- send ------------------------------------------------------------------------------------

async def t_send_reply_then_event():
    room = uniq("r.send")
    name = uniq("snd")
    a, _ = await joined(MAIN, name, room)
    b, _ = await joined(MAIN, uniq("rcv"), room)
    body = {"text": "hi 你好 ✓", "mentions": ["bob"], "n": [1, 2.5, None, True], "nested": {"a": {"b": "c"}}}
    r = expect_ok(await a.request("send", room=room, cid="c-7d1e", body=body, unknownField={"x": 1}), "send")
    expect(isinstance(r.get("seq"), int) and r["seq"] == 1, f"send reply seq: {r}")
    expect(isinstance(r.get("ts"), int) and abs(r["ts"] - time.time() * 1000) < 300_000, f"send reply ts: {r}")
    expect(not r.get("duplicate"), f"first send marked duplicate: {r}")
    ev = await a.event(op="message", room=room)
    want = {"op": "message", "room": room, "seq": r["seq"], "ts": r["ts"], "user": name, "name": name,
            "cid": "c-7d1e", "body": body}
    for k, v in want.items():
        expect_eq(ev.get(k), v, f"message event {k}")
    expect(a.trace.index(r) < next(i for i, m in enumerate(a.trace) if m is ev),
           "the sender's copy of the event came before its reply")
    evb = await b.event(op="message", room=room)
    expect_eq(evb, ev, "the other member's event")
    for body in ("plain", 42, None, [1, "two"], True):
        cid = uniq("v")
        r = expect_ok(await a.request("send", room=room, cid=cid, body=body), f"send body {body!r}")
        ev = await b.event(op="message", room=room, pred=lambda m, cid=cid: m.get("cid") == cid)
        expect_eq(ev.get("body"), body, "body round trip")
    await close_all(a, b)


async def t_send_errors():
    room = uniq("r.serr")
    c, _ = await joined(MAIN, uniq("se"), room)
    expect_error(await c.request("send", room=uniq("r.notj"), cid="x1", body="x"), "not_joined", "send to a room not joined")
    cases = [({"room": room, "body": "x"}, "without cid"), ({"room": room, "cid": "", "body": "x"}, "cid empty"),
             ({"room": room, "cid": "c" * 65, "body": "x"}, "cid of 65 characters"),
             ({"room": room, "cid": "a\nb", "body": "x"}, "cid with a newline"),
             ({"room": room, "cid": "ä", "body": "x"}, "cid not ASCII"),
             ({"room": room, "cid": 5, "body": "x"}, "cid a number"),
             ({"room": room, "cid": "nobody"}, "without body"),
             ({"cid": "noroom", "body": "x"}, "without room"),
             ({"room": room, "cid": "ex", "body": "x", "excludeSelf": "yes"}, "excludeSelf a string")]
    for fields, what in cases:
        expect_error(await c.request("send", **fields), "bad_request", f"send {what}")
    await c.close()
    c, _ = await joined(MAIN, uniq("se2"), room)
    expect_ok(await c.request("send", room=room, cid="c" * 64, body="x"), "send with a 64-character cid")
    expect_ok(await c.request("send", room=room, cid="~!#$%&'()*+,-./:;<=>?@[\\]^_`{|}", body="x"),
              "send with a cid of printable ASCII punctuation")
    await c.close()


async def t_send_exclude_self():
    room = uniq("r.excl")
    name = uniq("ex")
    a1, _ = await joined(MAIN, name, room)
    a2, _ = await joined(MAIN, name, room)
    b, _ = await joined(MAIN, uniq("exb"), room)
    r = expect_ok(await a1.request("send", room=room, cid="e1", body="quiet", excludeSelf=True))
    for who, c in (("other connection of the sender", a2), ("other member", b)):
        ev = await c.event(op="message", room=room)
        expect_eq(ev.get("seq"), r["seq"], f"excludeSelf: event to the {who}")
    await a1.no_event(op="message", room=room, within=0.7)
    r = expect_ok(await a1.request("send", room=room, cid="e2", body="loud", excludeSelf=False))
    expect_eq((await a1.event(op="message", room=room)).get("seq"), r["seq"], "excludeSelf false: own event")
    await close_all(a1, a2, b)


async def t_send_duplicate_cid():
    room, other_room = uniq("r.dup"), uniq("r.dup2")
    name = uniq("dup")
    a, _ = await joined(MAIN, name, room)
    expect_ok(await a.request("join", room=other_room))
    b, _ = await joined(MAIN, uniq("dupb"), room)
    r1 = expect_ok(await a.request("send", room=room, cid="c-1", body="first"))
    r2 = expect_ok(await a.request("send", room=room, cid="c-1", body="first"), "resend, same connection")
    expect(r2.get("duplicate") is True and r2.get("seq") == r1["seq"] and r2.get("ts") == r1["ts"],
           f"resend of a cid: want the first reply (seq {r1['seq']}, ts {r1['ts']}) with duplicate true: {r2}")
    a2, _ = await joined(MAIN, name, room)
    r3 = expect_ok(await a2.request("send", room=room, cid="c-1", body="first"), "resend, other connection")
    expect(r3.get("duplicate") is True and r3.get("seq") == r1["seq"], f"resend on another connection: {r3}")
    r4 = expect_ok(await a.request("send", room=other_room, cid="c-1", body="elsewhere"), "same cid, other room")
    expect(r4.get("duplicate") is True and r4.get("seq") == r1["seq"] and r4.get("room") == room,
           f"same cid naming another room: want duplicate, seq {r1['seq']}, room {room!r}: {r4}")
    r5 = expect_ok(await a.request("send", room=room, cid="c-1", body="changed body"), "same cid, other body")
    expect(r5.get("duplicate") is True and r5.get("seq") == r1["seq"], f"same cid with another body: {r5}")
    r6 = expect_ok(await b.request("send", room=room, cid="c-1", body="b's own"), "same cid, other user")
    expect(not r6.get("duplicate") and r6.get("seq") == r1["seq"] + 1, f"another user's cid is its own: {r6}")
    evs = await b.collect(room, r6["seq"])
    await asyncio.sleep(0.3)
    evs += b.take(room=room, pred=stored)
    expect_eq(seqs(evs), [r1["seq"], r6["seq"]], "events delivered (a duplicate is not delivered again)")
    hist = expect_ok(await b.request("history", room=room))
    expect_eq(seqs(hist.get("events", [])), [r1["seq"], r6["seq"]], "stored events")
    await a.no_event(op="message", room=other_room, within=0.2)
    await close_all(a, a2, b)


async def t_too_large():
    room = uniq("r.big")
    c, _ = await joined(MAIN, uniq("big"), room)
    expect_error(await c.request("send", room=room, cid="big1", body="x" * (MAIN_MAX_BODY + 100)), "too_large",
                 f"body over --max-body {MAIN_MAX_BODY}")
    expect_error(await c.request("send", room=room, cid="big2", body={"a": ["y" * 700] * 3}), "too_large",
                 "object body over --max-body")
    expect_ok(await c.request("send", room=room, cid="ok1", body="x" * (MAIN_MAX_BODY - 100)), "body under --max-body")
    expect_ok(await c.request("send", room=room, cid="big1", body="small now"), "the cid of a refused send is unused")
    await c.close()


async def t_rate_limited():
    srv = new_server("--rate-limit", "1", "--rate-burst", "3")
    try:
        room = uniq("r.rate")
        name = uniq("fast")
        c, _ = await joined(srv, name, room)
        c2, _ = await joined(srv, name, room)  # opened first: the sends below go back to back
        other, _ = await joined(srv, uniq("slow"), room)
        for i in range(3):
            expect_ok(await c.request("send", room=room, cid=f"r{i}", body=i), f"send {i + 1} of a burst of 3")
        r = expect_error(await c.request("send", room=room, cid="r3", body=3), "rate_limited", "send 4 of a burst of 3")
        wait = r.get("retryAfterMs")
        expect(isinstance(wait, int) and 0 < wait <= 1000, f"retryAfterMs at 1/s: {r}")
        expect_error(await c2.request("send", room=room, cid="r4", body=4), "rate_limited",
                     "the same user on another connection (the bucket is the user's)")
        expect_ok(await other.request("send", room=room, cid="o1", body="x"), "another user is not limited")
        await asyncio.sleep(wait / 1000 + 0.05)
        r = expect_ok(await c.request("send", room=room, cid="r3", body=3), f"resend after retryAfterMs {wait}")
        expect(not r.get("duplicate"), f"a rate-limited send was stored: {r}")
        await close_all(c, c2, other)
    finally:
        srv.close()


# --- edit / delete ---------------------------------------------------------------------------

async def t_edit_delete():
    room = uniq("r.edit")
    name = uniq("ed")
    a, _ = await joined(MAIN, name, room)
    b, _ = await joined(MAIN, uniq("edb"), room)
    m1 = expect_ok(await a.request("send", room=room, cid="m1", body={"text": "hi"}))
    mb = expect_ok(await b.request("send", room=room, cid="mb", body="b's"))
    e = expect_ok(await a.request("edit", room=room, target=m1["seq"], body={"text": "hi!"}, cid="e-1"), "edit own")
    expect_eq(e.get("seq"), mb["seq"] + 1, "an edit takes the next seq")
    ev = await b.event(op="edit", room=room)
    want = {"room": room, "seq": e["seq"], "ts": e["ts"], "user": name, "name": name, "target": m1["seq"],
            "body": {"text": "hi!"}}
    for k, v in want.items():
        expect_eq(ev.get(k), v, f"edit event {k}")
    eva = await a.event(op="edit", room=room)
    expect_eq(eva.get("seq"), e["seq"], "the editor's own edit event")
    e2 = expect_ok(await a.request("edit", room=room, target=m1["seq"], body={"text": "hi!"}, cid="e-1"), "edit, same cid")
    expect(e2.get("duplicate") is True and e2.get("seq") == e["seq"], f"edit resent with its cid: {e2}")
    expect_error(await a.request("edit", room=room, target=mb["seq"], body="mine now"), "forbidden", "edit of another's message")
    expect_error(await a.request("delete", room=room, target=mb["seq"]), "forbidden", "delete of another's message")
    expect_error(await a.request("edit", room=room, target=9999, body="x"), "not_found", "edit of a seq not stored")
    expect_error(await a.request("edit", room=room, target=e["seq"], body="x"), "not_found", "edit of an edit event's seq")
    d = expect_ok(await a.request("delete", room=room, target=m1["seq"]), "delete own")
    evd = await b.event(op="delete", room=room)
    want = {"room": room, "seq": d["seq"], "ts": d["ts"], "user": name, "name": name, "target": m1["seq"]}
    for k, v in want.items():
        expect_eq(evd.get(k), v, f"delete event {k}")
    expect_error(await a.request("delete", room=room, target=m1["seq"]), "not_found", "delete of a deleted message")
    expect_error(await a.request("edit", room=room, target=m1["seq"], body="x"), "not_found", "edit of a deleted message")
    expect_error(await a.request("delete", room=room, target=d["seq"]), "not_found", "delete of a delete event's seq")
    expect_error(await a.request("edit", room=uniq("r.notj"), target=1, body="x"), "not_joined", "edit in a room not joined")
    expect_error(await a.request("delete", room=uniq("r.notj"), target=1), "not_joined", "delete in a room not joined")
    expect_error(await a.request("edit", room=room, target="1", body="x"), "bad_request", "edit with target a string")
    # a catch-up delivers the current state (as history)
    c, _ = await joined(MAIN, uniq("edc"), room, since=0)
    evs = await c.collect(room, d["seq"])
    expect_eq([(x.get("op"), x.get("seq")) for x in evs],
              [("message", m1["seq"]), ("message", mb["seq"]), ("edit", e["seq"]), ("delete", d["seq"])], "catch-up")
    first = evs[0]
    expect(first.get("deleted") is True and first.get("body") is None, f"catch-up of a deleted message: {first}")
    await close_all(a, b, c)


# --- history ---------------------------------------------------------------------------------

async def t_history():
    room = uniq("r.hist")
    a, _ = await joined(MAIN, uniq("hi"), room)
    acks = await send_n(a, room, 10)
    expect_eq([x["seq"] for x in acks], list(range(1, 11)), "seqs of 10 sends")
    ed = expect_ok(await a.request("edit", room=room, target=3, body={"v": "edited"}))
    dl = expect_ok(await a.request("delete", room=room, target=4))
    expect_eq((ed["seq"], dl["seq"]), (11, 12), "seqs of the edit and the delete")
    reader, _ = await hello_client(MAIN, uniq("hr"))  # history needs no join
    r = expect_ok(await reader.request("history", room=room, limit=5), "history latest 5")
    expect_eq(r.get("room"), room, "history room")
    expect_eq(r.get("seq"), 12, "history seq")
    expect(isinstance(r.get("epoch"), str), f"history epoch: {r}")
    expect_eq(r.get("oldest"), 1, "history oldest")
    expect_eq(seqs(r.get("events", [])), [8, 9, 10, 11, 12], "latest 5")
    expect_eq(r.get("more"), True, "more (latest 5 of 12)")
    expect_eq([x.get("op") for x in r["events"]], ["message"] * 3 + ["edit", "delete"], "ops of the latest 5")
    r = expect_ok(await reader.request("history", room=room, before=5, limit=2), "history before 5 limit 2")
    expect_eq(seqs(r.get("events", [])), [3, 4], "before 5 limit 2")
    expect_eq(r.get("more"), True, "more before 3")
    m3, m4 = r["events"]
    expect(m3.get("body") == {"v": "edited"} and m3.get("edited") is True, f"edited message in history: {m3}")
    expect(m4.get("deleted") is True and m4.get("body") is None, f"deleted message in history: {m4}")
    for k in ("room", "seq", "ts", "user", "name", "cid"):
        expect(k in m3, f"history message without {k}: {m3}")
    r = expect_ok(await reader.request("history", room=room, before=3, limit=100))
    expect_eq((seqs(r["events"]), r.get("more")), ([1, 2], False), "before 3 (events, more)")
    r = expect_ok(await reader.request("history", room=room, after=0, limit=3))
    expect_eq((seqs(r["events"]), r.get("more")), ([1, 2, 3], True), "after 0 limit 3 (events, more)")
    r = expect_ok(await reader.request("history", room=room, after=10, limit=100))
    expect_eq((seqs(r["events"]), r.get("more")), ([11, 12], False), "after 10 (events, more)")
    r = expect_ok(await reader.request("history", room=room, after=12))
    expect_eq((seqs(r["events"]), r.get("more")), ([], False), "after the last seq")
    r2 = expect_ok(await reader.request("history", room=room, after=10, limit=1))
    expect_eq((seqs(r2["events"]), r2.get("more")), ([11], True), "after 10 limit 1")
    ev_edit = r2["events"][0]
    expect(ev_edit.get("op") == "edit" and ev_edit.get("target") == 3, f"edit event in history: {ev_edit}")
    r = expect_ok(await reader.request("history", room=room))
    expect_eq(seqs(r["events"]), list(range(1, 13)), "history without limit (default 50)")
    expect_eq(r.get("more"), False, "more when everything fits")
    expect_error(await reader.request("history", room=room, before=5, after=1), "bad_request", "before and after")
    expect_error(await reader.request("history", room=room, limit="10"), "bad_request", "limit a string")
    expect_error(await reader.request("history", room=room, limit=0), "bad_request", "limit 0")
    r = await reader.request("history", room=room, limit=101)
    if r.get("ok"):
        expect(len(r.get("events", [])) <= 100, f"limit 101 gave more than 100 events: {len(r['events'])}")
    else:
        expect_error(r, "bad_request", "limit 101")
    expect_error(await reader.request("history", room="bad room"), "bad_request", "history of a bad room name")
    await close_all(a, reader)
    return f"limit 101: {'clamped' if r.get('ok') else r.get('code')}"


# --- read / unread ---------------------------------------------------------------------------

async def t_read_marks():
    room = uniq("r.read")
    rname = uniq("rd")
    b, _ = await joined(MAIN, uniq("rb"), room)
    a, _ = await joined(MAIN, rname, room)
    await send_n(b, room, 5)
    r = expect_ok(await a.request("read", room=room, seq=3), "read 3")
    expect_eq(r.get("seq"), 3, "read reply seq")
    for who, c in (("reader", a), ("other member", b)):
        ev = await c.event(op="read", room=room)
        expect_eq((ev.get("user"), ev.get("seq")), (rname, 3), f"read event to the {who}")
    r = expect_ok(await a.request("read", room=room, seq=2), "read 2 after 3")
    expect_eq(r.get("seq"), 3, "read mark is monotonic (reply gives the mark kept)")
    await b.no_event(op="read", room=room, within=0.5)
    r = expect_ok(await a.request("read", room=room, seq=999), "read beyond the latest seq")
    expect_eq(r.get("seq"), 5, "read mark capped at the room's seq")
    expect_eq((await b.event(op="read", room=room)).get("seq"), 5, "read event after a capped read")
    a2, j = await joined(MAIN, rname, room)
    expect_eq(j.get("readSeq"), 5, "readSeq shared by the user's connections")
    expect_error(await a.request("read", room=uniq("r.notj"), seq=1), "not_joined", "read in a room not joined")
    expect_error(await a.request("read", room=room, seq="3"), "bad_request", "read with seq a string")
    expect_error(await a.request("read", room=room), "bad_request", "read without seq")
    await close_all(a, a2, b)


async def t_unread_counts():
    room = uniq("r.unread")
    aname = uniq("ua")
    b, _ = await joined(MAIN, uniq("ub"), room)
    await send_n(b, room, 2)
    a, j = await joined(MAIN, aname, room)
    expect_eq((j.get("readSeq"), j.get("unread")), (2, 0), "a new member starts at the room's seq (readSeq, unread)")
    more = await send_n(b, room, 3)  # 3, 4, 5
    expect_ok(await a.request("read", room=room, seq=3))
    expect_ok(await a.request("send", room=room, cid="own", body="mine"))  # 6: own messages are not unread
    a2, j = await joined(MAIN, aname, room)
    expect_eq((j.get("readSeq"), j.get("unread")), (3, 2), "after read 3 with others' 4, 5 and own 6 (readSeq, unread)")
    expect_ok(await b.request("delete", room=room, target=more[-1]["seq"]))  # deletes 5 (seq 7)
    a3, j = await joined(MAIN, aname, room)
    expect_eq((j.get("readSeq"), j.get("unread")), (3, 1), "after the delete of 5 (readSeq, unread)")
    rooms = expect_ok(await a3.request("rooms")).get("rooms", [])
    entry = next((e for e in rooms if e.get("room") == room), None)
    expect(entry is not None, f"rooms without {room}: {rooms}")
    expect_eq((entry.get("seq"), entry.get("readSeq"), entry.get("unread")), (7, 3, 1), "rooms entry (seq, readSeq, unread)")
    c = await ChatClient.connect(MAIN.url())
    r = expect_ok(await c.request("hello", v=1, name=aname, rooms=[{"room": room}]))
    e = r["rooms"][0]
    expect_eq((e.get("readSeq"), e.get("unread")), (3, 1), "hello rooms entry (readSeq, unread)")
    await close_all(a, a2, a3, b, c)


# --- typing / presence / rooms ---------------------------------------------------------------

async def t_typing():
    room = uniq("r.typing")
    aname = uniq("ta")
    a, _ = await joined(MAIN, aname, room)
    b, _ = await joined(MAIN, uniq("tb"), room)
    t0 = time.monotonic()
    expect_ok(await a.request("typing", room=room), "typing")
    ev = await b.event(op="typing", room=room)
    want = {"room": room, "user": aname, "name": aname, "active": True, "expiresMs": 5000}
    for k, v in want.items():
        expect_eq(ev.get(k), v, f"typing event {k}")
    expect("seq" not in ev, f"typing event with a seq: {ev}")
    expect_ok(await a.request("typing", room=room, active=True), "typing again")
    expect_ok(await a.request("typing", room=room), "typing a third time")
    left = 1.8 - (time.monotonic() - t0)
    if left > 0.3:
        await b.no_event(op="typing", room=room, pred=lambda m: m.get("active") is True, within=left)
    expect_ok(await a.request("typing", room=room, active=False), "typing active false")
    ev = await b.event(op="typing", room=room, pred=lambda m: m.get("active") is False)
    expect_eq(ev.get("user"), aname, "typing stop event user")
    await a.no_event(op="typing", room=room, within=0.2)
    await asyncio.sleep(max(0.0, 2.3 - (time.monotonic() - t0)))
    expect_ok(await a.request("typing", room=room))
    await b.event(op="typing", room=room, pred=lambda m: m.get("active") is True, timeout=5)
    await a.no_event(op="typing", room=room, within=0.3)
    expect_error(await a.request("typing", room=room, active="yes"), "bad_request", "typing with active a string")
    await close_all(a, b)


async def t_presence():
    room = uniq("r.pres")
    aname, bname = uniq("pa"), uniq("pb")
    a, _ = await joined(MAIN, aname, room)
    r = expect_ok(await a.request("presence", room=room), "presence")
    expect_eq((r.get("room"), r.get("count"), r.get("users")), (room, 1, [{"user": aname, "name": aname}]),
              "presence alone (room, count, users)")
    b, _ = await joined(MAIN, bname, room)
    ev = await a.event(op="presence", room=room, pred=lambda m: m.get("user") == bname)
    expect_eq((ev.get("state"), ev.get("name"), ev.get("count")), ("join", bname, 2), "presence join event")
    b2, _ = await joined(MAIN, bname, room)
    r = expect_ok(await a.request("presence", room=room))
    expect_eq(r.get("count"), 2, "a user with two connections counts once")
    expect_eq(sorted(u.get("user") for u in r.get("users", [])), sorted([aname, bname]), "presence users")
    await a.no_event(op="presence", room=room, pred=lambda m: m.get("user") == bname, within=0.5)
    await b2.close()
    await a.no_event(op="presence", room=room, pred=lambda m: m.get("user") == bname, within=0.5)
    t0 = time.monotonic()
    await b.cut("rst")
    ev = await a.event(op="presence", room=room, pred=lambda m: m.get("user") == bname, timeout=MAIN_GRACE + 8)
    took = time.monotonic() - t0
    expect_eq((ev.get("state"), ev.get("count")), ("leave", 1), "presence leave event after the last connection went")
    # Lower bound with a second of slack: tongdao-server times the grace on its loop's clock of
    # whole seconds, so a leave comes between grace - 1 and grace seconds after the disconnect.
    expect(took >= MAIN_GRACE - 1.1, f"leave came {took:.2f}s after the disconnect, before --presence-grace {MAIN_GRACE}")
    c, _ = await hello_client(MAIN, uniq("pc"))
    expect_error(await c.request("presence", room=room), "not_joined", "presence in a room not joined")
    # leave by request: a leave event after the grace
    dname = uniq("pd")
    d, _ = await joined(MAIN, dname, room)
    await a.event(op="presence", room=room, pred=lambda m: m.get("user") == dname and m.get("state") == "join", timeout=5)
    expect_ok(await d.request("leave", room=room))
    ev = await a.event(op="presence", room=room, pred=lambda m: m.get("user") == dname and m.get("state") == "leave",
                       timeout=MAIN_GRACE + 8)
    expect_eq(ev.get("count"), 1, "presence count after a leave")
    await close_all(a, c, d)
    return f"leave {took:.2f}s after the disconnect (grace {MAIN_GRACE}s)"


async def t_presence_no_flapping():
    room = uniq("r.flap")
    cname = uniq("fc")
    a, _ = await joined(MAIN, uniq("fa"), room)
    c, j = await joined(MAIN, cname, room)
    await a.event(op="presence", room=room, pred=lambda m: m.get("user") == cname and m.get("state") == "join")
    for mode in ("rst", "clean"):
        await c.cut(mode)
        c = await ChatClient.connect(MAIN.url())
        expect_ok(await c.request("hello", v=1, name=cname, rooms=[{"room": room, "since": j["seq"], "epoch": j["epoch"]}]))
        await a.no_event(op="presence", room=room, pred=lambda m: m.get("user") == cname, within=MAIN_GRACE + 1.5)
    r = expect_ok(await a.request("presence", room=room))
    expect_eq(r.get("count"), 2, "presence count after quick reconnects")
    await close_all(a, c)


async def t_rooms():
    name = uniq("rm")
    base = uniq("r.rooms")
    ra, rb, rc = (base + x for x in ("-a", "-b", "-c"))
    c1, _ = await hello_client(MAIN, name)
    for room in (rb, ra):
        expect_ok(await c1.request("join", room=room))
    c2, _ = await hello_client(MAIN, name)
    expect_ok(await c2.request("join", room=rc))
    expect_ok(await c1.request("send", room=ra, cid="x", body="x"))
    r = expect_ok(await c1.request("rooms"), "rooms")
    got = r.get("rooms", [])
    expect_eq([e.get("room") for e in got], [ra, rb, rc], "rooms, sorted by name")
    expect_eq([e.get("joined") for e in got], [True, True, False], "joined on this connection")
    ea = got[0]
    for k, t in (("seq", int), ("epoch", str), ("readSeq", int), ("unread", int)):
        expect(isinstance(ea.get(k), t), f"rooms entry {k}: {ea}")
    expect_eq(ea.get("seq"), 1, "rooms entry seq")
    expect_ok(await c1.request("leave", room=rb))
    r = expect_ok(await c2.request("rooms"))
    expect_eq([(e.get("room"), e.get("joined")) for e in r.get("rooms", [])], [(ra, False), (rc, True)],
              "rooms after a leave, from the other connection")
    await close_all(c1, c2)


# --- malformed input -------------------------------------------------------------------------

class BadSession:
    """Sends bad requests on a connection replaced before it collects 20 errors (1008)."""

    def __init__(self, room=None):
        self.c = None
        self.errors = 0
        self.room = room

    async def conn(self):
        if self.c is None or self.errors >= 10:
            if self.c is not None:
                await self.c.close()
            self.c, _ = await hello_client(MAIN, uniq("bad"))
            if self.room:
                expect_ok(await self.c.request("join", room=self.room))
            self.errors = 0
        return self.c

    async def raw(self, text, what, want_id=None, id_null_ok=False, code="bad_request"):
        c = await self.conn()
        self.errors += 1
        r = await c.raw_request(text, want_id)
        if want_id is None:
            expect_error(r, code, what, id_null=True)
        else:
            if r.get("id") is None:
                expect(id_null_ok, f"{what}: reply with id null, want id {want_id!r}: {json.dumps(r)}")
            else:
                expect_eq(r.get("id"), want_id, f"{what}: reply id")
            expect_error(r, code, what)
        expect_ok(await c.request("ping"), f"ping after {what}")
        return r

    async def close(self):
        if self.c:
            await self.c.close()


async def t_malformed():
    s = BadSession()
    try:
        for text, what in (("not json", "not JSON"), ("{", "truncated JSON"), ('{"op": "ping", "id": 1,}', "trailing comma"),
                           ("[1, 2]", "an array"), ('"ping"', "a string"), ("42", "a number"), ("null", "null"),
                           ("", "empty"), ('{"op": "ping", "id": 1} x', "trailing garbage"),
                           ('{"op": "ping", "id": 1}{"op": "ping", "id": 2}', "two objects")):
            await s.raw(text, what)
        r = await s.raw('{"op": "frobnicate", "id": 7}', "unknown op", want_id=7)
        await s.raw('{"op": 5, "id": 8}', "op a number", want_id=8, id_null_ok=True)
        await s.raw('{"op": "", "id": 9}', "op empty", want_id=9, id_null_ok=True)
        await s.raw('{"op": null, "id": 10}', "op null", want_id=10, id_null_ok=True)
    finally:
        await s.close()


async def t_no_op():
    """§2: a request with no op cannot be read as one: its reply has id null, even when the id is fine."""
    s = BadSession()
    try:
        await s.raw('{"id": 5}', "no op (a good id)")
        await s.raw('{"id": "x", "room": "lobby"}', "no op (a string id)")
    finally:
        await s.close()


async def t_ids():
    c, _ = await hello_client(MAIN, uniq("ids"))
    for rid in ("a" * 64, "", "x y ✓", 0, 9007199254740991, -9007199254740991, 123):
        r = expect_ok(await c.request("ping", id=rid), f"ping id {rid!r}")
        expect(type(r.get("id")) is type(rid) and r["id"] == rid, f"id not echoed exactly: sent {rid!r}, got {r.get('id')!r}")
    await c.close()
    s = BadSession()
    try:
        for text, what in (('{"op": "ping", "id": 1.5}', "id 1.5"), ('{"op": "ping", "id": {"a": 1}}', "id an object"),
                           ('{"op": "ping", "id": [1]}', "id an array"), ('{"op": "ping", "id": true}', "id true"),
                           ('{"op": "ping", "id": "' + "a" * 65 + '"}', "id of 65 characters"),
                           ('{"op": "ping", "id": 9007199254740994}', "id 2^53 + 2"),
                           ('{"op": "ping", "id": -9007199254740994}', "id -(2^53 + 2)"),
                           ('{"op": "ping", "id": 1e400}', "id 1e400"),
                           ('{"op": "ping", "id": 123456789012345678901234567890}', "id of 30 digits")):
            await s.raw(text, what)
    finally:
        await s.close()


async def t_wrong_types():
    room = uniq("r.types")
    s = BadSession(room)
    try:
        n = itertools.count(100)
        for fields, what in (({"op": "join", "room": 5}, "join room a number"), ({"op": "join", "room": None}, "join room null"),
                             ({"op": "send", "room": room, "cid": ["x"], "body": 1}, "send cid an array"),
                             ({"op": "history", "room": room, "before": "x"}, "history before a string"),
                             ({"op": "history", "room": room, "after": -1}, "history after -1"),
                             ({"op": "read", "room": room, "seq": None}, "read seq null"),
                             ({"op": "leave", "room": {}}, "leave room an object"),
                             ({"op": "edit", "room": room, "target": 1.5, "body": "x"}, "edit target 1.5"),
                             ({"op": "presence", "room": []}, "presence room an array")):
            rid = next(n)
            await s.raw(json.dumps({**fields, "id": rid}), what, want_id=rid)
    finally:
        await s.close()


async def t_huge_numbers():
    room = uniq("r.huge")
    s = BadSession(room)
    try:
        cases = (('"op": "join", "id": 1, "room": "%s", "since": 1e999', "since 1e999"),
                 ('"op": "join", "id": 2, "room": "%s", "since": 123456789012345678901234567890', "since of 30 digits"),
                 ('"op": "read", "id": 3, "room": "%s", "seq": 1e400', "read seq 1e400"),
                 ('"op": "read", "id": 4, "room": "%s", "seq": -1', "read seq -1"),
                 ('"op": "history", "id": 5, "room": "%s", "limit": 1e20', "history limit 1e20"),
                 ('"op": "history", "id": 6, "room": "%s", "before": 99999999999999999999999', "history before of 23 digits"),
                 ('"op": "edit", "id": 7, "room": "%s", "target": 1e308, "body": 1', "edit target 1e308"))
        for rid, (fields, what) in enumerate(cases, 1):
            await s.raw("{" + fields % room + "}", what, want_id=rid, id_null_ok=True)
        c = await s.conn()
        r = expect_ok(await c.request("send", room=room, cid="big-num", body={"n": 1e300, "m": -123456789012345678901234567890}),
                      "a body with huge numbers (any JSON value)")
        ev = await c.event(op="message", room=room)
        expect(isinstance(ev.get("body"), dict) and "n" in ev["body"], f"body with huge numbers: {ev}")
    finally:
        await s.close()


def nested(depth):
    return "[" * depth + "]" * depth


async def t_deep_nesting():
    room = uniq("r.deep")
    s = BadSession(room)
    try:
        c = await s.conn()
        expect_ok(await c.request("send", room=room, cid="d20", body=json.loads(nested(20))), "a body 20 levels deep")
        for depth in (40, 3000):
            text = '{"op": "send", "id": %d, "room": "%s", "cid": "d%d", "body": %s}' % (depth, room, depth, nested(depth))
            await s.raw(text, f"a body {depth} levels deep", want_id=depth, id_null_ok=True)
        text = '{"op": "ping", "id": 77, "extra": %s}' % nested(100)
        await s.raw(text, "an ignored field 100 levels deep", want_id=77, id_null_ok=True)
        text = '{"op": "ping", "id": 78, "extra": %s}' % ('{"a":' * 500 + "1" + "}" * 500)
        await s.raw(text, "objects 500 levels deep", want_id=78, id_null_ok=True)
    finally:
        await s.close()


async def t_binary_frame():
    c, _ = await hello_client(MAIN, uniq("bin"))
    await c.send_raw(b'{"op": "ping", "id": 1}')
    expect_error(await c.stray_reply(), "bad_request", "a binary message", id_null=True)
    await c.send_raw(b"\x00\xff\x01")
    expect_error(await c.stray_reply(), "bad_request", "binary garbage", id_null=True)
    expect_ok(await c.request("ping"), "ping after binary messages")
    expect_eq(c.binary, [], "binary messages from the server")
    await c.close()


async def t_too_many_bad_requests():
    c, _ = await hello_client(MAIN, uniq("flood"))
    for i in range(20):
        await c.send_raw("garbage %d" % i)
        expect_error(await c.stray_reply(), "bad_request", f"bad request {i + 1}")
    expect_ok(await c.request("ping"), "the connection stays after 20 bad requests")
    await c.send_raw("garbage 21")
    code, reason = await c.closed_with(10)
    expect_eq((code, reason), (1008, "too many bad requests"), "close after the 21st bad request within 10 s")


async def t_too_large_counts():
    """too_large counts toward the 20 (as bad_request does); not_joined does not."""
    room = uniq("r.mixed")
    c, _ = await joined(MAIN, uniq("mixed"), room)
    for i in range(12):
        expect_error(await c.request("send", room=room, cid=f"t{i}", body="x" * (MAIN_MAX_BODY + 10)), "too_large")
    for i in range(8):
        expect_error(await c.request("join", room="bad room"), "bad_request")
    expect_ok(await c.request("ping"), "the connection stays after 20 counted errors")
    for i in range(5):
        expect_error(await c.request("send", room=uniq("r.nj"), cid=f"nj{i}", body=1), "not_joined")
    expect_ok(await c.request("ping"), "not_joined does not count")
    try:
        await c.request("send", room=room, cid="t21", body="x" * (MAIN_MAX_BODY + 10), timeout=5)
    except (ConnectionLost, AssertionError):
        pass
    code, reason = await c.closed_with(10)
    expect_eq((code, reason), (1008, "too many bad requests"), "close after 21 errors (12 too_large, then 8 + 1 bad_request)")


async def t_unsupported_version_counts():
    """§3: unsupported_version is one of the codes that count toward the 20."""
    c = await ChatClient.connect(MAIN.url())
    for i in range(20):
        expect_error(await c.request("hello", v=9, name="x"), "unsupported_version", f"hello v 9 #{i + 1}")
    expect_ok(await c.request("ping"), "the connection stays after 20 unsupported_version")
    try:
        await c.request("hello", v=9, name="x", timeout=5)
    except (ConnectionLost, AssertionError):
        pass
    code, reason = await c.closed_with(10)
    expect_eq((code, reason), (1008, "too many bad requests"), "close after the 21st unsupported_version within 10 s")


async def t_frame_over_max():
    c, r = await hello_client(MAIN, uniq("huge"))
    max_frame = r["server"]["maxFrame"]
    head = '{"op": "ping", "id": 1, "pad": "'
    exact = head + "x" * (max_frame - len(head) - 2) + '"}'
    expect_eq(len(exact), max_frame, "test message size")
    r = await c.raw_request(exact, 1)
    expect_ok(r, f"a message of exactly maxFrame ({max_frame}) bytes")
    await c.send_raw(exact[:-2] + 'x"}')
    code, _ = await c.closed_with(10)
    expect_eq(code, 1009, f"close code after a message of maxFrame + 1 ({max_frame + 1}) bytes")


async def t_frame_over_max_deflate():
    c = await ChatClient.connect(MAIN.url(), compression="deflate")
    exts = [type(e).__name__ for e in getattr(c.ws, "extensions", [])]
    if not exts:
        await c.close()
        raise Skip("the server did not negotiate permessage-deflate on /chat")
    r = expect_ok(await c.request("hello", v=1, name=uniq("bomb")))
    max_frame = r["server"]["maxFrame"]
    await c.send_raw('{"op": "ping", "id": 2, "pad": "' + "x" * (max_frame * 4) + '"}')  # compresses to ~100 bytes
    code, _ = await c.closed_with(10)
    expect_eq(code, 1009, "close code after a compressed message inflating over maxFrame")


async def t_hello_timeout():
    if os.environ.get("TONGDAO_CHAT_SLOW") != "1":
        raise Skip("30 s; set TONGDAO_CHAT_SLOW=1 to run it")
    c = await ChatClient.connect(MAIN.url())
    t0 = time.monotonic()
    expect_ok(await c.request("ping"), "ping (does not count as hello)")
    expect_error(await c.request("hello", v=3, name="x"), "unsupported_version", "a failed hello (does not count)")
    code, reason = await c.closed_with(45)
    took = time.monotonic() - t0
    expect_eq((code, reason), (4000, "hello timeout"), "close without a successful hello")
    expect(27 <= took <= 40, f"hello timeout after {took:.1f}s, want about 30 s")
    return f"closed after {took:.1f}s"


# --- positions: retention, epoch -------------------------------------------------------------

async def t_epoch_mismatch():
    room = uniq("r.epoch")
    w, j = await joined(MAIN, uniq("w"), room)
    await send_n(w, room, 4)
    fake = "0000000000000000" if j["epoch"] != "0000000000000000" else "1111111111111111"
    c, r = await joined(MAIN, uniq("ep"), room, since=3, epoch=fake)
    expect_eq((r.get("recovered"), r.get("epoch"), r.get("seq")), (False, j["epoch"], 4),
              f"join since 3 with a wrong epoch {fake} (recovered, epoch, seq)")
    gap = await c.event(op="gap", room=room)
    expect_eq((gap.get("reason"), gap.get("epoch")), ("epoch", j["epoch"]), f"gap event {gap}")
    evs = await c.collect(room, 4)
    expect_eq(seqs(evs), [1, 2, 3, 4], "events after an epoch gap (since taken as 0)")
    idx_gap = next(i for i, m in enumerate(c.trace) if m is gap)
    idx_ev = next(i for i, m in enumerate(c.trace) if m is evs[0])
    expect(idx_gap < idx_ev, "the gap event came after the events")
    c2, r2 = await joined(MAIN, uniq("ep2"), room, since=3, epoch=j["epoch"])
    expect_eq(r2.get("recovered"), True, "join with the right epoch")
    expect_eq(seqs(await c2.collect(room, 4)), [4], "right epoch: only seq > since")
    await c2.no_event(op="gap", room=room, within=0.2)
    await close_all(w, c, c2)


async def t_retention():
    keep = 10
    srv = new_server("--retention-messages", str(keep), "--rate-limit", "1000", "--rate-burst", "1000")
    try:
        room = uniq("r.ret")
        w, j = await joined(srv, uniq("w"), room)
        acks = await send_n(w, room, 30)
        expect_eq(acks[-1]["seq"], 30, "seq of the 30th send")
        deadline = time.monotonic() + 20
        while True:
            h = expect_ok(await w.request("history", room=room, limit=100))
            if h.get("oldest", 1) > 1 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        oldest = h.get("oldest")
        expect(isinstance(oldest, int) and 3 < oldest <= 30 - keep + 1,
               f"--retention-messages {keep}, 30 sent: oldest should be in 4..{30 - keep + 1} within 20 s: {h.get('oldest')}")
        expect_eq(seqs(h.get("events", [])), list(range(oldest, 31)), "history after retention")
        c, r = await joined(srv, uniq("late"), room, since=2, epoch=j["epoch"])
        expect_eq((r.get("recovered"), r.get("seq"), r.get("oldest")), (False, 30, oldest),
                  "join with since older than retention (recovered, seq, oldest)")
        gap = await c.event(op="gap", room=room)
        expect_eq((gap.get("from"), gap.get("to"), gap.get("reason")), (3, oldest - 1, "retention"), f"gap event {gap}")
        evs = await c.collect(room, 30)
        expect_eq(seqs(evs), list(range(oldest, 31)), "events after the retention gap")
        expect(c.trace.index(r) < next(i for i, m in enumerate(c.trace) if m is gap), "gap before the join reply")
        c2, r2 = await joined(srv, uniq("ok"), room, since=oldest - 1, epoch=j["epoch"])
        expect_eq(r2.get("recovered"), True, f"join since {oldest - 1} (nothing missing)")
        expect_eq(seqs(await c2.collect(room, 30)), list(range(oldest, 31)), "events since oldest - 1")
        await c2.no_event(op="gap", room=room, within=0.2)
        await close_all(w, c, c2)
        return f"oldest {oldest} after 30 messages, {keep} kept"
    finally:
        srv.close()


# --- restarts --------------------------------------------------------------------------------

async def t_restart():
    srv = new_server()
    try:
        room = uniq("r.restart")
        name = uniq("rs")
        a, j = await joined(srv, name, room)
        b, _ = await joined(srv, uniq("rsb"), room)
        r1 = expect_ok(await a.request("send", room=room, cid="before", body="persist me"))
        expect_ok(await b.request("send", room=room, cid="b1", body="b"))
        expect_ok(await a.request("read", room=room, seq=2))
        await asyncio.sleep(0.2)
        srv.kill9()
        await srv.astart()
        c = await ChatClient.connect(srv.url())
        r = expect_ok(await c.request("hello", v=1, name=name, rooms=[{"room": room, "since": 1, "epoch": j["epoch"]}]))
        e = r["rooms"][0]
        expect_eq((e.get("ok"), e.get("epoch"), e.get("seq"), e.get("recovered"), e.get("readSeq")),
                  (True, j["epoch"], 2, True, 2), "resume after kill -9 (ok, epoch, seq, recovered, readSeq)")
        expect_eq(seqs(await c.collect(room, 2)), [2], "catch-up after a restart")
        expect_eq(r["server"].get("maxBody"), 16384, "default maxBody")
        expect_eq(r["server"].get("maxFrame"), 16384 + 8192, "default maxFrame")
        d = expect_ok(await c.request("send", room=room, cid="before", body="persist me"), "resend after a restart")
        expect(d.get("duplicate") is True and d.get("seq") == r1["seq"], f"cid remembered across a restart: want seq {r1['seq']} duplicate: {d}")
        n = expect_ok(await c.request("send", room=room, cid="after", body="new"))
        expect_eq(n.get("seq"), 3, "seq after a restart (never reused)")
        rooms = expect_ok(await c.request("rooms")).get("rooms", [])
        expect(any(x.get("room") == room for x in rooms), f"membership lost across a restart: {rooms}")
        h = expect_ok(await c.request("history", room=room))
        expect_eq([(x.get("seq"), x.get("cid")) for x in h.get("events", [])], [(1, "before"), (2, "b1"), (3, "after")],
                  "history after a restart")
        # SIGTERM: the connected client gets 1001 going away
        status = srv.stop()
        code, reason = await c.closed_with(10)
        expect_eq((code, reason), (1001, "going away"), "close on SIGTERM")
        # the data lost: a new epoch, and a resume with the old one gets an epoch gap
        srv.wipe_data()
        await srv.astart()
        w, jw = await joined(srv, uniq("w2"), room)
        expect(jw.get("epoch") != j["epoch"], f"epoch unchanged after the history was lost: {jw}")
        expect_eq(jw.get("seq"), 0, "seq of the room after its history was lost")
        await send_n(w, room, 2)
        x, rx = await joined(srv, name, room, since=3, epoch=j["epoch"])
        expect_eq((rx.get("recovered"), rx.get("epoch")), (False, jw["epoch"]), "resume with a lost epoch")
        gap = await x.event(op="gap", room=room)
        expect_eq((gap.get("reason"), gap.get("epoch")), ("epoch", jw["epoch"]), f"gap {gap}")
        expect_eq(seqs(await x.collect(room, 2)), [1, 2], "the new epoch's events")
        await close_all(a, b, w, x)
        return f"exit status after SIGTERM: {status}"
    finally:
        srv.close()


async def t_durability_normal():
    """--durability normal: an ack survives a killed process (§6)."""
    srv = new_server("--durability", "normal", "--rate-limit", "1000", "--rate-burst", "1000")
    try:
        room = uniq("r.normal")
        a, j = await joined(srv, uniq("dn"), room)
        acks = await send_n(a, room, 20, prefix="n")
        srv.kill9()
        await srv.astart()
        c, r = await joined(srv, uniq("dn2"), room)
        expect_eq((r.get("seq"), r.get("epoch")), (20, j["epoch"]), "seq and epoch after kill -9 with --durability normal")
        h = expect_ok(await c.request("history", room=room, limit=100))
        expect_eq([(e.get("seq"), e.get("cid")) for e in h.get("events", [])],
                  [(x["seq"], f"n-{i}") for i, x in enumerate(acks)], "acked messages after kill -9")
        await close_all(a, c)
    finally:
        srv.close()


# --- tokens ----------------------------------------------------------------------------------

SECRET = "s3cr3t-" + "%016x" % random.getrandbits(64)


async def t_tokens():
    secret_file = write_file("auth-secret", SECRET)
    srv = new_server("--auth-secret-file", secret_file, anonymous=False)
    try:
        now = int(time.time())
        tok = cs.make_jwt(SECRET, {"sub": "u-1", "name": "User One", "exp": now + 3600})
        c = await ChatClient.connect(srv.url())
        r = expect_ok(await c.request("hello", v=1, token=tok, name="ignored"), "hello with a valid token")
        expect_eq((r.get("user"), r.get("name")), ("u-1", "User One"), "user and name from the token (it wins over name)")
        await c.close()
        tok = cs.make_jwt(SECRET, {"sub": "u-2", "exp": now + 3600})
        c, r = await hello_client(srv, token=tok)
        expect_eq((r.get("user"), r.get("name")), ("u-2", "u-2"), "name defaults to sub")
        await c.close()
        c = await ChatClient.connect(srv.url() + "?token=" + urllib.parse.quote(tok))
        r = expect_ok(await c.request("hello", v=1), "hello with the token in the URL")
        expect_eq(r.get("user"), "u-2", "user from the URL token")
        await c.close()
        bad = {
            "expired": cs.make_jwt(SECRET, {"sub": "u", "exp": now - 120}),
            "bad signature": cs.make_jwt(SECRET + "x", {"sub": "u", "exp": now + 3600}),
            "alg none": cs.make_jwt(SECRET, {"sub": "u", "exp": now + 3600}, alg="none", signature=""),
            "alg none, HS256 signature": cs.make_jwt(SECRET, {"sub": "u", "exp": now + 3600},
                                                      header={"alg": "none", "typ": "JWT"}),
            "alg HS512": cs.make_jwt(SECRET, {"sub": "u", "exp": now + 3600}, alg="HS512"),
            "no exp": cs.make_jwt(SECRET, {"sub": "u"}),
            "no sub": cs.make_jwt(SECRET, {"exp": now + 3600}),
            "nbf in the future": cs.make_jwt(SECRET, {"sub": "u", "exp": now + 3600, "nbf": now + 600}),
            "malformed": "abc.def",
            "not base64": "!!!.???.***",
            "empty": "",
        }
        c = await ChatClient.connect(srv.url())
        for what, t in bad.items():
            expect_error(await c.request("hello", v=1, token=t), "unauthorized", f"hello with a token: {what}")
        expect_error(await c.request("hello", v=1, token=cs.make_jwt(SECRET, {"sub": "s" * 129, "exp": now + 3600})),
                     ("unauthorized", "bad_request"), "hello with a token whose sub has 129 characters")
        expect_error(await c.request("hello", v=1, name="anon"), "unauthorized", "hello without a token (no --anonymous)")
        expect_error(await c.request("join", room="lobby"), "unauthorized", "join after failed hellos")
        expect_ok(await c.request("hello", v=1, token=tok), "a valid hello after failed ones")
        await c.close()
        tok = cs.make_jwt(SECRET, {"sub": "u-3", "exp": now + 3600, "rooms": ["team.*", "lobby"]})
        c, _ = await hello_client(srv, token=tok)
        for room in ("team.alpha", "lobby"):
            expect_ok(await c.request("join", room=room), f"join {room} with rooms [team.*, lobby]")
        for room in ("lobbyx", "other", "xteam.a", "Team.a"):
            expect_error(await c.request("join", room=room), "forbidden", f"join {room} with rooms [team.*, lobby]")
        expect_error(await c.request("history", room="other"), "forbidden", "history of a room the token does not allow")
        await c.close()
        c = await ChatClient.connect(srv.url())
        r = expect_ok(await c.request("hello", v=1, token=tok, rooms=[{"room": "team.b"}, {"room": "secret"}]))
        by = {e.get("room"): e for e in r.get("rooms", [])}
        expect_eq((by.get("team.b") or {}).get("ok"), True, "hello rooms: allowed room")
        expect_error(by.get("secret"), "forbidden", "hello rooms: room the token does not allow")
        expect_ok(await c.request("send", room="team.b", cid="t1", body="hi"), "send in the allowed room")
        await c.close()
        # a connection whose token expires is closed with 4001
        short = cs.make_jwt(SECRET, {"sub": "u-4", "exp": int(time.time()) + 2})
        c, _ = await hello_client(srv, token=short)
        code, reason = await c.closed_with(12)
        expect_eq(code, 4001, f"close when the token expires (reason {reason!r})")
    finally:
        srv.close()


# --- origins ---------------------------------------------------------------------------------

async def t_origins():
    origin, appid = "https://chat.example.com", "wxa1b2c3d4e5f60789"
    srv = new_server("--allowed-origin", origin, "--allowed-appid", appid)
    try:
        refused = {"no Origin, no Referer": {},
                   "another Origin": {"Origin": "https://evil.example.com"},
                   "Origin with another port": {"Origin": origin + ":8443"},
                   "another appid": {"Referer": "https://servicewechat.com/wx0000000000000000/3/page-frame.html"},
                   "the appid on another host": {"Referer": f"https://evil.example.com/{appid}/3/page-frame.html"},
                   "the appid over http": {"Referer": f"http://servicewechat.com/{appid}/3/page-frame.html"}}
        details = []
        for what, headers in refused.items():
            status, _, body = cs.raw_upgrade(srv.port, "/chat", headers)
            expect_eq(status, 403, f"upgrade with {what}")
            text = body.decode(errors="replace").strip()
            expect(text and "\n" not in text, f"403 without a one-line reason ({what}): {body!r}")
            details.append(text)
        c = await ChatClient.connect(srv.url(), origin=origin)
        expect_ok(await c.request("hello", v=1, name=uniq("browser")), "hello from an allowed Origin")
        await c.close()
        c = await ChatClient.connect(srv.url(), headers={"Referer": f"https://servicewechat.com/{appid}/12/page-frame.html"})
        expect_ok(await c.request("hello", v=1, name=uniq("mp")), "hello from an allowed mini-program Referer")
        await c.close()
        status, _, _ = srv.http("GET", "/health")
        expect_eq(status, 200, "GET /health with --allowed-origin (not an upgrade)")
        return f"reason: {details[0]!r}"
    finally:
        srv.close()


# --- the HTTP API ----------------------------------------------------------------------------

def api(method, path, body=None, key=API_KEY, headers=None):
    h = dict(headers or {})
    if key is not None:
        h["Authorization"] = f"Bearer {key}"
    if body is not None:
        h.setdefault("Content-Type", "application/json")
    status, hdrs, data = MAIN.http(method, path, body, h)
    try:
        doc = json.loads(data) if data else None
    except ValueError:
        doc = data
    return status, hdrs, doc


async def t_http_api():
    room = uniq("orders.r")
    loop = asyncio.get_running_loop()

    async def call(*a, **k):
        return await loop.run_in_executor(None, lambda: api(*a, **k))

    wname = uniq("web")
    w, j = await joined(MAIN, wname, room)
    msg = {"user": "system", "name": "Shop", "body": {"text": "Your order shipped"}}
    path = f"/api/rooms/{room}/messages"
    for what, key in (("no key", None), ("a wrong key", API_KEY + "x")):
        status, _, doc = await call("POST", path, msg, key=key, headers={"Idempotency-Key": "order-1"})
        expect_eq(status, 401, f"POST with {what}")
        expect(isinstance(doc, dict) and doc.get("code") == "unauthorized", f"401 body: {doc!r}")
    status, _, _ = await call("GET", "/api/rooms", key=None)
    expect_eq(status, 401, "GET /api/rooms without a key")
    status, hdrs, doc = await call("POST", path, msg, headers={"Idempotency-Key": "order-1"})
    expect_eq(status, 200, f"POST message: {doc}")
    expect("application/json" in hdrs.get("content-type", ""), f"Content-Type {hdrs.get('content-type')!r}")
    expect(isinstance(doc, dict) and doc.get("room") == room and doc.get("seq") == 1 and isinstance(doc.get("ts"), int)
           and doc.get("duplicate") is False, f"POST answer: {doc}")
    status, _, doc2 = await call("POST", path, msg, headers={"Idempotency-Key": "order-1"})
    expect_eq(status, 200, "POST again")
    expect(doc2.get("seq") == 1 and doc2.get("duplicate") is True and doc2.get("ts") == doc["ts"],
           f"POST with the same Idempotency-Key: {doc2}")
    ev = await w.event(op="message", room=room)
    want = {"seq": 1, "user": "system", "name": "Shop", "cid": "order-1", "body": msg["body"], "ts": doc["ts"]}
    for k, v in want.items():
        expect_eq(ev.get(k), v, f"delivered event {k}")
    status, _, doc3 = await call("POST", path, {**msg, "cid": "order-2"})
    expect_eq((status, doc3.get("seq"), doc3.get("duplicate")), (200, 2, False), "POST with cid in the body")
    await w.collect(room, 2)
    await w.no_event(op="message", room=room, within=0.3)
    status, _, h = await call("GET", f"{path}?after=0&limit=10")
    expect_eq(status, 200, "GET messages")
    expect_eq((h.get("room"), h.get("seq"), h.get("epoch"), h.get("oldest"), h.get("more")), (room, 2, j["epoch"], 1, False),
              "GET messages (room, seq, epoch, oldest, more)")
    expect_eq([(e.get("seq"), e.get("cid")) for e in h.get("events", [])], [(1, "order-1"), (2, "order-2")], "GET messages events")
    status, _, h = await call("GET", f"{path}?before=2&limit=10")
    expect_eq((status, seqs(h.get("events", []))), (200, [1]), "GET messages before 2")
    status, _, p = await call("GET", f"/api/rooms/{room}/presence")
    expect_eq(status, 200, "GET presence")
    expect_eq((p.get("room"), p.get("count"), [u.get("user") for u in p.get("users", [])]), (room, 1, [wname]),
              f"GET presence {p}")
    status, _, rl = await call("GET", "/api/rooms")
    expect_eq(status, 200, "GET /api/rooms")
    names = [x.get("room") for x in rl.get("rooms", [])]
    expect(names == sorted(names), f"GET /api/rooms not sorted: {names[:10]}")
    entry = next((x for x in rl.get("rooms", []) if x.get("room") == room), None)
    expect(entry is not None and entry.get("seq") == 2 and entry.get("epoch") == j["epoch"] and entry.get("online") == 1,
           f"GET /api/rooms entry for {room}: {entry}")
    status, _, doc = await call("POST", "/api/rooms/bad%20room/messages", msg, headers={"Idempotency-Key": "x"})
    expect(status == 400 and isinstance(doc, dict) and doc.get("code") == "bad_request", f"POST to a bad room name: {status} {doc}")
    status, _, doc = await call("POST", path, {**msg, "body": "x" * (MAIN_MAX_BODY + 10)}, headers={"Idempotency-Key": "big"})
    expect(status == 413 and isinstance(doc, dict) and doc.get("code") == "too_large", f"POST a body over --max-body: {status} {doc}")
    status, _, doc = await call("POST", path, b"{not json", headers={"Idempotency-Key": "nj"})
    expect(status == 400 and isinstance(doc, dict) and doc.get("code") == "bad_request", f"POST invalid JSON: {status} {doc}")
    status, _, doc = await call("POST", path, {"name": "Shop", "body": 1}, headers={"Idempotency-Key": "nouser"})
    expect(status == 400 and isinstance(doc, dict) and doc.get("code") == "bad_request", f"POST without user: {status} {doc}")
    await w.close()


# --- metrics ---------------------------------------------------------------------------------

async def t_metrics():
    status, _, body = MAIN.http("GET", "/metrics")
    expect_eq(status, 200, "GET /metrics")
    lines = [x for x in body.decode(errors="replace").splitlines() if x.startswith("tongdao_chat_")]
    expect(lines, "no metric line starting with tongdao_chat_")
    return f"{len(lines)} tongdao_chat_ lines, e.g. {lines[0]!r}"


async def t_server_logs():
    reports = [(s.port, s.sanitizer_report()) for s in SERVERS]
    bad = [f"port {p}:\n{r}" for p, r in reports if r]
    expect(not bad, "sanitizer reports in the server output:\n" + "\n".join(bad)[:4000])


# --- main ------------------------------------------------------------------------------------

CHECKS = [
    ("health", t_health), ("subprotocol offered", t_subprotocol_offered),
    ("subprotocol not offered", t_subprotocol_not_offered), ("subprotocol other refused 400", t_subprotocol_other_refused),
    ("ping before hello", t_ping_before_hello), ("requests before hello: unauthorized", t_requests_before_hello),
    ("hello anonymous", t_hello_anonymous), ("hello twice: bad_request", t_hello_second),
    ("hello unsupported_version", t_hello_unsupported_version), ("hello without v", t_hello_missing_v),
    ("hello names", t_hello_names), ("hello without name", t_hello_no_name),
    ("same name is the same user", t_hello_same_name_same_user), ("hello rooms", t_hello_rooms),
    ("hello rooms: a bad entry", t_hello_rooms_bad_entry),
    ("join new room", t_join_new_room), ("join bad fields: bad_request", t_join_bad_rooms),
    ("join already", t_join_already), ("join without since", t_join_without_since),
    ("join since = seq", t_join_since_equal_seq), ("join catch-up while sending, resumes", t_join_catchup_concurrent),
    ("leave", t_leave), ("limit_exceeded", t_limit_exceeded),
    ("send: reply then own event", t_send_reply_then_event), ("send errors", t_send_errors),
    ("send excludeSelf", t_send_exclude_self), ("send duplicate cid", t_send_duplicate_cid),
    ("too_large", t_too_large), ("rate_limited", t_rate_limited),
    ("edit and delete", t_edit_delete), ("history", t_history),
    ("read marks", t_read_marks), ("unread counts", t_unread_counts),
    ("typing", t_typing), ("presence", t_presence), ("presence: no flapping", t_presence_no_flapping),
    ("rooms", t_rooms),
    ("malformed requests", t_malformed), ("no op: id null", t_no_op), ("ids", t_ids), ("wrong types", t_wrong_types),
    ("huge numbers", t_huge_numbers), ("deep nesting", t_deep_nesting), ("binary frame", t_binary_frame),
    ("too many bad requests: 1008", t_too_many_bad_requests),
    ("too_large counts toward 1008", t_too_large_counts),
    ("unsupported_version counts toward 1008", t_unsupported_version_counts),
    ("frame over maxFrame: 1009", t_frame_over_max), ("deflated frame over maxFrame: 1009", t_frame_over_max_deflate),
    ("hello timeout: 4000", t_hello_timeout),
    ("epoch mismatch: gap epoch", t_epoch_mismatch), ("retention: gap retention", t_retention),
    ("restart: cid, read mark, epoch kept; SIGTERM; lost history", t_restart),
    ("durability normal: acks survive kill -9", t_durability_normal),
    ("tokens", t_tokens), ("origins: 403", t_origins), ("HTTP API", t_http_api),
    ("metrics", t_metrics), ("server logs: no sanitizer report", t_server_logs),
]


async def main(only):
    global MAIN
    runner = cs.Runner("chat.protocol")
    key_file = write_file("api-key", f"  {API_KEY} \n")
    try:
        MAIN = new_server("--presence-grace", str(MAIN_GRACE), "--rate-limit", "1000", "--rate-burst", "1000",
                          "--api-key-file", key_file, "--max-body", str(MAIN_MAX_BODY),
                          "--max-rooms-per-connection", str(MAIN_MAX_ROOMS))
    except RuntimeError as e:
        print(f"FAIL start: {e}", flush=True)
        print("0 passed, 1 failed", flush=True)
        return 1
    try:
        for name, fn in CHECKS:
            if only and not any(o in name for o in only):
                continue
            await runner.run(name, fn, timeout=120)
            if not MAIN.running():
                print(f"FAIL the main server died (status {MAIN.proc.returncode}) after '{name}':\n"
                      f"{MAIN.output()[-4000:]}", flush=True)
                runner.failed.append(f"server alive after {name}")
                try:
                    await MAIN.astart()
                except RuntimeError as e:
                    print(f"could not restart it: {e}", flush=True)
                    break
    finally:
        for s in SERVERS:
            s.close()
    if runner.failed:
        for s in SERVERS:
            out = s.output(skip_empty=True).strip()
            if out:
                print(f"--- output of tongdao-server {' '.join(s.args)} (last 3000 characters) ---\n{out[-3000:]}", flush=True)
    shutil.rmtree(TMP, ignore_errors=True)
    return runner.finish()


if __name__ == "__main__":
    PATH = cs.server_path(sys.argv)
    only = [a for a in sys.argv[1:] if a.startswith("-k=")]
    only = [a[3:] for a in only]
    try:
        sys.exit(asyncio.run(asyncio.wait_for(main(only), 280)))
    except asyncio.TimeoutError:
        print("FAIL overall deadline (280 s) passed\n0 passed, 1 failed", flush=True)
        sys.exit(1)
