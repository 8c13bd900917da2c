"""`miner grind`, `miner scan`, `miner bench` as a user runs them."""

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from miner.block import hash_to_int, nbits_to_target, sha256d
from miner.cli import main

REGTEST_GENESIS = (
    "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b27ac72c3e"
    "67768f617fc81bc3888a51323a9fb8aa4b1e5e4adae5494dffff7f2002000000"
)


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_grind_meets_the_headers_own_target():
    result = run("grind", REGTEST_GENESIS, "--threads", "2")
    assert result.exit_code == 0, result.output
    out = bytes.fromhex(result.output.strip())
    assert out[:76] == bytes.fromhex(REGTEST_GENESIS)[:76]
    assert hash_to_int(sha256d(out)) <= nbits_to_target(0x207FFFFF)


def test_grind_harder_target_on_a_random_header():
    # nBits 0x1f00ffff: about one hit per 2^16 nonces.
    header = os.urandom(72) + bytes.fromhex("ffff001f") + bytes(4)
    result = run("grind", header.hex(), "--threads", "1")
    assert result.exit_code == 0, result.output
    out = bytes.fromhex(result.output.strip())
    assert hash_to_int(sha256d(out)) <= nbits_to_target(0x1F00FFFF)


@pytest.mark.parametrize(
    "header, code, message",
    [("zz" * 80, 2, "not valid hex"), ("00" * 79, 2, "80 bytes"), ("00" * 72 + "00000000" + "00" * 4, 2, "zero")],
)
def test_grind_bad_input(header, code, message):
    result = run("grind", header)
    assert result.exit_code == code
    assert message in result.output
    assert "Traceback" not in result.output


def test_scan_impossible_target_prints_nothing():
    result = run("scan", REGTEST_GENESIS, "--target", "00" * 31 + "01", "--count", "5000")
    assert result.exit_code == 0 and result.output == ""


def test_scan_lists_every_hit_in_order():
    result = run("scan", REGTEST_GENESIS, "--bits", "207fffff", "--count", "400", "--threads", "2")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    header = bytes.fromhex(REGTEST_GENESIS)
    target = nbits_to_target(0x207FFFFF)
    expected = [n for n in range(400) if hash_to_int(sha256d(header[:76] + n.to_bytes(4, "little"))) <= target]
    assert [x["nonce"] for x in lines] == expected
    genesis = next(x for x in lines if x["nonce"] == 2)
    assert genesis["hash"] == "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206"


def test_scan_target_forms_agree():
    base = ["scan", REGTEST_GENESIS, "--start", "1000", "--count", "3000"]
    by_difficulty = run(*base, "--difficulty", "0.0000000625").output  # 2^-24: target 2^248 * 0xffff/0x10000
    target_hex = f"{0xFFFF << 232:064x}"
    by_target = run(*base, "--target", target_hex).output
    assert by_difficulty == by_target and by_difficulty


def test_scan_end_of_nonce_space_and_no_wrap():
    ok = run("scan", REGTEST_GENESIS, "--bits", "207fffff", "--start", str(2**32 - 50), "--count", "50")
    assert ok.exit_code == 0
    nonces = [json.loads(line)["nonce"] for line in ok.output.splitlines()]
    assert nonces and max(nonces) <= 2**32 - 1
    bad = run("scan", REGTEST_GENESIS, "--bits", "207fffff", "--start", str(2**32 - 50), "--count", "51")
    assert bad.exit_code == 2 and "2^32" in bad.output


def test_scan_needs_exactly_one_target():
    assert run("scan", REGTEST_GENESIS).exit_code == 2
    assert run("scan", REGTEST_GENESIS, "--bits", "207fffff", "--difficulty", "1").exit_code == 2


def test_bench_json_has_the_documented_fields():
    result = run("bench", "--seconds", "1", "--threads", "1", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    for key in ("backend", "threads", "hashes", "seconds", "hashrate", "baseline_hashrate"):
        assert key in report
    assert report["backend"] == "cpu" and report["threads"] == 1 and report["hashes"] > 0


def test_console_script_and_module_entry_points():
    out = subprocess.run([sys.executable, "-m", "miner", "--version"], capture_output=True, text=True, check=True)
    assert "miner" in out.stdout
    helped = subprocess.run([sys.executable, "-m", "miner", "grind", "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "nBits" in helped.stdout


def test_find_nonce_reports_exhaustion():
    from miner.cli.core import find_nonce
    from miner.engine import Engine

    engine = Engine.for_backend("cpu", threads=2)
    assert find_nonce(engine, bytes.fromhex(REGTEST_GENESIS), target=1, nonce_end=300_000) is None
    assert engine.stats.total_hashes == 300_000


# The tutorial's section-2 header: hits at nonces 46,714, 179,096 and 182,530 below 200,000. In byte
# order (the nonce's little-endian bytes) 182,530 (02c90200) sorts before 46,714 (7ab60000).
TUTORIAL_HEADER = (
    "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b27ac72c3e67768f617f"
    "c81bc3888a51323a9fb8aa4b1e5e4adae5494dffff001f00000000"
)


@pytest.mark.parametrize("threads", ["1", "2"])
def test_grind_returns_the_lowest_winning_nonce(threads):
    scanned = CliRunner().invoke(main, ["scan", TUTORIAL_HEADER, "--bits", "1f00ffff", "--count", "200000"])
    hits = [json.loads(line)["nonce"] for line in scanned.stdout.splitlines()]
    assert hits[0] == 46714 and 182530 in hits  # the first hit is not the lowest in byte order
    ground = CliRunner().invoke(main, ["grind", "-t", threads, TUTORIAL_HEADER])
    assert ground.exit_code == 0, ground.output
    solved = bytes.fromhex(ground.stdout.strip())
    assert int.from_bytes(solved[76:], "little") == hits[0]
