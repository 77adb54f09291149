#!/usr/bin/python3
"""Interop over ws:// and wss:// with permessage-deflate (RFC 7692), against Python `websockets`
(Debian python3-websockets, which negotiates deflate by default), both ways:

- the websockets client against interop_server, in its shared and its dedicated deflate mode,
  over ws:// and over wss:// (an ssl context that trusts the throwaway test CA only);
- tongdao's own client (client_probe) against a websockets server with deflate, over ws://
  and wss://.

Compression is proven on the wire: every connection goes through a byte-counting TCP relay
(interop_common.Relay) and the bytes that crossed it are compared with the payload bytes.

    /usr/bin/python3 python_deflate_tls_test.py PATH/TO/interop_server   (or INTEROP_SERVER=...)

client_probe is taken from $CLIENT_PROBE, else beside interop_server. Exit 0 all passed,
1 a check failed, 77 the peer (websockets, openssl) is missing.
"""

import asyncio
import os
import shutil
import ssl
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import interop_common as ic  # noqa: E402

try:
    import websockets
    import websockets.exceptions as wse
except ImportError as e:
    print(f"SKIP: Python websockets is not installed ({e}); install python3-websockets", flush=True)
    sys.exit(ic.SKIP)
if shutil.which("openssl") is None:
    print("SKIP: the openssl command is missing (Debian openssl); it makes the test certificates", flush=True)
    sys.exit(ic.SKIP)

TIMEOUT = 60.0  # every single operation; 1 MiB through zlib under ASan takes a moment
MAX_SIZE = 64 * 1024 * 1024
MIB = 1 << 20


def probe_path(server_binary):
    p = os.environ.get("CLIENT_PROBE") or os.path.join(os.path.dirname(server_binary), "client_probe")
    if not os.access(p, os.X_OK):
        raise RuntimeError(f"client_probe not found at {p}")
    return p


class Session:
    """One event loop for the whole run; every await bounded by TIMEOUT."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()

    def run(self, coro, timeout=TIMEOUT):
        return self.loop.run_until_complete(asyncio.wait_for(coro, timeout))

    def close(self):
        self.loop.close()


def extension_header(ws):
    return ws.response_headers.get("Sec-WebSocket-Extensions", "")


def main():
    path = ic.server_path(sys.argv)
    probe = probe_path(path)
    certs = ic.Certs()
    checks = ic.Checks(f"python websockets {websockets.__version__}: deflate over ws:// and wss://")
    session = Session()
    client_ssl = certs.client_context()

    try:
        # --- the websockets client against interop_server ----------------------------------
        for mode in ("shared", "dedicated"):
            with ic.Server(path, "--deflate", mode, *certs.server_args()) as server, \
                    ic.Relay(server.port) as plain_relay, ic.Relay(server.tls_port) as tls_relay:
                for scheme, relay, ctx in (("ws", plain_relay, None), ("wss", tls_relay, client_ssl)):
                    base = f"{scheme}://127.0.0.1:{relay.port}"
                    tag = f"[{mode}, {scheme}://]"

                    async def connect(p="/echo", base=base, ctx=ctx):
                        return await websockets.connect(base + p, ssl=ctx, max_size=MAX_SIZE,
                                                        open_timeout=TIMEOUT, close_timeout=TIMEOUT)

                    async def negotiated(mode=mode, connect=connect):
                        ws = await connect()
                        try:
                            names = [e.name for e in ws.extensions]
                            header = extension_header(ws)
                            ic.expect_eq(names, ["permessage-deflate"], "extensions in use")
                            if mode == "shared":
                                # One zlib stream per thread: every message must stand alone.
                                for p in ("server_no_context_takeover", "client_no_context_takeover"):
                                    ic.expect(p in header, f"{p} missing from {header!r} in shared mode")
                            else:
                                ic.expect("no_context_takeover" not in header,
                                          f"dedicated mode should keep context: {header!r}")
                            return header
                        finally:
                            await ws.close()

                    checks.run(f"{tag} permessage-deflate negotiated", session.run, negotiated())

                    async def round_trips(connect=connect):
                        ws = await connect()
                        try:
                            msgs = ["hello", "通道 héllo ✓ 😀" * 50, "", b"", bytes(range(256)) * 8, os.urandom(70000),
                                    ic.json_text(MIB), ic.json_text(MIB).encode(), os.urandom(MIB)]
                            for m in msgs:
                                await ws.send(m)
                                got = await ws.recv()
                                ic.expect_eq(type(got), type(m), "message type")
                                ic.expect(got == m, f"echo of a {len(m)}-unit {type(m).__name__} message differs")
                            # Fragmented: websockets compresses the parts as one message.
                            parts = [ic.json_text(100000), ic.json_text(200000), ic.json_text(50000)]
                            await ws.send(parts)
                            ic.expect_eq(await ws.recv(), "".join(parts), "fragmented compressed message")
                            await ws.close()
                            ic.expect_eq((ws.close_code, ws.close_reason), (1000, ""), "close")
                            return f"{len(msgs) + 1} messages"
                        finally:
                            await ws.close()

                    checks.run(f"{tag} text, binary, empty, 1 MiB and fragmented round trips", session.run,
                               round_trips())

                    async def compressed(relay=relay, connect=connect):
                        ws = await connect()
                        try:
                            payload = ic.json_text(MIB)
                            await ws.send("warm-up")
                            await ws.recv()
                            await asyncio.sleep(0.1)
                            up0, down0 = relay.counts()
                            await ws.send(payload)
                            ic.expect(await ws.recv() == payload, "1 MiB JSON echo differs")
                            await asyncio.sleep(0.1)
                            up1, down1 = relay.counts()
                            up, down = up1 - up0, down1 - down0
                            print(f"  wire bytes for a {len(payload)}-byte JSON message: up {up}, down {down} "
                                  f"({len(payload) / max(up, 1):.0f}x and {len(payload) / max(down, 1):.0f}x smaller)",
                                  flush=True)
                            ic.expect(up < len(payload) // 10, f"client to server: {up} wire bytes for {len(payload)}")
                            ic.expect(down < len(payload) // 10, f"server to client: {down} wire bytes for {len(payload)}")
                            return f"up {up} B, down {down} B for {len(payload)} B"
                        finally:
                            await ws.close()

                    checks.run(f"{tag} 1 MiB of JSON is compressed on the wire both ways", session.run,
                               compressed())

                    async def context(mode=mode, relay=relay, connect=connect):
                        # The same 24 KiB of random bytes twice: with context takeover (dedicated)
                        # the second costs a back-reference; without (shared) it costs it all again.
                        ws = await connect()
                        try:
                            blob = os.urandom(24 * 1024)
                            costs = []
                            for _ in range(2):
                                await asyncio.sleep(0.1)
                                up0, down0 = relay.counts()
                                await ws.send(blob)
                                ic.expect(await ws.recv() == blob, "echo differs")
                                await asyncio.sleep(0.1)
                                up1, down1 = relay.counts()
                                costs.append((up1 - up0, down1 - down0))
                            (_, _), (up2, down2) = costs
                            if mode == "dedicated":
                                ic.expect(up2 < 2048 and down2 < 2048, f"repeat cost up {up2}, down {down2}: "
                                          "context takeover is not in use")
                            else:
                                ic.expect(up2 > len(blob) and down2 > len(blob),
                                          f"repeat cost up {up2}, down {down2}: context kept against the agreement")
                            return f"first {costs[0]}, repeat {costs[1]} (up, down) for {len(blob)} B"
                        finally:
                            await ws.close()

                    checks.run(f"{tag} context takeover as negotiated", session.run, context())

                    async def small_limit(connect=connect):
                        # The limit counts inflated bytes: 1024 compressible bytes pass, 1025 do not.
                        ws = await connect("/small")
                        try:
                            await ws.send("a" * 1024)
                            ic.expect_eq(await ws.recv(), "a" * 1024, "1024 bytes on /small")
                            await ws.send("a" * 1025)
                            try:
                                await ws.recv()
                                raise AssertionError("/small echoed 1025 bytes")
                            except wse.ConnectionClosed:
                                pass
                            ic.expect_eq(ws.close_code, 1009, "close code for 1025 inflated bytes")
                        finally:
                            await ws.close()

                    checks.run(f"{tag} /small counts inflated bytes: 1025 -> 1009", session.run, small_limit())

                def all_closed(server=server):
                    deadline = time.monotonic() + 10
                    while True:
                        m = ic.metrics(server.port)
                        if m.get("tongdao_connections_open") == 0:
                            return f"connections_total {m.get('tongdao_connections_total')}"
                        if time.monotonic() > deadline:
                            raise AssertionError(f"connections_open stays {m.get('tongdao_connections_open')}")
                        time.sleep(0.2)

                checks.run(f"[{mode}] metrics: no connection left open", all_closed)
                checks.run(f"[{mode}] server exits 0 on SIGTERM", lambda server=server: ic.expect_eq(
                    (server.alive(), server.stop()), (True, 0), "(alive, exit status)"))

        # --- tongdao's client against a websockets server --------------------------------------
        server_ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ssl.load_cert_chain(certs.server_pem, certs.server_key)
        seen = []

        async def echo(ws, path=None):
            seen.append(extension_header_of_request(ws))
            try:
                async for m in ws:
                    await ws.send(m)
            except wse.ConnectionClosed:
                pass

        def extension_header_of_request(ws):
            return ws.request_headers.get("Sec-WebSocket-Extensions", "")

        async def start(ctx):
            return await websockets.serve(echo, "127.0.0.1", 0, ssl=ctx, compression="deflate", max_size=MAX_SIZE)

        payload_total = 5 + 256 + MIB + MIB + 65536  # what client_probe sends (and gets back)

        async def run_probe(args):
            proc = await asyncio.create_subprocess_exec(probe, *args, stdout=asyncio.subprocess.PIPE,
                                                        stderr=asyncio.subprocess.STDOUT)
            try:
                out, _ = await asyncio.wait_for(proc.communicate(), TIMEOUT)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
                raise
            return proc.returncode, out.decode(errors="replace")

        for scheme, sctx in (("ws", None), ("wss", server_ssl)):
            pyserver = session.run(start(sctx))
            port = pyserver.sockets[0].getsockname()[1]
            try:
                with ic.Relay(port) as relay:
                    for host in (("127.0.0.1", "localhost") if scheme == "wss" else ("127.0.0.1",)):
                        url = f"{scheme}://{host}:{relay.port}/"
                        tls_args = ["--ca", certs.ca] if scheme == "wss" else []

                        async def probe_deflate(url=url, tls_args=tls_args, relay=relay):
                            relay.reset()
                            seen.clear()
                            code, out = await run_probe([url, "--deflate", *tls_args])
                            up, down = relay.counts()
                            print("  " + out.strip().replace("\n", "\n  "), flush=True)
                            ic.expect_eq(code, 0, "client_probe exit status")
                            ic.expect("OPEN permessage-deflate" in out, "deflate not in the 101's extensions")
                            ic.expect(seen and seen[0].startswith("permessage-deflate"), f"offer {seen}")
                            print(f"  wire bytes for {payload_total} payload bytes each way: up {up}, down {down}",
                                  flush=True)
                            ic.expect(up < payload_total * 0.1, f"client to server: {up} wire bytes")
                            ic.expect(down < payload_total * 0.1, f"server to client: {down} wire bytes")
                            return f"offer {seen[0]!r}; up {up} B, down {down} B for {payload_total} B"

                        checks.run(f"tongdao client -> websockets server, {url}, deflate: compressed both ways",
                                   session.run, probe_deflate())

                    async def probe_plain(url=f"{scheme}://127.0.0.1:{relay.port}/",
                                          tls_args=(["--ca", certs.ca] if scheme == "wss" else []), relay=relay):
                        # The control: without the offer nothing is compressed and the relay sees it all.
                        relay.reset()
                        code, out = await run_probe([url, *tls_args])
                        up, down = relay.counts()
                        ic.expect_eq(code, 0, f"client_probe exit status; output:\n{out}")
                        ic.expect("OPEN -" in out, f"an extension without the offer: {out}")
                        ic.expect(up > payload_total and down > payload_total, f"up {up}, down {down}")
                        return f"up {up} B, down {down} B for {payload_total} B"

                    checks.run(f"tongdao client -> websockets server, {scheme}://, no deflate: uncompressed (control)",
                               session.run, probe_plain())

                    if scheme == "wss":
                        async def untrusted(url=f"wss://127.0.0.1:{relay.port}/"):
                            code, out = await run_probe([url, "--expect-fail", "certificate verify failed"])
                            ic.expect_eq(code, 0, f"client_probe with the system CAs only; output:\n{out}")
                            return out.strip().splitlines()[0]

                        checks.run("tongdao client, CA not trusted -> certificate verify failed", session.run,
                                   untrusted())

                        async def insecure(url=f"wss://127.0.0.1:{relay.port}/"):
                            code, out = await run_probe([url, "--no-verify", "--deflate"])
                            ic.expect_eq(code, 0, f"client_probe --no-verify; output:\n{out}")

                        checks.run("tongdao client, tlsVerify false -> connects", session.run, insecure())
            finally:
                pyserver.close()
                session.run(pyserver.wait_closed(), 15)
    finally:
        session.close()
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())
