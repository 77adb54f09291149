#!/usr/bin/python3
"""chat.redis_loss: the loss test (loss_test.py) across three tongdao-server nodes on one
standalone Redis (appendonly yes, appendfsync always): nothing acked is lost, nothing is
stored or delivered twice, through cut connections, a killed node, a killed subscriber
connection and a killed Redis (docs/PROTOCOL.md §4 send, §5, §6).

    /usr/bin/python3 redis_loss_test.py [PATH/tongdao-server] [--clients 30 --messages 9000 ...]

The clients, their outboxes, the cuts and the verification are loss_test.py's; here each
client connects to a node picked at random on every (re)connection. During the run, at
about a quarter, a half and three quarters of the messages acked:

- node-1 is killed with SIGKILL and started again (same port, same node id) after 2-4 s;
- node-2's subscriber connection is killed with CLIENT KILL (the connection of its process
  in subscriber mode: named tongdao:node-2:sub, or found by its port);
- redis-server is killed with SIGKILL and started again on the same port and dir (its AOF)
  after 0.5-1.5 s.

(loss_test.py's --restarts does not apply here.) At the end, besides loss_test.py's verification: every room's history is the same from every
node, and node-2 has a subscriber connection again. Exit 0 passed, 1 failed, 77 redis-server
or the websockets module is missing.
"""

import argparse
import asyncio
import json
import os
import random
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chat_nodes  # noqa: E402
import chat_support as cs  # noqa: E402
import loss_test  # noqa: E402

NODE_COUNT = 3
REDIS = None


def check_nodes(t, down=None):
    """Raises when a node other than `down` (the one killed on purpose) is not running."""
    for node in t.servers:
        if node is not down and not node.running():
            report = node.sanitizer_report()
            raise RuntimeError(f"{node} exited (status {node.proc.returncode}) at {t.acked} acked"
                               + (f"; sanitizer report:\n{report[:3000]}" if report else ""))


async def wait_acked(t, fraction):
    while t.acked < t.total * fraction:
        check_nodes(t)
        await asyncio.sleep(0.05)


async def restart_node(t, victim):
    """`victim` killed with SIGKILL and started again (same port, same node id) after 2-4 s."""
    victim.kill9()
    t.stats["server restarts (SIGKILL)"] += 1
    down = time.monotonic()
    print(f"[{t.now():7.2f}s] SIGKILL {victim} at {t.acked} acked", flush=True)
    until = time.monotonic() + random.uniform(2, 4)
    while time.monotonic() < until:
        check_nodes(t, down=victim)
        await asyncio.sleep(0.05)
    await victim.astart()
    t.downtimes.append(time.monotonic() - down)
    print(f"[{t.now():7.2f}s] {victim} back after {t.downtimes[-1]:.2f}s", flush=True)


async def disrupt(t):
    """The kills, in order, as the acks pass a quarter, a half and three quarters."""
    nodes = t.servers
    await wait_acked(t, 0.25)
    await restart_node(t, nodes[1])

    await wait_acked(t, 0.5)
    target = nodes[2]
    subs = chat_nodes.node_subscribers(REDIS, target)
    if not subs:
        conns = chat_nodes.redis_connections_of(REDIS, target)
        raise RuntimeError(f"no subscriber connection of {target} in CLIENT LIST; its connections: "
                           f"{json.dumps(conns)[:1500]}")
    for c in subs:
        killed = REDIS.kill_client(c)
        t.stats["subscriber connections killed (CLIENT KILL)"] += killed
        print(f"[{t.now():7.2f}s] CLIENT KILL of {target}'s subscriber connection id={c.get('id')} "
              f"name={c.get('name') or '-'} cmd={c.get('cmd')} at {t.acked} acked: {killed}", flush=True)

    await wait_acked(t, 0.75)
    REDIS.kill9()
    t.stats["redis restarts (SIGKILL)"] += 1
    down = time.monotonic()
    print(f"[{t.now():7.2f}s] SIGKILL redis-server at {t.acked} acked", flush=True)
    await asyncio.sleep(random.uniform(0.5, 1.5))
    await REDIS.astart()
    print(f"[{t.now():7.2f}s] redis-server back after {time.monotonic() - down:.2f}s", flush=True)


async def histories_agree(t, rooms, final, histories):
    """Failures (strings): a room's history read from a node other than the first differs."""
    fails = []
    for node in t.servers[1:]:
        c, _ = await cs.hello_client(node, f"loss-checker-{node.node_id}", timeout=loss_test.HELLO_TIMEOUT)
        for room in rooms:
            events, _ = await loss_test.history_of(c, room, final[room])
            if events != histories[room][0]:
                diff = next((i for i, (a, b) in enumerate(zip(events, histories[room][0])) if a != b),
                            min(len(events), len(histories[room][0])))
                fails.append(f"{room}: history on {node} differs from the one on {t.server} "
                             f"({len(events)} vs {len(histories[room][0])} events, first difference at index {diff})")
        await c.close()
    return fails


async def verify_more(t, checker, rooms, final, histories):
    """Every room's history the same from every node; node-2 subscribed again."""
    fails = await histories_agree(t, rooms, final, histories)
    deadline = time.monotonic() + 10
    while not chat_nodes.node_subscribers(REDIS, t.servers[2]):
        if time.monotonic() > deadline:
            fails.append(f"{t.servers[2]} has no subscriber connection 10 s after the end "
                         f"(its connections: {json.dumps(chat_nodes.redis_connections_of(REDIS, t.servers[2]))[:800]})")
            break
        await asyncio.sleep(0.2)
    stats = REDIS.commandstats()
    top = sorted(stats.items(), key=lambda kv: -kv[1])[:10]
    print(f"Redis commands since its last start (calls, scripts' own included): {', '.join(f'{k} {v}' for k, v in top)}", flush=True)
    return fails


async def run_on_nodes(title, args, path, redis, disrupt, what, verify_more):
    """loss_test.run on NODE_COUNT nodes of `redis` (started here, closed at the end)."""
    nodes = chat_nodes.make_nodes(path, redis, NODE_COUNT, "--rate-limit", "1000", "--rate-burst", "1000",
                                  "--presence-grace", "1")
    t0 = time.monotonic()
    try:
        await redis.astart()
        result = await loss_test.run(
            args, nodes, disrupt, lambda: f"{redis.describe()}; nodes {', '.join(map(repr, nodes))}; {what}",
            verify_more)
        if result != 0 and redis.output():
            print(f"--- Redis output (last 4000 characters) ---\n{redis.output()[-4000:]}", flush=True)
        return result
    finally:
        redis.close()
        print(f"{title}: {time.monotonic() - t0:.1f}s", flush=True)


def parse(doc=__doc__, deadline=180):
    p = loss_test.add_arguments(argparse.ArgumentParser(description=doc.split("\n")[0]))
    # sized for an ASan build on two cores, three nodes and Redis beside the clients
    p.set_defaults(clients=30, rooms=3, messages=9000, send_seconds=60, deadline=deadline, cut_ms=500)
    return p


def main(run, p):
    """The command line of a loss test on nodes: `run(args, path)` with the arguments of `p`."""
    args = p.parse_args(sys.argv[1:])
    path = cs.server_path([sys.argv[0]] + ([args.server] if args.server else []))
    chat_nodes.require_redis()
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    print(f"seed {args.seed}", flush=True)
    sys.exit(asyncio.run(run(args, path)))


async def run_standalone(args, path):
    global REDIS
    REDIS = chat_nodes.Redis(cluster=False, appendonly=True, appendfsync="always")
    return await run_on_nodes("chat.redis_loss", args, path, REDIS, disrupt,
                              "a node killed, a subscriber connection killed, Redis killed", verify_more)


if __name__ == "__main__":
    main(run_standalone, parse())
