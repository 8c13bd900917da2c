"""The cgminer API's commands: what each of cgminer's commands answers, read from the running miner.

``handle_request`` turns one request's bytes into the reply bytes: it parses the request (wire.py), checks
the command exists and that the client may run it, runs the handler and renders its records. Handlers read
the miner through ``MinerControl`` only, so the server can serve any object that offers it.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from miner import __version__
from miner.asic.wire import (
    MSG_ACCDENY,
    MSG_ACCOK,
    MSG_ACTPOOL,
    MSG_ADDPOOL,
    MSG_ALRDISP,
    MSG_ALRENAP,
    MSG_CHECK,
    MSG_DEVDETAILS,
    MSG_DEVS,
    MSG_DISLASTP,
    MSG_DISPOOL,
    MSG_DUPPID,
    MSG_ENAPOOL,
    MSG_INVBOOL,
    MSG_INVCMD,
    MSG_INVPDP,
    MSG_INVPGA,
    MSG_INVPID,
    MSG_LCD,
    MSG_MINECOIN,
    MSG_MINECONFIG,
    MSG_MINESTATS,
    MSG_MISBOOL,
    MSG_MISCHK,
    MSG_MISID,
    MSG_MISPDP,
    MSG_MISPID,
    MSG_NODEVS,
    MSG_NOPOOL,
    MSG_NOTIFY,
    MSG_NUMASC,
    MSG_NUMPGA,
    MSG_PAUSE,
    MSG_PGADIS,
    MSG_PGAENA,
    MSG_PGALRDIS,
    MSG_PGALRENA,
    MSG_PGANON,
    MSG_POOL,
    MSG_POOLPRIO,
    MSG_REMLASTP,
    MSG_REMPOOL,
    MSG_RESUME,
    MSG_SUMM,
    MSG_SWITCHP,
    MSG_VERSION,
    MSG_ZERINV,
    MSG_ZERMIS,
    MSG_ZERNOSUM,
    MSG_ZERSUM,
    Num,
    Record,
    Result,
    Stamp,
    Status,
    diff,
    diff_count,
    err,
    info,
    mhs,
    mhtotal,
    ok,
    parse_request,
    percent,
    render,
    render_joined,
    split_escaped,
    timeval,
)
from miner.block import bits_to_difficulty
from miner.stats import PoolStats, Stats
from miner.work import stratum_prevhash_to_internal
from stratum.client import redact_url

API_VERSION = "3.7"  # the cgminer API version whose reply shapes we follow
MINER_NAME = "sha256d-miner"
LOG_INTERVAL = 5  # cgminer names its short hash rate after --log-interval: "MHS 5s"


class MinerControl(Protocol):
    """What the API needs from the running miner (implemented by miner/mining.py).

    Optional: ``pool_jobs()``, each pool's stats with its newest job (an object with the notify's hex
    ``prevhash``, ``coinb1``, ``version`` and ``nbits``), from which the block fields are read;
    ``pause()`` / ``resume()``, which stop and restart hashing while the pool sessions stay up (the
    verbs BOSminer has and curtailment uses); ``set_device_enabled(index, enabled)``, which stops or
    restarts one worker (device ``index`` in ``stats.devices`` order) for ``pgadisable|N`` /
    ``pgaenable|N``. A miner without them answers those commands with an error.
    """

    stats: Stats
    started_wall: float
    backend_name: str

    def current_pool(self) -> int: ...
    def switch_pool(self, index: int) -> None: ...
    def add_pool(self, url: str, user: str, password: str) -> int: ...
    def remove_pool(self, index: int) -> None: ...
    def enable_pool(self, index: int) -> None: ...
    def disable_pool(self, index: int) -> None: ...
    def set_pool_priority(self, order: list[int]) -> None: ...
    def restart(self) -> None: ...
    def quit(self) -> None: ...


# --- the command table ----------------------------------------------------------------------------------


@dataclass
class Context(Stamp):
    control: MinerControl
    privileged: bool


Handler = Callable[[Context, str | None], Result]


def _device_rows(ctx: Context) -> list[tuple[str, object]]:
    return list(ctx.control.stats.devices.items())


def _device_kind(dev) -> str:
    """cgminer names device entries CPU/GPU/PGA/ASC; OpenCL devices are its GPUs."""
    return "CPU" if dev.kind.upper() == "CPU" else "GPU"


def _name_and_id(name: str, index: int) -> tuple[str, int]:
    head, _, tail = name.rpartition(" ")
    if head and tail.isdigit():
        return head, int(tail)
    return name, index


def _pool_status(pool: PoolStats) -> str:
    return "Disabled" if not pool.enabled else pool.status


def _shown_url(url: str) -> str:
    """A pool URL as a reply may show it: never with the ``user:password@`` a URL can carry."""
    return redact_url(url)


def _stratum_url(url: str) -> str:
    return _shown_url(url).split("://", 1)[-1]


def _observe_jobs(control: MinerControl) -> None:
    """Read each pool's newest job into the stats (heights, versions, new blocks) when the miner offers them.

    Stats.job_seen ignores a job it has seen, so this only fills what was not recorded when the job came.
    """
    pool_jobs = getattr(control, "pool_jobs", None)
    if pool_jobs is None:
        return
    for pool, job in pool_jobs():
        if job is not None:
            control.stats.job_seen(pool, job)


def _ratio(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


def cmd_version(ctx: Context, param: str | None) -> Result:
    # cgminer answers {"CGMiner": its version, "API": ...}; firmware built on it answers under its own name
    # (bmminer: "BMMiner", then "Miner" for the firmware and "Type" for the model; "BMMiner versions").
    # This miner is not cgminer, so there is no "CGMiner" key: tools read that key as a cgminer release
    # (pyasic's CGMiner backend takes it as the firmware version) and would show "CGMiner 0.1.0", which
    # never existed. What tools use to recognise a cgminer-family reply stays: STATUS code 22, the VERSION
    # section, and "API" (pyasic reads it for the API version). "Miner" names us with our version, as
    # LuxOS's "Miner" does and as pyasic reads it; "Type" is the name alone (pyasic and our fleet view show
    # it as the model). pyasic's detector looks for known firmware names in the reply; it finds none of
    # theirs here, so it reports an unknown miner, which is true.
    record: Record = [
        ("Miner", f"{MINER_NAME} {__version__}"),
        ("API", API_VERSION),
        ("Type", MINER_NAME),
        ("Backend", ctx.control.backend_name),
    ]
    return Result(ok(MSG_VERSION, f"{MINER_NAME} versions"), "VERSION", [record], text_header=True)


def cmd_config(ctx: Context, param: str | None) -> Result:
    devs = ctx.control.stats.devices.values()
    cpus = sum(1 for d in devs if _device_kind(d) == "CPU")
    gpus = len(ctx.control.stats.devices) - cpus
    record: Record = [
        ("ASC Count", 0),
        ("PGA Count", 0),
        ("CPU Count", cpus),
        ("GPU Count", gpus),
        ("Pool Count", len(ctx.control.stats.pools)),
        ("Strategy", "Failover"),
        ("Log Interval", LOG_INTERVAL),
        ("Device Code", " ".join(k for k, n in (("GPU", gpus), ("CPU", cpus)) if n) + " "),
        ("OS", platform.system() or "Unknown"),
        ("Hotplug", "None"),
        ("Backend", ctx.control.backend_name),
    ]
    return Result(ok(MSG_MINECONFIG, "CGMiner config"), "CONFIG", [record], text_header=True)


def cmd_summary(ctx: Context, param: str | None) -> Result:
    stats = ctx.control.stats
    snap = stats.snapshot()
    elapsed = max(snap["elapsed"], 1e-9)
    _observe_jobs(ctx.control)
    shares = stats.shares
    mh = {w: stats.hashrate(w) / 1e6 for w in ("5s", "1m", "5m", "15m", "av")}
    diff_total = shares.diff_accepted + shares.diff_rejected + shares.diff_stale  # what went to the pools
    diff1 = shares.diff1  # the shares found, in diff-1 units (cgminer's total_diff1)
    pools = stats.pools
    record: Record = [
        ("Elapsed", int(round(snap["elapsed"]))),
        ("MHS av", mhs(mh["av"])),
        (f"MHS {LOG_INTERVAL}s", mhs(mh["5s"])),
        ("MHS 1m", mhs(mh["1m"])),
        ("MHS 5m", mhs(mh["5m"])),
        ("MHS 15m", mhs(mh["15m"])),
        ("GHS 5s", mhs(mh["5s"] / 1000.0)),
        ("GHS av", mhs(mh["av"] / 1000.0)),
        ("Found Blocks", stats.found_blocks),
        ("Getworks", stats.works),
        ("Accepted", shares.accepted),
        ("Rejected", shares.rejected),
        ("Hardware Errors", stats.hw_errors),
        ("Utility", mhs(shares.accepted / elapsed * 60)),
        ("Discarded", sum(p.discarded for p in pools)),
        ("Stale", shares.stale),
        ("Get Failures", sum(p.get_failures for p in pools)),
        ("Local Work", stats.works),
        ("Remote Failures", sum(p.remote_failures for p in pools)),
        ("Network Blocks", stats.network_blocks),
        ("Total MH", mhtotal(snap["hashes"] / 1e6)),
        ("Work Utility", mhs(diff1 / elapsed * 60)),
        ("Difficulty Accepted", diff(shares.diff_accepted)),
        ("Difficulty Rejected", diff(shares.diff_rejected)),
        ("Difficulty Stale", diff(shares.diff_stale)),
        ("Best Share", diff_count(stats.best_share)),
        ("Device Hardware%", percent(_ratio(stats.hw_errors, stats.hw_errors + diff1))),
        ("Device Rejected%", percent(_ratio(shares.diff_rejected, diff1))),
        ("Pool Rejected%", percent(_ratio(shares.diff_rejected, diff_total))),
        ("Pool Stale%", percent(_ratio(shares.diff_stale, diff_total))),
        ("Last getwork", int(stats.last_getwork)),
    ]
    return Result(ok(MSG_SUMM, "Summary"), "SUMMARY", [record], text_header=True)


def _devs_message(ctx: Context) -> Status:
    kinds = [_device_kind(d) for _, d in _device_rows(ctx)]
    parts = [f"{kinds.count(k)} {k}(s)" for k in ("GPU", "CPU") if k in kinds]
    return ok(MSG_DEVS, " - ".join(parts))


def cmd_devs(ctx: Context, param: str | None) -> Result:
    stats = ctx.control.stats
    rows = _device_rows(ctx)
    if not rows:
        return Result(err(MSG_NODEVS, "No GPUs/CPUs"))
    records = []
    for index, (name, dev) in enumerate(rows):
        kind = _device_kind(dev)
        short, dev_id = _name_and_id(name, index)
        runtime = max(stats.elapsed(), 1.0)
        total_mh = dev.meter.total / 1e6
        sh = dev.shares
        diff1 = sh.diff1
        rate = {w: stats.device_hashrate(name, w) / 1e6 for w in ("5s", "1m", "5m", "15m", "av")}
        records.append(
            [
                (kind, index),
                ("Name", short),
                ("ID", dev_id),
                ("Enabled", "Y" if dev.enabled else "N"),
                ("Status", "Alive" if dev.enabled else "Disabled"),
                ("Temperature", Num(0.0, "%.2f")),
                ("MHS av", mhs(rate["av"])),
                (f"MHS {LOG_INTERVAL}s", mhs(rate["5s"])),
                ("MHS 1m", mhs(rate["1m"])),
                ("MHS 5m", mhs(rate["5m"])),
                ("MHS 15m", mhs(rate["15m"])),
                ("Accepted", sh.accepted),
                ("Rejected", sh.rejected),
                ("Hardware Errors", dev.hw_errors),
                ("Utility", mhs(sh.accepted / runtime * 60)),
                ("Last Share Pool", stats.pool_index(dev.last_share_pool) if sh.last_share_time else -1),
                ("Last Share Time", int(sh.last_share_time)),
                ("Total MH", mhtotal(total_mh)),
                ("Diff1 Work", diff_count(diff1)),
                ("Difficulty Accepted", diff(sh.diff_accepted)),
                ("Difficulty Rejected", diff(sh.diff_rejected)),
                ("Last Share Difficulty", diff(sh.last_share_difficulty)),
                ("Last Valid Work", int(dev.last_valid_work or ctx.control.started_wall)),
                ("Device Hardware%", percent(_ratio(dev.hw_errors, dev.hw_errors + diff1))),
                ("Device Rejected%", percent(_ratio(sh.diff_rejected, diff1))),
                ("Device Elapsed", int(round(runtime))),
            ]
        )
    return Result(_devs_message(ctx), "DEVS", records)


def cmd_pools(ctx: Context, param: str | None) -> Result:
    pools = list(ctx.control.stats.pools)
    if not pools:
        return Result(err(MSG_NOPOOL, "No pools"))
    _observe_jobs(ctx.control)
    current = ctx.control.current_pool()
    records = []
    for index, pool in enumerate(pools):
        sh = pool.shares
        total = sh.diff1
        # Stratum Active marks the pool being mined, its session up: the miner keeps its backups'
        # sessions open too, and a tool reading the first active pool must find the one in use.
        active = index == current and pool.enabled and (pool.stratum_active or pool.status == "Alive")
        records.append(
            [
                ("POOL", index),
                ("URL", _shown_url(pool.url)),
                ("Status", _pool_status(pool)),
                ("Priority", pool.priority),
                ("Quota", 1),
                ("Long Poll", "N"),
                ("Getworks", pool.works),
                ("Accepted", sh.accepted),
                ("Rejected", sh.rejected),
                ("Works", pool.works),
                ("Discarded", pool.discarded),
                ("Stale", sh.stale),
                ("Get Failures", pool.get_failures),
                ("Remote Failures", pool.remote_failures),
                ("User", pool.user),
                ("Last Share Time", int(sh.last_share_time)),
                ("Diff1 Shares", diff_count(total)),
                ("Proxy Type", ""),
                ("Proxy", ""),
                ("Difficulty Accepted", diff(sh.diff_accepted)),
                ("Difficulty Rejected", diff(sh.diff_rejected)),
                ("Difficulty Stale", diff(sh.diff_stale)),
                ("Last Share Difficulty", diff(sh.last_share_difficulty)),
                ("Work Difficulty", diff(pool.difficulty)),
                ("Has Stratum", True),
                ("Stratum Active", bool(active)),
                ("Stratum URL", _stratum_url(pool.url) if active else ""),
                ("Stratum Difficulty", diff(pool.difficulty if active else 0.0)),
                ("Has Vmask", pool.has_version_rolling),
                ("Has GBT", False),
                ("Best Share", diff_count(pool.best_share)),
                ("Pool Rejected%", percent(_ratio(sh.diff_rejected, total))),
                ("Pool Stale%", percent(_ratio(sh.diff_stale, total))),
                ("Bad Work", 0),
                ("Current Block Height", pool.current_height),
                ("Current Block Version", pool.current_version),
                ("Last Reason", pool.last_reason),
            ]
        )
    return Result(ok(MSG_POOL, f"{len(pools)} Pool(s)"), "POOLS", records)


def _stats_records(ctx: Context, with_pools: bool) -> list[Record]:
    """Antminer-style STATS: a version entry first, then one entry per device (and pool)."""
    stats = ctx.control.stats
    elapsed = int(round(stats.elapsed()))
    records: list[Record] = [
        [  # bmminer's first entry ({"BMMiner": ..., "Miner": ..., ...}) without a cgminer name: see cmd_version
            ("Miner", f"{MINER_NAME} {__version__}"),
            ("CompileTime", ""),
            ("Type", f"{MINER_NAME} ({ctx.control.backend_name})"),
        ]
    ]
    index = 0
    for dev_index, (name, dev) in enumerate(_device_rows(ctx)):
        short, dev_id = _name_and_id(name, dev_index)
        ghs5 = stats.device_hashrate(name, "5s") / 1e9
        ghsav = stats.device_hashrate(name, "av") / 1e9
        records.append(
            [
                ("STATS", index),
                ("ID", f"{short}{dev_id}"),
                ("Elapsed", elapsed),
                ("Calls", 0),
                ("Wait", timeval(0.0)),
                ("Max", timeval(0.0)),
                ("Min", timeval(0.0)),
                ("GHS 5s", mhs(ghs5)),
                ("GHS av", mhs(ghsav)),
                ("Hardware Errors", dev.hw_errors),
                ("Total Hashes", dev.meter.total),
            ]
        )
        index += 1
    if with_pools:
        for pool_index, pool in enumerate(stats.pools):
            records.append(
                [
                    ("STATS", index),
                    ("ID", f"POOL{pool_index}"),
                    ("Elapsed", elapsed),
                    ("Calls", 0),
                    ("Wait", timeval(0.0)),
                    ("Max", timeval(0.0)),
                    ("Min", timeval(0.0)),
                    ("Pool Calls", 0),
                    ("Pool Attempts", 0),
                    ("Work Diff", diff(pool.difficulty)),
                    ("Min Diff", diff(pool.difficulty)),
                    ("Max Diff", diff(pool.difficulty)),
                    ("Times Sent", pool.shares.accepted + pool.shares.rejected + pool.shares.stale),
                ]
            )
            index += 1
    if len(records) < 2:  # tools index STATS[1]; keep that entry even with no devices
        records.append(
            [("STATS", 0), ("ID", "MINER0"), ("Elapsed", elapsed), ("GHS 5s", mhs(0.0)), ("GHS av", mhs(0.0))]
        )
    return records


def cmd_stats(ctx: Context, param: str | None) -> Result:
    return Result(ok(MSG_MINESTATS, "CGMiner stats"), "STATS", _stats_records(ctx, True))


def cmd_estats(ctx: Context, param: str | None) -> Result:
    return Result(ok(MSG_MINESTATS, "CGMiner stats"), "STATS", _stats_records(ctx, False))


def _block_hash_display(prevhash: str) -> str:
    """A notify's previous-block hash (word-swapped hex) as block explorers show it."""
    try:
        return stratum_prevhash_to_internal(prevhash)[::-1].hex()
    except ValueError:
        return ""


def cmd_coin(ctx: Context, param: str | None) -> Result:
    control = ctx.control
    stats = control.stats
    _observe_jobs(control)
    pools = stats.pools
    current = control.current_pool()
    pool = pools[current] if 0 <= current < len(pools) else None
    nbits = pool.nbits if pool is not None else 0
    try:
        network_difficulty = bits_to_difficulty(nbits) if nbits else 0.0
    except (ValueError, ZeroDivisionError):
        network_difficulty = 0.0
    record: Record = [
        ("Hash Method", "sha256"),
        ("Current Block Time", timeval(stats.block_time(pool.prevhash) if pool is not None else 0.0)),
        ("Current Block Hash", _block_hash_display(pool.prevhash) if pool is not None and pool.prevhash else ""),
        ("LP", False),
        ("Network Difficulty", diff(network_difficulty)),
    ]
    return Result(ok(MSG_MINECOIN, "CGMiner coin"), "COIN", [record], text_header=True)


def cmd_devdetails(ctx: Context, param: str | None) -> Result:
    rows = _device_rows(ctx)
    if not rows:
        return Result(err(MSG_NODEVS, "No GPUs/CPUs"))
    records = []
    for index, (name, dev) in enumerate(rows):
        short, dev_id = _name_and_id(name, index)
        records.append(
            [
                ("DEVDETAILS", index),
                ("Name", short),
                ("ID", dev_id),
                ("Driver", ctx.control.backend_name),
                ("Kernel", ctx.control.backend_name),
                ("Model", dev.kind),
                ("Device Path", name),
            ]
        )
    return Result(ok(MSG_DEVDETAILS, "Device Details"), "DEVDETAILS", records)


def cmd_notify(ctx: Context, param: str | None) -> Result:
    rows = _device_rows(ctx)
    if not rows:
        return Result(err(MSG_NODEVS, "No GPUs/CPUs"))
    records = []
    started = int(ctx.control.started_wall)
    for index, (name, _dev) in enumerate(rows):
        short, dev_id = _name_and_id(name, index)
        records.append(
            [
                ("NOTIFY", index),
                ("Name", short),
                ("ID", dev_id),
                ("Last Well", max(ctx.when, started)),
                ("Last Not Well", 0),
                ("Reason Not Well", "None"),
                *[
                    (counter, 0)
                    for counter in (
                        "*Thread Fail Init",
                        "*Thread Zero Hash",
                        "*Thread Fail Queue",
                        "*Dev Sick Idle 60s",
                        "*Dev Dead Idle 600s",
                        "*Dev Nostart",
                        "*Dev Over Heat",
                        "*Dev Thermal Cutoff",
                        "*Dev Comms Error",
                        "*Dev Throttle",
                    )
                ],
            ]
        )
    return Result(ok(MSG_NOTIFY, "Notify"), "NOTIFY", records)


def cmd_pgacount(ctx: Context, param: str | None) -> Result:
    count = len(ctx.control.stats.devices) if hasattr(ctx.control, "set_device_enabled") else 0
    return Result(ok(MSG_NUMPGA, "PGA count"), "PGAS", [[("Count", count)]], text_header=True)


def _unsupported(name: str) -> Result:
    return Result(err(MSG_INVCMD, f"{name} is not supported by this miner"))


def cmd_pause(ctx: Context, param: str | None) -> Result:
    """Stop hashing, keep the pool sessions: BOSminer's reply shape, so one client confirms both."""
    if not hasattr(ctx.control, "pause"):
        return _unsupported("pause")
    ctx.control.pause()
    return Result(ok(MSG_PAUSE, "Pause"), "PAUSE", [[("PAUSE", True)]])


def cmd_resume(ctx: Context, param: str | None) -> Result:
    if not hasattr(ctx.control, "resume"):
        return _unsupported("resume")
    ctx.control.resume()
    return Result(ok(MSG_RESUME, "Resume"), "RESUME", [[("RESUME", True)]])


def _set_pga(ctx: Context, param: str | None, enable: bool) -> Result:
    """``pgaenable|N`` / ``pgadisable|N`` on worker N, with cgminer's messages and codes."""
    name = "pgaenable" if enable else "pgadisable"
    if not hasattr(ctx.control, "set_device_enabled"):
        return _unsupported(name)
    devices = list(ctx.control.stats.devices.values())
    if not devices:
        return Result(err(MSG_PGANON, "No PGAs"))
    if param is None or not param.strip():
        return Result(err(MSG_MISID, "Missing device id parameter"))
    try:
        index = int(param.strip())
    except ValueError:
        index = -1
    if not 0 <= index < len(devices):
        return Result(err(MSG_INVPGA, f"Invalid PGA id {param.strip()} - range is 0 - {len(devices) - 1}"))
    if devices[index].enabled == enable:
        return Result(info(MSG_PGALRENA if enable else MSG_PGALRDIS, f"PGA{index} already {name[3:]}d"))
    try:
        ctx.control.set_device_enabled(index, enable)
    except ValueError as exc:
        return Result(err(MSG_INVPGA, str(exc)))
    if enable:
        return Result(ok(MSG_PGAENA, f"PGA{index} sent enable message"))
    return Result(ok(MSG_PGADIS, f"PGA{index} set disable flag"))


def cmd_pgaenable(ctx: Context, param: str | None) -> Result:
    return _set_pga(ctx, param, True)


def cmd_pgadisable(ctx: Context, param: str | None) -> Result:
    return _set_pga(ctx, param, False)


def cmd_asccount(ctx: Context, param: str | None) -> Result:
    return Result(ok(MSG_NUMASC, "ASC count"), "ASCS", [[("Count", 0)]], text_header=True)


def cmd_lcd(ctx: Context, param: str | None) -> Result:
    stats = ctx.control.stats
    pools = stats.pools
    current = ctx.control.current_pool()
    pool = pools[current] if 0 <= current < len(pools) else None
    # as api.c's lcddata: the last share of the pool that had the latest, the latest valid work of any device
    last = max(pools, key=lambda p: p.shares.last_share_time, default=None)
    last_valid = max((d.last_valid_work for d in stats.devices.values()), default=0.0)
    record: Record = [
        ("Elapsed", int(round(stats.elapsed()))),
        ("GHS av", mhs(stats.hashrate("av") / 1e9)),
        ("GHS 5m", mhs(stats.hashrate("5m") / 1e9)),
        ("GHS 5s", mhs(stats.hashrate("5s") / 1e9)),
        ("Temperature", Num(0.0, "%.2f")),
        ("Last Share Difficulty", diff(last.shares.last_share_difficulty if last else 0.0)),
        ("Last Share Time", int(last.shares.last_share_time if last else 0)),
        ("Best Share", diff_count(stats.best_share)),
        ("Last Valid Work", int(last_valid)),
        ("Found Blocks", stats.found_blocks),
        ("Current Pool", _shown_url(pool.url) if pool else "none"),
        ("User", pool.user if pool else ""),
    ]
    return Result(ok(MSG_LCD, "LCD"), "LCD", [record], text_header=True)


def cmd_check(ctx: Context, param: str | None) -> Result:
    if not param:
        return Result(err(MSG_MISCHK, "Missing check cmd"))
    command = COMMANDS.get(param)
    exists = command is not None
    access = exists and (ctx.privileged or not command.write)
    record: Record = [("Exists", "Y" if exists else "N"), ("Access", "Y" if access else "N")]
    return Result(ok(MSG_CHECK, "Check command"), "CHECK", [record], text_header=True)


def cmd_privileged(ctx: Context, param: str | None) -> Result:
    return Result(ok(MSG_ACCOK, "Privileged access OK"))


# --- privileged commands ---------------------------------------------------------------------------------


def _pool_id(ctx: Context, param: str | None) -> tuple[int | None, Result | None]:
    """Parse a pool id as cgminer does, with its missing / invalid replies."""
    pools = ctx.control.stats.pools
    if not pools:
        return None, Result(err(MSG_NOPOOL, "No pools"))
    if param is None or param.strip() == "":
        return None, Result(err(MSG_MISPID, "Missing pool id parameter"))
    try:
        index = int(param.strip())
    except ValueError:
        return None, Result(err(MSG_INVPID, f"Invalid pool id '{param}' - range is 0 - {len(pools) - 1}"))
    if not 0 <= index < len(pools):
        return None, Result(err(MSG_INVPID, f"Invalid pool id {index} - range is 0 - {len(pools) - 1}"))
    return index, None


def _pool_url(ctx: Context, index: int) -> str:
    pools = ctx.control.stats.pools
    return _shown_url(pools[index].url) if 0 <= index < len(pools) else ""


def cmd_switchpool(ctx: Context, param: str | None) -> Result:
    index, bad = _pool_id(ctx, param)
    if bad:
        return bad
    try:
        ctx.control.switch_pool(index)
    except ValueError as exc:
        return Result(err(MSG_INVPID, str(exc)))
    return Result(ok(MSG_SWITCHP, f"Switching to pool {index}:'{_pool_url(ctx, index)}'"))


def cmd_addpool(ctx: Context, param: str | None) -> Result:
    if not param:
        return Result(err(MSG_MISPDP, "Missing addpool details"))
    parts = split_escaped(param)
    # cgminer echoes the details; the echo here leaves out the password and any in the URL
    shown = ",".join([_shown_url(parts[0]), *parts[1:2]])
    if len(parts) < 3 or not parts[0]:
        return Result(err(MSG_INVPDP, f"Invalid addpool details '{shown}'"))
    url, user, password = parts[0], parts[1], ",".join(parts[2:])
    try:
        index = ctx.control.add_pool(url, user, password)
    except ValueError as exc:
        return Result(err(MSG_INVPDP, f"Invalid addpool details '{shown}': {exc}"))
    return Result(ok(MSG_ADDPOOL, f"Added pool {index}: '{_shown_url(url)}'"))


def cmd_removepool(ctx: Context, param: str | None) -> Result:
    index, bad = _pool_id(ctx, param)
    if bad:
        return bad
    url = _pool_url(ctx, index)
    if len(ctx.control.stats.pools) <= 1:
        return Result(err(MSG_REMLASTP, f"Cannot remove last pool {index}:'{url}'"))
    try:
        ctx.control.remove_pool(index)
    except ValueError as exc:
        return Result(err(MSG_ACTPOOL, f"Cannot remove pool {index}:'{url}': {exc}"))
    return Result(ok(MSG_REMPOOL, f"Removed pool {index}:'{url}'"))


def cmd_enablepool(ctx: Context, param: str | None) -> Result:
    index, bad = _pool_id(ctx, param)
    if bad:
        return bad
    url = _pool_url(ctx, index)
    if ctx.control.stats.pools[index].enabled:
        return Result(info(MSG_ALRENAP, f"Pool {index}:'{url}' already enabled"))
    try:
        ctx.control.enable_pool(index)
    except ValueError as exc:
        return Result(err(MSG_INVPID, str(exc)))
    return Result(ok(MSG_ENAPOOL, f"Enabling pool {index}:'{url}'"))


def cmd_disablepool(ctx: Context, param: str | None) -> Result:
    index, bad = _pool_id(ctx, param)
    if bad:
        return bad
    pools = ctx.control.stats.pools
    url = _pool_url(ctx, index)
    if not pools[index].enabled:
        return Result(info(MSG_ALRDISP, f"Pool {index}:'{url}' already disabled"))
    if sum(1 for p in pools if p.enabled) <= 1:
        return Result(err(MSG_DISLASTP, f"Cannot disable last active pool {index}:'{url}'"))
    try:
        ctx.control.disable_pool(index)
    except ValueError as exc:
        return Result(err(MSG_DISLASTP, str(exc)))
    return Result(ok(MSG_DISPOOL, f"Disabling pool {index}:'{url}'"))


def cmd_poolpriority(ctx: Context, param: str | None) -> Result:
    pools = ctx.control.stats.pools
    if not pools:
        return Result(err(MSG_NOPOOL, "No pools"))
    if not param:
        return Result(err(MSG_MISPID, "Missing pool id parameter"))
    order: list[int] = []
    for token in param.split(","):
        try:
            index = int(token.strip())
        except ValueError:
            return Result(err(MSG_INVPID, f"Invalid pool id '{token}' - range is 0 - {len(pools) - 1}"))
        if not 0 <= index < len(pools):
            return Result(err(MSG_INVPID, f"Invalid pool id {index} - range is 0 - {len(pools) - 1}"))
        if index in order:
            return Result(err(MSG_DUPPID, f"Duplicate pool specified {index}"))
        order.append(index)
    # pools not named keep their relative priority, after the named ones
    rest = sorted((i for i in range(len(pools)) if i not in order), key=lambda i: (pools[i].priority, i))
    try:
        ctx.control.set_pool_priority(order + rest)
    except ValueError as exc:
        return Result(err(MSG_INVPID, str(exc)))
    return Result(ok(MSG_POOLPRIO, "Changed pool priorities"))


def cmd_zero(ctx: Context, param: str | None) -> Result:
    if not param:
        return Result(err(MSG_ZERMIS, "Missing zero parameters"))
    what, _, summary = param.partition(",")
    if not summary:
        return Result(err(MSG_MISBOOL, "Missing parameter: true/false"))
    what_l = what.strip().lower()
    if what_l not in ("all", "bestshare"):
        return Result(err(MSG_ZERINV, f"Invalid zero parameter '{what}'"))
    flag = summary.strip()[:1].lower()
    if flag not in ("t", "f"):
        return Result(err(MSG_INVBOOL, "Invalid parameter should be true or false"))
    stats = ctx.control.stats
    if what_l == "all":
        stats.zero()
    else:
        stats.zero_best_share()
    label = "All" if what_l == "all" else "BestShare"
    if flag == "t":
        return Result(ok(MSG_ZERSUM, f"Zeroed {label} stats with summary"))
    return Result(ok(MSG_ZERNOSUM, f"Zeroed {label} stats without summary"))


def cmd_quit(ctx: Context, param: str | None) -> Result:
    return Result(None, action="BYE", after=ctx.control.quit)


def cmd_restart(ctx: Context, param: str | None) -> Result:
    return Result(None, action="RESTART", after=ctx.control.restart)


@dataclass(frozen=True)
class Command:
    handler: Handler
    write: bool  # privileged: needs a W: entry in --api-allow
    joinable: bool


COMMANDS: dict[str, Command] = {
    "version": Command(cmd_version, False, True),
    "config": Command(cmd_config, False, True),
    "devs": Command(cmd_devs, False, True),
    "edevs": Command(cmd_devs, False, True),
    "pools": Command(cmd_pools, False, True),
    "summary": Command(cmd_summary, False, True),
    "pgacount": Command(cmd_pgacount, False, True),
    "asccount": Command(cmd_asccount, False, True),
    "switchpool": Command(cmd_switchpool, True, False),
    "addpool": Command(cmd_addpool, True, False),
    "poolpriority": Command(cmd_poolpriority, True, False),
    "enablepool": Command(cmd_enablepool, True, False),
    "disablepool": Command(cmd_disablepool, True, False),
    "removepool": Command(cmd_removepool, True, False),
    "quit": Command(cmd_quit, True, False),
    "privileged": Command(cmd_privileged, True, False),
    "notify": Command(cmd_notify, False, True),
    "devdetails": Command(cmd_devdetails, False, True),
    "restart": Command(cmd_restart, True, False),
    "stats": Command(cmd_stats, False, True),
    "estats": Command(cmd_estats, False, True),
    "check": Command(cmd_check, False, False),
    "coin": Command(cmd_coin, False, True),
    "lcd": Command(cmd_lcd, False, True),
    "zero": Command(cmd_zero, True, False),
    "pause": Command(cmd_pause, True, False),
    "resume": Command(cmd_resume, True, False),
    "pgaenable": Command(cmd_pgaenable, True, False),
    "pgadisable": Command(cmd_pgadisable, True, False),
}


# --- request handling -----------------------------------------------------------------------------------


def handle_request(
    data: bytes, control: MinerControl, privileged: bool, description: str | None = None
) -> tuple[bytes, list[Callable[[], None]]]:
    """The reply bytes (NUL-terminated) for one request, and actions to run once it is sent."""
    ctx = Context(
        when=int(time.time()),
        description=description or f"{MINER_NAME} {__version__}",
        control=control,
        privileged=privileged,
    )
    isjson, command, param, error = parse_request(data)
    if error is not None:
        return render(error, ctx, isjson).encode() + b"\0", []
    after: list[Callable[[], None]] = []

    def run(name: str) -> Result:
        cmd = COMMANDS.get(name)
        if cmd is None:
            return Result(err(MSG_INVCMD, "Invalid command"))
        if cmd.write and not privileged:
            return Result(err(MSG_ACCDENY, f"Access denied to '{name}' command"))
        try:
            result = cmd.handler(ctx, param)
        except Exception as exc:  # a failing command must answer, never drop the connection
            return Result(Status("F", -1, f"{name} failed: {exc}"))
        if result.after is not None:
            after.append(result.after)
        return result

    if "+" not in command:
        return render(run(command), ctx, isjson).encode() + b"\0", after
    param = None  # joined commands take no parameter
    parts: list[tuple[str, Result]] = []
    seen: set[str] = set()
    for name in command.split("+"):
        if not name or name in seen:
            continue
        seen.add(name)
        cmd = COMMANDS.get(name)
        if cmd is not None and not cmd.joinable:
            parts.append((name, Result(err(MSG_ACCDENY, f"Access denied to '{name}' command"))))
        else:
            parts.append((name, run(name)))
    return render_joined(parts, ctx, isjson).encode() + b"\0", after
