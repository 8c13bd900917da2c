"""How tests run the ``miner`` command as a user would: the console script of the Python running the tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

_SCRIPT = Path(sys.executable).with_name("miner")

# The script installed beside this interpreter, not whatever ``miner`` is first on PATH: a global
# install must never stand in for the checkout under test.
MINER: list[str] = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "miner"]


def backend() -> str:
    """The numba CPU backend where it runs here, else the pure-Python reference one."""
    try:
        from kernels import get_backend

        get_backend("cpu")
        return "cpu"
    except Exception:
        return "reference"


def api_reply(port: int, command: str, parameter: str | None = None) -> str:
    """One cgminer API request, as a client sends it: JSON in, the reply's text (JSON before a NUL byte) back."""
    request = {"command": command, **({"parameter": parameter} if parameter is not None else {})}
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(json.dumps(request).encode())
        reply = b""
        while not reply.endswith(b"\0"):
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
    return reply.rstrip(b"\0").decode()


def api_request(port: int, command: str, parameter: str | None = None) -> dict:
    return json.loads(api_reply(port, command, parameter))


def run_until(
    args: list[str], until: Callable[[], bool], timeout: float = 90.0, stderr_lines: list[str] | None = None
) -> tuple[int, str, str]:
    """Run ``miner ARGS`` as a user would until ``until()`` holds (or it exits on its own), then stop it with
    SIGTERM, which ends a run with its summary and exit 0. (exit code, stdout, stderr).

    A run stopped on an event rather than after a fixed ``--duration`` holds on a busy machine; ``timeout``
    is a ceiling for a stuck run, after which the test sees whatever the miner said. ``stderr_lines``, where
    given, fills with stderr's lines as they come, for an ``until`` that reads the log."""
    proc = subprocess.Popen(
        [*MINER, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    out: list[str] = []
    err: list[str] = stderr_lines if stderr_lines is not None else []
    readers = [
        threading.Thread(target=lambda: out.extend(proc.stdout), daemon=True),  # type: ignore[arg-type]
        threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True),  # type: ignore[arg-type]
    ]
    for reader in readers:
        reader.start()
    try:
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline and not until():
            time.sleep(0.05)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for reader in readers:
            reader.join(10)
    return proc.returncode, "".join(out), "".join(err)
