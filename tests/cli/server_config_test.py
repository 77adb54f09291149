"""tongdao-server --config FILE (TOML): a key per option, refused keys and types with the
file, line and reason, the command line and the environment winning over the file, SIGHUP
(the file read again: what can change applied, what cannot named; harmless without TLS), and the settings file the Debian package ships
(packaging/tongdao-server/tongdao-server.conf.in, its paths put in a temporary directory)
starting a server that answers /health.

usage: server_config_test.py --server PATH/tongdao-server
"""

import argparse
import os
import base64
import shutil
import socket
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))
from echo_server import free_port, stop_process  # noqa: E402

ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
failures = []


def check(ok, what, detail=""):
    print(("ok   " if ok else "FAIL ") + what + ("" if ok or not detail else f"\n     {detail}"), flush=True)
    if not ok:
        failures.append(what)


def refused(server, tmp, text, expect, env=None):
    """Writes `text` as a config file; the server must exit 2 at once saying `expect`."""
    path = os.path.join(tmp, "bad.toml")
    with open(path, "w") as f:
        f.write(text)
    r = subprocess.run([server, "--config", path, "--port", str(free_port()), "--anonymous",
                        "--data-dir", os.path.join(tmp, "d")], capture_output=True, text=True, timeout=30,
                       env=env)
    check(r.returncode == 2 and expect in r.stderr, f"refused: {text.strip()!r} -> {expect!r}",
          f"exit {r.returncode}, stderr {r.stderr.strip()!r}")


def health(port, deadline_s=20):
    """Waits, bounded, for /health to answer 200; returns whether it did."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            time.sleep(0.1)
    return False


def upgrade_status(port, origin):
    """The HTTP status a WebSocket upgrade of /chat with this Origin gets."""
    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        c.sendall((f"GET /chat HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n\r\n").encode())
        head = c.recv(4096).decode("latin-1")
    return int(head.split(" ", 2)[1]) if head.startswith("HTTP/1.1 ") else 0


def serve(server, args, env=None):
    return subprocess.Popen([server] + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    server = ap.parse_args().server
    tmp = tempfile.mkdtemp(prefix="tongdao-config-")
    try:
        refused(server, tmp, "port = 1\nbogus = 2\n", "bad.toml:2:1: unknown key 'bogus'")
        refused(server, tmp, "port = \"eighty\"\n", "bad.toml:1:1: 'port' is an integer")
        refused(server, tmp, "rate-limit = \"fast\"\n", "bad.toml:1:1: 'rate-limit' is a number")
        refused(server, tmp, "anonymous = \"yes\"\n", "bad.toml:1:1: 'anonymous' is true or false")
        refused(server, tmp, "allowed-origin = \"https://a\"\n", "'allowed-origin' is an array")
        refused(server, tmp, "allowed-origin = [1]\n", "bad.toml:1:19: the items of 'allowed-origin' are a string")
        refused(server, tmp, "deflate = \"maybe\"\n", "bad.toml:1:1: --deflate: maybe not in {off,shared,dedicated}")
        refused(server, tmp, "trusted-proxy = [\"127.0.0.1\", \"10.0.0.1/8\"]\n",
                "bad.toml:1:1: --trusted-proxy: '10.0.0.1/8': bits are set past the /8 prefix")
        refused(server, tmp, "trusted-proxy = [\"::1/129\"]\n",
                "bad.toml:1:1: --trusted-proxy: '::1/129': the prefix length of an IPv6 range is at most 128")
        bad_cli = subprocess.run([server, "--anonymous", "--trusted-proxy", "127.0.0.1,nginx.local"], capture_output=True,
                                 text=True, timeout=30)
        check(bad_cli.returncode != 0 and "--trusted-proxy: 'nginx.local': not an IP address or CIDR range"
              in bad_cli.stderr, "a bad --trusted-proxy on the command line is refused, named", bad_cli.stderr.strip())
        refused(server, tmp, "write-delay = 2000\n", "bad.toml:1:1: --write-delay: Value 2000 not in range 0 to 1000")
        redis_commit = subprocess.run([server, "--anonymous", "--redis", "redis://127.0.0.1:9", "--commit-delay", "5",
                                       "--port", str(free_port())], capture_output=True, text=True, timeout=30)
        check(redis_commit.returncode == 1 and "--commit-delay applies to SQLite, not to Redis" in redis_commit.stderr,
              "--commit-delay with Redis is refused, named", redis_commit.stderr.strip())
        refused(server, tmp, "port =\n", "bad.toml:1:7:")
        refused(server, tmp, "[server]\nport = 1\n", "bad.toml:1:2: unknown key 'server'")
        missing = subprocess.run([server, "--config", os.path.join(tmp, "none.toml")], capture_output=True, text=True,
                                 timeout=30)
        check(missing.returncode == 2 and "none.toml" in missing.stderr, "a missing file is refused, named",
              missing.stderr.strip())

        # The file's port, overridden by the environment, overridden by the command line.
        file_port, env_port, cli_port = free_port(), free_port(), free_port()
        good = os.path.join(tmp, "good.toml")
        with open(good, "w") as f:
            f.write(f'port = {file_port}\nanonymous = true\ndata-dir = "{tmp}/data"\n'
                    f'allowed-origin = ["http://127.0.0.1"]\nrate-limit = 5\n')
        # SIGHUP without TLS: nothing to reload, and the server goes on (a service's reload).
        p = serve(server, ["--config", good, "--port", str(cli_port)])
        try:
            up = health(cli_port)
            p.send_signal(signal.SIGHUP)
            time.sleep(0.5)
            check(up and p.poll() is None and health(cli_port), "SIGHUP without TLS: the server goes on")
        finally:
            stop_process(p)

        # SIGHUP with a changed file: the allowed origins change for new connections, a port
        # change is named as needing a restart, a broken file keeps the old settings.
        hup_port = free_port()
        hup = os.path.join(tmp, "hup.toml")
        write = lambda text: open(hup, "w").write(text)  # noqa: E731
        write(f'port = {hup_port}\nanonymous = true\ndata-dir = "{tmp}/hup"\nallowed-origin = ["http://a.test"]\n')
        p = subprocess.Popen([server, "--config", hup], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            up = health(hup_port)
            before = (upgrade_status(hup_port, "http://a.test"), upgrade_status(hup_port, "http://b.test"))
            write(f'port = {hup_port + 1}\nanonymous = true\ndata-dir = "{tmp}/hup"\nallowed-origin = ["http://b.test"]\n'
                  f'trusted-proxy = ["127.0.0.1", "10.0.0.0/8"]\n')
            p.send_signal(signal.SIGHUP)
            time.sleep(0.8)
            after = (upgrade_status(hup_port, "http://a.test"), upgrade_status(hup_port, "http://b.test"))
            write("port = \"broken\"\n")
            p.send_signal(signal.SIGHUP)
            time.sleep(0.8)
            kept = upgrade_status(hup_port, "http://b.test")
            alive = p.poll() is None
        finally:
            stop_process(p)
        log = p.stderr.read()
        check(up and before == (101, 403) and after == (403, 101),
              "SIGHUP: the file's new allowed origins apply to new connections", f"before {before}, after {after}")
        check("restart is needed to change port" in log, "SIGHUP: a changed port is named as needing a restart", log[-600:])
        check("SIGHUP: trusted proxies now 127.0.0.1/32, 10.0.0.0/8" in log and "trusted-proxy" not in
              log.split("restart is needed to change", 1)[-1].splitlines()[0],
              "SIGHUP: the trusted proxies are reloaded, not named as needing a restart", log[-600:])
        check(alive and kept == 101 and "settings not reloaded" in log and "hup.toml:1:1" in log,
              "SIGHUP: a broken file is refused with its line, the settings in force stay", log[-600:])

        for args, env_extra, port, what in (
                ([], {}, file_port, "the file's port"),
                ([], {"TONGDAO_PORT": str(env_port)}, env_port, "the environment wins over the file"),
                (["--port", str(cli_port)], {"TONGDAO_PORT": str(env_port)}, cli_port, "the command line wins over both")):
            env = dict(os.environ, **env_extra)
            p = serve(server, ["--config", good] + args, env)
            try:
                check(health(port), f"{what}: /health on {port}")
            finally:
                stop_process(p)

        # A variable of a repeatable option may list several values.
        port = free_port()
        env = dict(os.environ, TONGDAO_ALLOWED_ORIGIN="https://a.example,https://b.example")
        p = serve(server, ["--port", str(port), "--anonymous", "--data-dir", os.path.join(tmp, "env-list")], env)
        try:
            up = health(port)
            got = tuple(upgrade_status(port, o) for o in ("https://a.example", "https://b.example", "https://c.example"))
        finally:
            stop_process(p)
        check(up and got == (101, 101, 403), "TONGDAO_ALLOWED_ORIGIN=A,B admits both origins, and only them", f"{got}")

        # Under systemd (JOURNAL_STREAM names standard error), each line carries its syslog
        # priority for the journal; a JOURNAL_STREAM naming another file changes nothing.
        for matches in (True, False):
            r, w = os.pipe()
            st = os.fstat(w if matches else r)
            if not matches:
                st = os.stat(os.devnull)
            port = free_port()
            env = dict(os.environ, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
            p = subprocess.Popen([server, "--port", str(port), "--anonymous", "--data-dir", os.path.join(tmp, "journal")],
                                 stdout=subprocess.DEVNULL, stderr=w, env=env)
            os.close(w)
            try:
                health(port)
            finally:
                stop_process(p)
            with os.fdopen(r, errors="replace") as f:
                lines = [l for l in f.read().splitlines() if l.strip()]
            if matches:
                check(lines and all(l[:3] in ("<3>", "<4>", "<6>", "<7>") for l in lines)
                      and any(l.startswith("<6>") and " info " in l for l in lines),
                      "JOURNAL_STREAM naming standard error: each line starts with its syslog priority", "\n".join(lines))
            else:
                check(lines and not any(l.startswith("<") for l in lines),
                      "JOURNAL_STREAM naming another file: no priority prefix", "\n".join(lines))
        # A server that does not start says why at the priority of an error.
        r, w = os.pipe()
        st = os.fstat(w)
        env = dict(os.environ, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
        p = subprocess.Popen([server, "--port", str(free_port()), "--anonymous", "--redis", "redis-sentinel://h:1"],
                             stdout=subprocess.DEVNULL, stderr=w, env=env)
        os.close(w)
        try:
            status = p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            stop_process(p)
            status = None
        with os.fdopen(r, errors="replace") as f:
            out = f.read()
        check(status == 1 and out.startswith("<3>tongdao-server: ") and "#mymaster" in out,
              "a start-up error in the journal: one line at priority err (<3>) with its reason", f"{status} {out!r}")

        # What the package ships, with its paths in the temporary directory.
        text = open(os.path.join(ROOT, "packaging", "tongdao-server", "tongdao-server.conf.in")).read()
        etc = os.path.join(tmp, "etc")
        os.makedirs(os.path.join(etc, "tongdao"))
        with open(os.path.join(etc, "tongdao", "auth-secret"), "w") as f:
            f.write("0123456789abcdef0123456789abcdef\n")
        text = text.replace("@statedir@", os.path.join(tmp, "state")).replace("@sysconfdir@", etc) \
                   .replace("@bindir@", os.path.dirname(server))
        shipped = os.path.join(etc, "tongdao", "tongdao-server.conf")
        with open(shipped, "w") as f:
            f.write(text)
        port = free_port()
        p = serve(server, ["--config", shipped, "--port", str(port)])
        try:
            check(health(port), "the packaged tongdao-server.conf starts a server")
        finally:
            stop_process(p)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"server_config: {'ok' if not failures else str(len(failures)) + ' failed'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
