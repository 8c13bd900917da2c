"""``miner asic``: talk to cgminer-compatible miners (ASIC firmware, cgminer, bfgminer, this miner) on 4028."""

from __future__ import annotations

import json

import click

from miner.cli.common import CliError, Number, Positive

CONTROL_HELP = "Privileged commands need the miner to allow this host with W: in its --api-allow."


class _AsicGroup(click.Group):
    """``miner asic HOST[:PORT] COMMAND`` reads as ``miner asic query HOST[:PORT] COMMAND``."""

    def resolve_command(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            return "query", self.commands["query"], args
        return super().resolve_command(ctx, args)


@click.group(cls=_AsicGroup)
def asic() -> None:
    """Query and control miners over the cgminer API (TCP 4028).

    \b
    One miner, any command (JSON form), reply printed readably:
      miner asic 10.0.0.5 summary
      miner asic 10.0.0.5:4029 pools --json
      miner asic query 10.0.0.5 switchpool 1
    A fleet at once, one table row per host (unreachable hosts listed as such):
      miner asic summary 10.0.0.5 10.0.0.6
      miner asic summary --subnet 10.0.0.0/24
      miner asic summary --hosts-file farm.txt --json
    Control verbs, each host's answer printed:
      miner asic switchpool 1 --subnet 10.0.0.0/24
      miner asic addpool stratum+tcp://pool:3333 worker x 10.0.0.5
      miner asic enablepool 0 HOST... / disablepool 0 HOST... / restart HOST... / quit HOST...
    Exit status: a query is 1 when the miner is unreachable or answers an error; a fleet summary is 1
    when no host answered; a control verb is 1 when any host did not carry it out.
    """


def _targets(hosts, hosts_file, subnet, port):
    from miner.asic.fleet import expand_targets

    try:
        targets = expand_targets(hosts, hosts_file, subnet, port)
    except ValueError as exc:
        raise CliError(str(exc), 2) from None
    if not targets:
        raise CliError("no hosts: give HOST[:PORT]..., --hosts-file FILE or --subnet CIDR", 2)
    return targets


def fleet_options(func):
    func = click.option(
        "--workers", type=click.IntRange(1, 4096), default=256, show_default=True, help="hosts queried at once"
    )(func)
    func = click.option("--timeout", type=Number(0.05, 120), default=3.0, show_default=True, help="seconds per host")(
        func
    )
    func = click.option(
        "--port",
        "-p",
        type=click.IntRange(1, 65535),
        default=4028,
        show_default=True,
        help="API port for hosts given without one",
    )(func)
    func = click.option("--subnet", metavar="CIDR", default=None, help="every host of a subnet, e.g. 10.0.0.0/24")(func)
    func = click.option(
        "--hosts-file",
        type=click.Path(dir_okay=False),
        default=None,
        help="file with one HOST[:PORT] or CIDR per line (# comments)",
    )(func)
    func = click.option("--json", "as_json", is_flag=True, help="print JSON")(func)
    return func


# --- one host ---------------------------------------------------------------------------------------------


def _format_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.8f}".rstrip("0").rstrip(".") if value else "0"
    return str(value)


def pretty_reply(reply: dict, indent: str = "") -> list[str]:
    """A reply as readable lines: the STATUS line, then each section's records as ``key: value``."""
    from miner.asic.client import reply_status

    lines: list[str] = []
    if "_objects" in reply:
        for obj in reply["_objects"]:
            lines += pretty_reply(obj, indent)
        return lines
    status = reply.get("STATUS")
    if isinstance(status, list) or isinstance(status, str):
        sev, code, msg = reply_status(reply)
        code_text = f" code {code}" if code is not None else ""
        lines.append(f"{indent}STATUS {sev}{code_text}: {msg}")
    for key, value in reply.items():
        if key in ("STATUS", "id"):
            continue
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            if "STATUS" in value[0]:  # a joined command's own reply
                lines.append(f"{indent}[{key}]")
                for part in value:
                    lines += pretty_reply(part, indent + "  ")
                continue
            for n, record in enumerate(value):
                lines.append(f"{indent}{key}[{n}]" if len(value) > 1 else f"{indent}{key}")
                width = max((len(str(k)) for k in record), default=0)
                lines += [f"{indent}  {str(k).ljust(width)}  {_format_value(v)}" for k, v in record.items()]
        else:
            lines.append(f"{indent}{key}: {_format_value(value)}")
    return lines


@asic.command("query")
@click.argument("target", metavar="HOST[:PORT]")
@click.argument("command")
@click.argument("parameter", required=False)
@click.option("--json", "as_json", is_flag=True, help="print the reply as the miner sent it (JSON)")
@click.option("--text", "as_text", is_flag=True, help="use the text form (command|parameter) and print it raw")
@click.option("--timeout", type=Number(0.05, 120), default=5.0, show_default=True, help="seconds")
def query_cmd(target: str, command: str, parameter: str | None, as_json: bool, as_text: bool, timeout: float) -> None:
    """Send COMMAND [PARAMETER] to one miner and print the reply.

    Commands are cgminer's: summary, devs, pools, stats, version, config, coin, devdetails, notify,
    check CMD, joined ones like summary+pools, and the privileged switchpool N, addpool URL,USER,PASS,
    enablepool N, disablepool N, removepool N, poolpriority N,N..., zero all,false, restart, quit.
    """
    from miner.asic.client import ApiError, parse_reply, parse_target, reply_status, send_raw

    try:
        host, port = parse_target(target)
    except ValueError as exc:
        raise CliError(str(exc), 2) from None
    if as_text:
        payload = (command + (f"|{parameter}" if parameter is not None else "")).encode()
    else:
        request: dict = {"command": command}
        if parameter is not None:
            request["parameter"] = parameter
        payload = json.dumps(request).encode()
    try:
        raw = send_raw(host, port, payload, timeout)
    except ApiError as exc:
        raise CliError(f"{host}:{port}: {exc}") from None
    if as_text:
        click.echo(raw.replace(b"\0", b"").decode("utf-8", errors="replace"))
        return
    try:
        reply = parse_reply(raw)
    except ApiError as exc:
        raise CliError(f"{host}:{port}: {exc}") from None
    if as_json:
        click.echo(json.dumps(reply, indent=2))
    else:
        click.echo("\n".join(pretty_reply(reply)))
    sev, _code, _msg = reply_status(reply)
    if sev in ("E", "F"):
        raise SystemExit(1)


# --- fleets -----------------------------------------------------------------------------------------------


def format_rate(ghs: float | None) -> str:
    if ghs is None:
        return "-"
    hps = ghs * 1e9
    for unit, scale in (("PH/s", 1e15), ("TH/s", 1e12), ("GH/s", 1e9), ("MH/s", 1e6), ("kH/s", 1e3)):
        if hps >= scale:
            return f"{hps / scale:.2f} {unit}"
    return f"{hps:.0f} H/s"


def _kind(r) -> str:
    if r.model and r.miner_type and r.model != r.miner_type:
        return f"{r.model} ({r.miner_type})"
    return r.model or r.miner_type or "-"


def _status_text(r) -> str:
    if not r.reachable:
        return f"unreachable ({r.status})"
    return r.status if r.state in ("up", "faulty") or r.status != "ok" else r.state


def fleet_table(rows, problems_only: bool = False) -> str:
    header = ("HOST", "TYPE", "HASHRATE", "POWER", "TEMP", "ACCEPTED", "REJECTED", "HW", "POOL", "STATE", "STATUS")
    body = []
    dash = "-"
    for r in rows:
        if problems_only and r.state == "up" and not r.slow:
            continue
        power = dash if r.power_w is None else f"{r.power_w / 1e3:.2f} kW" + ("*" if r.power_estimated else "")
        body.append(
            (
                f"{r.host}:{r.port}",
                _kind(r) if r.reachable else dash,
                format_rate(r.ghs) if r.reachable else dash,
                power if r.reachable else dash,
                dash if r.chip_temp is None else f"{r.chip_temp:.0f} C",
                dash if r.accepted is None else str(r.accepted),
                dash if r.rejected is None else str(r.rejected),
                dash if r.hw_errors is None else str(r.hw_errors),
                r.pool or dash,
                r.state,
                _status_text(r),
            )
        )
    widths = [max(len(str(c)) for c in col) for col in zip(header, *body, strict=False)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in (header, *body)]
    return "\n".join(lines + fleet_footer(rows))


def fleet_footer(rows) -> list[str]:
    """The sweep's summary: reachable or not, each state's count, total hash rate and power, the hottest."""
    from miner.asic.fleet import totals

    t = totals(rows)
    reachable = t.up + t.paused + sum(1 for r in rows if r.reachable and r.state == "faulty")
    lines = [
        f"{t.hosts} host(s), {reachable} reachable, {t.hosts - reachable} unreachable, "
        f"total {format_rate(t.ths * 1e3)}",
        f"up {t.up}, paused {t.paused}, faulty {t.faulty}, down {t.down}" + (f"; {t.slow} slow" if t.slow else ""),
    ]
    if any(r.power_w is not None for r in rows):
        estimated = f" ({t.kw_estimated} estimated from the model, marked *)" if t.kw_estimated else ""
        lines.append(f"power {t.kw:,.1f} kW{estimated}")
    if t.hottest:
        lines.append("hottest: " + ", ".join(f"{host} {temp:.0f} C" for host, temp in t.hottest))
    if t.problems:
        lines.append("problems: " + ", ".join(f"{n} {kind}" for kind, n in t.problems.items()))
    return lines


class _ProgressLine:
    """A progress line on stderr while a sweep runs, on a terminal only; erased when it ends."""

    def __init__(self) -> None:
        import sys

        self.stream = sys.stderr
        self.enabled = self.stream.isatty()
        self.shown = 0.0

    def __call__(self, progress) -> None:
        import time

        now = time.monotonic()
        if not self.enabled or (now - self.shown < 0.1 and progress.done < progress.total):
            return
        self.shown = now
        width = 30
        filled = width * progress.done // max(1, progress.total)
        c = progress.counts
        self.stream.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {progress.done}/{progress.total} hosts: "
            f"up {c.get('up', 0)}, paused {c.get('paused', 0)}, faulty {c.get('faulty', 0)}, down {c.get('down', 0)}"
        )
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()


@asic.command("summary")
@click.argument("hosts", nargs=-1, metavar="[HOST[:PORT]]...")
@fleet_options
@click.option(
    "--retries",
    type=click.IntRange(0, 5),
    default=1,
    show_default=True,
    help="tries again where a connection fails (a rig that accepts and stays silent is not asked twice)",
)
@click.option("--slow", "slow_s", type=Positive, default=1.0, show_default=True, help="report hosts slower than S s")
@click.option("--hot", "hot_c", type=Number(0, 200), default=90.0, show_default=True, help="chip C that is overheating")
@click.option("--problems", "problems_only", is_flag=True, help="list only the hosts that are not up and well")
def summary_cmd(
    hosts, as_json, hosts_file, subnet, port, timeout, workers, retries, slow_s, hot_c, problems_only
) -> None:
    """Summary of many miners at once: type, hash rate, power, temperature, shares, pool, state.

    Queries at most --workers hosts at once, each within --timeout seconds per try; a dead or hung host
    is listed as unreachable and never holds up the others. Each host ends up, paused, faulty (a dead
    board, overheating, a stopped fan, a reply no parser takes) or down; a progress line shows on a
    terminal, and the totals come last. Power comes from the firmware where it reports it (Braiins OS),
    else from the model's efficiency (marked *).

    Exits 0 when at least one host answered, 1 when none did (as one unreachable host given alone).
    """
    from miner.asic.fleet import fleet_summary

    progress = _ProgressLine()
    try:
        rows = fleet_summary(
            _targets(hosts, hosts_file, subnet, port), timeout, workers, retries, progress, slow_s, hot_c
        )
    finally:
        progress.close()
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in rows], indent=2))
    else:
        click.echo(fleet_table(rows, problems_only))
    if not any(r.reachable for r in rows):
        raise CliError(f"no host answered ({len(rows)} unreachable)")


def _run_control(
    command: str, parameter: str | None, hosts, as_json, hosts_file, subnet, port, timeout, workers
) -> None:
    from miner.asic.fleet import fleet_control

    results = fleet_control(_targets(hosts, hosts_file, subnet, port), command, parameter, timeout, workers)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        width = max(len(f"{r.host}:{r.port}") for r in results)
        for r in results:
            click.echo(f"{f'{r.host}:{r.port}'.ljust(width)}  {'ok    ' if r.ok else 'FAILED'}  {r.message}")
    failed = sum(1 for r in results if not r.ok)
    if failed:
        raise CliError(f"{command} failed on {failed} of {len(results)} host(s)")


def _pool_verb(name: str, summary: str):
    @asic.command(name, help=f"{summary} on every host given. {CONTROL_HELP}")
    @click.argument("pool", type=click.IntRange(min=0), metavar="POOL")
    @click.argument("hosts", nargs=-1, metavar="[HOST[:PORT]]...")
    @fleet_options
    def verb(pool, hosts, as_json, hosts_file, subnet, port, timeout, workers) -> None:
        _run_control(name, str(pool), hosts, as_json, hosts_file, subnet, port, timeout, workers)

    return verb


def _bare_verb(name: str, summary: str):
    @asic.command(name, help=f"{summary} on every host given. {CONTROL_HELP}")
    @click.argument("hosts", nargs=-1, metavar="[HOST[:PORT]]...")
    @fleet_options
    def verb(hosts, as_json, hosts_file, subnet, port, timeout, workers) -> None:
        _run_control(name, None, hosts, as_json, hosts_file, subnet, port, timeout, workers)

    return verb


_pool_verb("switchpool", "Mine on pool POOL now")
_pool_verb("enablepool", "Enable pool POOL")
_pool_verb("disablepool", "Disable pool POOL")
_pool_verb("removepool", "Remove pool POOL")
_bare_verb("restart", "Restart the miner")
_bare_verb("quit", "Stop the miner")


@asic.command("addpool", help=f"Add a pool (URL USER PASSWORD) on every host given. {CONTROL_HELP}")
@click.argument("url")
@click.argument("user")
@click.argument("password")
@click.argument("hosts", nargs=-1, metavar="[HOST[:PORT]]...")
@fleet_options
def addpool_cmd(url, user, password, hosts, as_json, hosts_file, subnet, port, timeout, workers) -> None:
    from miner.asic.client import escape_param

    parameter = ",".join(escape_param(v) for v in (url, user, password))
    _run_control("addpool", parameter, hosts, as_json, hosts_file, subnet, port, timeout, workers)


# --- power ------------------------------------------------------------------------------------------------


def _power_options(func):
    func = click.option(
        "--audit-log", type=click.Path(dir_okay=False), default=None, help="append every command and read-back (JSONL)"
    )(func)
    func = click.option(
        "--speed",
        type=Positive,
        default=1.0,
        show_default=True,
        help="the rigs' clock runs this much faster (a simulated farm's --speed): shortens the ramp waits",
    )(func)
    return fleet_options(func)


def _run_power(
    action: str, target: str | None, hosts, as_json, hosts_file, subnet, port, timeout, workers, speed, audit_log
) -> None:
    import asyncio

    from miner.asic import power

    percent = None
    if target is not None:
        try:
            value, is_pct = power.parse_target(target)
        except ValueError as exc:
            raise CliError(str(exc), 2) from None
        percent = value if is_pct else None
    targets = _targets(hosts, hosts_file, subnet, port)
    sessions = power.Sessions()

    async def run():
        try:
            return await act()
        finally:
            await sessions.close(known, timeout)

    known: list = []

    async def act():
        planned = await power.preflight(targets, action, target, sessions, timeout, known)
        audit = power.AuditLog(audit_log)
        gate = asyncio.Semaphore(workers)

        async def one(rig, watts):
            async with gate:
                return await power.command(rig, action, watts, sessions, timeout, speed, percent, audit)

        try:
            return await asyncio.gather(*(one(r, w) for r, w in planned))
        finally:
            audit.close()

    try:
        outcomes = asyncio.run(run())
    except power.PowerError as exc:
        raise CliError(str(exc), 2) from None
    except OSError as exc:
        raise CliError(f"--audit-log: {exc.strerror or exc}", 2) from None
    if as_json:
        click.echo(json.dumps([o.to_dict() for o in outcomes], indent=2))
    else:
        width = max(len(f"{o.host}:{o.port}") for o in outcomes)
        for o in outcomes:
            verdict = "ok    " if o.complied else ("FAILED" if not o.acknowledged else "NOT COMPLYING")
            commanded = f" {o.commanded_w:.0f} W" if o.commanded_w is not None else ""
            click.echo(
                f"{f'{o.host}:{o.port}'.ljust(width)}  {verdict}  {o.model}: {action}{commanded}; {o.message} "
                f"({o.readbacks} read-back(s), {o.latency_s * 1e3:.0f} ms to acknowledge)"
            )
    bad = [o for o in outcomes if not o.complied]
    if bad:
        raise CliError(f"{action}: {len(bad)} of {len(outcomes)} rig(s) did not comply ({bad[0].host}:{bad[0].port})")


POWER_HELP = (
    "Each family's own verbs: LuxOS (a logon session, profileset, curtail), Avalon (ascset worklevel, "
    "softoff/softon), this miner (pause/resume, its thread count), Braiins OS (pause/resume), stock Antminer "
    "(every board's ascdisable/ascenable). Every rig is checked before any is touched (a known family, the "
    "target within its model's range, the session granted); each is then read back after its ramp time, sent "
    "once more if the reading is off, and reported as not complying after a second read-back."
)


@asic.command(
    "power-target", help=f"Set the power target: watts (3000, 3000W) or a percentage of nominal. {POWER_HELP}"
)
@click.argument("target", metavar="W|PCT%")
@click.argument("hosts", nargs=-1, metavar="[HOST[:PORT]]...")
@_power_options
def power_target_cmd(target, hosts, as_json, hosts_file, subnet, port, timeout, workers, speed, audit_log) -> None:
    _run_power("target", target, hosts, as_json, hosts_file, subnet, port, timeout, workers, speed, audit_log)


@asic.command("sleep", help=f"Stop hashing, keeping the rig up (curtailment). {POWER_HELP}")
@click.argument("hosts", nargs=-1, metavar="[HOST[:PORT]]...")
@_power_options
def sleep_cmd(hosts, as_json, hosts_file, subnet, port, timeout, workers, speed, audit_log) -> None:
    _run_power("sleep", None, hosts, as_json, hosts_file, subnet, port, timeout, workers, speed, audit_log)


@asic.command("wake", help=f"Hash again after sleep, at the setting the rig had. {POWER_HELP}")
@click.argument("hosts", nargs=-1, metavar="[HOST[:PORT]]...")
@_power_options
def wake_cmd(hosts, as_json, hosts_file, subnet, port, timeout, workers, speed, audit_log) -> None:
    _run_power("wake", None, hosts, as_json, hosts_file, subnet, port, timeout, workers, speed, audit_log)


commands = [asic]
