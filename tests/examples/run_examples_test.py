#!/usr/bin/python3
"""examples.seed: runs every program in examples/ (the seed's samples in C++) against
tongdao-server's /echo and checks its exit status and output; the onSocketError sample
runs against a loopback port where nothing listens.

usage: run_examples_test.py --server PATH/tongdao-server --examples DIR

Everything is on 127.0.0.1; every wait is bounded; the server is stopped by its pid
(SIGTERM, then SIGKILL).
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from echo_server import EchoServer as Server  # noqa: E402

RUN_TIMEOUT = 30.0  # seconds for one example


def closed_port_url():
    """A ws:// URL on a loopback port that is bound but not listening: connecting is refused.
    Returns (url, socket); keep the socket open while the URL is in use."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    return f"ws://127.0.0.1:{s.getsockname()[1]}/echo", s


def run(path, *args):
    """Runs an example; returns (exit status, stdout lines, stderr)."""
    try:
        p = subprocess.run([path, *args], stdin=subprocess.DEVNULL, capture_output=True, timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        return None, (e.stdout or b"").decode(errors="replace").splitlines(), (e.stderr or b"").decode(errors="replace")
    return p.returncode, p.stdout.decode(errors="replace").splitlines(), p.stderr.decode(errors="replace")


SANITIZER_SIGNS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:", "WARNING: ThreadSanitizer")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True, help="the tongdao-server binary")
    ap.add_argument("--examples", required=True, help="the folder with the example_* binaries")
    opts = ap.parse_args()

    def example(name):
        path = os.path.join(opts.examples, "example_" + name)
        if not os.access(path, os.X_OK):
            raise SystemExit(f"missing example binary {path}")
        return path

    passed, failed = 0, 0

    def check(name, status, lines, stderr, want_status, want_lines, unwanted=()):
        """want_lines must appear in this order (other lines may come between)."""
        nonlocal passed, failed
        problems = []
        if status is None:
            problems.append(f"did not exit within {RUN_TIMEOUT}s")
        elif status != want_status:
            problems.append(f"exit status {status}, expected {want_status}")
        at = 0
        for want in want_lines:
            while at < len(lines) and lines[at] != want:
                at += 1
            if at == len(lines):
                problems.append(f"missing line {want!r} (in order)")
                break
            at += 1
        for bad in unwanted:
            if any(bad in line for line in lines):
                problems.append(f"unexpected output {bad!r}")
        if any(sign in stderr for sign in SANITIZER_SIGNS):
            problems.append("a sanitizer report on stderr")
        if problems:
            failed += 1
            print(f"FAIL {name}: {'; '.join(problems)}")
            print("  stdout:\n    " + "\n    ".join(lines))
            if stderr.strip():
                print("  stderr:\n    " + stderr.strip().replace("\n", "\n    "))
        else:
            passed += 1
            print(f"ok   {name}")

    server = Server(opts.server)
    try:
        url = f"ws://127.0.0.1:{server.port}/echo"

        status, lines, stderr = run(example("connect_with_header"), url)
        check("connect_with_header", status, lines, stderr, 0, ["connectSocket:ok", "WebSocket connection open!"])
        if status == 0 and "  upgrade: websocket" not in [line.lower() for line in lines]:
            failed += 1
            print("FAIL connect_with_header: the answer's header fields lack 'Upgrade: websocket'")

        check("on_socket_open", *run(example("on_socket_open"), url), 0, ["WebSocket connection open!"])

        refused, holder = closed_port_url()
        try:
            status, lines, stderr = run(example("on_socket_error"), refused)
        finally:
            holder.close()
        check("on_socket_error (nothing listens)", status, lines, stderr, 0,
              ["WebSocket failed to open, please check!"], unwanted=["WebSocket connection open!"])
        if status == 0 and not any(line.strip().startswith("errMsg: connectSocket:fail") for line in lines):
            failed += 1
            print("FAIL on_socket_error: no 'errMsg: connectSocket:fail ...' line")

        check("on_socket_error (a live server)", *run(example("on_socket_error"), url), 0,
              ["WebSocket connection open!"], unwanted=["WebSocket failed to open"])

        check("send_socket_message", *run(example("send_socket_message"), url), 0,
              ["queued: first", "queued: second", "queued: third",
               "sending: first", "sending: second", "sending: third",
               "echo: first", "echo: second", "echo: third"])

        check("on_socket_message", *run(example("on_socket_message"), url), 0,
              ["server says: hello from tongdao"])

        check("close_socket", *run(example("close_socket"), url), 0,
              ["WebSocket connection open!", "WebSocket closed!", "  code: 1000"])

        # The seed's timing pitfall, fixed: closeSocket before onSocketOpen still closes.
        check("close_socket --before-open", *run(example("close_socket"), url, "--before-open"), 0,
              ["WebSocket closed!", "  code: 1000"], unwanted=["WebSocket connection open!"])

        # Against a port where nothing listens, the examples that need a server say so by failing.
        refused, holder = closed_port_url()
        try:
            status, lines, stderr = run(example("on_socket_message"), refused)
        finally:
            holder.close()
        check("on_socket_message (nothing listens)", status, lines, stderr, 1, [], unwanted=["server says"])
    finally:
        code = server.stop()
        if code not in (0, -signal.SIGTERM):
            failed += 1
            print(f"FAIL tongdao-server exited with status {code}:\n{server.output()}")

    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
