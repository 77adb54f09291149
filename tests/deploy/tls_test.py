#!/usr/bin/python3
"""deploy.tls: tongdao-server ending TLS itself, as docs/DEPLOY.md describes it.

tongdao-server (anonymous, a temporary --data-dir, free loopback ports) with two
certificate pairs, given as arrays in a TOML settings file (--config) as for the service,
made here by openssl (a root, an intermediate, then one certificate for
localhost and 127.0.0.1 and one for *.other.test): SNI picks the pair by name, the first
without a name or a match, each with its full chain; `tongdao connect --ca` chats over
wss://; a renewed certificate is served to new connections after SIGHUP while an open
connection goes on; a broken file at the next SIGHUP is logged and the renewed one kept.

usage: tls_test.py --server PATH --cli PATH

Every wait is bounded; tongdao-server is stopped by its pid (SIGTERM, then SIGKILL).
Exit 0 passed, 1 a check failed, 2 bad setup.
"""

import argparse
import http.client
import asyncio
import hashlib
import json
import os
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
sys.path.insert(0, HERE)
from nginx_test import (SANITIZER_MARKS, SUBPROTOCOL, Checks, Client, Server, expect, fail_setup,  # noqa: E402
                        free_port, json_lines, make_chain, openssl, plain_get, run_cli, stop_process)


def issue_other(d):
    """other.pem (certificate, then the intermediate) and other.key for other.test, *.other.test."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", *ec, "-subj", "/CN=other.test", "-keyout", "other.key", "-out", "other.csr", cwd=d)
    with open(os.path.join(d, "other.ext"), "w") as f:
        f.write("subjectAltName=DNS:other.test,DNS:*.other.test\nbasicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "other.csr", "-CA", "intermediate.pem", "-CAkey", "intermediate.key",
            "-CAcreateserial", "-days", "30", "-extfile", "other.ext", "-out", "other.crt", cwd=d)
    with open(os.path.join(d, "other.pem"), "w") as out:
        for part in ("other.crt", "intermediate.pem"):
            with open(os.path.join(d, part)) as f:
                out.write(f.read())
    return os.path.join(d, "other.pem"), os.path.join(d, "other.key")


def handshake(port, ctx, name):
    """(the SHA-256 of the certificate, its subject CN when verified, the TLS version)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    with ctx.wrap_socket(raw, server_hostname=name) as s:
        der = s.getpeercert(binary_form=True)
        cn = dict(x[0] for x in s.getpeercert()["subject"]).get("commonName") if ctx.verify_mode else None
        return hashlib.sha256(der).hexdigest(), cn, s.version()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--cli", required=True)
    a = ap.parse_args()
    if not shutil.which("openssl"):
        fail_setup("openssl is missing (Debian package openssl)")
    try:
        import websockets
    except ImportError as e:
        fail_setup(f"Python websockets is missing ({e}; Debian python3-websockets)")
    for p in (a.server, a.cli):
        if not os.access(p, os.X_OK):
            fail_setup(f"not found: {p}")

    t_start = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="tongdao-deploy-tls-")
    checks = Checks()
    server = None
    status = 1
    try:
        tls = os.path.join(tmp, "tls")
        root_pem, fullchain, key = make_chain(tls)
        other_pem, other_key = issue_other(tls)
        port, tls_port = free_port(), free_port()
        while tls_port == port:
            tls_port = free_port()
        os.makedirs(os.path.join(tmp, "data"))
        log_path = os.path.join(tmp, "tongdao-server.log")
        # The pairs as the service gets them (docs/DEPLOY.md): arrays in its TOML settings file.
        settings = os.path.join(tmp, "tongdao-server.conf")
        with open(settings, "w") as f:
            f.write(f"tls-port = {tls_port}\ntls-cert = {json.dumps([fullchain, other_pem])}\n"
                    f"tls-key = {json.dumps([key, other_key])}\n")
        server = Server(a.server, port, os.path.join(tmp, "data"), log_path, [
            "--config", settings, "--anonymous", "--log-level", "info"]).wait_healthy()
        print(f"tongdao-server pid {server.proc.pid}: ws {port}, wss {tls_port}; {tmp}", flush=True)
        ctx = ssl.create_default_context(cafile=root_pem)
        loose = ssl.create_default_context()
        loose.check_hostname = False
        loose.verify_mode = ssl.CERT_NONE

        def sni():
            first, cn1, v1 = handshake(tls_port, ctx, "localhost")
            other, cn2, _ = handshake(tls_port, ctx, "chat.other.test")
            bare, cn3, _ = handshake(tls_port, ctx, "other.test")
            expect(cn1 == "localhost", "SNI localhost: the first pair", cn1)
            expect(cn2 == "other.test" and other != first, "SNI chat.other.test: the wildcard of the second pair", cn2)
            expect(cn3 == "other.test", "SNI other.test: the second pair", cn3)
            nomatch, _, _ = handshake(tls_port, loose, "nowhere.test")
            expect(nomatch == first, "a name no certificate has: the first pair")
            deep, _, _ = handshake(tls_port, loose, "a.chat.other.test")
            expect(deep == first, "a wildcard covers one label: a.chat.other.test gets the first pair")
            # Verified against the root alone: the intermediate came with each leaf.
            return f"localhost -> {cn1}, chat.other.test -> {cn2}, nowhere.test and a.chat.other.test -> the first; {v1}"
        checks.run("SNI picks the pair by name, each with its full chain", sni)

        wss = f"wss://127.0.0.1:{tls_port}/chat"

        def cli():
            hello = json.dumps({"op": "hello", "id": 1, "v": 1, "name": "cli"})
            join = json.dumps({"op": "join", "id": 2, "room": "lobby", "since": 0})
            send = json.dumps({"op": "send", "id": 3, "room": "lobby", "cid": "c1", "body": "over wss"})
            code, out, err = run_cli(a.cli, "connect", wss, "--ca", root_pem, "-s", SUBPROTOCOL,
                                     "-x", hello, "-x", join, "-x", send, "--wait", "2")
            expect(code == 0, "tongdao connect exits 0", (code, err))
            ev = [m for m in json_lines(out) if m.get("op") == "message" and m.get("body") == "over wss"]
            expect(len(ev) == 1 and ev[0].get("seq") == 1, "its message event, once", out)
            return "seq 1"
        checks.run("tongdao connect --ca over the server's own wss://", cli)

        def wait_log(text, after, timeout=10.0):
            deadline = time.monotonic() + timeout
            while True:
                out = server.output()
                if out.count(text) > after:
                    return out
                if time.monotonic() > deadline:
                    raise AssertionError(f"no {text!r} in the log within {timeout}s:\n{out[-2000:]}")
                time.sleep(0.05)

        async def renewal():
            old, _, _ = handshake(tls_port, ctx, "localhost")
            ws = await websockets.connect(wss, ssl=ctx, server_hostname="localhost", subprotocols=[SUBPROTOCOL],
                                          open_timeout=10, close_timeout=5)
            alice = Client(ws)
            await alice.request("hello", v=1, name="alice")
            await alice.request("join", room="lobby", since=1)
            # Renewed: a new key and certificate in the same files, as a deploy hook copies them.
            renewed = os.path.join(tls, "renewed")
            os.makedirs(renewed)
            root2, chain2, key2 = make_chain(renewed)
            shutil.copy(chain2, fullchain)
            shutil.copy(key2, key)
            os.kill(server.proc.pid, signal.SIGHUP)
            wait_log("TLS certificates reloaded", 0)
            ctx2 = ssl.create_default_context(cafile=root2)
            new, cn, _ = handshake(tls_port, ctx2, "localhost")
            expect(new != old and cn == "localhost", "a new connection gets the renewed certificate")
            sent = await alice.request("send", room="lobby", cid="a1", body="still here")
            ev = await alice.message("still here")
            expect(ev.get("seq") == sent.get("seq") == 2, "the connection opened before goes on", ev)
            # A broken file at the next reload: logged, the renewed pair kept.
            with open(key, "w") as f:
                f.write("not a key\n")
            os.kill(server.proc.pid, signal.SIGHUP)
            out = wait_log("TLS reload failed, keeping the old certificates", 0)
            expect(server.proc.poll() is None, "the server is still running")
            kept, _, _ = handshake(tls_port, ctx2, "localhost")
            expect(kept == new, "new connections still get the renewed certificate")
            await alice.request("ping")
            await alice.close()
            line = [l for l in out.splitlines() if "TLS reload failed" in l][0]
            return f"renewed after SIGHUP; then {line.split(' ', 2)[2]!r}"

        checks.run("SIGHUP reloads the certificates; open connections go on; a broken file is kept out",
                   lambda: asyncio.run(asyncio.wait_for(renewal(), 60)))

        def plain_listener():
            # --no-plain: wss:// alone; --plain-host: the plain port on another address (loopback
            # for /metrics and health checks) than the TLS one. The second pair: the first was
            # broken on purpose by the renewal check.
            def https_status(host, p):
                c = http.client.HTTPSConnection(host, p, timeout=5, context=loose)
                try:
                    c.request("GET", "/health")
                    return c.getresponse().status
                finally:
                    c.close()

            def refused(host, p):
                with socket.socket() as sock:
                    sock.settimeout(2)
                    return sock.connect_ex((host, p)) != 0

            out = []
            for extra, plain_addr, tls_addr in ((["--no-plain"], None, "127.0.0.1"),
                                                (["--plain-host", "127.0.0.1"], "127.0.0.1", "127.0.0.2")):
                p2, t2 = free_port(), free_port()
                args = [a.server, "--host", tls_addr, "--port", str(p2), "--tls-port", str(t2), "--tls-cert", other_pem,
                        "--tls-key", other_key, "--anonymous", "--data-dir", os.path.join(tmp, f"plain-{len(out)}")] + extra
                proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        text=True)
                try:
                    deadline = time.monotonic() + 20
                    while True:
                        try:
                            if https_status(tls_addr, t2) == 200:
                                break
                        except OSError:
                            pass
                        expect(proc.poll() is None and time.monotonic() < deadline,
                               f"{' '.join(extra)}: healthy over https://{tls_addr}:{t2}", proc.returncode)
                        time.sleep(0.05)
                    if plain_addr is None:
                        expect(refused("127.0.0.1", p2), "--no-plain: nothing listens on the plain port")
                    else:
                        status, _, _ = plain_get(p2, "/health")
                        expect(status == 200, "--plain-host 127.0.0.1: /health on the plain port there", status)
                        expect(refused("127.0.0.2", p2), "--plain-host: the plain port is not on --host")
                        expect(refused("127.0.0.1", t2), "--plain-host: the TLS port stays on --host")
                    out.append(" ".join(extra))
                finally:
                    stop_process(proc, 20.0, "tongdao-server")
            r = subprocess.run([a.server, "--no-plain", "--data-dir", os.path.join(tmp, "plain-x")], capture_output=True,
                               text=True, timeout=30)
            expect(r.returncode == 2 and "--no-plain needs --tls-cert" in r.stderr, "--no-plain without TLS: exit 2", r.stderr)
            return "; ".join(out) + "; --no-plain alone refused"
        checks.run("--no-plain and --plain-host place the plain listener", plain_listener)

        def stopping():
            s = server.stop()
            expect(s == 0, "tongdao-server exits 0 on SIGTERM", s)
            out = server.output()
            expect(not any(m in out for m in SANITIZER_MARKS), "no sanitizer report", out[-3000:])
            return "exit 0"
        checks.run("tongdao-server stops cleanly", stopping)
        status = 0 if not checks.failed else 1
    except Exception as e:  # noqa: BLE001
        print(f"FAIL setup: {e}\n" + traceback.format_exc(), flush=True)
        status = 1
    finally:
        if server is not None and server.proc.poll() is None:
            server.stop()
        if status != 0 and server is not None:
            print("--- tongdao-server (last lines) ---\n" + "\n".join(server.output().splitlines()[-40:]), flush=True)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{checks.passed} passed, {len(checks.failed)} failed in {time.monotonic() - t_start:.1f}s"
          + (f": {', '.join(checks.failed)}" if checks.failed else ""), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
