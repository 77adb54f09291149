#!/usr/bin/python3
"""deploy.nginx: the nginx configuration of docs/DEPLOY.md in front of tongdao-server.

The ```nginx block that follows the marker comment in docs/DEPLOY.md is the configuration;
this test replaces only its names, paths and ports (each replacement must match, and no
other path may be left), wraps it in a minimal main configuration (pid, logs and
temporary files in a temporary directory, `daemon off`) and runs Debian's nginx as the
test's user in front of tongdao-server (anonymous, a temporary --data-dir), both on free
loopback ports. The certificate chain is made here with openssl: a root, an intermediate
and a certificate for localhost and 127.0.0.1; nginx serves the certificate and the
intermediate, clients trust only the root.

Through nginx, over TLS: TLS 1.2 and 1.3, the chain, the page, /health, /metrics refused,
the port-80 redirect and the ACME path; `tongdao connect --ca` (as a mini-program: by its
Referer) sends hello/join/send and gets its message event; a Python `websockets` client
from 127.0.0.2 (an address of its own) resumes the room, sends, and answers headless
Chromium, which loads the page over https trusting the root (NSS database under its
$HOME), chats, and gets the answer; the CLI replays the room. Then what each side logs as
the client's address: nginx's access log names the client, and so does tongdao-server,
started with --trusted-proxy 127.0.0.1, from X-Forwarded-For, with nginx's address beside
it ("http 127.0.0.2 (via 127.0.0.1:PORT)"); an X-Forwarded-For the client forges is not
believed, through nginx (the address nginx appends wins) or straight to the server (an
untrusted peer's header is ignored). Then the metric tables of DEPLOY.md against /metrics,
and the proxy timeouts against the server's idle timeout.

usage: nginx_test.py --server PATH --cli PATH --web-root DIR [--artifacts DIR]

Every wait is bounded; nginx and tongdao-server are stopped by their pid (SIGTERM, then
SIGKILL). Exit 0 passed, 1 a check failed, 2 bad setup, 77 (skip) nginx or Chromium absent.
"""

import argparse
import asyncio
import http.client
import json
import logging
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import traceback

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
DEPLOY_MD = os.path.join(REPO, "docs", "DEPLOY.md")
sys.path.insert(0, os.path.join(HERE, "..", "support"))
from echo_server import free_port, stop_process  # noqa: E402

SKIP = 77
CHROMIUM = "/usr/bin/chromium"
SUBPROTOCOL = "tongdao.chat.v1"
APPID = "wxd0e1d2e3d4e5d6e7"
CLIENT_ADDR = "127.0.0.2"  # the Python client's own source address, told apart from nginx's 127.0.0.1
MARKER = "<!-- tests/deploy/nginx_test.py extracts the nginx block below"
METRICS_MARKER = "<!-- tests/deploy/nginx_test.py checks that these tables list every metric"
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "SUMMARY: UndefinedBehaviorSanitizer")
logging.getLogger("websockets").setLevel(logging.CRITICAL)


def fail_setup(msg):
    print(f"setup: {msg}", file=sys.stderr, flush=True)
    sys.exit(2)


# --- checks ------------------------------------------------------------------------------

class Checks:
    def __init__(self):
        self.failed = []
        self.passed = 0

    def run(self, name, fn, *args):
        t0 = time.monotonic()
        try:
            detail = fn(*args)
        except Exception as e:  # noqa: BLE001 - every failure is reported with its check
            self.failed.append(name)
            tb = "".join(traceback.format_exception(type(e), e, e.__traceback__)).rstrip()
            print(f"FAIL {name}: {e}\n    " + tb.replace("\n", "\n    "), flush=True)
            return None
        self.passed += 1
        print(f"PASS {name} ({time.monotonic() - t0:.1f}s){': ' + detail if detail else ''}", flush=True)
        return detail


def expect(cond, what, detail=""):
    if not cond:
        raise AssertionError(f"{what}{': ' + str(detail) if detail else ''}")


# --- the configuration from docs/DEPLOY.md -------------------------------------------------

def deploy_md():
    with open(DEPLOY_MD, encoding="utf-8") as f:
        return f.read()


def nginx_block(text):
    """The ```nginx block right after MARKER."""
    at = text.find(MARKER)
    expect(at >= 0, f"docs/DEPLOY.md has the marker {MARKER!r}")
    m = re.compile(r"\n```nginx\n(.*?)\n```\n", re.S).search(text, at)
    expect(m is not None and text[at:m.start()].count("\n") <= 1,
           "a ```nginx block follows the marker line in docs/DEPLOY.md")
    return m.group(1) + "\n"


def substitute(block, replacements):
    """Each (old, new, count): old must occur exactly count times."""
    out = block
    for old, new, count in replacements:
        n = out.count(old)
        expect(n == count, f"docs/DEPLOY.md's nginx block has {old!r} {count} time(s)", f"found {n}")
        out = out.replace(old, new)
    code = "\n".join(line.split("#", 1)[0] for line in out.splitlines())
    left = re.findall(r"(?:/etc/|/var/|/usr/|example\.com)[^\s;'\"]*", code)
    expect(not left, "nothing of the production paths or names is left in the test's configuration", left)
    return out


def directive_seconds(block, name):
    vals = re.findall(rf"^\s*{name}\s+(\d+)s\s*;", block, re.M)
    expect(vals, f"the nginx block sets {name} in seconds")
    return [int(v) for v in vals]


def documented_metrics(text):
    at = text.find(METRICS_MARKER)
    expect(at >= 0, f"docs/DEPLOY.md has the marker {METRICS_MARKER!r}")
    end = text.find("\n## ", at)
    section = text[at:end if end > 0 else len(text)]
    names = re.findall(r"^\| `(tongdao_[a-z_]+)(?:\{[a-z_]+\})?` \|", section, re.M)
    expect(names, "the metric tables of docs/DEPLOY.md list metrics")
    return names


# --- certificates ---------------------------------------------------------------------------

def openssl(*args, cwd):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)}: {r.stderr.strip()}")


def make_chain(d):
    """root.pem (the CA clients trust), intermediate, and server.pem (certificate, then the
    intermediate: the full chain) with server.key, for localhost and 127.0.0.1."""
    os.makedirs(d, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-days", "30", "-subj", "/CN=tongdao deploy test root", "-keyout", "root.key",
            "-out", "root.pem", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)

    def issue(name, subject, ca, ext):
        openssl("req", *ec, "-subj", subject, "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write(ext)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
                "-days", "30", "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=d)

    issue("intermediate", "/CN=tongdao deploy test intermediate", "root",
          "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n")
    shutil.copy(os.path.join(d, "intermediate.crt"), os.path.join(d, "intermediate.pem"))
    issue("server", "/CN=localhost", "intermediate",
          "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
          "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
    with open(os.path.join(d, "fullchain.pem"), "w") as out:
        for part in ("server.crt", "intermediate.crt"):
            with open(os.path.join(d, part)) as f:
                out.write(f.read())
    os.chmod(os.path.join(d, "server.key"), 0o600)
    return os.path.join(d, "root.pem"), os.path.join(d, "fullchain.pem"), os.path.join(d, "server.key")


def nss_home(home, root_pem):
    """$HOME for Chromium with root_pem trusted for TLS servers in $HOME/.pki/nssdb."""
    db = os.path.join(home, ".pki", "nssdb")
    os.makedirs(db, exist_ok=True)
    for args in (["-N", "--empty-password"], ["-A", "-n", "tongdao deploy test root", "-t", "C,,", "-i", root_pem]):
        r = subprocess.run(["certutil", "-d", f"sql:{db}", *args], capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError(f"certutil {' '.join(args)}: {r.stdout}{r.stderr}")
    return home


# --- processes --------------------------------------------------------------------------------

def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


class Nginx:
    """nginx -p DIR -c nginx.conf -e error.log, in the foreground (daemon off)."""

    def __init__(self, binary, prefix, conf, https_port):
        self.binary, self.prefix, self.conf, self.https_port = binary, prefix, conf, https_port
        self.out = open(os.path.join(prefix, "logs", "nginx.out"), "wb")
        self.error_log = os.path.join(prefix, "logs", "error.log")
        self.proc = None

    def cmd(self, *extra):
        return [self.binary, "-p", self.prefix, "-c", self.conf, "-e", self.error_log, *extra]

    def start(self, timeout=20.0):
        t = subprocess.run(self.cmd("-t"), capture_output=True, text=True, timeout=30)
        if t.returncode != 0:
            raise RuntimeError(f"nginx -t refused the configuration:\n{t.stderr}")
        self.proc = subprocess.Popen(self.cmd(), stdin=subprocess.DEVNULL, stdout=self.out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited at once ({self.proc.returncode}):\n{self.errors()}")
            try:
                with socket.create_connection(("127.0.0.1", self.https_port), timeout=1):
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nginx not listening on {self.https_port} within {timeout}s:\n{self.errors()}")
            time.sleep(0.05)

    def errors(self):
        try:
            with open(self.error_log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        """SIGTERM (nginx's fast shutdown), then SIGKILL for the master and its workers."""
        if self.proc is None:
            return None
        workers = children(self.proc.pid)
        status = stop_process(self.proc, 10.0, "nginx")
        for w in workers:  # a SIGKILLed master leaves its workers behind
            try:
                os.kill(w, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.out.close()
        return status


class Server:
    def __init__(self, path, port, data_dir, log_path, args):
        self.cmd = [path, "--host", "127.0.0.1", "--port", str(port), "--threads", "2", "--data-dir", data_dir,
                    *args]
        self.port = port
        self.log_path = log_path
        self.log = open(log_path, "wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith("TONGDAO_")}
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=env)

    def wait_healthy(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tongdao-server exited early ({self.proc.returncode}):\n{self.output()}")
            try:
                status, _, _ = plain_get(self.port, "/health")
                if status == 200:
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"tongdao-server not healthy within {timeout}s:\n{self.output()}")
            time.sleep(0.05)

    def output(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self):
        status = stop_process(self.proc, 20.0, "tongdao-server")
        self.log.close()
        return status


# --- HTTP ---------------------------------------------------------------------------------------

def plain_get(port, path, timeout=5):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        c.close()


def tls_context(root_pem, version=None):
    ctx = ssl.create_default_context(cafile=root_pem)  # the test root only, not the system's
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = version
    return ctx


def https_get(port, path, ctx, host="localhost", timeout=5):
    """GET over TLS from 127.0.0.1:port, the certificate checked for `host` (also the SNI);
    returns the status, the headers, the body and the TLS version."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.sock = ctx.wrap_socket(raw, server_hostname=host)
        c.request("GET", path, headers={"Host": f"{host}:{port}"})
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read(), c.sock.version()
    finally:
        c.close()
        raw.close()


# --- the tongdao CLI ----------------------------------------------------------------------------

def run_cli(cli, *args, timeout=30.0):
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([cli, *args], stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            stop_process(proc, 5.0, "tongdao")
            raise AssertionError(f"tongdao {' '.join(args)} did not exit within {timeout}s")
        out.seek(0)
        err.seek(0)
        return proc.returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace")


def body_text(body):
    """A message's text: the CLI and the Python client send strings, the page {"text": ...}."""
    return body.get("text") if isinstance(body, dict) else body


def json_lines(text):
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


# --- the Python client --------------------------------------------------------------------------

class Client:
    """One chat connection (websockets over TLS) with replies matched by id and events queued."""

    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0
        self.replies = {}
        self.events = asyncio.Queue()
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self):
        async for raw in self.ws:
            msg = json.loads(raw)
            if msg.get("op") == "reply":
                fut = self.replies.pop(msg.get("id"), None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
            else:
                await self.events.put(msg)

    async def request(self, op, timeout=10.0, **fields):
        self.next_id += 1
        fut = asyncio.get_running_loop().create_future()
        self.replies[self.next_id] = fut
        await self.ws.send(json.dumps({"op": op, "id": self.next_id, **fields}))
        reply = await asyncio.wait_for(fut, timeout)
        expect(reply.get("ok") is True, f"{op} is answered ok", reply)
        return reply

    async def message(self, text, timeout=20.0):
        """The next `message` event with this text (others are passed over)."""
        async def find():
            while True:
                ev = await self.events.get()
                if ev.get("op") == "message" and body_text(ev.get("body")) == text:
                    return ev
        return await asyncio.wait_for(find(), timeout)

    async def close(self):
        await asyncio.wait_for(self.ws.close(), 10)
        self.reader.cancel()


# --- the run ------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--cli", required=True)
    ap.add_argument("--web-root", required=True)
    ap.add_argument("--node", default=shutil.which("node") or "node")
    ap.add_argument("--artifacts", default="")
    a = ap.parse_args()

    nginx_bin = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if not nginx_bin:
        print("SKIP: nginx is not installed (Debian package nginx; scripts/install-deps.sh installs it)", flush=True)
        return SKIP
    if not os.access(CHROMIUM, os.X_OK):
        print(f"SKIP: {CHROMIUM} is not installed (Debian package chromium)", flush=True)
        return SKIP
    for tool, pkg in (("openssl", "openssl"), ("certutil", "libnss3-tools")):
        if not shutil.which(tool):
            fail_setup(f"{tool} is missing (Debian package {pkg}; run scripts/install-deps.sh)")
    if not shutil.which(a.node) and not os.access(a.node, os.X_OK):
        fail_setup("node is missing (scripts/install-deps.sh)")
    if not os.path.isdir(os.path.join(REPO, "node_modules", "playwright-core")):
        fail_setup("playwright-core is not in node_modules (scripts/install-deps.sh runs npm ci)")
    try:
        import websockets
    except ImportError as e:
        fail_setup(f"Python websockets is missing ({e}; Debian python3-websockets)")
    for p, what in ((a.server, "tongdao-server"), (a.cli, "tongdao")):
        if not os.access(p, os.X_OK):
            fail_setup(f"{what} not found at {p}")
    if not os.path.isfile(os.path.join(a.web_root, "index.html")):
        fail_setup(f"the chat page is not built in {a.web_root} (target web_page)")

    t_start = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="tongdao-deploy-")
    for sub in ("logs", "temp", "conf.d", "acme/.well-known/acme-challenge", "data", "home"):
        os.makedirs(os.path.join(tmp, sub), exist_ok=True)
    checks = Checks()
    nginx = server = None
    status = 1
    try:
        root_pem, fullchain, key = make_chain(os.path.join(tmp, "tls"))
        server_port, http_port, https_port = free_port(), free_port(), free_port()
        while len({server_port, http_port, https_port}) < 3:
            http_port, https_port = free_port(), free_port()
        page_origin = f"https://localhost:{https_port}"

        text = deploy_md()
        block = nginx_block(text)
        access_log = os.path.join(tmp, "logs", "tongdao.access.log")
        conf = substitute(block, [
            ("listen 80;", f"listen 127.0.0.1:{http_port};", 1),
            ("listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;", 1),
            ("server_name chat.example.com;", "server_name localhost;", 2),
            ("/etc/letsencrypt/live/chat.example.com/fullchain.pem", fullchain, 1),
            ("/etc/letsencrypt/live/chat.example.com/privkey.pem", key, 1),
            ("/var/www/certbot", os.path.join(tmp, "acme"), 2),
            ("server 127.0.0.1:8080;", f"server 127.0.0.1:{server_port};", 1),
            ("/var/log/nginx/tongdao.access.log", access_log, 1),
        ])
        site = os.path.join(tmp, "conf.d", "tongdao.conf")
        with open(site, "w") as f:
            f.write(conf)
        # The main configuration around it, as Debian's nginx.conf includes conf.d/ in its
        # http block; everything nginx writes stays in tmp. As root, the workers stay root too
        # (nginx would switch them to nobody, who cannot enter tmp).
        user = "user root root;\n" if os.geteuid() == 0 else ""
        main_conf = os.path.join(tmp, "nginx.conf")
        with open(main_conf, "w") as f:
            f.write(f"""daemon off;
{user}worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/logs/error.log notice;
events {{ worker_connections 256; }}
http {{
    access_log {tmp}/logs/access.log;
    client_body_temp_path {tmp}/temp/client_body;
    proxy_temp_path {tmp}/temp/proxy;
    fastcgi_temp_path {tmp}/temp/fastcgi;
    uwsgi_temp_path {tmp}/temp/uwsgi;
    scgi_temp_path {tmp}/temp/scgi;
    include {site};
}}
""")
        acme_token = "tongdao-deploy-test-token"
        with open(os.path.join(tmp, "acme", ".well-known", "acme-challenge", acme_token), "w") as f:
            f.write("acme proof\n")

        server_log = os.path.join(tmp, "logs", "tongdao-server.log")
        server = Server(a.server, server_port, os.path.join(tmp, "data"), server_log, [
            "--anonymous", "--web-root", a.web_root, "--log-level", "debug",
            "--allowed-origin", page_origin, "--allowed-appid", APPID,
            "--rate-limit", "1000", "--rate-burst", "1000", "--trusted-proxy", "127.0.0.1"]).wait_healthy()
        nginx = Nginx(nginx_bin, tmp, main_conf, https_port).start()
        print(f"tongdao-server pid {server.proc.pid} on 127.0.0.1:{server_port}; nginx pid {nginx.proc.pid} on "
              f"https {https_port}, http {http_port}; {tmp}", flush=True)

        ctx = tls_context(root_pem)

        # --- TLS, the chain, plain HTTP through nginx --------------------------------------
        def tls_versions():
            got = []
            for v in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
                st, _, body, ver = https_get(https_port, "/health", tls_context(root_pem, v))
                expect(st == 200, f"/health over {v.name}", (st, body))
                expect(ver == v.name.replace("_", "."), f"negotiated {v.name}", ver)
                got.append(ver)
            return ", ".join(got) + " (the mini-program minimum is TLS 1.2)"
        checks.run("TLS 1.2 and TLS 1.3 through nginx; /health 200", tls_versions)

        def chain():
            # Only the root is trusted here: the handshake verifies because nginx sends the
            # intermediate (the full chain), and Python does not fetch missing ones.
            raw = socket.create_connection(("127.0.0.1", https_port), timeout=5)
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                cert = s.getpeercert()
            issuer = dict(x[0] for x in cert["issuer"])
            expect(issuer.get("commonName") == "tongdao deploy test intermediate", "issued by the intermediate", issuer)
            r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{https_port}", "-servername",
                                "localhost", "-showcerts"], input="", capture_output=True, text=True, timeout=20)
            n = r.stdout.count("-----BEGIN CERTIFICATE-----")
            expect(n == 2, "nginx sends two certificates (the server's and the intermediate)", n)
            return "verified against the root alone; 2 certificates sent"
        checks.run("the full chain is served", chain)

        def page_and_routes():
            st, _, body, _ = https_get(https_port, "/", ctx)
            expect(st == 200 and b"<html" in body.lower(), "the page through nginx", (st, body[:80]))
            st, _, _, _ = https_get(https_port, "/metrics", ctx)
            expect(st == 403, "/metrics through nginx is refused (403)", st)
            st, _, body = plain_get(server_port, "/metrics")
            expect(st == 200 and b"tongdao_connections_open" in body, "/metrics on the node itself", st)
            st, hdr, _ = plain_get(http_port, "/health?x=1")
            expect(st == 301 and hdr.get("Location") == "https://127.0.0.1/health?x=1",
                   "port 80 redirects to https", (st, hdr.get("Location")))
            st, _, body = plain_get(http_port, f"/.well-known/acme-challenge/{acme_token}")
            expect(st == 200 and body == b"acme proof\n", "the ACME challenge is served on port 80", (st, body))
            return "page 200, /metrics 403 (200 on the node), http -> https 301, ACME 200"
        checks.run("the page, /metrics, the redirect and the ACME path", page_and_routes)

        def timeouts():
            r = subprocess.run([a.server, "--help"], capture_output=True, text=True, timeout=20)
            m = re.search(r"--idle-timeout UINT=(\d+)", r.stdout)
            expect(m is not None, "tongdao-server --help gives --idle-timeout's default", r.stdout[:200])
            idle = int(m.group(1))
            got = {d: directive_seconds(block, d) for d in ("proxy_read_timeout", "proxy_send_timeout")}
            for d, vals in got.items():
                expect(all(v > idle for v in vals), f"{d} above --idle-timeout ({idle} s)", vals)
            return f"--idle-timeout {idle} s; {got}"
        checks.run("the proxy timeouts are above the server's idle timeout", timeouts)

        # --- tongdao connect through nginx, as a mini-program -----------------------------------
        wss = f"wss://127.0.0.1:{https_port}/chat"
        mini = ["--appid", APPID, "--version", "1", "-s", SUBPROTOCOL]

        def cli_send():
            hello = json.dumps({"op": "hello", "id": 1, "v": 1, "name": "cli"})
            join = json.dumps({"op": "join", "id": 2, "room": "lobby", "since": 0})
            send = json.dumps({"op": "send", "id": 3, "room": "lobby", "cid": "cli-1", "body": "from the cli"})
            code, out, err = run_cli(a.cli, "connect", wss, "--ca", root_pem, *mini,
                                     "-x", hello, "-x", join, "-x", send, "--wait", "2")
            expect(code == 0, "tongdao connect exits 0", (code, err))
            msgs = json_lines(out)
            reply = [m for m in msgs if m.get("op") == "reply" and m.get("id") == 3]
            expect(reply and reply[0].get("ok") and reply[0].get("seq") == 1, "the send is stored as seq 1", out)
            ev = [m for m in msgs if m.get("op") == "message" and m.get("body") == "from the cli"]
            expect(len(ev) == 1 and ev[0].get("user") == "cli" and ev[0].get("seq") == 1,
                   "its message event comes back once", out)
            code, out, err = run_cli(a.cli, "connect", wss, *mini, "-x", hello, "--wait", "1")
            expect(code == 1 and "certificate" in err.lower(), "without --ca the test root is not trusted", (code, err))
            code, out, err = run_cli(a.cli, "connect", wss, "--ca", root_pem, "--appid", "wx0000000000000000",
                                     "--version", "1", "-x", hello, "--wait", "1")
            expect(code == 1 and "403" in err, "another appid's Referer is refused with 403", (code, err))
            return "seq 1 stored and delivered; no --ca: refused; another appid: 403"
        checks.run("tongdao connect --ca through nginx: hello, join, send, the message event", cli_send)

        # --- a Python client, Chromium on the page, and back -------------------------------------
        async def chat_both_ways():
            ws = await websockets.connect(wss, ssl=ctx, server_hostname="localhost", origin=page_origin,
                                          subprotocols=[SUBPROTOCOL], local_addr=(CLIENT_ADDR, 0),
                                          open_timeout=10, close_timeout=5)
            expect(ws.subprotocol == SUBPROTOCOL, "the sub-protocol is agreed through nginx", ws.subprotocol)
            ext = ws.response_headers.get("Sec-WebSocket-Extensions", "")
            expect("permessage-deflate" in ext, "permessage-deflate is agreed through nginx", ext)
            alice = Client(ws)
            await alice.request("hello", v=1, name="alice")
            await alice.request("join", room="lobby", since=0)
            first = await alice.message("from the cli")
            expect(first.get("seq") == 1, "the CLI's message is caught up", first)
            sent = await alice.request("send", room="lobby", cid="py-1", body="from python")
            expect(sent.get("seq") == 2, "the Python client's send is seq 2", sent)
            spec = {"url": f"{page_origin}/", "home": nss_home(os.path.join(tmp, "home"), root_pem), "name": "carol",
                    "expect": ["from the cli", "from python"], "send": "from chromium", "answer": "reply from python",
                    "screenshot": os.path.join(a.artifacts, "deploy-nginx-chat.png") if a.artifacts else ""}
            page = await asyncio.create_subprocess_exec(a.node, os.path.join(HERE, "chat_page.mjs"), json.dumps(spec),
                                                        stdin=subprocess.DEVNULL)
            exited = asyncio.ensure_future(page.wait())
            try:
                got = asyncio.ensure_future(alice.message("from chromium", timeout=90))
                await asyncio.wait({got, exited}, return_when=asyncio.FIRST_COMPLETED)
                expect(got.done(), "Chromium's message arrives before the page exits",
                       f"the page exited with {page.returncode}")
                ev = got.result()
                expect(ev.get("user") == "carol" and ev.get("seq") == 3, "Chromium's message arrives live", ev)
                await alice.request("send", room="lobby", cid="py-2", body="reply from python")
                code = await asyncio.wait_for(asyncio.shield(exited), 60)
            finally:
                if not got.done():
                    got.cancel()
                if page.returncode is None:  # by its pid: SIGTERM, then SIGKILL
                    page.terminate()
                    try:
                        await asyncio.wait_for(asyncio.shield(exited), 10)
                    except asyncio.TimeoutError:
                        page.kill()
                        await asyncio.wait_for(exited, 10)
            expect(code == 0, "the page's steps pass (above)", code)
            await alice.close()
            return "cli -> python (catch-up), python -> chromium, chromium -> python, python -> chromium (live)"

        checks.run("a Python client from 127.0.0.2 and Chromium on the page chat through nginx",
                   lambda: asyncio.run(asyncio.wait_for(chat_both_ways(), 150)))

        def cli_replay():
            hello = json.dumps({"op": "hello", "id": 1, "v": 1, "name": "replay"})
            join = json.dumps({"op": "join", "id": 2, "room": "lobby", "since": 0})
            code, out, err = run_cli(a.cli, "connect", wss, "--ca", root_pem, *mini, "-x", hello, "-x", join,
                                     "--wait", "2")
            expect(code == 0, "tongdao connect exits 0", (code, err))
            got = [(m.get("seq"), m.get("user"), body_text(m.get("body"))) for m in json_lines(out) if m.get("op") == "message"]
            want = [(1, "cli", "from the cli"), (2, "alice", "from python"), (3, "carol", "from chromium"),
                    (4, "alice", "reply from python")]
            expect(got == want, "the room, in order, once each", got)
            return f"{len(got)} messages"
        checks.run("the CLI replays the room through nginx", cli_replay)

        # --- the client's address: what each side logs ------------------------------------------
        async def refused_from_client_addr(url, forged=None, **tls):
            """The status of an upgrade from CLIENT_ADDR with an Origin not allowed (and, if
            given, a forged X-Forwarded-For of its own)."""
            headers = {"X-Forwarded-For": forged} if forged else None
            try:
                ws = await websockets.connect(url, origin="https://elsewhere.test", local_addr=(CLIENT_ADDR, 0),
                                              extra_headers=headers, open_timeout=10, **tls)
            except websockets.exceptions.InvalidStatusCode as e:
                return e.status_code
            await ws.close()
            return 101

        def server_refusals(want, timeout=10):
            """tongdao-server's "refused 403" lines, once there are `want` of them (bounded)."""
            deadline = time.monotonic() + timeout
            while True:
                got = [l for l in server.output().splitlines() if "refused 403" in l]
                if len(got) >= want or time.monotonic() > deadline:
                    return got
                time.sleep(0.1)

        # --trusted-proxy 127.0.0.1: the client from X-Forwarded-For, nginx's address beside it.
        via_nginx = rf"http {re.escape(CLIENT_ADDR)} \(via 127\.0\.0\.1:\d+\): refused 403"

        def addresses():
            before = len(server_refusals(0))
            code = asyncio.run(refused_from_client_addr(wss, ssl=ctx, server_hostname="localhost"))
            expect(code == 403, "an Origin not allowed is refused with 403 through nginx", code)
            deadline = time.monotonic() + 10
            while True:
                with open(access_log, errors="replace") as f:
                    lines = f.read().splitlines()
                ours = [l for l in lines if l.startswith(CLIENT_ADDR + " ")]
                upgraded = [l for l in ours if '"GET /chat HTTP/1.1" 101 ' in l]
                refused = [l for l in ours if '"GET /chat HTTP/1.1" 403 ' in l]
                if (upgraded and refused) or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            expect(upgraded, f"nginx's access log names {CLIENT_ADDR} for the WebSocket (101)", "\n".join(lines))
            expect(refused, f"nginx's access log names {CLIENT_ADDR} for the refused upgrade (403)", "\n".join(lines))
            expect(all(l.endswith(f"-> 127.0.0.1:{server_port}") for l in ours),
                   "each line ends with the upstream address", ours)
            srv_refused = server_refusals(before + 1)[before:]
            expect(srv_refused, "tongdao-server logs the refused upgrade at debug level", server.output()[-2000:])
            expect(len(srv_refused) == 1 and re.search(via_nginx, srv_refused[0]),
                   f"tongdao-server names the client ({CLIENT_ADDR}) and nginx (via 127.0.0.1:port)", srv_refused)
            return f"nginx: {refused[0]!r}; tongdao-server: {srv_refused[0].split(' ', 2)[2]!r}"
        checks.run("the client's address: in nginx's access log and in tongdao-server's (via nginx)", addresses)

        forged = "198.51.100.1"

        def forged_through_nginx():
            # nginx appends the client's address to what it sent: the server takes the
            # rightmost address that is not a trusted proxy, never the client's own claim.
            before = len(server_refusals(0))
            code = asyncio.run(refused_from_client_addr(wss, forged, ssl=ctx, server_hostname="localhost"))
            expect(code == 403, "the upgrade with a forged X-Forwarded-For is refused with 403 through nginx", code)
            got = server_refusals(before + 1)[before:]
            expect(len(got) == 1 and re.search(via_nginx, got[0]), f"logged as {CLIENT_ADDR} via nginx", got)
            expect(forged not in server.output(), f"the forged {forged} is in no line of tongdao-server's log",
                   server.output()[-2000:])
            return got[0].split(" ", 2)[2]
        checks.run("a forged X-Forwarded-For through nginx: the client's real address is logged", forged_through_nginx)

        def forged_direct():
            # Straight to the server from 127.0.0.2, not a trusted proxy: its header is ignored.
            before = len(server_refusals(0))
            code = asyncio.run(refused_from_client_addr(f"ws://127.0.0.1:{server_port}/chat", forged))
            expect(code == 403, "the direct upgrade is refused with 403", code)
            got = server_refusals(before + 1)[before:]
            expect(len(got) == 1 and re.search(rf"http {re.escape(CLIENT_ADDR)}:\d+: refused 403", got[0]),
                   f"logged as the peer {CLIENT_ADDR}:port, no via", got)
            expect(forged not in server.output(), f"the forged {forged} is in no line of tongdao-server's log",
                   server.output()[-2000:])
            return got[0].split(" ", 2)[2]
        checks.run("a forged X-Forwarded-For sent to the server directly (untrusted peer) is ignored", forged_direct)

        # --- the metrics DEPLOY.md lists ----------------------------------------------------
        def metrics():
            st, _, body = plain_get(server_port, "/metrics")
            expect(st == 200, "/metrics 200", st)
            body = body.decode()
            exported = set(re.findall(r"^# TYPE (\S+) ", body, re.M))
            documented = documented_metrics(text)
            expect(len(documented) == len(set(documented)), "each metric is listed once", documented)
            missing = sorted(exported - set(documented))
            extra = sorted(set(documented) - exported)
            expect(not missing, "every metric of /metrics is in DEPLOY.md's tables", missing)
            expect(not extra, "every metric in DEPLOY.md's tables is on /metrics", extra)

            def value(name):
                m = re.search(rf"^{name} (\d+)$", body, re.M)
                expect(m is not None, f"{name} has a value", name)
                return int(m.group(1))
            sends, stored, conns = (value(n) for n in ("tongdao_chat_sends_total", "tongdao_chat_events_stored_total",
                                                       "tongdao_connections_total"))
            expect(sends == 4 and stored == 4, "the 4 sends counted and stored", (sends, stored))
            # The CLI twice, the Python client, the page: refused upgrades are not connections.
            expect(conns >= 4, "the WebSocket connections through nginx counted", conns)
            expect(re.search(r'^tongdao_handshake_failures_total\{reason="rejected"\} [1-9]', body, re.M),
                   "the refused upgrades counted", body)
            return f"{len(exported)} metrics, as documented; {sends} sends, {conns} connections"
        checks.run("DEPLOY.md's metric tables match /metrics", metrics)

        # --- stopping --------------------------------------------------------------------------
        def stopping():
            n = nginx.stop()
            errors = nginx.errors()
            expect(n == 0, "nginx exits 0 on SIGTERM", n)
            bad = [l for l in errors.splitlines() if re.search(r"\[(crit|alert|emerg)\]", l)
                   or ("[error]" in l and "access forbidden by rule" not in l)]
            expect(not bad, "nginx logged no errors (but the refused /metrics)", bad)
            s = server.stop()
            expect(s == 0, "tongdao-server exits 0 on SIGTERM", s)
            out = server.output()
            expect(not any(m in out for m in SANITIZER_MARKS), "no sanitizer report", out[-3000:])
            return "both exit 0"
        checks.run("nginx and tongdao-server stop cleanly", stopping)
        status = 0 if not checks.failed else 1
    except Exception as e:  # noqa: BLE001
        print(f"FAIL setup: {e}\n" + traceback.format_exc(), flush=True)
        status = 1
    finally:
        if nginx is not None and nginx.proc is not None and nginx.proc.poll() is None:
            nginx.stop()
        if server is not None and server.proc.poll() is None:
            server.stop()
        if status != 0:
            for name, path in (("tongdao-server", os.path.join(tmp, "logs", "tongdao-server.log")),
                               ("nginx error.log", os.path.join(tmp, "logs", "error.log")),
                               ("nginx access log", os.path.join(tmp, "logs", "tongdao.access.log"))):
                try:
                    with open(path, errors="replace") as f:
                        print(f"--- {name} (last lines) ---\n" + "".join(f.readlines()[-40:]), flush=True)
                except OSError:
                    pass
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{checks.passed} passed, {len(checks.failed)} failed in {time.monotonic() - t_start:.1f}s"
          + (f": {', '.join(checks.failed)}" if checks.failed else ""), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
