"""Client side of the cgminer API: send one request to one miner and read its reply, whatever the firmware.

Firmware in the field bends the format: some omit the closing NUL, old bmminer glues objects together
(``}{``), some leave trailing commas or answer in the ``key=value,`` text form. ``parse_reply`` accepts all
of these, so one fleet view covers cgminer, bmminer (Antminer), Avalon and this miner alike.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time

from miner.asic.wire import split_escaped

DEFAULT_PORT = 4028
MAX_REPLY = 16 * 1024 * 1024  # a reply larger than this is not an API reply
_HOST = re.compile(r"[A-Za-z0-9._-]+|[0-9A-Fa-f:.]+(%[A-Za-z0-9._-]+)?")  # a name, IPv4, or IPv6 with its zone


class ApiError(Exception):
    """A host could not be queried: refused, timed out, or its reply was not an API reply."""


# --- addresses ------------------------------------------------------------------------------------------


def parse_target(text: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``[V6]:PORT`` or a bare IPv6 address -> (host, port)."""
    text = text.strip()
    if not text:
        raise ValueError("empty host")
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    if not host or not _HOST.fullmatch(host):
        raise ValueError(f"invalid host '{text}' (expected HOST[:PORT], [IPV6]:PORT or a CIDR block)")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"invalid port in '{text}'")
    return host, int(port_text)


# --- the wire -------------------------------------------------------------------------------------------


def send_raw(host: str, port: int, payload: bytes, timeout: float = 5.0) -> bytes:
    """Send one request and read the reply until the NUL, the peer closing, or the timeout."""
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(payload)
            buf = bytearray()
            while len(buf) < MAX_REPLY:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    if buf:
                        break  # a reply without its NUL, from a server that keeps the connection open
                    raise ApiError("timed out waiting for a reply")
                sock.settimeout(remaining)
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    if buf:
                        break
                    raise ApiError("timed out waiting for a reply") from None
                if not chunk:
                    break
                buf += chunk
                if b"\0" in chunk:
                    break
    except ApiError:
        raise
    except ConnectionRefusedError:
        raise ApiError("connection refused") from None
    except TimeoutError:
        raise ApiError("timed out") from None
    except socket.gaierror as exc:
        raise ApiError(f"cannot resolve host: {exc.strerror}") from None
    except OSError as exc:
        raise ApiError(exc.strerror or str(exc)) from None
    if not buf:
        raise ApiError("closed without a reply")
    return bytes(buf)


def query(host: str, port: int, command: str, parameter: str | None = None, timeout: float = 5.0) -> dict:
    """Send ``command`` in the JSON form; the parsed reply (see :func:`parse_reply`)."""
    request: dict = {"command": command}
    if parameter is not None:
        request["parameter"] = parameter
    return parse_reply(send_raw(host, port, json.dumps(request).encode(), timeout))


def request_bytes(command: str, parameter: str | None = None) -> bytes:
    request: dict = {"command": command}
    if parameter is not None:
        request["parameter"] = parameter
    return json.dumps(request).encode()


class _Exchange(asyncio.Protocol):
    """One request and its reply on a bare asyncio protocol: a sweep makes thousands of these, and streams
    (a reader, a writer and their protocol per connection) cost a third more CPU."""

    def __init__(self, payload: bytes, done: asyncio.Future) -> None:
        self.payload = payload
        self.done = done
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.payload)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if b"\0" in data or len(self.buf) >= MAX_REPLY:
            self._finish(None)

    def eof_received(self) -> bool:
        self._finish(None)
        return False

    def connection_lost(self, exc) -> None:
        self._finish(exc)

    def _finish(self, exc) -> None:
        if not self.done.done():
            if exc is None:
                self.done.set_result(None)
            else:
                self.done.set_exception(exc)


async def _exchange(host: str, port: int, proto: _Exchange) -> None:
    loop = asyncio.get_running_loop()
    await loop.create_connection(lambda: proto, host, port)
    await proto.done


async def send_async(host: str, port: int, payload: bytes, timeout: float = 5.0) -> bytes:
    """:func:`send_raw` on asyncio, for sweeps over thousands of hosts from one thread.

    The whole exchange (connect, send, read) has ``timeout``; a reply that came without its NUL from a
    server that keeps the connection open is returned as it stands when the time runs out.
    """
    proto = _Exchange(payload, asyncio.get_running_loop().create_future())
    try:
        if hasattr(asyncio, "timeout"):  # 3.11: no task per exchange
            async with asyncio.timeout(timeout):
                await _exchange(host, port, proto)
        else:
            await asyncio.wait_for(_exchange(host, port, proto), timeout)
    except asyncio.TimeoutError:
        if not proto.buf:
            raise ApiError("timed out" if proto.transport is None else "timed out waiting for a reply") from None
    except ConnectionRefusedError:
        raise ApiError("connection refused") from None
    except socket.gaierror as exc:
        raise ApiError(f"cannot resolve host: {exc.strerror}") from None
    except OSError as exc:
        if not proto.buf:
            raise ApiError(exc.strerror or str(exc)) from None
    finally:
        if proto.transport is not None:
            proto.transport.close()
    if not proto.buf:
        raise ApiError("closed without a reply")
    return bytes(proto.buf[:MAX_REPLY])


async def query_async(host: str, port: int, command: str, parameter: str | None = None, timeout: float = 5.0) -> dict:
    return parse_reply(await send_async(host, port, request_bytes(command, parameter), timeout))


# --- lenient parsing ------------------------------------------------------------------------------------

_TRAILING_COMMA = re.compile(r",\s*([}\]])")


def _split_objects(text: str) -> list[str]:
    """Top-level JSON objects glued together (``{..}{..}``), split by brace depth outside strings."""
    parts, depth, start, in_str, esc = [], 0, None, False, False
    for i, ch in enumerate(text):
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
            continue
        if ch == '"':
            in_str = True
        elif ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth > 0:
            depth -= 1
            if depth == 0 and start is not None:
                parts.append(text[start : i + 1])
                start = None
    return parts


def _loads_lenient(text: str):
    for candidate in (text, _TRAILING_COMMA.sub(r"\1", text)):
        try:
            return json.loads(candidate, strict=False)
        except ValueError:
            pass
    fixed = _TRAILING_COMMA.sub(r"\1", text.replace("}{", "},{"))
    try:
        return json.loads(fixed, strict=False)
    except ValueError:
        pass
    objects = _split_objects(text)
    if len(objects) > 1:
        parsed = [_loads_lenient(obj) for obj in objects]
        return {"_objects": parsed}
    raise ApiError("reply is not valid JSON")


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def _text_value(value: str):
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def parse_text_reply(text: str) -> dict:
    """The ``STATUS=S,...|SUMMARY,Elapsed=5,...|`` form, as the JSON form's dict."""
    reply: dict = {}
    section = None
    joined: dict = {}
    current = reply
    for record in split_escaped(text.strip(), "|", keep_escapes=True):
        if not record:
            continue
        fields = split_escaped(record, ",", keep_escapes=True)
        if fields[0].startswith("CMD=") and len(fields) == 1:
            current = joined.setdefault(_unescape(fields[0][4:]), {})
            continue
        name = None
        if "=" not in fields[0] or fields[0].startswith("\\"):
            name, fields = _unescape(fields[0]), fields[1:]
        obj = {}
        for item in fields:
            key, _, value = item.partition("=")
            obj[_unescape(key)] = _text_value(_unescape(value))
        if "STATUS" in obj and name is None and "When" in obj:
            current["STATUS"] = [obj]
            section = None
            continue
        if name is None:
            first = next(iter(obj), None)
            name = section or {"POOL": "POOLS", "STATS": "STATS", "NOTIFY": "NOTIFY", "DEVDETAILS": "DEVDETAILS"}.get(
                first, "DEVS"
            )
        section = name
        current.setdefault(name, []).append(obj)
    if joined:
        return {cmd: [obj] for cmd, obj in joined.items()}
    return reply


def parse_reply(raw: bytes) -> dict:
    """A reply as a dict, tolerating the firmware quirks named in this module's docstring.

    Glued objects that cannot be merged come back as ``{"_objects": [...]}``.
    """
    text = raw.replace(b"\0", b"").decode("utf-8", errors="replace").strip()
    if not text:
        raise ApiError("empty reply")
    if text[0] in "{[":
        obj = _loads_lenient(text)
        if isinstance(obj, list) and obj and all(isinstance(o, dict) for o in obj):
            return {"_objects": obj}
        if not isinstance(obj, dict):
            raise ApiError("reply is not a JSON object")
        return obj
    if "=" in text:
        return parse_text_reply(text)
    if text in ("BYE", "RESTART"):
        return {"STATUS": text}
    raise ApiError("reply is neither JSON nor the text form")


def reply_status(reply: dict) -> tuple[str, int | None, str]:
    """(severity, code, message) of a reply; ("S", None, "BYE") for quit's bare reply."""
    status = reply.get("STATUS")
    if isinstance(status, str):
        return "S", None, status
    if isinstance(status, list) and status and isinstance(status[0], dict):
        st = status[0]
        code = st.get("Code")
        try:
            code = int(code) if code is not None else None
        except (TypeError, ValueError):
            code = None
        return str(st.get("STATUS", "?")), code, str(st.get("Msg", st.get("msg", "")))
    if "_objects" in reply:
        return reply_status(reply["_objects"][0]) if reply["_objects"] else ("?", None, "")
    return "?", None, ""


def split_joined(reply: dict, commands: list[str]) -> dict[str, dict]:
    """Each command's own reply from a joined request, whatever shape the firmware answered in."""
    out: dict[str, dict] = {}
    for cmd in commands:
        part = reply.get(cmd)
        if isinstance(part, list) and part and isinstance(part[0], dict):
            out[cmd] = part[0]
        elif isinstance(part, dict):
            out[cmd] = part
    if out:
        return out
    objects = reply["_objects"] if "_objects" in reply else [reply]
    for obj in objects:
        if not isinstance(obj, dict):
            continue
        for cmd in commands:
            if cmd.upper() in obj and cmd not in out:
                out[cmd] = obj
    return out


def escape_param(value: str) -> str:
    """Escape ``,`` and ``\\`` so a value survives addpool's comma split."""
    return value.replace("\\", "\\\\").replace(",", "\\,")
