"""Power control per firmware family: set a rig's power target, sleep it, wake it, and read it back.

Each family has its own verbs and rules (``../shared/FARM-ANCHORS.md`` section 2): LuxOS takes a session
from ``logon`` (one at a time, dropped after a minute unused) and sets power by profile; Avalon sets a work
level and sleeps with soft off; this miner sleeps with pause and dials its thread count; Braiins OS over its
cgminer API and stock Antminer firmware only sleep and wake (pause/resume; every board's ascdisable).

Nothing is fire-and-forget: :func:`command` acknowledges, waits the model's ramp time, reads the rig back,
sends once more where the reading is off, and reads again; a rig still off after two read-backs is reported
as not complying. :func:`preflight` checks every rig (reachable, a known family, the target within the
model's range, the session granted) before any is touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from miner.asic.client import ApiError, query_async, reply_status
from miner.asic.fleet import _family, _first, _model, _num, hashrate_ghs, mm_fields
from miner.asic.models import Model, model_for

TOLERANCE = 0.08  # a reading within 8% (and 60 W) of the draw commanded complies
TOLERANCE_W = 60.0
LUX_SESSION_CODE = 312


class PowerError(ValueError):
    """Bad input: an unknown family, a target out of range, a refused session. Nothing was sent."""


@dataclass
class Rig:
    host: str
    port: int
    family: str
    model: Model | None
    name: str  # the model as the firmware names it

    @property
    def key(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass
class Reading:
    watts: float | None
    ths: float | None
    asleep: bool
    threads: int | None = None  # this miner's dial: CPU threads hashing


@dataclass
class Outcome:
    """One rig's command, its acknowledgement and what reading it back found."""

    host: str
    port: int
    family: str
    model: str
    action: str  # "target", "sleep" or "wake"
    commanded_w: float | None
    commands: list[str] = field(default_factory=list)
    acknowledged: bool = False
    complied: bool = False
    measured_w: float | None = None
    readbacks: int = 0
    message: str = ""
    latency_s: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


async def _ask(host: str, port: int, command: str, parameter: str | None, timeout: float) -> dict:
    return await query_async(host, port, command, parameter, timeout)


def _ok(reply: dict) -> tuple[bool, str, int | None]:
    sev, code, msg = reply_status(reply)
    return sev in ("S", "I"), msg, code


# --- LuxOS sessions -------------------------------------------------------------------------------------


class Sessions:
    """One LuxOS session per rig, reused while it lives; a rig that dropped it gets a new logon."""

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}
        self.atm_off: set[str] = set()
        self.logons = 0
        self.reused = 0

    async def logon(self, rig: Rig, timeout: float) -> str:
        reply = await _ask(rig.host, rig.port, "logon", None, timeout)
        ok, msg, _ = _ok(reply)
        sid = str(_first(reply, "SESSION").get("SessionID", "")) if ok else ""
        if not sid:
            raise PowerError(f"{rig.key}: LuxOS refused the session: {msg or 'no session id'}")
        self.ids[rig.key] = sid
        self.logons += 1
        return sid

    async def close(self, rigs: list[Rig], timeout: float) -> None:
        """Log off every session opened: LuxOS allows one at a time, and the next tool needs it."""
        by_key = {r.key: r for r in rigs}
        for key, sid in list(self.ids.items()):
            rig = by_key.get(key)
            if rig is not None:
                with contextlib.suppress(ApiError):
                    await _ask(rig.host, rig.port, "logoff", sid, timeout)
            del self.ids[key]

    async def call(self, rig: Rig, command: str, argument: str, timeout: float) -> dict:
        """``command <sid>,<argument>``, logging on first or again where the session has gone."""
        sid = self.ids.get(rig.key)
        if sid is not None:
            reply = await _ask(rig.host, rig.port, command, f"{sid},{argument}", timeout)
            _, msg, code = _ok(reply)
            if not (code == LUX_SESSION_CODE and "session" in msg.lower()):
                self.reused += 1
                return reply
            self.atm_off.discard(rig.key)
        sid = await self.logon(rig, timeout)
        return await _ask(rig.host, rig.port, command, f"{sid},{argument}", timeout)


# --- the families ---------------------------------------------------------------------------------------


class Driver:
    """How one family is told to draw a target, sleep and wake, and how its draw is read back."""

    dial = False

    def __init__(self, sessions: Sessions, timeout: float) -> None:
        self.sessions, self.timeout = sessions, timeout

    def check(self, rig: Rig, watts: float) -> None:
        if not self.dial:
            raise PowerError(f"{rig.key}: {rig.family} has no power dial over its API; sleep and wake only")
        model = rig.model
        if model is None or not model.dial:
            raise PowerError(f"{rig.key}: no power range known for '{rig.name}'")
        if not model.min_w - 0.5 <= watts <= model.max_w + 0.5:
            raise PowerError(
                f"{rig.key}: power target {watts:.0f} W is not in the allowed range "
                f"[{model.min_w:.0f} W, {model.max_w:.0f} W] of {model.name}"
            )

    async def send(self, rig: Rig, command: str, parameter: str | None) -> tuple[bool, str]:
        reply = await _ask(rig.host, rig.port, command, parameter, self.timeout)
        ok, msg, code = _ok(reply)
        return ok, f"{msg} (code {code})" if code is not None else msg

    async def target(self, rig: Rig, watts: float, out: Outcome) -> tuple[bool, str]:
        raise NotImplementedError

    async def sleep(self, rig: Rig, out: Outcome) -> tuple[bool, str]:
        raise NotImplementedError

    async def wake(self, rig: Rig, out: Outcome) -> tuple[bool, str]:
        raise NotImplementedError

    async def read(self, rig: Rig) -> Reading:
        reply = await _ask(rig.host, rig.port, "summary", None, self.timeout)
        ghs = hashrate_ghs(_first(reply, "SUMMARY"))
        ths = None if ghs is None else ghs / 1e3
        watts = None
        if rig.model is not None and ths is not None:
            watts = max(rig.model.idle_w, ths * rig.model.jth)  # stock firmware reports no watts
        return Reading(watts, ths, not ths)


class LuxDriver(Driver):
    dial = True

    async def _lux(self, rig: Rig, command: str, argument: str, out: Outcome) -> tuple[bool, str]:
        out.commands.append(f"{command} <sid>,{argument}")
        reply = await self.sessions.call(rig, command, argument, self.timeout)
        ok, msg, code = _ok(reply)
        return ok, f"{msg} (code {code})"

    async def target(self, rig: Rig, watts: float, out: Outcome) -> tuple[bool, str]:
        if rig.key not in self.sessions.atm_off:  # profileset is refused while ATM steers the profile
            ok, msg = await self._lux(rig, "atmset", "enabled=false", out)
            if not ok:
                return ok, msg
            self.sessions.atm_off.add(rig.key)
        return await self._lux(rig, "profileset", f"{watts:.0f}W", out)

    async def sleep(self, rig: Rig, out: Outcome) -> tuple[bool, str]:
        return await self._lux(rig, "curtail", "sleep", out)

    async def wake(self, rig: Rig, out: Outcome) -> tuple[bool, str]:
        return await self._lux(rig, "curtail", "wakeup", out)

    async def read(self, rig: Rig) -> Reading:
        power = await _ask(rig.host, rig.port, "power", None, self.timeout)
        summary = await _ask(rig.host, rig.port, "summary", None, self.timeout)
        profile = await _ask(rig.host, rig.port, "profileget", None, self.timeout)
        ghs = hashrate_ghs(_first(summary, "SUMMARY"))
        asleep = bool(_first(profile, "PROFILE").get("Sleeping"))
        return Reading(_num(_first(power, "POWER").get("Watts")), None if ghs is None else ghs / 1e3, asleep)


class AvalonDriver(Driver):
    dial = True

    def level(self, rig: Rig, watts: float) -> int:
        """The highest work level that draws no more than ``watts``."""
        settings = rig.model.settings() if rig.model else []
        fits = [i for i, w in enumerate(settings) if w <= watts + 0.5]
        return fits[-1] if fits else 0

    async def _set(self, rig: Rig, parameter: str, out: Outcome) -> tuple[bool, str]:
        out.commands.append(f"ascset|{parameter}")
        return await self.send(rig, "ascset", parameter)

    async def target(self, rig: Rig, watts: float, out: Outcome) -> tuple[bool, str]:
        return await self._set(rig, f"0,worklevel,set,{self.level(rig, watts)}", out)

    async def sleep(self, rig: Rig, out: Outcome) -> tuple[bool, str]:
        return await self._set(rig, f"0,softoff,1:{int(time.time())}", out)

    async def wake(self, rig: Rig, out: Outcome) -> tuple[bool, str]:
        return await self._set(rig, f"0,softon,1:{int(time.time())}", out)

    async def read(self, rig: Rig) -> Reading:  # one request at a time: its API serves no more
        stats = await _ask(rig.host, rig.port, "stats", None, self.timeout)
        summary = await _ask(rig.host, rig.port, "summary", None, self.timeout)
        fields = mm_fields(stats)
        ps = fields.get("PS", "").split()
        ghs = hashrate_ghs(_first(summary, "SUMMARY"))
        watts = _num(ps[4]) if len(ps) >= 5 else None
        return Reading(watts, None if ghs is None else ghs / 1e3, fields.get("SoftOFF") == "1")


class PauseDriver(Driver):
    """Braiins OS's cgminer API and this miner: pause and resume."""

    async def sleep(self, rig: Rig, out: Outcome) -> tuple[bool, str]:
        out.commands.append("pause")
        return await self.send(rig, "pause", None)

    async def wake(self, rig: Rig, out: Outcome) -> tuple[bool, str]:
        out.commands.append("resume")
        return await self.send(rig, "resume", None)

    async def read(self, rig: Rig) -> Reading:
        reading = await super().read(rig)
        if rig.family == "bosminer":
            tuner = await _ask(rig.host, rig.port, "tunerstatus", None, self.timeout)
            watts = _num(_first(tuner, "TUNERSTATUS").get("ApproximateMinerPowerConsumption"))
            reading.watts = watts if watts is not None else reading.watts
        return reading


class MinerDriver(PauseDriver):
    """This miner: its dial is the number of CPU threads hashing (pgaenable|N / pgadisable|N)."""

    dial = True

    def check(self, rig: Rig, watts: float) -> None:
        raise PowerError(f"{rig.key}: this miner reports no watts; give the target as a percentage (threads)")

    async def threads(self, rig: Rig, percent: float, out: Outcome) -> tuple[bool, str, int]:
        """Enable the first ``percent`` of the threads, disable the rest; (ok, reply, threads wanted)."""
        devs = await _ask(rig.host, rig.port, "devs", None, self.timeout)
        records = [r for r in devs.get("DEVS", []) if isinstance(r, dict)]
        count = max(1, round(len(records) * percent / 100)) if records else 0
        out.commanded_w = None
        for index, rec in enumerate(records):
            want = index < count
            if (rec.get("Enabled") == "Y") == want:
                continue
            verb = "pgaenable" if want else "pgadisable"
            out.commands.append(f"{verb}|{index}")
            ok, msg = await self.send(rig, verb, str(index))
            if not ok:
                return ok, msg, count
        return True, f"{count} of {len(records)} threads", count

    async def read(self, rig: Rig) -> Reading:
        reading = await super().read(rig)
        devs = await _ask(rig.host, rig.port, "devs", None, self.timeout)
        records = [r for r in devs.get("DEVS", []) if isinstance(r, dict)]
        reading.threads = sum(1 for r in records if r.get("Enabled") == "Y")
        return reading


class StockDriver(Driver):
    """Stock Antminer firmware has no sleep verb over its API: every hash board's ascdisable/ascenable."""

    async def _boards(self, rig: Rig, verb: str, out: Outcome) -> tuple[bool, str]:
        for board in range(rig.model.boards if rig.model else 3):
            out.commands.append(f"{verb}|{board}")
            ok, msg = await self.send(rig, verb, str(board))
            if not ok and "already" not in msg:
                return ok, msg
        return True, "every board"

    async def sleep(self, rig: Rig, out: Outcome) -> tuple[bool, str]:
        return await self._boards(rig, "ascdisable", out)

    async def wake(self, rig: Rig, out: Outcome) -> tuple[bool, str]:
        return await self._boards(rig, "ascenable", out)


DRIVERS: dict[str, type[Driver]] = {
    "luxminer": LuxDriver,
    "avalon": AvalonDriver,
    "bosminer": PauseDriver,
    "sha256d-miner": MinerDriver,
    "bmminer": StockDriver,
}


# --- finding out who a rig is ---------------------------------------------------------------------------


async def identify(host: str, port: int, timeout: float) -> Rig:
    """The rig's family and model, from its version reply; PowerError where it cannot be steered."""
    try:
        version = await _ask(host, port, "version", None, timeout)
    except ApiError as exc:
        raise PowerError(f"{host}:{port}: {exc}") from None
    family = _family(version, None)
    devdetails = None
    if family == "bosminer":
        try:
            devdetails = await _ask(host, port, "devdetails", None, timeout)
        except ApiError:
            devdetails = None
    if family not in DRIVERS:
        raise PowerError(f"{host}:{port}: unknown firmware family '{family or 'unrecognised'}'; no rig was touched")
    name = _model(family, version, devdetails)
    return Rig(host, port, family, model_for(name, family) if name else None, name)


def watts_for(rig: Rig, target: str) -> float | None:
    """A target as watts: ``3000`` or ``3000W``, or ``80%`` of the model's nominal draw (None: this miner)."""
    text = target.strip().upper().removesuffix("W")
    if text.endswith("%"):
        pct = float(text[:-1])
        if rig.family == "sha256d-miner":
            return None
        if rig.model is None:
            raise PowerError(f"{rig.key}: no nominal draw known for '{rig.name}'")
        return rig.model.watts * pct / 100
    return float(text)


def parse_target(target: str) -> tuple[float, bool]:
    """(value, is_percent), or ValueError with one line."""
    text = target.strip().upper()
    percent = text.endswith("%")
    body = text.removesuffix("%").removesuffix("W")
    try:
        value = float(body)
    except ValueError:
        raise ValueError(f"power target '{target}' is not watts (3000, 3000W) or a percentage (80%)") from None
    if not value > 0 or (percent and value > 200):
        raise ValueError(f"power target '{target}' is out of bounds")
    return value, percent


async def preflight(
    targets: list[tuple[str, int]],
    action: str,
    target: str | None,
    sessions: Sessions,
    timeout: float,
    known: list[Rig] | None = None,
) -> list[tuple[Rig, float | None]]:
    """Every rig identified and its target checked, LuxOS sessions granted, before anything is sent;
    ``known`` collects the rigs identified (to log off from, whatever happens)."""
    rigs = await asyncio.gather(*(identify(h, p, timeout) for h, p in targets), return_exceptions=True)
    if known is not None:
        known.extend(r for r in rigs if isinstance(r, Rig))
    errors = [r for r in rigs if isinstance(r, BaseException)]
    if errors:
        raise errors[0] if isinstance(errors[0], PowerError) else PowerError(str(errors[0]))
    out: list[tuple[Rig, float | None]] = []
    for rig in rigs:
        driver = DRIVERS[rig.family](sessions, timeout)
        watts = None
        if action == "target":
            watts = watts_for(rig, target or "")
            if watts is not None or rig.family != "sha256d-miner":
                driver.check(rig, watts if watts is not None else 0.0)
        out.append((rig, watts))
    for rig, _ in out:
        if rig.family == "luxminer" and rig.key not in sessions.ids:
            try:
                await sessions.logon(rig, timeout)
            except ApiError as exc:
                raise PowerError(f"{rig.key}: {exc}") from None
    return out


def complies(rig: Rig, action: str, commanded: float | None, reading: Reading) -> bool:
    if action == "sleep":
        return reading.asleep or not reading.ths
    if action == "wake" and commanded is None:
        return bool(reading.ths) and not reading.asleep
    if commanded is None or reading.watts is None:
        return bool(reading.ths) and not reading.asleep
    return abs(reading.watts - commanded) <= max(TOLERANCE_W, TOLERANCE * commanded) and not reading.asleep


async def command(
    rig: Rig,
    action: str,
    watts: float | None,
    sessions: Sessions,
    timeout: float = 3.0,
    speed: float = 1.0,
    percent: float | None = None,
    audit: Callable[[dict], None] | None = None,
) -> Outcome:
    """Send, wait the ramp, read back; once more if the reading is off; report whether it complied."""
    driver = DRIVERS[rig.family](sessions, timeout)
    name = rig.model.name if rig.model else rig.name
    out = Outcome(rig.host, rig.port, rig.family, name, action, watts)
    started = time.monotonic()
    if rig.model is not None:
        settle = (rig.model.wake_s if action == "wake" else rig.model.ramp_s) / speed
    else:
        settle = 2.0
    wanted_threads: int | None = None  # this miner's dial: compliance is its thread count, not watts
    for attempt in (1, 2):
        sent = len(out.commands)
        try:
            if action == "sleep":
                ok, msg = await driver.sleep(rig, out)
            elif action == "wake":
                ok, msg = await driver.wake(rig, out)
            elif isinstance(driver, MinerDriver):
                ok, msg, wanted_threads = await driver.threads(rig, percent or 100.0, out)
            else:
                ok, msg = await driver.target(rig, watts or 0.0, out)
        except (ApiError, PowerError) as exc:
            ok, msg = False, str(exc)
        out.latency_s = out.latency_s or time.monotonic() - started
        if audit is not None:
            audit(
                {
                    "event": "command",
                    "rig": rig.key,
                    "attempt": attempt,
                    "sent": out.commands[sent:],
                    "ok": ok,
                    "reply": msg,
                }
            )
        if not ok:
            out.message = f"refused: {msg}"
            return out
        out.acknowledged = True
        await asyncio.sleep(settle * 1.1 + 0.05)
        try:
            reading = await driver.read(rig)
        except ApiError as exc:
            reading = None
            out.message = f"read-back failed: {exc}"
        out.readbacks += 1
        if reading is not None:
            out.measured_w = reading.watts
            out.complied = complies(rig, action, watts, reading)
            if wanted_threads is not None:
                out.complied = reading.threads == wanted_threads
            shown = f"{reading.watts:.0f} W" if reading.watts is not None else "no watts"
            out.message = f"{'complied' if out.complied else 'not complying'}: reads {shown}"
            if reading.ths is not None:
                out.message += f", {reading.ths:.1f} TH/s"
            if audit is not None:
                audit(
                    {
                        "event": "readback",
                        "rig": rig.key,
                        "attempt": attempt,
                        "watts": reading.watts,
                        "ths": reading.ths,
                        "asleep": reading.asleep,
                        "commanded_w": watts,
                        "complied": out.complied,
                    }
                )
        if out.complied:
            break
    return out


class AuditLog:
    """Every command, reply and read-back, one JSON object per line, appended."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._fh = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115 (held for the run)

    def __call__(self, record: dict) -> None:
        if self._fh is None:
            return
        self._fh.write(json.dumps({"at": round(time.time(), 3), **record}, sort_keys=True) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
