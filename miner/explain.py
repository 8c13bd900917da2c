"""The arithmetic behind ``miner explain``: every step of mining as plain data.

Each function returns a JSON-ready dict (hex strings, ints, floats) so the
same walk-through is printed for a person or emitted with ``--json``. Hashing
is done twice on purpose: with the step-by-step reference SHA-256, whose
intermediate states are what a class wants to see, and with hashlib, which
must agree.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from fractions import Fraction
from typing import Any

from kernels import reference
from miner.block import (
    DIFF1_TARGET,
    MAX_TARGET,
    BlockHeader,
    bits_to_difficulty,
    check_nbits,
    difficulty_to_target,
    hash_to_display_hex,
    hash_to_int,
    int_to_display_hex,
    leading_zero_bits,
    merkle_root,
    nbits_to_target,
    parse_header_hex,
    ser_compact_size,
    sha256d,
)
from miner.work import StratumJob, coinbase_bytes, job_header, job_merkle_root, roll_version, swap_words
from stratum.protocol import ERR_JOB_NOT_FOUND, parse_error

TWO_32 = 1 << 32
MAX_EXTRANONCE2_SIZE = 32  # as the Stratum protocol core accepts
SECONDS_PER_DAY = 86400

#: real headers, embedded so the walk-through works with the package alone
NAMED_HEADERS: dict[str, tuple[str, str]] = {
    "genesis": (
        "mainnet genesis block (height 0)",
        "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b27ac72c3e67768f61"
        "7fc81bc3888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d1dac2b7c",
    ),
    "125552": (
        "mainnet block 125552",
        "0100000081cd02ab7e569e8bcd9317e2fe99f2de44d49ab2b8851ba4a308000000000000e320b6c2fffc8d750423db8b1eb942ae"
        "710e951ed797f7affc8892b0f1fc122bc7f5d74df2b9441a42a14695",
    ),
    "testnet-genesis": (
        "testnet3 genesis block",
        "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b27ac72c3e67768f61"
        "7fc81bc3888a51323a9fb8aa4b1e5e4adae5494dffff001d1aa4ae18",
    ),
    "regtest-genesis": (
        "regtest genesis block",
        "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b27ac72c3e67768f61"
        "7fc81bc3888a51323a9fb8aa4b1e5e4adae5494dffff7f2002000000",
    ),
}

LE_NOTE = "little-endian: the number's lowest byte is hashed first, so the hex reads backwards"
HASH_NOTE = "display order is the hashed bytes reversed (explorers and RPC print hashes backwards)"


def _words(state: tuple[int, ...]) -> list[str]:
    return [f"{w:08x}" for w in state]


def _target_hex(value: int) -> str:
    return int_to_display_hex(value)


# --- header ------------------------------------------------------------------


def resolve_header(spec: str) -> tuple[str | None, bytes]:
    """A named header ('genesis', '125552', ...) or 160 hex digits -> (label, 80 bytes)."""
    key = spec.strip().lower()
    if key in NAMED_HEADERS:
        label, header_hex = NAMED_HEADERS[key]
        return label, bytes.fromhex(header_hex)
    try:
        return None, parse_header_hex(spec)
    except ValueError as exc:
        names = ", ".join(NAMED_HEADERS)
        raise ValueError(f"{exc}; give 160 hex digits or one of: {names}") from None


def header_fields(header80: bytes) -> list[dict[str, Any]]:
    """The six fields: the value a person reads and the bytes actually hashed."""
    h = BlockHeader.deserialize(header80)
    when = datetime.fromtimestamp(h.time, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return [
        {"name": "version", "offset": 0, "size": 4, "value": h.version,
         "value_text": f"{h.version} (0x{h.version:08x})", "hashed_hex": header80[0:4].hex(), "order": LE_NOTE},
        {"name": "prev_block", "offset": 4, "size": 32, "value": h.prev_block_display,
         "value_text": h.prev_block_display, "hashed_hex": header80[4:36].hex(), "order": HASH_NOTE},
        {"name": "merkle_root", "offset": 36, "size": 32, "value": h.merkle_root_display,
         "value_text": h.merkle_root_display, "hashed_hex": header80[36:68].hex(), "order": HASH_NOTE},
        {"name": "time", "offset": 68, "size": 4, "value": h.time,
         "value_text": f"{h.time} ({when})", "hashed_hex": header80[68:72].hex(), "order": LE_NOTE},
        {"name": "bits", "offset": 72, "size": 4, "value": f"{h.bits:08x}",
         "value_text": f"0x{h.bits:08x} (compact target)", "hashed_hex": header80[72:76].hex(), "order": LE_NOTE},
        {"name": "nonce", "offset": 76, "size": 4, "value": h.nonce,
         "value_text": f"{h.nonce} (0x{h.nonce:08x})", "hashed_hex": header80[76:80].hex(), "order": LE_NOTE},
    ]  # fmt: skip


def sha256_pass(message: bytes) -> dict[str, Any]:
    """One SHA-256 with the state after every 64-byte block (the reference code)."""
    padded = reference.pad(message)
    state = reference.H0
    blocks = []
    for offset in range(0, len(padded), 64):
        block = padded[offset : offset + 64]
        out = reference.compress(state, block)
        blocks.append({"block_hex": block.hex(), "state_in": _words(state), "state_out": _words(out)})
        state = out
    return {
        "input_hex": message.hex(),
        "input_bytes": len(message),
        "padded_hex": padded.hex(),
        "blocks": blocks,
        "digest_hex": reference.state_to_bytes(state).hex(),
    }


def decode_bits(bits: int, field: str) -> int:
    """The target an nBits encodes; a ValueError naming ``field`` and what it should hold when it encodes none.

    A zero target is a target (no hash meets it, and the walk-through says so); a negative one or one
    past 256 bits is not a number at all, so there is nothing to compare a hash with.
    """
    try:
        return nbits_to_target(bits)
    except ValueError:
        try:
            check_nbits(bits)
            detail = f"nBits {bits:08x} encodes no target"
        except ValueError as exc:
            detail = str(exc)
        raise ValueError(f"{field}: {detail}") from None


def target_from_bits(bits: int, field: str = "nBits") -> dict[str, Any]:
    exponent, mantissa = bits >> 24, bits & 0x007FFFFF
    target = decode_bits(bits, field)
    return {
        "bits": f"{bits:08x}",
        "exponent": exponent,
        "mantissa": f"{mantissa:06x}",
        "formula": f"0x{mantissa:06x} * 256^(0x{exponent:02x} - 3)",
        "target_hex": _target_hex(target),
        "target_leading_zero_bits": leading_zero_bits(target),
        "difficulty": bits_to_difficulty(bits),
    }


def explain_header(header80: bytes, label: str | None = None) -> dict[str, Any]:
    """Everything between the 80 bytes and 'this block is valid'."""
    header = BlockHeader.deserialize(header80)
    pass1 = sha256_pass(header80)
    first = bytes.fromhex(pass1["digest_hex"])
    pass2 = sha256_pass(first)
    digest = bytes.fromhex(pass2["digest_hex"])
    if digest != sha256d(header80):  # the teaching copy must agree with hashlib
        raise AssertionError("reference SHA-256 disagrees with hashlib")
    value = hash_to_int(digest)
    field = "the header's bits field (bytes 72..75)"
    target = decode_bits(header.bits, field)
    return {
        "label": label,
        "header_hex": header80.hex(),
        "fields": header_fields(header80),
        "midstate": pass1["blocks"][0]["state_out"],
        "pass1": pass1,
        "pass2": pass2,
        "hash_internal_hex": digest.hex(),
        "hash_display_hex": hash_to_display_hex(digest),
        "target": target_from_bits(header.bits, field),
        "comparison": {
            "hash_int_hex": _target_hex(value),
            "target_hex": _target_hex(target),
            "valid": value <= target,
            "hash_leading_zero_bits": leading_zero_bits(value),
            "hash_difficulty": DIFF1_TARGET / value if value else math.inf,
        },
    }


def trace_compression(header80: bytes, compression: int = 1) -> dict[str, Any]:
    """The 64 rounds of one compression, for following a hash by hand.

    1: first pass, header bytes 0..63 (ends in the midstate);
    2: first pass, bytes 64..79 plus padding (the block a miner redoes per nonce);
    3: second pass, over the first digest.
    """
    pass1 = reference.pad(header80)
    if compression == 1:
        state, block = reference.H0, pass1[:64]
    elif compression == 2:
        state, block = reference.midstate(header80[:64]), pass1[64:128]
    elif compression == 3:
        state, block = reference.H0, reference.pad(reference.sha256(header80))
    else:
        raise ValueError("compression must be 1, 2 or 3")
    rounds: list[dict[str, Any]] = []

    def record(t: int, w_t: int, abcdefgh: tuple[int, ...]) -> None:
        rounds.append({"t": t, "k": f"{reference.K[t]:08x}", "w": f"{w_t:08x}", "state": _words(abcdefgh)})

    out = reference.compress(state, block, record)
    return {
        "compression": compression,
        "block_hex": block.hex(),
        "initial_state": _words(state),
        "schedule": [f"{w:08x}" for w in reference.message_schedule(block)],
        "rounds": rounds,
        "output_state": _words(out),
    }


# --- a Stratum job -------------------------------------------------------------


def load_messages(text: str) -> list[dict[str, Any]]:
    """A capture: a JSON list of messages, {"messages": [...]}, one JSON message per line, or the wire
    capture ``miner mine --capture`` writes (its messages, in order)."""
    return [entry.message for entry in load_capture(text) if entry.message is not None]


#: requests a Stratum client sends; in a capture without directions every other message came from the pool
CLIENT_METHODS = frozenset(
    {
        "mining.subscribe", "mining.authorize", "mining.submit", "mining.configure", "mining.extranonce.subscribe",
        "mining.suggest_difficulty", "mining.suggest_target", "mining.get_transactions", "mining.multi_version",
    }
)  # fmt: skip
DIRECTIONS = ("out", "in")


@dataclass(frozen=True)
class WireMessage:
    """One message of a capture, in the order it was sent or received.

    ``direction`` is "out" (miner to pool) or "in". ``line`` is the message exactly as it went over the
    wire and ``time`` its Unix time, where the capture recorded them (``miner mine --capture``); a line
    that is not a JSON object has ``message`` None.
    """

    number: int  # the capture's line (or, in a JSON list, the message's place), from 1
    direction: str
    message: dict[str, Any] | None
    line: str | None = None
    time: float | None = None


def _is_wire_record(value: Any) -> bool:
    return isinstance(value, dict) and "direction" in value and "line" in value


def load_capture(text: str) -> list[WireMessage]:
    """Every message of a capture in order: the wire format (JSON lines of time, direction and line) or
    today's (a JSON list of messages, {"messages": [...]}, or one message per line), whose directions are
    told by method. A ValueError names the line that is not JSON or not a capture record."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    try:
        wire = _is_wire_record(json.loads(first))
    except json.JSONDecodeError:
        wire = False
    if wire:
        return _load_wire(text)
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                data.append(json.loads(line))
            except json.JSONDecodeError:
                raise ValueError(f"line {number} is not JSON") from None
    if isinstance(data, dict):
        data = data.get("messages", [data])
    if not isinstance(data, list) or not all(isinstance(m, dict) for m in data):
        raise ValueError("a capture is a list of JSON-RPC messages")
    return [
        WireMessage(number, "out" if m.get("method") in CLIENT_METHODS else "in", m) for number, m in enumerate(data, 1)
    ]


def _load_wire(text: str) -> list[WireMessage]:
    entries = []
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError:
            raise ValueError(f"line {number} is not JSON (cut short?): {_shown(raw)}") from None
        if not _is_wire_record(record) or record["direction"] not in DIRECTIONS or not isinstance(record["line"], str):
            raise ValueError(f'line {number} is not a capture record {{"time", "direction": "in"|"out", "line"}}')
        stamp = record.get("time")
        try:
            message = json.loads(record["line"])
        except json.JSONDecodeError:
            message = None  # what a pool sent that is not JSON stays in the capture, and is not walked
        entries.append(
            WireMessage(
                number,
                record["direction"],
                message if isinstance(message, dict) else None,
                record["line"],
                float(stamp) if isinstance(stamp, (int, float)) and not isinstance(stamp, bool) else None,
            )
        )
    return entries


def _find_subscribe(messages: list[dict[str, Any]]) -> tuple[bytes, int]:
    request_ids = {m.get("id") for m in messages if m.get("method") == "mining.subscribe"}
    for m in messages:
        result = m.get("result")
        if m.get("method") is None and isinstance(result, list) and len(result) >= 3:
            if request_ids and m.get("id") not in request_ids:
                continue
            return _extranonce(result[1], result[2], "mining.subscribe reply")
    raise ValueError("no mining.subscribe reply (result [subscriptions, extranonce1, extranonce2_size]) in the capture")


def _extranonce(extranonce1_hex: Any, size: Any, what: str) -> tuple[bytes, int]:
    """extranonce1 and extranonce2_size as a subscribe reply or mining.set_extranonce gives them, checked."""
    try:
        extranonce1 = bytes.fromhex(extranonce1_hex)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: extranonce1 must be hex digits, got {_shown(extranonce1_hex)}") from None
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_EXTRANONCE2_SIZE:
        raise ValueError(
            f"{what}: extranonce2_size must be a whole number of bytes from 0 to {MAX_EXTRANONCE2_SIZE}, "
            f"got {_shown(size)}"
        )
    return extranonce1, size


def _shown(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, bytes) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _share_difficulty(params: list[Any]) -> float:
    value = params[0] if params else None
    number = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an integer past any double
            number = None
    if number is None or not math.isfinite(number) or number <= 0:
        raise ValueError(f"mining.set_difficulty: expected a positive number, got {_shown(value)}")
    return number


def _coinbase_height(coinbase: bytes) -> int | None:
    """The BIP 34 height at the start of a coinbase scriptSig, when there is one."""
    try:
        pos = 4 + 1 + 36  # version, one input, null prevout
        script_len = coinbase[pos]
        script = coinbase[pos + 1 : pos + 1 + script_len]
        n = script[0]
        if n == 0:  # OP_0
            return 0
        if 0x51 <= n <= 0x60:  # OP_1..OP_16
            return n - 0x50
        if 1 <= n <= 8:
            return int.from_bytes(script[1 : 1 + n], "little")
    except IndexError:
        return None
    return None


def _hex_int(value: Any, what: str) -> int:
    try:
        return int(str(value), 16) & 0xFFFFFFFF
    except ValueError:
        raise ValueError(f"{what}: {value!r} is not hex") from None


def merkle_climb(start_internal: bytes, branches_internal: list[bytes]) -> list[dict[str, str]]:
    """Each step: the running hash, the branch on its right, their sha256d."""
    steps = []
    h = start_internal
    for branch in branches_internal:
        nxt = sha256d(h + branch)
        steps.append({"left_hex": h.hex(), "branch_hex": branch.hex(), "result_hex": nxt.hex()})
        h = nxt
    return steps


def explain_job(
    messages: list[dict[str, Any]],
    extranonce2: bytes | None = None,
    nonce: int | None = None,
    job_id: str | None = None,
    version_bits: int | None = None,
) -> dict[str, Any]:
    """From a captured subscribe reply + mining.notify (+ set_difficulty) to a mining.submit.

    Version rolling (BIP 310) is shown when the capture has a mask (a mining.configure reply or
    mining.set_version_mask) and version bits are given or were submitted.
    """
    extranonce1, en2_size = _find_subscribe(messages)
    difficulty = 1.0
    notify = None
    job_difficulty = 1.0
    submit = None
    worker = None
    mask: int | None = None
    for m in messages:
        method = m.get("method")
        params = m.get("params") or []
        if method == "mining.set_difficulty":
            difficulty = _share_difficulty(params)
        elif method == "mining.notify":
            if job_id is None or (params and str(params[0]) == job_id):
                notify, job_difficulty = m, difficulty
        elif method == "mining.authorize" and params:
            worker = str(params[0])
        elif method == "mining.submit" and len(params) >= 5:
            submit = params
        elif method == "mining.set_version_mask" and params:
            mask = _hex_int(params[0], "mining.set_version_mask")
        elif method is None and isinstance(m.get("result"), dict) and "version-rolling.mask" in m["result"]:
            mask = _hex_int(m["result"]["version-rolling.mask"], "mining.configure reply")
    if notify is None:
        raise ValueError("no mining.notify in the capture" + (f" for job {job_id}" if job_id else ""))
    job = StratumJob.from_params(notify.get("params"))

    from_submit = submit is not None and str(submit[1]) == job.job_id
    if extranonce2 is None and from_submit:
        extranonce2 = _submit_hex(submit[2], "mining.submit extranonce2")
    ntime = None
    if nonce is None and from_submit:
        nonce = _hex_int(submit[4], "mining.submit nonce")
        ntime = _hex_int(submit[3], "mining.submit ntime")
    worker = worker or (str(submit[0]) if submit else "worker")
    if version_bits is None and from_submit and len(submit) >= 6:
        version_bits = _hex_int(submit[5], "mining.submit version bits")
    return walk_job(job, extranonce1, en2_size, job_difficulty, mask, worker, extranonce2, ntime, nonce, version_bits)


def _submit_hex(value: Any, what: str) -> bytes:
    try:
        return bytes.fromhex(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: {_shown(value)} is not hex") from None


def walk_job(
    job: StratumJob,
    extranonce1: bytes,
    extranonce2_size: int,
    difficulty: float,
    mask: int | None = None,
    worker: str = "worker",
    extranonce2: bytes | None = None,
    ntime: int | None = None,
    nonce: int | None = None,
    version_bits: int | None = None,
) -> dict[str, Any]:
    """One job and one choice of extranonce2, ntime, nonce and version bits, walked to its header and submit.

    Defaults are the job's own: zero extranonce2 and nonce, the job's ntime and version.
    """
    en2_size = extranonce2_size
    job_difficulty = difficulty
    network_target = decode_bits(job.nbits_int, "mining.notify nbits")
    if extranonce2 is None:
        extranonce2 = bytes(en2_size)
    if len(extranonce2) != en2_size:
        raise ValueError(f"extranonce2 must be {en2_size} bytes ({2 * en2_size} hex digits), got {len(extranonce2)}")
    ntime = job.ntime_int if ntime is None else ntime
    nonce = 0 if nonce is None else nonce
    version = job.version_int
    rolling = None
    if version_bits is not None:
        if mask is None:
            raise ValueError("version bits need a version-rolling mask (mining.configure or set_version_mask)")
        version = roll_version(job.version_int, mask, version_bits)
        rolling = {"mask": f"{mask:08x}", "job_version": f"{job.version_int:08x}", "version": f"{version:08x}",
                   "version_bits": f"{version & mask:08x}"}  # fmt: skip

    coinbase = coinbase_bytes(job, extranonce1, extranonce2)
    coinbase_hash = sha256d(coinbase)
    branches = [bytes.fromhex(b) for b in job.merkle_branch]
    climb = merkle_climb(coinbase_hash, branches)
    root = job_merkle_root(job, extranonce1, extranonce2)
    header80 = job_header(job, extranonce1, extranonce2, ntime=ntime, version=version, nonce=nonce)
    digest = sha256d(header80)
    value = hash_to_int(digest)
    share_target = difficulty_to_target(job_difficulty)
    prev_internal = swap_words(bytes.fromhex(job.prevhash))
    return {
        "job_id": job.job_id,
        "extranonce1_hex": extranonce1.hex(),
        "extranonce2_size": en2_size,
        "extranonce2_hex": extranonce2.hex(),
        "coinbase": {
            "coinb1_hex": job.coinb1,
            "extranonce1_hex": extranonce1.hex(),
            "extranonce2_hex": extranonce2.hex(),
            "coinb2_hex": job.coinb2,
            "tx_hex": coinbase.hex(),
            "bip34_height": _coinbase_height(coinbase),
            "txid_internal_hex": coinbase_hash.hex(),
            "txid_display_hex": hash_to_display_hex(coinbase_hash),
        },
        "merkle": {"steps": climb, "root_internal_hex": root.hex(), "root_display_hex": hash_to_display_hex(root)},
        "prevhash": {
            "stratum_hex": job.prevhash,
            "internal_hex": prev_internal.hex(),
            "display_hex": hash_to_display_hex(prev_internal),
            "note": "Stratum sends prevhash with the bytes of each 4-byte word reversed; swapping them back gives "
            "the header's bytes",
        },
        "version_rolling": rolling,
        "header": {"header_hex": header80.hex(), "fields": header_fields(header80)},
        "hash_internal_hex": digest.hex(),
        "hash_display_hex": hash_to_display_hex(digest),
        "share": {
            **share_target_steps(job_difficulty),
            "meets_share_target": value <= share_target,
            "hash_difficulty": DIFF1_TARGET / value if value else math.inf,
        },
        "network": {
            **target_from_bits(job.nbits_int, "mining.notify nbits"),
            "meets_network_target": value <= network_target,
        },
        "submit": {
            "method": "mining.submit",
            "params": [worker, job.job_id, extranonce2.hex(), f"{ntime:08x}", f"{nonce:08x}"]
            + ([rolling["version_bits"]] if rolling else []),
            "note": "ntime and nonce are sent as big-endian hex of the number, not the header's little-endian bytes",
        },
    }


@dataclass
class CapturedShare:
    """One mining.submit of a capture, with what the miner knew when it sent it and the pool's verdict."""

    index: int  # its place among the capture's submits, from 1
    submit: WireMessage
    notify: WireMessage | None  # the newest mining.notify for its job before it; None if the capture has none
    difficulty: float  # the share difficulty in force when that notify arrived
    extranonce: tuple[bytes, int] | None  # extranonce1 and extranonce2_size of the session it was sent in
    mask: int | None  # the version-rolling mask, if the pool granted one
    reply: WireMessage | None = None  # the pool's answer to it; None if the capture ends (or the connection did)

    @property
    def params(self) -> list[Any]:
        return self.submit.message["params"]  # type: ignore[index]

    @property
    def job_id(self) -> str:
        return str(self.params[1])

    @property
    def verdict(self) -> dict[str, Any]:
        """accepted, or the pool's error code and message, and whether the error says the job was stale."""
        if self.reply is None:
            return {"answered": False, "accepted": False, "code": None, "message": "", "stale": False, "reply": None}
        m = self.reply.message or {}
        accepted = m.get("result") is True and m.get("error") is None
        code, message = (None, "") if accepted else parse_error(m.get("error"))
        return {
            "answered": True,
            "accepted": accepted,
            "code": code,
            "message": message,
            "stale": code == ERR_JOB_NOT_FOUND,
            "reply": self.reply.line if self.reply.line is not None else json.dumps(m),
        }


def _restarts(request_id: Any, last_id: Any) -> bool:
    """Whether a client's configure or subscribe opens a new connection: request ids count up within one."""
    return isinstance(request_id, int) and isinstance(last_id, int) and request_id <= last_id


def capture_shares(entries: list[WireMessage]) -> list[CapturedShare]:
    """Every mining.submit in a capture, in order, each with its job, session and verdict.

    The capture is read as the miner lived it: a subscribe reply (or mining.set_extranonce) sets the
    extranonce for what follows, a set_difficulty applies from the next notify, a submit names the newest
    notify of its job, and its reply is the next answer with its id on the same connection.
    """
    shares: list[CapturedShare] = []
    extranonce: tuple[bytes, int] | None = None
    difficulty = 1.0
    mask: int | None = None
    jobs: dict[str, tuple[WireMessage, float]] = {}
    subscribe_ids: set[Any] = set()
    pending: dict[Any, CapturedShare] = {}
    last_id: Any = None
    for entry in entries:
        m = entry.message
        if m is None:
            continue
        method = m.get("method")
        params = m.get("params") if isinstance(m.get("params"), list) else []
        request_id = m.get("id")
        if entry.direction == "out":
            if method in ("mining.configure", "mining.subscribe") and _restarts(request_id, last_id):
                pending.clear()  # a new connection: the old one's unanswered submits stay unanswered
                subscribe_ids.clear()
            if isinstance(request_id, int):
                last_id = request_id
            if method == "mining.subscribe":
                subscribe_ids.add(request_id)
            elif method == "mining.submit" and len(params) >= 5:
                job = jobs.get(str(params[1]))
                share = CapturedShare(
                    len(shares) + 1,
                    entry,
                    job[0] if job else None,
                    job[1] if job else difficulty,
                    extranonce,
                    mask,
                )
                shares.append(share)
                pending[request_id] = share
            continue
        result = m.get("result")
        if method is None:
            if request_id in pending:
                pending.pop(request_id).reply = entry
            elif isinstance(result, list) and len(result) >= 3 and (not subscribe_ids or request_id in subscribe_ids):
                extranonce = _extranonce(result[1], result[2], "mining.subscribe reply")
            elif isinstance(result, dict) and "version-rolling.mask" in result:
                mask = _hex_int(result["version-rolling.mask"], "mining.configure reply")
        elif method == "mining.set_difficulty":
            difficulty = _share_difficulty(params)
        elif method == "mining.notify" and params:
            jobs[str(params[0])] = (entry, difficulty)
        elif method == "mining.set_extranonce" and len(params) >= 2:
            extranonce = _extranonce(params[0], params[1], "mining.set_extranonce")
        elif method == "mining.set_version_mask" and params:
            mask = _hex_int(params[0], "mining.set_version_mask")
    return shares


def choose_share(shares: list[CapturedShare], number: int | None = None) -> CapturedShare:
    """The ``number``-th submit (from 1); by default the last share the pool accepted, else the last submit."""
    if not shares:
        raise ValueError("no share in the capture (it holds no mining.submit)")
    if number is not None:
        if not 1 <= number <= len(shares):
            many = "1 submit" if len(shares) == 1 else f"{len(shares)} submits"
            raise ValueError(f"there is no share {number}: the capture holds {many} (1..{len(shares)})")
        return shares[number - 1]
    accepted = [s for s in shares if s.verdict["accepted"]]
    return accepted[-1] if accepted else shares[-1]


def explain_share(share: CapturedShare, total: int | None = None) -> dict[str, Any]:
    """A captured share walked from its job to its header and hash, ending with the pool's verdict.

    A share for a job the capture never saw (a wrong or old job id) has no header to rebuild: the walk
    then holds the submit and the verdict only, with ``header`` None.
    """
    params = share.params
    data: dict[str, Any]
    if share.notify is None:
        data = {
            "job_id": share.job_id,
            "header": None,
            "missing": f"the capture holds no mining.notify for job {share.job_id}, so there is no header to rebuild",
            "submit": {"method": "mining.submit", "params": params},
        }
    else:
        if share.extranonce is None:
            raise ValueError(f"share {share.index}: no mining.subscribe reply before it in the capture")
        job = StratumJob.from_params(share.notify.message["params"])  # type: ignore[index]
        version_bits = _hex_int(params[5], "mining.submit version bits") if len(params) >= 6 else None
        data = walk_job(
            job,
            share.extranonce[0],
            share.extranonce[1],
            share.difficulty,
            share.mask,
            str(params[0]),
            _submit_hex(params[2], "mining.submit extranonce2"),
            _hex_int(params[3], "mining.submit ntime"),
            _hex_int(params[4], "mining.submit nonce"),
            version_bits,
        )
    data["submit"]["id"] = share.submit.message.get("id")  # type: ignore[union-attr]
    data["submit"]["line"] = share.submit.line
    data["submit"]["time"] = share.submit.time
    data["verdict"] = {**share.verdict, "share": share.index, "shares": total}
    return data


def explain_capture(entries: list[WireMessage], share: int | None = None) -> dict[str, Any]:
    """The walk of one captured share: the ``share``-th submit, or by default the last one accepted."""
    shares = capture_shares(entries)
    return explain_share(choose_share(shares, share), len(shares))


def double_target(difficulty: float) -> int:
    """The target as ckpool computes it (``target_from_diff`` in libckpool.c), here for comparison.

    It divides the diff-1 target by the difficulty in double arithmetic, then cuts the quotient into
    four 64-bit words from the top, each truncated: the target keeps the 53 significant bits of one
    double (cgminer's ``set_target`` does the same).
    """
    d64 = float(DIFF1_TARGET) / difficulty
    if not d64 < 2.0**256:  # past the top word (ckpool's conversion would overflow): every hash meets it
        return MAX_TARGET
    target = 0
    for shift in (192, 128, 64):
        word = int(d64 / 2.0**shift)
        target |= word << shift
        d64 -= float(word) * 2.0**shift
    target += int(d64)
    return min(target, MAX_TARGET)


def share_target_steps(difficulty: float) -> dict[str, Any]:
    """From a ``mining.set_difficulty`` number to the 256-bit share target, one rounding at a time.

    JSON numbers are decimal, and a Stratum client reads one as the nearest binary double, so 0.001
    becomes 0.001000000000000000020816...: the exact quotient for that double (what this miner and its
    pool use) differs a little from the target a person gets dividing by the decimal, and pools that
    divide in double arithmetic (ckpool) round it again, to 53 significant bits. The three agree to
    about one part in 10^16: one share in some 10^16 could meet one of them and not another.
    """
    exact = Decimal(difficulty)
    exact_text = format(exact, "f")
    shortest = Decimal(repr(difficulty))
    ours = difficulty_to_target(difficulty)
    decimal_target = min(int(Fraction(DIFF1_TARGET) / Fraction(shortest)), MAX_TARGET)
    pool_target = double_target(difficulty)
    biggest = max(ours, decimal_target, pool_target)
    spread = (biggest - min(ours, decimal_target, pool_target)) / biggest if biggest else 0.0
    return {
        "difficulty": difficulty,
        "difficulty_decimal": repr(difficulty),
        "difficulty_double_hex": difficulty.hex(),
        "difficulty_double_exact": exact_text if len(exact_text) <= 80 else f"{exact:.40e}...",
        "double_is_exact": exact == shortest,
        "target_hex": _target_hex(ours),
        "target_decimal_hex": _target_hex(decimal_target),
        "target_double_hex": _target_hex(pool_target),
        "relative_spread": spread,
    }


# --- a getblocktemplate answer ---------------------------------------------------


def witness_commitment_script(wtxids_internal: list[bytes]) -> bytes:
    """BIP 141: OP_RETURN 0xaa21a9ed sha256d(witness root || 32 zero bytes); the coinbase wtxid counts as zero."""
    root = merkle_root([bytes(32)] + list(wtxids_internal))
    return bytes.fromhex("6a24aa21a9ed") + sha256d(root + bytes(32))


def explain_template(
    template: dict[str, Any], payout_script: bytes, extranonce: bytes = bytes(8), nonce: int = 0
) -> dict[str, Any]:
    """From a getblocktemplate answer to a header and block, as solo mining builds them."""
    from miner.coinbase import add_coinbase_witness, bip34_height_push, build_coinbase, coinbase_txid
    from miner.gbt import read_template

    t = read_template(template)  # TemplateError (a ValueError) naming the field and what it should hold
    height, value, bits, version, ntime = t.height, t.coinbase_value, t.bits, t.version, t.curtime
    txids, wtxids, raw_txs = t.txids_internal, t.wtxids_internal, t.transactions
    given_commitment = t.witness_commitment.hex() if t.witness_commitment is not None else None
    computed_commitment = witness_commitment_script(wtxids)
    commitment = t.witness_commitment
    parts = build_coinbase(height, value, payout_script, extranonce_size=len(extranonce),
                           witness_commitment_script=commitment)  # fmt: skip
    coinbase = parts.coinb1 + extranonce + parts.coinb2
    cb_txid = coinbase_txid(coinbase)
    leaves = [cb_txid] + txids
    levels = [[h.hex() for h in leaves]]
    level = list(leaves)
    while len(level) > 1:
        if len(level) % 2:
            level.append(level[-1])
        level = [sha256d(level[i] + level[i + 1]) for i in range(0, len(level), 2)]
        levels.append([h.hex() for h in level])
    root = level[0]
    if root != merkle_root(leaves):
        raise AssertionError("merkle tree disagrees with miner.block.merkle_root")
    header = BlockHeader(version, t.prev_block_internal, root, ntime, bits, nonce).serialize()
    digest = sha256d(header)
    target = nbits_to_target(bits)
    block_coinbase = add_coinbase_witness(coinbase) if commitment else coinbase
    return {
        "height": height,
        "coinbase": {
            "height_push_hex": bip34_height_push(height).hex(),
            "value_sats": value,
            "payout_script_hex": payout_script.hex(),
            "extranonce_hex": extranonce.hex(),
            "coinb1_hex": parts.coinb1.hex(),
            "coinb2_hex": parts.coinb2.hex(),
            "tx_hex": coinbase.hex(),
            "txid_display_hex": hash_to_display_hex(cb_txid),
            "block_serialisation_hex": block_coinbase.hex(),
        },
        "witness_commitment": {
            "template_hex": given_commitment,
            "computed_hex": computed_commitment.hex(),
            "matches": given_commitment is None or computed_commitment.hex() == given_commitment,
        },
        "transactions": len(raw_txs),
        "merkle": {"levels_internal_hex": levels, "root_display_hex": hash_to_display_hex(root)},
        "header": {"header_hex": header.hex(), "fields": header_fields(header)},
        "hash_display_hex": hash_to_display_hex(digest),
        "target": {**target_from_bits(bits), "template_target_hex": t.target_hex},
        "meets_target": hash_to_int(digest) <= target,
        "block_bytes": len(header)
        + len(ser_compact_size(len(raw_txs) + 1))
        + len(block_coinbase)
        + sum(map(len, raw_txs)),
    }


# --- odds and economics ---------------------------------------------------------

_SI = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12, "p": 1e15, "e": 1e18}
_NUMBER = r"([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)"
_RATE_RE = re.compile(_NUMBER + r"\s*([kKmMgGtTpPeE]?)\s*(?:[hH](?:/s)?)?")
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365.25 * 86400}
_DURATION_RE = re.compile(_NUMBER + r"\s*(s|min|m|h|d|w|y|)")


def parse_hashrate(text: str) -> float:
    """'12.5M', '3 TH/s', '1e9' -> hashes per second (k, M, G, T, P, E are powers of 1000)."""
    match = _RATE_RE.fullmatch(text.strip())
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"bad hash rate {text!r}: use a positive number with an optional k, M, G, T, P or E")
    return float(match.group(1)) * _SI[match.group(2).lower()]


def parse_amount(text: str) -> float:
    """A positive number with an optional SI suffix ('110T'), or a fraction ('1/65536')."""
    if "/" in text:
        numerator, _, denominator = text.partition("/")
        return parse_amount(numerator) / parse_amount(denominator)
    match = re.fullmatch(_NUMBER + r"\s*([kKmMgGtTpPeE]?)", text.strip())
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"bad number {text!r}: use a positive number with an optional k, M, G, T, P or E")
    return float(match.group(1)) * _SI[match.group(2).lower()]


def parse_duration(text: str) -> float:
    """'90', '10m', '6h', '2d', '1w', '1y' -> seconds."""
    match = _DURATION_RE.fullmatch(text.strip().lower())
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"bad duration {text!r}: use a number with s, m, h, d, w or y")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "forever"
    value, unit = seconds, "second"
    for name, size in (("year", 365.25 * 86400), ("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            value, unit = seconds / size, name
            break
    text = f"{value:.3g}"
    return f"{text} {unit}" if text == "1" else f"{text} {unit}s"


def format_rate(rate: float) -> str:
    for suffix, size in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if rate >= size:
            return f"{rate / size:.4g} {suffix}H/s"
    return f"{rate:.4g} H/s"


DEFAULT_WITHIN = (60.0, 3600.0, 86400.0, 7 * 86400.0, 30 * 86400.0, 365.25 * 86400.0)


def chance_text(probability: float, miss_probability: float, expected_finds: float) -> str:
    """A Poisson chance 1 - e^-lambda as a percentage that is never "100 %": no such chance is certain.

    Six significant digits where they fall short of 100; enough decimals to show the shortfall
    where it is at least 1e-12 %; beyond that, the exact form 1 - e^-lambda.
    """
    text = f"{100 * probability:.6g}"
    if text != "100":
        return f"{text} %"
    miss = 100 * miss_probability
    if miss >= 1e-12:
        decimals = math.ceil(-math.log10(miss)) + 1
        return f"{100 - miss:.{decimals}f} %"
    return f"1 - e^-{expected_finds:.6g}"


def explain_odds(hashrate: float, difficulty: float, within: list[float] | None = None) -> dict[str, Any]:
    """Each hash is an independent draw that wins with p = 1 / (D * 2^32): a Poisson process.

    (Exactly, p = (target + 1) / 2^256 and D * 2^32 is off by the factor 0xffff/0x10000; the
    approximation is the one pools and calculators use.)
    """
    if hashrate <= 0 or difficulty <= 0:
        raise ValueError("hash rate and difficulty must be positive")
    expected_hashes = difficulty * TWO_32
    expected_seconds = expected_hashes / hashrate
    windows = [
        {"seconds": t, "text": format_duration(t), "expected_finds": t / expected_seconds,
         "probability": -math.expm1(-t / expected_seconds), "miss_probability": math.exp(-t / expected_seconds)}
        for t in (within or DEFAULT_WITHIN)
    ]  # fmt: skip
    quantiles = [
        {"probability": p, "seconds": -math.log1p(-p) * expected_seconds,
         "text": format_duration(-math.log1p(-p) * expected_seconds)}
        for p in (0.5, 0.9, 0.99)
    ]  # fmt: skip
    return {
        "hashrate": hashrate,
        "difficulty": difficulty,
        "expected_hashes": expected_hashes,
        "expected_seconds": expected_seconds,
        "expected_text": format_duration(expected_seconds),
        "within": windows,
        "time_for_probability": quantiles,
    }


DEFAULT_DIFFICULTY = 1.0e14
DEFAULT_REWARD_BTC = 3.125
DEFAULT_BTC_PRICE = 100_000.0
DIFFICULTY_RISES = (0.0, 0.1, 0.25, 0.5, 1.0)


def explain_economics(
    hashrate: float,
    power_watts: float,
    price_per_kwh: float,
    difficulty: float = DEFAULT_DIFFICULTY,
    reward_btc: float = DEFAULT_REWARD_BTC,
    btc_price: float = DEFAULT_BTC_PRICE,
) -> dict[str, Any]:
    """Expected revenue against electricity, per day, and how a difficulty rise moves the line."""
    if hashrate <= 0 or difficulty <= 0:
        raise ValueError("hash rate and difficulty must be positive")
    if power_watts < 0 or price_per_kwh < 0 or reward_btc < 0 or btc_price < 0:
        raise ValueError("power, price, reward and BTC price must not be negative")
    kwh_per_day = power_watts * 24 / 1000

    def day(diff: float) -> dict[str, float]:
        blocks = hashrate * SECONDS_PER_DAY / (diff * TWO_32)
        coins = blocks * reward_btc
        revenue = coins * btc_price
        cost = kwh_per_day * price_per_kwh
        return {
            "difficulty": diff,
            "blocks_per_day": blocks,
            "btc_per_day": coins,
            "revenue_per_day": revenue,
            "cost_per_day": cost,
            "profit_per_day": revenue - cost,
            "break_even_price_per_kwh": revenue / kwh_per_day if kwh_per_day else math.inf,
        }

    now = day(difficulty)
    return {
        "hashrate": hashrate,
        "power_watts": power_watts,
        "joules_per_terahash": power_watts / (hashrate / 1e12),
        "price_per_kwh": price_per_kwh,
        "kwh_per_day": kwh_per_day,
        "reward_btc": reward_btc,
        "btc_price": btc_price,
        **now,
        "difficulty_rises": [{"rise": r, **day(difficulty * (1 + r))} for r in DIFFICULTY_RISES],
    }
