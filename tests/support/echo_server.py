"""Test support shared by the Python tests: processes stopped by their pid, and
tongdao-server on a free loopback port, healthy before use."""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port():
    """A port that was free a moment ago (bind to 0, read it, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc, term_timeout=10.0, name=None):
    """SIGTERM, a bounded wait, then SIGKILL; returns the exit status."""
    if proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(term_timeout)
        except subprocess.TimeoutExpired:
            if name:
                print(f"{name} {proc.pid} ignored SIGTERM for {term_timeout}s: SIGKILL", file=sys.stderr)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
    return proc.returncode


class ManagedProcess:
    """What a test's server object shares: its `proc` (None until started), stopped by pid.
    `stop_name` names it in the log; `term_timeout` bounds the wait after SIGTERM."""

    proc = None
    stop_name = "process"
    term_timeout = 10.0

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        """SIGKILL by pid; returns once it is gone."""
        if self.running():
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(15)

    def stop(self, term_timeout=None):
        """SIGTERM, a bounded wait, then SIGKILL; the exit status (None: never started)."""
        if self.proc is None:
            return None
        return stop_process(self.proc, self.term_timeout if term_timeout is None else term_timeout, self.stop_name)


class EchoServer:
    """tongdao-server (one loop) on 127.0.0.1:port, its output in a temporary file; `extra`
    arguments follow the defaults."""

    def __init__(self, path, start_timeout=20.0, extra=()):
        self.port = free_port()
        self.log = tempfile.TemporaryFile()
        # The chat service beside /echo keeps its database here, removed with this object.
        self.data = tempfile.TemporaryDirectory(prefix="tongdao-echo-")
        self.proc = subprocess.Popen([path, "--host", "127.0.0.1", "--port", str(self.port), "--threads", "1",
                                      "--anonymous", "--data-dir", self.data.name, *extra],
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + start_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tongdao-server exited early (status {self.proc.returncode}):\n{self.output()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"tongdao-server not healthy within {start_timeout}s:\n{self.output()}")
            time.sleep(0.05)

    def output(self):
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self, term_timeout=10.0):
        return stop_process(self.proc, term_timeout, "tongdao-server")
