#!/usr/bin/python3
"""packaging.deb: cpack's Debian packages of the build tree, unpacked and checked.

usage: deb_test.py --build-dir B --source-dir S --cmake CMAKE --cpack CPACK --libdir LIBDIR
                   --version V --soversion N --shared ON|OFF --web-page ON|OFF

cpack runs on the build tree (its packages into a temporary directory; it first builds the
tree's preinstall target, which has nothing to do in a tree just built); each .deb is unpacked
with `dpkg-deb -x` into one temporary root and checked: its name, version and Depends, its
files, tongdao-server's conffiles and maintainer scripts (`sh -n`). The shipped settings
are checked against `tongdao-server --help` (every option in the TOML file and in the
environment file, set values alike in both, commented ones at the server's default); then
tongdao-server runs from the root with the environment file's settings, its paths moved
into the root and a free port, and must answer /health and serve its page from
<root>/usr/share/tongdao/web. `systemd-analyze verify` checks the unit when it works here.

Every command has a time limit; the server is stopped by its pid. Exits 77 (skipped) only
when a tool is missing: dpkg, dpkg-deb, dpkg-shlibdeps or file (which cpack runs), or node
for the web page; a missing or unusable systemd-analyze skips that check alone, saying so.
"""

import argparse
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from echo_server import free_port, stop_process  # noqa: E402

LAYERS = ("protocol", "net", "client", "server")
COMMAND_TIMEOUT = 240


class Failure(Exception):
    pass


def run(cmd, timeout=COMMAND_TIMEOUT, env=None, check=True, quiet=False):
    if not quiet:
        print("+ " + " ".join(cmd), flush=True)
    try:
        r = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise Failure(f"{cmd[0]} did not finish within {timeout}s:\n{(e.stdout or b'').decode(errors='replace')}")
    out = r.stdout.decode(errors="replace")
    if check and r.returncode != 0:
        raise Failure(f"{' '.join(cmd)} exited {r.returncode}:\n{out}")
    return r.returncode, out


def field(deb, name):
    return run(["dpkg-deb", "-f", deb, name], quiet=True)[1].strip()


def depends(deb):
    """Depends as {package: version constraint or ''}."""
    out = {}
    for item in filter(None, (s.strip() for s in field(deb, "Depends").split(","))):
        m = re.match(r"(\S+)\s*(?:\((.*)\))?", item)
        out[m.group(1)] = (m.group(2) or "").strip()
    return out


def check_files(root, expected, deb_files):
    for path, kind in expected:
        full = root + path
        ok = {"file": os.path.isfile(full) and not os.path.islink(full), "dir": os.path.isdir(full),
              "link": os.path.islink(full), "exe": os.path.isfile(full) and os.access(full, os.X_OK)}[kind]
        if not ok:
            raise Failure(f"{path} ({kind}) not unpacked from the packages")
    if any("/include/tongdao/chat" in f for f in deb_files):
        raise Failure("include/tongdao/chat is in a package: the chat service is not a library")


def help_options(server):
    """{option: (environment variable, default or None)} from `tongdao-server --help`."""
    _, out = run([server, "--help"], quiet=True)
    opts = {}
    # --name TYPE[:{a,b}|:TYPE in [lo - hi]][=default] [...] (Env:TONGDAO_NAME)
    for m in re.finditer(r"--([a-z][a-z-]*)(?: [A-Z]+(?::(?:\{[^}]*\}|[A-Z]+ in \[[^\]]*\]))?(?:=(\S*))?)?(?: \.\.\.)? "
                         r"\(Env:(TONGDAO_[A-Z_]+)\)", out):
        opts[m.group(1)] = (m.group(3), m.group(2))
    if len(opts) < 20:
        raise Failure(f"could not read the options of tongdao-server --help ({len(opts)} found):\n{out}")
    return opts


def toml_value(text):
    return tomllib.loads(f"v = {text}")["v"]


def check_settings(conf_path, default_path, opts):
    """The TOML file and the environment file: every option, the same set values, commented
    ones at their defaults."""
    conf_text = open(conf_path).read()
    try:
        tomllib.loads(conf_text)
    except tomllib.TOMLDecodeError as e:
        raise Failure(f"{conf_path} is not TOML: {e}")
    conf = {}  # key: (value, set?)
    for line in conf_text.splitlines():
        m = re.match(r"^(#\s?)?([a-z][a-z-]*) = (.*?)(\s+#.*)?$", line)
        if m:
            conf[m.group(2)] = (toml_value(m.group(3)), m.group(1) is None)
    env = {}
    for line in open(default_path).read().splitlines():
        m = re.match(r"^(#)?(TONGDAO_[A-Z_]+)=(.*)$", line)
        if m:
            env[m.group(2)] = (m.group(3), m.group(1) is None)

    problems = []
    for name, (var, default) in sorted(opts.items()):
        if name == "config":
            continue  # the file itself
        if name not in conf:
            problems.append(f"{os.path.basename(conf_path)} has no key {name} (--{name})")
        if var not in env:
            problems.append(f"{os.path.basename(default_path)} has no line {var}=")
        if name not in conf or var not in env:
            continue
        (cval, cset), (evalue, eset) = conf[name], env[var]
        if cset != eset:
            problems.append(f"{name}: set in one file, commented in the other")
        elif cset:
            as_text = ",".join(map(str, cval)) if isinstance(cval, list) else str(cval).lower() \
                if isinstance(cval, bool) else str(cval)
            if as_text != evalue:
                problems.append(f"{name}: {cval!r} in the TOML file, {evalue!r} in the environment file")
        elif default is not None:
            shown = str(cval).lower() if isinstance(cval, bool) else str(cval)
            if isinstance(cval, list):
                shown = "[" + ",".join(cval) + "]"
            if isinstance(cval, float) and float(default) == cval:
                shown = default
            if shown != default:
                problems.append(f"{name}: commented as {cval!r}, but tongdao-server's default is {default}")
            if evalue != default and not (default == "[]" and evalue == ""):
                problems.append(f"{var}: commented as {evalue!r}, but tongdao-server's default is {default}")
    for key in conf:
        if key not in opts:
            problems.append(f"{os.path.basename(conf_path)}: {key} is no option of tongdao-server")
    known = {v for v, _ in opts.values()}
    for var in env:
        if var not in known:
            problems.append(f"{os.path.basename(default_path)}: {var} is no variable of tongdao-server")
    if problems:
        raise Failure("the shipped settings and tongdao-server --help disagree:\n  " + "\n  ".join(problems))
    print(f"ok: {len(opts)} options alike in tongdao-server.conf, /etc/default/tongdao-server and --help")
    return {var: value for var, (value, is_set) in env.items() if is_set}


def run_server(root, settings, timeout=30.0):
    """tongdao-server from the root, with the shipped settings moved into it."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for var in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
        if var in os.environ:
            env[var] = os.environ[var]
    for var, value in settings.items():
        env[var] = root + value if value.startswith(("/etc/", "/var/")) else value
    if env.get("TONGDAO_DATA_DIR") != root + "/var/lib/tongdao":
        raise Failure(f"TONGDAO_DATA_DIR is {settings.get('TONGDAO_DATA_DIR')!r}, not /var/lib/tongdao")
    # What postinst makes: the token secret.
    secret = env.get("TONGDAO_AUTH_SECRET_FILE")
    if secret:
        with open(secret, "w") as f:
            f.write(os.urandom(32).hex())
    port = free_port()
    env.update(TONGDAO_HOST="127.0.0.1", TONGDAO_PORT=str(port), TONGDAO_THREADS="1")
    log = tempfile.TemporaryFile()
    binary = root + "/usr/bin/tongdao-server"
    proc = subprocess.Popen([binary], env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    def output():
        log.seek(0)
        return log.read().decode(errors="replace")

    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise Failure(f"tongdao-server exited early (status {proc.returncode}):\n{output()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise Failure(f"tongdao-server not healthy within {timeout}s:\n{output()}")
            time.sleep(0.05)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
            page = r.read()
        if page != open(root + "/usr/share/tongdao/web/index.html", "rb").read():
            raise Failure("/ is not the packaged /usr/share/tongdao/web/index.html")
        if not os.listdir(root + "/var/lib/tongdao"):
            raise Failure(f"tongdao-server wrote nothing into {root}/var/lib/tongdao:\n{output()}")
    finally:
        status = stop_process(proc, 10.0, "tongdao-server")
    if status != 0:
        raise Failure(f"tongdao-server exited {status} on SIGTERM:\n{output()}")
    if f"web page from {root}/usr/share/tongdao/web" not in output():
        raise Failure(f"tongdao-server did not find its page beside itself:\n{output()}")
    print(f"ok: tongdao-server from the packages answered /health and / on port {port}, data in /var/lib/tongdao")


def verify_unit(root, unit_path, scratch):
    tool = shutil.which("systemd-analyze")
    if not tool:
        print("SKIP (this check only): systemd-analyze not found")
        return
    # Does it work here at all? A unit known to be good must pass.
    probe = os.path.join(scratch, "tongdao-probe.service")
    with open(probe, "w") as f:
        f.write("[Unit]\nDescription=probe\n[Service]\nExecStart=/bin/true\n")
    rc, out = run([tool, "verify", probe], check=False, quiet=True)
    if rc != 0 or out.strip():
        print(f"SKIP (this check only): systemd-analyze verify does not work here (status {rc}): {out.strip()}")
        return
    # The unit as shipped but for ExecStart, which must exist: the binary in the root.
    text = open(unit_path).read()
    if "ExecStart=/usr/bin/tongdao-server --config /etc/tongdao/tongdao-server.conf" not in text.splitlines():
        raise Failure(f"the unit does not run /usr/bin/tongdao-server --config /etc/tongdao/tongdao-server.conf:\n{text}")
    copy = os.path.join(scratch, "tongdao-server.service")
    with open(copy, "w") as f:
        f.write(text.replace("ExecStart=/usr/bin/", f"ExecStart={root}/usr/bin/"))
    rc, out = run([tool, "verify", copy], check=False)
    if rc != 0 or out.strip():
        raise Failure(f"systemd-analyze verify tongdao-server.service (status {rc}):\n{out}")
    print("ok: systemd-analyze verify tongdao-server.service")


def main():
    ap = argparse.ArgumentParser()
    for a in ("--build-dir", "--source-dir", "--cmake", "--cpack", "--libdir", "--version", "--soversion",
              "--shared", "--web-page"):
        ap.add_argument(a, required=True)
    args = ap.parse_args()
    shared = args.shared in ("1", "ON", "TRUE")
    args.build_dir = os.path.abspath(args.build_dir)

    # dpkg-shlibdeps (dpkg-dev) and file are what cpack's DEB generator runs.
    missing = [t for t in ("dpkg", "dpkg-deb", "dpkg-shlibdeps", "file") if not shutil.which(t)]
    if not os.path.isfile(args.cpack) and not shutil.which(args.cpack):
        missing.append(args.cpack)
    if missing:
        print(f"SKIP: {', '.join(missing)} not found (scripts/install-deps.sh installs them)")
        return 77
    if args.web_page not in ("1", "ON", "TRUE"):
        print("SKIP: this tree has no web page for tongdao-server's package to ship (web/ needs node and "
              "node_modules/typescript: scripts/install-deps.sh installs them, then configure again)")
        return 77

    started = time.monotonic()
    arch = run(["dpkg", "--print-architecture"], quiet=True)[1].strip()
    deb_version = f"{args.version}-1"
    runtime = f"libtongdao{args.soversion}"
    names = ["tongdao-server", "tongdao", "libtongdao-dev"] + ([runtime] if shared else [])

    with tempfile.TemporaryDirectory(prefix="tongdao-deb-") as scratch:
        out_dir = os.path.join(scratch, "out")
        run([args.cpack, "--config", os.path.join(args.build_dir, "CPackConfig.cmake"), "-B", out_dir])
        print(f"cpack: {time.monotonic() - started:.1f} s")
        debs = {}
        for name in names:
            path = os.path.join(out_dir, f"{name}_{deb_version}_{arch}.deb")
            if not os.path.isfile(path):
                raise Failure(f"no {os.path.basename(path)} among {sorted(os.listdir(out_dir))}")
            if field(path, "Package") != name or field(path, "Version") != deb_version:
                raise Failure(f"{path}: Package {field(path, 'Package')}, Version {field(path, 'Version')}")
            debs[name] = path
        extra = sorted(f for f in os.listdir(out_dir) if f.endswith(".deb") and os.path.join(out_dir, f) not in debs.values())
        if extra:
            raise Failure(f"unexpected packages: {extra}")

        # Depends: what dpkg-shlibdeps found, and what the packaging adds.
        want = {
            "tongdao-server": ["libc6", "libstdc++6", "libssl3", "libsqlite3-0", "libhiredis0.14", "zlib1g", "adduser"],
            "tongdao": ["libc6", "libstdc++6", "libssl3"],
            "libtongdao-dev": ["libssl-dev", "zlib1g-dev", "libasio-dev"] + ([runtime] if shared else []),
        }
        if shared:
            want[runtime] = ["libc6", "libstdc++6", "libssl3", "zlib1g"]
        for name, pkgs in want.items():
            deps = depends(debs[name])
            lacking = [p for p in pkgs if p not in deps]
            if lacking:
                raise Failure(f"{name}: Depends lacks {lacking}: {field(debs[name], 'Depends')}")
            if any(d.startswith("libtongdao") for d in deps) and name != "libtongdao-dev":
                raise Failure(f"{name} depends on the shared libraries, but its programs link them statically: {deps}")
        if shared and depends(debs["libtongdao-dev"])[runtime] != f"= {deb_version}":
            raise Failure(f"libtongdao-dev must depend on {runtime} (= {deb_version}): {field(debs['libtongdao-dev'], 'Depends')}")
        print("ok: " + "; ".join(f"{n}: {field(p, 'Depends')}" for n, p in debs.items()))

        root = os.path.join(scratch, "root")
        files = {}
        for name, path in debs.items():
            run(["dpkg-deb", "-x", path, root], quiet=True)
            # perms owner size date time ./path [-> target]
            listing = run(["dpkg-deb", "-c", path], quiet=True)[1].splitlines()
            files[name] = [l.split(None, 5)[5].split(" -> ")[0].lstrip(".") for l in listing]
        lib = "/usr/" + args.libdir
        expected = [
            ("/usr/bin/tongdao-server", "exe"), ("/usr/bin/tongdao", "exe"),
            ("/usr/share/tongdao/web/index.html", "file"),
            ("/usr/lib/systemd/system/tongdao-server.service", "file"),
            ("/etc/tongdao/tongdao-server.conf", "file"), ("/etc/default/tongdao-server", "file"),
            ("/var/lib/tongdao", "dir"),
            ("/usr/include/tongdao/server/server.hpp", "file"), ("/usr/include/tongdao/client/socket_task.hpp", "file"),
            (f"{lib}/cmake/tongdao/tongdaoConfig.cmake", "file"),
            (f"{lib}/cmake/tongdao/tongdaoConfigVersion.cmake", "file"),
        ]
        for layer in LAYERS:
            expected += [(f"{lib}/libtongdao_{layer}.a", "file"), (f"{lib}/pkgconfig/tongdao-{layer}.pc", "file")]
            if shared:
                expected += [(f"{lib}/libtongdao_{layer}.so", "link"), (f"{lib}/libtongdao_{layer}.so.{args.soversion}", "link"),
                             (f"{lib}/libtongdao_{layer}.so.{args.version}", "file")]
        check_files(root, expected, [f for fs in files.values() for f in fs])
        # Each file in the package it belongs to.
        homes = {"/usr/bin/tongdao-server": "tongdao-server", "/usr/bin/tongdao": "tongdao",
                 "/usr/include/tongdao/server/server.hpp": "libtongdao-dev",
                 f"{lib}/libtongdao_server.a": "libtongdao-dev"}
        if shared:
            homes[f"{lib}/libtongdao_server.so.{args.version}"] = runtime
            homes[f"{lib}/libtongdao_server.so"] = "libtongdao-dev"
        for path, name in homes.items():
            if path not in files[name]:
                raise Failure(f"{path} is not in {name}: {files[name]}")
        for layer in LAYERS:
            pc = open(f"{root}{lib}/pkgconfig/tongdao-{layer}.pc").read()
            if not re.search(r"^prefix=/usr$", pc, re.M):
                raise Failure(f"tongdao-{layer}.pc: not prefix=/usr:\n{pc}")
        print(f"ok: {len(expected)} paths unpacked where they belong")

        # tongdao-server's control files.
        control = os.path.join(scratch, "control")
        run(["dpkg-deb", "-e", debs["tongdao-server"], control], quiet=True)
        conffiles = open(os.path.join(control, "conffiles")).read().split()
        if sorted(conffiles) != ["/etc/default/tongdao-server", "/etc/tongdao/tongdao-server.conf"]:
            raise Failure(f"conffiles: {conffiles}")
        for script in ("postinst", "prerm", "postrm"):
            p = os.path.join(control, script)
            if not os.path.isfile(p) or not os.stat(p).st_mode & stat.S_IXUSR:
                raise Failure(f"tongdao-server has no executable {script}")
            run(["sh", "-n", p], quiet=True)
        postinst = open(os.path.join(control, "postinst")).read()
        for what in ("adduser", "tongdao", "/var/lib/tongdao", "/etc/tongdao/auth-secret", "deb-systemd-helper"):
            if what not in postinst:
                raise Failure(f"postinst does not mention {what}")
        if shared:
            run(["dpkg-deb", "-e", debs[runtime], os.path.join(scratch, "control-runtime")], quiet=True)
            shlibs = open(os.path.join(scratch, "control-runtime", "shlibs")).read()
            for layer in LAYERS:
                if not re.search(rf"^libtongdao_{layer} {args.soversion} {runtime} \(= {re.escape(deb_version)}\)$", shlibs, re.M):
                    raise Failure(f"{runtime}'s shlibs lacks libtongdao_{layer}:\n{shlibs}")
        print("ok: conffiles, maintainer scripts" + (", shlibs" if shared else ""))

        opts = help_options(root + "/usr/bin/tongdao-server")
        settings = check_settings(root + "/etc/tongdao/tongdao-server.conf", root + "/etc/default/tongdao-server", opts)
        run_server(root, settings)
        run([root + "/usr/bin/tongdao", "--help"], quiet=True)
        verify_unit(root, root + "/usr/lib/systemd/system/tongdao-server.service", scratch)

    print(f"packaging.deb: ok ({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Failure as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)
