"""getblocktemplate -> jobs -> blocks, the RPC client, and tip following, against recorded templates.

The segwit template has the shape Bitcoin Core's getblocktemplate returns
(rules, default_witness_commitment, weightlimit, txs with data/txid/hash); the
other was recorded from the regtest node the real-node tests run. A small
JSON-RPC server on 127.0.0.1 stands in for a node where a test needs one that
misbehaves on cue (long polls, outages, refusals).
"""

from __future__ import annotations

import base64
import copy
import json
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from miner.block import (
    display_hex_to_internal,
    hash_to_display_hex,
    hash_to_int,
    merkle_root,
    merkle_root_from_branches,
    nbits_to_target,
    sha256d,
)
from miner.coinbase import WITNESS_RESERVED_VALUE, bip34_height_push, coinbase_txid, strip_witness
from miner.gbt import GbtJobSource, TemplateError, block_bytes, template_to_job, template_txids, tx_strip_witness
from miner.pool import check_block
from miner.rpc import RpcAuthError, RpcClient, RpcConnectionError, RpcError, parse_rpc_url
from miner.solo import SoloMiner, job_work

DATA = Path(__file__).parent / "data"
SEGWIT_TEMPLATE = json.loads((DATA / "core_regtest_segwit_template.json").read_text())
BSV_TEMPLATE = json.loads((DATA / "bsv_regtest_template.json").read_text())
PAYOUT = bytes.fromhex("0014751e76e8199196d454941c45d1b3a323f1433bd6")
WAIT = 20.0  # upper bound for anything a test waits on


def wait_for(predicate, timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def solve(job, extranonce: bytes = b"\x00" * 8) -> tuple[bytes, bytes]:
    """A (header, coinbase) meeting the job's network target, by plain hashlib search."""
    work = job_work(job, extranonce)
    for nonce in range(1 << 20):
        header = work.header_with_nonce(nonce)
        if hash_to_int(sha256d(header)) <= work.network_target:
            return header, work.source[1]
    raise AssertionError("no solution in 2^20 nonces at a regtest target")


def split_block(block: bytes, transactions: list[bytes]) -> tuple[bytes, bytes]:
    """(header, coinbase) of a block whose other transactions are known."""
    assert block[80] == 1 + len(transactions)
    tail = b"".join(transactions)
    assert block.endswith(tail)
    return block[:80], block[81 : len(block) - len(tail)]


# --- templates -> jobs ----------------------------------------------------------------


@pytest.mark.parametrize("template", [SEGWIT_TEMPLATE, BSV_TEMPLATE], ids=["core-segwit", "bsv"])
def test_template_txids_match_the_transaction_data(template: dict) -> None:
    txids = template_txids(template)
    assert len(txids) == len(template["transactions"]) > 0
    for tx, txid in zip(template["transactions"], txids, strict=True):
        raw = bytes.fromhex(tx["data"])
        assert sha256d(tx_strip_witness(raw)) == txid == display_hex_to_internal(tx["txid"])
        assert sha256d(raw) == display_hex_to_internal(tx["hash"])


def test_txid_is_computed_when_the_template_omits_it() -> None:
    template = copy.deepcopy(SEGWIT_TEMPLATE)
    for tx in template["transactions"]:
        del tx["txid"]
    assert template_txids(template) == template_txids(SEGWIT_TEMPLATE)


@pytest.mark.parametrize("template", [SEGWIT_TEMPLATE, BSV_TEMPLATE], ids=["core-segwit", "bsv"])
def test_job_fields_follow_the_template(template: dict) -> None:
    job = template_to_job(template, PAYOUT, "j1")
    assert job.prev_block_internal == display_hex_to_internal(template["previousblockhash"])
    assert job.nbits == int(template["bits"], 16)
    assert nbits_to_target(job.nbits) == int(template["target"], 16)
    assert job.height == template["height"] and job.version == template["version"]
    assert job.ntime >= template["mintime"]
    assert job.transactions == [bytes.fromhex(tx["data"]) for tx in template["transactions"]]
    assert job.coinbase_witness == ("default_witness_commitment" in template)
    coinbase = job.coinb1 + b"\x11" * 8 + job.coinb2
    assert bip34_height_push(template["height"]) in coinbase[:50]
    # The branches climb to the same root as the full tree over all transactions.
    txids = [coinbase_txid(coinbase)] + template_txids(template)
    assert merkle_root_from_branches(coinbase_txid(coinbase), job.merkle_branches) == merkle_root(txids)


def test_segwit_block_commits_to_the_template_witnesses() -> None:
    template = SEGWIT_TEMPLATE
    job = template_to_job(template, PAYOUT, "j1")
    header, coinbase = solve(job)
    assert check_block(job, header, coinbase) == "ok"
    block = block_bytes(job, header, coinbase)
    got_header, block_coinbase = split_block(block, job.transactions)
    assert got_header == header
    # The block's coinbase is in segwit form with the reserved value, and pays PAYOUT.
    assert block_coinbase[4:6] == b"\x00\x01"
    assert block_coinbase.endswith(b"\x01\x20" + WITNESS_RESERVED_VALUE + b"\x00\x00\x00\x00")
    assert strip_witness(block_coinbase) == coinbase
    assert PAYOUT in coinbase
    # BIP 141: the commitment output holds sha256d(witness root || reserved value).
    commitment_script = bytes.fromhex(template["default_witness_commitment"])
    assert commitment_script in coinbase
    wtxids = [b"\x00" * 32] + [display_hex_to_internal(tx["hash"]) for tx in template["transactions"]]
    assert commitment_script[6:] == sha256d(merkle_root(wtxids) + WITNESS_RESERVED_VALUE)


def test_block_without_commitment_keeps_the_legacy_coinbase() -> None:
    job = template_to_job(BSV_TEMPLATE, PAYOUT, "j1")
    header, coinbase = solve(job)
    _, block_coinbase = split_block(block_bytes(job, header, coinbase), job.transactions)
    assert block_coinbase == coinbase


@pytest.mark.parametrize(
    "change",
    [
        lambda t: t.pop("previousblockhash"),
        lambda t: t.update(bits="zz"),
        lambda t: t.update(height="5"),
        lambda t: t.pop("coinbasevalue"),
        lambda t: t["transactions"][0].pop("data"),
        lambda t: t.update(default_witness_commitment="xyz"),
    ],
)
def test_broken_templates_raise_template_error(change) -> None:
    template = copy.deepcopy(SEGWIT_TEMPLATE)
    change(template)
    with pytest.raises(TemplateError):
        template_to_job(template, PAYOUT, "j1")


# --- a node stand-in ---------------------------------------------------------------------


class FakeNode:
    """Just enough of bitcoind's RPC: templates with long polling, and a checking submitblock."""

    def __init__(self, template: dict = BSV_TEMPLATE, user: str = "user", password: str = "pass") -> None:
        self.base = copy.deepcopy(template)
        self.auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.tip = template["previousblockhash"]
        self.height = template["height"]
        self.transactions = list(template["transactions"])
        self.revision = 0
        self.longpoll = True
        self.gbt_error: tuple[int, str] | None = None
        self.verdict: str | None = None  # force a submitblock answer
        self.calls: list[tuple[str, list]] = []
        self.blocks: list[bytes] = []
        self.cond = threading.Condition()
        self.server: ThreadingHTTPServer | None = None
        self.port = 0

    # state changes a test makes
    def new_tip(self, tip_display: str) -> None:
        with self.cond:
            self.tip = tip_display
            self.height += 1
            self.revision += 1
            self.cond.notify_all()

    def drop_transactions(self) -> None:
        with self.cond:
            self.transactions = self.transactions[:1]
            self.revision += 1
            self.cond.notify_all()

    def template(self) -> dict:
        t = copy.deepcopy(self.base)
        t.update(previousblockhash=self.tip, height=self.height, transactions=list(self.transactions))
        t["longpollid"] = f"{self.tip}{self.revision}"
        if not self.longpoll:
            del t["longpollid"]
        return t

    # RPC methods
    def rpc_getblocktemplate(self, request: dict | None = None) -> dict:
        if self.gbt_error:
            raise RpcError("getblocktemplate", *self.gbt_error)
        longpollid = (request or {}).get("longpollid")
        with self.cond:
            if longpollid is not None:
                self.cond.wait_for(lambda: longpollid != f"{self.tip}{self.revision}", timeout=1.0)
            return self.template()

    def rpc_submitblock(self, block_hex: str) -> str | None:
        block = bytes.fromhex(block_hex)
        with self.cond:
            template = self.template()
            txs = [bytes.fromhex(tx["data"]) for tx in template["transactions"]]
            header, coinbase = split_block(block, txs)
            if self.verdict is not None:
                return self.verdict
            if header[4:36] != display_hex_to_internal(self.tip):
                return "bad-prevblk"
            if hash_to_int(sha256d(header)) > nbits_to_target(int(template["bits"], 16)):
                return "high-hash"
            txids = [coinbase_txid(coinbase)] + template_txids(template)
            if header[36:68] != merkle_root(txids):
                return "bad-txnmrklroot"
            if not strip_witness(coinbase)[42:].startswith(bip34_height_push(self.height)):
                return "bad-cb-height"
            self.blocks.append(block)
            self.tip = hash_to_display_hex(sha256d(header))
            self.height += 1
            self.revision += 1
            self.cond.notify_all()
            return None

    def rpc_getblockchaininfo(self) -> dict:
        return {"chain": "regtest", "blocks": self.height - 1}

    # transport
    def start(self, port: int | None = None) -> FakeNode:
        node = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Authorization") != node.auth:
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                request = json.loads(body)
                node.calls.append((request["method"], request["params"]))
                status, reply = 200, {"id": request["id"], "error": None}
                method = getattr(node, "rpc_" + request["method"], None)
                try:
                    if method is None:
                        raise RpcError(request["method"], -32601, "Method not found")
                    reply["result"] = method(*request["params"])
                except RpcError as exc:
                    status, reply = 500, {"id": request["id"], "result": None}
                    reply["error"] = {"code": exc.code, "message": exc.message}
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port if port is None else port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def url(self) -> str:
        return f"http://user:pass@127.0.0.1:{self.port}"


@pytest.fixture
def node():
    fake = FakeNode().start()
    yield fake
    fake.stop()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- RPC client ---------------------------------------------------------------------------


def test_rpc_url_credentials_are_split_out() -> None:
    assert parse_rpc_url("http://us%40er:p%3Ass@127.0.0.1:18443") == ("http://127.0.0.1:18443/", ("us@er", "p:ss"))
    assert parse_rpc_url("127.0.0.1:18443/wallet/w") == ("http://127.0.0.1:18443/wallet/w", None)
    for bad in ("ftp://127.0.0.1", "http://", "http://127.0.0.1:port"):
        with pytest.raises(ValueError):
            parse_rpc_url(bad)


def test_rpc_errors_are_typed_one_liners(node: FakeNode) -> None:
    assert RpcClient(node.url).call("getblockchaininfo")["chain"] == "regtest"
    with pytest.raises(RpcAuthError, match="401"):
        RpcClient(f"http://user:wrong@127.0.0.1:{node.port}").call("getblockchaininfo")
    with pytest.raises(RpcError) as info:
        RpcClient(node.url).call("nosuchmethod")
    assert info.value.code == -32601 and "Method not found" in str(info.value)
    with pytest.raises(RpcConnectionError, match="cannot connect"):
        RpcClient(f"http://user:pass@127.0.0.1:{free_port()}", timeout=5).call("getblockchaininfo")


def test_rpc_cookie_file_is_read_on_each_call(node: FakeNode, tmp_path: Path) -> None:
    cookie = tmp_path / ".cookie"
    cookie.write_text("user:stale")
    client = RpcClient(f"http://127.0.0.1:{node.port}", cookie_file=str(cookie))
    with pytest.raises(RpcAuthError):
        client.call("getblockchaininfo")
    cookie.write_text("user:pass")  # what a restarted node does
    assert client.call("getblockchaininfo")["chain"] == "regtest"


# --- following the tip -----------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.jobs: list[tuple[object, bool]] = []
        self.events: list[str] = []

    def job(self, job, clean: bool) -> None:
        self.jobs.append((job, clean))

    def event(self, text: str) -> None:
        self.events.append(text)


@pytest.mark.parametrize("longpoll", [True, False], ids=["longpoll", "polling"])
def test_source_follows_new_tips_and_new_transactions(node: FakeNode, longpoll: bool) -> None:
    node.longpoll = longpoll
    seen = Recorder()
    source = GbtJobSource(node.url, PAYOUT, poll_interval=0.1, on_event=seen.event)
    source.add_listener(seen.job)
    source.start()
    try:
        first = source.current()
        assert first.height == node.height
        assert seen.jobs == [(first, True)]  # the first job is clean work
        node.new_tip("11" * 32)
        assert wait_for(lambda: len(seen.jobs) > 1)
        job, clean = seen.jobs[-1]
        assert clean and job.prev_block_internal == bytes.fromhex("11" * 32)
        assert source.current() is job
        count = len(seen.jobs)
        node.drop_transactions()
        assert wait_for(lambda: len(seen.jobs) > count)
        job, clean = seen.jobs[-1]
        assert not clean and len(job.transactions) == 1
        assert job.job_id != first.job_id
        assert source.longpolling == longpoll
    finally:
        source.stop()
    used_longpoll = any(m == "getblocktemplate" and params and "longpollid" in params[0] for m, params in node.calls)
    assert used_longpoll == longpoll


def test_submit_block_reports_the_node_verdict_and_moves_on(node: FakeNode) -> None:
    seen = Recorder()
    source = GbtJobSource(node.url, PAYOUT)
    source.add_listener(seen.job)
    job = source.current()
    header, coinbase = solve(job)
    bad_root = header[:36] + bytes(32) + header[68:]
    assert source.submit_block(job, bad_root, coinbase) in ("bad-txnmrklroot", "high-hash")
    assert source.submit_block(job, header, coinbase) == "accepted"
    assert len(node.blocks) == 1
    # An accepted block fetches the next template at once, on top of it.
    assert seen.jobs and seen.jobs[-1][1]
    assert source.current().prev_block_internal == sha256d(header)
    node.verdict = "inconclusive"
    assert source.submit_block(source.current(), *solve(source.current())) == "inconclusive"


def test_submit_block_to_a_node_that_is_gone() -> None:
    node = FakeNode().start()
    source = GbtJobSource(node.url, PAYOUT)
    job = source.current()
    node.stop()
    verdict = source.submit_block(job, *solve(job))
    assert verdict.startswith("not submitted") and "cannot connect" in verdict


def test_source_survives_a_node_outage() -> None:
    node = FakeNode().start()
    seen = Recorder()
    source = GbtJobSource(node.url, PAYOUT, poll_interval=0.1, on_event=seen.event)
    source.add_listener(seen.job)
    source.start()
    try:
        port = node.port
        node.stop()
        assert wait_for(lambda: any("retrying" in e for e in seen.events))
        count = len(seen.jobs)
        node.start(port)
        assert wait_for(lambda: any("back" in e for e in seen.events))
        assert len(seen.jobs) > count and seen.jobs[-1][1]  # fresh, clean work after the outage
    finally:
        source.stop()
        node.stop()


# --- solo mining ---------------------------------------------------------------------------


def make_engine():
    from miner.engine import Engine

    try:
        return Engine.for_backend("cpu", threads=1)
    except Exception:
        return Engine.for_backend("reference", threads=1)


@pytest.mark.parametrize("template", [SEGWIT_TEMPLATE, BSV_TEMPLATE], ids=["core-segwit", "bsv"])
def test_solo_miner_mines_blocks_the_node_accepts(template: dict) -> None:
    node = FakeNode(template).start()
    lines: list[str] = []
    try:
        source = GbtJobSource(node.url, PAYOUT, poll_interval=0.1)
        miner = SoloMiner(source, make_engine(), blocks_wanted=3, echo=lines.append)
        miner.run(duration=WAIT)
    finally:
        node.stop()
    assert len(miner.accepted) == 3, lines
    assert len(node.blocks) == 3
    heights = [r.height for r in miner.accepted]
    assert heights == list(range(template["height"], template["height"] + 3))
    for block, result in zip(node.blocks, miner.accepted, strict=True):
        assert hash_to_display_hex(sha256d(block[:80])) == result.hash_display
    assert all(line.endswith("accepted") for line in lines)
    assert miner.summary()["blocks"] == [r.hash_display for r in miner.accepted]


def test_solo_block_found_during_an_outage_is_sent_when_the_node_returns() -> None:
    node = FakeNode().start()
    lines: list[str] = []
    source = GbtJobSource(node.url, PAYOUT, poll_interval=0.1)
    miner = SoloMiner(source, make_engine(), echo=lines.append)
    try:
        miner.start()
        assert wait_for(lambda: any(line.endswith("accepted") for line in lines))
        port = node.port
        node.stop()
        assert wait_for(lambda: any(line.endswith("will retry") for line in lines)), lines[-5:]
        retried = next(line for line in lines if line.endswith("will retry")).split()[1]
        node.start(port)
        assert wait_for(lambda: f"block {retried} " in " ".join(ln for ln in lines if ln.endswith(": accepted")))
    finally:
        miner.stop()
        node.stop()
    assert retried in [hash_to_display_hex(sha256d(block[:80])) for block in node.blocks]


def test_solo_miner_prints_rejections() -> None:
    node = FakeNode().start()
    node.verdict = "bad-cb-amount"
    lines: list[str] = []
    try:
        source = GbtJobSource(node.url, PAYOUT, poll_interval=0.1)
        miner = SoloMiner(source, make_engine(), echo=lines.append)
        miner.start()
        assert wait_for(lambda: lines)
        miner.stop()
    finally:
        node.stop()
    assert lines[0].endswith(": bad-cb-amount")
    assert miner.summary()["rejections"][0] == "bad-cb-amount"


# --- the command line, with the stand-in node ------------------------------------------------

REGTEST_P2PKH = "mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn"


def run_solo(*args: str):
    from miner.cli import main

    return CliRunner().invoke(main, ["solo", *args], catch_exceptions=False)


def test_cli_solo_json_summary(node: FakeNode) -> None:
    result = run_solo(
        "--rpc-url", node.url, "--address", REGTEST_P2PKH, "--threads", "1", "--blocks", "2", "--duration", "20",
        "--json", "--backend", "cpu" if _has_cpu() else "reference",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["accepted"] == 2 and len(summary["blocks"]) == 2
    assert summary["blocks"] == [hash_to_display_hex(sha256d(b[:80])) for b in node.blocks]
    assert "accepted" in result.stderr


def test_cli_solo_protocol_dump_logs_each_rpc_call_and_reply(node: FakeNode) -> None:
    result = run_solo(
        "--rpc-url", node.url, "--address", REGTEST_P2PKH, "--threads", "1", "--blocks", "1", "--duration", "20",
        "--protocol-dump", "--backend", "cpu" if _has_cpu() else "reference",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    sent = [line for line in result.stderr.splitlines() if "] > " in line]
    received = [line for line in result.stderr.splitlines() if "] < " in line]
    assert any('"getblocktemplate"' in line for line in sent) and any('"submitblock"' in line for line in sent)
    assert any('"result"' in line for line in received)


def _has_cpu() -> bool:
    try:
        from kernels import get_backend

        get_backend("cpu")
        return True
    except Exception:
        return False


@pytest.mark.parametrize(
    "setup, args, needle, code",
    [
        (None, ["--address", "notanaddress"], "unrecognised address", 2),
        (None, ["--address", "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"], "mainnet address but the node is on regtest", 2),
        ("badauth", ["--address", REGTEST_P2PKH], "rejected the RPC credentials", 1),
        ("down", ["--address", REGTEST_P2PKH], "cannot connect to node", 1),
        ("notconnected", ["--address", REGTEST_P2PKH], "Bitcoin is not connected!", 1),
    ],
)
def test_cli_solo_errors_are_one_line(node: FakeNode, setup, args, needle: str, code: int) -> None:
    url = node.url
    if setup == "badauth":
        url = f"http://user:nope@127.0.0.1:{node.port}"
    elif setup == "down":
        url = f"http://user:pass@127.0.0.1:{free_port()}"
    elif setup == "notconnected":
        node.gbt_error = (-9, "Bitcoin is not connected!")
    result = run_solo("--rpc-url", url, *args, "--duration", "5")
    assert result.exit_code == code
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("miner: error: ") and needle in lines[0], result.stderr


def test_header_time_never_goes_backwards() -> None:
    job = template_to_job(BSV_TEMPLATE, PAYOUT, "j")
    work = job_work(job, b"\x00" * 8, ntime=job.ntime + 5)
    assert struct.unpack_from("<I", work.header, 68)[0] == job.ntime + 5
    assert len(work.header) == 80 and work.network_target == work.target == job.network_target


# --- a template field that is wrong says which, and what it should hold ----------------------------------------


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda t: t.update(previousblockhash="00"), "'previousblockhash': expected 64 hex digits"),
        (lambda t: t.update(bits="zz"), "'bits': expected 8 hex digits"),
        (lambda t: t.update(bits="00800000"), "'bits': nBits 00800000"),
        (lambda t: t.update(height=-1), "'height': expected a block height"),
        (lambda t: t.pop("coinbasevalue"), "'coinbasevalue' is missing"),
        (lambda t: t["transactions"][0].update(data="xyz"), "'transactions[0].data': expected hex digits"),
        (lambda t: t["transactions"][0].update(hash="00"), "'transactions[0].hash': expected 64 hex digits"),
    ],
)
def test_template_errors_name_the_field(change, words: str) -> None:
    template = copy.deepcopy(SEGWIT_TEMPLATE)
    change(template)
    with pytest.raises(TemplateError) as caught:
        template_to_job(template, PAYOUT, "j1")
    assert words in str(caught.value) and "\n" not in str(caught.value)


# --- miner pool on a node: the address must belong to the node's chain, as for solo -----------------------------


def run_pool(*args: str):
    from miner.cli import main

    return CliRunner().invoke(main, ["pool", "--listen", "127.0.0.1:0", "--duration", "0", *args])


def test_cli_pool_on_a_regtest_node_refuses_a_mainnet_address(node: FakeNode) -> None:
    result = run_pool("--rpc-url", node.url, "--address", "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("miner: error: --address: "), result.stderr
    assert "mainnet address but the node is on regtest" in lines[0]
    assert [method for method, _ in node.calls] == ["getblockchaininfo"]  # refused before any template


def test_cli_pool_on_a_regtest_node_takes_a_regtest_address(node: FakeNode) -> None:
    result = run_pool("--rpc-url", node.url, "--address", REGTEST_P2PKH)
    assert result.exit_code == 0, result.output
    assert f"blocks pay {REGTEST_P2PKH}" in result.stderr


@pytest.mark.parametrize("command", ["solo", "pool"])
def test_binary_cookie_file_is_one_line(node: FakeNode, tmp_path: Path, command: str) -> None:
    from miner.cli import main

    cookie = tmp_path / ".cookie"
    cookie.write_bytes(bytes(range(256)))
    url = f"http://127.0.0.1:{node.port}"
    args = [command, "--rpc-url", url, "--rpc-cookie", str(cookie), "--address", REGTEST_P2PKH, "--duration", "0"]
    if command == "solo":
        args[-1] = "5"
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("miner: error: "), result.stderr
    assert f"RPC cookie file {cookie} is not text" in lines[0] and "__cookie__:PASSWORD" in lines[0]
