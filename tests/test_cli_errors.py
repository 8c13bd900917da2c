"""Bad input on the command line: one ``miner: error: ...`` line, a documented exit code, never a traceback.

Exit codes: 2 for input the user can fix by retyping it (bad hex, URL, port,
address, option), 1 for a run that could not proceed (nothing listening, no
node, no usable pool). Usage errors are click's own (2).
"""

from __future__ import annotations

import socket
import subprocess

import pytest
from commands import MINER

REGTEST_ADDRESS = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"
#: the regtest genesis header up to its bits field; the bits (as hashed) and a zero nonce follow
HEADER_TO_BITS = (
    "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b27ac72c3e67768f61"
    "7fc81bc3888a51323a9fb8aa4b1e5e4adae5494d"
)


def free_port() -> int:
    """A loopback port with nothing listening (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    cmd = [*MINER, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def assert_one_line_error(result: subprocess.CompletedProcess, code: int, *words: str) -> None:
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("miner: error: ")]
    assert len(errors) == 1, result.stderr
    for word in words:
        assert word.lower() in errors[0].lower(), errors[0]


BAD_INPUT = [
    (["grind", "zz"], "hex"),
    (["grind", "00" * 79], "80 bytes"),
    (["grind", "0g" * 80], "hex"),
    (["scan", "00" * 80, "--bits", "1d00ffff", "--target", "00" * 32], "exactly one"),
    (["scan", "00" * 80, "--difficulty", "1", "--start", "4294967295", "--count", "2"], "2^32"),
    (["mine", "-o", "http://x"], "scheme"),
    (["mine", "-o", "stratum+tcp://127.0.0.1:notaport"], "port"),
    (["mine", "-o", "stratum+tcp://127.0.0.1:70000"], "port"),
    (["mine", "-o", "stratum+tcp://127.0.0.1"], "port"),
    (["mine", "-o", "stratum+tcp://:3333"], "host"),
    (["mine", "-o", "stratum+tcp://127.0.0.1:3333/path?x=1"], "path"),
    (["mine", "-o", ""], "empty"),
    (["mine", "-o", "stratum+tcp://127.0.0.1:1", "--api-listen", "127.0.0.1:notaport"], "api-listen"),
    (["mine", "-o", "stratum+tcp://127.0.0.1:1", "--api-listen", "70000"], "range"),
    (["mine", "-o", "stratum+tcp://127.0.0.1:1", "--api-allow", "W:300.1.1.1"], "api-allow"),
    (["pool", "--listen", "127.0.0.1:notaport"], "port"),
    (["pool", "--listen", "127.0.0.1:99999"], "range"),
    (["pool", "--address", "notanaddress"], "address"),
    (["pool", "--address", "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5"], "address"),  # checksum broken
    (["pool", "--rpc-url", "http://127.0.0.1:1"], "--address"),
    (["explain", "header", HEADER_TO_BITS + "ffffffff" + "00000000"], "bits field"),
    (["explain", "header", HEADER_TO_BITS + "ffff7f21" + "00000000"], "overflows 256 bits"),
    (["explain", "header", HEADER_TO_BITS + "ffff8000" + "00000000"], "sign bit"),
    (["pool", "--address", "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", "--duration", "0"], "embedded chain"),
]


@pytest.mark.parametrize(("args", "word"), BAD_INPUT, ids=[" ".join(a)[:50] for a, _ in BAD_INPUT])
def test_bad_input_is_one_line_exit_2(args: list[str], word: str) -> None:
    assert_one_line_error(run(*args), 2, word)


def test_scan_bad_bits_names_the_option() -> None:
    assert_one_line_error(run("scan", "00" * 80, "--bits", "zzzzzzzz"), 2, "bits")


def test_refused_connection_is_one_line_exit_1() -> None:
    port = free_port()
    result = run("mine", "-o", f"stratum+tcp://127.0.0.1:{port}", "-b", "reference", "-t", "1", "--duration", "20")
    assert_one_line_error(result, 1, "refused")


def test_unresolvable_pool_host_is_one_line_exit_1() -> None:
    result = run(
        "mine", "-o", "stratum+tcp://pool.example.invalid:3333", "-b", "reference", "-t", "1", "--retries", "0"
    )
    assert_one_line_error(result, 1, "resolve")


def test_every_pool_failing_names_each() -> None:
    a, b = free_port(), free_port()
    result = run("mine", "-o", f"127.0.0.1:{a}", "-o", f"127.0.0.1:{b}", "-b", "reference", "-t", "1", "--retries", "0")
    assert_one_line_error(result, 1, str(a), str(b))


def test_pool_port_in_use_is_one_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = run("pool", "--listen", f"127.0.0.1:{port}", "--duration", "1")
    assert_one_line_error(result, 1, "listen")


def test_api_port_in_use_is_one_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = run("mine", "-o", "127.0.0.1:1", "-b", "reference", "-t", "1", "--api-listen", f"127.0.0.1:{port}")
    assert_one_line_error(result, 1, "api")


def test_pool_with_unreachable_node_is_one_line() -> None:
    port = free_port()
    result = run("pool", "--rpc-url", f"http://127.0.0.1:{port}", "--address", REGTEST_ADDRESS, "--duration", "1")
    assert_one_line_error(result, 1, "node")


def test_pool_with_bad_rpc_url_is_one_line() -> None:
    result = run("pool", "--rpc-url", "ftp://127.0.0.1:1", "--address", REGTEST_ADDRESS, "--duration", "1")
    assert result.returncode in (1, 2)
    assert_one_line_error(result, result.returncode)


def test_solo_with_unreachable_node_is_one_line() -> None:
    port = free_port()
    result = run("solo", "--rpc-url", f"http://127.0.0.1:{port}", "--address", REGTEST_ADDRESS, "-b", "reference")
    assert_one_line_error(result, 1, "node")


def test_solo_bad_address_is_reported_before_the_node() -> None:
    port = free_port()
    result = run("solo", "--rpc-url", f"http://127.0.0.1:{port}", "--address", "notanaddress", "-b", "reference")
    assert_one_line_error(result, 2, "address")


def test_unknown_backend_and_usage_errors_have_no_traceback() -> None:
    for args in (["grind", "00" * 80, "--backend", "nope"], ["mine", "--threads", "0"], ["nosuchcommand"]):
        result = run(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr
