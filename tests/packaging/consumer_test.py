#!/usr/bin/python3
"""packaging.consumer: the build tree installed with `cmake --install --prefix TMP`, then
examples/consumer — a project of its own — configured and built out of tree against TMP
through CMake (find_package(tongdao)) and through pkg-config (its Makefile), and each
build's echo_client run against its echo_server on a free loopback port.

usage: consumer_test.py --build-dir B --source-dir S --cmake CMAKE --libdir LIBDIR
                        --version V --cxx CXX --generator G --shared ON|OFF

Checks on the way: the install layout (headers without chat/, static and shared libraries
with their SONAME, the CMake package, the .pc files naming TMP), that every installed
header compiles with only the install's include directory, and which libraries each
program really linked (shared tongdao for the servers; none for the static clients, and
no OpenSSL or zlib for the pkg-config one). The consumers are built with the tree's own
compiler: the libraries of a sanitizer build ask for the sanitizers at link time.

Every command has a time limit; the servers are stopped by their pid. Exits 77 (skipped)
only when a tool the test needs is missing, saying which.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from echo_server import stop_process  # noqa: E402

LAYERS = ("protocol", "net", "client", "server")
COMMAND_TIMEOUT = 240  # seconds for one configure or build
RUN_TIMEOUT = 30       # seconds for echo_client (it gives up after 10 by itself)


class Failure(Exception):
    pass


def run(cmd, timeout=COMMAND_TIMEOUT, env=None, cwd=None):
    """Runs cmd; its output goes to ours; raises Failure unless it exits 0 in time."""
    print("+ " + " ".join(cmd), flush=True)
    try:
        r = subprocess.run(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise Failure(f"{cmd[0]} did not finish within {timeout}s:\n{(e.stdout or b'').decode(errors='replace')}")
    out = r.stdout.decode(errors="replace")
    if r.returncode != 0:
        raise Failure(f"{' '.join(cmd)} exited {r.returncode}:\n{out}")
    return out


def needed(path):
    """The DT_NEEDED entries of an ELF file."""
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", run(["readelf", "-d", path]))


def check_install(prefix, libdir, version, shared):
    inc = os.path.join(prefix, "include", "tongdao")
    for h in ("error.hpp", "log.hpp", "protocol/connection.hpp", "net/loop.hpp", "server/server.hpp",
              "client/socket_task.hpp", "client/wx.hpp"):
        if not os.path.isfile(os.path.join(inc, h)):
            raise Failure(f"header {h} not installed in {inc}")
    if os.path.exists(os.path.join(inc, "chat")):
        raise Failure("include/tongdao/chat installed: the chat service is tongdao-server's, not a library's")
    lib = os.path.join(prefix, libdir)
    for layer in LAYERS:
        name = f"libtongdao_{layer}"
        if not os.path.isfile(os.path.join(lib, name + ".a")):
            raise Failure(f"{name}.a not in {lib}")
        if shared:
            real = os.path.join(lib, f"{name}.so.{version}")
            major = version.split(".")[0]
            if not os.path.isfile(real) or os.path.islink(real):
                raise Failure(f"{real} missing")
            for link, target in ((f"{name}.so.{major}", f"{name}.so.{version}"), (f"{name}.so", f"{name}.so.{major}")):
                p = os.path.join(lib, link)
                if not os.path.islink(p) or os.readlink(p) != target:
                    raise Failure(f"{p} is not a link to {target}")
            soname = re.search(r"\(SONAME\)\s+Library soname: \[([^\]]+)\]", run(["readelf", "-d", real]))
            if not soname or soname.group(1) != f"{name}.so.{major}":
                raise Failure(f"{real}: SONAME {soname.group(1) if soname else None}, expected {name}.so.{major}")
    cmake_dir = os.path.join(lib, "cmake", "tongdao")
    for f in ("tongdaoConfig.cmake", "tongdaoConfigVersion.cmake", "tongdaoTargets.cmake"):
        if not os.path.isfile(os.path.join(cmake_dir, f)):
            raise Failure(f"{f} not in {cmake_dir}")
    for layer in LAYERS:
        pc = os.path.join(lib, "pkgconfig", f"tongdao-{layer}.pc")
        if not os.path.isfile(pc):
            raise Failure(f"{pc} missing")
        if not re.search(rf"^prefix={re.escape(prefix)}$", open(pc).read(), re.M):
            raise Failure(f"{pc} does not say prefix={prefix}:\n{open(pc).read()}")
    # The server's files follow the prefix (GNU rules: <prefix>/etc, <prefix>/var), nothing
    # outside it.
    unit = os.path.join(prefix, "lib", "systemd", "system", "tongdao-server.service")
    for p in (os.path.join(prefix, "bin", "tongdao-server"), os.path.join(prefix, "bin", "tongdao"), unit,
              os.path.join(prefix, "etc", "tongdao", "tongdao-server.conf"),
              os.path.join(prefix, "etc", "default", "tongdao-server")):
        if not os.path.isfile(p):
            raise Failure(f"{p} not installed")
    if not os.path.isdir(os.path.join(prefix, "var", "lib", "tongdao")):
        raise Failure(f"{prefix}/var/lib/tongdao not installed")
    text = open(unit).read()
    for line in (f"ExecStart={prefix}/bin/tongdao-server --config {prefix}/etc/tongdao/tongdao-server.conf",
                 f"EnvironmentFile=-{prefix}/etc/default/tongdao-server"):
        if line not in text.splitlines():
            raise Failure(f"{unit} lacks the line {line}:\n{text}")


def check_headers(cxx, prefix, libdir, env, scratch):
    """Every installed header in one translation unit, with the .pc files' flags only."""
    inc = os.path.join(prefix, "include")
    headers = sorted(os.path.relpath(os.path.join(d, f), inc)
                     for d, _, files in os.walk(os.path.join(inc, "tongdao")) for f in files if f.endswith(".hpp"))
    tu = os.path.join(scratch, "all_headers.cpp")
    with open(tu, "w") as f:
        f.writelines(f"#include <{h}>\n" for h in headers)
        f.write("int main() { return 0; }\n")
    flags = run(["pkg-config", "--cflags", "tongdao-server", "tongdao-client"], env=env).split()
    run([cxx, "-std=c++20", "-fsyntax-only", *flags, tu])
    print(f"ok: the {len(headers)} installed headers compile with {' '.join(flags)}")


class EchoServer:
    """An echo_server of the consumer on a port it picks (it prints it)."""

    def __init__(self, path, env, timeout=20.0):
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([path, "0"], stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(r"listening on (\d+)", self.output())
            if m:
                self.port = int(m.group(1))
                return
            if self.proc.poll() is not None:
                raise Failure(f"{path} exited early (status {self.proc.returncode}):\n{self.output()}")
            if time.monotonic() > deadline:
                self.stop()
                raise Failure(f"{path} printed no port within {timeout}s:\n{self.output()}")
            time.sleep(0.05)

    def output(self):
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self):
        return stop_process(self.proc, 10.0, "echo_server")


def run_pair(name, bin_dir, env):
    server = EchoServer(os.path.join(bin_dir, "echo_server"), env)
    try:
        message = f"hello through {name}"
        out = run([os.path.join(bin_dir, "echo_client"), f"ws://127.0.0.1:{server.port}/echo", message],
                  timeout=RUN_TIMEOUT, env=env)
        if f"echo: {message}" not in out or "closed: 1000" not in out:
            raise Failure(f"{name}: echo_client said:\n{out}")
    finally:
        status = server.stop()
    if status != 0:
        raise Failure(f"{name}: echo_server exited {status} on SIGTERM:\n{server.output()}")
    print(f"ok: {name}: echo_client got its echo from echo_server on port {server.port}")


def check_links(name, bin_dir, shared):
    server, client = (needed(os.path.join(bin_dir, p)) for p in ("echo_server", "echo_client"))
    if shared and not any(n.startswith("libtongdao_server.so") for n in server):
        raise Failure(f"{name}: echo_server does not link libtongdao_server.so: {server}")
    if any(n.startswith("libtongdao") for n in client):
        raise Failure(f"{name}: echo_client was to link tongdao statically, and needs {client}")
    return client


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--source-dir", required=True)
    ap.add_argument("--cmake", required=True)
    ap.add_argument("--libdir", required=True)
    ap.add_argument("--version", required=True)
    ap.add_argument("--cxx", required=True)
    ap.add_argument("--generator", required=True)
    ap.add_argument("--shared", required=True)
    args = ap.parse_args()
    shared = args.shared in ("1", "ON", "TRUE")
    args.build_dir, args.source_dir = os.path.abspath(args.build_dir), os.path.abspath(args.source_dir)
    consumer = os.path.join(args.source_dir, "examples", "consumer")

    # Tools of Debian's build-essential, cmake and pkg-config (scripts/install-deps.sh).
    missing = [t for t in ("readelf", "make", "pkg-config") if not shutil.which(t)]
    if args.generator == "Ninja" and not shutil.which("ninja"):
        missing.append("ninja")
    if missing:
        print(f"SKIP: {', '.join(missing)} not found (scripts/install-deps.sh installs them)")
        return 77

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tongdao-consumer-") as scratch:
        prefix = os.path.join(scratch, "prefix")
        run([args.cmake, "--install", args.build_dir, "--prefix", prefix])
        check_install(prefix, args.libdir, args.version, shared)
        print(f"ok: installed into {prefix}")

        env = dict(os.environ)
        # Only this install's .pc files (and the system's, for OpenSSL and zlib).
        env["PKG_CONFIG_PATH"] = os.path.join(prefix, args.libdir, "pkgconfig")
        for var in ("CMAKE_PREFIX_PATH", "PKG_CONFIG_LIBDIR", "LD_LIBRARY_PATH"):
            env.pop(var, None)
        version = run(["pkg-config", "--modversion", "tongdao-client"], env=env).strip()
        if version != args.version:
            raise Failure(f"pkg-config --modversion tongdao-client: {version}, expected {args.version}")
        check_headers(args.cxx, prefix, args.libdir, env, scratch)

        # CMake: find_package(tongdao) from the prefix only.
        cmake_build = os.path.join(scratch, "cmake-build")
        run([args.cmake, "-S", consumer, "-B", cmake_build, "-G", args.generator,
             f"-DCMAKE_CXX_COMPILER={args.cxx}", f"-DCMAKE_PREFIX_PATH={prefix}",
             "-DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF", "-DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF"], env=env)
        run([args.cmake, "--build", cmake_build, "-j1"], env=env)
        check_links("CMake", cmake_build, shared)
        run_pair("CMake", cmake_build, env)

        # pkg-config: the Makefile, run in a directory of its own.
        make_build = os.path.join(scratch, "make-build")
        os.mkdir(make_build)
        run(["make", "-f", os.path.join(consumer, "Makefile"), f"CXX={args.cxx}"], env=env, cwd=make_build)
        client = check_links("pkg-config", make_build, shared)
        static_too = [n for n in client if re.match(r"lib(ssl|crypto|z)\.so", n)]
        if static_too:
            raise Failure(f"pkg-config: echo_client, linked with --static, still needs {static_too}")
        run_pair("pkg-config", make_build, env)

    print(f"packaging.consumer: ok ({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Failure as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)
