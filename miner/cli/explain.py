"""``miner explain``: the steps of mining, printed for a person (or as --json).

The numbers come from :mod:`miner.teach` (the teaching API, over :mod:`miner.explain`); this module
only lays them out.
click strips the colours when output is piped, so the same text reads well in
a terminal and in a file, and none are made where ``NO_COLOR`` is set
(https://no-color.org), whatever the output is.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from typing import Any

import click

from miner import explain as ex
from miner import teach
from miner.cli.common import CliError, NonNegative, Positive


def _style(text: str, **styles: Any) -> str:
    """``click.style``, except where the user asked for no colour with a non-empty NO_COLOR."""
    if os.environ.get("NO_COLOR"):
        return text
    return click.style(text, **styles)


def _h(text: str) -> str:
    return _style(text, fg="cyan", bold=True)


def _hex(text: str) -> str:
    return _style(text, fg="yellow")


def _verdict(ok: bool, yes: str = "yes", no: str = "no") -> str:
    return _style(yes, fg="green", bold=True) if ok else _style(no, fg="red", bold=True)


def _dim(text: str) -> str:
    return _style(text, dim=True)


def _emit(data: dict[str, Any], as_json: bool, render: Callable[[dict[str, Any]], None]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, default=_json_default))
    else:
        render(data)


def _json_default(value: Any) -> Any:
    raise TypeError(f"cannot encode {type(value).__name__}")


def _num(value: float) -> str:
    if math.isinf(value):
        return "infinite"
    if value == 0 or 1e-3 <= abs(value) < 1e7:
        return f"{value:,.6g}"
    return f"{value:.4e}"


def _split(text: str, width: int = 64) -> list[str]:
    return [text[i : i + width] for i in range(0, len(text), width)] or [""]


def _state_line(words: list[str]) -> str:
    return " ".join(words)


def _parse(parser: Callable[[str], Any], value: str, name: str) -> Any:
    try:
        return parser(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=name) from None


json_option = click.option("--json", "as_json", is_flag=True, help="print the walk-through as JSON")


@click.group()
def explain() -> None:
    """Walk through mining step by step: headers, jobs, templates, odds, economics."""


# --- header --------------------------------------------------------------------


def _render_fields(fields: list[dict[str, Any]]) -> None:
    for f in fields:
        name = _h(f"{f['name']:<12}")
        click.echo(f"  {name}  bytes {f['offset']}..{f['offset'] + f['size'] - 1} ({f['size']} bytes)")
        click.echo(f"    reads   {f['value_text']}")
        click.echo(f"    hashed  {_hex(f['hashed_hex'])}")
        click.echo(f"    order   {_dim(f['order'])}")


def _render_pass(title: str, p: dict[str, Any]) -> None:
    click.echo(_h(title))
    click.echo(f"  input ({p['input_bytes']} bytes), padded to {len(p['padded_hex']) // 2} bytes: a 1 bit, zeros, "
               f"then the length in bits ({8 * p['input_bytes']}) as 64-bit big-endian")  # fmt: skip
    for i, block in enumerate(p["blocks"], 1):
        click.echo(f"  block {i}:")
        for line in _split(block["block_hex"]):
            click.echo(f"      {_hex(line)}")
        click.echo(f"    state in   {_state_line(block['state_in'])}")
        click.echo(f"    state out  {_state_line(block['state_out'])}")
    click.echo(f"  digest  {_hex(p['digest_hex'])}")


def _render_target(t: dict[str, Any]) -> None:
    click.echo(f"  nBits      0x{t['bits']}: exponent 0x{t['exponent']:02x}, mantissa 0x{t['mantissa']}")
    click.echo(f"  target   = {t['formula']}")
    click.echo(f"           = {_hex(t['target_hex'])}")
    click.echo(f"  difficulty = diff-1 target / target = {_num(t['difficulty'])}")


def _render_rounds(r: dict[str, Any]) -> None:
    names = {1: "first pass, block 1 (header bytes 0..63)", 2: "first pass, block 2 (bytes 64..79 + padding)",
             3: "second pass (over the first digest)"}  # fmt: skip
    click.echo(_h(f"Compression {r['compression']}: {names[r['compression']]}"))
    click.echo("  block:")
    for line in _split(r["block_hex"]):
        click.echo(f"      {_hex(line)}")
    click.echo("  message schedule W[0..63] (W[0..15] are the block's words, big-endian; then")
    click.echo("  W[t] = s1(W[t-2]) + W[t-7] + s0(W[t-15]) + W[t-16])")
    for i in range(0, 64, 8):
        click.echo(f"    W[{i:2d}..{i + 7:2d}]  " + " ".join(r["schedule"][i : i + 8]))
    click.echo(f"  initial    a..h = {_state_line(r['initial_state'])}")
    click.echo(("   t   K[t]     W[t]     " + "".join(f"{n:<9}" for n in "abcdefgh")).rstrip())
    for rd in r["rounds"]:
        click.echo(f"  {rd['t']:2d}   {rd['k']} {rd['w']} " + " ".join(rd["state"]))
    click.echo(f"  + initial state (Davies-Meyer feed-forward) = {_hex(_state_line(r['output_state']))}")


def _render_header(d: dict[str, Any]) -> None:
    title = d["label"] or "block header"
    click.echo(_h(f"Block header: {title}"))
    for line in _split(d["header_hex"], 80):
        click.echo(f"  {_hex(line)}")
    click.echo()
    click.echo(_h("1. The 80 bytes, field by field"))
    _render_fields(d["fields"])
    click.echo()
    click.echo(_h("2. Midstate"))
    click.echo("  SHA-256 state after the first 64 bytes (version, prev_block, 28 bytes of merkle root).")
    click.echo("  The nonce lives in the last 16 bytes, so a miner computes this once per header template.")
    click.echo(f"  {_hex(_state_line(d['midstate']))}")
    click.echo()
    _render_pass("3. First SHA-256 pass (over the 80 header bytes)", d["pass1"])
    click.echo()
    _render_pass("4. Second SHA-256 pass (over the 32-byte first digest)", d["pass2"])
    click.echo()
    click.echo(_h("5. The block hash"))
    click.echo(f"  as hashed (internal order)  {d['hash_internal_hex']}")
    click.echo(f"  display order (reversed)    {_hex(d['hash_display_hex'])}")
    click.echo()
    click.echo(_h("6. The target, from nBits"))
    _render_target(d["target"])
    click.echo()
    c = d["comparison"]
    click.echo(_h("7. The comparison"))
    click.echo("  the digest, read as a little-endian number, must be at most the target:")
    click.echo(f"    hash   {_hex(c['hash_int_hex'])}  ({c['hash_leading_zero_bits']} leading zero bits)")
    click.echo(f"    target {c['target_hex']}  ({d['target']['target_leading_zero_bits']} leading zero bits)")
    click.echo(f"  hash <= target: {_verdict(c['valid'], 'yes, a valid block', 'no, not a valid block')}")
    click.echo(f"  this hash alone would meet difficulty {_num(c['hash_difficulty'])}")
    if "rounds" in d:
        click.echo()
        _render_rounds(d["rounds"])


@explain.command("header")
@click.argument("spec", metavar="(" + " | ".join([*ex.NAMED_HEADERS, "HEADER_HEX"]) + ")")
@click.option("--rounds", is_flag=True, help="also print the 64 rounds of one compression and its message schedule")
@click.option("--compression", type=click.IntRange(1, 3), default=1, show_default=True,
              help="which compression --rounds traces: 1, 2 = first pass's blocks, 3 = second pass")  # fmt: skip
@json_option
def header_cmd(spec: str, rounds: bool, compression: int, as_json: bool) -> None:
    """Hash a real block header by hand: fields, midstate, both passes, target, verdict.

    SPEC is a name (genesis, 125552, testnet-genesis, regtest-genesis) or 160 hex digits.
    """
    try:
        label, header80 = ex.resolve_header(spec)
        data = teach.explain_header(header80, label)
    except ValueError as exc:  # not 80 bytes of hex, or nBits that encode no target
        raise CliError(str(exc), 2) from None
    if rounds:
        data["rounds"] = ex.trace_compression(header80, compression)
    _emit(data, as_json, _render_header)


# --- job -------------------------------------------------------------------------


def _render_job(d: dict[str, Any]) -> None:
    if d["header"] is None:  # a captured submit for a job the capture never saw
        click.echo(_h(f"A mining.submit for job {d['job_id']}"))
        click.echo(f"  {d['missing']}")
        click.echo(f"  sent  {_hex(d['submit']['line'] or json.dumps(_submit_message(d)))}")
        _render_verdict(d)
        return
    cb = d["coinbase"]
    click.echo(_h(f"Stratum job {d['job_id']}"))
    click.echo(f"  extranonce1 (from mining.subscribe)  {cb['extranonce1_hex']}")
    click.echo(f"  extranonce2 (ours, {d['extranonce2_size']} bytes)         {cb['extranonce2_hex']}")
    click.echo()
    click.echo(_h("1. The coinbase transaction = coinb1 + extranonce1 + extranonce2 + coinb2"))
    click.echo(f"  coinb1       {cb['coinb1_hex']}")
    click.echo(f"  extranonce1  {_hex(cb['extranonce1_hex'])}")
    click.echo(f"  extranonce2  {_hex(cb['extranonce2_hex'])}")
    click.echo(f"  coinb2       {cb['coinb2_hex']}")
    if cb["bip34_height"] is not None:
        click.echo(f"  block height in the scriptSig (BIP 34): {cb['bip34_height']}")
    click.echo(f"  txid = sha256d(coinbase)  internal {cb['txid_internal_hex']}")
    click.echo(f"                            display  {cb['txid_display_hex']}")
    click.echo()
    m = d["merkle"]
    click.echo(_h("2. Up the merkle branches to the root (the coinbase is leftmost: hash = sha256d(hash + branch))"))
    if not m["steps"]:
        click.echo("  no branches: the coinbase is the only transaction, its txid is the root")
    for i, step in enumerate(m["steps"], 1):
        click.echo(f"  step {i}: sha256d({step['left_hex'][:16]}... + {step['branch_hex'][:16]}...)")
        click.echo(f"          = {step['result_hex']}")
    click.echo(f"  merkle root  internal {_hex(m['root_internal_hex'])}")
    click.echo(f"               display  {m['root_display_hex']}")
    click.echo()
    p = d["prevhash"]
    click.echo(_h("3. The previous block hash, word-swapped"))
    click.echo(f"  as Stratum sends it   {p['stratum_hex']}")
    click.echo(f"  each 4-byte word flipped -> header bytes {_hex(p['internal_hex'])}")
    click.echo(f"  display order         {p['display_hex']}")
    click.echo(f"  {_dim(p['note'])}")
    click.echo()
    r = d["version_rolling"]
    if r:
        click.echo(_h("3b. Version rolling (BIP 310)"))
        click.echo(f"  job version {r['job_version']}, pool's mask {r['mask']}: only the masked bits may change")
        click.echo(f"  version = (job version & ~mask) | (bits & mask) = {_hex(r['version'])}")
        click.echo(f"  sent as the 6th mining.submit param: {r['version_bits']}")
        click.echo()
    click.echo(_h("4. The finished header"))
    for line in _split(d["header"]["header_hex"], 80):
        click.echo(f"  {_hex(line)}")
    _render_fields(d["header"]["fields"])
    click.echo(f"  hash (display order)  {_hex(d['hash_display_hex'])}")
    click.echo()
    s = d["share"]
    click.echo(_h("5. The share target, from mining.set_difficulty"))
    _render_share_target(s)
    click.echo(f"  meets the share target:   {_verdict(s['meets_share_target'])}"
               f" (this hash meets difficulty {_num(s['hash_difficulty'])})")  # fmt: skip
    n = d["network"]
    click.echo(f"  network target (nBits 0x{n['bits']}) {n['target_hex']}")
    click.echo(f"  meets the network target: {_verdict(n['meets_network_target'], 'yes, a block', 'no')}")
    click.echo()
    click.echo(_h("6. The mining.submit for this nonce"))
    click.echo(f"  {_hex(json.dumps(_submit_message(d)))}")
    click.echo(
        "  params: worker, job id, extranonce2, ntime, nonce" + (", version bits" if d["version_rolling"] else "")
    )
    click.echo(f"  {_dim(d['submit']['note'])}")
    _render_verdict(d)


def _submit_message(d: dict[str, Any]) -> dict[str, Any]:
    return {"id": d["submit"].get("id", 4), "method": d["submit"]["method"], "params": d["submit"]["params"]}


def _render_verdict(d: dict[str, Any]) -> None:
    """The pool's answer to a captured submit: the walk's last word."""
    v = d.get("verdict")
    if v is None:
        return
    click.echo()
    click.echo(_h(f"7. The pool's verdict (submit {v['share']} of {v['shares']} in this capture)"))
    if not v["answered"]:
        click.echo("  no reply in the capture: the connection, or the capture, ended before the pool answered")
        return
    click.echo(f"  reply  {v['reply']}")
    if v["accepted"]:
        click.echo(f"  {_verdict(True, 'accepted')}: the pool credits the share's difficulty as work done")
        return
    code = f"error {v['code']}" if v["code"] is not None else "no error code"
    click.echo(f"  {_verdict(False, no='rejected')}: {code}, {json.dumps(v['message'])}")
    if v["stale"]:
        click.echo("  stale: yes (error 21: the pool does not, or no longer, hold that job)")
    else:
        click.echo("  stale: no")


def _render_share_target(s: dict[str, Any]) -> None:
    if s["double_is_exact"] and s["target_hex"] == s["target_decimal_hex"] == s["target_double_hex"]:
        click.echo(f"  share difficulty {s['difficulty_decimal']} (exactly {s['difficulty_double_hex']} as a binary "
                   "double, so every way of dividing agrees)")  # fmt: skip
        click.echo("  target = diff-1 target / difficulty")
        click.echo(f"         = {_hex(s['target_hex'])}")
        return
    click.echo(f"  share difficulty {s['difficulty_decimal']}, the decimal in the pool's JSON, is read as the nearest "
               "binary double:")  # fmt: skip
    click.echo(f"    {s['difficulty_double_hex']} = {s['difficulty_double_exact']}")
    click.echo("  target = diff-1 target / difficulty, exact for that double, rounded down (this miner and its pool):")
    click.echo(f"         = {_hex(s['target_hex'])}")
    click.echo(f"  dividing by the decimal {s['difficulty_decimal']} instead gives")
    click.echo(f"           {s['target_decimal_hex']}")
    click.echo("  dividing in double arithmetic, 53 significant bits, as ckpool's target_from_diff does, gives")
    click.echo(f"           {s['target_double_hex']}")
    spread = s["relative_spread"]
    if spread > 0:
        click.echo(f"  they differ by {spread:.2g} of the target: about one share in {1 / spread:.2g} meets one "
                   "and not another")  # fmt: skip
    else:
        click.echo("  here all three agree")


@explain.command("job")
@click.argument("capture", type=click.Path(exists=True, dir_okay=False))
@click.option("--extranonce2", default=None, metavar="HEX", help="extranonce2 to use (default: the captured submit's, "
              "else zeros)")  # fmt: skip
@click.option("--nonce", default=None, metavar="N", help="nonce, decimal or 0x hex (default: the captured submit's, "
              "else 0)")  # fmt: skip
@click.option("--job-id", default=None, help="which mining.notify to use (default: the last one)")
@click.option(
    "--version-bits", default=None, metavar="HEX", help="rolled version bits (BIP 310), within the pool's mask"
)
@click.option(
    "--share",
    "share_number",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="walk the N-th mining.submit of the capture (default: the last share the pool accepted)",
)
@json_option
def job_cmd(
    capture: str,
    extranonce2: str | None,
    nonce: str | None,
    job_id: str | None,
    version_bits: str | None,
    share_number: int | None,
    as_json: bool,
) -> None:
    """From a captured mining.subscribe reply + mining.notify to a header, a mining.submit and its verdict.

    CAPTURE is what `miner mine --capture` wrote (JSON lines of time, direction and the message as on the
    wire), or a JSON list of Stratum messages (or one message per line). With no option, the walk is the
    last share the pool accepted and ends with its verdict; --share N walks the N-th submit instead.
    --job-id, --nonce, --extranonce2 and --version-bits walk a job with values of your own.
    """
    own_values = any(v is not None for v in (extranonce2, nonce, job_id, version_bits))
    if share_number is not None and own_values:
        raise CliError(
            "--share walks a captured submit as it was sent; --job-id, --nonce, --extranonce2 and --version-bits "
            "walk a job with values of your own: give one or the other",
            2,
        )
    en2 = None
    if extranonce2 is not None:
        en2 = _parse(bytes.fromhex, extranonce2, "--extranonce2")
    nonce_int = None
    if nonce is not None:
        nonce_int = _parse(lambda v: int(v, 0), nonce, "--nonce")
        if not 0 <= nonce_int < ex.TWO_32:
            raise click.BadParameter("a nonce is a 32-bit number", param_hint="--nonce")
    bits = None if version_bits is None else _parse(lambda v: int(v, 16) & 0xFFFFFFFF, version_bits, "--version-bits")
    try:
        entries = teach.read_capture(capture)
        shares = [] if own_values else teach.capture_shares(entries)
        recorded = any(e.line is not None for e in entries)  # the wire format: a share is what it is for
        if own_values or (not shares and not recorded):
            data = ex.explain_job([e.message for e in entries if e.message is not None], en2, nonce_int, job_id, bits)
        else:
            data = ex.explain_share(ex.choose_share(shares, share_number), len(shares))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CliError(f"{capture}: {exc}") from None
    _emit(data, as_json, _render_job)


# --- template ------------------------------------------------------------------------


def _render_template(d: dict[str, Any]) -> None:
    cb = d["coinbase"]
    click.echo(_h(f"Block template for height {d['height']} ({d['transactions']} transactions besides the coinbase)"))
    click.echo()
    click.echo(_h("1. The coinbase transaction"))
    click.echo(f"  BIP 34 height push  {_hex(cb['height_push_hex'])}  (first bytes of the scriptSig)")
    click.echo(f"  pays {cb['value_sats']} sats (subsidy + fees) to script {cb['payout_script_hex']}")
    click.echo(f"  coinb1      {cb['coinb1_hex']}")
    click.echo(f"  extranonce  {_hex(cb['extranonce_hex'])}")
    click.echo(f"  coinb2      {cb['coinb2_hex']}")
    click.echo(f"  txid (display)  {cb['txid_display_hex']}")
    click.echo()
    w = d["witness_commitment"]
    click.echo(_h("2. The witness commitment (BIP 141)"))
    if w["template_hex"] is None:
        click.echo("  the template has none (no segwit transactions), so the coinbase carries none")
    else:
        click.echo(f"  template's output script  {w['template_hex']}")
        click.echo(f"  recomputed from wtxids    {w['computed_hex']}")
        click.echo(f"  OP_RETURN aa21a9ed sha256d(witness merkle root + 32 zero bytes): "
                   f"{_verdict(w['matches'], 'matches', 'DIFFERS')}")  # fmt: skip
        click.echo("  the block's coinbase then carries a witness: the 32 zero bytes of the reserved value")
    click.echo()
    click.echo(_h("3. The merkle tree over all transactions (internal order, odd levels repeat their last hash)"))
    levels = d["merkle"]["levels_internal_hex"]
    for depth, level in enumerate(levels):
        label = "leaves" if depth == 0 else ("root" if depth == len(levels) - 1 else f"level {depth}")
        for i, h in enumerate(level):
            click.echo(f"  {label if i == 0 else '':<7} {h}")
    click.echo(f"  root (display)  {_hex(d['merkle']['root_display_hex'])}")
    click.echo()
    click.echo(_h("4. The header"))
    for line in _split(d["header"]["header_hex"], 80):
        click.echo(f"  {_hex(line)}")
    _render_fields(d["header"]["fields"])
    click.echo(f"  hash (display order)  {_hex(d['hash_display_hex'])}")
    click.echo()
    click.echo(_h("5. The target"))
    _render_target(d["target"])
    click.echo(f"  hash <= target: {_verdict(d['meets_target'], 'yes, submit the block', 'no, try another nonce')}")
    click.echo(f"  the block would be {d['block_bytes']} bytes")


@explain.command("template")
@click.argument("template_file", metavar="FILE", type=click.Path(exists=True, dir_okay=False))
@click.option("--address", default=None, help="payout address (default: OP_TRUE, anyone can spend)")
@click.option("--extranonce", default="0000000000000000", show_default=True, metavar="HEX",
              help="the bytes placed in the coinbase's extranonce gap")  # fmt: skip
@click.option("--nonce", default="0", show_default=True, metavar="N", help="header nonce (decimal or 0x hex)")
@json_option
def template_cmd(template_file: str, address: str | None, extranonce: str, nonce: str, as_json: bool) -> None:
    """From a getblocktemplate answer to a coinbase, merkle tree and header.

    FILE holds the template (the RPC "result", or the whole JSON-RPC reply).
    """
    en = _parse(bytes.fromhex, extranonce, "--extranonce")
    nonce_int = _parse(lambda v: int(v, 0), nonce, "--nonce")
    if not 0 <= nonce_int < ex.TWO_32:
        raise click.BadParameter("a nonce is a 32-bit number", param_hint="--nonce")
    try:
        from miner.coinbase import OP_TRUE_SCRIPT
    except ImportError:
        raise CliError("template walk-through needs miner/coinbase.py") from None
    payout = OP_TRUE_SCRIPT
    if address is not None:
        try:
            from miner.address import address_to_script

            payout = address_to_script(address)
        except ImportError:
            raise CliError("--address needs miner/address.py") from None
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--address") from None
    try:
        with open(template_file, encoding="utf-8") as fh:
            template = json.load(fh)
        if isinstance(template, dict) and ("result" in template or "error" in template):  # a whole JSON-RPC reply
            if template.get("error") is not None:
                raise ValueError(f"the node answered with an error, not a template: {_rpc_error(template['error'])}")
            template = template.get("result")
        if not isinstance(template, dict):
            raise ValueError("not a getblocktemplate answer (expected a JSON object)")
        data = teach.explain_template(template, payout, en, nonce_int)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CliError(f"{template_file}: {exc}") from None
    _emit(data, as_json, _render_template)


def _rpc_error(error: Any) -> str:
    """A JSON-RPC error object as the node wrote it: its message, then its code."""
    if isinstance(error, dict):
        message = str(error.get("message", "")).strip() or "(no message)"
        return f"{message} (code {error['code']})" if "code" in error else message
    return str(error)


# --- odds ----------------------------------------------------------------------------


def _render_odds(d: dict[str, Any]) -> None:
    click.echo(_h(f"Finding a hash of difficulty {_num(d['difficulty'])} at {ex.format_rate(d['hashrate'])}"))
    click.echo("  each hash wins with probability about 1 / (difficulty x 2^32), independently of all others")
    click.echo(f"  expected hashes  {_num(d['difficulty'])} x 2^32 = {_hex(_num(d['expected_hashes']))}")
    click.echo(f"  expected time    {_hex(d['expected_text'])} ({_num(d['expected_seconds'])} s)")
    click.echo()
    click.echo(_h("  Chance of at least one within (Poisson: 1 - exp(-t / expected time))"))
    for w in d["within"]:
        finds = _num(w["expected_finds"])
        chance = ex.chance_text(w["probability"], w["miss_probability"], w["expected_finds"])
        click.echo(f"    {w['text']:>16}  {chance:>12}   (expected finds {finds})")
    click.echo()
    click.echo(_h("  Time until the chance reaches"))
    for q in d["time_for_probability"]:
        click.echo(f"    {100 * q['probability']:>5.0f} %  {q['text']}")


MEASURE_SECONDS = 2.0


def _hashrate(text: str, threads: int | None) -> float:
    """A rate as given, or this machine's, measured with the cpu backend when RATE is 'measure'."""
    if text.strip().lower() != "measure":
        return _parse(ex.parse_hashrate, text, "--hashrate")
    from miner.cli.common import make_backend
    from miner.engine import default_threads
    from miner.throughput import engine_rate

    n = threads or default_threads()
    rate = engine_rate(make_backend("cpu"), n, MEASURE_SECONDS)["hashrate"]
    if not rate > 0:
        raise CliError("no hashes finished while measuring; give --hashrate as a number")
    click.echo(f"measured {ex.format_rate(rate)} with the cpu backend on {n} thread(s)", err=True)
    return rate


hashrate_option = click.option(
    "--hashrate",
    "-r",
    required=True,
    metavar="RATE",
    help="hashes per second, e.g. 2.5M, 110T; 'measure' for this machine",
)
threads_option = click.option(
    "--threads",
    "-t",
    type=click.IntRange(min=1),
    default=None,
    help="threads for --hashrate measure (and odds --measure; default: all cores)",
)


def _render_measured(d: dict[str, Any]) -> None:
    exponent = d["target_zero_bits"] - 32
    click.echo(_h(f"Measured: {d['hashes']:,} hashes of the genesis header in {d['seconds']:.2f} s on "
                  f"{d['threads']} {d['backend']} thread(s), {ex.format_rate(d['hashrate'])}"))  # fmt: skip
    click.echo(f"  share difficulty 2^{exponent} = {_num(d['difficulty'])}: a hit is a hash at most")
    click.echo(f"  {_hex(d['target_hex'])} ({d['target_zero_bits']} leading zero bits)")
    click.echo(f"  {d['hits']:,} hits, each a kernel candidate re-checked with hashlib "
               f"(hardware errors {d['hardware_errors']})")  # fmt: skip
    click.echo()
    click.echo(_h("  Hits with at least k leading zero bits, against N x 2^-k (N hashes, each bit halves the odds)"))
    click.echo(f"    {'k':>3}  {'hits':>8}  {'expected':>10}  {'sigma':>7}  {'z':>6}")
    for row in d["counts"]:
        click.echo(f"    {row['zero_bits']:>3}  {row['hits']:>8,}  {row['expected']:>10,.1f}  {row['sigma']:>7.1f}  "
                   f"{row['z']:>+6.2f}")  # fmt: skip
    click.echo()
    g = d["gaps"]
    click.echo(_h("  Gaps between successive hits, against the exponential law (mean 2^32 x D / hashrate)"))
    if g["ks_p_value"] is None:
        click.echo("    too few hits to compare their gaps: measure for longer")
        return
    click.echo(f"    mean gap   measured {g['mean_hashes']:,.0f} hashes ({1e3 * g['mean_seconds']:.4g} ms), "
               f"theory {g['mean_hashes_theory']:,.0f} hashes ({1e3 * g['mean_seconds_theory']:.4g} ms)")  # fmt: skip
    fits = "consistent with the law" if g["ks_p_value"] > 0.001 else "NOT what the law predicts"
    click.echo(f"    Kolmogorov-Smirnov D = {g['ks_statistic']:.4f} over {g['count']:,} gaps, p-value "
               f"{g['ks_p_value']:.3g} ({fits})")  # fmt: skip
    m = g["memoryless"]
    if m["mean_further_hashes"] is not None:
        click.echo(f"    memoryless: {m['longer_than_mean']:,} gaps outlasted the mean, and then went on for "
                   f"{m['mean_further_hashes']:,.0f} hashes more on average:")  # fmt: skip
        click.echo("    one mean again, as if nothing had been done: past work never brings the next hit closer")


def _measure(seconds: float, threads: int | None, plot: str | None, as_json: bool) -> None:
    if plot is not None:
        try:
            teach.require_matplotlib(headless=True)
        except teach.MissingExtra as exc:
            raise CliError(f"--plot: {exc}") from None
    try:
        from kernels import BackendUnavailable
    except ImportError as exc:  # pragma: no cover - the package ships kernels
        raise CliError(f"no kernel to measure with ({exc})") from None
    try:
        data = teach.measure_odds(seconds, threads)
    except BackendUnavailable as exc:
        raise CliError(f"cannot measure: {exc}") from None
    if plot is not None:
        try:
            teach.plot_odds(data, plot)
        except (OSError, ValueError) as exc:
            raise CliError(f"--plot: cannot write {plot}: {exc}") from None
        click.echo(f"plot written to {plot}", err=True)
    data = {k: v for k, v in data.items() if k != "nonces"}
    data["gaps"] = {k: v for k, v in data["gaps"].items() if k != "gaps"}
    _emit(data, as_json, _render_measured)


@explain.command("odds")
@click.option("--hashrate", "-r", default=None, metavar="RATE",
              help="hashes per second, e.g. 2.5M, 110T; 'measure' for this machine")  # fmt: skip
@threads_option
@click.option("--difficulty", "-d", default=None, metavar="D", help="share or network difficulty, e.g. 1, 110T")
@click.option("--within", "-w", multiple=True, metavar="DURATION", help="time window, e.g. 10m, 6h, 30d, 1y "
              "(repeatable)")  # fmt: skip
@click.option("--measure", type=Positive, default=None, metavar="SECONDS",
              help="run the real kernel this long and set its hits beside the odds")  # fmt: skip
@click.option("--plot", type=click.Path(dir_okay=False), default=None, metavar="FILE.png",
              help="with --measure: draw both panels to this file (needs the teach extra)")  # fmt: skip
@json_option
def odds_cmd(
    hashrate: str | None,
    threads: int | None,
    difficulty: str | None,
    within: tuple[str, ...],
    measure: float | None,
    plot: str | None,
    as_json: bool,
) -> None:
    """Expected hashes and time to find a share or block, and the chance within a time.

    With --measure SECONDS, the real kernel scans one fixed header for that long at a share difficulty
    low enough for thousands of hits, and the hits are set beside the theory: how many have at least k
    leading zero bits against N x 2^-k, and the gaps between them against the exponential law, with a
    Kolmogorov-Smirnov test.
    """
    if measure is not None:
        if hashrate is not None or difficulty is not None or within:
            raise CliError("--measure finds the rate and the difficulty itself: give it without --hashrate, "
                           "--difficulty or --within", 2)  # fmt: skip
        _measure(measure, threads, plot, as_json)
        return
    if plot is not None:
        raise CliError("--plot draws a measurement: give --measure SECONDS", 2)
    if hashrate is None or difficulty is None:
        raise click.UsageError("give --hashrate and --difficulty (or --measure SECONDS)")
    rate = _hashrate(hashrate, threads)
    diff = _parse(ex.parse_amount, difficulty, "--difficulty")
    windows = [_parse(ex.parse_duration, w, "--within") for w in within] or None
    _emit(teach.odds(rate, diff, windows), as_json, _render_odds)


# --- economics -------------------------------------------------------------------------


def _money(value: float) -> str:
    return f"{value:,.2f}" if abs(value) >= 0.01 or value == 0 else f"{value:.3g}"


def _render_economics(d: dict[str, Any]) -> None:
    click.echo(_h(f"Mining at {ex.format_rate(d['hashrate'])} drawing {d['power_watts']:g} W "
                  f"({_num(d['joules_per_terahash'])} J/TH)"))  # fmt: skip
    click.echo(f"  network difficulty {_num(d['difficulty'])}, block reward {d['reward_btc']:g} BTC, "
               f"BTC price {_money(d['btc_price'])}")  # fmt: skip
    click.echo()
    click.echo(_h("  Per day"))
    click.echo(f"    expected blocks   {_num(d['blocks_per_day'])}  (hashrate x 86400 / (difficulty x 2^32))")
    click.echo(f"    expected BTC      {_num(d['btc_per_day'])}")
    click.echo(f"    revenue           {_money(d['revenue_per_day'])}")
    click.echo(f"    electricity       {_money(d['cost_per_day'])}  ({d['kwh_per_day']:g} kWh at "
               f"{d['price_per_kwh']:g} per kWh)")  # fmt: skip
    profit = d["profit_per_day"]
    click.echo(f"    profit            {_verdict(profit >= 0, _money(profit), _money(profit))}")
    click.echo(f"  break-even power price: {_hex(_money(d['break_even_price_per_kwh']))} per kWh "
               "(run only where and when power is cheaper)")  # fmt: skip
    click.echo()
    click.echo(_h("  If difficulty rises (the same machine earns less)"))
    click.echo(f"    {'rise':>6}  {'difficulty':>12}  {'revenue/day':>14}  {'profit/day':>14}  {'break-even/kWh':>14}")
    for row in d["difficulty_rises"]:
        profit_text = f"{_money(row['profit_per_day']):>14}"
        click.echo(f"    {100 * row['rise']:>5.0f}%  {row['difficulty']:>12.4g}  {_money(row['revenue_per_day']):>14}  "
                   f"{_verdict(row['profit_per_day'] >= 0, profit_text, profit_text)}  "
                   f"{_money(row['break_even_price_per_kwh']):>14}")  # fmt: skip
    click.echo("  Expected values: a small miner finds a block rarely, so pools share rewards to smooth the luck.")


@explain.command("economics")
@hashrate_option
@threads_option
@click.option("--power", required=True, type=Positive, metavar="WATTS", help="power draw in watts")
@click.option("--price", required=True, type=NonNegative, metavar="PER_KWH", help="electricity price")
@click.option("--difficulty", "-d", default=f"{ex.DEFAULT_DIFFICULTY:g}", show_default=True, metavar="D",
              help="network difficulty")  # fmt: skip
@click.option("--reward", type=Positive, default=ex.DEFAULT_REWARD_BTC, show_default=True,
              metavar="BTC", help="block subsidy + typical fees")  # fmt: skip
@click.option("--btc-price", type=NonNegative, default=ex.DEFAULT_BTC_PRICE, show_default=True,
              metavar="USD", help="price of one BTC, in the currency of --price")  # fmt: skip
@json_option
def economics_cmd(hashrate: str, threads: int | None, power: float, price: float, difficulty: str, reward: float,
                  btc_price: float, as_json: bool) -> None:  # fmt: skip
    """Expected revenue against electricity cost per day, break-even power price, difficulty rises.

    The defaults for difficulty, reward and price are round illustrative numbers: pass today's.
    """
    rate = _hashrate(hashrate, threads)
    diff = _parse(ex.parse_amount, difficulty, "--difficulty")
    data = ex.explain_economics(rate, power, price, diff, reward, btc_price)
    _emit(data, as_json, _render_economics)


# --- sv2 -----------------------------------------------------------------------------


@explain.command("sv2")
@click.argument("capture", type=click.Path(exists=True, dir_okay=False))
@json_option
def sv2_cmd(capture: str, as_json: bool) -> None:
    """Walk a recorded Stratum V2 session: the handshake acts, the derived keys, each frame, the header.

    CAPTURE is JSON with the wire bytes and the client's ephemeral secret, as
    tests/data/sv2/esp-miner-client-session.json (a session recorded from ESP-Miner).
    """
    try:
        from stratum.v2.explain import CaptureError, walk
    except ImportError as exc:
        raise CliError(f"Stratum V2 is not available here ({exc})") from None
    try:
        with open(capture, encoding="utf-8") as fh:
            data = json.load(fh)
        if not isinstance(data, dict):
            raise CaptureError("a capture is a JSON object (wire, captured_at, the client's secret, the key)")
        lines = walk(data)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:  # CaptureError is a ValueError
        raise CliError(f"{capture}: {exc}") from None
    if as_json:
        click.echo(json.dumps({"capture": capture, "lines": lines}, indent=2))
    else:
        for line in lines:
            click.echo(line)


commands = [explain]
