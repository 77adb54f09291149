"""Helpers shared by the Python interop and abuse tests: start and stop interop_server,
raw HTTP/WebSocket bytes over plain sockets, and a tiny check runner.

Every wait here is bounded; the server is stopped by its pid (SIGTERM, then SIGKILL).
"""

import atexit
import base64
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

SKIP = 77  # ctest SKIP_RETURN_CODE


def server_path(argv):
    """The interop_server binary: first argument, else $INTEROP_SERVER."""
    path = argv[1] if len(argv) > 1 else os.environ.get("INTEROP_SERVER", "")
    if not path or not os.access(path, os.X_OK):
        print(f"interop_server not found (got {path!r}); pass it as the first argument "
              "or in INTEROP_SERVER", file=sys.stderr)
        sys.exit(2)
    return path


class Server:
    """interop_server on 127.0.0.1 and a free port, stopped on exit (also on failure).
    With --tls-cert among the arguments it also reads the "TLSPORT n" line (`tls_port`)."""

    def __init__(self, path, *args, start_timeout=20.0):
        self.proc = subprocess.Popen([path, *args], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        self.pid = self.proc.pid
        self.port = None
        self.tls_port = None
        self.exit_code = None
        deadline = time.monotonic() + start_timeout
        fd = self.proc.stdout.fileno()

        def read_line():
            line = b""
            while not line.endswith(b"\n"):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError("interop_server printed no PORT line in time")
                ready, _, _ = select.select([fd], [], [], left)
                if not ready:
                    continue
                chunk = os.read(fd, 1)
                if not chunk:
                    raise RuntimeError(f"interop_server exited before listening (status {self.proc.wait(5)})")
                line += chunk
            return line

        try:
            for word in ["PORT"] + (["TLSPORT"] if "--tls-cert" in args else []):
                line = read_line()
                words = line.decode().split()
                if len(words) != 2 or words[0] != word:
                    raise RuntimeError(f"unexpected line from interop_server: {line!r} (want {word} n)")
                if word == "PORT":
                    self.port = int(words[1])
                else:
                    self.tls_port = int(words[1])
        except BaseException:
            self.stop()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def alive(self):
        return self.proc.poll() is None

    def stop(self, term_timeout=15.0):
        """SIGTERM, wait (bounded), then SIGKILL. Returns the exit status."""
        if self.exit_code is not None:
            return self.exit_code
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(term_timeout)
            except subprocess.TimeoutExpired:
                print(f"interop_server {self.pid} ignored SIGTERM for {term_timeout}s: SIGKILL", file=sys.stderr)
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.exit_code = self.proc.returncode
        try:
            self.proc.stdout.close()
        except OSError:
            pass
        return self.exit_code

    # --- /proc views of the server ---------------------------------------------------
    def rss_kib(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def fd_count(self):
        return len(os.listdir(f"/proc/{self.pid}/fd"))


# --- test certificates -----------------------------------------------------------------

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CERT_SCRIPT = os.path.join(REPO_ROOT, "scripts", "make-test-certs.sh")


class Certs:
    """A throwaway CA and certificates (scripts/make-test-certs.sh) in a fresh temporary
    directory, removed when the process exits: ca, server (localhost, 127.0.0.1, ::1) and
    other (other.test, *.other.test), each as .pem and .key paths."""

    def __init__(self, prefix="tongdao-certs-"):
        self.dir = tempfile.mkdtemp(prefix=prefix)
        atexit.register(shutil.rmtree, self.dir, True)
        if shutil.which("openssl") is None:
            raise RuntimeError("openssl (the command) is needed to make the test certificates")
        subprocess.run(["bash", CERT_SCRIPT, self.dir], check=True, timeout=60,
                       stdout=subprocess.DEVNULL)
        self.ca = os.path.join(self.dir, "ca.pem")
        self.server_pem = os.path.join(self.dir, "server.pem")
        self.server_key = os.path.join(self.dir, "server.key")
        self.other_pem = os.path.join(self.dir, "other.pem")
        self.other_key = os.path.join(self.dir, "other.key")

    def server_args(self, with_other=True):
        """interop_server arguments: server.pem as the default, other.pem by SNI."""
        args = ["--tls-cert", self.server_pem, "--tls-key", self.server_key]
        if with_other:
            args += ["--tls-cert", self.other_pem, "--tls-key", self.other_key]
        return args

    def client_context(self, server_hostname_check=True):
        """An ssl context for clients that trusts the test CA only."""
        import ssl
        ctx = ssl.create_default_context(cafile=self.ca)
        ctx.check_hostname = server_hostname_check
        return ctx


# --- a byte-counting TCP relay ------------------------------------------------------------

class Relay:
    """Listens on 127.0.0.1 and a free port and forwards each connection to (host, port),
    counting the bytes that cross in each direction: `up` (client to server) and `down`
    (server to client), totals over all connections. What is measured is what travels on
    the wire: frames after permessage-deflate, TLS records when the peers speak TLS.
    Threads, one pair per connection; every blocking call has a timeout; stop() ends all."""

    def __init__(self, target_port, target_host="127.0.0.1", idle_timeout=60.0):
        self.target = (target_host, target_port)
        self.idle_timeout = idle_timeout
        self.up = 0
        self.down = 0
        self.connections = 0
        self.lock = threading.Lock()
        self.sockets = []
        self.threads = []
        self.stopped = False
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def counts(self):
        with self.lock:
            return self.up, self.down

    def reset(self):
        with self.lock:
            self.up = self.down = 0

    def _accept(self):
        while not self.stopped:
            try:
                client, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            for s in (client, server):
                s.settimeout(self.idle_timeout)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.connections += 1
                self.sockets += [client, server]
            done = [0]  # pumps finished on this connection: the second closes both sockets
            for src, dst, attr in ((client, server, "up"), (server, client, "down")):
                t = threading.Thread(target=self._pump, args=(src, dst, attr, done), daemon=True)
                t.start()
                self.threads.append(t)

    def _pump(self, src, dst, attr, done):
        try:
            while True:
                data = src.recv(262144)
                if not data:
                    break
                with self.lock:
                    setattr(self, attr, getattr(self, attr) + len(data))
                dst.sendall(data)
        except OSError:
            pass
        # Pass the end of stream (or the failure) on, so each side sees what it would directly.
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        with self.lock:
            done[0] += 1
            last = done[0] == 2
        if last:
            src.close()
            dst.close()

    def stop(self):
        self.stopped = True
        try:
            self.listener.close()
        except OSError:
            pass
        with self.lock:
            socks = list(self.sockets)
        for s in socks:
            try:
                s.close()
            except OSError:
                pass
        self.acceptor.join(5)
        for t in self.threads:
            t.join(5)


# --- raw HTTP ------------------------------------------------------------------------

def json_text(n):
    """About n bytes of repetitive JSON: chat messages that differ in a counter only."""
    parts = []
    size = 0
    i = 0
    while size < n:
        p = json.dumps({"id": i % 1000, "room": "lobby", "user": f"u{i % 7}", "text": "hello, channel"})
        parts.append(p)
        size += len(p) + 1
        i += 1
    return ("[" + ",".join(parts) + "]")[:n - 1] + "]"


def connect(port, host="127.0.0.1", timeout=10.0, source=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    if source:
        s.bind((source, 0))
    s.connect((host, port))
    return s


def read_head(sock, timeout=10.0):
    """Reads an HTTP response head; returns (status, headers dict lower-case, extra bytes)."""
    deadline = time.monotonic() + timeout
    data = b""
    while b"\r\n\r\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no complete response head in {timeout}s (got {data[:200]!r})")
        sock.settimeout(left)
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed before a complete response head (got {data[:200]!r})")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    status = int(parts[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
    return status, headers, rest


def read_until_closed(sock, timeout=10.0, initial=b""):
    """Reads until the peer closes; returns everything. Raises TimeoutError if it does not."""
    deadline = time.monotonic() + timeout
    data = initial
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"peer did not close within {timeout}s")
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def http_get(port, path, timeout=10.0):
    """A GET with Connection: close; returns (status, headers, body)."""
    with connect(port, timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
        status, headers, rest = read_head(s, timeout)
        body = read_until_closed(s, timeout, rest)
        if "content-length" in headers:
            body = body[: int(headers["content-length"])]
        return status, headers, body


def metrics(port):
    status, _, body = http_get(port, "/metrics")
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}")
    out = {}
    for line in body.decode().splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        out[name] = int(value)
    return out


def upgrade_request(port, path, key=None, extra=""):
    key = key or base64.b64encode(os.urandom(16)).decode()
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n").encode()


def raw_websocket(port, path, timeout=10.0, source=None):
    """A raw socket that completed the opening handshake; returns (socket, leftover bytes)."""
    s = connect(port, timeout=timeout, source=source)
    try:
        s.sendall(upgrade_request(port, path))
        status, _, rest = read_head(s, timeout)
        if status != 101:
            raise RuntimeError(f"upgrade to {path} answered {status}")
        return s, rest
    except BaseException:
        s.close()
        raise


# --- raw frames (client side: masked) ---------------------------------------------------

def frame(opcode, payload=b"", fin=True, mask=True):
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    m = 0x80 if mask else 0
    if n < 126:
        head += bytes([m | n])
    elif n < 65536:
        head += bytes([m | 126]) + struct.pack("!H", n)
    else:
        head += bytes([m | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + key + masked


def close_frame(code, reason=b""):
    return frame(0x8, struct.pack("!H", code) + reason)


def read_frame(sock, buf=b"", timeout=10.0):
    """Reads one (unmasked, server) frame; returns (fin, opcode, payload, rest)."""
    deadline = time.monotonic() + timeout

    def need(n):
        nonlocal buf
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no complete frame in time")
            sock.settimeout(left)
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed in the middle of a frame (have {buf[:40]!r})")
            buf += chunk

    need(2)
    fin = bool(buf[0] & 0x80)
    opcode = buf[0] & 0x0F
    if buf[1] & 0x80:
        raise RuntimeError("server frame is masked")
    n = buf[1] & 0x7F
    pos = 2
    if n == 126:
        need(4)
        n = struct.unpack("!H", buf[2:4])[0]
        pos = 4
    elif n == 127:
        need(10)
        n = struct.unpack("!Q", buf[2:10])[0]
        pos = 10
    need(pos + n)
    return fin, opcode, buf[pos:pos + n], buf[pos + n:]


def parse_close(payload):
    if len(payload) < 2:
        return 1005, ""
    return struct.unpack("!H", payload[:2])[0], payload[2:].decode("utf-8", "replace")


# --- checks ---------------------------------------------------------------------------

class Checks:
    """Runs named checks, prints PASS/FAIL per check and a summary; failures don't stop the run."""

    def __init__(self, title):
        self.title = title
        self.failed = []
        self.passed = 0

    def run(self, name, fn, *args):
        start = time.monotonic()
        try:
            detail = fn(*args)
        except Exception as e:  # noqa: BLE001 - a failing check reports and the run goes on
            self.failed.append(name)
            print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
            traceback.print_exc(limit=3, file=sys.stdout)
            return False
        self.passed += 1
        took = time.monotonic() - start
        print(f"PASS {name} ({took:.2f}s){': ' + detail if isinstance(detail, str) and detail else ''}",
              flush=True)
        return True

    def finish(self):
        print(f"{self.title}: {self.passed} passed, {len(self.failed)} failed", flush=True)
        for name in self.failed:
            print(f"  failed: {name}", flush=True)
        return 1 if self.failed else 0


def expect(cond, message):
    if not cond:
        raise AssertionError(message)


def expect_eq(got, want, what):
    if got != want:
        g, w = repr(got), repr(want)
        raise AssertionError(f"{what}: got {g[:200]}, want {w[:200]}")
