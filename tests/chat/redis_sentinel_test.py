#!/usr/bin/python3
"""chat.redis_sentinel: the loss test (loss_test.py) across three tongdao-server nodes on a
Redis master with two replicas and three Sentinels (`--redis redis-sentinel://...#tongdao
--redis-wait-replicas 1`): the master killed with SIGKILL, the Sentinels promote a replica,
the nodes follow it, and nothing acked is lost, nothing stored or delivered twice, no room
starts a new history (docs/SCALING.md "Redis behind Sentinel").

    /usr/bin/python3 redis_sentinel_test.py [PATH/tongdao-server] [--clients 30 --messages 9000 ...]
                                            [--wait-replicas 1]

Redis keeps nothing on disk here (no AOF, no snapshot): what survives the master is what
its replicas have, which is what the nodes wait for before they ack or deliver. The clients,
their outboxes, the cuts and the verification are loss_test.py's; each client connects to a
node picked at random on every (re)connection. During the run, as the acks pass a fifth, two
fifths and three fifths of the messages:

- node-1 is killed with SIGKILL and started again after 2-4 s;
- both replicas are stopped (SIGSTOP) for 2 s: a probe's send on node-0 must be answered
  `unavailable` (no replica has it), and sent again with the same cid once they run
  (SIGCONT), acked, stored once;
- the master is killed with SIGKILL; the run goes on once the Sentinels name a replica and
  the other replica follows it (bounded: 30 s).

(A switch while the old master runs and takes writes — `SENTINEL FAILOVER`, a partition — may
lose what it acked before its replicas moved: Redis' own limit, which the nodes report as a
new epoch; docs/SCALING.md. It is not part of this test.)

At the end, besides loss_test.py's verification (every resume recovered, in the same epoch):
every room's history is the same from every node, the probe's message is stored once, and
every node's Redis connections are on the new master. Exit 0 passed, 1 failed, 77
redis-server or the websockets module is missing.
"""

import asyncio
import os
import signal
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chat_nodes  # noqa: E402
import chat_support as cs  # noqa: E402
import loss_test  # noqa: E402
import redis_loss_test  # noqa: E402
from redis_loss_test import check_nodes, restart_node  # noqa: E402

FAILOVER_WITHIN = 30.0
UNAVAILABLE_WITHIN = 5.0  # WAIT's 1 s, and what queued behind it
REDIS = None
PROBE = {}


async def wait_acked(t, fraction):
    while t.acked < t.total * fraction:
        check_nodes(t)
        await asyncio.sleep(0.05)


async def probe_unreplicated(t):
    """A send while no replica runs is answered unavailable; the same cid after, acked once."""
    replicas = [s for s in REDIS.servers() if s is not REDIS.impl.master()]
    c, _ = await cs.hello_client(t.servers[0], "probe", timeout=loss_test.HELLO_TIMEOUT)
    room = PROBE["room"] = "probe.room"
    cs.expect_ok(await c.request("join", room=room), "probe join")
    for r in replicas:
        os.kill(r.proc.pid, signal.SIGSTOP)
    print(f"[{t.now():7.2f}s] SIGSTOP both replicas at {t.acked} acked", flush=True)
    try:
        started = time.monotonic()
        reply = await c.request("send", room=room, cid="probe-1", body={"probe": 1}, timeout=UNAVAILABLE_WITHIN + 5)
        took = time.monotonic() - started
        PROBE["paused reply"] = reply
        cs.expect_error(reply, "unavailable", "a send while no replica runs")
        cs.expect(took <= UNAVAILABLE_WITHIN, f"the send's unavailable took {took:.2f}s")
        await asyncio.sleep(max(0.0, 2.0 - took))
    finally:
        for r in replicas:
            os.kill(r.proc.pid, signal.SIGCONT)
    print(f"[{t.now():7.2f}s] SIGCONT both replicas; the probe's send was answered {reply.get('code')} "
          f"in {took:.2f}s", flush=True)
    deadline = time.monotonic() + 20
    while True:  # the replicas catch up; the outbox's resend
        reply = await c.request("send", room=room, cid="probe-1", body={"probe": 1})
        if reply.get("ok") is True or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    PROBE["ack"] = cs.expect_ok(reply, "the probe's resend once the replicas run")
    await c.close()


async def disrupt(t):
    await wait_acked(t, 0.2)
    await restart_node(t, t.servers[1])

    await wait_acked(t, 0.4)
    await probe_unreplicated(t)
    t.stats["replicas stopped (SIGSTOP, 2 s)"] += 1

    await wait_acked(t, 0.6)
    old = REDIS.impl.kill_master()
    t.stats["masters killed (SIGKILL)"] += 1
    down = time.monotonic()
    print(f"[{t.now():7.2f}s] SIGKILL the master :{old.port} at {t.acked} acked", flush=True)
    new = await REDIS.impl.await_failover(old, FAILOVER_WITHIN)
    t.stats["failover took (s)"] = round(time.monotonic() - down, 2)
    print(f"[{t.now():7.2f}s] the Sentinels promoted :{new.port} after {time.monotonic() - down:.2f}s "
          f"({t.acked} acked)", flush=True)


async def verify_more(t, checker, rooms, final, histories):
    fails = await redis_loss_test.histories_agree(t, rooms, final, histories)
    r = cs.expect_ok(await checker.request("history", room=PROBE.get("room", "probe.room"), after=0, limit=100),
                     "the probe room's history")
    probes = [e for e in r.get("events", []) if e.get("cid") == "probe-1"]
    if len(probes) != 1 or probes[0].get("seq") != PROBE.get("ack", {}).get("seq"):
        fails.append(f"the probe's message is stored {len(probes)} times ({probes}); its ack {PROBE.get('ack')}")
    master = REDIS.impl.master()
    deadline = time.monotonic() + 10
    while True:
        missing = [n for n in t.servers if len(chat_nodes.redis_connections_of(REDIS, n)) < 2]
        if not missing or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    for n in missing:
        fails.append(f"{n} has {len(chat_nodes.redis_connections_of(REDIS, n))} connections to the master "
                     f":{master.port} (a command and a subscriber connection expected)")
    print(f"probe: {PROBE.get('paused reply', {}).get('code')} while the replicas were stopped, then seq "
          f"{PROBE.get('ack', {}).get('seq')}; the master now :{master.port}", flush=True)
    return fails


async def run(args, path):
    global REDIS
    REDIS = chat_nodes.Redis(sentinel=True, wait_replicas=args.wait_replicas)
    return await redis_loss_test.run_on_nodes("chat.redis_sentinel", args, path, REDIS, disrupt,
                                              "a node killed, the replicas stopped, the master killed", verify_more)


if __name__ == "__main__":
    # sized for an ASan build on two cores: three nodes, three Redis and three Sentinels beside the clients
    p = redis_loss_test.parse(__doc__, deadline=200)
    p.add_argument("--wait-replicas", type=int, default=1,
                   help="the nodes' --redis-wait-replicas (0 shows what the probe catches without it)")
    redis_loss_test.main(run, p)
