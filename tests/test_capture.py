"""`miner mine --capture`: a real session recorded line by line, then walked by `miner explain job`.

The end-to-end test mines against `miner pool` on loopback as a user would, and recomputes the
accepted share's hash from the captured notify, subscribe reply and submit with hashlib alone, so the
walk-through is checked against arithmetic that shares no code with it.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import struct
import subprocess
import threading
from pathlib import Path

import pytest
from commands import MINER, backend, run_until

from miner.teach import CaptureWriter, capture_shares, job_from_capture, read_capture, redact_password
from stratum.client import Ready, StratumClient
from stratum.protocol import SubmitResult

BACKEND = backend()
DIFFICULTY = 0.001 if BACKEND == "cpu" else 2.0**-24  # a share every ~4M hashes on numba, ~16 on Python
PASSWORD = 'pa"ss\\word-7Q'  # a quote and a backslash: JSON escapes them, and the redaction must still catch it
WORKER = "student.laptop"
DATA = Path(__file__).resolve().parent / "data"


def sha256d(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def wire_messages(path: Path) -> list[tuple[str, dict]]:
    """(direction, message) for each captured line, read with json alone."""
    out = []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        out.append((record["direction"], json.loads(record["line"])))
    return out


def header_hash_by_hand(subscribe_reply: dict, notify: dict, submit: dict) -> str:
    """The share's block-header hash in display order, from the three messages and hashlib only."""
    extranonce1 = subscribe_reply["result"][1]
    job_id, prevhash, coinb1, coinb2, branches, version, nbits, _, _ = notify["params"][:9]
    worker, submit_job, extranonce2, ntime, nonce = submit["params"][:5]
    assert submit_job == job_id
    root = sha256d(bytes.fromhex(coinb1 + extranonce1 + extranonce2 + coinb2))
    for branch in branches:
        root = sha256d(root + bytes.fromhex(branch))
    prev = b"".join(bytes.fromhex(prevhash)[i : i + 4][::-1] for i in range(0, 32, 4))
    header = (
        struct.pack("<I", int(version, 16))
        + prev
        + root
        + struct.pack("<III", int(ntime, 16), int(nbits, 16), int(nonce, 16))
    )
    return sha256d(header)[::-1].hex()


class PoolProcess:
    """`miner pool` on a free loopback port, as a user starts it; its URL read from its first log line."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [*MINER, "pool", "--listen", "127.0.0.1:0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self.url = ""
        self.log: list[str] = []
        listening = threading.Event()

        def read() -> None:
            for line in self.proc.stderr:  # type: ignore[union-attr]
                self.log.append(line)
                found = re.search(r"listening on (stratum\+tcp://\S+)", line)
                if found and not self.url:
                    self.url = found.group(1)
                    listening.set()
            listening.set()

        threading.Thread(target=read, daemon=True).start()
        if not listening.wait(60) or not self.url:
            self.stop()
            raise AssertionError(f"miner pool did not start: {''.join(self.log)}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def pool():
    server = PoolProcess("--nbits", "1d00ffff", "--difficulty", repr(DIFFICULTY), "--no-vardiff")
    yield server
    server.stop()


def explain(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*MINER, "explain", *args], capture_output=True, text=True, timeout=120)


def accepted_in(path: Path) -> bool:
    """Whether the capture already holds a submit the pool answered with result true."""
    if not path.exists():
        return False
    submits = set()
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:  # the line being written as we read
            continue
        message = json.loads(record["line"])
        if record["direction"] == "out" and message.get("method") == "mining.submit":
            submits.add(message["id"])
        elif record["direction"] == "in" and message.get("id") in submits and message.get("result") is True:
            return True
    return False


def submit_wrong_job(url: str, capture: Path) -> SubmitResult:
    """A second session, recorded into the same capture: one share for a job the pool never sent."""
    ready, answered = threading.Event(), threading.Event()
    results: list[SubmitResult] = []

    def on_event(client, event) -> None:
        if isinstance(event, Ready):
            ready.set()
        elif isinstance(event, SubmitResult):
            results.append(event)
            answered.set()

    with CaptureWriter(str(capture)) as writer:
        client = StratumClient(url, WORKER, PASSWORD, on_event, wire=writer)
        client.start()
        try:
            assert ready.wait(30), "the pool did not authorize the second session"
            assert client.submit("no-such-job", "00000000", "6b0457f6", "00000000")
            assert answered.wait(30), "the pool did not answer the submit"
        finally:
            client.close()
    return results[0]


def test_mine_capture_then_explain_the_accepted_share_and_a_rejected_one(pool: PoolProcess, tmp_path: Path) -> None:
    capture = tmp_path / "session.jsonl"
    rc, out, err = run_until(
        ["mine", "-o", pool.url, "-u", WORKER, "-p", PASSWORD, "--backend", BACKEND, "-t", "1", "--capture",
         str(capture)],
        lambda: accepted_in(capture),
    )  # fmt: skip
    assert rc == 0, err
    assert accepted_in(capture), err
    text = capture.read_text()
    assert PASSWORD not in text and json.dumps(PASSWORD)[1:-1] not in text and "word-7Q" not in text
    messages = wire_messages(capture)
    authorize = next(m for d, m in messages if m.get("method") == "mining.authorize")
    assert authorize["params"] == [WORKER, "***"]
    for line in text.splitlines():  # every line as on the wire: compact JSON-RPC, one message each
        record = json.loads(line)
        assert set(record) == {"time", "direction", "line"} and record["direction"] in ("in", "out")
        assert record["time"] > 1e9 and "\n" not in record["line"]

    # the share the walk picks by default: the last one accepted; recomputed from the capture by hand
    replies = {m["id"]: m for d, m in messages if d == "in" and "method" not in m}
    submits = [(i, m) for i, (d, m) in enumerate(messages) if d == "out" and m.get("method") == "mining.submit"]
    index, submit = [(i, m) for i, m in submits if replies.get(m["id"], {}).get("result") is True][-1]
    job_id = submit["params"][1]
    notify = [m for _, m in messages[:index] if m.get("method") == "mining.notify" and m["params"][0] == job_id][-1]
    subscribe_ids = {m["id"] for d, m in messages if m.get("method") == "mining.subscribe"}
    reply = next(m for d, m in messages[:index] if d == "in" and m.get("id") in subscribe_ids and "result" in m)
    by_hand = header_hash_by_hand(reply, notify, submit)
    assert int(by_hand, 16) <= int(0xFFFF << 208) / DIFFICULTY  # it really is a share

    walked = explain("job", str(capture))
    assert walked.returncode == 0, walked.stderr
    assert f"hash (display order)  {by_hand}" in walked.stdout
    verdict = walked.stdout[walked.stdout.index("7. The pool's verdict") :]
    assert "accepted" in verdict and "rejected" not in verdict
    data = json.loads(explain("job", str(capture), "--json").stdout)
    assert data["hash_display_hex"] == by_hand
    assert data["submit"]["params"] == submit["params"] and data["submit"]["id"] == submit["id"]
    assert data["verdict"]["accepted"] is True and data["verdict"]["share"] == len(submits)

    # a second session appended to the same capture: a share for a job id the pool never sent
    result = submit_wrong_job(pool.url, capture)
    assert not result.accepted and result.code == 21
    assert PASSWORD not in capture.read_text()
    shares = capture_shares(str(capture))
    assert len(shares) == len(submits) + 1
    rejected = explain("job", str(capture), "--share", str(len(shares)))
    assert rejected.returncode == 0, rejected.stderr
    assert "no mining.notify for job no-such-job" in rejected.stdout
    assert "rejected: error 21" in rejected.stdout and "stale: yes" in rejected.stdout
    again = json.loads(explain("job", str(capture), "--json").stdout)  # still the last accepted share
    assert again["hash_display_hex"] == by_hand and again["verdict"]["accepted"] is True


# --- bad input: one line and a non-zero exit ---------------------------------------------------------------------


def _one_line_error(result: subprocess.CompletedProcess, *expected: str) -> None:
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("miner: error: "), result.stderr
    for text in expected:
        assert text in lines[0], lines[0]


def _record(direction: str, message: dict, time: float = 1.7e9) -> str:
    return json.dumps({"time": time, "direction": direction, "line": json.dumps(message)})


SESSION = [
    ("out", {"id": 1, "method": "mining.subscribe", "params": ["test"]}),
    ("in", {"id": 1, "result": [[], "f8002c90", 4], "error": None}),
    ("out", {"id": 2, "method": "mining.authorize", "params": ["w", "***"]}),
    ("in", {"id": 2, "result": True, "error": None}),
]


def test_a_capture_without_a_share_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "none.jsonl"
    path.write_text("".join(_record(d, m) + "\n" for d, m in SESSION))
    _one_line_error(explain("job", str(path)), "no share in the capture")


def test_a_truncated_line_is_named_by_its_number(tmp_path: Path) -> None:
    path = tmp_path / "cut.jsonl"
    lines = [_record(d, m) for d, m in SESSION]
    path.write_text("\n".join(lines[:3]) + "\n" + lines[3][: len(lines[3]) // 2])
    _one_line_error(explain("job", str(path)), "line 4 is not JSON")


def test_share_out_of_range_and_share_zero_are_one_line(tmp_path: Path) -> None:
    job = DATA / "explain_job.json"
    _one_line_error(explain("job", str(job), "--share", "2"), "no share 2", "1 submit")
    _one_line_error(explain("job", str(job), "--share", "0"), "--share")
    _one_line_error(explain("job", str(job), "--share", "1", "--nonce", "5"), "one or the other")


def test_measure_zero_is_one_line() -> None:
    _one_line_error(explain("odds", "--measure", "0"), "--measure")
    _one_line_error(explain("odds", "--measure", "-1", "--json"), "--measure")


# --- the pieces ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "password",
    ["x", "", "hunter2", 'with "quotes"', "back\\slash", "ünïcødé ☃", "a,b]c", 12345],
)
def test_redaction_replaces_the_password_and_keeps_every_other_character(password) -> None:
    for line in (
        json.dumps({"id": 2, "method": "mining.authorize", "params": ["alice.rig", password]}),
        json.dumps({"params": ["alice.rig", password], "id": 2, "method": "mining.authorize"}, separators=(",", ":")),
        '{"id": 2, "method": "mining.authorize", "params": [ "alice.rig" ,  ' + json.dumps(password) + " ] }",
    ):
        redacted = redact_password(line)
        message = json.loads(redacted)
        assert message["params"] == ["alice.rig", "***"]
        before, after = line.split(json.dumps(password), 1) if json.dumps(password) in line else (None, None)
        if before is not None:  # the line as sent, but for the password's own characters
            assert redacted == before + '"***"' + after
        if password not in ("", "x") and isinstance(password, str):
            assert password not in redacted and json.dumps(password)[1:-1] not in redacted


def test_redaction_leaves_other_lines_alone() -> None:
    notify = '{"id":null,"method":"mining.notify","params":["1","mining.authorize",":password"]}'
    submit = json.dumps({"id": 9, "method": "mining.submit", "params": ["mining.authorize", "1", "00", "00", "00"]})
    for line in (notify, submit, "not json at all", '{"id": 2, "result": true, "error": null}'):
        assert redact_password(line) == line


def test_capture_writer_appends_whole_lines_from_many_threads(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text(_record("out", {"id": 1, "method": "mining.subscribe", "params": []}) + "\n")
    with CaptureWriter(str(path), clock=lambda: 1234.5) as writer:
        threads = [
            threading.Thread(target=lambda n=n: [writer("in", json.dumps({"id": n, "k": i})) for i in range(200)])
            for n in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    lines = path.read_text().splitlines()
    assert len(lines) == 1 + 800
    records = [json.loads(line) for line in lines[1:]]
    assert all(r["time"] == 1234.5 and r["direction"] == "in" for r in records)
    assert sorted((json.loads(r["line"])["id"], json.loads(r["line"])["k"]) for r in records) == sorted(
        (n, i) for n in range(4) for i in range(200)
    )
    assert [e.direction for e in read_capture(str(path))][:2] == ["out", "in"]


def test_the_wire_hook_sees_whole_lines_however_the_bytes_arrive() -> None:
    seen: list[tuple[str, str]] = []
    client = StratumClient("stratum+tcp://127.0.0.1:1", "w", wire=lambda d, line: seen.append((d, line)))
    try:
        client._tap("in", b'{"id":1,"res')
        assert seen == []
        client._tap("in", b'ult":true}\n{"id":null,"method":"mining.ping","params":[]}\n{"id"')
        client._tap("out", b'{"id":3,"method":"a"}\n{"id":4,"method":"b"}\n')
        assert seen == [
            ("in", '{"id":1,"result":true}'),
            ("in", '{"id":null,"method":"mining.ping","params":[]}'),
            ("out", '{"id":3,"method":"a"}'),
            ("out", '{"id":4,"method":"b"}'),
        ]
    finally:
        client.close()


def test_a_failing_hook_does_not_stop_the_session() -> None:
    from miner.pool import EmbeddedPool

    def broken(direction: str, line: str) -> None:
        raise RuntimeError("disk full")

    ready = threading.Event()
    with EmbeddedPool(difficulty=1.0, vardiff=False) as server:
        client = StratumClient(server.url, "w", on_event=lambda c, e: isinstance(e, Ready) and ready.set(), wire=broken)
        client.start()
        try:
            assert ready.wait(30)
        finally:
            client.close()


def test_old_captures_walk_their_share_and_its_verdict() -> None:
    walk = job_from_capture(str(DATA / "explain_job.json"))
    assert walk["verdict"]["accepted"] is True and walk["verdict"]["share"] == 1
    walk = job_from_capture(str(DATA / "explain_pool_capture.json"))
    assert walk["version_rolling"] is not None and walk["verdict"]["accepted"] is True


def test_sessions_in_one_capture_keep_their_own_extranonce_and_ids(tmp_path: Path) -> None:
    """Two connections appended: request ids restart, so the second session's reply 3 is not the first's."""
    notify = {"id": None, "method": "mining.notify", "params": ["j", "00" * 32, "01", "02", [], "20000000",
                                                                 "207fffff", "6b0457f6", True]}  # fmt: skip

    def session(en1: str, verdict: dict) -> list[tuple[str, dict]]:
        return [
            ("out", {"id": 1, "method": "mining.subscribe", "params": ["t"]}),
            ("in", {"id": 1, "result": [[], en1, 4], "error": None}),
            ("in", notify),
            ("out", {"id": 2, "method": "mining.authorize", "params": ["w", "***"]}),
            ("in", {"id": 2, "result": True, "error": None}),
            ("out", {"id": 3, "method": "mining.submit", "params": ["w", "j", "00000000", "6b0457f6", "00000001"]}),
            *([("in", {"id": 3, **verdict})] if verdict else []),
        ]

    lines = session("aaaaaaaa", {}) + session("bbbbbbbb", {"result": None, "error": [23, "Low difficulty", None]})
    path = tmp_path / "two.jsonl"
    path.write_text("".join(_record(d, m) + "\n" for d, m in lines))
    first, second = capture_shares(str(path))
    assert first.reply is None and first.extranonce == (bytes.fromhex("aaaaaaaa"), 4)
    assert second.extranonce == (bytes.fromhex("bbbbbbbb"), 4)
    assert second.verdict["code"] == 23 and second.verdict["stale"] is False
    walk = job_from_capture(str(path))  # none accepted: the last submit, with its error
    assert walk["extranonce1_hex"] == "bbbbbbbb" and walk["verdict"]["code"] == 23
    text = explain("job", str(path), "--share", "1")
    assert text.returncode == 0 and "no reply in the capture" in text.stdout


def test_rpc_wire_hook_records_each_call_and_reply(tmp_path: Path) -> None:
    """`miner solo --capture`: the node's RPC bodies, out and in, with the credentials only in the header."""
    from miner.rpc import RpcClient

    class Node(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            reply = json.dumps({"result": 101, "error": None, "id": body["id"]}).encode() + b"\n"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Node)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    path = tmp_path / "rpc.jsonl"
    try:
        with CaptureWriter(str(path)) as writer:
            rpc = RpcClient(f"http://tutor:s3cret@127.0.0.1:{server.server_port}", wire=writer)
            assert rpc.call("getblockcount") == 101
    finally:
        server.shutdown()
        server.server_close()
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["direction"] for r in records] == ["out", "in"]
    assert json.loads(records[0]["line"])["method"] == "getblockcount"
    assert json.loads(records[1]["line"])["result"] == 101
    assert "s3cret" not in path.read_text()
