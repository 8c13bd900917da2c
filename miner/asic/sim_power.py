"""The simulator's firmware with a power dial: LuxOS (LUXminer) and Avalon (Canaan's cgminer), in the shapes
their APIs use (``../shared/FARM-ANCHORS.md`` section 2 lists them, with sources).

LuxOS: privileged commands carry a session id from ``logon``; one session at a time, dropped after a minute
unused. ``curtail <sid>,sleep|wakeup``, ``profileset <sid>,<profile|1450W|3.1kW|95THs|+1|-2>`` (refused
while the thermal manager, ATM, is on: ``atmset <sid>,enabled=false`` first), ``power`` for the watts drawn.
Avalon: ``ascset|0,workmode,N``, ``ascset|0,worklevel,set,N``, ``ascset|0,softoff|softon,1:<unix time>``,
and its ``stats`` carry ``WORKLEVEL[n]``, ``SoftOFF[n]`` and ``PS[...]`` (watts the fifth value) in one
``MM ID0`` string; its API serves one connection at a time (see ``RigProtocol``).

A setting outside the model's range is refused with the range in the message, as Braiins OS refuses one,
and the rig is left as it was. A rig seeded to ignore commands acknowledges them and changes nothing.
"""

from __future__ import annotations

import re
import secrets

from miner.asic.simulator import (
    BMMINER,
    Reply,
    Rig,
    _count,
    _fail,
    _ok,
)
from miner.asic.wire import MSG_MINESTATS, MSG_MISID, MSG_VERSION

# LuxOS's own codes (curtail 335, profileset 321 and atmset 340 as its docs give them)
LUX_LOGON, LUX_LOGOFF, LUX_SESSION, LUX_POWER, LUX_PROFILES = 310, 311, 312, 330, 320
LUX_PROFILESET, LUX_PROFILE_BAD, LUX_ATM_ON, LUX_CURTAIL, LUX_ATMSET = 321, 322, 323, 335, 340
ASC_SET, ASC_SET_ERR = 118, 120  # cgminer's "ASC 0 set info" and its failure
WORKMODES = {0: 1, 1: 4, 2: 6}  # Avalon work modes (eco, normal, super) as work levels


def _now(rig: Rig) -> float:
    return rig.last  # advance() has just brought it to the loop's time


def _range_text(rig: Rig) -> str:
    return f"{rig.model.min_w:.0f}W-{rig.model.max_w:.0f}W"


# --- LuxOS ----------------------------------------------------------------------------------------------


def _profile_name(rig: Rig, watts: float) -> str:
    if abs(watts - rig.model.watts) < 1:
        return "default"
    mhz = rig.model.frequency * rig.model.ths_at(watts) / rig.model.ths
    return f"{mhz:.0f}MHz"


def _profile_record(rig: Rig, watts: float) -> dict:
    settings = rig.model.settings()
    step = min(range(len(settings)), key=lambda i: abs(settings[i] - watts)) - settings.index(rig.model.watts)
    return {
        "Profile": _profile_name(rig, watts),
        "FrequencyStep": step,
        "VoltageStep": step,
        "Watts": round(watts),
        "Hashrate": round(rig.model.ths_at(watts), 2),
    }


def _session(rig: Rig, param: str | None) -> tuple[list[str], dict | None]:
    """The fields after a valid session id, or the refusal: no session, another one, or one that expired."""
    fields = [f.strip() for f in (param or "").split(",")]
    now = _now(rig)
    if rig.session is not None and now - rig.session_used > rig.session_timeout:
        rig.session = None  # a minute unused: gone
    if not fields[0]:
        return [], _fail(rig, LUX_SESSION, "Missing session id: logon first")
    if rig.session is None or fields[0] != rig.session:
        return [], _fail(rig, LUX_SESSION, "Invalid session id")
    rig.session_used = now
    return fields[1:], None


def _logon(rig: Rig, param: str | None) -> dict:
    now = _now(rig)
    if rig.session is not None and now - rig.session_used <= rig.session_timeout:
        return _fail(rig, LUX_SESSION, "Another session is active")
    rig.session, rig.session_used = secrets.token_hex(4), now
    return _ok(rig, LUX_LOGON, "Session created", SESSION=[{"SessionID": rig.session}])


def _logoff(rig: Rig, param: str | None) -> dict:
    _, bad = _session(rig, param)
    if bad:
        return bad
    rig.session = None
    return _ok(rig, LUX_LOGOFF, "Session closed", SESSION=[{"SessionID": ""}])


def _curtail(rig: Rig, param: str | None) -> dict:
    fields, bad = _session(rig, param)
    if bad:
        return bad
    action = fields[0].lower() if fields else ""
    if action not in ("sleep", "wakeup"):
        return _fail(rig, LUX_CURTAIL, f"Invalid curtail action '{action}': sleep or wakeup")
    if not rig.ignores:
        rig.steer(_now(rig), asleep=action == "sleep")
    shown = "sleep mode" if action == "sleep" else "wake up"
    return _ok(rig, LUX_CURTAIL, "Curtailment command sent", CURTAIL=[{"Action": shown}])


_TARGET = re.compile(r"^(\d+(?:\.\d+)?)\s*(w|kw|ths)$", re.IGNORECASE)


def _profile_watts(rig: Rig, text: str) -> tuple[float | None, str]:
    """The setting a profileset argument names, or why it names none."""
    settings = rig.model.settings()
    current = min(range(len(settings)), key=lambda i: abs(settings[i] - rig.setting_w))
    if re.fullmatch(r"[+-]\d+", text):
        index = current + int(text)
        if not 0 <= index < len(settings):
            return (
                None,
                f"Profile step {text} is not in the allowed range ({-current} to +{len(settings) - 1 - current})",
            )
        return settings[index], ""
    if text.lower() == "default":
        return rig.model.watts, ""
    match = _TARGET.match(text)
    if match is None:
        names = {_profile_name(rig, w): w for w in settings}
        if text in names:
            return names[text], ""
        return None, f"Unknown profile '{text}'"
    value, unit = float(match.group(1)), match.group(2).lower()
    if unit == "ths":
        fits = [w for w in settings if rig.model.ths_at(w) <= value + 1e-9]
        if value > rig.model.ths_at(settings[-1]) + 1e-9 or not fits:
            low, high = rig.model.ths_at(settings[0]), rig.model.ths_at(settings[-1])
            return None, f"Hashrate target {value:g}THs is not in the allowed range {low:.1f}THs-{high:.1f}THs"
        return fits[-1], ""
    watts = value * (1000 if unit == "kw" else 1)
    if not rig.model.min_w - 0.5 <= watts <= rig.model.max_w + 0.5:
        return None, f"Power target {watts:.0f}W is not in the allowed range {_range_text(rig)}"
    return [w for w in settings if w <= watts + 0.5][-1], ""  # the highest profile within the target


def _profileset(rig: Rig, param: str | None) -> dict:
    fields, bad = _session(rig, param)
    if bad:
        return bad
    if not fields or not fields[0]:
        return _fail(rig, LUX_PROFILE_BAD, "Missing profile")
    if rig.atm:
        return _fail(rig, LUX_ATM_ON, "ATM is enabled: disable it with atmset before profileset")
    watts, why = _profile_watts(rig, fields[0])
    if watts is None:
        return _fail(rig, LUX_PROFILE_BAD, why)
    if not rig.ignores:
        rig.steer(_now(rig), setting_w=watts)
    return _ok(rig, LUX_PROFILESET, "Profile set", PROFILE=[_profile_record(rig, watts)])


def _atmset(rig: Rig, param: str | None) -> dict:
    fields, bad = _session(rig, param)
    if bad:
        return bad
    known = {"enabled", "min_profile", "max_profile", "temp_window", "post_ramp_minutes", "startup_minutes"}
    for field in fields:
        key, sep, value = field.partition("=")
        if not sep or key not in known:
            return _fail(rig, LUX_ATMSET, f"Invalid ATM setting '{field}'")
        if key == "enabled":
            if value.lower() not in ("true", "false"):
                return _fail(rig, LUX_ATMSET, f"Invalid ATM setting '{field}': true or false")
            rig.atm = value.lower() == "true"
    return _ok(rig, LUX_ATMSET, "ATM configuration updated", ATM=[{"Enabled": rig.atm}])


def _lux_version(rig: Rig) -> dict:
    record = {"LUXminer": "2024.11.1", "API": "3.7", "Type": rig.model.name}
    return _ok(rig, MSG_VERSION, "LUXminer versions", VERSION=[record])


def _power(rig: Rig) -> dict:
    return _ok(rig, LUX_POWER, "Power", POWER=[{"Watts": round(rig.power_w()), "PSU": True}])


def _profiles(rig: Rig) -> dict:
    records = [_profile_record(rig, w) for w in rig.model.settings()]
    return _ok(rig, LUX_PROFILES, "Profiles", PROFILES=records)


def _profileget(rig: Rig) -> dict:
    record = _profile_record(rig, rig.setting_w)
    record["Sleeping"] = rig.asleep
    return _ok(rig, LUX_PROFILES, "Profile", PROFILE=[record])


LUXMINER: dict[str, Reply] = {
    **BMMINER,
    "version": lambda rig, p: _lux_version(rig),
    "power": lambda rig, p: _power(rig),
    "profiles": lambda rig, p: _profiles(rig),
    "profileget": lambda rig, p: _profileget(rig),
    "logon": _logon,
    "logoff": _logoff,
    "curtail": _curtail,
    "profileset": _profileset,
    "atmset": _atmset,
}
for _gone in ("pause", "resume"):  # LuxOS sleeps with curtail
    LUXMINER.pop(_gone, None)


# --- Avalon ---------------------------------------------------------------------------------------------


def _level_of(rig: Rig) -> int:
    settings = rig.model.settings()
    return min(range(len(settings)), key=lambda i: abs(settings[i] - rig.setting_w))


def _mm_id(rig: Rig) -> str:
    """Avalon's stats string: every figure in NAME[value] form, as Canaan's cgminer prints it."""
    m = rig.model
    watts = round(rig.power_w())
    ghs = rig.rate_ghs()
    fans = rig.fan_rpms()
    fan_text = " ".join(f"Fan{i + 1}[{rpm}]" for i, rpm in enumerate(fans))
    return (
        f"Ver[{m.name.split()[-1]}-21042001_4ec6bb0_61407fa] DNA[020100003bd4a3c4] Elapsed[{rig.elapsed()}] "
        f"MW[{m.boards}] LW[0] MH[0] HW[{rig.hw}] DH[0.000%] Temp[{rig.ambient:.0f}] "
        f"TMax[{max(rig.chip_temp(b) for b in range(m.boards)):.0f}] TAvg[{rig.temp:.0f}] {fan_text} "
        f"FanR[{min(100, fans[0] // 60) if fans else 0}%] GHSspd[{ghs:.2f}] GHSmm[{ghs:.2f}] "
        f"GHSavg[{rig.hashes_gh / max(rig.elapsed(), 1):.2f}] WU[0.00] Freq[{m.frequency:.2f}] "
        f"PS[0 1215 1238 64 {watts} 1237] WORKMODE[{_workmode(rig)}] WORKLEVEL[{_level_of(rig)}] "
        f"SoftOFF[{1 if rig.asleep else 0}] ECHU[0 0 0] ECMM[0]"
    )


def _workmode(rig: Rig) -> int:
    level = _level_of(rig)
    return next((mode for mode, lvl in WORKMODES.items() if lvl == level), 1)


def _avalon_stats(rig: Rig) -> dict:
    record = {"STATS": 0, "ID": "AVA100", "Elapsed": rig.elapsed(), "Calls": 0, "Wait": 0.0, "Max": 0.0}
    record["MM ID0"] = _mm_id(rig)
    return _ok(rig, MSG_MINESTATS, "CGMiner stats", STATS=[record])


def _avalon_version(rig: Rig) -> dict:
    record = {
        "CGMiner": "4.11.1",
        "API": "3.7",
        "PROD": rig.model.name,
        "MODEL": rig.model.name.split()[-1],
        "HWTYPE": "MM4v2_X3",
        "SWTYPE": "MM314",
    }
    return _ok(rig, MSG_VERSION, "CGMiner versions", VERSION=[record])


def _ascset(rig: Rig, param: str | None) -> dict:
    fields = [f.strip() for f in (param or "").split(",")]
    if len(fields) < 2 or not fields[0]:
        return _fail(rig, MSG_MISID, "Missing device id parameter")
    if fields[0] != "0":
        return _fail(rig, ASC_SET_ERR, f"Invalid ASC id {fields[0]} - range is 0 - 0")
    option, rest = fields[1].lower(), fields[2:]
    levels = len(rig.model.settings())
    now = _now(rig)
    if option == "workmode":
        if len(rest) != 1 or not rest[0].isdigit() or int(rest[0]) not in WORKMODES:
            return _fail(rig, ASC_SET_ERR, f"ASC 0 set failed: workmode {','.join(rest)} is not one of 0, 1, 2")
        if not rig.ignores:
            rig.steer(now, setting_w=rig.model.settings()[WORKMODES[int(rest[0])]])
        return _ok(rig, ASC_SET, f"ASC 0 set info: WORKMODE[{rest[0]}]")
    if option == "worklevel":
        if len(rest) != 2 or rest[0] != "set" or not rest[1].lstrip("-").isdigit():
            return _fail(rig, ASC_SET_ERR, "ASC 0 set failed: worklevel takes set,N")
        level = int(rest[1])
        if not 0 <= level < levels:
            watts = f"{rig.model.min_w:.0f}W-{rig.model.max_w:.0f}W"
            return _fail(
                rig,
                ASC_SET_ERR,
                f"ASC 0 set failed: worklevel {level} is not in the allowed range 0-{levels - 1} ({watts})",
            )
        if not rig.ignores:
            rig.steer(now, setting_w=rig.model.settings()[level])
        return _ok(rig, ASC_SET, "ASC 0 set OK")
    if option in ("softoff", "softon"):
        if len(rest) != 1 or not re.fullmatch(r"1:\d+", rest[0]):
            return _fail(rig, ASC_SET_ERR, f"ASC 0 set failed: {option} takes 1:<unix time>")
        if not rig.ignores:
            rig.steer(now, asleep=option == "softoff")
        return _ok(rig, ASC_SET, "ASC 0 set OK")
    return _fail(rig, ASC_SET_ERR, f"ASC 0 set failed: unknown option '{option}'")


AVALON: dict[str, Reply] = {
    "version": lambda rig, p: _avalon_version(rig),
    "summary": BMMINER["summary"],
    "pools": BMMINER["pools"],
    "config": BMMINER["config"],
    "devdetails": BMMINER["devdetails"],
    "asccount": lambda rig, p: _count(rig, "ASC"),
    "stats": lambda rig, p: _avalon_stats(rig),
    "estats": lambda rig, p: _avalon_stats(rig),
    "ascset": _ascset,
    "switchpool": BMMINER["switchpool"],
    "restart": BMMINER["restart"],
    "quit": BMMINER["quit"],
}
