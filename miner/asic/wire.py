"""The cgminer API's wire format: how api.c prints numbers, records, STATUS and joined replies, and how a
request's bytes become a command and its parameter.

Kept apart from the command handlers so that anything answering in cgminer's shape (this miner's server,
the farm simulator) renders exactly as cgminer does.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field

# --- values and records: cgminer prints each number type with its own format ---------------------------


@dataclass(frozen=True)
class Num:
    """A number printed the way api.c prints its type (``%.2f`` for MH/s, ``%.8f`` for difficulty...)."""

    value: float
    fmt: str

    def text(self) -> str:
        value = self.value if math.isfinite(self.value) else 0.0
        return self.fmt % value


def mhs(v: float) -> Num:
    return Num(v, "%.2f")


def diff(v: float) -> Num:
    return Num(v, "%.8f")


def diff_count(v: float) -> int | Num:
    """A difficulty total api.c prints as an integer (Best Share, Diff1 Work, Diff1 Shares).

    From 1 up, its whole part, as cgminer's integer counters (never more than was found). Below 1 (share
    difficulties under 1: regtest, test pools, a CPU's vardiff) the integer would read 0, as if nothing had
    been found; such a value is printed with difficulty precision instead, still a JSON number.
    """
    if not math.isfinite(v) or v <= 0:
        return 0
    return int(v) if v >= 1 else diff(v)


def percent(ratio: float) -> Num:
    return Num(ratio * 100.0, "%.4f")


def mhtotal(v: float) -> Num:
    return Num(v, "%.4f")


def timeval(v: float) -> Num:
    return Num(v, "%.6f")


Record = list[tuple[str, object]]


def json_value(value: object) -> str:
    if isinstance(value, Num):
        return value.text()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return Num(value, "%f").text()
    return json.dumps(str(value))


def escape_text(value: str) -> str:
    """cgminer's text-form escaping: a backslash before ``, | = \\``."""
    out = []
    for ch in value:
        if ch in ",|=\\":
            out.append("\\")
        out.append(ch)
    return "".join(out)


def text_value(value: object) -> str:
    if isinstance(value, Num):
        return value.text()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return Num(value, "%f").text()
    return escape_text(str(value))


def record_json(record: Record) -> str:
    return "{" + ",".join(f"{json.dumps(k)}:{json_value(v)}" for k, v in record) + "}"


def record_text(record: Record) -> str:
    return ",".join(f"{escape_text(k)}={text_value(v)}" for k, v in record) + "|"


def split_escaped(text: str, sep: str = ",", keep_escapes: bool = False) -> list[str]:
    """Split on ``sep``; a backslash makes the next character literal (api.c's copyadvanceafter).

    ``keep_escapes`` leaves the backslashes in the parts, for a second split.
    """
    parts, cur, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur.append(text[i : i + 2] if keep_escapes else text[i + 1])
            i += 2
            continue
        if ch == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


# --- status messages (codes and texts from api.c) -----------------------------------------------------------

MSG_POOL, MSG_NOPOOL, MSG_DEVS, MSG_NODEVS, MSG_SUMM = 7, 8, 9, 10, 11
MSG_INVCMD, MSG_VERSION, MSG_INVJSON, MSG_MISCMD, MSG_MISPID, MSG_INVPID, MSG_SWITCHP = 14, 22, 23, 24, 25, 26, 27
MSG_MINECONFIG, MSG_ACCDENY, MSG_ACCOK, MSG_ENAPOOL, MSG_DISPOOL = 33, 45, 46, 47, 48
MSG_ALRENAP, MSG_ALRDISP, MSG_DISLASTP, MSG_MISPDP, MSG_INVPDP, MSG_ADDPOOL = 49, 50, 51, 52, 53, 55
MSG_NUMPGA, MSG_NOTIFY, MSG_REMLASTP, MSG_ACTPOOL, MSG_REMPOOL, MSG_DEVDETAILS = 59, 60, 66, 67, 68, 69
MSG_MINESTATS, MSG_MISCHK, MSG_CHECK, MSG_POOLPRIO, MSG_DUPPID, MSG_MISBOOL, MSG_INVBOOL = 70, 71, 72, 73, 74, 75, 76
MSG_MINECOIN, MSG_ZERMIS, MSG_ZERINV, MSG_ZERSUM, MSG_ZERNOSUM, MSG_NUMASC, MSG_LCD = 78, 94, 95, 96, 97, 104, 125
MSG_MISID, MSG_PGANON, MSG_INVPGA, MSG_PGALRENA, MSG_PGALRDIS, MSG_PGAENA, MSG_PGADIS = 15, 56, 58, 61, 62, 63, 64
MSG_ASCNON, MSG_INVASC, MSG_ASCLRENA, MSG_ASCLRDIS, MSG_ASCENA, MSG_ASCDIS = 105, 107, 108, 109, 110, 111
MSG_PAUSE, MSG_RESUME = 200, 201  # BOSminer's own: cgminer has no pause


@dataclass
class Status:
    severity: str  # S success, I info, W warning, E error, F fatal
    code: int
    msg: str


def ok(code: int, msg: str) -> Status:
    return Status("S", code, msg)


def err(code: int, msg: str) -> Status:
    return Status("E", code, msg)


def info(code: int, msg: str) -> Status:
    return Status("I", code, msg)


@dataclass
class Result:
    """One command's reply: its STATUS and, for data commands, a section of records."""

    status: Status | None
    section: str | None = None
    records: list[Record] = field(default_factory=list)
    text_header: bool = False  # single-record sections print "SUMMARY," before the record in text form
    action: str | None = None  # "BYE" / "RESTART": cgminer's bare replies to quit and restart
    after: Callable[[], None] | None = None  # runs once the reply is sent (quit, restart)


@dataclass
class Stamp:
    """What every STATUS record carries besides the status: the reply's time and the server's description."""

    when: int
    description: str


# --- rendering ------------------------------------------------------------------------------------------


def status_record(status: Status, ctx: Stamp) -> Record:
    return [
        ("STATUS", status.severity),
        ("When", ctx.when),
        ("Code", status.code),
        ("Msg", status.msg),
        ("Description", ctx.description),
    ]


def render_json(result: Result, ctx: Stamp) -> str:
    if result.action:
        return '{"STATUS":' + json.dumps(result.action) + ',"id":1}'
    out = '{"STATUS":[' + record_json(status_record(result.status, ctx)) + "]"
    if result.section is not None:
        out += "," + json.dumps(result.section) + ":[" + ",".join(record_json(r) for r in result.records) + "]"
    return out + ',"id":1}'


def render_text(result: Result, ctx: Stamp) -> str:
    if result.action:
        return result.action
    out = record_text(status_record(result.status, ctx))
    if result.section is not None:
        if result.text_header:
            out += result.section + ","
        out += "".join(record_text(r) for r in result.records)
    return out


def render(result: Result, ctx: Stamp, isjson: bool) -> str:
    return render_json(result, ctx) if isjson else render_text(result, ctx)


def render_joined(parts: list[tuple[str, Result]], ctx: Stamp, isjson: bool) -> str:
    """cgminer's joined form: {"cmd1":[{reply1}],"cmd2":[{reply2}],"id":1} or CMD=cmd1|reply1CMD=cmd2|..."""
    if isjson:
        body = ",".join(json.dumps(name) + ":[" + render_json(res, ctx) + "]" for name, res in parts)
        return "{" + body + ',"id":1}'
    return "".join(f"CMD={escape_text(name)}|" + render_text(res, ctx) for name, res in parts)


# --- request handling -----------------------------------------------------------------------------------


def parse_request(data: bytes) -> tuple[bool, str | None, str | None, Result | None]:
    """(isjson, command, parameter, error) from the raw request bytes."""
    text = data.split(b"\0", 1)[0].decode("utf-8", errors="replace").strip()
    if not text.startswith("{"):
        command, sep, param = text.partition("|")
        return False, command.strip(), (param if sep else None), None
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        return True, None, None, Result(err(MSG_INVJSON, "Invalid JSON"))
    if not isinstance(obj, dict):
        return True, None, None, Result(err(MSG_INVJSON, "Invalid JSON"))
    if "command" not in obj:
        return True, None, None, Result(err(MSG_MISCMD, "Missing JSON 'command'"))
    command = obj["command"]
    if not isinstance(command, str):
        return True, None, None, Result(err(MSG_INVCMD, "Invalid command"))
    raw = obj.get("parameter")
    if isinstance(raw, bool) or raw is None:
        param = None
    elif isinstance(raw, str):
        param = raw
    elif isinstance(raw, int):
        param = str(raw)
    elif isinstance(raw, float):
        param = f"{raw:f}" if math.isfinite(raw) else None
    else:
        param = None  # api.c ignores parameters of other types
    return True, command, param, None
