"""A fleet of miners: the hosts a farm names (arguments, hosts files, subnets), and each one's summary or
verdict on a control command, queried concurrently.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

from miner.asic.client import DEFAULT_PORT, ApiError, parse_target, query_async, reply_status, split_joined
from miner.asic.models import estimate_watts

MAX_SUBNET_HOSTS = 65536
MAX_HOSTS_FILE = 64 * 2**20  # bytes: far past any farm's list, short of reading a disk image


# --- addresses ------------------------------------------------------------------------------------------


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


def _entry_targets(entry: str, port: int) -> list[tuple[str, int]]:
    """One HOST[:PORT] or CIDR entry as the (host, port) pairs it names."""
    if "/" in entry:
        return [(h, port) for h in subnet_hosts(entry)]
    return [parse_target(entry, port)]


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def read_hosts_file(path: str, port: int = DEFAULT_PORT) -> list[tuple[str, int]]:
    """The (host, port) pairs of a hosts file: one HOST[:PORT] or CIDR block per line, ``#`` comments.

    Every error is one line naming the file, and the line where the entry is: a farm's hosts file runs to
    thousands of lines, and "invalid port" alone would leave the operator searching.
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_HOSTS_FILE + 1)
    except OSError as exc:
        raise ValueError(f"cannot read hosts file '{path}': {exc.strerror or exc}") from None
    if len(data) > MAX_HOSTS_FILE:
        raise ValueError(f"hosts file '{path}' is larger than {MAX_HOSTS_FILE // 2**20} MiB")
    if b"\0" in data:
        line = _line_of(data, data.index(b"\0"))
        raise ValueError(f"hosts file '{path}' is not a text file (a NUL byte on line {line})")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = _line_of(data, exc.start)
        raise ValueError(f"hosts file '{path}' is not UTF-8 text (line {line}, byte {exc.start})") from None
    out: list[tuple[str, int]] = []
    for number, line in enumerate(text.split("\n"), 1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        try:
            out += _entry_targets(entry, port)
        except ValueError as exc:
            raise ValueError(f"hosts file '{path}', line {number}: {exc}") from None
    return out


def expand_targets(
    hosts: Iterable[str] = (), hosts_file: str | None = None, subnet: str | None = None, port: int = DEFAULT_PORT
) -> list[tuple[str, int]]:
    """Every (host, port) named by arguments, a hosts file and a subnet, in order, without duplicates."""
    out: list[tuple[str, int]] = []
    for item in hosts:
        out += _entry_targets(item, port)
    if hosts_file:
        out += read_hosts_file(hosts_file, port)
    if subnet:
        out += [(h, port) for h in subnet_hosts(subnet)]
    seen: set[tuple[str, int]] = set()
    return [t for t in out if not (t in seen or seen.add(t))]


# --- fleet ----------------------------------------------------------------------------------------------


def _num(value) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(str(value).strip() or "nan")
    except ValueError:
        return None


_RATE_KEY = re.compile(r"([TGMK]HS) (\d+s|av)")
_SCALES = {"THS": 1e3, "GHS": 1.0, "MHS": 1e-3, "KHS": 1e-6}


def hashrate_ghs(summary: dict) -> float | None:
    """The short-window hash rate in GH/s from a SUMMARY record, whatever units the firmware uses.

    cgminer names its short window after --log-interval ("MHS 5s", "MHS 30s"); the average is the fallback.
    """
    short, average = [], []
    for key, value in summary.items():
        if not isinstance(key, str) or key[1:4] != "HS ":
            continue
        match = _RATE_KEY.fullmatch(key)
        v = _num(value)
        if match and v is not None and v == v:
            (average if match.group(2) == "av" else short).append(v * _SCALES[match.group(1)])
    for found in (short, average):
        if found:
            return found[0]
    return None


@dataclass
class FleetRow:
    host: str
    port: int
    reachable: bool
    status: str  # "ok", what is wrong ("dead board 2", "bad reply: ..."), or why it could not be reached
    miner_type: str = ""
    ghs: float | None = None
    accepted: int | None = None
    rejected: int | None = None
    hw_errors: int | None = None
    pool: str = ""
    elapsed: int | None = None
    state: str = "down"  # up, paused, faulty or down
    model: str = ""  # the hardware, where the firmware names it ("Antminer S19")
    family: str = ""  # bmminer, bosminer, cgminer, sha256d-miner, ...
    power_w: float | None = None
    power_estimated: bool = False  # from the model's efficiency: stock firmware reports no watts
    chip_temp: float | None = None  # the hottest chip, degrees C
    board_temp: float | None = None  # the hottest board (PCB) sensor
    fans: list[int] = field(default_factory=list)
    boards: int | None = None
    problems: list[str] = field(default_factory=list)
    slow: bool = False
    latency_s: float | None = None
    attempts: int = 0

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
    """The URL of the pool a miner mines on.

    Firmware that keeps its backup pools' sessions open marks several pools Stratum Active (cgminer does
    for a while after a switch), so among those the first in priority wins; without any, the first alive.
    """
    records = (pools or {}).get("POOLS")
    if not isinstance(records, list):
        return ""
    records = [r for r in records if isinstance(r, dict)]
    active = [r for r in records if r.get("Stratum Active") in (True, "true", "True")]
    candidates = active or [r for r in records if r.get("Status") == "Alive"]
    candidates.sort(key=lambda r: _num(r.get("Priority")) or 0)
    return str(candidates[0].get("URL", "")) if candidates else ""


def _int(value) -> int | None:
    v = _num(value)
    return int(v) if v is not None and v == v else None


# --- reading one rig ------------------------------------------------------------------------------------

#: One joined request carries what every family reports: bmminer puts temperatures, fans and chains in
#: stats; BOSminer in temps, fans, tunerstatus and devdetails. A family answers the others' commands with
#: "Invalid command" inside the joined reply, which costs a few bytes.
SWEEP_COMMANDS = ("summary", "pools", "version", "stats", "devdetails", "temps", "fans", "tunerstatus")
HOT_C = 90.0  # a chip this hot is overheating: stock firmware throttles, then stops, near 95
SLOW_S = 1.0  # a rig that takes longer than this to answer is reported slow
BOARD_OK = ("Stable", "Testing performance profile", "Tuning individual chips", "Stopped")


def _records(reply: dict | None, section: str) -> list[dict]:
    records = (reply or {}).get(section)
    if isinstance(records, dict):
        return [records]
    return [r for r in records if isinstance(r, dict)] if isinstance(records, list) else []


def _family(version: dict | None, summary: dict | None) -> str:
    rec = _first(version, "VERSION")
    if "avalon" in str(rec.get("PROD", "")).lower():  # Canaan's cgminer names the product, not the firmware
        return "avalon"
    keys = " ".join(str(k) for k in rec)
    status = _first(summary, "STATUS") or _first(version, "STATUS")
    text = (keys + " " + str(status.get("Description", ""))).lower()
    for family in ("bosminer", "bmminer", "luxminer", "btminer", "bfgminer", "sha256d-miner", "cgminer"):
        if family in text:
            return family
    return ""


def _model(family: str, version: dict | None, devdetails: dict | None) -> str:
    if family == "bosminer":
        for rec in _records(devdetails, "DEVDETAILS"):
            if rec.get("Model"):
                return str(rec["Model"]).removeprefix("Bitmain ")
        return ""
    rec = _first(version, "VERSION")
    return str(rec.get("Type") or rec.get("PROD") or "")


def _chains(stats_rec: dict) -> list[int]:
    """The chain numbers a bmminer stats record describes (1..3 on X19, 6..8 on an S9)."""
    found = []
    for key in stats_rec:
        if isinstance(key, str) and key.startswith("chain_acn") and key[9:].isdigit():
            found.append(int(key[9:]))
    return sorted(found)


def _read_bmminer(row: FleetRow, stats: dict | None) -> None:
    records = _records(stats, "STATS")
    rec = next((r for r in records if any(str(k).startswith("chain_acn") for k in r)), None)
    if rec is None:
        return
    chains = _chains(rec)
    chips = [_int(rec.get(f"chain_acn{c}")) or 0 for c in chains]
    row.boards = len(chains)
    if chips and max(chips) > 0:
        for c, n in zip(chains, chips, strict=True):
            acs = str(rec.get(f"chain_acs{c}", ""))
            if n == 0 or "x" in acs:
                row.problems.append(f"dead board {chains.index(c)}" if n == 0 else f"board {chains.index(c)} bad chips")
    chip = [_num(rec.get(f"temp2_{c}")) for c in chains]
    pcb = [_num(rec.get(f"temp{c}")) for c in chains]
    chip = [t for t in chip if t] or [t for t in [_num(rec.get("temp_max"))] if t]
    pcb = [t for t in pcb if t]
    row.chip_temp = max(chip) if chip else None
    row.board_temp = max(pcb) if pcb else None
    fans = []
    for n in range(1, 9):
        rpm = _int(rec.get(f"fan{n}"))
        if rpm is not None:
            fans.append(rpm)
    count = _int(rec.get("fan_num"))
    row.fans = fans[:count] if count else [f for f in fans if f]


_MM_FIELD = re.compile(r"(\w+)\[([^\]]*)\]")


def mm_fields(stats: dict | None) -> dict[str, str]:
    """Avalon's ``MM ID0`` string in ``stats``: ``NAME[value] ...`` pairs."""
    for rec in _records(stats, "STATS"):
        for key, value in rec.items():
            if str(key).startswith("MM ID") and isinstance(value, str):
                return dict(_MM_FIELD.findall(value))
    return {}


def _read_avalon(row: FleetRow, stats: dict | None) -> None:
    fields = mm_fields(stats)
    ps = fields.get("PS", "").split()
    if len(ps) >= 5:
        row.power_w = _num(ps[4])  # PS[status vin iin vout watts vcontrol]
    row.chip_temp = _num(fields.get("TMax"))
    row.fans = [v for v in (_int(fields.get(f"Fan{n}")) for n in range(1, 5)) if v is not None]
    row.boards = _int(fields.get("MW"))


def _read_bosminer(row: FleetRow, parts: dict[str, dict]) -> None:
    temps = _records(parts.get("temps"), "TEMPS")
    chip = [t for t in (_num(r.get("Chip")) for r in temps) if t]
    board = [t for t in (_num(r.get("Board")) for r in temps) if t]
    row.chip_temp = max(chip) if chip else None
    row.board_temp = max(board) if board else None
    row.fans = [r for r in (_int(f.get("RPM")) for f in _records(parts.get("fans"), "FANS")) if r is not None]
    tuner = _first(parts.get("tunerstatus"), "TUNERSTATUS")
    power = _num(tuner.get("ApproximateMinerPowerConsumption"))
    if power is not None:
        row.power_w = power
    chains = tuner.get("TunerChainStatus")
    if isinstance(chains, list):
        row.boards = len(chains)
        for index, chain in enumerate(c for c in chains if isinstance(c, dict)):
            status = str(chain.get("Status", ""))
            if status and status not in BOARD_OK:
                dead = "dead board" if "fail" in status.lower() else "board"
                row.problems.append(f"{dead} {index}: {status.split(' {')[0]}")


def read_row(host: str, port: int, parts: dict[str, dict], hot_c: float = HOT_C) -> FleetRow:
    """A rig's row from its replies, one per command of :data:`SWEEP_COMMANDS` that it answered."""
    summary = parts.get("summary")
    sev, _code, msg = reply_status(summary or {})
    rec = _first(summary, "SUMMARY")
    ok = sev in ("S", "I") and bool(rec)
    row = FleetRow(host, port, True, "ok" if ok else (msg or "no summary"))
    row.miner_type = _miner_type(parts.get("version"), summary)
    row.family = _family(parts.get("version"), summary)
    row.model = _model(row.family, parts.get("version"), parts.get("devdetails"))
    row.ghs = hashrate_ghs(rec)
    row.accepted = _int(rec.get("Accepted"))
    row.rejected = _int(rec.get("Rejected"))
    row.hw_errors = _int(rec.get("Hardware Errors"))
    row.elapsed = _int(rec.get("Elapsed"))
    row.pool = _active_pool(parts.get("pools"))
    if row.family == "bosminer":
        _read_bosminer(row, parts)
    elif row.family == "avalon":
        _read_avalon(row, parts.get("stats"))
    else:
        _read_bmminer(row, parts.get("stats"))
        watts = _num(_first(parts.get("power"), "POWER").get("Watts"))  # LuxOS's own power reading
        if watts is not None:
            row.power_w = watts
    if row.chip_temp is not None and row.chip_temp >= hot_c:
        row.problems.append(f"overheating {row.chip_temp:.0f} C")
    if row.fans and max(row.fans) > 0:
        row.problems += [f"fan {n} stopped" for n, rpm in enumerate(row.fans) if rpm == 0]
    if row.power_w is None and row.model:
        row.power_w = estimate_watts(row.model, None if row.ghs is None else row.ghs / 1e3)
        row.power_estimated = row.power_w is not None
    if not ok:
        row.state = "faulty"
    elif row.problems:
        row.state, row.status = "faulty", "; ".join(row.problems)
    elif not row.ghs:
        row.state, row.status = "paused", "paused (hashing nothing)"
    else:
        row.state = "up"
    return row


async def _read_parts(host: str, port: int, timeout: float) -> dict[str, dict]:
    """Every command's reply: one joined request, or one request each where the firmware cannot join,
    all within ``timeout``."""
    deadline = time.monotonic() + timeout
    commands = list(SWEEP_COMMANDS)
    reply = await query_async(host, port, "+".join(commands), timeout=timeout)
    parts = split_joined(reply, commands)
    if "summary" in parts:
        if _family(parts.get("version"), parts.get("summary")) == "luxminer":  # watts: its own command
            left = deadline - time.monotonic()
            with contextlib.suppress(ApiError):
                parts["power"] = await query_async(host, port, "power", timeout=max(0.05, left))
        return parts
    parts = {}
    for cmd in ("summary", "pools", "version", "stats"):
        left = deadline - time.monotonic()
        try:
            if left <= 0:
                raise ApiError("timed out waiting for a reply")
            parts[cmd] = await query_async(host, port, cmd, timeout=left)
        except ApiError:
            if cmd == "summary":
                raise
    return parts


async def probe(
    host: str,
    port: int,
    timeout: float = 3.0,
    retries: int = 1,
    slow_s: float = SLOW_S,
    hot_c: float = HOT_C,
) -> FleetRow:
    """One rig's row, never taking longer than ``(retries + 1) * timeout``: a dead or hung rig is a row
    that says so, not a stalled sweep.

    Retries are for connections that fail (refused, reset, unreachable) and replies cut short. A rig that
    accepted the connection and then said nothing for ``timeout`` is hung, and is not asked again: that
    would only make one hung rig cost twice the timeout.
    """
    last, bad = "no reply", None
    for attempt in range(1, retries + 2):
        started = time.monotonic()
        try:
            parts = await _read_parts(host, port, timeout)
        except ApiError as exc:
            last = str(exc)
            if _is_bad_reply(last):  # it answered, with bytes no parser takes: faulty, not dead
                bad = FleetRow(host, port, True, f"bad reply: {last}", state="faulty", attempts=attempt)
                bad.problems.append("bad reply")
                bad.latency_s = time.monotonic() - started
            elif last == "timed out waiting for a reply":
                tries = f", {attempt} tries" if attempt > 1 else ""
                return FleetRow(host, port, False, f"{last} ({timeout:g} s){tries}", state="down", attempts=attempt)
            continue
        row = read_row(host, port, parts, hot_c)
        row.latency_s = time.monotonic() - started
        row.attempts = attempt
        if row.latency_s > slow_s:
            row.slow = True
            row.problems.append(f"slow ({row.latency_s:.1f} s)")
            if row.state == "up":
                row.status = f"slow: answered in {row.latency_s:.1f} s"
        return row
    if bad is not None:
        bad.attempts = retries + 1
        return bad
    tries = f", {retries + 1} tries" if retries else ""
    return FleetRow(host, port, False, f"{last}{tries}", state="down", attempts=retries + 1)


def _is_bad_reply(message: str) -> bool:
    return any(m in message for m in ("JSON", "neither JSON nor", "empty reply"))


@dataclass
class Progress:
    """Where a sweep stands, for a progress line: hosts done of total, and each state's count."""

    total: int
    done: int = 0
    counts: dict[str, int] = field(default_factory=lambda: {"up": 0, "paused": 0, "faulty": 0, "down": 0})


async def sweep(
    targets: list[tuple[str, int]],
    timeout: float = 3.0,
    concurrency: int = 256,
    retries: int = 1,
    slow_s: float = SLOW_S,
    hot_c: float = HOT_C,
    on_progress: Callable[[Progress], None] | None = None,
    recheck: bool = True,
) -> list[FleetRow]:
    """Every target's row, at most ``concurrency`` hosts in flight, in the targets' order."""
    rows: list[FleetRow | None] = [None] * len(targets)
    progress = Progress(len(targets))
    pending = iter(enumerate(targets))

    async def worker() -> None:
        for index, (host, port) in pending:
            row = await probe(host, port, timeout, retries, slow_s, hot_c)
            rows[index] = row
            progress.done += 1
            progress.counts[row.state] = progress.counts.get(row.state, 0) + 1
            if on_progress is not None:
                on_progress(progress)

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(targets))))))
    # A sweep that keeps many hosts in flight delays every answer by its own queue. A rig is clearly slow
    # when it took several times what the median rig took; one slow only by the clock, while the median
    # itself was high, is asked again with few others in flight, and called slow only if it is slow then too.
    latencies = sorted(r.latency_s for r in rows if r is not None and r.latency_s is not None)
    median = latencies[len(latencies) // 2] if latencies else 0.0
    suspects = [i for i, r in enumerate(rows) if r is not None and r.slow and r.latency_s <= 4 * median]
    if suspects and recheck:
        again = await sweep(
            [targets[i] for i in suspects], timeout, max(1, min(64, concurrency)), 0, slow_s, hot_c, recheck=False
        )
        for i, row in zip(suspects, again, strict=True):
            if row.reachable:
                rows[i] = row
    return [row for row in rows if row is not None]


def fleet_row(host: str, port: int, timeout: float = 3.0) -> FleetRow:
    """One miner's row (see :func:`probe`), from synchronous code."""
    return asyncio.run(probe(host, port, timeout, retries=0))


def fleet_summary(
    targets: list[tuple[str, int]],
    timeout: float = 3.0,
    workers: int = 256,
    retries: int = 1,
    on_progress: Callable[[Progress], None] | None = None,
    slow_s: float = SLOW_S,
    hot_c: float = HOT_C,
) -> list[FleetRow]:
    """Every target's row (see :func:`sweep`), from synchronous code."""
    if not targets:
        return []
    return asyncio.run(sweep(targets, timeout, workers, retries, slow_s, hot_c, on_progress))


@dataclass
class FleetTotals:
    """What a farm wants at the end of a sweep: how many rigs are in each state, and the sums."""

    hosts: int
    up: int
    paused: int
    faulty: int
    down: int
    slow: int
    ths: float
    kw: float
    kw_estimated: int  # rigs whose power came from their model, not their own report
    hottest: list[tuple[str, float]]
    problems: dict[str, int]

    def to_dict(self) -> dict:
        return asdict(self)


def totals(rows: list[FleetRow], hottest: int = 5) -> FleetTotals:
    count = {state: sum(1 for r in rows if r.state == state) for state in ("up", "paused", "faulty", "down")}
    answered = [r for r in rows if r.reachable]
    temps = sorted(
        ((f"{r.host}:{r.port}", r.chip_temp) for r in answered if r.chip_temp is not None), key=lambda t: -t[1]
    )
    problems: dict[str, int] = {}
    for r in rows:
        for problem in r.problems:
            kind = re.sub(r"\b\d+(\.\d+)?\b( C\b)?", "", re.sub(r":.*|\(.*\)", "", problem))
            kind = " ".join(kind.split())
            problems[kind] = problems.get(kind, 0) + 1
    return FleetTotals(
        hosts=len(rows),
        slow=sum(1 for r in rows if r.slow),
        ths=sum(r.ghs or 0.0 for r in answered) / 1e3,
        kw=sum(r.power_w or 0.0 for r in answered) / 1e3,
        kw_estimated=sum(1 for r in answered if r.power_estimated),
        hottest=temps[:hottest],
        problems=dict(sorted(problems.items(), key=lambda kv: -kv[1])),
        **count,
    )


# --- control --------------------------------------------------------------------------------------------


@dataclass
class ControlResult:
    host: str
    port: int
    ok: bool
    message: str

    def to_dict(self) -> dict:
        return asdict(self)


async def control_async(host: str, port: int, command: str, parameter: str | None, timeout: float) -> ControlResult:
    """One host's verdict on a privileged command. Never retried: a restart sent twice restarts twice."""
    try:
        reply = await query_async(host, port, command, parameter, timeout)
    except ApiError as exc:
        return ControlResult(host, port, False, str(exc))
    sev, code, msg = reply_status(reply)
    if code is None and msg in ("BYE", "RESTART"):
        return ControlResult(host, port, True, msg)
    ok = sev in ("S", "I")
    return ControlResult(host, port, ok, f"{msg} (code {code})" if code is not None else msg)


def control_one(host: str, port: int, command: str, parameter: str | None, timeout: float = 5.0) -> ControlResult:
    return asyncio.run(control_async(host, port, command, parameter, timeout))


def fleet_control(
    targets: list[tuple[str, int]], command: str, parameter: str | None = None, timeout: float = 5.0, workers: int = 256
) -> list[ControlResult]:
    """Send one privileged command to every target concurrently; each host's own verdict, in order."""
    if not targets:
        return []

    async def run() -> list[ControlResult]:
        gate = asyncio.Semaphore(max(1, workers))

        async def one(host: str, port: int) -> ControlResult:
            async with gate:
                return await control_async(host, port, command, parameter, timeout)

        return list(await asyncio.gather(*(one(h, p) for h, p in targets)))

    return asyncio.run(run())
