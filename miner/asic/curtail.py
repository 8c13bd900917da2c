"""Curtailment by the price of power: which rigs run in each slot of a price schedule, and switching them
through their own API verbs, confirmed by reading them back.

A rig earns ``hashprice`` per TH/s and day (network difficulty, subsidy plus fees, coin price: the
economics of ``miner explain economics``), so per kWh it earns ``hashprice / 24 * TH/s / kW``: its
break-even power price. In each slot the rigs whose break-even exceeds the slot's price run, most
efficient first, while the farm's draw stays within the power cap (every rig draws its idle power even
curtailed, and a running one is counted at its nameplate draw plus a margin, so the measured power stays
under the cap). Two things stop flapping: a hysteresis band around the price (a running rig stops only
when its break-even falls clearly below the price, a stopped one starts only when it is clearly above),
and a minimum time between two changes of one rig. The cap is the one hard limit: it may stop a rig
inside its minimum time, never the reverse.

A plan depends only on the rigs' current states, the slot and when each rig last changed, so running it
again changes nothing.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from miner.asic.client import ApiError, query_async, reply_status
from miner.asic.fleet import FleetRow, probe
from miner.asic.models import model_named

MARGIN = 0.05  # a running rig is planned at its nameplate draw plus this: rigs vary, the cap does not
MAX_PRICES_FILE = 16 * 2**20


# --- the schedule ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    start: datetime
    end: datetime
    price: float  # per kWh, in the currency of the coin price
    cap_kw: float | None  # this slot's own cap, if the row gives one
    line: int

    def describe(self) -> str:
        cap = f", cap {self.cap_kw:g} kW" if self.cap_kw is not None else ""
        return f"{self.start.isoformat(sep=' ')} to {self.end.isoformat(sep=' ')} at {self.price:g}/kWh{cap}"


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what} '{text}' is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{what} '{text}' is not a finite number")
    return value


def _when(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"start '{text.strip()}' is not a date and time (expected e.g. 2026-06-01T14:00)") from None


def read_prices(path: str) -> list[Slot]:
    """PRICES.csv: ``start,price_per_kwh[,cap_kw]`` rows, starts in order (hourly prices, or the dates a
    seasonal tariff changes); a header row and ``#`` comments are skipped. Each slot lasts until the next
    one starts, the last as long as the one before it (an hour if it is alone). Errors name the file and
    the line."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_PRICES_FILE + 1)
    except OSError as exc:
        raise ValueError(f"cannot read prices file '{path}': {exc.strerror or exc}") from None
    if len(data) > MAX_PRICES_FILE or b"\0" in data:
        raise ValueError(f"prices file '{path}' is not a CSV file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"prices file '{path}' is not UTF-8 text") from None
    rows: list[tuple[int, datetime, float, float | None]] = []
    for number, fields in enumerate(csv.reader(io.StringIO(text)), 1):
        fields = [f.strip() for f in fields]
        if not fields or not any(fields) or fields[0].startswith("#"):
            continue
        where = f"prices file '{path}', line {number}"
        if not rows and fields[0].lower() in ("start", "time", "from"):
            continue  # the header
        if len(fields) not in (2, 3):
            raise ValueError(f"{where}: expected start,price_per_kwh[,cap_kw], got {len(fields)} fields")
        try:
            start = _when(fields[0])
            price = _number(fields[1], "price")
            cap = _number(fields[2], "cap") if len(fields) == 3 and fields[2] else None
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        if cap is not None and cap < 0:
            raise ValueError(f"{where}: a negative power cap ({cap:g} kW)")
        if rows:
            if (start.tzinfo is None) != (rows[-1][1].tzinfo is None):
                raise ValueError(f"{where}: mixes times with and without a UTC offset")
            if start <= rows[-1][1]:
                raise ValueError(
                    f"{where}: prices out of order: {start.isoformat(sep=' ')} is not after line {rows[-1][0]}'s "
                    f"{rows[-1][1].isoformat(sep=' ')}"
                )
        rows.append((number, start, price, cap))
    if not rows:
        raise ValueError(f"prices file '{path}' has no price rows")
    slots = []
    for i, (number, start, price, cap) in enumerate(rows):
        if i + 1 < len(rows):
            end = rows[i + 1][1]
        else:
            end = start + ((start - rows[i - 1][1]) if i else timedelta(hours=1))
        slots.append(Slot(start, end, price, cap, number))
    return slots


def slot_at(slots: list[Slot], when: datetime) -> Slot | None:
    for slot in slots:
        if slot.start <= when < slot.end:
            return slot
    return None


def hashprice_per_th_day(difficulty: float, reward_btc: float, btc_price: float) -> float:
    """What one TH/s earns in a day: its expected blocks (1e12 * 86400 / (difficulty * 2^32)) times the
    reward, at the coin's price."""
    return 1e12 * 86400 / (difficulty * 2**32) * reward_btc * btc_price


# --- the plan -------------------------------------------------------------------------------------------


@dataclass
class Rig:
    """A rig as the planner sees it: nameplate figures and whether it hashes now."""

    host: str
    port: int
    model: str
    family: str
    ths: float
    watts: float  # its draw running, planned with MARGIN on top
    idle_w: float  # its draw curtailed
    boards: int
    on: bool

    @property
    def key(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def jth(self) -> float:
        return self.watts / self.ths if self.ths else math.inf


def rig_from_row(row: FleetRow) -> Rig | None:
    """The planner's view of a swept rig; None where neither its model nor its own figures are known."""
    model = model_named(row.model) if row.model else None
    on = bool(row.ghs)
    if model is not None:
        return Rig(row.host, row.port, row.model, row.family, model.ths, model.watts, model.idle_w, model.boards, on)
    if on and row.power_w:
        return Rig(row.host, row.port, row.model or row.miner_type, row.family, row.ghs / 1e3, row.power_w, 0.0, 1, on)
    return None


@dataclass
class Decision:
    rig: Rig
    run: bool
    reason: str
    break_even: float  # per kWh

    @property
    def change(self) -> bool:
        return self.run != self.rig.on


@dataclass
class Plan:
    slot: Slot
    hashprice: float  # per TH/s and day
    cap_kw: float | None
    decisions: list[Decision] = field(default_factory=list)
    planned_kw: float = 0.0

    @property
    def changes(self) -> list[Decision]:
        return [d for d in self.decisions if d.change]

    @property
    def running(self) -> int:
        return sum(1 for d in self.decisions if d.run)


def break_even_per_kwh(rig: Rig, hashprice: float) -> float:
    return hashprice / 24 * rig.ths / (rig.watts / 1000) if rig.watts else math.inf


def plan_slot(
    rigs: list[Rig],
    slot: Slot,
    hashprice: float,
    cap_kw: float | None = None,
    hysteresis: float = 0.05,
    min_dwell_s: float = 0.0,
    last_change: dict[str, float] | None = None,
    now: float = 0.0,
) -> Plan:
    """Which rigs run in ``slot``; ``last_change`` maps a rig to when it last changed (the clock of ``now``)."""
    cap = slot.cap_kw if slot.cap_kw is not None else cap_kw
    last_change = last_change or {}
    plan = Plan(slot, hashprice, cap)
    band = hysteresis * abs(slot.price)
    wanted: list[Decision] = []
    for rig in rigs:
        be = break_even_per_kwh(rig, hashprice)
        since = now - last_change[rig.key] if rig.key in last_change else math.inf
        if since < min_dwell_s:
            held = "running" if rig.on else "stopped"
            d = Decision(rig, rig.on, f"held {held}: changed {since / 60:.0f} min ago", be)
        elif rig.on:
            keep = be >= slot.price - band
            d = Decision(rig, keep, "earns more than power costs" if keep else "power costs more than it earns", be)
        else:
            start = be > slot.price + band
            d = Decision(rig, start, "earns more than power costs" if start else "power costs more than it earns", be)
        plan.decisions.append(d)
        if d.run:
            wanted.append(d)
    idle_kw = sum(d.rig.idle_w for d in plan.decisions) / 1000
    used = idle_kw
    for d in sorted(wanted, key=lambda d: (d.rig.jth, d.rig.key)):  # most efficient first
        extra = (d.rig.watts * (1 + MARGIN) - d.rig.idle_w) / 1000
        if cap is not None and used + extra > cap:
            d.run, d.reason = False, f"over the {cap:g} kW cap"
            continue
        used += extra
    plan.planned_kw = used
    return plan


# --- acting ---------------------------------------------------------------------------------------------


@dataclass
class Action:
    host: str
    port: int
    model: str
    run: bool
    verb: str
    ok: bool
    confirmed: bool
    message: str
    seconds: float
    power_w: float | None = None
    at: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


OPPOSITE = {"pause": "resume", "resume": "pause", "ascdisable": "ascenable", "ascenable": "ascdisable"}


def verbs(rig: Rig, run: bool) -> list[tuple[str, str | None]]:
    """The rig's own API commands that start or stop it: BOSminer's pause/resume, this miner's too, and on
    stock bmminer (which has no sleep command over its API) every hash board's ascdisable/ascenable."""
    if rig.family in ("bosminer", "sha256d-miner"):
        return [("resume" if run else "pause", None)]
    if rig.family == "bmminer":
        return [("ascenable" if run else "ascdisable", str(board)) for board in range(rig.boards)]
    return []


async def _send(rig: Rig, command: str, parameter: str | None, timeout: float) -> tuple[bool, str]:
    try:
        reply = await query_async(rig.host, rig.port, command, parameter, timeout)
    except ApiError as exc:
        return False, str(exc)
    sev, code, msg = reply_status(reply)
    return sev in ("S", "I"), f"{msg} (code {code})" if code is not None else msg


async def switch(rig: Rig, run: bool, timeout: float = 3.0, confirm_s: float = 30.0) -> Action:
    """Send the rig's verbs, then read it back until it hashes (or stops) or ``confirm_s`` passes. Where a
    verb fails part way, the ones already sent are undone: no rig is left half switched."""
    started = time.monotonic()
    steps = verbs(rig, run)
    label = ", ".join(f"{c}|{p}" if p is not None else c for c, p in steps) or "-"
    if not steps:
        return Action(rig.host, rig.port, rig.model, run, label, False, False, f"no verb for {rig.family}", 0.0)
    done: list[tuple[str, str | None]] = []
    for command, parameter in steps:
        ok, message = await _send(rig, command, parameter, timeout)
        if not ok:
            for sent, param in reversed(done):
                await _send(rig, OPPOSITE[sent], param, timeout)
            took = time.monotonic() - started
            return Action(rig.host, rig.port, rig.model, run, label, False, False, f"{command}: {message}", took)
        done.append((command, parameter))
    deadline = started + confirm_s
    row = None
    while True:
        row = await probe(rig.host, rig.port, timeout, retries=1)
        if row.reachable and bool(row.ghs) == run:
            took = time.monotonic() - started
            return Action(rig.host, rig.port, rig.model, run, label, True, True, "confirmed", took, row.power_w)
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.5)
    took = time.monotonic() - started
    seen = "unreachable" if not row.reachable else f"{(row.ghs or 0) / 1e3:.2f} TH/s"
    return Action(rig.host, rig.port, rig.model, run, label, True, False, f"not confirmed: reads {seen}", took)


async def apply(
    plan: Plan,
    timeout: float = 3.0,
    confirm_s: float = 30.0,
    concurrency: int = 64,
    on_action: Callable[[Action], None] | None = None,
) -> list[Action]:
    """Carry out a plan's changes, stops before starts (so the draw never passes the cap on the way)."""
    actions: list[Action] = []
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(decision: Decision) -> None:
        async with gate:
            action = await switch(decision.rig, decision.run, timeout, confirm_s)
        action.at = time.time()
        actions.append(action)
        if on_action is not None:
            on_action(action)

    for run in (False, True):
        await asyncio.gather(*(one(d) for d in plan.changes if d.run == run))
    return actions


# --- the dwell memory -----------------------------------------------------------------------------------


def read_state(path: str | None) -> dict:
    """A state file's JSON object ({} where there is none yet); ValueError naming the file if unreadable."""
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read state file '{path}': {exc}") from None
    return data if isinstance(data, dict) else {}


def load_state(path: str | None) -> dict[str, float]:
    """When each rig last changed, from a previous run (the minimum time between changes spans runs)."""
    changes = read_state(path).get("last_change", {})
    return {str(k): float(v) for k, v in changes.items() if isinstance(v, (int, float))}


def save_state(path: str | None, last_change: dict[str, float]) -> None:
    if not path:
        return
    with open(path, "w", encoding="utf-8") as fh:
        json.dump({"last_change": last_change}, fh, indent=1, sort_keys=True)
