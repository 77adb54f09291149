"""Several tongdao-server nodes on one Redis, for the Redis system tests: the Redis (a
standalone redis-server or a three-master Redis Cluster, tests/support/redis_fixture.py)
and the nodes (chat_support.ChatServer with --redis URL or --redis-cluster SEEDS in place of
--data-dir, and --node-id NAME), each on a free loopback port, stopped by its pid.
"""

import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "support"))
from chat_support import ChatServer  # noqa: E402
import redis_fixture  # noqa: E402
from redis_fixture import RedisCluster, RedisSentinelSet, RedisServer  # noqa: E402


class Redis:
    """The Redis the nodes share: standalone (`--redis redis://127.0.0.1:P`) or a cluster of
    three masters (`--redis-cluster` with a different subset of the masters as seeds for each
    node). The same calls for both: start/astart, kill9, flushall, clients, subscribers."""

    def __init__(self, cluster=False, appendonly=True, appendfsync="always", sentinel=False, wait_replicas=1):
        self.cluster = cluster
        self.sentinel = sentinel
        self.wait_replicas = wait_replicas
        if sentinel:
            self.impl = RedisSentinelSet()  # a master, two replicas, three Sentinels
        elif cluster:
            self.impl = RedisCluster(appendonly=appendonly, appendfsync=appendfsync)
        else:
            self.impl = RedisServer(appendonly=appendonly, appendfsync=appendfsync)

    def engine_args(self, index):
        """The engine option of node `index` (behind Sentinel: acks wait for `wait_replicas`)."""
        if self.sentinel:
            return ["--redis", self.impl.url(), "--redis-wait-replicas", str(self.wait_replicas)]
        if not self.cluster:
            return ["--redis", self.impl.url()]
        n = len(self.impl.nodes)
        subsets = [None, [index % n], [index % n, (index + 1) % n]]  # all, one, two of the masters
        return ["--redis-cluster", self.impl.seeds(subsets[index % len(subsets)])]

    def describe(self):
        if self.sentinel:
            return (f"a master, {len(self.impl.servers()) - 1} replicas and {len(self.impl.sentinels)} Sentinels "
                    f"({self.impl.url()})")
        if self.cluster:
            return f"Redis Cluster {self.impl.seeds()} (dirs {', '.join(n.dir for n in self.impl.nodes)})"
        return f"redis-server {self.impl.address()} (dir {self.impl.dir})"

    def servers(self):
        if self.sentinel:
            return self.impl.servers()
        return self.impl.nodes if self.cluster else [self.impl]

    def start(self):
        self.impl.start()
        return self

    async def astart(self):
        await self.impl.astart()
        return self

    def running(self):
        return self.impl.running()

    def kill9(self):
        self.impl.kill9()

    def close(self):
        self.impl.close()

    def flushall(self):
        self.impl.flushall()

    def clients(self):
        return self.impl.clients()

    def subscribers(self):
        return self.impl.subscribers()

    def kill_client(self, client):
        return self.impl.kill_client(client)

    def commandstats(self):
        return self.impl.commandstats()

    def output(self):
        return self.impl.output()

    def room_subscribers(self, room):
        """How many connections are subscribed to the room's channel (PUBSUB SHARDNUMSUB of
        td:{ROOM}:e, summed over the servers: on a Cluster only the slot's master counts it)."""
        channel = f"td:{{{room}}}:e"
        total = 0
        for s in self.servers():
            r = s.call("PUBSUB", "SHARDNUMSUB", channel, check=False)
            if isinstance(r, list) and len(r) == 2 and isinstance(r[1], int):
                total += r[1]
        return total


class ChatNode(ChatServer):
    """tongdao-server --anonymous as one node on a shared Redis: the engine options in place of
    --data-dir, and --node-id. Restarts keep port and node id."""

    def __init__(self, path, *args, engine_args, node_id, **kw):
        super().__init__(path, *args, **kw)
        self.engine_args = [str(a) for a in engine_args]
        self.node_id = node_id

    def command(self):
        cmd = [self.path, "--host", "127.0.0.1", "--port", str(self.port), "--threads", str(self.threads),
               "--log-level", self.log_level]
        if self.anonymous:
            cmd.append("--anonymous")
        return cmd + self.engine_args + ["--node-id", self.node_id] + self.args

    def __repr__(self):
        return f"{self.node_id} (port {self.port})"


def make_nodes(path, redis, count, *args, prefix="node", **kw):
    """`count` nodes (not started) named PREFIX-0.. on `redis`, each with `args`."""
    return [ChatNode(path, *args, engine_args=redis.engine_args(i), node_id=f"{prefix}-{i}", **kw)
            for i in range(count)]


def require_redis(cluster=False):
    redis_fixture.require_redis(cluster)


def local_ports(pid):
    """The local TCP ports of the sockets process `pid` holds (from /proc; empty if unreadable)."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return set()
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f, None)
                for line in f:
                    parts = line.split()
                    if len(parts) > 9 and parts[9] in inodes:
                        ports.add(int(parts[1].rsplit(":", 1)[1], 16))
        except OSError:
            continue
    return ports


def redis_connections_of(redis, node):
    """The entries of CLIENT LIST (of every Redis process) that are connections of `node`:
    named tongdao:NODE:... when the engine names them, else found by their client port
    among the sockets the node's process holds."""
    clients = redis.clients()
    named = [c for c in clients if c.get("name", "").startswith(f"tongdao:{node.node_id}:")]
    if named:
        return named
    if not node.running():
        return []
    ports = local_ports(node.proc.pid)
    return [c for c in clients if c.get("addr", "").rpartition(":")[2].isdigit()
            and int(c["addr"].rpartition(":")[2]) in ports]


def node_subscribers(redis, node):
    """The connections of `node` in subscriber mode (redis_fixture.is_subscriber)."""
    return [c for c in redis_connections_of(redis, node) if redis_fixture.is_subscriber(c)]
