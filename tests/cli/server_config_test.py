"""tongdao-server --config FILE (TOML): a key per option, refused keys and types with the
file, line and reason, the command line and the environment winning over the file, SIGHUP
on a server without TLS (harmless), and the settings file the Debian package ships
(packaging/tongdao-server/tongdao-server.conf.in, its paths put in a temporary directory)
starting a server that answers /health.

usage: server_config_test.py --server PATH/tongdao-server
"""

import argparse
import os
import shutil
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
