"""What a rig run unattended relies on: the protocol dump, a log file, status lines, SIGHUP, metrics, pause."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time
import urllib.request

from commands import MINER, api_request, backend, run_until

from miner.engine import Engine
from miner.pool import EmbeddedChain, EmbeddedPool
from miner.stats import Stats
from miner.work import Work

PASSWORD = "pr0tocol-Secret"
ISO_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d INFO\s+miner\.mining: ")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def easy_pool(**kw) -> EmbeddedPool:
    kw.setdefault("difficulty", 2.0**-12)
    pool = EmbeddedPool(vardiff=False, job_source=EmbeddedChain(nbits=0x1D00FFFF), **kw)
    pool.start()
    return pool


def wait_for(predicate, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_protocol_dump_shows_each_stratum_step_of_a_run_against_miner_pool():
    pool = subprocess.Popen(
        [*MINER, "pool", "--listen", "127.0.0.1:0", "--difficulty", str(2.0**-12), "--nbits", "1d00ffff"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    pool_lines: list[str] = []
    try:
        assert pool.stderr is not None
        first = pool.stderr.readline()
        url = re.search(r"stratum\+tcp://127\.0\.0\.1:\d+", first)
        assert url, first
        reader = threading.Thread(target=lambda: pool_lines.extend(pool.stderr), daemon=True)  # type: ignore[arg-type]
        reader.start()
        code, out, err = run_until(
            ["mine", "-o", url.group(0), "-u", "erin.3", "-p", PASSWORD, "-b", backend(), "-t", "1", "--protocol-dump"],
            lambda: any("accepted" in line for line in pool_lines),
        )
    finally:
        pool.send_signal(signal.SIGTERM)
        pool.wait(30)
    assert code == 0, err
    sent = [line for line in err.splitlines() if "] > " in line]
    received = [line for line in err.splitlines() if "] < " in line]
    assert any('"mining.subscribe"' in line for line in sent), sent
    assert any('"mining.authorize"' in line and '"erin.3", "***"' in line.replace('","', '", "') for line in sent)
    assert any('"mining.notify"' in line for line in received), received
    assert any('"mining.submit"' in line for line in sent), sent
    assert any('"result": true' in line or '"result":true' in line for line in received), received
    assert PASSWORD not in out + err  # every channel: the dump, the log, the summary


def test_a_log_file_gets_iso_lines_and_the_status_interval_and_verbose_rates(tmp_path):
    pool = easy_pool()
    log = tmp_path / "rig.log"
    err_lines: list[str] = []
    try:
        code, _, err = run_until(
            ["mine", "-o", pool.url, "-b", backend(), "-t", "1", "--log-file", str(log), "--status-interval", "0.3",
             "-v"],
            lambda: pool.summary()["accepted"] >= 1 and err_has_status(err_lines),
            stderr_lines=err_lines,
        )  # fmt: skip
    finally:
        pool.stop()
    assert code == 0, err
    lines = log.read_text().splitlines()
    assert any(ISO_LINE.match(line) and "authorized as" in line for line in lines), lines[:5]
    assert "\033[" not in log.read_text()
    status = [line for line in err.splitlines() if "A:" in line and "| CPU 0 " in line + " "]
    assert status, err  # -v: each thread's own rate in the status line


def err_has_status(lines: list[str]) -> bool:
    return sum("A:" in line for line in lines) >= 2


def test_sighup_reloads_the_pools_from_the_config_file(tmp_path):
    first, second = easy_pool(), easy_pool()
    config = tmp_path / "rig.json"
    config.write_text(json.dumps({"pools": [{"url": first.url, "user": "w1"}], "threads": 1}))
    proc = subprocess.Popen(
        [*MINER, "mine", "--config", str(config), "-b", backend(), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert wait_for(lambda: first.summary()["accepted"] >= 1 or proc.poll() is not None)
        config.write_text(json.dumps({"pools": [{"url": second.url, "user": "w2"}], "threads": 1}))
        proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: second.summary()["accepted"] >= 1 or proc.poll() is not None)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        first.stop()
        second.stop()
    assert proc.returncode == 0, err
    assert "pools reloaded: " + second.url in err
    result = json.loads(out.strip().splitlines()[-1])
    # nothing accepted was lost by the switch: each share the pools accepted the miner counts accepted, or
    # stale where its verdict was still on the way when the run stopped (as cgminer counts it)
    pools = first.summary()["accepted"] + second.summary()["accepted"]
    assert result["accepted"] <= pools <= result["accepted"] + result["stale"], (result, pools)
    assert result["rejected"] == 0


def test_metrics_listen_serves_the_miners_prometheus_metrics():
    pool = easy_pool()
    port, api_port = free_port(), free_port()
    text: list[str] = []

    def scraped() -> bool:
        if pool.summary()["accepted"] < 1:
            return False
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
                text.append(reply.read().decode())
        except OSError:
            return False
        return True

    try:
        code, _, err = run_until(
            ["mine", "-o", pool.url, "-b", backend(), "-t", "1", "--metrics-listen", f"127.0.0.1:{port}",
             "--api-listen", f"127.0.0.1:{api_port}"],
            scraped,
        )  # fmt: skip
    finally:
        pool.stop()
    assert code == 0, err
    assert text and "# TYPE" in text[-1] and "accepted" in text[-1]


def test_pause_stops_hashing_and_resume_starts_it_again():
    stats = Stats()
    engine = Engine.for_backend(backend(), threads=1, stats=stats)
    work = Work(header=bytes(80), target=0, nonce_start=0, nonce_end=1 << 32)
    engine.set_source(lambda: work)
    engine.start()
    try:
        assert wait_for(lambda: stats.total_hashes > 0)
        engine.pause()
        assert engine.wait_idle(30)
        paused_at = stats.total_hashes
        time.sleep(0.3)  # a window in which nothing may happen
        assert stats.total_hashes == paused_at
        engine.resume()
        assert wait_for(lambda: stats.total_hashes > paused_at)
        engine.set_device_enabled(0, False)
        assert engine.wait_idle(30) and not stats.devices[engine.devices[0].name].enabled
    finally:
        engine.stop()


def test_the_api_pause_verb_pauses_a_live_miner():
    pool = easy_pool()
    api_port = free_port()
    replies: list[dict] = []

    def paused() -> bool:
        if pool.summary()["accepted"] < 1:
            return False
        if not replies:
            replies.append(api_request(api_port, "pause"))
        return True

    try:
        code, _, err = run_until(
            ["mine", "-o", pool.url, "-b", backend(), "-t", "1", "--api-listen", f"127.0.0.1:{api_port}",
             "--api-allow", "W:127.0.0.1"],
            paused,
        )  # fmt: skip
    finally:
        pool.stop()
    assert code == 0, err
    assert replies[0]["STATUS"][0]["STATUS"] == "S", replies
    assert "paused: hashing stopped, pool sessions kept" in err


def test_mining_through_a_socks5_proxy(tmp_path):
    """A real SOCKS5 server (pproxy) between miner and pool: the pool's connection is the proxy's."""
    import sys

    proxy_port = free_port()
    proxy = subprocess.Popen(
        [sys.executable, "-m", "pproxy", "-l", f"socks5://127.0.0.1:{proxy_port}", "-v"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    proxy_lines: list[str] = []
    threading.Thread(target=lambda: proxy_lines.extend(proxy.stdout), daemon=True).start()  # type: ignore[arg-type]
    pool = easy_pool()
    try:
        assert wait_for(lambda: any("Serving on" in line for line in proxy_lines) or proxy.poll() is not None)
        code, out, err = run_until(
            ["mine", "-o", pool.url, "--proxy", f"socks5://127.0.0.1:{proxy_port}", "-b", backend(), "-t", "1",
             "--json"],
            lambda: pool.summary()["accepted"] >= 1,
        )  # fmt: skip
    finally:
        pool.stop()
        proxy.terminate()
        proxy.wait(10)
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["accepted"] >= 1
    assert any(f"-> 127.0.0.1:{pool.port}" in line for line in proxy_lines), proxy_lines  # it went through the proxy


def test_a_proxy_that_is_down_is_named_in_one_line():
    code, _, err = run_until(
        ["mine", "-o", "stratum+tcp://127.0.0.1:3333", "--proxy", f"socks5://127.0.0.1:{free_port()}", "--retries",
         "0", "-b", backend(), "-t", "1"],
        lambda: False,
    )  # fmt: skip
    assert code == 1
    assert err.strip().splitlines()[-1].startswith("miner: error: no pool could be used")
    assert "cannot reach proxy socks5://127.0.0.1:" in err.strip().splitlines()[-1]


def _miner_on(pools, **kw):
    from miner.mining import Miner, PoolConfig

    stats = Stats()
    engine = Engine.for_backend(backend(), threads=1, stats=stats)
    return Miner([PoolConfig(p.url, "w") for p in pools], engine, stats, backoff_initial=0.1, backoff_max=0.3, **kw)


def test_load_balance_splits_the_work_by_quota():
    a, b = easy_pool(), easy_pool()
    miner = _miner_on([a, b], strategy="load-balance", quotas=[1, 3])
    works = lambda: [p.works for p in miner.stats.pools]  # noqa: E731
    try:
        miner.start()
        assert wait_for(lambda: sum(works()) >= 60 and a.summary()["accepted"] >= 1 and b.summary()["accepted"] >= 1)
    finally:
        miner.stop(1.0)
        a.stop()
        b.stop()
    first, second = works()
    assert 2.4 <= second / first <= 3.6, works()  # quota 1 : 3, in work units of 2^22 nonces
    assert a.summary()["accepted"] + b.summary()["accepted"] == miner.stats.snapshot()["accepted"]


def test_round_robin_stays_on_the_pool_it_moved_to():
    a, b = easy_pool(), easy_pool()
    port = a.port
    miner = _miner_on([a, b], strategy="round-robin")
    back = None
    try:
        miner.start()
        assert wait_for(lambda: a.summary()["accepted"] >= 1)
        a.stop()  # the first pool dies: on to the next
        assert wait_for(lambda: b.summary()["accepted"] >= 1)
        back = easy_pool(port=port)  # it returns; failover would go back to it, round robin does not
        assert wait_for(lambda: miner.stats.pools[0].status == "Alive")
        seen = b.summary()["accepted"]
        assert wait_for(lambda: b.summary()["accepted"] >= seen + 2)
    finally:
        miner.stop(1.0)
        b.stop()
        if back is not None:
            back.stop()
    assert back.summary()["accepted"] == 0
