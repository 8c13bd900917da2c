"""The cgminer-compatible API server: the RPC that cgminer, bmminer and most ASIC firmware serve on TCP 4028.

Farm tools already speak this protocol, so matching cgminer's api.c (wire format, status codes, messages,
field names and number formats) lets them read and drive this miner unchanged:

- one request per connection: JSON ``{"command": "summary", "parameter": ""}`` or text ``summary`` /
  ``switchpool|1``; the reply ends with one NUL byte and the server closes the connection;
- joined commands (``summary+devs+pools``) answer with cgminer's joined form;
- ``--api-allow`` entries ``[W:]address[/prefix]`` (access.py).

The wire format is in wire.py and the commands in commands.py; this module is the TCP side.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable

from miner.asic.access import client_access, parse_allow
from miner.asic.commands import MinerControl, handle_request

MAX_REQUEST = 8192  # cgminer reads at most this much of a request


class ApiServer:
    """The API on a background thread; one short-lived thread per connection, capped."""

    def __init__(
        self,
        control: MinerControl,
        host: str = "127.0.0.1",
        port: int = 4028,
        allow: str | None = None,
        read_timeout: float = 5.0,
        max_connections: int = 16,
        description: str | None = None,
    ) -> None:
        self.control = control
        self.host = host
        self.port = port
        self.allow = parse_allow(allow) if allow else None
        self.read_timeout = read_timeout
        self.description = description
        self._slots = threading.BoundedSemaphore(max_connections)
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.requests = 0

    def start(self) -> None:
        """Bind and listen, then serve in the background; OSError if the address is taken."""
        infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _, _, _, sockaddr = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(sockaddr)
            sock.listen(100)
        except OSError:
            sock.close()
            raise
        sock.settimeout(0.2)
        self._sock = sock
        self.port = sock.getsockname()[1]
        self._thread = threading.Thread(target=self._accept_loop, name="api-accept", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked accept() at once on Linux
            except OSError:
                pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(2.0)
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> ApiServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        sock = self._sock
        while not self._stopping.is_set():
            try:
                conn, addr = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                time.sleep(0.05)  # e.g. out of file descriptors: back off, keep serving
                continue
            while not self._slots.acquire(timeout=0.2):  # at the cap: wait for a slot
                if self._stopping.is_set():
                    conn.close()
                    return
            threading.Thread(target=self._serve, args=(conn, addr), name="api-conn", daemon=True).start()

    def _serve(self, conn: socket.socket, addr) -> None:
        after: list[Callable[[], None]] = []
        try:
            privileged = client_access(addr[0], self.allow)
            if privileged is None:
                return  # not allowed: close without a reply, as cgminer does
            data = self._read_request(conn)
            if not data:
                return
            reply, after = handle_request(data, self.control, privileged, self.description)
            self.requests += 1
            conn.settimeout(self.read_timeout)
            conn.sendall(reply)
            conn.shutdown(socket.SHUT_WR)
            self._drain(conn)
        except OSError:
            pass
        finally:
            conn.close()
            self._slots.release()
            for action in after:
                threading.Thread(target=action, name="api-action", daemon=True).start()

    def _read_request(self, conn: socket.socket) -> bytes:
        """Read one request: a text command is what the first read brings (as api.c); JSON is read until
        it parses, a NUL or newline ends it, the peer closes, 8 KiB arrive or the read times out."""
        deadline = time.monotonic() + self.read_timeout
        buf = b""
        while len(buf) < MAX_REQUEST:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            conn.settimeout(remaining)
            try:
                chunk = conn.recv(MAX_REQUEST - len(buf))
            except TimeoutError:
                break
            if not chunk:
                break
            buf += chunk
            if not buf.lstrip().startswith(b"{") or b"\0" in buf or b"\n" in buf:
                break
            try:
                json.loads(buf.decode("utf-8", errors="replace"))
                break
            except ValueError:
                continue
        return buf[:MAX_REQUEST]

    @staticmethod
    def _drain(conn: socket.socket) -> None:
        """Read what the client still sends so closing does not reset the connection before it reads."""
        conn.settimeout(0.2)
        try:
            for _ in range(64):
                if not conn.recv(65536):
                    return
        except OSError:
            return
