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
from datetime import datetime, timezone
from typing import Any

from kernels import reference
from miner.block import (
    DIFF1_TARGET,
    BlockHeader,
    bits_to_difficulty,
    difficulty_to_target,
    display_hex_to_internal,
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

TWO_32 = 1 << 32
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


def target_from_bits(bits: int) -> dict[str, Any]:
    exponent, mantissa = bits >> 24, bits & 0x007FFFFF
    target = nbits_to_target(bits)
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
    target = nbits_to_target(header.bits)
    return {
        "label": label,
        "header_hex": header80.hex(),
        "fields": header_fields(header80),
        "midstate": pass1["blocks"][0]["state_out"],
        "pass1": pass1,
        "pass2": pass2,
        "hash_internal_hex": digest.hex(),
        "hash_display_hex": hash_to_display_hex(digest),
        "target": target_from_bits(header.bits),
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
    """A capture: a JSON list of messages, {"messages": [...]}, or one JSON message per line."""
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
    return data


def _find_subscribe(messages: list[dict[str, Any]]) -> tuple[bytes, int]:
    request_ids = {m.get("id") for m in messages if m.get("method") == "mining.subscribe"}
    for m in messages:
        result = m.get("result")
        if m.get("method") is None and isinstance(result, list) and len(result) >= 3:
            if request_ids and m.get("id") not in request_ids:
                continue
            try:
                return bytes.fromhex(result[1]), int(result[2])
            except (TypeError, ValueError):
                raise ValueError("mining.subscribe reply: extranonce1 must be hex, extranonce2_size a number") from None
    raise ValueError("no mining.subscribe reply (result [subscriptions, extranonce1, extranonce2_size]) in the capture")


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
        if method == "mining.set_difficulty" and params:
            difficulty = float(params[0])
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
    if extranonce2 is None:
        extranonce2 = bytes.fromhex(submit[2]) if from_submit else bytes(en2_size)
    if len(extranonce2) != en2_size:
        raise ValueError(f"extranonce2 must be {en2_size} bytes ({2 * en2_size} hex digits), got {len(extranonce2)}")
    ntime = job.ntime_int
    if nonce is None:
        nonce = int(submit[4], 16) if from_submit else 0
        if from_submit:
            ntime = int(submit[3], 16)
    worker = worker or (str(submit[0]) if submit else "worker")
    if version_bits is None and from_submit and len(submit) >= 6:
        version_bits = _hex_int(submit[5], "mining.submit version bits")
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
    network_target = nbits_to_target(job.nbits_int)
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
            "difficulty": job_difficulty,
            "target_hex": _target_hex(share_target),
            "meets_share_target": value <= share_target,
            "hash_difficulty": DIFF1_TARGET / value if value else math.inf,
        },
        "network": {**target_from_bits(job.nbits_int), "meets_network_target": value <= network_target},
        "submit": {
            "method": "mining.submit",
            "params": [worker, job.job_id, extranonce2.hex(), f"{ntime:08x}", f"{nonce:08x}"]
            + ([rolling["version_bits"]] if rolling else []),
            "note": "ntime and nonce are sent as big-endian hex of the number, not the header's little-endian bytes",
        },
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

    try:
        height = int(template["height"])
        value = int(template["coinbasevalue"])
        bits = int(template["bits"], 16)
        version = int(template["version"])
        prev_display = str(template["previousblockhash"])
        ntime = int(template.get("curtime", template.get("mintime", 0)))
        txs = list(template.get("transactions", []))
        txids = [display_hex_to_internal(tx["txid"]) for tx in txs]
        wtxids = [display_hex_to_internal(tx.get("hash", tx["txid"])) for tx in txs]
        raw_txs = [bytes.fromhex(tx["data"]) for tx in txs]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a getblocktemplate answer: bad or missing {exc}") from None
    given_commitment = template.get("default_witness_commitment")
    computed_commitment = witness_commitment_script(wtxids)
    commitment = bytes.fromhex(given_commitment) if given_commitment else None
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
    header = BlockHeader(version, display_hex_to_internal(prev_display), root, ntime, bits, nonce).serialize()
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
        "transactions": len(txs),
        "merkle": {"levels_internal_hex": levels, "root_display_hex": hash_to_display_hex(root)},
        "header": {"header_hex": header.hex(), "fields": header_fields(header)},
        "hash_display_hex": hash_to_display_hex(digest),
        "target": {**target_from_bits(bits), "template_target_hex": template.get("target")},
        "meets_target": hash_to_int(digest) <= target,
        "block_bytes": len(header) + len(ser_compact_size(len(txs) + 1)) + len(block_coinbase) + sum(map(len, raw_txs)),
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
         "probability": -math.expm1(-t / expected_seconds)}
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
