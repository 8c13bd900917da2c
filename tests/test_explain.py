"""`miner explain`: the walk-through must agree with real blocks and with hand arithmetic."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from kernels import reference
from miner import explain as ex
from miner.block import (
    DIFF1_TARGET,
    bits_to_difficulty,
    difficulty_to_target,
    hash_to_int,
    merkle_root,
    nbits_to_target,
    sha256d,
)
from miner.cli.explain import explain
from miner.work import StratumJob, job_header

DATA = Path(__file__).resolve().parent / "data"
VECTORS = DATA / "vectors" / "headers.json"
JOB_FILE = DATA / "explain_job.json"
TEMPLATE_FILE = DATA / "explain_template.json"
NAME_IN_VECTORS = {
    "genesis": "mainnet genesis (height 0)",
    "125552": "mainnet block 125552",
    "testnet-genesis": "testnet3 genesis",
    "regtest-genesis": "regtest genesis",
}


def _vectors() -> dict[str, dict]:
    return {v["name"]: v for v in json.loads(VECTORS.read_text())["headers"]}


def _run(*args: str):
    return CliRunner().invoke(explain, list(args), catch_exceptions=False)


# --- header, against real blocks ---------------------------------------------------


@pytest.mark.parametrize("name", sorted(NAME_IN_VECTORS))
def test_named_header_fields_match_the_real_block(name: str) -> None:
    vec = _vectors()[NAME_IN_VECTORS[name]]
    label, header80 = ex.resolve_header(name)
    assert header80.hex() == vec["header_hex"]
    d = ex.explain_header(header80, label)
    fields = {f["name"]: f for f in d["fields"]}
    assert fields["version"]["value"] == vec["version"]
    assert fields["prev_block"]["value"] == vec["prev_block_hash"]
    assert fields["merkle_root"]["value"] == vec["merkle_root"]
    assert fields["time"]["value"] == vec["time"]
    assert fields["bits"]["value"] == vec["bits"]
    assert fields["nonce"]["value"] == vec["nonce"]
    # the bytes hashed are the header's own slices, and the hashes are flipped relative to display order
    assert "".join(f["hashed_hex"] for f in d["fields"]) == vec["header_hex"]
    assert bytes.fromhex(fields["prev_block"]["hashed_hex"])[::-1].hex() == vec["prev_block_hash"]
    assert bytes.fromhex(fields["merkle_root"]["hashed_hex"])[::-1].hex() == vec["merkle_root"]
    assert int.from_bytes(bytes.fromhex(fields["nonce"]["hashed_hex"]), "little") == vec["nonce"]
    assert d["hash_display_hex"] == vec["block_hash"]
    bits = int(vec["bits"], 16)
    assert int(d["target"]["target_hex"], 16) == nbits_to_target(bits)
    assert d["target"]["difficulty"] == pytest.approx(bits_to_difficulty(bits))
    block_hash = int(vec["block_hash"], 16)
    assert d["comparison"]["valid"] is True
    assert int(d["comparison"]["hash_int_hex"], 16) == block_hash
    assert d["comparison"]["hash_leading_zero_bits"] == 256 - block_hash.bit_length()
    assert d["comparison"]["hash_difficulty"] == pytest.approx(DIFF1_TARGET / block_hash)


def test_genesis_target_decodes_to_difficulty_one() -> None:
    d = ex.explain_header(ex.resolve_header("genesis")[1])
    assert d["target"]["exponent"] == 0x1D and d["target"]["mantissa"] == "00ffff"
    assert int(d["target"]["target_hex"], 16) == DIFF1_TARGET
    assert d["target"]["difficulty"] == 1.0


@pytest.mark.parametrize("name", ["genesis", "125552"])
def test_midstate_and_passes_agree_with_hashlib(name: str) -> None:
    header80 = ex.resolve_header(name)[1]
    d = ex.explain_header(header80)
    assert d["midstate"] == [f"{w:08x}" for w in reference.midstate(header80[:64])]
    assert d["pass1"]["digest_hex"] == hashlib.sha256(header80).hexdigest()
    assert len(d["pass1"]["blocks"]) == 2 and len(d["pass2"]["blocks"]) == 1
    assert d["pass1"]["blocks"][1]["state_in"] == d["midstate"]
    assert d["pass2"]["input_hex"] == d["pass1"]["digest_hex"]
    assert d["hash_internal_hex"] == sha256d(header80).hex()


def test_a_changed_nonce_is_not_a_valid_block() -> None:
    header80 = bytearray(ex.resolve_header("125552")[1])
    header80[76] ^= 1
    d = ex.explain_header(bytes(header80))
    assert d["comparison"]["valid"] is (hash_to_int(sha256d(bytes(header80))) <= nbits_to_target(0x1A44B9F2))
    assert d["comparison"]["valid"] is False


def test_bad_header_text_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="genesis"):
        ex.resolve_header("abcd")
    with pytest.raises(ValueError):
        ex.resolve_header("zz" * 80)


@pytest.mark.parametrize("compression", [1, 2, 3])
def test_round_trace_ends_in_the_pass_states(compression: int) -> None:
    header80 = ex.resolve_header("genesis")[1]
    d = ex.explain_header(header80)
    r = ex.trace_compression(header80, compression)
    assert [x["t"] for x in r["rounds"]] == list(range(64))
    assert len(r["schedule"]) == 64
    block = bytes.fromhex(r["block_hex"])
    assert r["schedule"][:16] == [block[4 * i : 4 * i + 4].hex() for i in range(16)]
    # feed-forward: last round's a..h plus the initial state is the compression's output
    last = [int(w, 16) for w in r["rounds"][-1]["state"]]
    start = [int(w, 16) for w in r["initial_state"]]
    assert r["output_state"] == [f"{(a + b) & 0xFFFFFFFF:08x}" for a, b in zip(last, start, strict=True)]
    expected = {1: d["midstate"], 2: d["pass1"]["blocks"][1]["state_out"], 3: d["pass2"]["blocks"][0]["state_out"]}
    assert r["output_state"] == expected[compression]
    assert r["rounds"][0]["k"] == f"{reference.K[0]:08x}"


# --- Stratum job ---------------------------------------------------------------------


def _capture() -> list[dict]:
    return ex.load_messages(JOB_FILE.read_text())


def _notify_and_subscribe(messages: list[dict]) -> tuple[StratumJob, bytes, float, list]:
    notify = next(m for m in messages if m.get("method") == "mining.notify")
    reply = next(m for m in messages if isinstance(m.get("result"), list))
    diff = next(m for m in messages if m.get("method") == "mining.set_difficulty")["params"][0]
    submit = next(m for m in messages if m.get("method") == "mining.submit")["params"]
    return StratumJob.from_params(notify["params"]), bytes.fromhex(reply["result"][1]), diff, submit


def test_job_walkthrough_rebuilds_the_submitted_header() -> None:
    messages = _capture()
    job, en1, diff, submit = _notify_and_subscribe(messages)
    d = ex.explain_job(messages)
    en2 = bytes.fromhex(submit[2])
    nonce = int(submit[4], 16)
    header80 = job_header(job, en1, en2, ntime=int(submit[3], 16), nonce=nonce)
    assert d["header"]["header_hex"] == header80.hex()
    coinbase = bytes.fromhex(job.coinb1) + en1 + en2 + bytes.fromhex(job.coinb2)
    assert d["coinbase"]["tx_hex"] == coinbase.hex()
    assert d["coinbase"]["txid_internal_hex"] == sha256d(coinbase).hex()
    steps = d["merkle"]["steps"]
    assert len(steps) == len(job.merkle_branch)
    assert steps[0]["left_hex"] == sha256d(coinbase).hex()
    assert steps[-1]["result_hex"] == d["merkle"]["root_internal_hex"] == header80[36:68].hex()
    assert d["prevhash"]["internal_hex"] == header80[4:36].hex()
    assert d["hash_internal_hex"] == sha256d(header80).hex()
    value = hash_to_int(sha256d(header80))
    assert d["share"]["meets_share_target"] is (value <= difficulty_to_target(diff))
    assert d["network"]["meets_network_target"] is (value <= nbits_to_target(job.nbits_int))
    assert d["submit"]["params"] == submit


def test_job_with_chosen_extranonce2_and_nonce() -> None:
    messages = _capture()
    job, en1, diff, _ = _notify_and_subscribe(messages)
    d = ex.explain_job(messages, extranonce2=bytes.fromhex("0a0b0c0d"), nonce=12345)
    header80 = job_header(job, en1, bytes.fromhex("0a0b0c0d"), nonce=12345)
    assert d["header"]["header_hex"] == header80.hex()
    assert d["submit"]["params"][1:] == [job.job_id, "0a0b0c0d", job.ntime, f"{12345:08x}"]
    assert int(d["share"]["target_hex"], 16) == difficulty_to_target(diff)


def test_job_capture_errors_are_one_line_value_errors() -> None:
    messages = _capture()
    with pytest.raises(ValueError, match="extranonce2 must be 4 bytes"):
        ex.explain_job(messages, extranonce2=b"\x00")
    with pytest.raises(ValueError, match="mining.notify"):
        ex.explain_job([m for m in messages if m.get("method") != "mining.notify"])
    with pytest.raises(ValueError, match="subscribe"):
        ex.explain_job([m for m in messages if not isinstance(m.get("result"), list)])
    with pytest.raises(ValueError, match="line 2"):
        ex.load_messages('{"id": 1}\nnot json\n')


def test_pool_capture_with_version_rolling() -> None:
    """A conversation recorded from the embedded pool, which accepted the submitted share."""
    messages = ex.load_messages((DATA / "explain_pool_capture.json").read_text())
    submit = next(m for m in messages if m.get("method") == "mining.submit")
    assert next(m for m in messages if m.get("id") == submit["id"] and "result" in m)["result"] is True
    mask = int(next(m for m in messages if isinstance(m.get("result"), dict))["result"]["version-rolling.mask"], 16)
    notify = next(m for m in messages if m.get("method") == "mining.notify")["params"]
    job = StratumJob.from_params(notify)
    d = ex.explain_job(messages)
    assert d["submit"]["params"] == submit["params"]
    version = (job.version_int & ~mask) | (int(submit["params"][5], 16) & mask)
    assert d["version_rolling"]["version"] == f"{version:08x}"
    en1 = bytes.fromhex(d["extranonce1_hex"])
    header80 = job_header(job, en1, bytes.fromhex(submit["params"][2]), int(submit["params"][3], 16), version,
                          int(submit["params"][4], 16))  # fmt: skip
    assert d["header"]["header_hex"] == header80.hex()
    assert d["share"]["meets_share_target"] is True
    assert hash_to_int(sha256d(header80)) <= difficulty_to_target(d["share"]["difficulty"])
    with pytest.raises(ValueError, match="mask"):
        ex.explain_job(_capture(), version_bits=0x2000)


def test_capture_as_json_lines() -> None:
    lines = "\n".join(json.dumps(m) for m in _capture())
    assert ex.explain_job(ex.load_messages(lines)) == ex.explain_job(_capture())


# --- getblocktemplate ----------------------------------------------------------------------


def _template() -> dict:
    return json.loads(TEMPLATE_FILE.read_text())


def test_template_walkthrough() -> None:
    coinbase_mod = pytest.importorskip("miner.coinbase")
    tpl = _template()
    d = ex.explain_template(tpl, coinbase_mod.OP_TRUE_SCRIPT)
    coinbase = bytes.fromhex(d["coinbase"]["tx_hex"])
    assert d["coinbase"]["height_push_hex"] == coinbase_mod.bip34_height_push(tpl["height"]).hex()
    script_sig_start = 4 + 1 + 36 + 1
    assert coinbase[script_sig_start:].startswith(coinbase_mod.bip34_height_push(tpl["height"]))
    assert d["witness_commitment"]["matches"] is True
    assert bytes.fromhex(tpl["default_witness_commitment"]) in coinbase
    leaves = [sha256d(coinbase)] + [bytes.fromhex(tx["txid"])[::-1] for tx in tpl["transactions"]]
    root = merkle_root(leaves)
    assert d["merkle"]["root_display_hex"] == root[::-1].hex()
    assert d["merkle"]["levels_internal_hex"][0] == [h.hex() for h in leaves]
    header80 = bytes.fromhex(d["header"]["header_hex"])
    assert header80[36:68] == root
    assert header80[4:36] == bytes.fromhex(tpl["previousblockhash"])[::-1]
    assert d["meets_target"] is (hash_to_int(sha256d(header80)) <= int(tpl["target"], 16))
    assert d["target"]["target_hex"] == tpl["target"]


def test_template_with_a_wrong_commitment_is_flagged() -> None:
    coinbase_mod = pytest.importorskip("miner.coinbase")
    tpl = copy.deepcopy(_template())
    tpl["default_witness_commitment"] = tpl["default_witness_commitment"][:-2] + "00"
    d = ex.explain_template(tpl, coinbase_mod.OP_TRUE_SCRIPT)
    assert d["witness_commitment"]["matches"] is False
    del tpl["height"]
    with pytest.raises(ValueError, match="height"):
        ex.explain_template(tpl, coinbase_mod.OP_TRUE_SCRIPT)


# --- odds and economics, by hand ----------------------------------------------------------------


def test_odds_by_hand() -> None:
    d = ex.explain_odds(1e6, 1.0, [4294.967296, 60.0])
    assert d["expected_hashes"] == 4294967296
    assert d["expected_seconds"] == pytest.approx(4294.967296)
    assert d["within"][0]["probability"] == pytest.approx(1 - 1 / math.e)
    assert d["within"][1]["probability"] == pytest.approx(1 - math.exp(-60 / 4294.967296))
    assert d["within"][1]["expected_finds"] == pytest.approx(60 / 4294.967296)
    half = next(q for q in d["time_for_probability"] if q["probability"] == 0.5)
    assert half["seconds"] == pytest.approx(math.log(2) * 4294.967296)


def test_odds_scale_with_difficulty_and_rate() -> None:
    a = ex.explain_odds(2e9, 1000.0)
    b = ex.explain_odds(1e9, 500.0)
    assert a["expected_seconds"] == pytest.approx(b["expected_seconds"])
    assert a["expected_hashes"] == pytest.approx(2 * b["expected_hashes"])
    with pytest.raises(ValueError):
        ex.explain_odds(0, 1)


def test_economics_by_hand() -> None:
    # 2^32 H/s against difficulty 86400: exactly one block a day.
    d = ex.explain_economics(2.0**32, 1000, 0.5, difficulty=86400, reward_btc=2, btc_price=10)
    assert d["blocks_per_day"] == pytest.approx(1.0)
    assert d["btc_per_day"] == pytest.approx(2.0)
    assert d["revenue_per_day"] == pytest.approx(20.0)
    assert d["kwh_per_day"] == pytest.approx(24.0)
    assert d["cost_per_day"] == pytest.approx(12.0)
    assert d["profit_per_day"] == pytest.approx(8.0)
    assert d["break_even_price_per_kwh"] == pytest.approx(20 / 24)
    doubled = next(r for r in d["difficulty_rises"] if r["rise"] == 1.0)
    assert doubled["difficulty"] == pytest.approx(172800)
    assert doubled["revenue_per_day"] == pytest.approx(10.0)
    assert doubled["profit_per_day"] == pytest.approx(-2.0)
    assert d["joules_per_terahash"] == pytest.approx(1000 / (2.0**32 / 1e12))


@pytest.mark.parametrize(
    ("text", "value"),
    [("2.5M", 2.5e6), ("3TH/s", 3e12), ("3 th/s", 3e12), ("1E", 1e18), ("1e9", 1e9), ("750k", 750e3), ("12", 12.0)],
)
def test_parse_hashrate(text: str, value: float) -> None:
    assert ex.parse_hashrate(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["", "fast", "-1M", "0", "3X"])
def test_parse_hashrate_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        ex.parse_hashrate(text)


def test_parse_duration() -> None:
    assert ex.parse_duration("90") == 90
    assert ex.parse_duration("10m") == 600
    assert ex.parse_duration("1.5h") == 5400
    assert ex.parse_duration("2d") == 172800
    assert ex.parse_duration("1w") == 604800
    with pytest.raises(ValueError):
        ex.parse_duration("soon")


# --- the command line ------------------------------------------------------------------------


def test_cli_header_text_and_json() -> None:
    vec = _vectors()[NAME_IN_VECTORS["genesis"]]
    text = _run("header", "genesis")
    assert text.exit_code == 0
    assert vec["block_hash"] in text.output
    assert "\x1b[" not in text.output  # no colour codes when not on a terminal
    assert "yes, a valid block" in text.output
    data = json.loads(_run("header", "genesis", "--json").output)
    assert data == json.loads(json.dumps(ex.explain_header(*reversed(ex.resolve_header("genesis")))))
    raw = _run("header", vec["header_hex"], "--json")
    assert json.loads(raw.output)["hash_display_hex"] == vec["block_hash"]


def test_cli_rounds() -> None:
    out = _run("header", "125552", "--rounds").output
    lines = [line.split() for line in out.splitlines()]
    round_rows = [p for p in lines if len(p) == 11 and p[0].isdigit()]
    assert [int(p[0]) for p in round_rows] == list(range(64))
    assert all(len(p[1]) == 8 for p in round_rows)
    data = json.loads(_run("header", "125552", "--rounds", "--compression", "3", "--json").output)
    assert len(data["rounds"]["rounds"]) == 64
    assert data["rounds"]["output_state"] == data["pass2"]["blocks"][0]["state_out"]


def test_cli_bad_header_is_one_line() -> None:
    result = CliRunner().invoke(explain, ["header", "nothex"])
    assert result.exit_code != 0
    assert result.output.strip().startswith("miner: error:")
    assert len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_cli_job(tmp_path: Path) -> None:
    data = json.loads(_run("job", str(JOB_FILE), "--json").output)
    walk = json.loads(json.dumps(ex.explain_job(_capture())))
    assert {k: v for k, v in data.items() if k not in ("submit", "verdict")} == {
        k: v for k, v in walk.items() if k != "submit"
    }
    assert data["submit"]["params"] == walk["submit"]["params"] and data["submit"]["id"] == 4
    assert data["verdict"] == {**data["verdict"], "accepted": True, "code": None, "share": 1, "shares": 1}
    text = _run("job", str(JOB_FILE), "--nonce", "0x10", "--extranonce2", "01020304").output
    assert '"01020304"' in text and '"00000010"' in text
    bad = CliRunner().invoke(explain, ["job", str(JOB_FILE), "--extranonce2", "0102"])
    assert bad.exit_code != 0 and "extranonce2 must be 4 bytes" in bad.output and "Traceback" not in bad.output
    broken = tmp_path / "broken.json"
    broken.write_text('[{"id": 1, "result": [[], "00", 4]}]')
    bad = CliRunner().invoke(explain, ["job", str(broken)])
    assert bad.exit_code != 0 and "no mining.notify" in bad.output


def test_cli_template() -> None:
    pytest.importorskip("miner.coinbase")
    data = json.loads(_run("template", str(TEMPLATE_FILE), "--json").output)
    assert data["height"] == _template()["height"]
    text = _run("template", str(TEMPLATE_FILE), "--nonce", "7").output
    assert "matches" in text and data["merkle"]["root_display_hex"] in text


def test_cli_odds_and_economics() -> None:
    odds = json.loads(_run("odds", "--hashrate", "1M", "--difficulty", "1", "--within", "1h", "--json").output)
    assert odds["expected_seconds"] == pytest.approx(2**32 / 1e6)
    assert odds["within"][0]["probability"] == pytest.approx(1 - math.exp(-3600 / (2**32 / 1e6)))
    text = _run("odds", "-r", "100T", "-d", "110T").output
    assert "expected time" in text
    econ = json.loads(
        _run("economics", "-r", "200T", "--power", "3500", "--price", "0.05", "-d", "100T", "--json").output
    )
    assert econ["cost_per_day"] == pytest.approx(3.5 * 24 * 0.05)
    assert econ["blocks_per_day"] == pytest.approx(200e12 * 86400 / (100e12 * 2**32))
    bad = CliRunner().invoke(explain, ["odds", "--hashrate", "lots", "--difficulty", "1"])
    assert bad.exit_code == 2 and "hash rate" in bad.output


# --- against a live pool: the walk-through's mining.submit must be accepted -----------------------


def _read_messages(sock_file, until, deadline: float) -> list[dict]:
    import time

    seen = []
    while time.monotonic() < deadline:
        line = sock_file.readline()
        if not line:
            break
        seen.append(json.loads(line))
        if until(seen):
            return seen
    raise AssertionError(f"pool did not answer in time; got {seen}")


def test_captured_job_from_the_embedded_pool_gives_an_accepted_submit() -> None:
    import socket
    import time

    pool_mod = pytest.importorskip("miner.pool")
    chain = pool_mod.EmbeddedChain(nbits=0x1D00FFFF)  # shares, not blocks
    difficulty = 1 / 65536  # about 65,536 hashes per share
    with pool_mod.EmbeddedPool(difficulty=difficulty, vardiff=False, job_source=chain) as pool:
        with socket.create_connection(("127.0.0.1", pool.port), timeout=5) as sock:
            reader = sock.makefile("r", encoding="utf-8")
            sent = [
                {
                    "id": 1,
                    "method": "mining.configure",
                    "params": [["version-rolling"], {"version-rolling.mask": "ffffffff"}],
                },
                {"id": 2, "method": "mining.subscribe", "params": ["explain-test"]},
                {"id": 3, "method": "mining.authorize", "params": ["student", "x"]},
            ]
            sock.sendall("".join(json.dumps(m) + "\n" for m in sent).encode())
            deadline = time.monotonic() + 10
            received = _read_messages(reader, lambda s: any(m.get("method") == "mining.notify" for m in s), deadline)
            capture = [*sent, *received]
            rolled = 0x00002000
            walk = ex.explain_job(capture, version_bits=rolled)  # extranonce2 zeros
            assert walk["version_rolling"] is not None
            job = StratumJob.from_params(_last_notify_params(capture))
            en1 = bytes.fromhex(walk["extranonce1_hex"])
            en2 = bytes.fromhex(walk["extranonce2_hex"])
            version = int(walk["version_rolling"]["version"], 16)
            assert version != job.version_int
            target = difficulty_to_target(difficulty)
            nonce = next(
                n
                for n in range(1 << 20)
                if hash_to_int(sha256d(job_header(job, en1, en2, version=version, nonce=n))) <= target
            )
            walk = ex.explain_job(capture, nonce=nonce, version_bits=rolled)
            assert walk["share"]["meets_share_target"] is True
            assert len(walk["submit"]["params"]) == 6
            assert walk["share"]["difficulty"] == pytest.approx(difficulty)
            submit = {"id": 9, "method": "mining.submit", "params": walk["submit"]["params"]}
            assert submit["params"][0] == "student"
            sock.sendall((json.dumps(submit) + "\n").encode())
            replies = _read_messages(reader, lambda s: any(m.get("id") == 9 for m in s), time.monotonic() + 10)
            reply = next(m for m in replies if m.get("id") == 9)
            assert reply.get("result") is True, reply
        assert pool.summary()["accepted"] == 1


def _last_notify_params(capture: list[dict]) -> list:
    return [m for m in capture if m.get("method") == "mining.notify"][-1]["params"]


def test_registered_on_the_miner_command() -> None:
    from miner.cli import main

    result = CliRunner().invoke(main, ["explain", "--help"])
    assert result.exit_code == 0
    for sub in ("header", "job", "template", "odds", "economics"):
        assert sub in result.output


def test_odds_with_a_measured_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    from kernels import BackendUnavailable, get_backend
    from miner.cli import explain as cli_explain

    try:
        get_backend("cpu")
    except BackendUnavailable:
        pytest.skip("cpu backend not available")
    monkeypatch.setattr(cli_explain, "MEASURE_SECONDS", 1.0)
    result = CliRunner().invoke(explain, ["odds", "-r", "measure", "-t", "1", "-d", "1", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["hashrate"] > 0
    assert data["expected_seconds"] == pytest.approx(2**32 / data["hashrate"])


@pytest.mark.parametrize("name", ["core_regtest_segwit_template.json", "bsv_regtest_template.json"])
def test_templates_recorded_from_nodes(name: str) -> None:
    """Templates captured from real nodes: the recomputed witness commitment must match the node's."""
    coinbase_mod = pytest.importorskip("miner.coinbase")
    path = DATA / name
    if not path.exists():
        pytest.skip(f"{name} is not here")
    tpl = json.loads(path.read_text())
    tpl = tpl.get("result", tpl) if isinstance(tpl.get("result"), dict) else tpl
    d = ex.explain_template(tpl, coinbase_mod.OP_TRUE_SCRIPT)
    assert d["witness_commitment"]["matches"] is True
    assert d["transactions"] == len(tpl["transactions"])
    leaves = [bytes.fromhex(h) for h in d["merkle"]["levels_internal_hex"][0]]
    assert d["merkle"]["root_display_hex"] == merkle_root(leaves)[::-1].hex()


# --- bad input names the field and what it should hold ---------------------------------------------------------

REGTEST_GENESIS_NO_NONCE = ex.NAMED_HEADERS["regtest-genesis"][1][:144]  # everything before bits and nonce


@pytest.mark.parametrize("bits_hashed", ["ffffffff", "ffff7f21", "ffff8000"])
def test_header_whose_nbits_encode_no_target_is_one_line(bits_hashed: str) -> None:
    result = CliRunner().invoke(explain, ["header", REGTEST_GENESIS_NO_NONCE + bits_hashed + "00000000"])
    assert result.exit_code == 2, result.output
    assert not isinstance(result.exception, ValueError), result.exception  # handled, not a traceback
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("miner: error: "), result.output
    assert "bits field (bytes 72..75)" in lines[0] and f"nBits {bytes.fromhex(bits_hashed)[::-1].hex()}" in lines[0]
    assert "expected" in lines[0]


def test_template_file_holding_a_node_error_reply_shows_the_nodes_message(tmp_path: Path) -> None:
    reply = {"result": None, "error": {"code": -10, "message": "Bitcoin is downloading blocks..."}, "id": 1}
    saved = tmp_path / "reply.json"
    saved.write_text(json.dumps(reply))
    result = CliRunner().invoke(explain, ["template", str(saved)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("miner: error: ")
    assert "Bitcoin is downloading blocks... (code -10)" in lines[0] and "error, not a template" in lines[0]


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("previousblockhash", "00", "expected 64 hex digits"),
        ("bits", "zz", "expected 8 hex digits"),
        ("bits", "207fffff00", "expected 8 hex digits"),
        ("bits", "217fffff", "overflows 256 bits"),
        ("height", "5", "a block height"),
        ("curtime", -1, "a Unix time"),
        ("default_witness_commitment", "xyz", "expected hex digits"),
    ],
)
def test_template_with_a_bad_field_names_it(tmp_path: Path, field: str, value, expected: str) -> None:
    pytest.importorskip("miner.coinbase")
    tpl = _template()
    tpl[field] = value
    saved = tmp_path / "template.json"
    saved.write_text(json.dumps(tpl))
    result = CliRunner().invoke(explain, ["template", str(saved)])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("miner: error: "), result.output
    assert f"'{field}'" in lines[0] and expected in lines[0], lines[0]
    assert "invalid literal" not in lines[0] and "80 bytes" not in lines[0]


def test_template_with_a_bad_transaction_names_which(tmp_path: Path) -> None:
    pytest.importorskip("miner.coinbase")
    tpl = _template()
    tpl["transactions"][1]["txid"] = "abcd"
    saved = tmp_path / "template.json"
    saved.write_text(json.dumps(tpl))
    result = CliRunner().invoke(explain, ["template", str(saved)])
    assert result.exit_code == 1
    assert "'transactions[1].txid': expected 64 hex digits" in result.output


@pytest.mark.parametrize("size", [-5, 33, "4", 2.5])
def test_capture_with_an_impossible_extranonce2_size_names_it(tmp_path: Path, size) -> None:
    messages = _capture()
    for m in messages:
        if isinstance(m.get("result"), list):
            m["result"][2] = size
    saved = tmp_path / "capture.json"
    saved.write_text(json.dumps(messages))
    result = CliRunner().invoke(explain, ["job", str(saved)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "extranonce2_size must be a whole number of bytes from 0 to 32" in lines[0], lines
    assert "must be -5 bytes" not in lines[0]


@pytest.mark.parametrize("difficulty", [0, -1, "high"])
def test_capture_with_an_impossible_share_difficulty_names_it(difficulty) -> None:
    messages = [m for m in _capture() if m.get("method") != "mining.set_difficulty"]
    messages.insert(0, {"id": None, "method": "mining.set_difficulty", "params": [difficulty]})
    with pytest.raises(ValueError, match="mining.set_difficulty: expected a positive number"):
        ex.explain_job(messages)


def test_header_usage_names_every_header_it_knows() -> None:
    usage = CliRunner().invoke(explain, ["header", "--help"]).output.split("\n\n")[0]  # the Usage: line(s)
    usage = " ".join(re.sub(r"-\n\s+", "-", usage).split())  # as one line, hyphenated wraps joined
    assert usage.startswith("Usage:"), usage
    for name in ex.NAMED_HEADERS:
        assert name in usage, usage


# --- the share target: decimal, double, and how pools round ---------------------------------------------------


def test_share_target_for_a_decimal_difficulty_shows_the_double_and_each_rounding() -> None:
    steps = ex.share_target_steps(0.001)
    assert steps["difficulty_double_hex"] == (0.001).hex()
    assert steps["difficulty_double_exact"].startswith("0.00100000000000000002081668")
    assert steps["double_is_exact"] is False
    assert int(steps["target_hex"], 16) == difficulty_to_target(0.001)  # what the miner and its pool use
    assert steps["target_decimal_hex"] == "000003e7fc18" + "0" * 52  # diff-1 target x 1000, by hand
    assert int(steps["target_double_hex"], 16) == int(float(DIFF1_TARGET) / 0.001)  # one double, truncated
    assert 0 < steps["relative_spread"] < 1e-16
    text = _run("job", str(JOB_FILE)).output
    section = text[text.index("5. The share target") : text.index("6. The mining.submit")]
    for shown in (steps["difficulty_double_hex"], steps["target_hex"], steps["target_decimal_hex"], "ckpool"):
        assert shown in section, section


def test_double_target_keeps_53_significant_bits_as_ckpool_does() -> None:
    for difficulty in (1e15, 0.1, 3.0, 2.0**-20, 123456.789):
        target = ex.double_target(difficulty)
        exact = difficulty_to_target(difficulty)
        assert target >> max(0, target.bit_length() - 53) << max(0, target.bit_length() - 53) == target
        assert abs(target - exact) <= exact >> 50  # the same number, to a double's precision
    assert ex.double_target(1e-300) == (1 << 256) - 1  # past 256 bits: every hash meets it


def test_exact_binary_difficulty_gives_one_target_every_way() -> None:
    steps = ex.share_target_steps(2.0**-16)
    assert steps["double_is_exact"] is True
    assert steps["target_hex"] == steps["target_decimal_hex"] == steps["target_double_hex"]
    assert steps["relative_spread"] == 0


# --- odds are never certain ---------------------------------------------------------------------------------------


def test_odds_never_print_a_certain_chance() -> None:
    text = _run("odds", "-r", "32M", "-d", "1/65536", "-w", "0.03", "-w", "1s", "-w", "1y").output
    rows = text[text.index("Chance of at least one") : text.index("Time until")].splitlines()[1:]
    assert rows and not any(" 100 %" in row or "100.0 %" in row for row in rows), text
    assert "99.999957 %" in text  # enough nines to show what is missing
    assert "1 - e^-488.281" in text  # beyond a dozen nines, the exact form
    data = json.loads(_run("odds", "-r", "32M", "-d", "1/65536", "-w", "1s", "--json").output)
    window = data["within"][0]
    assert window["miss_probability"] == pytest.approx(math.exp(-window["expected_finds"]))
    assert window["miss_probability"] > 0


@pytest.mark.parametrize(
    ("probability", "text"),
    [(0.5, "50 %"), (1 - 3e-7, "99.999970 %"), (1 - 1e-10, "99.999999990 %"), (1.0, "1 - e^-500")],
)
def test_chance_text(probability: float, text: str) -> None:
    finds = -math.log1p(-probability) if probability < 1 else 500.0
    assert ex.chance_text(probability, math.exp(-finds), finds) == text


# --- colour: on a terminal only, and never where NO_COLOR is set ------------------------------------------------


def test_no_color_turns_every_colour_off(monkeypatch: pytest.MonkeyPatch) -> None:
    coloured = CliRunner().invoke(explain, ["header", "genesis"], color=True)
    assert "\x1b[" in coloured.output  # as on a terminal
    monkeypatch.setenv("NO_COLOR", "1")
    plain = CliRunner().invoke(explain, ["header", "genesis"], color=True)
    assert plain.exit_code == 0 and "\x1b[" not in plain.output
    assert click_unstyle(coloured.output) == plain.output


def click_unstyle(text: str) -> str:
    import click

    return click.unstyle(text)


# --- where the pool capture came from ------------------------------------------------------------------------------


def test_pool_capture_came_from_the_project_pool_with_the_settings_the_tutorial_names() -> None:
    """docs/how-mining-works.md: `miner pool --nbits 1d00ffff --difficulty 0.0000152587890625 --no-vardiff`."""
    pool_mod = pytest.importorskip("miner.pool")
    messages = ex.load_messages((DATA / "explain_pool_capture.json").read_text())
    notify = StratumJob.from_params(next(m for m in messages if m.get("method") == "mining.notify")["params"])
    first = pool_mod.EmbeddedChain(nbits=0x1D00FFFF).current().stratum_job(clean=True)
    same = ("prevhash", "coinb1", "coinb2", "merkle_branch", "version", "nbits", "clean_jobs")
    assert {k: getattr(notify, k) for k in same} == {k: getattr(first, k) for k in same}
    difficulty = next(m for m in messages if m.get("method") == "mining.set_difficulty")["params"][0]
    assert difficulty == 0.0000152587890625 == 2.0**-16
    mask = next(m for m in messages if isinstance(m.get("result"), dict))["result"]["version-rolling.mask"]
    assert int(mask, 16) == pool_mod.DEFAULT_VERSION_MASK
    tutorial = (Path(__file__).resolve().parent.parent / "docs" / "how-mining-works.md").read_text()
    assert "miner pool --nbits\n1d00ffff --difficulty 0.0000152587890625 --no-vardiff" in tutorial


# --- the teaching API: what the CLI prints, as functions ------------------------------------------------------------


def test_the_teaching_names_are_importable_from_miner() -> None:
    import miner
    from miner import teach

    for name in teach.__all__:
        assert getattr(miner, name) is getattr(teach, name)
    assert {"header", "scan", "job_from_capture", "measure_odds"} <= set(dir(miner))
    assert miner.teach is teach
    with pytest.raises(AttributeError):
        miner.no_such_function  # noqa: B018


def test_teaching_api_agrees_with_the_walkthrough() -> None:
    from miner import teach

    h = teach.header("genesis")
    assert teach.header(h.hex()) == h == teach.header(h)
    assert teach.block_hash(h) == ex.explain_header(h)["hash_display_hex"]
    assert teach.sha256d(h) == hashlib.sha256(hashlib.sha256(h).digest()).digest()
    assert teach.header_fields(h) == ex.header_fields(h)
    assert teach.difficulty_to_target(1.0) == DIFF1_TARGET and teach.target_to_difficulty(DIFF1_TARGET) == 1.0
    assert teach.leading_zero_bits(teach.nbits_to_target(0x1D00FFFF)) == 32
    assert teach.odds(1e6, 1.0) == ex.explain_odds(1e6, 1.0)
    with pytest.raises(ValueError):
        teach.header(b"\0" * 79)


def test_a_short_scan_finds_the_tutorials_nonces() -> None:
    """docs/how-mining-works.md: the regtest genesis header at nBits 1f00ffff; 46,714, 179,096, 182,530."""
    from kernels import BackendUnavailable
    from miner import teach

    header = teach.header(
        "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b27ac72c3e"
        "67768f617fc81bc3888a51323a9fb8aa4b1e5e4adae5494dffff001f00000000"
    )
    try:
        hits = teach.scan(header, count=200_000)
    except BackendUnavailable:
        hits = teach.scan(header, count=200_000, backend="reference")
    assert [h.nonce for h in hits] == [46714, 179096, 182530]
    for hit in hits:
        value = hash_to_int(sha256d(header[:76] + hit.nonce.to_bytes(4, "little")))
        assert hit.hash_hex == f"{value:064x}" and hit.zero_bits == 256 - value.bit_length()
        assert value <= nbits_to_target(0x1F00FFFF)
    with pytest.raises(ValueError, match="32-bit"):
        teach.scan(header, start=(1 << 32) - 10, count=20)
