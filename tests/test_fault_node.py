"""Solo mode: the node stopped and restarted under a running ``miner solo`` (the real command, a subprocess).

The miner must keep running through each outage, say so in single lines,
come back to mining blocks the node accepts, and never submit a block twice.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time

from commands import MINER, backend
from test_gbt import FakeNode

REGTEST_ADDRESS = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"
OUTAGES = 3


def submitted_blocks(node: FakeNode) -> list[str]:
    return [params[0] for method, params in list(node.calls) if method == "submitblock"]


def start_solo(node: FakeNode) -> subprocess.Popen:
    cmd = [*MINER, "solo", "--rpc-url", node.url]
    cmd += ["--address", REGTEST_ADDRESS, "-b", backend(), "-t", "1", "--json"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_node_stopped_and_restarted_mid_run() -> None:
    node = FakeNode().start()
    port = node.port
    proc = start_solo(node)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(ln.rstrip("\n") for ln in proc.stderr), daemon=True)
    reader.start()
    deadline = time.monotonic() + 60
    accepted_after: list[int] = []
    try:
        for _ in range(OUTAGES):
            before = len(node.blocks)
            while len(node.blocks) == before and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.05)
            node.stop()
            time.sleep(1.5)
            assert proc.poll() is None, "miner solo exited during a node outage"
            node.start(port)
            restarted = len(node.blocks)
            while len(node.blocks) == restarted and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.05)
            accepted_after.append(len(node.blocks) - restarted)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        node.stop()
    reader.join(2)
    text = "\n".join(lines)
    assert "Traceback" not in text
    assert sum("retry" in line or "cannot connect" in line for line in lines) >= OUTAGES, lines[-10:]
    assert all(n > 0 for n in accepted_after), (accepted_after, lines[-10:])
    blocks = submitted_blocks(node)
    accepted_hex = [b.hex() for b in node.blocks]
    assert len(set(accepted_hex)) == len(accepted_hex), "a block was accepted twice"
    assert len(blocks) == len(set(blocks)), "a block was submitted twice"
    assert any("{" in line for line in out.splitlines()), out


def test_sigterm_to_solo_prints_the_summary() -> None:
    node = FakeNode().start()
    proc = start_solo(node)
    try:
        deadline = time.monotonic() + 30
        while not node.blocks and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        arrivals: list[float] = []  # when each stdout line came: the summary ends the miner's own stop

        def read_out() -> None:
            for line in proc.stdout:
                lines.append(line)
                arrivals.append(time.monotonic())

        lines: list[str] = []
        reader = threading.Thread(target=read_out, daemon=True)
        started = time.monotonic()
        reader.start()
        proc.send_signal(signal.SIGTERM)
        err = proc.stderr.read()
        proc.wait(timeout=15)
        reader.join(10)
        out = "".join(lines)
        elapsed = (arrivals[-1] if arrivals else time.monotonic()) - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        node.stop()
    assert "Traceback" not in err
    assert proc.returncode == 0 and any(line.startswith("{") for line in out.splitlines()), (proc.returncode, out)
    assert elapsed <= 2.0  # one batch and the node's reply at most; margin for a loaded 2-core machine
