"""getblocktemplate (BIP 22/23) -> PoolJob, and a job source that follows a node's tip.

The template names the transactions, the coinbase value and (on segwit
chains) the witness commitment; we build the coinbase ourselves, so the
extranonce can be rolled inside it. :class:`GbtJobSource` keeps the current
job fresh by long polling (``longpollid``) where the node offers it and by
plain polling otherwise, and submits solved blocks with ``submitblock``.
"""

from __future__ import annotations

import itertools
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from miner.block import display_hex_to_internal, merkle_branches, nbits_to_target, sha256d
from miner.coinbase import add_coinbase_witness, build_coinbase, serialize_block
from miner.pool import PoolJob
from miner.rpc import RpcClient, RpcConnectionError, RpcError, RpcFailure

GBT_RULES = {"rules": ["segwit"]}
DEFAULT_EXTRANONCE_SIZE = 8  # the pool's extranonce1 (4) + extranonce2 (4)
# A node holds a long poll until the tip moves (or about a minute after the mempool changes), and an
# abandoned poll keeps one of its few RPC threads waiting, so give up on one only after a long time.
LONGPOLL_TIMEOUT = 1800.0
POLL_INTERVAL = 2.0  # when the node has no long polling
RETRY_INTERVAL = 1.0  # while the node is unreachable
DEFAULT_TAG = b"/sha256d-miner/"


class TemplateError(ValueError):
    """The template is missing a field or holds one we cannot use."""


def _read_compact_size(data: bytes, pos: int) -> tuple[int, int]:
    first = data[pos]
    if first < 0xFD:
        return first, pos + 1
    size = {0xFD: 2, 0xFE: 4, 0xFF: 8}[first]
    return int.from_bytes(data[pos + 1 : pos + 1 + size], "little"), pos + 1 + size


def tx_strip_witness(tx: bytes) -> bytes:
    """The non-witness serialisation of a transaction (unchanged if it has no witness)."""
    if len(tx) < 10 or tx[4] != 0x00 or tx[5] != 0x01:
        return tx
    pos = 6
    n_in, pos = _read_compact_size(tx, pos)
    for _ in range(n_in):
        pos += 36
        script_len, pos = _read_compact_size(tx, pos)
        pos += script_len + 4
    n_out, pos = _read_compact_size(tx, pos)
    for _ in range(n_out):
        pos += 8
        script_len, pos = _read_compact_size(tx, pos)
        pos += script_len
    if pos + 4 > len(tx):
        raise TemplateError("transaction data is truncated")
    return tx[:4] + tx[6:pos] + tx[-4:]


_MISSING = object()


def _shown(value: Any) -> str:
    """A field's value as an error quotes it: short enough for one line."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _field_error(name: str, expected: str, value: Any) -> TemplateError:
    if value is _MISSING:
        return TemplateError(f"template field {name!r} is missing; expected {expected}")
    return TemplateError(f"template field {name!r}: expected {expected}, got {_shown(value)}")


def _hex_value(name: str, value: Any, size: int | None = None, what: str = "") -> bytes:
    expected = f"{2 * size} hex digits" if size is not None else "hex digits"
    expected += f" ({what})" if what else ""
    if not isinstance(value, str):
        raise _field_error(name, expected, value)
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise _field_error(name, expected, value) from None
    if size is not None and len(raw) != size:
        raise _field_error(name, expected, value)
    return raw


def _int_value(name: str, value: Any, low: int, high: int, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise _field_error(name, what, value)
    return value


@dataclass(frozen=True)
class Template:
    """A getblocktemplate answer, every field a block needs checked (one :class:`TemplateError` line each)."""

    height: int
    coinbase_value: int
    bits: int
    version: int
    prev_block_internal: bytes
    curtime: int
    mintime: int
    txids_internal: list[bytes]
    wtxids_internal: list[bytes]
    transactions: list[bytes]
    witness_commitment: bytes | None
    target_hex: str | None


def read_template(template: Any) -> Template:
    """Check a getblocktemplate result field by field (BIP 22/23, and BIP 141's commitment).

    Each failure names the field and what it should hold, so a saved or hand-edited template
    that is wrong says where, whether it is mined (``solo``, ``pool``) or explained.
    """
    if not isinstance(template, dict):
        raise TemplateError(f"getblocktemplate did not return an object (got {type(template).__name__})")

    def get(name: str) -> Any:
        return template.get(name, _MISSING)

    prev_display = _hex_value("previousblockhash", get("previousblockhash"), 32, "a block hash in display order")
    bits_raw = _hex_value("bits", get("bits"), 4, "a compact target like 207fffff")
    bits = struct.unpack(">I", bits_raw)[0]
    try:
        nbits_to_target(bits)
    except ValueError as exc:
        raise TemplateError(f"template field 'bits': {exc}; expected a compact target like 207fffff") from None
    height = _int_value("height", get("height"), 0, 0x7FFFFFFF, "a block height, a whole number from 0")
    value = _int_value("coinbasevalue", get("coinbasevalue"), 0, 21_000_000 * 100_000_000 * 1000,
                       "the coinbase's value in satoshis, a whole number from 0")  # fmt: skip
    version = _int_value("version", get("version"), -(1 << 31), (1 << 32) - 1, "a 32-bit block version number")
    curtime = _int_value("curtime", get("curtime"), 0, 0xFFFFFFFF, "a Unix time in seconds (32 bits)")
    mintime_value = template.get("mintime")
    mintime = 0 if mintime_value is None else _int_value("mintime", mintime_value, 0, 0xFFFFFFFF,
                                                         "a Unix time in seconds (32 bits)")  # fmt: skip
    commitment_value = template.get("default_witness_commitment")
    commitment = None
    if commitment_value not in (None, ""):
        commitment = _hex_value("default_witness_commitment", commitment_value, None, "an output script")
    txs = template.get("transactions")
    if txs is None:
        txs = []
    if not isinstance(txs, list):
        raise _field_error("transactions", "a list of transactions", txs)
    txids: list[bytes] = []
    wtxids: list[bytes] = []
    raw_txs: list[bytes] = []
    for i, tx in enumerate(txs):
        name = f"transactions[{i}]"
        if not isinstance(tx, dict):
            raise _field_error(name, "an object with data, txid and hash", tx)
        if "data" not in tx:
            raise _field_error(f"{name}.data", "the transaction as hex", _MISSING)
        data = _hex_value(f"{name}.data", tx["data"], None, "the transaction")
        if not data:
            raise _field_error(f"{name}.data", "the transaction as hex", tx["data"])
        if tx.get("txid") is not None:
            txid = _hex_value(f"{name}.txid", tx["txid"], 32, "a transaction hash in display order")[::-1]
        else:  # BIP 22 only: the txid is the hash of the (non-witness) data
            try:
                txid = sha256d(tx_strip_witness(data))
            except (IndexError, KeyError, TemplateError):
                raise _field_error(f"{name}.data", "a whole serialised transaction", tx["data"]) from None
        if tx.get("hash") is not None:
            wtxid = _hex_value(f"{name}.hash", tx["hash"], 32, "a transaction hash in display order")[::-1]
        else:
            wtxid = sha256d(data)
        txids.append(txid)
        wtxids.append(wtxid)
        raw_txs.append(data)
    target = template.get("target")
    return Template(
        height=height,
        coinbase_value=value,
        bits=bits,
        version=version,
        prev_block_internal=prev_display[::-1],
        curtime=curtime,
        mintime=mintime,
        txids_internal=txids,
        wtxids_internal=wtxids,
        transactions=raw_txs,
        witness_commitment=commitment,
        target_hex=target if isinstance(target, str) else None,
    )


def template_txids(template: dict) -> list[bytes]:
    """Internal-order txids of the template's transactions (the merkle leaves after the coinbase)."""
    txids = []
    for i, tx in enumerate(template.get("transactions") or []):
        if not isinstance(tx, dict) or not isinstance(tx.get("data"), str):
            raise TemplateError(f"template transaction {i} has no data")
        if isinstance(tx.get("txid"), str):
            txids.append(display_hex_to_internal(tx["txid"]))
        else:  # BIP 22 only: the txid is the hash of the (non-witness) data
            txids.append(sha256d(tx_strip_witness(bytes.fromhex(tx["data"]))))
    return txids


def template_to_job(
    template: dict,
    payout_script: bytes,
    job_id: str,
    extranonce_size: int = DEFAULT_EXTRANONCE_SIZE,
    tag: bytes = DEFAULT_TAG,
) -> PoolJob:
    """A PoolJob from a getblocktemplate result: our coinbase, the template's transactions."""
    t = read_template(template)
    parts = build_coinbase(
        t.height,
        t.coinbase_value,
        payout_script,
        extranonce_size=extranonce_size,
        tag=tag,
        witness_commitment_script=t.witness_commitment,
    )
    return PoolJob(
        job_id=job_id,
        prev_block_internal=t.prev_block_internal,
        coinb1=parts.coinb1,
        coinb2=parts.coinb2,
        merkle_branches=merkle_branches(t.txids_internal),
        version=t.version & 0xFFFFFFFF,
        nbits=t.bits,
        ntime=max(t.curtime, t.mintime),
        height=t.height,
        transactions=t.transactions,
        coinbase_witness=t.witness_commitment is not None,
    )


def block_bytes(job: PoolJob, header80: bytes, coinbase_tx: bytes) -> bytes:
    """The full block for ``submitblock`` (segwit coinbase when the template committed to witnesses)."""
    if job.coinbase_witness:
        coinbase_tx = add_coinbase_witness(coinbase_tx)
    return serialize_block(header80, coinbase_tx, job.transactions)


class GbtJobSource:
    """A JobSource backed by a node: follows its tip and submits blocks to it.

    ``on_event`` receives one-line notes (node unreachable, back, new tip) for
    the user; listeners receive ``(job, clean)`` with ``clean`` when the tip
    moved, so miners drop stale work at once.
    """

    def __init__(
        self,
        rpc_url: str,
        payout_script: bytes,
        rpc_cookie: str | None = None,
        *,
        extranonce_size: int = DEFAULT_EXTRANONCE_SIZE,
        tag: bytes = DEFAULT_TAG,
        poll_interval: float = POLL_INTERVAL,
        longpoll: bool = True,
        on_event: Callable[[str], None] | None = None,
        rpc: RpcClient | None = None,
    ) -> None:
        self.rpc = rpc or RpcClient(rpc_url, cookie_file=rpc_cookie)
        self.payout_script = payout_script
        self.extranonce_size = extranonce_size
        self.tag = tag
        self.poll_interval = poll_interval
        self.use_longpoll = longpoll
        self.on_event = on_event
        self._listeners: list[Callable[[PoolJob, bool], None]] = []
        self._lock = threading.Lock()
        self._job: PoolJob | None = None
        self._template: dict | None = None
        self._ids = itertools.count(1)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._down = False

    # --- JobSource ------------------------------------------------------------------

    def start(self) -> None:
        """Fetch the first template (RpcFailure if the node cannot give one), then follow the tip."""
        if self._job is None:
            self.refresh()
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._follow, name="gbt-follow", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=0.5)  # a long poll in flight is abandoned (daemon thread)
            self._thread = None

    def current(self) -> PoolJob:
        if self._job is None:
            self.refresh()
        assert self._job is not None
        return self._job

    def add_listener(self, callback: Callable[[PoolJob, bool], None]) -> None:
        self._listeners.append(callback)

    def submit_block(self, job: PoolJob, header80: bytes, coinbase_tx: bytes) -> str:
        """``submitblock``: "accepted", or the node's reason (high-hash, bad-txnmrklroot, ...)."""
        block_hex = block_bytes(job, header80, coinbase_tx).hex()
        for attempt in range(3):
            try:
                result = self.rpc.call("submitblock", block_hex)
                break
            except RpcConnectionError as exc:
                if attempt == 2:
                    return f"not submitted: {exc}"
                time.sleep(0.5)
            except RpcError as exc:
                return exc.message or f"rpc error {exc.code}"
        if result is None or result == "":
            self._wake.set()  # our block is the new tip: fetch the next template now
            try:
                self.refresh()
            except RpcFailure:
                pass
            return "accepted"
        return str(result)

    # --- following the tip --------------------------------------------------------------

    @property
    def longpolling(self) -> bool:
        """Whether the tip is followed by long polling (the node offered a longpollid)."""
        return self.use_longpoll and bool(self._template and self._template.get("longpollid"))

    def fetch_template(self, longpollid: str | None = None) -> dict:
        params: dict[str, Any] = dict(GBT_RULES)
        timeout = None
        if longpollid is not None:
            params["longpollid"] = longpollid
            timeout = LONGPOLL_TIMEOUT
        return self.rpc.call("getblocktemplate", params, timeout=timeout)

    def refresh(self, template: dict | None = None) -> bool:
        """Take a new template (fetched now unless given); announce a job if it changed anything."""
        if template is None:
            template = self.fetch_template()
        with self._lock:
            old = self._template
            if old is not None and _same_work(old, template) and not self._down:
                self._template = template
                return False
            job = template_to_job(template, self.payout_script, f"{next(self._ids):x}", self.extranonce_size, self.tag)
            clean = old is None or old.get("previousblockhash") != template.get("previousblockhash") or self._down
            self._template = template
            self._job = job
            self._down = False
        if old is not None and clean:
            self._event(f"new block template at height {job.height}")
        for callback in list(self._listeners):
            try:
                callback(job, clean)
            except Exception as exc:  # a listener's bug must not stop the tip following
                self._event(f"job listener failed: {exc}")
        return True

    def _event(self, text: str) -> None:
        if self.on_event is not None:
            self.on_event(text)

    def _follow(self) -> None:
        while not self._stop.is_set():
            longpollid = None
            if self.use_longpoll and self._template is not None and not self._down:
                longpollid = self._template.get("longpollid")
            try:
                if longpollid:
                    template = self.fetch_template(longpollid)
                else:
                    self._wake.wait(self.poll_interval)
                    self._wake.clear()
                    if self._stop.is_set():
                        return
                    template = self.fetch_template()
                if self._stop.is_set():
                    return
                was_down = self._down
                self.refresh(template)
                if was_down:
                    self._event("node is back; mining on a fresh template")
            except RpcConnectionError as exc:
                if "in time" in str(exc):
                    continue  # a long poll with nothing new: ask again
                self._mark_down(str(exc))
            except RpcError as exc:
                self._mark_down(f"node refused getblocktemplate: {exc.message} (code {exc.code})")
            except (RpcFailure, TemplateError) as exc:
                self._mark_down(f"getblocktemplate failed: {exc}")

    def _mark_down(self, reason: str) -> None:
        if not self._down:
            self._event(f"{reason}; retrying")
        self._down = True
        self._stop.wait(RETRY_INTERVAL)


def _same_work(old: dict, new: dict) -> bool:
    """True when a template offers nothing a miner should switch for."""
    keys = ("previousblockhash", "bits", "height", "coinbasevalue", "default_witness_commitment", "version")
    if any(old.get(k) != new.get(k) for k in keys):
        return False
    return [t.get("txid") or t.get("data") for t in old.get("transactions") or []] == [
        t.get("txid") or t.get("data") for t in new.get("transactions") or []
    ]
