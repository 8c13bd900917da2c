"""`miner mine` end to end over loopback TCP/TLS: real hashing, real pools, real verdicts.

The pools are the project's own (EmbeddedPool) and the scripted pool from
test_stratum_client, which records every submit so the tests can check what
the miner sent and when. One CPU thread; share difficulties are tiny so shares
arrive several times a second.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from click.testing import CliRunner
from commands import api_request, run_until
from test_stratum_client import ScriptedPool, server_tls

from miner.cli import main
from miner.mining import Miner, PoolConfig
from miner.stats import Stats
from miner.work import job_header

try:
    from kernels import get_backend

    get_backend("cpu")
    BACKEND, DIFFICULTY = "cpu", 0.001  # ~2^22 hashes a share
except Exception:  # the numba kernel is unavailable here: the pure-Python one, with far easier shares
    BACKEND, DIFFICULTY = "reference", 2.0**-24


def mine_until(until, *args: str) -> tuple[int, str, str]:
    """``miner mine ARGS`` as a user runs it, stopped (SIGTERM: the summary, exit 0) once ``until()`` holds."""
    return run_until(["mine", "--backend", BACKEND, "--threads", "1", *args], until)


def run_mine(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["mine", "--backend", BACKEND, "--threads", "1", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def embedded_pool(**kw):
    from miner.pool import EmbeddedPool

    kw.setdefault("difficulty", DIFFICULTY)
    kw.setdefault("vardiff", False)
    pool = EmbeddedPool(**kw)
    pool.start()
    return pool


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_miner(urls: list[str], **kw) -> tuple[Miner, list]:
    """A Miner over the chosen backend; ``found`` lists (time, share) for every share the engine verified."""
    from miner.engine import Engine

    stats = Stats()
    engine = Engine.for_backend(BACKEND, threads=1, stats=stats)
    kw.setdefault("backoff_initial", 0.2)
    kw.setdefault("backoff_max", 0.5)
    miner = Miner([PoolConfig(u, "alice.1") for u in urls], engine, stats, **kw)
    found: list = []
    submit = engine.on_share

    def on_share(share):
        found.append((time.monotonic(), share))
        submit(share)

    engine.on_share = on_share
    return miner, found


def wait_for(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


# --- through the command line ------------------------------------------------------------------------------------


def test_embedded_default_mines_blocks_with_one_command():
    code, out, err = run_mine("--duration", "4", "--json")
    assert code == 0, err
    result = last_json(out)
    assert set(result) == {"accepted", "rejected", "stale", "hw_errors", "hashes", "blocks", "seconds",
                           "live_hashes", "live_seconds", "hashrate"}  # fmt: skip
    assert 0 < result["live_hashes"] <= result["hashes"] and 0 < result["live_seconds"] <= result["seconds"]
    assert result["hashes"] > 0 and result["rejected"] == 0 and result["hw_errors"] == 0
    assert result["blocks"] == result["accepted"]  # regtest nBits: every share is a block
    assert "embedded pool listening on stratum+tcp://127.0.0.1:" in err


@pytest.mark.parametrize("rolling", [False, True])
def test_mine_against_the_project_pool(rolling):
    pool = embedded_pool()
    try:
        args = ["-o", pool.url, "-u", "alice.1", "-p", "x", "--json", *(["--version-rolling"] if rolling else [])]
        code, out, err = mine_until(lambda: pool.summary()["accepted"] >= 2, *args)
        assert code == 0, err
        result = last_json(out)
        summary = pool.summary()
    finally:
        pool.stop()
    assert result["accepted"] >= 1 and result["rejected"] == 0
    # each share is a block at regtest nBits, so a share can race the next block: stale here (not sent, or
    # answered "job not found", which the pool counts as rejected)
    assert summary["accepted"] == result["accepted"] and summary["rejected"] <= result["stale"]
    assert "Traceback" not in err


def test_version_bits_stay_inside_the_pool_mask():
    pool = ScriptedPool(difficulty=DIFFICULTY, version_mask=0x00FFE000).start()
    miner, _ = make_miner([pool.url], version_rolling=True)
    try:
        miner.start()
        for _ in range(3):  # a new job once the last one has a share: each work unit rolls fresh bits
            seen = len(pool.submits)
            assert wait_for(lambda seen=seen: len(pool.submits) > seen)
            pool.new_job(clean=False)
        assert wait_for(lambda: len({s.version_bits for _, s, _ in pool.submits}) > 1)
    finally:
        miner.stop()
        pool.kill()
    submits = [s for _, s, _ in pool.submits]
    assert submits and all(s.version_bits is not None for s in submits)
    assert all(s.version_bits_int & ~0x00FFE000 == 0 for s in submits)
    assert len(pool.accepted()) == miner.stats.snapshot()["accepted"] == len(submits)


def test_no_version_bits_without_rolling():
    pool = ScriptedPool(difficulty=DIFFICULTY).start()
    miner, _ = make_miner([pool.url], suggest_difficulty=0.5)
    try:
        miner.start()
        assert wait_for(lambda: len(pool.submits) >= 2)  # shares, however busy the machine
    finally:
        miner.stop()
        pool.kill()
    assert all(s.version_bits is None for _, s, _ in pool.submits)
    events = list(pool.events.queue)
    assert not any(type(e).__name__ == "Configure" for e in events)
    assert [e.difficulty for e in events if type(e).__name__ == "SuggestDifficulty"] == [0.5]


def test_tls_pool_needs_verification_or_an_explicit_opt_out(tmp_path):
    ctx, cert_file = server_tls(tmp_path)
    pool = embedded_pool(tls_context=ctx)
    try:
        assert pool.url.startswith("stratum+ssl://")
        code, out, err = run_mine("-o", pool.url, "--duration", "5")
        assert code != 0
        assert err.strip().splitlines()[-1].startswith("miner: error: no pool could be used")
        assert "certificate verification failed" in err and "Traceback" not in err
        accepted = pool.summary()["accepted"]
        code, out, err = mine_until(
            lambda: pool.summary()["accepted"] > accepted, "-o", pool.url, "--no-verify-tls", "--json"
        )
        assert code == 0, err
        assert last_json(out)["accepted"] >= 1
        accepted = pool.summary()["accepted"]
        url = pool.url.replace("+ssl", "+tcps")
        code, out, err = mine_until(
            lambda: pool.summary()["accepted"] > accepted, "-o", url, "--tls-ca", cert_file, "--json"
        )
        assert code == 0, err
        assert last_json(out)["accepted"] >= 1 and last_json(out)["rejected"] == 0
    finally:
        pool.stop()


def test_bad_credentials_refused_connection_and_bad_url_are_one_line_errors():
    pool = ScriptedPool(password="secret").start()
    try:
        code, _, err = run_mine("-o", pool.url, "-u", "w", "-p", "wrong", "--duration", "10")
    finally:
        pool.kill()
    assert code == 1 and "authorization failed" in err and "wrong password" in err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("miner: error:")
    code, _, err = run_mine("-o", f"stratum+tcp://127.0.0.1:{free_port()}", "--retries", "0", "--duration", "10")
    assert code == 1 and "connection refused" in err.strip().splitlines()[-1]
    code, _, err = run_mine("-o", "http://pool.example:80", "--duration", "1")
    assert code == 2 and err.strip() == (
        "miner: error: bad pool URL 'http://pool.example:80': scheme must be stratum+tcp://, stratum+ssl:// or "
        "stratum+tcps://"
    )
    code, _, err = run_mine("-o", "stratum+tcp://127.0.0.1:1", "--api-listen", "nope:x", "--duration", "1")
    assert code == 2 and "--api-listen" in err and "Traceback" not in err


def test_failover_through_the_command_line_uses_the_live_backup():
    backup = ScriptedPool(difficulty=DIFFICULTY).start()
    try:
        dead = f"stratum+tcp://127.0.0.1:{free_port()}"
        args = ["-o", dead, "-o", backup.url, "-u", "w1", "-u", "w2", "--json"]
        code, out, err = mine_until(lambda: len(backup.accepted()) >= 1, *args)
    finally:
        backup.kill()
    assert code == 0, err
    assert len(backup.accepted()) == last_json(out)["accepted"] >= 1
    assert {s.worker for _, s, _ in backup.submits} == {"w2"}


def test_sigterm_stops_cleanly_with_final_stats():
    pool = ScriptedPool(difficulty=DIFFICULTY).start()
    api_port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "miner",
        "mine",
        "-o",
        pool.url,
        "--backend",
        BACKEND,
        "--threads",
        "1",
        "--json",
        "--api-listen",
        f"127.0.0.1:{api_port}",
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    try:
        assert wait_for(lambda: len(pool.accepted()) >= 1 or proc.poll() is not None, 30)
        assert wait_for(lambda: api_request(api_port, "summary")["SUMMARY"][0]["Accepted"] >= 1, 10)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        pool.kill()
    assert proc.returncode == 0, err
    assert took < 5.0  # a clean stop (about a second, plus the interpreter's exit), not a hang
    result = last_json(out)
    assert result["accepted"] == len(pool.accepted()) and result["hashes"] > 0


# --- the mining glue directly: timing-sensitive paths -------------------------------------------------------------


def test_pool_killed_and_restarted_loses_nothing():
    pool = ScriptedPool(difficulty=DIFFICULTY).start()
    miner, found = make_miner([pool.url])
    try:
        miner.start()
        assert wait_for(lambda: len(pool.accepted()) >= 2)
        pool.kill()
        killed = time.monotonic()
        assert wait_for(lambda: sum(1 for t, _ in found if t > killed + 0.2) >= 2)  # mining goes on while it is down
        pool.start()  # same port; it remembers the session, so the job found on is still valid
        restarted = time.monotonic()
        assert wait_for(lambda: sum(1 for t, _, v in pool.submits if t > restarted and v == "accepted") >= 3)
    finally:
        miner.stop()
        pool.kill()
    stats = miner.stats.snapshot()
    assert stats["accepted"] + stats["rejected"] + stats["stale"] == len(found)  # every share has a verdict
    assert stats["accepted"] == len(pool.accepted()) and stats["rejected"] == 0
    verdicts = [v for _, _, v in pool.submits]
    assert "duplicate" not in verdicts
    # (a share found in the instant before the client saw the connection drop may have gone out on it: skip those)
    offline = {(s.work.extranonce2.hex(), f"{s.nonce:08x}") for t, s in found if killed + 0.2 < t < restarted}
    resent = {(s.extranonce2, s.nonce) for t, s, v in pool.submits if t > restarted and v == "accepted"}
    assert offline and offline <= resent  # shares found while the pool was down were delivered after it came back


def test_failover_and_back_to_the_first_pool():
    first = ScriptedPool(difficulty=DIFFICULTY).start()
    port = first.port
    first.kill()  # down when mining starts
    second = ScriptedPool(difficulty=DIFFICULTY).start()
    miner, found = make_miner([f"stratum+tcp://127.0.0.1:{port}", second.url])
    try:
        miner.start()
        assert wait_for(lambda: len(second.accepted()) >= 2)
        assert miner.current_pool() == 1
        first.start()
        assert wait_for(lambda: len(first.accepted()) >= 2)
        assert miner.current_pool() == 0
        switched = time.monotonic()
        time.sleep(0.5)
        late = [t for t, _, _ in second.submits if t > switched + 0.3]
        assert not late  # once back on the first pool, the backup gets nothing new
        first.kill()
        assert wait_for(
            lambda: miner.current_pool() == 1 and any(t > time.monotonic() - 1 for t, _, _ in second.submits)
        )
    finally:
        miner.stop()
        first.kill()
        second.kill()
    stats = miner.stats
    assert stats.pools[0].shares.accepted == len(first.accepted())
    assert stats.pools[1].shares.accepted == len(second.accepted())


def test_clean_jobs_stops_stale_work():
    pool = ScriptedPool(difficulty=DIFFICULTY).start()
    miner, found = make_miner([pool.url])
    try:
        miner.start()
        assert wait_for(lambda: len(pool.accepted()) >= 2)
        old = pool.job.job_id
        new = pool.new_job(clean=True)
        cleaned = time.monotonic()
        assert wait_for(lambda: any(s.job_id == new.job_id for _, s, _ in pool.submits))
        assert wait_for(lambda: sum(1 for t, _ in found if t > cleaned + 0.5) >= 2)
    finally:
        miner.stop()
        pool.kill()
    # within ~200 ms every new share is for the new job; none for the old one is sent after the clean
    # the engine drops the old work within one ~100 ms scan call; allow for a loaded machine
    assert all(s.work.job_id == new.job_id for t, s in found if t > cleaned + 0.4)
    assert not [s for t, s, _ in pool.submits if s.job_id == old and t > cleaned + 0.4]
    assert miner.stats.snapshot()["rejected"] == 0


def test_control_interface_switches_adds_and_quits():
    a = ScriptedPool(difficulty=DIFFICULTY).start()
    b = ScriptedPool(difficulty=DIFFICULTY).start()
    miner, _ = make_miner([a.url])
    try:
        miner.start()
        assert wait_for(lambda: len(a.accepted()) >= 1)
        index = miner.add_pool(b.url, "bob", "x")
        assert index == 1 and miner.stats.pools[1].url == b.url
        with pytest.raises(ValueError):
            miner.switch_pool(5)
        with pytest.raises(ValueError):
            miner.add_pool("nonsense://", "u", "p")
        miner.switch_pool(1)
        assert wait_for(lambda: miner.current_pool() == 1 and len(b.accepted()) >= 1)
        assert [p.priority for p in miner.stats.pools] == [1, 0]
        with pytest.raises(ValueError):
            miner.remove_pool(1)  # the active one
        miner.set_pool_priority([0, 1])
        assert wait_for(lambda: miner.current_pool() == 0)
        miner.disable_pool(1)
        assert miner.stats.pools[1].status == "Disabled"
        with pytest.raises(ValueError):
            miner.disable_pool(0)  # the last enabled pool
        miner.remove_pool(1)
        assert len(miner.stats.pools) == 1
        quitter = threading.Timer(0.2, miner.quit)
        quitter.start()
        assert miner.wait(5)
    finally:
        miner.stop()
        a.kill()
        b.kill()


def test_set_extranonce_moves_work_to_the_new_extranonce1():
    pool = ScriptedPool(difficulty=DIFFICULTY).start()
    miner, found = make_miner([pool.url + "#xnsub"])
    try:
        miner.start()
        assert wait_for(lambda: len(pool.accepted()) >= 1)
        assert any(type(e).__name__ == "ExtranonceSubscribe" for e in list(pool.events.queue))
        new_en1 = bytes.fromhex("feedf00d")
        with pool._lock:
            for session in pool.sessions:
                session.extranonce1 = new_en1
                session.send(session.conn.set_extranonce(new_en1, 4))
        changed = time.monotonic()
        assert wait_for(lambda: sum(1 for t, _, v in pool.submits if t > changed + 0.3 and v == "accepted") >= 2)
    finally:
        miner.stop()
        pool.kill()
    after = [s for t, s in found if t > changed + 0.3]
    assert after and all(
        job_header(s.work.source.job, new_en1, s.work.extranonce2, version=s.work.version, nonce=s.nonce) == s.header
        for s in after
    )
    late = [(t, v) for t, _, v in pool.submits if t > changed + 0.3]
    assert late and all(v == "accepted" for _, v in late)


def test_status_shows_an_offline_pool_and_a_lost_verdict_is_logged_stale():
    class NoReplies(ScriptedPool):
        """Takes submits and never answers them: the pool dies with the verdicts."""

        def _handle(self, s, event):
            from stratum.protocol import Submit

            if isinstance(event, Submit):
                with self._lock:
                    self.submits.append((time.monotonic(), event, "unanswered"))
                return
            super()._handle(s, event)

    pool = NoReplies(difficulty=DIFFICULTY).start()
    lines: list[str] = []
    miner, _ = make_miner([pool.url], log=lines.append, backoff_initial=5.0, backoff_max=5.0)
    try:
        miner.start()
        assert wait_for(lambda: len(pool.submits) >= 1)
        assert miner.pool_summary()[0] == pool.url  # online: the URL alone
        pool.kill()
        assert wait_for(lambda: "(offline" in miner.pool_summary()[0])
        shown = miner.pool_summary()[0]
        assert shown.startswith(pool.url) and ("next try in" in shown or "connecting" in shown), shown
    finally:
        miner.stop(0.1)
        pool.kill()
    stale_lines = [line for line in lines if "counted stale: connection lost before the pool replied" in line]
    assert stale_lines and all("share for job " in line for line in stale_lines)
    assert miner.stats.snapshot()["stale"] == len(stale_lines)


def test_at_start_up_a_pool_that_is_not_up_yet_is_waited_for():
    """As cgminer does: a rig that boots before its pool keeps trying (with backoff) instead of exiting."""
    port = free_port()
    pool_box: list = []
    url = f"stratum+tcp://127.0.0.1:{port}"

    def start_pool_once_refused(err_lines) -> bool:
        if not pool_box and any("connection refused; retrying in" in line for line in err_lines()):
            pool_box.append(embedded_pool(port=port))
        return bool(pool_box) and pool_box[0].summary()["accepted"] >= 1

    err: list[str] = []
    try:
        code, out, text = run_until(
            ["mine", "-o", url, "-b", BACKEND, "-t", "1", "--retry-pause", "0.3", "--json"],
            lambda: start_pool_once_refused(lambda: err),
            stderr_lines=err,
        )
    finally:
        for pool in pool_box:
            pool.stop()
    assert code == 0, text
    assert last_json(out)["accepted"] >= 1
    assert "retrying in 0.3 s" in text  # --retry-pause: the pause given, not a backoff


def test_retries_give_a_pool_up_after_that_many_failed_tries():
    code, _, err = run_mine("-o", f"stratum+tcp://127.0.0.1:{free_port()}", "--retries", "2", "--retry-pause", "0.1")
    assert code == 1
    lines = err.strip().splitlines()
    assert sum("connection refused; retrying in 0.1 s" in line for line in lines) == 2, lines
    assert "giving up on it after 3 tries in a row (--retries 2)" in lines[-2]
    assert lines[-1].startswith("miner: error: no pool could be used") and "3 tries in a row" in lines[-1]
