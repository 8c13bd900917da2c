"""A small JSON-RPC client for bitcoind, with errors a user can act on.

Credentials come from the URL (``http://user:pass@host:port``) or from the
node's cookie file (``__cookie__:secret``). Every failure is an
:class:`RpcFailure` whose message is one line: the node is down, the
credentials are wrong, or the node answered with an RPC error.
"""

from __future__ import annotations

import http.client
import itertools
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import requests

from stratum.client import redact_url

DEFAULT_TIMEOUT = 30.0


class RpcFailure(Exception):
    """Any failed call; ``str()`` is one line for the user."""


class RpcConnectionError(RpcFailure):
    """The node could not be reached (down, refused, timed out)."""


class RpcAuthError(RpcFailure):
    """HTTP 401/403: wrong credentials or not allowed from here."""


class RpcError(RpcFailure):
    """The node answered the call with a JSON-RPC error object."""

    def __init__(self, method: str, code: int, message: str) -> None:
        super().__init__(f"{method}: {message} (code {code})")
        self.method = method
        self.code = code
        self.message = message


COOKIE_FORM = "a node's .cookie holds one line, __cookie__:PASSWORD (in its data directory)"


def read_cookie(path: str | Path) -> tuple[str, str]:
    """(user, password) from a bitcoind ``.cookie`` file."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise RpcAuthError(f"cannot read RPC cookie file {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise RpcAuthError(f"RPC cookie file {path} is not text; {COOKIE_FORM}") from None
    user, sep, password = text.partition(":")
    if not sep:
        raise RpcAuthError(f"RPC cookie file {path} is not in user:password form; {COOKIE_FORM}")
    return user, password


#: P2P port -> (network, its RPC port): an RPC URL on a P2P port gets 127.0.0.1 banned by the node
P2P_PORTS = {
    8333: ("mainnet", 8332),
    18333: ("testnet3", 18332),
    48333: ("testnet4", 48332),
    38333: ("signet", 38332),
    18444: ("regtest", 18443),
}
RPC_PORTS_HINT = "mainnet 8332, testnet 18332, signet 38332, regtest 18443"


def _not_http(exc: BaseException) -> bool:
    """Whether a requests failure means the peer took the connection but did not speak HTTP."""
    seen, todo = set(), [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, (http.client.RemoteDisconnected, http.client.BadStatusLine, ConnectionResetError)):
            return True
        todo += [a for a in getattr(e, "args", ()) if isinstance(a, BaseException)]
        todo += [c for c in (e.__cause__, e.__context__) if c is not None]
    return False


def parse_rpc_url(url: str) -> tuple[str, tuple[str, str] | None]:
    """(URL without credentials, (user, password) or None); ValueError if unusable."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    url = redact_url(url)  # the messages below quote it
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"RPC URL must start with http:// or https://, got {url!r}")
    if not parts.hostname:
        raise ValueError(f"RPC URL has no host: {url!r}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"RPC URL has a bad port: {url!r}") from None
    if port in P2P_PORTS:
        network, rpc_port = P2P_PORTS[port]
        raise ValueError(
            f"RPC URL {url!r}: port {port} is the {network} P2P port, not the RPC port "
            f"(the {network} RPC port is {rpc_port}); a node bans clients that speak HTTP to its P2P port"
        )
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    netloc = host if port is None else f"{host}:{port}"
    clean = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    auth = None
    if parts.username is not None:
        auth = (unquote(parts.username), unquote(parts.password or ""))
    return clean, auth


class RpcClient:
    """Thread-safe: each thread gets its own HTTP session (long polls block theirs).

    ``wire``, when given, sees each call's JSON-RPC body as sent ("out") and the node's reply body as
    received ("in"); the credentials travel in the HTTP header, never in either. It is called from the
    calling thread, so a hook shared by threads (a long poll's and the miner's) must lock.
    """

    def __init__(
        self,
        url: str,
        cookie_file: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        wire: Callable[[str, str], None] | None = None,
    ) -> None:
        self.url, auth = parse_rpc_url(url)
        self.wire = wire
        self.cookie_file = cookie_file
        self._url_auth = auth
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._local = threading.local()

    def _auth(self) -> tuple[str, str] | None:
        # Re-read the cookie every call: the node writes a new one when it restarts.
        if self.cookie_file:
            return read_cookie(self.cookie_file)
        return self._url_auth

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def call(self, method: str, *params: Any, timeout: float | None = None) -> Any:
        """Call ``method``; the result, or an RpcFailure subclass."""
        body = {"jsonrpc": "1.0", "id": next(self._ids), "method": method, "params": list(params)}
        data = json.dumps(body)
        self._tap("out", data)
        try:
            response = self._session().post(
                self.url,
                data=data.encode(),
                headers={"Content-Type": "application/json"},
                auth=self._auth(),
                timeout=self.timeout if timeout is None else timeout,
            )
        except requests.Timeout:
            raise RpcConnectionError(f"node at {self.url} did not answer {method} in time") from None
        except requests.ConnectionError as exc:
            self._local.session = None
            if _not_http(exc):
                raise RpcConnectionError(
                    f"{self.url} took the connection but gave no HTTP reply: this looks like a node's P2P port "
                    f"or another service, not its RPC port ({RPC_PORTS_HINT})"
                ) from None
            raise RpcConnectionError(f"cannot connect to node at {self.url} (is bitcoind running?)") from None
        except requests.RequestException as exc:
            raise RpcConnectionError(f"request to node at {self.url} failed: {type(exc).__name__}") from None
        self._tap("in", response.text.rstrip("\n"))
        if response.status_code == 401:
            raise RpcAuthError(f"node at {self.url} rejected the RPC credentials (HTTP 401)")
        if response.status_code == 403:
            raise RpcAuthError(f"node at {self.url} refused RPC from this address (HTTP 403)")
        try:
            reply = response.json()
        except ValueError:
            raise RpcFailure(
                f"node at {self.url} answered {method} with HTTP {response.status_code} and no JSON"
            ) from None
        if not isinstance(reply, dict):
            raise RpcFailure(f"node at {self.url} answered {method} with malformed JSON-RPC")
        error = reply.get("error")
        if error:
            if isinstance(error, dict):
                raise RpcError(method, int(error.get("code", 0) or 0), str(error.get("message", "")).strip())
            raise RpcError(method, 0, str(error))
        if response.status_code != 200:
            raise RpcFailure(f"node at {self.url} answered {method} with HTTP {response.status_code}")
        return reply.get("result")

    def _tap(self, direction: str, text: str) -> None:
        if self.wire is not None:
            try:
                self.wire(direction, text)
            except Exception:  # a capture that fails must not fail the call
                pass

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *params, **kw: self.call(name, *params, **kw)
