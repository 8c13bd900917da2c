"""Client side of the cgminer API: query one miner, or a whole fleet concurrently.

Firmware in the field bends the format: some omit the closing NUL, old bmminer glues objects together
(``}{``), some leave trailing commas or answer in the ``key=value,`` text form. ``parse_reply`` accepts all
of these, so one fleet view covers cgminer, bmminer (Antminer), Avalon and this miner alike.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from miner.api import split_escaped

DEFAULT_PORT = 4028
MAX_REPLY = 16 * 1024 * 1024  # a reply larger than this is not an API reply
MAX_SUBNET_HOSTS = 65536


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
    if not host:
        raise ValueError(f"invalid host '{text}'")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"invalid port in '{text}'")
    return host, int(port_text)


def subnet_hosts(cidr: str) -> list[str]:
    """The usable host addresses of a CIDR block (all of them for /31 and /32)."""
    try:
        net = ipaddress.ip_network(cidr.strip(), strict=False)
    except ValueError:
        raise ValueError(f"invalid subnet '{cidr}'") from None
    if net.num_addresses > MAX_SUBNET_HOSTS + 2:
        raise ValueError(f"subnet '{cidr}' has more than {MAX_SUBNET_HOSTS} hosts")
    hosts = [str(ip) for ip in net.hosts()]
    return hosts or [str(net.network_address)]


def read_hosts_file(path: str) -> list[str]:
    """One HOST[:PORT] (or CIDR block) per line; blank lines and ``#`` comments are skipped."""
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise ValueError(f"cannot read hosts file '{path}': {exc.strerror}") from None
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


def expand_targets(
    hosts: Iterable[str] = (), hosts_file: str | None = None, subnet: str | None = None, port: int = DEFAULT_PORT
) -> list[tuple[str, int]]:
    """Every (host, port) named by arguments, a hosts file and a subnet, in order, without duplicates."""
    items = list(hosts)
    if hosts_file:
        items += read_hosts_file(hosts_file)
    out: list[tuple[str, int]] = []
    for item in items:
        if "/" in item:
            out += [(h, port) for h in subnet_hosts(item)]
        else:
            out.append(parse_target(item, port))
    if subnet:
        out += [(h, port) for h in subnet_hosts(subnet)]
    seen: set[tuple[str, int]] = set()
    return [t for t in out if not (t in seen or seen.add(t))]


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


# --- fleet ----------------------------------------------------------------------------------------------


def _num(value) -> float | None:
    if value is None:
        return None
    try:
        return float(str(value).strip() or "nan")
    except ValueError:
        return None


def hashrate_ghs(summary: dict) -> float | None:
    """The short-window hash rate in GH/s from a SUMMARY record, whatever units the firmware uses.

    cgminer names its short window after --log-interval ("MHS 5s", "MHS 30s"); the average is the fallback.
    """
    scales = {"THS": 1e3, "GHS": 1.0, "MHS": 1e-3, "KHS": 1e-6}
    short, average = [], []
    for key, value in summary.items():
        match = re.fullmatch(r"([TGMK]HS) (\d+s|av)", str(key))
        v = _num(value)
        if match and v is not None and v == v:
            (average if match.group(2) == "av" else short).append(v * scales[match.group(1)])
    for found in (short, average):
        if found:
            return found[0]
    return None


@dataclass
class FleetRow:
    host: str
    port: int
    reachable: bool
    status: str  # "ok", the miner's own error message, or why it could not be reached
    miner_type: str = ""
    ghs: float | None = None
    accepted: int | None = None
    rejected: int | None = None
    hw_errors: int | None = None
    pool: str = ""
    elapsed: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _first(reply: dict | None, section: str) -> dict:
    if not reply:
        return {}
    records = reply.get(section)
    if isinstance(records, list) and records and isinstance(records[0], dict):
        return records[0]
    return records if isinstance(records, dict) else {}


def _miner_type(version: dict | None, summary: dict | None) -> str:
    rec = _first(version, "VERSION")
    for key in ("Type", "Miner", "BMMiner", "CGMiner", "BFGMiner", "SGMiner"):
        if rec.get(key):
            name = str(rec[key])
            if key in ("BMMiner", "CGMiner", "BFGMiner", "SGMiner"):
                name = f"{key} {name}"
            return name
    for reply in (summary, version):
        status = (reply or {}).get("STATUS")
        if isinstance(status, list) and status and isinstance(status[0], dict) and status[0].get("Description"):
            return str(status[0]["Description"])
    return ""


def _active_pool(pools: dict | None) -> str:
    records = (pools or {}).get("POOLS")
    if not isinstance(records, list):
        return ""
    records = [r for r in records if isinstance(r, dict)]
    for rec in records:
        if rec.get("Stratum Active") in (True, "true", "True"):
            return str(rec.get("URL", ""))
    alive = [r for r in records if r.get("Status") == "Alive"]
    alive.sort(key=lambda r: _num(r.get("Priority")) or 0)
    return str(alive[0].get("URL", "")) if alive else ""


def _int(value) -> int | None:
    v = _num(value)
    return int(v) if v is not None and v == v else None


def fleet_row(host: str, port: int, timeout: float = 3.0) -> FleetRow:
    """One miner's summary: a joined summary+pools+version request, separate requests where unsupported."""
    commands = ["summary", "pools", "version"]
    try:
        reply = query(host, port, "+".join(commands), timeout=timeout)
    except ApiError as exc:
        return FleetRow(host, port, False, str(exc))
    parts = split_joined(reply, commands)
    if "summary" not in parts:  # no joined commands on this firmware: ask one by one
        for cmd in commands:
            try:
                parts[cmd] = query(host, port, cmd, timeout=timeout)
            except ApiError as exc:
                if cmd == "summary":
                    return FleetRow(host, port, False, str(exc))
    summary = parts.get("summary")
    sev, _code, msg = reply_status(summary or {})
    rec = _first(summary, "SUMMARY")
    row = FleetRow(host, port, True, "ok" if sev in ("S", "I") and rec else (msg or "no summary"))
    row.miner_type = _miner_type(parts.get("version"), summary)
    row.ghs = hashrate_ghs(rec)
    row.accepted = _int(rec.get("Accepted"))
    row.rejected = _int(rec.get("Rejected"))
    row.hw_errors = _int(rec.get("Hardware Errors"))
    row.elapsed = _int(rec.get("Elapsed"))
    row.pool = _active_pool(parts.get("pools"))
    return row


def fleet_summary(targets: list[tuple[str, int]], timeout: float = 3.0, workers: int = 64) -> list[FleetRow]:
    """Every target's summary, queried concurrently; results in the targets' order."""
    if not targets:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(targets)))) as pool:
        return list(pool.map(lambda t: fleet_row(t[0], t[1], timeout), targets))


@dataclass
class ControlResult:
    host: str
    port: int
    ok: bool
    message: str

    def to_dict(self) -> dict:
        return asdict(self)


def control_one(host: str, port: int, command: str, parameter: str | None, timeout: float = 5.0) -> ControlResult:
    try:
        reply = query(host, port, command, parameter, timeout)
    except ApiError as exc:
        return ControlResult(host, port, False, str(exc))
    sev, code, msg = reply_status(reply)
    if code is None and msg in ("BYE", "RESTART"):
        return ControlResult(host, port, True, msg)
    ok = sev in ("S", "I")
    return ControlResult(host, port, ok, f"{msg} (code {code})" if code is not None else msg)


def fleet_control(
    targets: list[tuple[str, int]], command: str, parameter: str | None = None, timeout: float = 5.0, workers: int = 64
) -> list[ControlResult]:
    """Send one privileged command to every target concurrently; each host's own verdict."""
    if not targets:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(targets)))) as pool:
        return list(pool.map(lambda t: control_one(t[0], t[1], command, parameter, timeout), targets))


def escape_param(value: str) -> str:
    """Escape ``,`` and ``\\`` so a value survives addpool's comma split."""
    return value.replace("\\", "\\\\").replace(",", "\\,")
