"""A farm on loopback: thousands of simulated ASIC rigs in one asyncio process, for trying fleet tools
without a farm.

Each rig listens on its own loopback address, port 4028 (127.1.0.1, 127.1.0.2, ...: Linux routes all of
127.0.0.0/8 to lo), so tools address rigs by IP exactly as on a farm; where an address cannot be bound the
rig falls back to 127.0.0.1 on a port of its own. Rigs answer in the shapes real firmware sends and pyasic
parses: stock Antminer bmminer (``stats`` with per-chain ``chain_acn``/``temp2_N``/``fanN`` keys, and the
X19 generation's ``new_api`` stats) and Braiins OS's BOSminer (``devs``, ``temps``, ``fans``,
``tunerstatus``, ``pause``/``resume``).

A rig's figures come from its model (nominal TH/s and J/TH, boards, chips, fans), moved by state the
control verbs change: a paused rig or a disabled board hashes nothing and draws less, temperatures follow
load and ambient with a time constant, shares arrive at the rate the hash rate earns at the pool's
difficulty. A seeded share of rigs is faulty as real ones are: a dead hash board, overheating (a failed
fan), unresponsive (accepts and never answers), slow (answers after seconds), and malformed replies
(no closing NUL, ``}{`` between joined replies, a trailing comma, a reply cut short).

State is computed when a rig is asked, not on a timer, so an idle farm costs no CPU and 5,000 rigs fit in
tens of MiB (one ``Rig`` with ``__slots__`` and one listening socket each).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import json
import math
import os
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from miner.asic.models import MODELS, Model, mix_weights
from miner.asic.wire import (
    MSG_ACCDENY,
    MSG_ASCDIS,
    MSG_ASCENA,
    MSG_ASCLRDIS,
    MSG_ASCLRENA,
    MSG_DEVDETAILS,
    MSG_DEVS,
    MSG_INVASC,
    MSG_INVCMD,
    MSG_INVJSON,
    MSG_INVPGA,
    MSG_INVPID,
    MSG_MINECONFIG,
    MSG_MINESTATS,
    MSG_MISCMD,
    MSG_MISID,
    MSG_MISPID,
    MSG_NUMASC,
    MSG_NUMPGA,
    MSG_PAUSE,
    MSG_PGADIS,
    MSG_PGAENA,
    MSG_PGALRDIS,
    MSG_PGALRENA,
    MSG_POOL,
    MSG_RESUME,
    MSG_SUMM,
    MSG_SWITCHP,
    MSG_VERSION,
)

API_PORT = 4028
DEFAULT_BASE = "127.1.0.1"
FAULTS = ("dead_board", "overheat", "unresponsive", "slow", "malformed")
QUIRKS = ("no_nul", "glued", "trailing_comma", "truncated")
TAU_S = 60.0  # thermal time constant of a hash board
CHIP_RISE = 45.0  # chip temperature above ambient at full load, degrees C
OVERHEAT_RISE = 35.0  # more while hashing, with a fan failed
SHARE_INTERVAL_S = 3.0  # the pool's vardiff aims at a share every few seconds
REJECT_RATIO = 0.002
BOOT_S = 3.0  # a restarted rig drops connections this long, then mines from zero
HOLD_S = 300.0  # an unresponsive rig lets go of a connection the client never closes
SLOW_S = (1.5, 4.0)  # how late a slow rig answers
MAX_REQUEST = 8192
PARTIAL_S = 0.2  # how long a rig waits for the rest of a request that does not parse yet
POOLS = ("stratum+tcp://stratum.pool.example:3333", "stratum+tcp://backup.pool.example:443")
BOS_TEMPS, BOS_FANS, BOS_TUNER = 202, 203, 204  # BOSminer's own codes


# --- addresses ------------------------------------------------------------------------------------------


def rig_addresses(count: int, base: str = DEFAULT_BASE) -> list[str]:
    """``count`` loopback addresses from ``base`` on, skipping those ending in .0 and .255 (as a farm's
    DHCP range does); ValueError if ``base`` is not loopback or the range leaves 127.0.0.0/8."""
    try:
        first = ipaddress.IPv4Address(base)
    except ValueError:
        raise ValueError(f"invalid base address '{base}'") from None
    loopback = ipaddress.IPv4Network("127.0.0.0/8")
    if first not in loopback:
        raise ValueError(f"base address '{base}' is not a loopback address (127.x.y.z)")
    out, value = [], int(first)
    while len(out) < count:
        if value & 0xFF not in (0, 255):
            if ipaddress.IPv4Address(value) not in loopback or value == int(loopback.broadcast_address):
                raise ValueError(f"{count} rigs from {base} run past 127.255.255.254")
            out.append(str(ipaddress.IPv4Address(value)))
        value += 1
    return out


# --- one rig --------------------------------------------------------------------------------------------


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def _share_difficulty(model: Model) -> int:
    """The difficulty a pool's vardiff settles on for this model: a power of two, a share every few seconds."""
    ideal = model.ths * 1e12 * SHARE_INTERVAL_S / 2**32
    return 2 ** max(0, round(math.log2(ideal)))


class Rig:
    """One simulated rig: its model, its faults and the state the control verbs change."""

    __slots__ = (
        "index",
        "host",
        "port",
        "model",
        "fault",
        "quirk",
        "delay",
        "ambient",
        "factor",
        "dead_board",
        "enabled",
        "paused",
        "state",
        "state_until",
        "started_wall",
        "last",
        "temp",
        "accepted",
        "rejected",
        "hw",
        "hashes_gh",
        "diff",
        "pool",
        "priority",
        "requests",
        "server",
        "speed",
        "setting_w",
        "level_w",
        "from_w",
        "ramp_t0",
        "ramp_t1",
        "asleep",
        "ignores",
        "atm",
        "session",
        "session_used",
        "busy",
        "waiting",
        "session_timeout",
    )

    def __init__(self, index: int, model: Model, rng: random.Random, now: float, wall: float) -> None:
        self.index = index
        self.host = ""
        self.port = 0
        self.model = model
        self.fault: str | None = None
        self.quirk: str | None = None
        self.delay = 0.0
        self.ambient = 18.0 + rng.random() * 12.0  # a hall's cool and warm rows
        self.factor = 0.97 + rng.random() * 0.06  # no two rigs hash alike
        self.dead_board = -1
        self.enabled = (1 << model.boards) - 1  # bit per board: ascdisable/pgadisable clear it
        self.paused = False
        self.state = "mining"  # "booting" after restart, "off" after quit
        self.state_until = 0.0
        uptime = rng.random() * 7 * 86400
        self.started_wall = wall - uptime
        self.last = now
        self.temp = self.ambient + CHIP_RISE  # a running rig is warm already
        self.diff = _share_difficulty(model)
        expected = model.ths * self.factor * 1e12 * uptime / (self.diff * 2**32)
        self.accepted = _poisson(rng, expected)
        self.rejected = _poisson(rng, expected * REJECT_RATIO)
        self.hw = _poisson(rng, expected * 0.001)
        self.hashes_gh = model.ths * self.factor * 1e3 * uptime
        self.pool = 0
        self.priority = [0, 1]
        self.requests = 0
        self.server: asyncio.AbstractServer | None = None
        self.speed = 1.0  # simulated seconds per real second, for ramps and wakes (compressed time)
        self.setting_w = model.watts  # the dial's setting: the draw it hashes at once settled
        self.level_w = model.watts  # the draw it has reached
        self.from_w = model.watts  # a ramp goes from here to the setting (or to idle, asleep)
        self.ramp_t0 = self.ramp_t1 = now
        self.asleep = False
        self.ignores = False  # acknowledges power commands and does nothing (a rig that does not comply)
        self.atm = model.family == "luxminer"  # LuxOS's thermal manager is on out of the box
        self.session: str | None = None  # LuxOS: the one session open, and when it was last used
        self.session_used = 0.0
        self.busy = False  # Avalon: one request at a time, the others wait
        self.waiting: list = []
        self.session_timeout = 60.0

    # --- the physics ---------------------------------------------------------------------------------

    def board_ok(self, board: int) -> bool:
        return board != self.dead_board

    def board_hashing(self, board: int) -> bool:
        return self.state == "mining" and not self.paused and self.board_ok(board) and bool(self.enabled >> board & 1)

    def board_ghs(self, board: int) -> float:
        if not self.board_hashing(board):
            return 0.0
        throttle = 0.8 if self.fault == "overheat" else 1.0  # the firmware down-clocks a hot rig
        ths = self.model.ths_at(self.level_w) if self.model.dial else self.model.ths
        return ths * 1e3 / self.model.boards * self.factor * throttle

    # --- the power dial ------------------------------------------------------------------------------

    def level_at(self, now: float) -> float:
        """The draw reached at ``now``: a straight ramp from where it was to where it is going."""
        goal = self.model.idle_w if self.asleep else self.setting_w
        if now >= self.ramp_t1 or self.ramp_t1 <= self.ramp_t0:
            return goal
        done = (now - self.ramp_t0) / (self.ramp_t1 - self.ramp_t0)
        return self.from_w + (goal - self.from_w) * max(0.0, done)

    def steer(self, now: float, setting_w: float | None = None, asleep: bool | None = None) -> None:
        """Set the dial or sleep or wake; the draw then ramps there (a wake takes the model's wake time)."""
        self.level_w = self.level_at(now)
        waking = asleep is False and self.asleep
        if setting_w is not None:
            self.setting_w = setting_w
        if asleep is not None:
            self.asleep = asleep
        self.from_w, self.ramp_t0 = self.level_w, now
        seconds = self.model.wake_s if waking else self.model.ramp_s
        self.ramp_t1 = now + seconds / max(self.speed, 1e-9)

    def rate_ghs(self) -> float:
        return sum(self.board_ghs(b) for b in range(self.model.boards))

    def load(self) -> float:
        return self.rate_ghs() / (self.model.ths * 1e3)

    def power_w(self) -> float:
        if self.state == "off":
            return 0.0
        m = self.model
        if m.dial:
            if self.state != "mining" or self.paused:
                return m.idle_w
            boards = sum(1 for b in range(m.boards) if self.board_hashing(b)) / m.boards
            return m.idle_w + max(0.0, self.level_w - m.idle_w) * boards * (1.0 + rig_noise(self) / 3)
        return m.idle_w + (m.watts - m.idle_w) * self.load() / (0.8 if self.fault == "overheat" else 1.0)

    def target_temp(self) -> float:
        load = self.load()
        hot = OVERHEAT_RISE if self.fault == "overheat" and load > 0 else 0.0
        return self.ambient + CHIP_RISE * load + hot + 3.0

    def advance(self, now: float, rng: random.Random) -> None:
        """Bring counters and temperature up to ``now``: shares earned, hashes done, heat gained or lost."""
        if self.state == "booting" and now >= self.state_until:
            self.state = "mining"
            self.started_wall = time.time()
            self.accepted = self.rejected = self.hw = 0
            self.hashes_gh = 0.0
        if self.model.dial:
            self.level_w = self.level_at(now)
        dt = now - self.last
        if dt <= 0:
            return
        self.last = now
        rate = self.rate_ghs()
        if rate > 0:
            self.hashes_gh += rate * dt
            lam = rate * 1e9 * dt / (self.diff * 2**32)
            rejected = _poisson(rng, lam * REJECT_RATIO)
            self.accepted += max(0, _poisson(rng, lam) - rejected)
            self.rejected += rejected
            self.hw += _poisson(rng, lam * (0.01 if self.fault == "overheat" else 0.001))
        target = self.target_temp()
        self.temp += (target - self.temp) * (1.0 - math.exp(-dt / TAU_S))

    def chip_temp(self, board: int) -> float:
        if not self.board_ok(board):
            return 0.0
        return self.temp + (board - 1) * 1.5

    def pcb_temp(self, board: int) -> float:
        if not self.board_ok(board):
            return 0.0
        return self.ambient + (self.chip_temp(board) - self.ambient) * 0.75

    def fan_rpms(self) -> list[int]:
        heat = min(1.0, max(0.0, (self.temp - 40.0) / 40.0))
        rpm = int(2400 + 3600 * heat)
        fans = [rpm + 60 * (i % 2) for i in range(self.model.fans)]
        if self.fault == "overheat":
            fans[0] = 0  # the failed fan
        return fans

    def elapsed(self) -> int:
        return max(0, int(time.time() - self.started_wall))

    def describe(self) -> dict:
        """The rig's ground truth, for a manifest: what a fleet sweep should find."""
        return {
            "host": self.host,
            "port": self.port,
            "model": self.model.name,
            "family": self.model.family,
            "fault": self.fault,
            "quirk": self.quirk,
            "dead_board": self.dead_board if self.dead_board >= 0 else None,
            "ignores_commands": self.ignores,
        }


# --- replies --------------------------------------------------------------------------------------------


DESCRIPTIONS = {"bosminer": "BOSminer+ 0.2.0-36c56a9363", "luxminer": "LUXminer 2024.11.1", "avalon": "cgminer 4.11.1"}


def _status(rig: Rig, severity: str, code: int, msg: str) -> dict:
    desc = DESCRIPTIONS.get(rig.model.family, "bmminer 1.0.0")
    return {"STATUS": severity, "When": int(time.time()), "Code": code, "Msg": msg, "Description": desc}


def _ok(rig: Rig, code: int, msg: str, **sections) -> dict:
    return {"STATUS": [_status(rig, "S", code, msg)], **sections, "id": 1}


def _fail(rig: Rig, code: int, msg: str, severity: str = "E") -> dict:
    return {"STATUS": [_status(rig, severity, code, msg)], "id": 1}


def _ths_text(value: float) -> str:
    return f"{value:.2f}"


def _summary(rig: Rig) -> dict:
    elapsed = max(rig.elapsed(), 1)
    rate = rig.rate_ghs()
    noisy = rate * (1.0 + rig_noise(rig)) if rate else 0.0
    av = rig.hashes_gh / elapsed
    diff_acc, diff_rej = float(rig.accepted * rig.diff), float(rig.rejected * rig.diff)
    total = diff_acc + diff_rej
    record: dict = {"Elapsed": rig.elapsed()}
    if rig.model.family in ("bosminer", "avalon"):  # BOSminer and Avalon's cgminer count in MH/s
        record.update({"MHS av": av * 1e3, "MHS 5s": noisy * 1e3, "MHS 1m": rate * 1e3, "MHS 5m": rate * 1e3})
        record["MHS 15m"] = rate * 1e3
    else:  # bmminer in GH/s, its 5 s rate a string
        record.update({"GHS 5s": _ths_text(noisy), "GHS av": round(av, 2)})
    record.update(
        {
            "Found Blocks": 0,
            "Getworks": elapsed // 30,
            "Accepted": rig.accepted,
            "Rejected": rig.rejected,
            "Hardware Errors": rig.hw,
            "Utility": round(rig.accepted / elapsed * 60, 2),
            "Discarded": elapsed // 30 * 4,
            "Stale": 0,
            "Get Failures": 0,
            "Local Work": elapsed * 12,
            "Remote Failures": 0,
            "Network Blocks": elapsed // 600,
            "Total MH": round(rig.hashes_gh * 1e3, 4),
            "Work Utility": round(diff_acc / elapsed * 60, 2),
            "Difficulty Accepted": diff_acc,
            "Difficulty Rejected": diff_rej,
            "Difficulty Stale": 0.0,
            "Best Share": rig.diff * 37,
            "Device Hardware%": round(100.0 * rig.hw / max(1, rig.hw + rig.accepted), 4),
            "Device Rejected%": round(100.0 * diff_rej / total, 4) if total else 0.0,
            "Pool Rejected%": round(100.0 * diff_rej / total, 4) if total else 0.0,
            "Pool Stale%": 0.0,
            "Last getwork": int(time.time()),
        }
    )
    return _ok(rig, MSG_SUMM, "Summary", SUMMARY=[record])


def rig_noise(rig: Rig) -> float:
    """The 5 s rate's wobble: a few tenths of a percent of share luck and clock jitter, seeded by the request."""
    return math.sin(rig.requests * 12.9898 + rig.index * 78.233) * 0.015


def _pools(rig: Rig) -> dict:
    records = []
    for index, url in enumerate(POOLS):
        active = index == rig.pool and rig.state == "mining"
        share = rig.accepted if index == rig.pool else 0
        records.append(
            {
                "POOL": index,
                "URL": url,
                "Status": "Alive",
                "Priority": rig.priority.index(index),
                "Quota": 1,
                "Long Poll": "N",
                "Getworks": rig.elapsed() // 30 if index == rig.pool else 0,
                "Accepted": share,
                "Rejected": rig.rejected if index == rig.pool else 0,
                "Discarded": 0,
                "Stale": 0,
                "Get Failures": 0,
                "Remote Failures": 0,
                "User": f"farm.rig{rig.index + 1:05d}",
                "Last Share Time": int(time.time()) if active else 0,
                "Diff1 Shares": share * rig.diff,
                "Difficulty Accepted": float(share * rig.diff),
                "Difficulty Rejected": 0.0,
                "Difficulty Stale": 0.0,
                "Last Share Difficulty": float(rig.diff) if active else 0.0,
                "Has Stratum": True,
                "Stratum Active": active,
                "Stratum URL": url.split("://", 1)[1].rsplit(":", 1)[0] if active else "",
                "Best Share": rig.diff * 37 if index == rig.pool else 0,
                "Pool Rejected%": 0.0,
                "Pool Stale%": 0.0,
            }
        )
    return _ok(rig, MSG_POOL, f"{len(POOLS)} Pool(s)", POOLS=records)


def _version(rig: Rig) -> dict:
    if rig.model.family == "bosminer":
        return _ok(rig, MSG_VERSION, "BOSminer+ versions", VERSION=[{"BOSminer+": "0.2.0-36c56a9363", "API": "3.7"}])
    record = {
        "BMMiner": "1.0.0" if rig.model.modern else "2.0.0",
        "API": "3.1",
        "Miner": "uart_trans.1.3" if rig.model.modern else "16.8.1.3",
        "CompileTime": "Mon Nov 29 11:04:35 CST 2021" if rig.model.modern else "Fri Nov 17 17:37:49 CST 2017",
        "Type": rig.model.name,
    }
    return _ok(rig, MSG_VERSION, "BMMiner versions", VERSION=[record])


def _acs(rig: Rig, board: int) -> str:
    if not rig.board_ok(board):
        return ""
    groups = [("o" * 8) for _ in range(rig.model.chips // 8)]
    if rig.model.chips % 8:
        groups.append("o" * (rig.model.chips % 8))
    return " " + " ".join(groups) + " "


def _bmminer_stats(rig: Rig) -> dict:
    m = rig.model
    elapsed = rig.elapsed()
    rate = rig.rate_ghs()
    rec: dict = {
        "STATS": 0,
        "ID": "BC50" if not m.modern else "BTM_SOC0",
        "Elapsed": elapsed,
        "Calls": 0,
        "Wait": 0.0,
        "Max": 0.0,
        "Min": 99999999.0,
        "GHS 5s": _ths_text(rate * (1.0 + rig_noise(rig)) if rate else 0.0),
        "GHS av": round(rig.hashes_gh / max(elapsed, 1), 2),
        "miner_count": m.boards,
        "frequency": str(m.frequency),
        "fan_num": m.fans,
    }
    for i, rpm in enumerate(rig.fan_rpms(), 1):
        rec[f"fan{i}"] = rpm
    rec["temp_num"] = m.boards
    chains = [m.chain_base + b for b in range(m.boards)]
    for b, c in enumerate(chains):
        rec[f"temp{c}"] = round(rig.pcb_temp(b))
    for b, c in enumerate(chains):
        rec[f"temp2_{c}"] = round(rig.chip_temp(b))
    rec["temp_max"] = max(round(rig.chip_temp(b)) for b in range(m.boards))
    rec["Device Hardware%"] = round(100.0 * rig.hw / max(1, rig.hw + rig.accepted), 4)
    rec["no_matching_work"] = rig.hw
    for b, c in enumerate(chains):
        rec[f"chain_acn{c}"] = m.chips if rig.board_ok(b) else 0
    for b, c in enumerate(chains):
        rec[f"chain_acs{c}"] = _acs(rig, b)
    for b, c in enumerate(chains):
        rec[f"chain_hw{c}"] = rig.hw // m.boards if rig.board_ok(b) else 0
    for b, c in enumerate(chains):
        rec[f"chain_rate{c}"] = _ths_text(rig.board_ghs(b))
    for b, c in enumerate(chains):
        rec[f"freq_avg{c}"] = m.frequency if rig.board_ok(b) else 0
    rec["total_rateideal"] = round(m.ths * 1e3, 2)
    rec["total_freqavg"] = float(m.frequency)
    rec["total_acn"] = sum(m.chips for b in range(m.boards) if rig.board_ok(b))
    rec["total_rate"] = round(rate, 2)
    rec["rate_unit"] = "GH"
    head = {"BMMiner": "1.0.0" if m.modern else "2.0.0", "Miner": "16.8.1.3", "CompileTime": "", "Type": m.name}
    return _ok(rig, MSG_MINESTATS, "CGMiner stats", STATS=[head, rec])


def _bmminer_new_api_stats(rig: Rig) -> dict:
    """The X19 generation's ``{"command":"stats","new_api":true}`` reply: one record with a chain list."""
    m = rig.model
    chains = []
    for b in range(m.boards):
        chip, pcb = round(rig.chip_temp(b)), round(rig.pcb_temp(b))
        chains.append(
            {
                "index": b,
                "freq_avg": m.frequency if rig.board_ok(b) else 0,
                "rate_ideal": round(m.ths * 1e3 / m.boards, 2),
                "rate_real": round(rig.board_ghs(b), 2),
                "asic_num": m.chips if rig.board_ok(b) else 0,
                "asic": _acs(rig, b).strip(),
                "temp_pic": [pcb - 2, pcb, pcb - 1, pcb + 1],
                "temp_pcb": [pcb - 4, pcb, pcb - 3, pcb + 2],
                "temp_chip": [chip - 3, chip, chip - 2, chip + 1],
                "hw": rig.hw // m.boards if rig.board_ok(b) else 0,
                "eeprom_loaded": True,
                "sn": f"SIM{rig.index + 1:05d}B{b}",
                "hwp": 0.0,
            }
        )
    elapsed = rig.elapsed()
    rate = rig.rate_ghs()
    return {
        "STATUS": {"STATUS": "S", "when": int(time.time()), "Msg": "stats", "api_version": "1.0.0"},
        "INFO": {"miner_version": "uart_trans.1.3", "CompileTime": "Mon Nov 29 11:04:35 CST 2021", "type": m.name},
        "STATS": [
            {
                "elapsed": elapsed,
                "rate_5s": round(rate * (1.0 + rig_noise(rig)), 2) if rate else 0.0,
                "rate_30m": round(rate, 2),
                "rate_avg": round(rig.hashes_gh / max(elapsed, 1), 2),
                "rate_ideal": round(m.ths * 1e3, 2),
                "rate_unit": "GH",
                "chain_num": m.boards,
                "fan_num": m.fans,
                "fan": rig.fan_rpms(),
                "hwp_total": 0.0,
                "miner-mode": 1 if rig.paused else 0,
                "freq-level": 100,
                "chain": chains,
            }
        ],
    }


def _bos_chain_ids(rig: Rig) -> list[int]:
    return [rig.model.chain_base + b for b in range(rig.model.boards)]


def _bos_devs(rig: Rig) -> dict:
    records = []
    elapsed = max(rig.elapsed(), 1)
    for b, chain in enumerate(_bos_chain_ids(rig)):
        ghs = rig.board_ghs(b)
        share = rig.accepted // rig.model.boards if rig.board_ok(b) else 0
        alive = rig.board_ok(b)
        records.append(
            {
                "ASC": b,
                "Name": "",
                "ID": chain,
                "Enabled": "Y" if rig.enabled >> b & 1 else "N",
                "Status": "Alive" if alive else "Dead",
                "Temperature": round(rig.chip_temp(b), 1),
                "MHS av": ghs * 1e3,
                "MHS 5s": ghs * 1e3 * (1.0 + rig_noise(rig)),
                "MHS 1m": ghs * 1e3,
                "MHS 5m": ghs * 1e3,
                "MHS 15m": ghs * 1e3,
                "Nominal MHS": rig.model.ths * 1e6 / rig.model.boards if alive else 0.0,
                "Accepted": share,
                "Rejected": 0,
                "Hardware Errors": rig.hw // rig.model.boards if alive else 0,
                "Utility": round(share / elapsed * 60, 2),
                "Last Share Pool": rig.pool,
                "Last Share Time": int(time.time()) if ghs else 0,
                "Total MH": rig.hashes_gh * 1e3 / rig.model.boards if alive else 0.0,
                "Diff1 Work": share * rig.diff,
                "Difficulty Accepted": float(share * rig.diff),
                "Difficulty Rejected": 0.0,
                "Last Share Difficulty": float(rig.diff),
                "Last Valid Work": int(time.time()),
                "Device Hardware%": 0.0,
                "Device Rejected%": 0.0,
                "Device Elapsed": rig.elapsed(),
            }
        )
    return _ok(rig, MSG_DEVS, f"{len(records)} ASC(s)", DEVS=records)


def _bmminer_devs(rig: Rig) -> dict:
    records = []
    for b in range(rig.model.boards):
        ghs = rig.board_ghs(b)
        records.append(
            {
                "ASC": b,
                "Name": "BTM_SOC",
                "ID": b,
                "Enabled": "Y" if rig.enabled >> b & 1 else "N",
                "Status": "Alive" if rig.board_ok(b) else "Dead",
                "Temperature": round(rig.chip_temp(b), 2),
                "MHS av": ghs * 1e3,
                "MHS 5s": ghs * 1e3,
                "Accepted": rig.accepted // rig.model.boards,
                "Rejected": rig.rejected // rig.model.boards,
                "Hardware Errors": rig.hw // rig.model.boards,
            }
        )
    return _ok(rig, MSG_DEVS, f"{len(records)} ASC(s)", DEVS=records)


def _devdetails(rig: Rig) -> dict:
    records = []
    bos = rig.model.family == "bosminer"
    for b, chain in enumerate(_bos_chain_ids(rig) if bos else range(rig.model.boards)):
        record = {"DEVDETAILS": b, "Name": "" if bos else "BTM_SOC", "ID": chain}
        record.update({"Driver": "" if bos else "bitmain_soc", "Kernel": "", "Device Path": ""})
        record["Model"] = f"Bitmain {rig.model.name}" if bos else ""
        if bos:
            record.update({"Chips": rig.model.chips if rig.board_ok(b) else 0, "Frequency": rig.model.frequency})
            record["Voltage"] = 8.8
        records.append(record)
    return _ok(rig, MSG_DEVDETAILS, "Device Details", DEVDETAILS=records)


def _bos_temps(rig: Rig) -> dict:
    records = [
        {"TEMPS": b, "ID": chain, "Board": round(rig.pcb_temp(b), 1), "Chip": round(rig.chip_temp(b), 1)}
        for b, chain in enumerate(_bos_chain_ids(rig))
        if rig.board_ok(b)
    ]
    return _ok(rig, BOS_TEMPS, "Temperatures", TEMPS=records)


def _bos_fans(rig: Rig) -> dict:
    records = [{"FANS": i, "ID": i, "RPM": rpm, "Speed": min(100, rpm // 60)} for i, rpm in enumerate(rig.fan_rpms())]
    return _ok(rig, BOS_FANS, "Fans", FANS=records)


def _bos_tunerstatus(rig: Rig) -> dict:
    m = rig.model
    power = round(rig.power_w())
    chains = []
    for b, chain in enumerate(_bos_chain_ids(rig)):
        status = "Stable" if rig.board_ok(b) else "Failed to initialize {hashboard not detected}"
        if rig.paused or not rig.enabled >> b & 1:
            status = "Stopped"
        chains.append(
            {
                "HashchainIndex": chain,
                "Iteration": 0,
                "LoadedProfile": True,
                "PowerLimit": round(m.watts / m.boards),
                "StageElapsed": rig.elapsed(),
                "Status": status,
            }
        )
    record = {
        "PowerLimit": round(m.watts),
        "DynamicPowerScaling": "Disabled",
        "ApproximateMinerPowerConsumption": power,
        "ApproximateChainPowerConsumption": max(0, power - round(m.idle_w)),
        "TunerChainStatus": chains,
        "TunerMode": "PowerTarget",
    }
    return _ok(rig, BOS_TUNER, "Tuner Status", TUNERSTATUS=[record])


def _config(rig: Rig) -> dict:
    record = {
        "ASC Count": rig.model.boards,
        "PGA Count": rig.model.boards if rig.model.family == "bmminer" else 0,
        "Pool Count": len(POOLS),
        "Strategy": "Failover",
        "Log Interval": 5,
        "Device Code": "",
        "OS": "Linux",
        "Hotplug": "None",
    }
    return _ok(rig, MSG_MINECONFIG, "CGMiner config", CONFIG=[record])


def _device_id(rig: Rig, param: str | None, kind: str) -> tuple[int | None, dict | None]:
    count = rig.model.boards
    if param is None or not param.strip():
        return None, _fail(rig, MSG_MISID, "Missing device id parameter")
    invalid = MSG_INVASC if kind == "ASC" else MSG_INVPGA
    try:
        index = int(param.strip())
    except ValueError:
        return None, _fail(rig, invalid, f"Invalid {kind} id {param} - range is 0 - {count - 1}")
    if not 0 <= index < count:
        return None, _fail(rig, invalid, f"Invalid {kind} id {index} - range is 0 - {count - 1}")
    return index, None


def _set_board(rig: Rig, param: str | None, kind: str, enable: bool) -> dict:
    index, bad = _device_id(rig, param, kind)
    if bad:
        return bad
    on = bool(rig.enabled >> index & 1)
    if kind == "ASC":
        codes = (MSG_ASCLRENA, MSG_ASCENA) if enable else (MSG_ASCLRDIS, MSG_ASCDIS)
        name = f"ASC {index}"
    else:
        codes = (MSG_PGALRENA, MSG_PGAENA) if enable else (MSG_PGALRDIS, MSG_PGADIS)
        name = f"PGA{index}"
    if on == enable:
        return _fail(rig, codes[0], f"{name} already {'enabled' if enable else 'disabled'}", "I")
    if not rig.ignores:
        rig.enabled = rig.enabled | (1 << index) if enable else rig.enabled & ~(1 << index)
    return _ok(rig, codes[1], f"{name} sent enable message" if enable else f"{name} set disable flag")


def _switchpool(rig: Rig, param: str | None) -> dict:
    if param is None or not param.strip():
        return _fail(rig, MSG_MISPID, "Missing pool id parameter")
    try:
        index = int(param.strip())
    except ValueError:
        index = -1
    if not 0 <= index < len(POOLS):
        return _fail(rig, MSG_INVPID, f"Invalid pool id {param.strip()} - range is 0 - {len(POOLS) - 1}")
    rig.pool = index
    rig.priority = [index] + [i for i in rig.priority if i != index]
    return _ok(rig, MSG_SWITCHP, f"Switching to pool {index}:'{POOLS[index]}'")


def _pause(rig: Rig, pause: bool) -> dict:
    if not rig.ignores:
        rig.paused = pause
    key = "PAUSE" if pause else "RESUME"
    code = MSG_PAUSE if pause else MSG_RESUME
    return _ok(rig, code, "Pause" if pause else "Resume", **{key: [{key: True}]})


def _count(rig: Rig, kind: str) -> dict:
    if kind == "ASC":
        return _ok(rig, MSG_NUMASC, "ASC count", ASCS=[{"Count": rig.model.boards}])
    return _ok(rig, MSG_NUMPGA, "PGA count", PGAS=[{"Count": rig.model.boards}])


Reply = Callable[[Rig, "str | None"], "dict | str"]

COMMON: dict[str, Reply] = {
    "version": lambda rig, p: _version(rig),
    "summary": lambda rig, p: _summary(rig),
    "pools": lambda rig, p: _pools(rig),
    "devdetails": lambda rig, p: _devdetails(rig),
    "config": lambda rig, p: _config(rig),
    "asccount": lambda rig, p: _count(rig, "ASC"),
    "switchpool": _switchpool,
    "restart": lambda rig, p: "RESTART",
    "quit": lambda rig, p: "BYE",
}
BMMINER: dict[str, Reply] = {
    **COMMON,
    "stats": lambda rig, p: _bmminer_stats(rig),
    "estats": lambda rig, p: _bmminer_stats(rig),
    "devs": lambda rig, p: _bmminer_devs(rig),
    "edevs": lambda rig, p: _bmminer_devs(rig),
    "pgacount": lambda rig, p: _count(rig, "PGA"),
    "ascenable": lambda rig, p: _set_board(rig, p, "ASC", True),
    "ascdisable": lambda rig, p: _set_board(rig, p, "ASC", False),
    "pgaenable": lambda rig, p: _set_board(rig, p, "PGA", True),
    "pgadisable": lambda rig, p: _set_board(rig, p, "PGA", False),
}
BOSMINER: dict[str, Reply] = {
    **COMMON,
    "stats": lambda rig, p: _ok(rig, MSG_MINESTATS, "CGMiner stats", STATS=[_bos_stats_record(rig)]),
    "estats": lambda rig, p: _ok(rig, MSG_MINESTATS, "CGMiner stats", STATS=[_bos_stats_record(rig)]),
    "devs": lambda rig, p: _bos_devs(rig),
    "edevs": lambda rig, p: _bos_devs(rig),
    "temps": lambda rig, p: _bos_temps(rig),
    "fans": lambda rig, p: _bos_fans(rig),
    "tunerstatus": lambda rig, p: _bos_tunerstatus(rig),
    "pause": lambda rig, p: _pause(rig, True),
    "resume": lambda rig, p: _pause(rig, False),
    "ascenable": lambda rig, p: _set_board(rig, p, "ASC", True),
    "ascdisable": lambda rig, p: _set_board(rig, p, "ASC", False),
}
WRITE = {"switchpool", "restart", "quit", "pause", "resume", "ascenable", "ascdisable", "pgaenable", "pgadisable"}
PRIVILEGED = {"logon", "logoff", "curtail", "profileset", "atmset", "ascset"}  # never inside a joined request


def _bos_stats_record(rig: Rig) -> dict:
    elapsed = rig.elapsed()
    return {"STATS": 0, "ID": "BOSminer0", "Elapsed": elapsed, "Calls": 0, "Wait": 0.0, "Max": 0.0, "Min": 99999999.0}


def _table(rig: Rig) -> dict[str, Reply]:
    family = rig.model.family
    if family in ("luxminer", "avalon"):
        from miner.asic import sim_power  # the power-dial firmware, built on these tables

        return sim_power.LUXMINER if family == "luxminer" else sim_power.AVALON
    return BOSMINER if family == "bosminer" else BMMINER


# --- requests -------------------------------------------------------------------------------------------


@dataclass
class Request:
    isjson: bool
    command: str | None
    parameter: str | None
    new_api: bool = False
    error: tuple[int, str] | None = None


def parse(data: bytes) -> Request:
    text = data.split(b"\0", 1)[0].decode("utf-8", errors="replace").strip()
    if not text.startswith("{"):
        command, sep, param = text.partition("|")
        return Request(False, command.strip(), param if sep else None)
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        return Request(True, None, None, error=(MSG_INVJSON, "Invalid JSON"))
    if not isinstance(obj, dict):
        return Request(True, None, None, error=(MSG_INVJSON, "Invalid JSON"))
    command = obj.get("command")
    if command is None:
        return Request(True, None, None, error=(MSG_MISCMD, "Missing JSON 'command'"))
    if not isinstance(command, str):
        return Request(True, None, None, error=(MSG_INVCMD, "Invalid command"))
    raw = obj.get("parameter")
    param = None if raw is None or isinstance(raw, bool) else str(raw)
    return Request(True, command, param, new_api=obj.get("new_api") is True)


def complete(buf: bytes) -> bool:
    """Whether a request has arrived whole: a text command's first read, or JSON that parses, or a NUL."""
    stripped = buf.lstrip()
    if not stripped:
        return False
    if not stripped.startswith(b"{") or b"\0" in buf or b"\n" in buf or len(buf) >= MAX_REQUEST:
        return True
    try:
        json.loads(buf.decode("utf-8", errors="replace"))
    except ValueError:
        return False
    return True


def _text_form(reply: dict) -> str:
    """A reply in cgminer's text form: ``STATUS=S,When=...|SECTION,key=value,...|``."""

    def record(rec: dict) -> str:
        parts = []
        for key, value in rec.items():
            if isinstance(value, (list, dict)):
                continue
            shown = ("true" if value else "false") if isinstance(value, bool) else str(value)
            parts.append(f"{key}={shown.replace(',', chr(92) + ',').replace('|', chr(92) + '|')}")
        return ",".join(parts) + "|"

    status = reply.get("STATUS")
    out = record(status[0]) if isinstance(status, list) else ""
    for key, value in reply.items():
        if key in ("STATUS", "id") or not isinstance(value, list):
            continue
        for rec in value:
            out += record(rec)
    return out


def answer(rig: Rig, request: Request) -> tuple[bytes, str | None]:
    """The reply bytes for one request, and the action it starts once sent ("restart", "quit" or None)."""
    if request.error is not None:
        reply: dict | str = _fail(rig, *request.error)
        return _encode(rig, reply, request.isjson, False), None
    table = _table(rig)
    command = request.command or ""
    if "+" in command:
        parts: dict = {}
        for name in command.split("+"):
            if not name or name in parts:
                continue
            if name in WRITE or name in PRIVILEGED:
                parts[name] = [_fail(rig, MSG_ACCDENY, f"Access denied to '{name}' command")]
            else:
                handler = table.get(name)
                parts[name] = [handler(rig, None) if handler else _fail(rig, MSG_INVCMD, "Invalid command")]
        parts["id"] = 1
        return _encode(rig, parts, request.isjson, True), None
    handler = table.get(command)
    if handler is None:
        return _encode(rig, _fail(rig, MSG_INVCMD, "Invalid command"), request.isjson, False), None
    if command == "stats" and request.new_api and rig.model.family == "bmminer" and rig.model.modern:
        reply = _bmminer_new_api_stats(rig)
    else:
        reply = handler(rig, request.parameter)
    action = {"RESTART": "restart", "BYE": "quit"}.get(reply) if isinstance(reply, str) else None
    return _encode(rig, reply, request.isjson, False), action


def _encode(rig: Rig, reply: dict | str, isjson: bool, joined: bool) -> bytes:
    if isinstance(reply, str):
        return reply.encode() + (b"" if rig.quirk == "no_nul" else b"\0")
    if not isjson:
        if joined:
            text = "".join(f"CMD={k}|" + _text_form(v[0]) for k, v in reply.items() if k != "id")
        else:
            text = _text_form(reply)
        return text.encode() + b"\0"
    if joined and rig.quirk == "glued":  # old bmminer: each part's object, back to back
        body = "".join(json.dumps(v[0], separators=(",", ":")) for k, v in reply.items() if k != "id")
    else:
        body = json.dumps(reply, separators=(",", ":"))
    if rig.quirk == "glued":
        body = body.replace("},{", "}{")
    elif rig.quirk == "trailing_comma":
        body = body.replace("}],", "},],", 1)
    elif rig.quirk == "truncated":
        body = body[: max(1, len(body) * 2 // 3)]
    return body.encode() + (b"" if rig.quirk in ("no_nul", "truncated") else b"\0")


# --- the farm -------------------------------------------------------------------------------------------


class RigProtocol(asyncio.Protocol):
    """One connection to one rig: read a request, answer it (late, never or malformed where the rig's fault
    says), close."""

    __slots__ = ("farm", "rig", "transport", "buf", "timer", "done", "holding")

    def __init__(self, farm: Farm, rig: Rig) -> None:
        self.farm = farm
        self.rig = rig
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.timer: asyncio.TimerHandle | None = None
        self.done = False
        self.holding = False  # this connection is the one an Avalon is serving

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.farm.connections += 1
        now = self.farm.loop.time()
        if self.rig.state == "booting" and now < self.rig.state_until:
            transport.close()  # the API is not up yet: the connection drops without a reply
            self.done = True
            return
        self.timer = self.farm.loop.call_later(HOLD_S if self.rig.fault == "unresponsive" else 10.0, self._expire)
        if self.rig.model.family == "avalon":  # its API serves one connection at a time: the rest wait
            if self.rig.busy:
                self.rig.waiting.append(self)
                transport.pause_reading()
            else:
                self.rig.busy = self.holding = True

    def _release(self) -> None:
        """An Avalon done with this connection takes the next one waiting."""
        if not self.holding:
            if self in self.rig.waiting:
                self.rig.waiting.remove(self)
            return
        self.holding = self.rig.busy = False
        while self.rig.waiting:
            nxt = self.rig.waiting.pop(0)
            if nxt.transport is not None and not nxt.transport.is_closing():
                self.rig.busy = nxt.holding = True
                nxt.transport.resume_reading()
                break

    def data_received(self, data: bytes) -> None:
        if self.done:
            return
        self.buf += data
        if complete(self.buf):
            self._respond()
        elif self.rig.fault != "unresponsive":  # cgminer answers what one read brought: wait a moment, no more
            self._cancel_timer()
            self.timer = self.farm.loop.call_later(PARTIAL_S, self._respond)

    def eof_received(self):
        if not self.done and self.buf:
            self._respond()
        return True  # keep the write side open for the reply

    def _respond(self) -> None:
        if self.done:
            return
        self.done = True
        if self.rig.fault == "unresponsive":
            return  # accepted, never answered; the hold timer lets go eventually
        if self.rig.fault == "slow":
            self._cancel_timer()
            self.timer = self.farm.loop.call_later(self.rig.delay, self._send)
        else:
            self._send()

    def _send(self) -> None:
        self._cancel_timer()
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        rig, farm = self.rig, self.farm
        rig.advance(farm.loop.time(), farm.rng)
        rig.requests += 1
        farm.requests += 1
        reply, action = answer(rig, parse(self.buf[:MAX_REQUEST]))
        transport.write(reply)
        transport.close()
        if action is not None:
            farm.act(rig, action)

    def _expire(self) -> None:
        self.timer = None
        if self.transport is not None:
            self.transport.close()

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def connection_lost(self, exc) -> None:
        self._cancel_timer()
        self.transport = None
        self._release()


class Farm:
    """N rigs in one event loop: their models, faults and listening sockets."""

    def __init__(
        self,
        count: int,
        seed: int = 0,
        fault_rate: float = 0.05,
        base: str = DEFAULT_BASE,
        port: int = API_PORT,
        models: tuple[Model, ...] = MODELS,
        mix: str = "stock",
        speed: float = 1.0,
        ignore_rate: float = 0.0,
        session_timeout: float = 60.0,
    ) -> None:
        if count < 1:
            raise ValueError("a farm needs at least one rig")
        if not 0.0 <= fault_rate <= 1.0:
            raise ValueError("the fault rate is a fraction from 0 to 1")
        if not 0.0 <= ignore_rate <= 1.0:
            raise ValueError("the share of rigs ignoring commands is a fraction from 0 to 1")
        if speed <= 0:
            raise ValueError("the speed is a positive number of simulated seconds per second")
        self.addresses = rig_addresses(count, base)
        self.port = port
        self.rng = random.Random(seed)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.requests = 0
        self.connections = 0
        self.fallbacks = 0
        self.speed = speed
        self.session_timeout = session_timeout  # LuxOS drops a session idle this long (real seconds)
        now, wall = time.monotonic(), time.time()
        weights = mix_weights(mix, models)
        self.rigs: list[Rig] = []
        for index in range(count):
            model = self.rng.choices(models, weights)[0]
            self.rigs.append(Rig(index, model, self.rng, now, wall))
        faulty = self.rng.sample(range(count), round(count * fault_rate))
        for n, index in enumerate(faulty):
            rig = self.rigs[index]
            rig.fault = FAULTS[n % len(FAULTS)]
            if rig.fault == "dead_board":
                rig.dead_board = self.rng.randrange(rig.model.boards)
            elif rig.fault == "slow":
                rig.delay = self.rng.uniform(*SLOW_S)
            elif rig.fault == "malformed":
                rig.quirk = QUIRKS[(n // len(FAULTS)) % len(QUIRKS)]
        for rig in self.rigs:
            rig.temp = rig.target_temp()  # each rig has run long enough to settle
            rig.speed, rig.session_timeout = speed, session_timeout
        if ignore_rate:  # drawn apart from the faults, so a seed's farm is the same with or without them
            picker = random.Random(f"{seed}-ignore")
            for index in picker.sample(range(count), round(count * ignore_rate)):
                self.rigs[index].ignores = True

    async def start(self) -> list[tuple[str, int]]:
        """Bind every rig (its own address on port 4028, else 127.0.0.1 on a port of its own) and serve."""
        self.loop = asyncio.get_running_loop()
        for rig, address in zip(self.rigs, self.addresses, strict=True):
            sock = self._bind(address, self.port)
            if sock is None:
                self.fallbacks += 1
                sock = self._bind("127.0.0.1", 0)
                if sock is None:
                    raise OSError(errno.EADDRNOTAVAIL, "no loopback address or port left to bind")
            rig.host, rig.port = sock.getsockname()[:2]
            rig.server = await self.loop.create_server(lambda rig=rig: RigProtocol(self, rig), sock=sock)
            rig.last = self.loop.time()
        return [(rig.host, rig.port) for rig in self.rigs]

    @staticmethod
    def _bind(host: str, port: int) -> socket.socket | None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(128)
        except OSError:
            sock.close()
            return None
        sock.setblocking(False)
        return sock

    def act(self, rig: Rig, action: str) -> None:
        """What restart and quit do once their reply is sent."""
        if action == "restart":
            rig.state, rig.state_until = "booting", self.loop.time() + BOOT_S
        elif action == "quit":
            rig.state = "off"
            if rig.server is not None:
                rig.server.close()  # connection refused from now on

    async def stop(self) -> None:
        for rig in self.rigs:
            if rig.server is not None:
                rig.server.close()
        for rig in self.rigs:
            if rig.server is not None:
                await rig.server.wait_closed()
                rig.server = None

    def rig_at(self, host: str, port: int) -> Rig | None:
        for rig in self.rigs:
            if rig.host == host and rig.port == port:
                return rig
        return None

    def manifest(self) -> list[dict]:
        return [rig.describe() for rig in self.rigs]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {"rigs": len(self.rigs), "faulty": sum(1 for r in self.rigs if r.fault)}
        for fault in FAULTS:
            out[fault] = sum(1 for r in self.rigs if r.fault == fault)
        if any(r.ignores for r in self.rigs):
            out["ignores_commands"] = sum(1 for r in self.rigs if r.ignores)
        return out


def rss_mib() -> float | None:
    """This process's resident memory, MiB (Linux), to say what a farm of N rigs costs."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
