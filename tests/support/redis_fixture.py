"""Redis for the tests: a standalone redis-server, or a Redis Cluster of three masters, each
process on a free loopback port with a temporary directory of its own, started and stopped
by its pid; a small RESP client for the commands a test needs (PING, CLIENT LIST, CLIENT
KILL, INFO, FLUSHALL, CLUSTER INFO).

    redis = RedisServer(appendonly=True, appendfsync="always").start()
    redis.call("FLUSHALL")
    redis.kill9(); redis.start()        # same port, same dir: an AOF restart
    redis.close()

    cluster = RedisCluster().start()     # three masters, cluster_state:ok on all three
    cluster.seeds()                      # "127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3"
    cluster.close()

    ha = RedisSentinelSet().start()      # a master, two replicas, three Sentinels watching it
    ha.url()                             # "redis-sentinel://127.0.0.1:S1,...#tongdao"
    old = ha.kill_master(); ha.wait_failover(old)
    ha.close()

`require_redis()` exits 77 (ctest SKIP) when redis-server (or, for a cluster, redis-cli) is
missing. Every wait here is bounded in time.
"""

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from echo_server import ManagedProcess, free_port  # noqa: E402

SKIP = 77
REDIS_SERVER = os.environ.get("REDIS_SERVER") or shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = os.environ.get("REDIS_CLI") or shutil.which("redis-cli") or "/usr/bin/redis-cli"


def require_redis(cluster=False):
    """Exits 77 (skip) when redis-server, or redis-cli for a cluster, cannot be run."""
    needed = [("redis-server", REDIS_SERVER)] + ([("redis-cli", REDIS_CLI)] if cluster else [])
    for name, path in needed:
        if not os.access(path, os.X_OK):
            print(f"SKIP: {name} not found (looked for {path}); install redis-server and redis-tools "
                  f"(scripts/install-deps.sh)", flush=True)
            sys.exit(SKIP)


# --- RESP ------------------------------------------------------------------------------------

class RespError(Exception):
    """An error reply (-ERR ...) of Redis."""


class Resp:
    """One connection to Redis speaking RESP2: `call(*args)` sends a command, returns its reply
    (str for simple strings, bytes for bulk strings, int, list, None; RespError is returned,
    not raised, for an error reply unless `check` is true)."""

    def __init__(self, port, host="127.0.0.1", timeout=5.0):
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @staticmethod
    def encode(args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        return b"".join(out)

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no complete reply from Redis in time")
        self.sock.settimeout(left)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("Redis closed the connection")
        self.buf += chunk

    def _line(self, deadline):
        while b"\r\n" not in self.buf:
            self._fill(deadline)
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _read(self, deadline):
        line = self._line(deadline)
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode(errors="replace")
        if kind == b"-":
            return RespError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self._fill(deadline)
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data
        if kind == b"*":
            n = int(rest)
            if n < 0:
                return None
            return [self._read(deadline) for _ in range(n)]
        raise ConnectionError(f"not a RESP reply: {line[:100]!r}")

    def call(self, *args, check=False, timeout=None):
        self.sock.sendall(self.encode(args))
        r = self._read(time.monotonic() + (timeout or self.timeout))
        if check and isinstance(r, RespError):
            raise r
        return r


def resp_call(port, *args, timeout=5.0, check=True):
    """One command on a connection of its own."""
    with Resp(port, timeout=timeout) as r:
        return r.call(*args, check=check)


def text(reply):
    return reply.decode(errors="replace") if isinstance(reply, bytes) else reply


def parse_info(reply):
    """INFO's answer as {field: value} (values as strings)."""
    out = {}
    for line in text(reply).splitlines():
        if line and not line.startswith("#") and ":" in line:
            k, _, v = line.partition(":")
            out[k] = v
    return out


def parse_client_list(reply):
    """CLIENT LIST as a list of {field: value} (id, addr, name, cmd, sub, ssub, psub, ...)."""
    clients = []
    for line in text(reply).splitlines():
        entry = {}
        for part in line.split(" "):
            k, sep, v = part.partition("=")
            if sep:
                entry[k] = v
        if entry:
            clients.append(entry)
    return clients


def is_subscriber(client):
    """A connection in subscriber mode: its last command (s)subscribes, or it has channels."""
    name = client.get("name", "")
    if name:
        if name.endswith(":sub"):
            return True
        if name.endswith(":cmd"):
            return False
    if client.get("cmd", "").lower() in ("subscribe", "ssubscribe", "psubscribe"):
        return True
    return any(client.get(k, "0").isdigit() and int(client.get(k, "0")) > 0 for k in ("sub", "ssub", "psub"))


def commandstats(reply):
    """INFO commandstats as {command: calls}."""
    out = {}
    for k, v in parse_info(reply).items():
        if k.startswith("cmdstat_"):
            fields = dict(p.split("=", 1) for p in v.split(",") if "=" in p)
            out[k[len("cmdstat_"):]] = int(fields.get("calls", 0))
    return out


# --- a standalone server ---------------------------------------------------------------------

class RedisServer(ManagedProcess):
    """redis-server on 127.0.0.1:port with --dir of its own (a temporary directory unless
    given); port and dir stay the same across restarts, so with appendonly the data comes
    back. Each run's output goes to a temporary file (`output()` has them all)."""

    def __init__(self, appendonly=False, appendfsync="everysec", port=None, data_dir=None, extra=(),
                 start_timeout=20.0):
        if appendfsync not in ("everysec", "always", "no"):
            raise ValueError(f"appendfsync {appendfsync!r}")
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.port = port or free_port()
        self.own_dir = data_dir is None
        self.dir = data_dir or tempfile.mkdtemp(prefix="tongdao-redis-")
        self.extra = [str(a) for a in extra]
        self.start_timeout = start_timeout
        self.proc = None
        self.logs = []
        self.runs = 0

    def command(self):
        return [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--protected-mode", "no",
                "--dir", self.dir, "--save", "", "--appendonly", "yes" if self.appendonly else "no",
                "--appendfsync", self.appendfsync, "--daemonize", "no", "--logfile", ""] + self.extra

    def url(self, db=None):
        return f"redis://127.0.0.1:{self.port}" + (f"/{db}" if db is not None else "")

    def address(self):
        return f"127.0.0.1:{self.port}"

    # - life -

    def _spawn(self):
        if self.running():
            raise RuntimeError(f"redis-server on port {self.port} is already running")
        self.runs += 1
        log = tempfile.TemporaryFile()
        self.logs.append((self.runs, log))
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                     cwd=self.dir)
        self._deadline = time.monotonic() + self.start_timeout

    def _check_started(self):
        """True once PING answers PONG and the data set is loaded; raises if it exited or took too long."""
        if self.proc.poll() is not None:
            raise RuntimeError(f"redis-server exited early (status {self.proc.returncode}); "
                               f"command: {' '.join(self.command())}\n{self.output(last=True)}")
        try:
            if resp_call(self.port, "PING", timeout=1.0, check=False) == "PONG":
                return True
        except (OSError, TimeoutError, ConnectionError):
            pass
        if time.monotonic() > self._deadline:
            self.kill9()
            raise RuntimeError(f"redis-server on port {self.port} did not answer PING within "
                               f"{self.start_timeout}s\n{self.output(last=True)}")
        return False

    def start(self):
        """Starts it (again: same port, same dir) and waits (bounded) until PING answers."""
        self._spawn()
        while not self._check_started():
            time.sleep(0.02)
        return self

    async def astart(self):
        """start() without blocking the event loop for longer than a PING."""
        self._spawn()
        while not self._check_started():
            await asyncio.sleep(0.02)
        return self

    stop_name = "redis-server"  # SIGTERM: Redis flushes its AOF and exits

    def restart(self, kill=True):
        """Stopped (SIGKILL, or SIGTERM when kill is false) and started again on the same port and dir."""
        self.kill9() if kill else self.stop()
        return self.start()

    def close(self):
        status = self.stop()
        if self.own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        return status

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    # - commands -

    def call(self, *args, timeout=5.0, check=True):
        """One command on a connection of its own; raises RespError for an error reply when `check`."""
        return resp_call(self.port, *args, timeout=timeout, check=check)

    def info(self, section=None):
        return parse_info(self.call("INFO", *([section] if section else [])))

    def clients(self):
        """CLIENT LIST, parsed (the connection asking is in it too, named by `cmd=client|list`)."""
        return [c for c in parse_client_list(self.call("CLIENT", "LIST")) if c.get("cmd") != "client|list"]

    def subscribers(self):
        """The connections in subscriber mode (see is_subscriber)."""
        return [c for c in self.clients() if is_subscriber(c)]

    def kill_client(self, client):
        """CLIENT KILL ID n of an entry of clients() (or of its id); the number of connections killed."""
        cid = client["id"] if isinstance(client, dict) else client
        return self.call("CLIENT", "KILL", "ID", str(cid))

    def commandstats(self):
        return commandstats(self.call("INFO", "commandstats"))

    def flushall(self):
        return self.call("FLUSHALL")

    def output(self, last=False):
        parts = []
        for run, log in (self.logs[-1:] if last else self.logs):
            log.seek(0)
            parts.append(f"--- redis-server :{self.port} run {run} ---\n{log.read().decode(errors='replace')}")
        return "\n".join(parts)


# --- a cluster -------------------------------------------------------------------------------

def free_ports(n):
    """n distinct ports that were free a moment ago (bound all at once, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Sentinel(RedisServer):
    """redis-server --sentinel on 127.0.0.1:port, with the sentinel.conf of its own dir
    (Sentinel rewrites it), monitoring `name` at the master's port with a quorum of 2."""

    stop_name = "redis-sentinel"

    def __init__(self, port, name, master_port, down_after_ms, failover_timeout_ms):
        super().__init__(port=port)
        self.conf = os.path.join(self.dir, "sentinel.conf")
        with open(self.conf, "w") as f:
            f.write(f"port {port}\nbind 127.0.0.1\nprotected-mode no\ndaemonize no\nlogfile \"\"\n"
                    f"dir {self.dir}\n"
                    f"sentinel monitor {name} 127.0.0.1 {master_port} 2\n"
                    f"sentinel down-after-milliseconds {name} {down_after_ms}\n"
                    f"sentinel failover-timeout {name} {failover_timeout_ms}\n"
                    f"sentinel parallel-syncs {name} 2\n")

    def command(self):
        return [REDIS_SERVER, self.conf, "--sentinel"]


class RedisSentinelSet:
    """A master and `replicas` replicas (redis-server, --replicaof), watched by `sentinels`
    Sentinels under `name`. start() returns once every replica is in sync and every Sentinel
    knows all the others and the replicas; `kill_master()` SIGKILLs whichever server is the
    master now, `wait_failover(old)` waits (bounded) until the Sentinels name another one
    and every live replica follows it."""

    def __init__(self, replicas=2, sentinels=3, name="tongdao", down_after_ms=1000, failover_timeout_ms=4000,
                 start_timeout=40.0):
        self.name = name
        self.start_timeout = start_timeout
        ports = free_ports(1 + replicas + sentinels)
        master = RedisServer(port=ports[0])
        self.servers_ = [master] + [RedisServer(port=p, extra=["--replicaof", "127.0.0.1", str(ports[0])])
                                    for p in ports[1:1 + replicas]]
        self.sentinels = [Sentinel(p, name, ports[0], down_after_ms, failover_timeout_ms)
                          for p in ports[1 + replicas:]]

    def url(self):
        return "redis-sentinel://" + ",".join(s.address() for s in self.sentinels) + "#" + self.name

    def servers(self):
        return self.servers_

    def master_port(self, sentinel=None):
        """The master's port as a Sentinel (the first that answers) names it; None if none does."""
        for s in [sentinel] if sentinel else self.sentinels:
            if not s.running():
                continue
            try:
                r = s.call("SENTINEL", "get-master-addr-by-name", self.name, timeout=2.0, check=False)
            except (OSError, TimeoutError, ConnectionError):
                continue
            if isinstance(r, list) and len(r) == 2:
                return int(text(r[1]))
        return None

    def master(self):
        port = self.master_port()
        return next((s for s in self.servers_ if s.port == port), None)

    def _in_sync(self, master):
        """Every live replica of `master` linked and every Sentinel agreeing on it, with the replicas known."""
        live = [s for s in self.servers_ if s is not master and s.running()]
        for r in live:
            try:
                info = r.info("replication")
            except (OSError, TimeoutError, ConnectionError, RespError):
                return False
            if info.get("master_port") != str(master.port) or info.get("master_link_status") != "up":
                return False
        for s in self.sentinels:
            if self.master_port(s) != master.port:
                return False
            try:
                known = s.call("SENTINEL", "replicas", self.name, timeout=2.0, check=False)
                others = s.call("SENTINEL", "sentinels", self.name, timeout=2.0, check=False)
            except (OSError, TimeoutError, ConnectionError):
                return False
            if not isinstance(others, list) or len(others) != len(self.sentinels) - 1:
                return False
            up = 0
            for entry in known if isinstance(known, list) else []:
                fields = dict(zip(map(text, entry[0::2]), map(text, entry[1::2])))
                if "s_down" not in fields.get("flags", "") and int(fields.get("port", 0)) in {x.port for x in live}:
                    up += 1
            if up < len(live):
                return False
        return True

    def _wait(self, what, ok, timeout):
        deadline = time.monotonic() + timeout
        while not ok():
            if time.monotonic() > deadline:
                raise RuntimeError(f"Sentinel set: {what} not within {timeout}s\n{self.output()[-3000:]}")
            time.sleep(0.1)

    def start(self):
        for s in self.servers_ + self.sentinels:
            if not s.running():
                s.start()
        self._wait("replicas in sync and known to every Sentinel", lambda: self._in_sync(self.servers_[0]),
                   self.start_timeout)
        return self

    async def astart(self):
        await asyncio.get_running_loop().run_in_executor(None, self.start)
        return self

    def running(self):
        m = self.master()
        return m is not None and m.running()

    def kill_master(self):
        m = self.master()
        m.kill9()
        return m

    def kill9(self):
        self.kill_master()

    def wait_failover(self, old, timeout=None):
        """Until the Sentinels name a master other than `old` and its live replicas follow it."""
        def done():
            m = self.master()
            return m is not None and m is not old and m.running() and self._in_sync(m)
        self._wait(f"a failover from :{old.port}", done, timeout or self.start_timeout)
        return self.master()

    async def await_failover(self, old, timeout=None):
        return await asyncio.get_running_loop().run_in_executor(None, self.wait_failover, old, timeout)

    def close(self):
        return [s.close() for s in self.sentinels + self.servers_]

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    # What the tests ask of "the Redis": the master's.
    def clients(self):
        return self.master().clients()

    def subscribers(self):
        return self.master().subscribers()

    def kill_client(self, client):
        return self.master().kill_client(client)

    def commandstats(self):
        return self.master().commandstats()

    def flushall(self):
        return self.master().flushall()

    def output(self):
        return "\n".join(s.output() for s in self.servers_ + self.sentinels)


class RedisCluster:
    """Three (or `masters`) redis-server processes with --cluster-enabled yes, each with its
    own dir and nodes.conf, joined by `redis-cli --cluster create ... --cluster-replicas 0`.
    start() returns once CLUSTER INFO says cluster_state:ok on every node; a stopped node
    starts again with the same port, dir and nodes.conf (and its AOF when appendonly)."""

    def __init__(self, masters=3, appendonly=False, appendfsync="everysec", node_timeout_ms=2000,
                 start_timeout=60.0):
        self.start_timeout = start_timeout
        self.nodes = []
        self.created = False
        ports = free_ports(2 * masters)  # each node's port and its cluster bus port
        for i in range(masters):
            port, bus = ports[2 * i], ports[2 * i + 1]
            node = RedisServer(appendonly=appendonly, appendfsync=appendfsync, port=port)
            node.extra = ["--cluster-enabled", "yes", "--cluster-config-file", os.path.join(node.dir, "nodes.conf"),
                          "--cluster-node-timeout", str(node_timeout_ms), "--cluster-port", str(bus)]
            self.nodes.append(node)

    def seeds(self, indexes=None):
        """"127.0.0.1:P,..." of the masters (all, or those at `indexes`)."""
        chosen = self.nodes if indexes is None else [self.nodes[i] for i in indexes]
        return ",".join(n.address() for n in chosen)

    def running(self):
        return all(n.running() for n in self.nodes)

    def _cluster_ok(self):
        for n in self.nodes:
            try:
                info = parse_info(n.call("CLUSTER", "INFO", timeout=2.0, check=False))
            except (OSError, TimeoutError, ConnectionError):
                return False
            if info.get("cluster_state") != "ok":
                return False
        return True

    def _create(self):
        cmd = [REDIS_CLI, "--cluster", "create"] + [n.address() for n in self.nodes] + \
              ["--cluster-replicas", "0", "--cluster-yes"]
        try:
            r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=self.start_timeout)
        except subprocess.TimeoutExpired as e:
            raise RuntimeError(f"{' '.join(cmd)} did not finish within {self.start_timeout}s: "
                               f"{(e.stdout or b'').decode(errors='replace')[-2000:]}") from None
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n"
                               f"{(r.stdout + r.stderr).decode(errors='replace')[-3000:]}")
        self.created = True

    def _deadline_passed(self, deadline):
        if time.monotonic() > deadline:
            states = []
            for n in self.nodes:
                try:
                    states.append(f":{n.port} {parse_info(n.call('CLUSTER', 'INFO', timeout=2.0)).get('cluster_state')}")
                except Exception as e:  # noqa: BLE001 - for the message only
                    states.append(f":{n.port} {e!r}")
            raise RuntimeError(f"Redis Cluster not ok within {self.start_timeout}s: {', '.join(states)}")

    def start(self):
        """Starts every node not running; the first time also creates the cluster. Waits
        (bounded) until cluster_state:ok on all of them."""
        for n in self.nodes:
            if not n.running():
                n.start()
        if not self.created:
            self._create()
        deadline = time.monotonic() + self.start_timeout
        while not self._cluster_ok():
            self._deadline_passed(deadline)
            time.sleep(0.1)
        return self

    async def astart(self):
        for n in self.nodes:
            if not n.running():
                await n.astart()
        if not self.created:
            await asyncio.get_running_loop().run_in_executor(None, self._create)
        deadline = time.monotonic() + self.start_timeout
        while not self._cluster_ok():
            self._deadline_passed(deadline)
            await asyncio.sleep(0.1)
        return self

    def kill9(self):
        for n in self.nodes:
            n.kill9()

    def stop(self):
        return [n.stop() for n in self.nodes]

    def restart(self, kill=True):
        self.kill9() if kill else self.stop()
        return self.start()

    def close(self):
        return [n.close() for n in self.nodes]

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def flushall(self):
        """FLUSHALL on every master (each holds its own slots)."""
        return [n.call("FLUSHALL") for n in self.nodes]

    def clients(self):
        """CLIENT LIST of every node, each entry with `node` (the Redis port) added."""
        out = []
        for n in self.nodes:
            for c in n.clients():
                out.append({**c, "node": n.port})
        return out

    def subscribers(self):
        return [c for c in self.clients() if is_subscriber(c)]

    def kill_client(self, client):
        """CLIENT KILL ID n of an entry of clients(), on the node it came from."""
        return next(n for n in self.nodes if n.port == client["node"]).kill_client(client)

    def commandstats(self):
        total = {}
        for n in self.nodes:
            for k, v in n.commandstats().items():
                total[k] = total.get(k, 0) + v
        return total

    def output(self):
        return "\n".join(n.output() for n in self.nodes)
