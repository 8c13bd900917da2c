"""What Stratum V2's encryption costs: handshakes per second on each side, and shares per second over a channel.

    python benchmarks/bench_sv2.py [--handshakes 300] [--connections 200] [--shares 4000] [--window 32] [--json]

Three measurements, each on this machine's cores (the pool and the clients share them):

- *handshake, in memory*: the Noise NX acts with no socket, timed apart for each side. The
  client's part is act 1 (an ElligatorSwift key) and act 2 (three ECDHs, two AEAD opens, the
  certificate's BIP 340 check); the pool's is reading act 1 and writing act 2 (three ECDHs, two
  AEAD seals, a fresh ephemeral key). Reported as handshakes per CPU second of that side alone.
- *connection, loopback*: ``--connections`` clients at once against the project's pool (a
  :class:`miner.pool_v2.V2Listener` on :class:`miner.pool.Pool`), each through the handshake,
  SetupConnection and a standard channel to its first job; connections per second of wall time.
- *shares, loopback*: one standard channel, ``--shares`` submits kept ``--window`` deep, every one
  valid (the pool's target is the easiest there is) and checked by the pool as any share is:
  header rebuilt, double SHA-256, duplicate set, then SubmitShares.Success, all sealed and opened
  with ChaCha20-Poly1305. Shares per second of wall time, and the same count in memory (frames
  sealed and opened, no pool) to show what the encryption alone costs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from miner.pool import MIN_DIFFICULTY, EmbeddedChain, Pool  # noqa: E402
from miner.pool_v2 import V2Listener  # noqa: E402
from stratum.v2 import messages as m  # noqa: E402
from stratum.v2.protocol import ClientConnection, HandshakeComplete, ServerConnection, SharesAccepted  # noqa: E402
from stratum.v2.server import ServerIdentity  # noqa: E402

HARD_NBITS = 0x1D00FFFF  # no share is a block: the one job stays valid for the whole run


def handshakes_in_memory(count: int, identity: ServerIdentity) -> dict:
    cert = identity.certificate()
    client_s = pool_s = 0.0
    for _ in range(count):
        t0 = time.process_time()
        client = ClientConnection(identity.authority_key)
        act1 = client.initiate()
        t1 = time.process_time()
        server = ServerConnection(identity.static_secret, cert, static_encoding=identity.static_encoding)
        server.receive_data(act1)
        act2 = server.accept_handshake()
        t2 = time.process_time()
        events = client.receive_data(act2)
        t3 = time.process_time()
        if not any(isinstance(e, HandshakeComplete) for e in events):
            raise SystemExit("bench_sv2: a handshake did not complete")
        client_s += (t1 - t0) + (t3 - t2)
        pool_s += t2 - t1
    return {"count": count, "client_per_s": count / client_s, "pool_per_s": count / pool_s}


async def _connect_one(port: int, authority: bytes) -> None:
    conn = ClientConnection(authority)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(conn.initiate())
        while True:
            data = await reader.read(65536)
            if not data:
                raise SystemExit("bench_sv2: the pool closed a connection")
            for event in conn.receive_data(data):
                if isinstance(event, HandshakeComplete):
                    writer.write(conn.setup_connection("127.0.0.1", port))
                elif isinstance(event, m.SetupConnectionSuccess):
                    writer.write(conn.open_standard_channel("bench", 0.0).data)
                elif isinstance(event, m.SetNewPrevHash):
                    return
    finally:
        writer.close()


def connections_loopback(count: int, port: int, authority: bytes) -> dict:
    async def run() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(_connect_one(port, authority) for _ in range(count)))
        return time.perf_counter() - start

    elapsed = asyncio.run(run())
    return {"count": count, "seconds": elapsed, "per_s": count / elapsed}


def _until(sock: socket.socket, conn: ClientConnection, kind, pending: list) -> object:
    """The next event of ``kind``; events read past it wait in ``pending`` (one read may bring several)."""
    while True:
        for i, event in enumerate(pending):
            if isinstance(event, kind):
                del pending[: i + 1]
                return event
        data = sock.recv(65536)
        if not data:
            raise SystemExit("bench_sv2: the pool closed the connection")
        pending.extend(conn.receive_data(data))


def shares_loopback(count: int, window: int, port: int, authority: bytes) -> dict:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn = ClientConnection(authority)
    pending: list = []
    try:
        sock.sendall(conn.initiate())
        _until(sock, conn, HandshakeComplete, pending)
        sock.sendall(conn.setup_connection("127.0.0.1", port))
        _until(sock, conn, m.SetupConnectionSuccess, pending)
        sock.sendall(conn.open_standard_channel("bench", 0.0).data)
        opened = _until(sock, conn, m.OpenStandardMiningChannelSuccess, pending)
        job = _until(sock, conn, m.NewMiningJob, pending)
        prev = _until(sock, conn, m.SetNewPrevHash, pending)
        sent = answered = refused = 0
        start = time.perf_counter()
        while answered < count:
            burst = b""
            while sent < count and sent - answered < window:
                burst += conn.submit_standard(opened.channel_id, job.job_id, sent, prev.min_ntime, job.version).data
                sent += 1
            if burst:
                sock.sendall(burst)
            data = sock.recv(65536)
            if not data:
                raise SystemExit("bench_sv2: the pool closed the connection")
            for event in conn.receive_data(data):
                if isinstance(event, SharesAccepted):
                    answered += len(event.contexts)
                elif type(event).__name__ == "ShareRejected":
                    answered += 1
                    refused += 1
        elapsed = time.perf_counter() - start
    finally:
        sock.close()
    if refused:
        raise SystemExit(f"bench_sv2: the pool refused {refused} valid shares")
    return {"count": count, "window": window, "seconds": elapsed, "per_s": count / elapsed}


def shares_in_memory(count: int, identity: ServerIdentity) -> dict:
    """Submit and answer frames sealed and opened with no pool behind them: the encryption's share of the cost."""
    client = ClientConnection(identity.authority_key)
    server = ServerConnection(identity.static_secret, identity.certificate(), static_encoding=identity.static_encoding)
    server.receive_data(client.initiate())
    client.receive_data(server.accept_handshake())
    server.receive_data(client.setup_connection("127.0.0.1", 1))
    client.receive_data(server.setup_connection_success())
    [request] = server.receive_data(client.open_standard_channel("bench", 0.0).data)
    client.receive_data(server.open_standard_channel_success(request, 1, 1 << 255, b""))
    start = time.perf_counter()
    for nonce in range(count):
        [share] = server.receive_data(client.submit_standard(1, 1, nonce, 0, 0x20000000).data)
        client.receive_data(server.send(m.SubmitSharesSuccess(1, share.sequence_number, 1, 0)))
    elapsed = time.perf_counter() - start
    return {"count": count, "seconds": elapsed, "per_s": count / elapsed}


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--handshakes", type=positive_int, default=300, help="handshakes timed in memory")
    parser.add_argument("--connections", type=positive_int, default=200, help="concurrent loopback connections")
    parser.add_argument("--shares", type=positive_int, default=4000, help="shares submitted over one channel")
    parser.add_argument("--window", type=positive_int, default=32, help="submits in flight at once")
    parser.add_argument("--json", action="store_true", help="print only JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 2 * args.connections + 256
    if soft < needed and (hard == resource.RLIM_INFINITY or hard >= needed):
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    identity = ServerIdentity(os.urandom(32), os.urandom(32))
    pool = Pool(EmbeddedChain(nbits=HARD_NBITS), difficulty=MIN_DIFFICULTY, vardiff=False)
    pool.start()
    listener = V2Listener(pool, identity)
    listener.start()
    try:
        report = {
            "cpu": _cpu_name(),
            "cores": os.cpu_count(),
            "handshake_in_memory": handshakes_in_memory(args.handshakes, identity),
            "connections_loopback": connections_loopback(args.connections, listener.port, identity.authority_key),
            "shares_loopback": shares_loopback(args.shares, args.window, listener.port, identity.authority_key),
            "shares_in_memory": shares_in_memory(args.shares, identity),
        }
    finally:
        listener.stop()
        pool.stop()
    if args.json:
        print(json.dumps(report))
        return 0
    hs, conns = report["handshake_in_memory"], report["connections_loopback"]
    loop, mem = report["shares_loopback"], report["shares_in_memory"]
    print(f"Stratum V2 on {report['cpu']} ({report['cores']} cores; pool and clients share them)")
    print(f"{'measurement':<50} {'per second':>12}  {'ms each':>9}")
    rows = [
        (f"handshake, client side ({hs['count']} in memory)", hs["client_per_s"]),
        (f"handshake, pool side ({hs['count']} in memory)", hs["pool_per_s"]),
        (f"connection to first job ({conns['count']} at once, loopback)", conns["per_s"]),
        (f"shares over one channel ({loop['count']}, {loop['window']} deep)", loop["per_s"]),
        (f"share frames sealed and opened ({mem['count']}, no pool)", mem["per_s"]),
    ]
    for name, rate in rows:
        print(f"{name:<50} {rate:>12,.0f}  {1000 / rate:>9.3f}")
    print(json.dumps(report))
    return 0


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
