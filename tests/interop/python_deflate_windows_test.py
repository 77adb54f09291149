#!/usr/bin/python3
"""permessage-deflate window sizes (RFC 7692 §7.1.2) against Python `websockets`, both ways:

- the websockets client offering server_max_window_bits=9..15 (with and without
  client_max_window_bits) against interop_server in its shared and its dedicated mode: the
  101 must name that window, and large compressible messages must round-trip. websockets
  inflates with exactly the window agreed on, so a server that compressed with a larger one
  breaks the echo (zlib: "invalid distance too far back");
- an offer of server_max_window_bits=8, which zlib cannot honour: declined, and the client's
  next offer taken (or, with none, no compression);
- tongdao's own client (client_probe) against a websockets server that answers
  server_max_window_bits=N and client_max_window_bits=N for every N from 9 to 15.

Wire bytes are counted by a relay (interop_common.Relay) to prove compression.

    /usr/bin/python3 python_deflate_windows_test.py PATH/TO/interop_server   (or INTEROP_SERVER=...)

client_probe is taken from $CLIENT_PROBE, else beside interop_server. Exit 0 all passed,
1 a check failed, 77 websockets is missing.
"""

import asyncio
import os
import random
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import interop_common as ic  # noqa: E402

try:
    import websockets
    from websockets.extensions.permessage_deflate import (ClientPerMessageDeflateFactory,
                                                          ServerPerMessageDeflateFactory)
except ImportError as e:
    print(f"SKIP: Python websockets is not installed ({e}); install python3-websockets", flush=True)
    sys.exit(ic.SKIP)

TIMEOUT = 60.0
MAX_SIZE = 64 * 1024 * 1024
MIB = 1 << 20


def far_repeats(n, seed=7692):
    """Random 1.5 KiB blocks of letters, each four times: matches 1536 bytes back, beyond a
    9- or 10-bit window, so only a sender that ignores a small window would use them."""
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < n:
        block = bytes(rng.randrange(97, 123) for _ in range(1536))
        out += block * 4
    return bytes(out[:n])


def probe_path(server_binary):
    p = os.environ.get("CLIENT_PROBE") or os.path.join(os.path.dirname(server_binary), "client_probe")
    if not os.access(p, os.X_OK):
        raise RuntimeError(f"client_probe not found at {p}")
    return p


def main():
    path = ic.server_path(sys.argv)
    probe = probe_path(path)
    checks = ic.Checks(f"python websockets {websockets.__version__}: permessage-deflate windows 9 to 15")
    loop = asyncio.new_event_loop()

    def run(coro, timeout=TIMEOUT):
        return loop.run_until_complete(asyncio.wait_for(coro, timeout))

    big_json = ic.json_text(MIB)
    far = far_repeats(256 * 1024)

    try:
        # --- the websockets client against interop_server ----------------------------------
        for mode in ("shared", "dedicated"):
            with ic.Server(path, "--deflate", mode) as server, ic.Relay(server.port) as relay:
                url = f"ws://127.0.0.1:{relay.port}/echo"

                async def connect(*factories, url=url):
                    return await websockets.connect(url, extensions=list(factories), compression=None,
                                                    max_size=MAX_SIZE, open_timeout=TIMEOUT, close_timeout=TIMEOUT)

                for bits in range(9, 16):
                    for client_bits in (True, None):
                        tag = f"[{mode}] server_max_window_bits={bits}" + \
                              ("; client_max_window_bits" if client_bits else "")

                        async def exchange(bits=bits, client_bits=client_bits, mode=mode, connect=connect,
                                           relay=relay):
                            ws = await connect(ClientPerMessageDeflateFactory(server_max_window_bits=bits,
                                                                              client_max_window_bits=client_bits))
                            try:
                                header = ws.response_headers.get("Sec-WebSocket-Extensions", "")
                                ic.expect(f"server_max_window_bits={bits}" in header, f"101 says {header!r}")
                                ic.expect_eq([e.name for e in ws.extensions], ["permessage-deflate"], "extensions")
                                ic.expect_eq(ws.extensions[0].remote_max_window_bits, bits, "window websockets reads with")
                                if mode == "shared":
                                    for p in ("server_no_context_takeover", "client_no_context_takeover"):
                                        ic.expect(p in header, f"{p} missing from {header!r} in shared mode")
                                wire = []
                                for m in ("hello", big_json, far, big_json.encode(), os.urandom(70000), far):
                                    await asyncio.sleep(0.05)
                                    up0, down0 = relay.counts()
                                    await ws.send(m)
                                    got = await ws.recv()
                                    ic.expect(got == m, f"echo of a {len(m)}-unit {type(m).__name__} message differs")
                                    await asyncio.sleep(0.05)
                                    up1, down1 = relay.counts()
                                    wire.append((up1 - up0, down1 - down0))
                                up, down = wire[1]
                                ic.expect(up < len(big_json) // 4 and down < len(big_json) // 4,
                                          f"1 MiB of JSON cost up {up}, down {down} wire bytes")
                                up, down = wire[2]
                                ic.expect(up < len(far) and down < len(far), f"far repeats cost up {up}, down {down}")
                                await ws.close()
                                ic.expect_eq(ws.close_code, 1000, "close code")
                                return f"{header!r}; 1 MiB JSON down {wire[1][1]} B, 256 KiB far repeats down {wire[2][1]} B"
                            finally:
                                await ws.close()

                        checks.run(f"{tag}: agreed, round trips within the window", run, exchange())

                async def eight_then_next(mode=mode, connect=connect):
                    ws = await connect(ClientPerMessageDeflateFactory(server_max_window_bits=8, client_max_window_bits=True),
                                       ClientPerMessageDeflateFactory(client_max_window_bits=True))
                    try:
                        header = ws.response_headers.get("Sec-WebSocket-Extensions", "")
                        ic.expect(header.startswith("permessage-deflate"), f"101 says {header!r}")
                        ic.expect("server_max_window_bits" not in header, f"the 8 was taken: {header!r}")
                        ic.expect_eq(len(header.split(",")), 1, "one extension agreed")
                        await ws.send(big_json)
                        ic.expect(await ws.recv() == big_json, "echo differs")
                        return repr(header)
                    finally:
                        await ws.close()

                checks.run(f"[{mode}] server_max_window_bits=8 declined, the next offer taken", run, eight_then_next())

                async def eight_alone(connect=connect):
                    ws = await connect(ClientPerMessageDeflateFactory(server_max_window_bits=8, client_max_window_bits=True))
                    try:
                        header = ws.response_headers.get("Sec-WebSocket-Extensions")
                        ic.expect_eq(header, None, "Sec-WebSocket-Extensions")
                        ic.expect_eq(ws.extensions, [], "extensions")
                        await ws.send("plain, then")
                        ic.expect_eq(await ws.recv(), "plain, then", "echo")
                        return "uncompressed"
                    finally:
                        await ws.close()

                checks.run(f"[{mode}] server_max_window_bits=8 alone: declined, uncompressed", run, eight_alone())
                async def pubsub(mode=mode, server=server):
                    # Subscribers of every window (two each), the default window and none: a
                    # message published once reaches each, compressed within its own window
                    # (shared mode: once per loop and window size).
                    purl = f"ws://127.0.0.1:{server.port}/pubsub"

                    async def sub(*factories):
                        # No factories: no header at all (an empty list would send an empty one).
                        return await websockets.connect(purl, extensions=list(factories) or None, compression=None,
                                                        max_size=MAX_SIZE, open_timeout=TIMEOUT, close_timeout=TIMEOUT)

                    subs = []
                    try:
                        # Widest first: a frame made for the first subscriber on a loop must not
                        # reach the narrower ones after it.
                        for bits in range(15, 8, -1):
                            for _ in range(2):
                                ws = await sub(ClientPerMessageDeflateFactory(server_max_window_bits=bits,
                                                                              client_max_window_bits=True))
                                subs.append((bits, ws))
                                ic.expect_eq(ws.extensions[0].remote_max_window_bits, bits, "agreed window")
                        subs.append((15, await sub(ClientPerMessageDeflateFactory(client_max_window_bits=True))))
                        subs.append((None, await sub()))
                        publisher = await sub(ClientPerMessageDeflateFactory(server_max_window_bits=11))
                        await asyncio.sleep(0.3)  # every open handler (the subscribe) has run
                        for m in (big_json, far, far.decode(), os.urandom(5000) + far):
                            await publisher.send(m)
                            ic.expect_eq(await publisher.recv(), "published", "publisher's answer")
                            for bits, ws in subs:
                                got = await ws.recv()
                                ic.expect(got == m, f"subscriber with window {bits}: a {len(m)}-unit message differs")
                        await publisher.close()
                        return f"{len(subs)} subscribers, 4 messages each"
                    finally:
                        for _, ws in subs:
                            await ws.close()

                checks.run(f"[{mode}] pub/sub to subscribers of every window", run, pubsub())
                checks.run(f"[{mode}] server exits 0 on SIGTERM", lambda server=server: ic.expect_eq(
                    (server.alive(), server.stop()), (True, 0), "(alive, exit status)"))

        # --- tongdao's client against a websockets server that asks for small windows ----------
        async def echo(ws, path=None):
            try:
                async for m in ws:
                    await ws.send(m)
            except websockets.exceptions.ConnectionClosed:
                pass

        async def run_probe(url):
            proc = await asyncio.create_subprocess_exec(probe, url, "--deflate", stdout=asyncio.subprocess.PIPE,
                                                        stderr=asyncio.subprocess.STDOUT)
            try:
                out, _ = await asyncio.wait_for(proc.communicate(), TIMEOUT)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
                raise
            return proc.returncode, out.decode(errors="replace")

        payload_total = 5 + 256 + MIB + MIB + 65536  # what client_probe sends (and gets back)
        for bits in range(9, 16):
            async def probe_window(bits=bits):
                # Both directions held to `bits`: websockets compresses with that window and
                # inflates what tongdao sends with that window only.
                factory = ServerPerMessageDeflateFactory(server_max_window_bits=bits, client_max_window_bits=bits)
                pyserver = await websockets.serve(echo, "127.0.0.1", 0, extensions=[factory], compression=None,
                                                  max_size=MAX_SIZE)
                try:
                    port = pyserver.sockets[0].getsockname()[1]
                    with ic.Relay(port) as relay:
                        code, out = await run_probe(f"ws://127.0.0.1:{relay.port}/")
                        up, down = relay.counts()
                    ic.expect_eq(code, 0, f"client_probe exit status; output:\n{out}")
                    first = out.strip().splitlines()[0]
                    ic.expect(f"server_max_window_bits={bits}" in first and f"client_max_window_bits={bits}" in first,
                              f"the 101: {first}")
                    ic.expect(up < payload_total // 4 and down < payload_total // 4,
                              f"up {up}, down {down} wire bytes for {payload_total}")
                    return f"{first}; up {up} B, down {down} B"
                finally:
                    pyserver.close()
                    await pyserver.wait_closed()

            checks.run(f"tongdao client -> websockets server, windows of {bits} bits both ways", run, probe_window())
    finally:
        loop.close()
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())
