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


# --- bench: which kernel won, every kernel, several backends, honest figures ---------------------


@pytest.fixture
def chosen(tmp_path, monkeypatch):
    """A verdict on disk in a private cache: the real kernels, built and checked, with timings made up."""
    from kernels import chooser

    monkeypatch.setenv(chooser.CACHE_ENV, str(tmp_path))
    chooser.forget()
    rates = {"16": 40e6, "8": 20e6, "4": 10e6}
    monkeypatch.setattr(chooser, "_time_slice", lambda backend, *_: rates.get(backend.choice, 1e6))
    choice = chooser.choose()
    yield choice
    chooser.forget()


def test_bench_says_which_kernel_won_and_by_how_much(chosen):
    from kernels.cpu import default_lanes

    result = run("bench", "--seconds", "0.2", "--threads", "1")
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.startswith("kernel:"))
    assert line.startswith("kernel: 16 (cpu (numba, 16 lanes)) timed fastest, 2.00x the runner-up 8")
    feature_default = str(default_lanes())
    if feature_default != "16":
        assert f"{40e6 / chosen.rates[feature_default]:.2f}x the feature-flag default {feature_default}" in line
    assert chosen.path in line
    report = json.loads(run("bench", "--seconds", "0.2", "--threads", "1", "--json").output)
    assert report["kernel"]["running"] == "16" and not report["kernel"]["forced"]
    assert report["kernel"]["choice"]["vs_runner_up"] == pytest.approx(2.0)
    assert report["description"] == "cpu (numba, 16 lanes)"


def test_bench_with_a_forced_kernel_says_what_auto_would_run(chosen):
    result = run("bench", "--seconds", "0.2", "--threads", "1", "--lanes", "4")
    assert result.exit_code == 0, result.output
    assert "kernel: 4 (cpu (numba, 4 lanes)), forced with --lanes; --lanes auto would run 16, 4.00x as fast" in (
        result.output
    )


def test_bench_all_kernels_rates_every_kernel_beside_one_baseline(chosen):
    from kernels.cpu import KERNEL_CHOICES

    result = run("bench", "--all-kernels", "--seconds", "0.2", "--threads", "1", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert [row["kernel"] for row in report["kernels"]] == list(KERNEL_CHOICES)
    measured = [row for row in report["kernels"] if "hashrate" in row]
    assert measured and all(row["hashrate"] > 0 and row["description"].startswith("cpu (numba") for row in measured)
    assert all("error" in row for row in report["kernels"] if "hashrate" not in row)
    assert [row["kernel"] for row in measured if row["auto"]] == ["16"] and report["auto"] == "16"
    assert max(row["vs_fastest"] for row in measured) == pytest.approx(1.0)
    fastest = max(measured, key=lambda row: row["hashrate"])
    assert report["fastest"] == fastest["kernel"]
    assert report["baseline_hashrate"] == report["baseline"]["hashrate"]
    text = run("bench", "--all-kernels", "--seconds", "0.2", "--threads", "1").output
    lines = text.splitlines()
    for kernel in (row["kernel"] for row in measured):
        assert any(line.split()[0] == kernel for line in lines[1:]), text
    assert any(line.startswith("--lanes auto runs 16: ") for line in lines), text


@pytest.mark.parametrize("args", [["-b", "reference"], ["--lanes", "8"], ["-b", "cpu,reference"]])
def test_bench_all_kernels_refuses_what_it_cannot_time(args):
    result = run("bench", "--all-kernels", "-s", "0.2", *args)
    assert result.exit_code == 2 and "--all-kernels" in result.output


def test_bench_runs_several_backends_at_once_each_on_its_row():
    report = json.loads(run("bench", "-b", "cpu,reference", "-t", "1", "-s", "0.3", "--json").output)
    assert report["backend"] == "cpu,reference" and report["threads"] == 2
    rows = {row["backend"]: row for row in report["rows"]}
    assert set(rows) == {"cpu", "reference"}
    assert all(row["workers"] == 1 and row["hashes"] > 0 for row in rows.values())
    assert sum(row["hashes"] for row in rows.values()) == report["hashes"]
    text = run("bench", "-b", "reference,cpu", "-t", "1", "-s", "0.3").output
    assert [line.split()[0] for line in text.splitlines()[1:4]] == ["reference", "cpu", "total"]


def test_bench_prints_the_reference_backends_real_rate():
    result = run("bench", "-b", "reference", "-t", "1", "-s", "0.3")
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if line.startswith("reference"))
    value, unit = row.split()[-3:-1]
    assert unit in ("H/s", "kH/s") and float(value) > 0, row
    assert float(row.split()[-1]) > 0  # x hashlib, with the digits it needs


def test_bench_takes_one_baseline_the_median_of_several_runs_with_its_spread():
    import statistics

    report = json.loads(run("bench", "-b", "reference", "-t", "1", "-s", "0.3", "--json").output)
    baseline = report["baseline"]
    assert len(baseline["runs"]) >= 3
    assert baseline["hashrate"] == statistics.median(baseline["runs"]) == report["baseline_hashrate"]
    assert baseline["low"] == min(baseline["runs"]) and baseline["high"] == max(baseline["runs"])
    assert baseline["spread"] == pytest.approx((baseline["high"] - baseline["low"]) / baseline["hashrate"])
    text = run("bench", "-b", "reference", "-t", "1", "-s", "0.3").output
    assert "hashlib baseline (1 thread): median of 5 runs" in text and "spread" in text


def test_table_columns_fit_their_widest_cell_and_rates_keep_their_digits():
    from miner.throughput import format_rate, format_ratio, format_table

    lines = format_table(
        ["backend", "threads", "rate"],
        [["opencl 0:0 (pthread-haswell-AMD EPYC, 8 lanes)", "1", "51.8 kH/s"], ["cpu", "2", "28.4 MH/s"]],
    )
    assert len({len(line) for line in lines}) == 1  # every column lines up under its header
    assert lines[1].startswith("opencl 0:0 (pthread-haswell-AMD EPYC, 8 lanes)  ")
    assert lines[0].endswith("rate") and lines[1].endswith("51.8 kH/s") and lines[2].endswith("28.4 MH/s")
    assert [format_rate(r) for r in (0, 189.4, 999.7, 2134, 28.44e6, 1.5e9)] == [
        "0 H/s",
        "189 H/s",
        "1.00 kH/s",
        "2.13 kH/s",
        "28.4 MH/s",
        "1.50 GH/s",
    ]
    assert [format_ratio(r) for r in (0.00066, 0.5, 22.2, 156.3)] == ["0.00066", "0.50", "22.2", "156"]


def test_lanes_takes_auto_or_a_kernel_the_cpu_module_lists():
    from kernels.cpu import KERNEL_CHOICES

    helped = run("bench", "--help")
    assert "[" + "|".join(("auto", *KERNEL_CHOICES)) + "]" in helped.output and "[default: auto]" in helped.output
    bad = run("bench", "--lanes", "7", "-s", "0.2")
    assert bad.exit_code == 2 and all(choice in bad.output for choice in KERNEL_CHOICES)
    wrong = run("scan", REGTEST_GENESIS, "--bits", "207fffff", "--count", "4", "-b", "reference", "--lanes", "8")
    assert wrong.exit_code == 2 and "--lanes applies to --backend cpu" in wrong.output
    fine = run("scan", REGTEST_GENESIS, "--bits", "207fffff", "--count", "4", "-b", "reference", "--lanes", "auto")
    assert fine.exit_code == 0 and fine.output
