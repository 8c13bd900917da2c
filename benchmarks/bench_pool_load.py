"""Load on `miner pool`: many concurrent loopback Stratum connections submitting shares.

The pool runs as its own process (the real ``miner pool`` command), so its CPU
time and memory can be read from /proc without the clients' share. The
clients are asyncio connections in this process; each subscribes, authorizes,
receives its job, and then submits precomputed shares one at a time (a new
submit when the previous reply arrives, after an optional pause): mostly valid
ones, and some that must be refused (low difficulty, unknown job, bad hex,
duplicates). Every verdict is checked against what this script knows.

Reported: shares validated per second per core (validated submits / the pool
process's CPU seconds), the p50/p99 submit-to-reply latency, memory per
connection (the pool's RSS growth / connections), and the two error counts
that must be zero: valid shares refused and invalid shares accepted.

    python benchmarks/bench_pool_load.py --connections 1000 --seconds 30
    python benchmarks/bench_pool_load.py --connections 1000 --seconds 30 --pause 1.0   # paced, not saturated
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

from argtypes import non_negative_float, positive_float

DIFF1_TARGET = 0xFFFF << 208
HARD_NBITS = "1d00ffff"  # no share is a block: the job stays valid for the whole run


def dsha(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def raise_fd_limit(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(max(soft, wanted), hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def proc_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def header_base(params: list, e1: bytes, e2: bytes) -> bytes:
    """The first 76 header bytes for this connection's job (nonce appended later)."""
    _, prevhash, coinb1, coinb2, branches, version, nbits, ntime, _ = params
    prev = b"".join(bytes.fromhex(prevhash)[i : i + 4][::-1] for i in range(0, 32, 4))
    root = dsha(bytes.fromhex(coinb1) + e1 + e2 + bytes.fromhex(coinb2))
    for branch in branches:
        root = dsha(root + bytes.fromhex(branch))
    return struct.pack("<I", int(version, 16)) + prev + root + struct.pack("<II", int(ntime, 16), int(nbits, 16))


def plan_submits(params: list, e1: bytes, e2_size: int, target: int, valid_count: int, rng: random.Random):
    """[(params, expected_ok)]: ``valid_count`` distinct valid shares and about 1 in 8 that must be refused."""
    e2 = rng.randbytes(e2_size)
    base = header_base(params, e1, e2)
    job_id, ntime = params[0], params[7]
    valid, low = [], []
    nonce = 0
    while len(valid) < valid_count:
        value = int.from_bytes(dsha(base + struct.pack("<I", nonce)), "little")
        (valid if value <= target else low).append(nonce)
        nonce += 1
    plan = []
    for n in valid:
        plan.append(([job_id, e2.hex(), ntime, f"{n:08x}"], True))
        if rng.random() < 0.125:
            kind = rng.randrange(4)
            if kind == 0 and low:
                bad = [job_id, e2.hex(), ntime, f"{low.pop():08x}"]  # low difficulty
            elif kind == 1:
                bad = ["nosuchjob", e2.hex(), ntime, f"{n:08x}"]  # unknown job
            elif kind == 2:
                bad = [job_id, "zz" * e2_size, ntime, f"{n:08x}"]  # bad hex
            else:
                bad = None  # a duplicate: the valid share just sent, again
            plan.append((bad or plan[-1][0], False))
    return plan


class Client:
    def __init__(self, index: int) -> None:
        self.index = index
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.params: list | None = None
        self.e1 = b""
        self.e2_size = 0
        self.difficulty = 1.0
        self.next_id = 10
        self.pending: dict[int, asyncio.Future] = {}

    async def connect(self, host: str, port: int) -> None:
        for attempt in range(20):
            try:
                self.reader, self.writer = await asyncio.open_connection(host, port, limit=1 << 20)
                break
            except OSError:
                await asyncio.sleep(0.05 * (attempt + 1))
        else:
            raise ConnectionError("could not connect")
        self.writer.write(
            b'{"id":1,"method":"mining.subscribe","params":["load/1"]}\n'
            + b'{"id":2,"method":"mining.authorize","params":["w%d","x"]}\n' % self.index
        )
        got_sub = got_auth = False
        while not (got_sub and got_auth and self.params is not None):
            msg = json.loads(await self.reader.readline())
            if msg.get("id") == 1:
                self.e1 = bytes.fromhex(msg["result"][1])
                self.e2_size = msg["result"][2]
                got_sub = True
            elif msg.get("id") == 2:
                assert msg["result"] is True, msg
                got_auth = True
            elif msg.get("method") == "mining.set_difficulty":
                self.difficulty = msg["params"][0]
            elif msg.get("method") == "mining.notify":
                self.params = msg["params"]

    async def read_loop(self) -> None:
        assert self.reader is not None
        while True:
            line = await self.reader.readline()
            if not line:
                for fut in self.pending.values():
                    if not fut.done():
                        fut.set_exception(ConnectionError("closed"))
                return
            msg = json.loads(line)
            fut = self.pending.pop(msg.get("id"), None) if "method" not in msg else None
            if fut is not None and not fut.done():
                fut.set_result(msg)

    async def submit(self, fields: list) -> dict:
        assert self.writer is not None
        self.next_id += 1
        rid = self.next_id
        fut = asyncio.get_running_loop().create_future()
        self.pending[rid] = fut
        self.writer.write(
            json.dumps({"id": rid, "method": "mining.submit", "params": [f"w{self.index}", *fields]}).encode() + b"\n"
        )
        return await fut


async def run_clients(args, pid: int) -> dict:
    rng = random.Random(args.seed)
    clients = [Client(i) for i in range(args.connections)]
    rss_before = proc_rss_bytes(pid)
    t0 = time.monotonic()
    sem = asyncio.Semaphore(200)  # connect in waves: the accept backlog is finite

    async def connect(c: Client) -> None:
        async with sem:
            await c.connect("127.0.0.1", args.port)

    await asyncio.gather(*(connect(c) for c in clients))
    connect_seconds = time.monotonic() - t0
    await asyncio.sleep(0.5)
    rss_connected = proc_rss_bytes(pid)
    target = int(DIFF1_TARGET / clients[0].difficulty)
    plans = [plan_submits(c.params, c.e1, c.e2_size, target, args.shares_per_connection, rng) for c in clients]
    readers = [asyncio.create_task(c.read_loop()) for c in clients]
    latencies: list[float] = []
    counts = {"valid_sent": 0, "invalid_sent": 0, "accepted": 0, "refused": 0}
    errors = {"valid_refused": 0, "invalid_accepted": 0, "lost": 0}
    reasons: dict[str, int] = {}
    stop_at = time.monotonic() + args.seconds

    async def drive(c: Client, plan: list) -> None:
        await asyncio.sleep(rng.random() * min(1.0, args.pause or 0.0))
        for fields, ok in plan:
            if time.monotonic() >= stop_at:
                return
            sent = time.perf_counter()
            try:
                reply = await asyncio.wait_for(c.submit(fields), 60)
            except (asyncio.TimeoutError, ConnectionError):
                errors["lost"] += 1
                return
            latencies.append(time.perf_counter() - sent)
            accepted = reply.get("result") is True and reply.get("error") is None
            counts["valid_sent" if ok else "invalid_sent"] += 1
            counts["accepted" if accepted else "refused"] += 1
            if not accepted:
                code = str((reply.get("error") or [None])[0])
                reasons[code] = reasons.get(code, 0) + 1
            if ok and not accepted:
                errors["valid_refused"] += 1
            if accepted and not ok:
                errors["invalid_accepted"] += 1
            if args.pause:
                await asyncio.sleep(args.pause)

    cpu0 = proc_cpu_seconds(pid)
    w0 = time.monotonic()
    await asyncio.gather(*(drive(c, p) for c, p in zip(clients, plans, strict=True)))
    wall = time.monotonic() - w0
    cpu = proc_cpu_seconds(pid) - cpu0
    rss_after = proc_rss_bytes(pid)
    for c in clients:
        c.writer.close()
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")

    submits = counts["valid_sent"] + counts["invalid_sent"]
    return {
        "connections": args.connections,
        "connect_seconds": round(connect_seconds, 2),
        "seconds": round(wall, 2),
        "pause_s": args.pause,
        "submits": submits,
        **counts,
        **errors,
        "refusal_codes": reasons,
        "shares_per_s": round(submits / wall, 1) if wall else 0.0,
        "pool_cpu_s": round(cpu, 2),
        "pool_cpu_utilisation": round(cpu / wall, 2) if wall else 0.0,
        "shares_per_s_per_core": round(submits / cpu, 1) if cpu else 0.0,
        "latency_p50_ms": round(pct(0.50), 2),
        "latency_p99_ms": round(pct(0.99), 2),
        "latency_max_ms": round(latencies[-1] * 1000, 2) if latencies else None,
        "pool_rss_idle_mb": round(rss_before / 2**20, 1),
        "pool_rss_connected_mb": round(rss_connected / 2**20, 1),
        "pool_rss_end_mb": round(rss_after / 2**20, 1),
        "kib_per_connection": round((rss_connected - rss_before) / args.connections / 1024, 1),
    }


def start_pool(args) -> subprocess.Popen:
    exe = shutil.which("miner")
    cmd = [exe] if exe else [sys.executable, "-m", "miner"]
    cmd += ["pool", "--listen", f"127.0.0.1:{args.port}", "--difficulty", repr(args.difficulty)]
    cmd += ["--no-vardiff", "--nbits", HARD_NBITS, "--json"]
    wanted = args.connections + 256

    def limits() -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, wanted), hard), hard))

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, preexec_fn=limits)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", args.port), timeout=1).close()
            return proc
        except OSError:
            if proc.poll() is not None:
                raise SystemExit("miner pool exited at start") from None
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("miner pool did not start listening")


def build_parser() -> argparse.ArgumentParser:
    """This script's options (the tests walk every float option of every benchmark)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--seconds", type=positive_float, default=30.0, help="submit phase length (bounded)")
    parser.add_argument("--shares-per-connection", type=int, default=250, help="valid shares prepared per connection")
    parser.add_argument(
        "--difficulty", type=positive_float, default=2.0**-30, help="pool share difficulty (low: cheap shares)"
    )
    parser.add_argument(
        "--pause", type=non_negative_float, default=0.0, help="seconds each client waits between submits"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    args.port = free_port()
    raise_fd_limit(args.connections + 256)
    pool = start_pool(args)
    try:
        result = asyncio.run(run_clients(args, pool.pid))
    finally:
        pool.send_signal(signal.SIGTERM)
        try:
            out, _ = pool.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            pool.kill()
            out, _ = pool.communicate()
    lines = [line for line in (out or "").splitlines() if line.startswith("{")]
    summary = json.loads(lines[-1]) if lines else {}
    result["pool_summary"] = summary
    result["pool_counts_match"] = summary.get("accepted") == result["accepted"]
    result["ok"] = (
        result["valid_refused"] == 0 and result["invalid_accepted"] == 0 and result["lost"] == 0
    ) and result["pool_counts_match"]
    print(json.dumps(result))
    if not args.json:
        rows = [
            ("connections", result["connections"]),
            ("submits (valid / invalid)", f"{result['valid_sent']} / {result['invalid_sent']}"),
            ("shares validated / s (wall)", result["shares_per_s"]),
            ("pool CPU utilisation (cores)", result["pool_cpu_utilisation"]),
            ("shares validated / s / core", result["shares_per_s_per_core"]),
            ("latency p50 / p99 (ms)", f"{result['latency_p50_ms']} / {result['latency_p99_ms']}"),
            ("pool RSS idle -> connected (MiB)", f"{result['pool_rss_idle_mb']} -> {result['pool_rss_connected_mb']}"),
            ("memory per connection (KiB)", result["kib_per_connection"]),
            ("valid refused / invalid accepted", f"{result['valid_refused']} / {result['invalid_accepted']}"),
            ("pool's own accepted count matches", result["pool_counts_match"]),
        ]
        width = max(len(k) for k, _ in rows)
        for key, value in rows:
            print(f"{key:<{width}}  {value}")
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
