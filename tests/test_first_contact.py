"""What a new user meets first: one-line errors for every bad number and option, Ctrl-C's one
outcome, credentials in pool URLs that are used and never shown, and a node's P2P port named."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time

import click
import pytest
from click.testing import CliRunner
from commands import MINER, api_reply, backend

from miner.cli import main
from miner.cli.common import Number
from miner.pool import EmbeddedChain, EmbeddedPool
from miner.rpc import RpcClient, RpcConnectionError

BAD_NUMBERS = ["nan", "inf", "-inf", "1e400"]
PASSWORD = "s3cret-Pa55"
HEADER = "01" + "00" * 79


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*MINER, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def float_options(group: click.Group = main, path: tuple[str, ...] = ()):
    """Every option of every command whose value is a float, found by walking the Click tree."""
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from float_options(command, (*path, name))
            continue
        for param in command.params:
            if isinstance(param, click.Option) and isinstance(param.type, (click.types.FloatParamType, Number)):
                yield (*path, name), param


FLOAT_OPTIONS = list(float_options())


def test_the_sweep_finds_the_float_options():
    names = {(" ".join(path), param.opts[0]) for path, param in FLOAT_OPTIONS}
    assert {("scan", "--difficulty"), ("pool", "--difficulty"), ("explain economics", "--power")} <= names
    assert len(FLOAT_OPTIONS) >= 15


@pytest.mark.parametrize("path,param", FLOAT_OPTIONS, ids=[" ".join(p) + " " + o.opts[0] for p, o in FLOAT_OPTIONS])
def test_every_float_option_refuses_nan_inf_and_overflow(path, param):
    assert isinstance(param.type, Number), f"{' '.join(path)} {param.opts[0]} is a bare float: use cli.common.Number"
    for bad in BAD_NUMBERS:
        result = CliRunner().invoke(main, [*path, param.opts[0], bad])
        assert result.exit_code == 2, (bad, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("miner: error: "), (bad, result.stderr)
        assert param.opts[0] in lines[0] and "finite" in lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ["scan", HEADER, "--difficulty", "inf", "--count", "3"],
        ["scan", HEADER, "--difficulty", "1e400", "--count", "3"],
        ["pool", "--difficulty", "nan", "--duration", "2"],
        ["explain", "economics", "--hashrate", "1M", "--power", "inf", "--price", "0.1"],
        ["explain", "economics", "--hashrate", "1M", "--power", "100", "--price", "nan"],
        ["explain", "economics", "--hashrate", "1M", "--power", "100", "--price", "0.1", "--btc-price", "inf"],
        ["mine", "--threads", "zero"],
        ["bench", "--bogus"],
    ],
    ids=lambda a: " ".join(a[:4]),
)
def test_bad_values_get_one_line_and_exit_2(args):
    result = run(*args)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("miner: error: "), result.stderr
    assert "Traceback" not in result.stderr and "Usage:" not in result.stderr


def test_pool_refuses_an_impossible_network_target():
    result = run("pool", "--listen", "127.0.0.1:0", "--nbits", "00000000", "--duration", "1")
    assert result.returncode == 2, result
    assert result.stderr.strip().startswith("miner: error: --nbits") and len(result.stderr.strip().splitlines()) == 1


# --- Ctrl-C and where the output goes ----------------------------------------------------------------------------


def test_pool_logs_on_stderr_and_ctrl_c_prints_the_summary_then_exits_130():
    proc = subprocess.Popen(
        [*MINER, "pool", "--listen", "127.0.0.1:0", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()  # blocks until the pool has logged that it listens
        assert "listening on" in first, first
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, (out, err)
    assert err.strip().splitlines()[-1] == "miner: interrupted"
    lines = out.strip().splitlines()
    assert len(lines) == 1 and "accepted" in json.loads(lines[0]), out  # stdout holds the result alone


# --- credentials in pool URLs --------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_url_credentials_are_used_and_never_printed():
    authorized: list[str] = []
    pool = EmbeddedPool(
        difficulty=2.0**-12,
        vardiff=False,
        job_source=EmbeddedChain(nbits=0x1D00FFFF),
        credentials={"alice": PASSWORD},
        on_event=authorized.append,
    )
    pool.start()
    api_port = _free_port()
    url = f"stratum+tcp://alice:{PASSWORD}@127.0.0.1:{pool.port}"
    proc = subprocess.Popen(
        [*MINER, "mine", "-o", url, "-b", backend(), "-t", "1", "--json", "--api-listen", f"127.0.0.1:{api_port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)  # type: ignore[arg-type]
    reader.start()
    replies = []
    try:
        deadline = time.monotonic() + 60
        while not any("authorized as" in line for line in lines) and time.monotonic() < deadline:
            assert proc.poll() is None, lines
            time.sleep(0.05)
        assert any("authorized as 'alice'" in line or "authorized as alice" in line for line in lines), lines
        for command in ("pools", "summary", "config", "stats", "devs"):
            replies.append(api_reply(api_port, command))
        proc.send_signal(signal.SIGTERM)
        out = proc.stdout.read()  # type: ignore[union-attr]
        proc.wait(timeout=30)
        reader.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        pool.stop()
    assert proc.returncode == 0, lines[-5:]
    pools = json.loads(replies[0])["POOLS"]
    assert pools[0]["URL"].endswith(f"127.0.0.1:{pool.port}") and pools[0]["User"] == "alice"
    for channel in [out, *lines, *replies]:
        assert PASSWORD not in channel, channel


def test_explicit_user_and_password_win_over_the_url():
    from miner.mining import PoolConfig

    config = PoolConfig(f"stratum+tcp://alice:{PASSWORD}@127.0.0.1:3333#xnsub", "bob", "pw")
    assert (config.url, config.user, config.password) == ("stratum+tcp://127.0.0.1:3333#xnsub", "bob", "pw")
    from_url = PoolConfig(f"alice.rig1:{PASSWORD.replace('-', '%2D')}@127.0.0.1:3333")
    assert (from_url.url, from_url.user, from_url.password) == ("127.0.0.1:3333", "alice.rig1", PASSWORD)
    assert PASSWORD not in repr(config) and PASSWORD not in repr(from_url)


def test_a_bad_pool_url_never_quotes_the_password():
    result = run("mine", "-o", f"stratum+tcp://alice:{PASSWORD}@127.0.0.1", "--duration", "1")
    assert result.returncode == 2 and "no port" in result.stderr
    assert PASSWORD not in result.stderr + result.stdout


# --- a node's P2P port given as its RPC port ------------------------------------------------------------------------


def test_a_known_p2p_port_is_named_before_any_connection():
    result = run(
        "solo", "--rpc-url", f"http://u:{PASSWORD}@127.0.0.1:18444", "--address", "mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn"
    )
    assert result.returncode == 2, result
    assert "P2P port" in result.stderr and "18443" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert PASSWORD not in result.stderr


def test_a_server_that_does_not_speak_http_is_called_out():
    """A P2P port on another number: the node takes the connection, reads a non-version message, closes."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        for _ in range(4):  # requests may retry once; bounded either way
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.recv(1024)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        with pytest.raises(RpcConnectionError, match="P2P port"):
            RpcClient(f"http://u:p@127.0.0.1:{port}", timeout=10).call("getblockchaininfo")
    finally:
        listener.close()


def test_a_run_that_never_held_a_job_exits_non_zero():
    """A server that takes the connection and closes it at once (not a pool): nothing was mined."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        result = run("mine", "-o", f"127.0.0.1:{port}", "--duration", "2", "-t", "1", "-b", backend(), "--json")
    finally:
        stop.set()
        listener.close()
    assert result.returncode == 1, result
    assert result.stderr.strip().splitlines()[-1].startswith("miner: error: mined nothing: no pool ever sent a job")
