"""Curtailment that turns the dial: a power target for every rig in every slot, carried out and proven.

In a slot at ``price`` per kWh a rig set to draw ``w`` watts earns ``hashprice / 24 * ths_at(w)`` and pays
``price * w / 1000`` an hour. Each rig takes the setting that earns most (asleep is a setting: idle draw, no
hashes); where the farm's planned draw passes the cap, the rig whose next step down loses least per kW saved
steps down, until it fits. Efficiency curves are concave, so at mid prices tuning rigs down beats switching
some off: the last watts of an overclocked rig cost more than they earn long before its first ones do. In
``onoff`` mode the settings are asleep and nominal only, which is issue 15's plan (run where the break-even
beats the price, most efficient first within the cap), measured the same way.

Hysteresis (a change must gain more than a band of the power cost) and a minimum time between two changes of
one rig stop flapping; the cap may override the minimum time, never the reverse. A rig that does not comply
(two read-backs off) is left out, counted at what it draws, and the others are planned again so that the
cap holds.
"""

from __future__ import annotations

import asyncio
import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from miner.asic import power
from miner.asic.client import ApiError
from miner.asic.curtail import MARGIN


@dataclass
class Dial:
    """A rig as the planner sees it: its settings, what it is set to now, and its state."""

    rig: power.Rig
    setting_w: float  # what it was last told to draw (its nominal draw until told)
    asleep: bool
    measured_w: float | None = None
    measured_ths: float | None = None
    reachable: bool = True
    compliant: bool = True
    reason: str = "running"
    commanded_w: float | None = None
    latency_s: float | None = None

    @property
    def key(self) -> str:
        return self.rig.key

    @property
    def current_w(self) -> float:
        return self.idle_w if self.asleep else self.setting_w

    @property
    def idle_w(self) -> float:
        return self.rig.model.idle_w if self.rig.model else 0.0


def settings(dial: Dial, mode: str) -> list[tuple[float, float]]:
    """(watts, TH/s) it can be set to, lowest first; asleep is the first."""
    model = dial.rig.model
    if model is None:
        return [(dial.current_w, 0.0)]
    out = [(model.idle_w, 0.0)]
    if mode == "targets" and model.dial and dial.rig.family != "sha256d-miner":
        out += [(w, model.ths_at(w)) for w in model.settings()]
    else:
        out.append((model.watts, model.ths))
    return out


@dataclass
class Choice:
    dial: Dial
    watts: float
    ths: float
    reason: str

    @property
    def sleep(self) -> bool:
        return self.ths == 0.0

    @property
    def change(self) -> bool:
        d = self.dial
        if self.sleep:
            return not d.asleep
        return d.asleep or abs(self.watts - d.setting_w) > 0.5


@dataclass
class TargetPlan:
    price: float
    cap_kw: float | None
    choices: list[Choice] = field(default_factory=list)
    planned_kw: float = 0.0

    @property
    def changes(self) -> list[Choice]:
        return [c for c in self.choices if c.change]


def plan_targets(
    dials: list[Dial],
    price: float,
    hashprice: float,
    cap_kw: float | None,
    mode: str = "targets",
    hysteresis: float = 0.05,
    min_dwell_s: float = 0.0,
    last_change: dict[str, float] | None = None,
    now: float = 0.0,
) -> TargetPlan:
    """Every rig's setting for a slot at ``price``; rigs that do not comply or do not answer stay as they are."""
    last_change = last_change or {}
    plan = TargetPlan(price, cap_kw)

    def value(w: float, ths: float) -> float:  # per hour
        return hashprice / 24 * ths - price * w / 1000

    ladders: list[list[tuple[float, float]]] = []
    index: list[int] = []
    for d in dials:
        ladder = settings(d, mode)
        current = min(range(len(ladder)), key=lambda i: abs(ladder[i][0] - d.current_w))
        if d.asleep:
            current = 0
        ladders.append(ladder)
        if not d.compliant or not d.reachable:
            index.append(current)
            plan.choices.append(Choice(d, *ladder[current], "non_compliant" if d.reachable else "fault"))
            continue
        best = max(range(len(ladder)), key=lambda i: (value(*ladder[i]), -i))
        since = now - last_change[d.key] if d.key in last_change else math.inf
        band = hysteresis * abs(price) * max(ladder[best][0], ladder[current][0]) / 1000
        if best != current and since < min_dwell_s:
            chosen, why = current, "dwell"
        elif best != current and value(*ladder[best]) - value(*ladder[current]) <= band:
            chosen, why = current, "hysteresis"
        else:
            chosen, why = best, "price" if best == 0 else "running"
        index.append(chosen)
        plan.choices.append(Choice(d, *ladder[chosen], why))

    def planned(i: int, at: int) -> float:
        w = ladders[i][at][0]
        fixed = not plan.choices[i].dial.compliant
        if fixed and plan.choices[i].dial.measured_w is not None:
            return plan.choices[i].dial.measured_w
        return w if at == 0 else w * (1 + MARGIN)

    total = sum(planned(i, at) for i, at in enumerate(index)) / 1000
    if cap_kw is not None and total > cap_kw:
        heap: list[tuple[float, int]] = []

        def push(i: int) -> None:
            at = index[i]
            if at == 0 or plan.choices[i].reason in ("non_compliant", "fault"):
                return
            saved = (planned(i, at) - planned(i, at - 1)) / 1000
            lost = value(*ladders[i][at]) - value(*ladders[i][at - 1])
            heapq.heappush(heap, (lost / saved if saved > 0 else math.inf, i))

        for i in range(len(index)):
            push(i)
        while total > cap_kw and heap:
            _, i = heapq.heappop(heap)
            at = index[i]
            total -= (planned(i, at) - planned(i, at - 1)) / 1000
            index[i] = at - 1
            c = plan.choices[i]
            c.watts, c.ths, c.reason = *ladders[i][at - 1], "cap"
            push(i)
    plan.planned_kw = total
    return plan


# --- carrying it out ------------------------------------------------------------------------------------


async def read_all(dials: list[Dial], sessions: power.Sessions, timeout: float, workers: int) -> None:
    gate = asyncio.Semaphore(workers)

    async def one(d: Dial) -> None:
        async with gate:
            try:
                reading = await power.DRIVERS[d.rig.family](sessions, timeout).read(d.rig)
            except ApiError:
                d.reachable, d.measured_w, d.measured_ths = False, None, None
                return
        d.reachable, d.measured_w, d.measured_ths = True, reading.watts, reading.ths or 0.0
        d.asleep = reading.asleep or not reading.ths

    await asyncio.gather(*(one(d) for d in dials))


async def carry_out(
    plan: TargetPlan,
    sessions: power.Sessions,
    timeout: float,
    speed: float,
    workers: int,
    audit: Callable[[dict], None] | None = None,
    stage: str = "down",
) -> list[power.Outcome]:
    """The plan's steps down (or up): each commanded, read back after its ramp, its outcome recorded."""
    gate = asyncio.Semaphore(workers)
    outcomes: list[power.Outcome] = []

    async def one(c: Choice) -> None:
        d = c.dial
        async with gate:
            if c.sleep:
                out = await power.command(d.rig, "sleep", None, sessions, timeout, speed, audit=audit)
            elif d.asleep:  # set the dial while asleep, then wake to it
                driver = power.DRIVERS[d.rig.family](sessions, timeout)
                scratch = power.Outcome(d.rig.host, d.rig.port, d.rig.family, d.rig.name, "target", c.watts)
                if driver.dial:
                    try:
                        ok, msg = await driver.target(d.rig, c.watts, scratch)
                    except ApiError as exc:
                        ok, msg = False, str(exc)
                    if audit is not None:
                        audit({"event": "command", "rig": d.key, "sent": scratch.commands, "ok": ok, "reply": msg})
                out = await power.command(d.rig, "wake", c.watts, sessions, timeout, speed, audit=audit)
                out.commands = scratch.commands + out.commands
            else:
                out = await power.command(d.rig, "target", c.watts, sessions, timeout, speed, audit=audit)
        d.commanded_w, d.latency_s = c.watts, out.latency_s
        if out.acknowledged:
            d.setting_w, d.asleep = (d.setting_w, True) if c.sleep else (c.watts, False)
        if not out.complied:
            d.compliant = False
            d.measured_w = out.measured_w
            d.reason = "non_compliant"
        outcomes.append(out)

    steps = [c for c in plan.changes if (c.watts < c.dial.current_w) == (stage == "down")]
    await asyncio.gather(*(one(c) for c in steps))
    return outcomes


async def run_slot(
    dials: list[Dial],
    slot,
    hashprice: float,
    cap_kw: float | None,
    mode: str,
    hysteresis: float,
    min_dwell_s: float,
    last_change: dict[str, float],
    now: float,
    sessions: power.Sessions,
    timeout: float = 3.0,
    speed: float = 1.0,
    workers: int = 64,
    audit: Callable[[dict], None] | None = None,
    dry_run: bool = False,
) -> dict:
    """Plan one slot, step down (re-planning around rigs that do not comply), step up, and measure."""
    cap = slot.cap_kw if slot.cap_kw is not None else cap_kw
    await read_all(dials, sessions, timeout, workers)
    outcomes: list[power.Outcome] = []
    plan = plan_targets(dials, slot.price, hashprice, cap, mode, hysteresis, min_dwell_s, last_change, now)
    changes: dict[str, dict] = {}

    def note(p: TargetPlan) -> None:  # the changes each plan asks for, before carrying them out
        for c in p.changes:
            changes[c.dial.key] = {"host": c.dial.key, "watts": round(c.watts, 1), "sleep": c.sleep, "reason": c.reason}

    note(plan)
    for _ in range(4):
        if dry_run:
            break
        done = await carry_out(plan, sessions, timeout, speed, workers, audit, "down")
        outcomes += done
        if all(o.complied for o in done):
            break
        plan = plan_targets(dials, slot.price, hashprice, cap, mode, hysteresis, min_dwell_s, last_change, now)
        note(plan)
    if not dry_run:
        outcomes += await carry_out(plan, sessions, timeout, speed, workers, audit, "up")
    for o in outcomes:
        if o.acknowledged:
            last_change[f"{o.host}:{o.port}"] = now
    for c in plan.choices:
        if c.dial.compliant and c.dial.reachable:
            c.dial.reason = c.reason
        if c.dial.commanded_w is None:
            c.dial.commanded_w = c.dial.current_w
    measured_kw = ths = None
    if not dry_run:
        await read_all(dials, sessions, timeout, workers)
        measured_kw = sum(d.measured_w or 0.0 for d in dials) / 1000
        ths = sum(d.measured_ths or 0.0 for d in dials)
    hours = (slot.end - slot.start).total_seconds() / 3600
    profit = None if ths is None else (hashprice / 24 * ths - slot.price * measured_kw) * hours
    if audit is not None:
        audit(
            {
                "event": "slot",
                "start": slot.start.isoformat(),
                "price": slot.price,
                "cap_kw": cap,
                "planned_kw": plan.planned_kw,
                "measured_kw": measured_kw,
            }
        )
    return {
        "slot": {"start": slot.start.isoformat(), "end": slot.end.isoformat(), "price": slot.price},
        "mode": mode,
        "cap_kw": cap,
        "planned_kw": round(plan.planned_kw, 3),
        "measured_kw": None if measured_kw is None else round(measured_kw, 3),
        "ths": None if ths is None else round(ths, 2),
        "energy_kwh": None if measured_kw is None else round(measured_kw * hours, 3),
        "profit": None if profit is None else round(profit, 4),
        "asleep": sum(1 for c in plan.choices if c.sleep),
        "non_compliant": sorted(d.key for d in dials if not d.compliant),
        "plan": [
            {"host": c.dial.key, "watts": round(c.watts, 1), "sleep": c.sleep, "reason": c.reason} for c in plan.changes
        ],
        "actions": [o.to_dict() for o in outcomes],
    }


def summary(records: list[dict]) -> dict:
    """The schedule's totals: money earned less power paid, energy, the highest draw measured."""
    measured = [r for r in records if r["measured_kw"] is not None]
    return {
        "summary": {
            "slots": len(records),
            "profit": round(sum(r["profit"] for r in measured), 2) if measured else None,
            "energy_kwh": round(sum(r["energy_kwh"] for r in measured), 1) if measured else None,
            "max_kw": max(r["measured_kw"] for r in measured) if measured else None,
            "over_cap_slots": sum(1 for r in measured if r["cap_kw"] is not None and r["measured_kw"] > r["cap_kw"]),
            "non_compliant": sorted({k for r in records for k in r["non_compliant"]}),
        }
    }


def state_record(dials: list[Dial], price: float, cap_kw: float | None) -> dict:
    """What the exporter shows beside its sweep: each rig's command, reason and latency; the site's price
    and cap."""
    return {
        "site": {"price_per_kwh": price, "cap_kw": cap_kw},
        "rigs": {
            d.key: {
                "commanded_w": d.commanded_w,
                "expected_ths": 0.0
                if d.asleep or d.commanded_w is None or d.rig.model is None
                else d.rig.model.ths_at(d.commanded_w),
                "reason": d.reason,
                "compliant": d.compliant,
                "latency_s": d.latency_s,
            }
            for d in dials
        },
    }
