"""tongdao chat: two terminal clients in one room of a real tongdao-server. What one types
reaches the other once, in order, with the history shown on join; the server SIGKILLed and
restarted on the same port and data dir meanwhile — lines typed while it is down wait in
the outbox and arrive after the reconnect, the reader resumes without a loss or a repeat;
the end of input exits 0 once everything typed is stored.

usage: chat_cli_test.py --cli PATH/tongdao --server PATH/tongdao-server
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))
from echo_server import free_port, stop_process  # noqa: E402

failures = []


def check(ok, what, detail=""):
    print(("ok   " if ok else "FAIL ") + what + ("" if ok or not detail else f"\n     {detail}"), flush=True)
    if not ok:
        failures.append(what)


class Reader:
    """Collects a process's output lines on a thread."""

    def __init__(self, stream):
        self.lines = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self.thread.start()

    def _run(self, stream):
        for line in stream:
            with self.lock:
                self.lines.append(line.rstrip("\n"))

    def wait_for(self, pred, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            with self.lock:
                if pred(list(self.lines)):
                    return True
            time.sleep(0.05)
        return False

    def snapshot(self):
        with self.lock:
            return list(self.lines)


def messages(lines):
    """The chat lines "[HH:MM:SS] name: text" as (name, text)."""
    out = []
    for line in lines:
        m = re.match(r"^\[\d\d:\d\d:\d\d\] ([^:]+): (.*)$", line)
        if m:
            out.append((m.group(1), m.group(2)))
    return out


def start_server(server, port, data):
    return subprocess.Popen([server, "--port", str(port), "--anonymous", "--data-dir", data, "--log-level", "warn"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def chat(cli, port, name, history=20):
    p = subprocess.Popen([cli, "chat", f"ws://127.0.0.1:{port}/chat", "--room", "lobby", "--name", name,
                          "--history", str(history)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    return p, Reader(p.stdout), Reader(p.stderr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", required=True)
    ap.add_argument("--server", required=True)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="tongdao-chat-cli-")
    port = free_port()
    server = start_server(a.server, port, os.path.join(tmp, "data"))
    procs = []
    try:
        time.sleep(0.5)
        alice, alice_out, alice_err = chat(a.cli, port, "alice")
        procs.append(alice)
        for i in range(3):
            alice.stdin.write(f"before {i}\n")
        alice.stdin.flush()
        check(alice_out.wait_for(lambda ls: len(messages(ls)) >= 3, 20), "alice sees her own 3 messages",
              alice_err.snapshot())
        bob, bob_out, bob_err = chat(a.cli, port, "bob")
        procs.append(bob)
        check(bob_out.wait_for(lambda ls: len(messages(ls)) >= 3, 20), "bob is shown the 3 as history on join",
              bob_out.snapshot())

        # The server dies; alice types meanwhile; it comes back on the same port and data.
        server.kill()
        server.wait(10)
        for i in range(2):
            alice.stdin.write(f"while down {i}\n")
        alice.stdin.flush()
        time.sleep(1.0)
        server = start_server(a.server, port, os.path.join(tmp, "data"))
        for i in range(2):
            alice.stdin.write(f"after {i}\n")
        alice.stdin.flush()
        want = [("alice", f"before {i}") for i in range(3)] + [("alice", f"while down {i}") for i in range(2)] + \
               [("alice", f"after {i}") for i in range(2)]
        ok = bob_out.wait_for(lambda ls: len(messages(ls)) >= len(want), 30)
        time.sleep(0.5)  # anything extra (a repeat) would show by now
        got = messages(bob_out.snapshot())
        check(ok and got == want, "bob gets every message once, in order, across the restart",
              f"got {got}\nstderr {bob_err.snapshot()}")
        check(any("reconnecting" in l for l in bob_err.snapshot()), "bob says it reconnects", bob_err.snapshot())

        bob.stdin.write("bye from bob\n")
        bob.stdin.close()
        check(bob.wait(20) == 0, "bob: the end of input exits 0 once stored", bob_err.snapshot())
        check(alice_out.wait_for(lambda ls: ("bob", "bye from bob") in messages(ls), 20), "alice gets bob's message")
        alice.stdin.close()
        check(alice.wait(20) == 0, "alice: exits 0", alice_err.snapshot())

        # A bad URL is refused at once, exit 1.
        r = subprocess.run([a.cli, "chat", "http://127.0.0.1:1/", "--room", "x"], capture_output=True, text=True,
                           timeout=20, stdin=subprocess.DEVNULL)
        check(r.returncode == 1 and "invalid url" in r.stderr, "an invalid URL fails with the errMsg", r.stderr)
        r = subprocess.run([a.cli, "chat", f"ws://127.0.0.1:{port}/chat"], capture_output=True, text=True, timeout=20)
        check(r.returncode == 2 and "--room" in r.stderr, "--room is required (exit 2)", r.stderr)
    finally:
        for p in procs:
            if p.poll() is None:
                stop_process(p)
        stop_process(server)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"chat_cli: {'ok' if not failures else str(len(failures)) + ' failed'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
