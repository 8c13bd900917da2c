"""``miner farm``: tools for running a farm, starting with a simulated one to try them on."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
import time

import click

from miner.cli.common import CliError, Interrupted, NonNegative, Number, Positive


@click.group()
def farm() -> None:
    """Farm tools: a simulated farm, a Prometheus exporter, curtailment by the price of power.

    \b
    Serve 5,000 simulated rigs, one per loopback address, and sweep them:
      miner farm simulate --rigs 5000 --hosts-file farm.txt --duration 600 &
      miner asic summary --hosts-file farm.txt
    Serve each rig's metrics to Prometheus, swept every 30 s:
      miner farm exporter --hosts-file farm.txt --listen 9200
    Run the rigs that earn more than power costs, within the site's cap:
      miner farm curtail --hosts-file farm.txt --prices prices.csv --power-cap-kw 900 --dry-run
    """


def _log(text: str) -> None:
    click.echo(f"{time.strftime('%H:%M:%S')} {text}", err=True)  # logs on stderr; stdout is results


def _raise_file_limit(rigs: int) -> None:
    """One listening socket per rig, plus room for connections: lift the soft limit as far as allowed."""
    try:
        import resource
    except ImportError:  # not on this platform: whatever the limit is
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = rigs + 1024
    if soft != resource.RLIM_INFINITY and soft < wanted:
        limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
        soft = limit
    if soft != resource.RLIM_INFINITY and soft < rigs + 64:
        raise CliError(f"--rigs {rigs} needs about {rigs + 64} open files; this system allows {soft} (ulimit -n)")


def _write_lines(path: str, lines: list[str]) -> None:
    """Write whole or not at all: a sweep started on the file never reads half of it."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write("".join(line + "\n" for line in lines))
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise CliError(f"cannot write '{path}': {exc.strerror or exc}") from None


def _span(farm_) -> str:
    bound = [r for r in farm_.rigs if r.port == farm_.port]
    text = f"{bound[0].host}-{bound[-1].host}:{farm_.port}" if bound else "no rig on its own address"
    if farm_.fallbacks:
        text += f", {farm_.fallbacks} on 127.0.0.1 ports of their own"
    return text


@farm.command("simulate")
@click.option("--rigs", type=click.IntRange(1, 65000), required=True, help="how many rigs to simulate")
@click.option(
    "--hosts-file",
    type=click.Path(dir_okay=False, writable=True),
    required=True,
    help="write one HOST:PORT per rig here, for `miner asic --hosts-file`",
)
@click.option("--duration", type=Positive, default=None, metavar="S", help="stop after S seconds (default: a signal)")
@click.option("--seed", type=int, default=0, show_default=True, help="the farm's models and faults follow from it")
@click.option(
    "--fault-rate",
    type=Number(0, 1),
    default=0.05,
    show_default=True,
    help="share of rigs with a fault: dead board, overheating, unresponsive, slow, malformed replies",
)
@click.option(
    "--base-address",
    default="127.1.0.1",
    show_default=True,
    help="the first rig's loopback address; the others follow it",
)
@click.option(
    "--manifest", type=click.Path(dir_okay=False), default=None, help="write each rig's model and fault (JSON)"
)
@click.option(
    "--mix",
    type=click.Choice(["stock", "dial"]),
    default="stock",
    show_default=True,
    help="stock: Antminer stock and Braiins OS firmware; dial: LuxOS, Avalon and Braiins OS rigs with power dials",
)
@click.option(
    "--speed", type=Positive, default=1.0, show_default=True, help="simulated seconds per second, for power ramps"
)
@click.option(
    "--ignore-rate",
    type=Number(0, 1),
    default=0.0,
    show_default=True,
    help="share of rigs that acknowledge power commands and do nothing",
)
@click.option(
    "--session-timeout", type=Positive, default=60.0, show_default=True, help="s a LuxOS session lives unused"
)
def simulate_cmd(
    rigs, hosts_file, duration, seed, fault_rate, base_address, manifest, mix, speed, ignore_rate, session_timeout
) -> None:
    """Serve RIGS simulated ASIC rigs on loopback until --duration or a signal.

    Each rig listens on its own address, port 4028 (127.1.0.1, 127.1.0.2, ...), falling back to a port of
    its own on 127.0.0.1 where the address cannot be bound, and answers as stock Antminer (bmminer) or
    Braiins OS (BOSminer) firmware does; with --mix dial, also as LuxOS and Avalon firmware, whose power
    dials move the rig along its model's efficiency curve (miner asic power-target|sleep|wake). Control
    verbs act on the model: pause/resume (BOSminer),
    ascdisable|N / ascenable|N and pgadisable|N / pgaenable|N (bmminer: hash board N), switchpool,
    restart, quit. Ctrl-C stops it with exit 130, SIGTERM with 0.
    """
    from miner.asic.simulator import Farm

    try:
        simulated = Farm(
            rigs,
            seed=seed,
            fault_rate=fault_rate,
            base=base_address,
            mix=mix,
            speed=speed,
            ignore_rate=ignore_rate,
            session_timeout=session_timeout,
        )
    except ValueError as exc:
        raise CliError(f"--base-address: {exc}" if "address" in str(exc) else str(exc), 2) from None
    _raise_file_limit(rigs)
    interrupted = asyncio.run(_serve(simulated, hosts_file, duration, manifest))
    counts = simulated.counts()
    click.echo(
        f"stopped: {counts['rigs']} rigs ({counts['faulty']} faulty), "
        f"{simulated.requests} requests answered, {simulated.connections} connections"
    )
    if interrupted:
        raise Interrupted()


async def _serve(simulated, hosts_file: str, duration: float | None, manifest: str | None) -> bool:
    """Serve until the duration passes or a signal comes; True when it was Ctrl-C."""
    from miner.asic.simulator import rss_mib

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    why: list[int] = []

    def on_signal(signum: int) -> None:
        why.append(signum)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, on_signal, signum)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no such signal
            pass
    try:
        try:
            targets = await simulated.start()
        except OSError as exc:
            raise CliError(f"cannot bind the simulated rigs: {exc.strerror or exc}") from None
        if manifest:
            _write_lines(manifest, [json.dumps(simulated.manifest(), indent=1)])
        _write_lines(hosts_file, [f"{host}:{port}" for host, port in targets])
        counts = simulated.counts()
        faults = ", ".join(f"{counts[k]} {k.replace('_', ' ')}" for k in counts if k not in ("rigs", "faulty"))
        memory = rss_mib()
        _log(
            f"farm: {len(targets)} rigs on {_span(simulated)}; {counts['faulty']} faulty ({faults}); "
            f"hosts in {hosts_file}" + (f"; memory {memory:.0f} MiB" if memory is not None else "")
        )
        try:
            await asyncio.wait_for(stop.wait(), duration)
        except asyncio.TimeoutError:
            pass
    finally:
        await simulated.stop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.remove_signal_handler(signum)
            except (NotImplementedError, RuntimeError, ValueError):
                pass
    return signal.SIGINT in why


class _Terminated(Exception):
    """SIGTERM: stop as Ctrl-C does, but exit 0 (a service manager's stop)."""


def _terminate(signum, frame) -> None:
    raise _Terminated


@farm.command("exporter")
@click.option(
    "--hosts-file",
    type=click.Path(dir_okay=False),
    required=True,
    help="one HOST[:PORT] or CIDR per line, re-read each sweep",
)
@click.option("--listen", "listen", required=True, metavar="[HOST:]PORT", help="serve /metrics here (host 127.0.0.1)")
@click.option("--interval", type=Positive, default=30.0, show_default=True, metavar="S", help="seconds between sweeps")
@click.option("--timeout", type=Number(0.05, 120), default=3.0, show_default=True, help="seconds per host")
@click.option("--workers", type=click.IntRange(1, 4096), default=256, show_default=True, help="hosts queried at once")
@click.option(
    "--retries", type=click.IntRange(0, 5), default=1, show_default=True, help="tries again where a connection fails"
)
@click.option("--duration", type=Positive, default=None, metavar="S", help="stop after S seconds (default: a signal)")
@click.option(
    "--curtail-state",
    type=click.Path(dir_okay=False),
    default=None,
    help="`farm curtail --state` file: add commanded watts, reasons, compliance, the site's price and cap",
)
def exporter_cmd(hosts_file, listen, interval, timeout, workers, retries, duration, curtail_state) -> None:
    """Sweep the fleet every --interval seconds and serve each rig's metrics for Prometheus.

    Series (labelled host and model): asic_up, asic_state{state}, asic_hashrate_ghs, asic_power_watts{source},
    asic_chip_temperature_celsius, asic_board_temperature_celsius, asic_fan_rpm{fan}, asic_hashboards,
    asic_problems{problem}, asic_shares_accepted_total, asic_shares_rejected_total, asic_hardware_errors_total,
    asic_scrape_duration_seconds, asic_nominal_hashrate_ghs, asic_power_measured_watts; with --curtail-state
    also asic_power_commanded_watts, asic_expected_hashrate_ghs, asic_curtail_reason{reason},
    asic_command_compliant, asic_command_latency_seconds; the site's asic_site_price_per_kwh,
    asic_site_power_cap_watts, asic_site_power_watts; and the sweep's own asic_sweep_duration_seconds and
    asic_sweep_rigs{state}. Alerting rules for these: deploy/prometheus/asic-alerts.yml.
    """
    from miner.asic.fleet import fleet_summary, read_hosts_file, totals
    from miner.asic.metrics import FleetCollector, MetricsServer, MetricsUnavailable
    from miner.cli.common import parse_listen

    host, port = parse_listen(listen, "--listen")
    try:
        targets = read_hosts_file(hosts_file)
    except ValueError as exc:
        raise CliError(str(exc), 2) from None
    if not targets:
        raise CliError(f"hosts file '{hosts_file}' names no host", 2)
    collector = FleetCollector()
    try:
        server = MetricsServer([collector], host, port)
        server.start()
    except MetricsUnavailable as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    _log(f"exporter: /metrics on http://{host}:{server.port}/metrics for {len(targets)} hosts, every {interval:g} s")
    ends = None if duration is None else time.monotonic() + duration
    interrupted = False
    try:
        with contextlib.suppress(ValueError):  # not the main thread (a test runner): Ctrl-C only
            signal.signal(signal.SIGTERM, _terminate)
        while True:
            started = time.monotonic()
            rows = fleet_summary(targets, timeout, workers, retries)
            took = time.monotonic() - started
            collector.update(rows, took, _read_curtail_state(curtail_state))
            t = totals(rows)
            _log(
                f"sweep: {t.hosts} rigs in {took:.1f} s: {t.up} up, {t.paused} paused, {t.faulty} faulty, "
                f"{t.down} down; {t.ths / 1e3:.2f} PH/s, {t.kw:,.1f} kW"
            )
            wake = started + interval
            if ends is not None and wake >= ends:
                time.sleep(max(0.0, ends - time.monotonic()))
                break
            time.sleep(max(0.0, wake - time.monotonic()))
            try:
                targets = read_hosts_file(hosts_file) or targets
            except ValueError as exc:
                _log(f"{exc}; sweeping the hosts read before")
    except KeyboardInterrupt:
        interrupted = True
    except _Terminated:
        pass
    finally:
        server.stop()
    click.echo(f"stopped: {collector.sweeps} sweeps, {server.scrapes} scrapes")
    if interrupted:
        raise Interrupted()


def _read_curtail_state(path: str | None) -> dict:
    """The controller's latest state; a file unreadable this sweep (half written) is no state this sweep."""
    from miner.asic.curtail import read_state

    try:
        return read_state(path)
    except ValueError as exc:
        _log(f"--curtail-state: {exc}")
        return {}


def _plan_table(plan, show_all: bool) -> list[str]:
    header = ("HOST", "MODEL", "TH/S", "KW", "J/TH", "BREAK-EVEN", "NOW", "PLAN", "WHY")
    body = []
    for d in sorted(plan.decisions, key=lambda d: (d.rig.jth, d.rig.key)):
        if not show_all and not d.change:
            continue
        r = d.rig
        body.append(
            (
                r.key,
                r.model,
                f"{r.ths:.1f}",
                f"{r.watts / 1e3:.2f}",
                f"{r.jth:.1f}",
                f"{d.break_even:.4f}",
                "run" if r.on else "off",
                ("start" if d.run else "stop") if d.change else ("run" if d.run else "off"),
                d.reason,
            )
        )
    widths = [max(len(str(c)) for c in col) for col in zip(header, *body, strict=False)]
    return ["  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in (header, *body)]


def _slot_line(plan, measured_kw: float | None, actions) -> str:
    cap = f"{plan.cap_kw:g} kW" if plan.cap_kw is not None else "no cap"
    measured = f", measured {measured_kw:,.1f} kW" if measured_kw is not None else ""
    done = ""
    if actions is not None:
        confirmed = sum(1 for a in actions if a.confirmed)
        done = f"; {len(actions)} switched, {confirmed} confirmed"
    return (
        f"slot {plan.slot.describe()}: {plan.running} of {len(plan.decisions)} rigs run, planned "
        f"{plan.planned_kw:,.1f} kW{measured} ({cap}); {len(plan.changes)} change(s){done}"
    )


@farm.command("curtail")
@click.option("--hosts-file", type=click.Path(dir_okay=False), required=True, help="the rigs, one HOST[:PORT] per line")
@click.option(
    "--prices", "prices_file", type=click.Path(dir_okay=False), required=True, help="start,price_per_kwh[,cap_kw]"
)
@click.option(
    "--power-cap-kw", type=Number(min=0), default=None, metavar="KW", help="the site's cap (a row's cap wins)"
)
@click.option("--btc-price", type=Positive, default=100_000.0, show_default=True, help="coin price, prices' currency")
@click.option("--difficulty", type=Positive, default=1.0e14, show_default=True, help="network difficulty")
@click.option("--reward", type=NonNegative, default=3.125, show_default=True, help="block subsidy + fees, BTC")
@click.option("--hashprice", type=NonNegative, default=None, metavar="PER_TH_DAY", help="revenue per TH/s and day")
@click.option("--hysteresis", type=Number(0, 1), default=0.05, show_default=True, help="band around the price")
@click.option(
    "--min-dwell", type=NonNegative, default=900.0, show_default=True, metavar="S", help="min s between changes"
)
@click.option("--dry-run", is_flag=True, help="print the plan, switch nothing")
@click.option("--once/--follow", default=True, help="plan the current slot once (default), or follow the schedule")
@click.option("--at", "at_text", default=None, metavar="TIME", help="plan as if it were TIME (ISO 8601; default now)")
@click.option("--speed", type=Positive, default=1.0, show_default=True, help="--follow: schedule seconds per second")
@click.option("--state", "state_file", type=click.Path(dir_okay=False), default=None, help="remember changes here")
@click.option("--skip-unreachable", is_flag=True, help="plan without the rigs that do not answer")
@click.option("--timeout", type=Number(0.05, 120), default=3.0, show_default=True, help="seconds per host")
@click.option("--workers", type=click.IntRange(1, 4096), default=256, show_default=True, help="hosts queried at once")
@click.option("--confirm-timeout", type=Positive, default=30.0, show_default=True, help="s to see a switch take")
@click.option("--all", "show_all", is_flag=True, help="list every rig in the plan, not only the changes")
@click.option("--json", "as_json", is_flag=True, help="print each slot's plan and actions as a JSON line")
@click.option(
    "--plot",
    "plot_file",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="FILE.png",
    help="draw the schedule: price, break-even, cap, power drawn, rigs running (needs matplotlib: the 'farm' extra)",
)
@click.option(
    "--mode",
    type=click.Choice(["onoff", "targets"]),
    default="onoff",
    show_default=True,
    help="onoff: run or stop each rig; targets: set each rig's power target along its model's efficiency curve",
)
@click.option("--replay", is_flag=True, help="run every slot of the schedule in turn, back to back (compressed time)")
@click.option(
    "--audit-log", type=click.Path(dir_okay=False), default=None, help="append commands and read-backs (JSONL)"
)
def curtail_cmd(
    hosts_file,
    prices_file,
    power_cap_kw,
    btc_price,
    difficulty,
    reward,
    hashprice,
    hysteresis,
    min_dwell,
    dry_run,
    once,
    at_text,
    speed,
    state_file,
    skip_unreachable,
    timeout,
    workers,
    confirm_timeout,
    show_all,
    as_json,
    plot_file,
    mode,
    replay,
    audit_log,
) -> None:
    """Run the rigs whose revenue per kWh beats the power price, most efficient first, within the cap.

    PRICES holds start,price_per_kwh[,cap_kw] rows: hourly prices or a seasonal (wet/dry) tariff. The
    revenue per TH/s is --hashprice, or what --difficulty, --reward and --btc-price give (as `miner
    explain economics` computes it). Each switch goes through the rig's own API (pause/resume on
    Braiins OS and this miner, every board's ascdisable/ascenable on stock Antminer) and is read back;
    the actions are logged on stderr. Nothing is switched when an input is wrong or a rig does not
    answer (unless --skip-unreachable); a rerun of the same slot changes nothing.

    --mode targets sets each rig's power target instead (LuxOS profiles, Avalon work levels; on/off where
    the firmware has no dial) to earn most within the cap; each command is read back after the rig's ramp,
    sent once more if off, and a rig still off is left out and the rest re-planned so the cap holds.
    --replay runs the whole schedule slot after slot and ends with a summary: profit, energy_kwh, max_kw.
    --state then also records each rig's commanded watts and reason, for `miner farm exporter
    --curtail-state`.
    """
    from datetime import datetime, timezone

    from miner.asic import curtail
    from miner.asic.fleet import fleet_summary, read_hosts_file
    from miner.explain import explain_economics

    try:
        slots = curtail.read_prices(prices_file)
        targets = read_hosts_file(hosts_file)
        last_change = curtail.load_state(state_file)
    except ValueError as exc:
        raise CliError(str(exc), 2) from None
    if not targets:
        raise CliError(f"hosts file '{hosts_file}' names no host", 2)
    aware = slots[0].start.tzinfo is not None
    try:
        start = datetime.fromisoformat(at_text) if at_text else datetime.now(timezone.utc if aware else None)
    except ValueError:
        raise CliError(f"--at: '{at_text}' is not a date and time (expected e.g. 2026-06-01T14:00)", 2) from None
    if (start.tzinfo is not None) != aware:
        raise CliError("--at and the prices file must both give a UTC offset, or both not", 2)
    if hashprice is None:
        hashprice = explain_economics(1e12, 0.0, 0.0, difficulty, reward, btc_price)["revenue_per_day"]
    if mode == "targets" or replay:
        _curtail_dials(slots, targets, start, hashprice, last_change, click.get_current_context().params)
        return
    failures = 0
    history: list[dict] = []  # one record per slot run, for --plot
    if plot_file is not None:
        _matplotlib()  # before any rig is switched: a missing extra is one line, not a half-done run

    def run_slot(when) -> None:
        nonlocal failures
        slot = curtail.slot_at(slots, when)
        if slot is None:
            raise CliError(
                f"no price for {when.isoformat(sep=' ')}: the schedule runs from "
                f"{slots[0].start.isoformat(sep=' ')} to {slots[-1].end.isoformat(sep=' ')}",
                2,
            )
        rows = fleet_summary(targets, timeout, workers, 1)
        down = [r for r in rows if not r.reachable]
        if down and not skip_unreachable:
            raise CliError(
                f"{len(down)} of {len(rows)} rig(s) do not answer ({down[0].host}:{down[0].port}: {down[0].status}); "
                "no rig was switched (--skip-unreachable plans without them)"
            )
        rigs, unknown = [], []
        for row in rows:
            if row.reachable:
                rig = curtail.rig_from_row(row)
                (rigs if rig is not None else unknown).append(rig or row)
        for row in unknown:
            _log(f"{row.host}:{row.port}: no figures for '{row.model or row.miner_type}'; left as it is")
        plan = curtail.plan_slot(
            rigs, slot, hashprice, power_cap_kw, hysteresis, min_dwell, last_change, when.timestamp()
        )
        actions = None
        if not dry_run and plan.changes:

            def log_action(a) -> None:
                state = "start" if a.run else "stop"
                verdict = "confirmed" if a.confirmed else ("FAILED" if not a.ok else "NOT CONFIRMED")
                power = f", {a.power_w / 1e3:.2f} kW" if a.power_w is not None else ""
                _log(f"{a.host}:{a.port} {a.model}: {state} via {a.verb}: {verdict} in {a.seconds:.1f} s{power}")

            actions = asyncio.run(curtail.apply(plan, timeout, confirm_timeout, min(workers, 64), log_action))
            for a in actions:
                if a.ok:
                    last_change[f"{a.host}:{a.port}"] = when.timestamp()
            failures += sum(1 for a in actions if not a.confirmed)
            try:
                curtail.save_state(state_file, last_change)
            except OSError as exc:
                raise CliError(f"cannot write state file '{state_file}': {exc.strerror or exc}") from None
        measured = None
        if not dry_run:
            after = fleet_summary(targets, timeout, workers, 1)
            measured = sum(r.power_w or 0.0 for r in after if r.reachable) / 1e3
        evens = [d.break_even for d in plan.decisions if math.isfinite(d.break_even)]
        history.append(
            {
                "start": slot.start,
                "end": slot.end,
                "price": slot.price,
                "cap_kw": plan.cap_kw,
                "planned_kw": plan.planned_kw,
                "measured_kw": measured,
                "running": plan.running,
                "break_even": (min(evens), max(evens)) if evens else None,
            }
        )
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "slot": {"start": slot.start.isoformat(), "end": slot.end.isoformat(), "price": slot.price},
                        "cap_kw": plan.cap_kw,
                        "hashprice_per_th_day": hashprice,
                        "running": plan.running,
                        "planned_kw": plan.planned_kw,
                        "measured_kw": measured,
                        "changes": [
                            {"host": d.rig.key, "run": d.run, "reason": d.reason, "break_even": d.break_even}
                            for d in plan.changes
                        ],
                        "actions": [a.to_dict() for a in actions or []],
                    }
                )
            )
        else:
            if plan.changes or show_all:
                click.echo("\n".join(_plan_table(plan, show_all)))
            click.echo(_slot_line(plan, measured, actions))

    interrupted = False
    try:
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGTERM, _terminate)
        if once:
            run_slot(start)
        else:
            wall0 = time.monotonic()

            def now_in_schedule():
                return start + _seconds(time.monotonic() - wall0, speed)

            while True:
                when = now_in_schedule()
                slot = curtail.slot_at(slots, when)
                if slot is None:
                    if when >= slots[-1].end:
                        break
                    time.sleep(max(0.0, (slots[0].start - when).total_seconds() / speed))  # not begun yet
                    continue
                run_slot(when)
                if slot is slots[-1]:
                    break
                time.sleep(max(0.0, (slot.end - now_in_schedule()).total_seconds() / speed))
    except KeyboardInterrupt:
        interrupted = True
    except _Terminated:
        pass
    if plot_file is not None and history:
        _plot_schedule(history, plot_file)
        _log(f"schedule drawn to {plot_file}")
    if interrupted:
        raise Interrupted()
    if failures:
        raise CliError(f"{failures} switch(es) not confirmed")


def _curtail_dials(slots, targets, start, hashprice, last_change, options: dict) -> None:
    """--mode targets, or --replay: power targets planned, commanded, read back; a summary at the end."""
    from miner.asic import curtail, power
    from miner.asic import targets as dials_mod

    once = options["once"] and not options["replay"]
    mode, cap_kw, timeout, workers = options["mode"], options["power_cap_kw"], options["timeout"], options["workers"]
    state_file, audit_log, as_json = options["state_file"], options["audit_log"], options["as_json"]
    hysteresis, min_dwell, dry_run, speed = (
        options["hysteresis"],
        options["min_dwell"],
        options["dry_run"],
        options["speed"],
    )

    async def run() -> list[dict]:
        sessions = power.Sessions()
        known: list = []
        try:
            rigs = await power.preflight(targets, "sleep", None, sessions, timeout, known)
        except power.PowerError as exc:
            await sessions.close(known, timeout)
            raise CliError(f"{exc}; no rig was touched", 2) from None
        dials = [dials_mod.Dial(r, r.model.watts if r.model else 0.0, False) for r, _ in rigs]
        audit = power.AuditLog(audit_log)
        records = []
        try:
            chosen = slots if not once else [curtail.slot_at(slots, start)]
            if chosen[0] is None:
                raise CliError(f"no price for {start.isoformat(sep=' ')} in the schedule", 2)
            for slot in chosen:
                record = await dials_mod.run_slot(
                    dials,
                    slot,
                    hashprice,
                    cap_kw,
                    mode,
                    hysteresis,
                    min_dwell,
                    last_change,
                    slot.start.timestamp() if not once else start.timestamp(),
                    sessions,
                    timeout,
                    speed,
                    min(workers, 256),
                    audit,
                    dry_run,
                )
                records.append(record)
                _report_slot(record, as_json)
                if state_file:
                    state = {"last_change": last_change, **dials_mod.state_record(dials, slot.price, record["cap_kw"])}
                    _write_lines(state_file, [json.dumps(state, indent=1, sort_keys=True)])
        finally:
            audit.close()
            await sessions.close(known, timeout)
        return records

    try:
        records = asyncio.run(run())
    except OSError as exc:
        raise CliError(f"--audit-log: {exc.strerror or exc}", 2) from None
    total = dials_mod.summary(records)
    click.echo(json.dumps(total) if as_json else _summary_line(total["summary"]))
    if total["summary"]["non_compliant"]:
        _log(f"{len(total['summary']['non_compliant'])} rig(s) did not comply and were left out")


def _report_slot(record: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(record))
        return
    for a in record["actions"]:
        verdict = "complied" if a["complied"] else ("FAILED" if not a["acknowledged"] else "NOT COMPLYING")
        target = f" {a['commanded_w']:.0f} W" if a["commanded_w"] is not None else ""
        _log(f"{a['host']}:{a['port']} {a['model']}: {a['action']}{target}: {verdict}; {a['message']}")
    cap = f"{record['cap_kw']:g} kW" if record["cap_kw"] is not None else "no cap"
    measured = f", measured {record['measured_kw']:,.1f} kW" if record["measured_kw"] is not None else ""
    profit = f", profit {record['profit']:,.2f}" if record["profit"] is not None else ""
    click.echo(
        f"slot {record['slot']['start']} at {record['slot']['price']:g}/kWh ({record['mode']}): planned "
        f"{record['planned_kw']:,.1f} kW{measured} ({cap}); {len(record['plan'])} change(s), "
        f"{record['asleep']} asleep{profit}"
    )


def _summary_line(s: dict) -> str:
    if s["profit"] is None:
        return f"{s['slots']} slot(s) planned (dry run)"
    return (
        f"{s['slots']} slot(s): profit {s['profit']:,.2f}, {s['energy_kwh']:,.1f} kWh, max {s['max_kw']:,.1f} kW, "
        f"{s['over_cap_slots']} slot(s) over the cap, {len(s['non_compliant'])} rig(s) not complying"
    )


def _matplotlib():
    try:
        import matplotlib

        matplotlib.use("Agg")  # a file, never a window
        import matplotlib.pyplot as plt
    except ImportError:
        raise CliError("--plot needs matplotlib: pip install 'sha256d-miner[farm]'", 2) from None
    return plt


def _plot_schedule(history: list[dict], path: str) -> None:
    """Two panels over time: the price against the rigs' break-even band; power against the cap, and rigs run."""
    plt = _matplotlib()
    edges = [h["start"] for h in history] + [history[-1]["end"]]
    figure, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(10, 6.5))
    top.stairs([h["price"] for h in history], edges, baseline=None, label="power price per kWh", linewidth=2)
    bands = [h["break_even"] or (float("nan"), float("nan")) for h in history]
    top.stairs([b[0] for b in bands], edges, baseline=None, linestyle="--", label="break-even, least efficient rig")
    top.stairs([b[1] for b in bands], edges, baseline=None, linestyle=":", label="break-even, most efficient rig")
    top.set_ylabel("price per kWh")
    top.legend(loc="upper left", fontsize="small")
    drawn = [h["measured_kw"] if h["measured_kw"] is not None else h["planned_kw"] for h in history]
    bottom.stairs(drawn, edges, label="power drawn, kW", linewidth=2)
    caps = [h["cap_kw"] if h["cap_kw"] is not None else float("nan") for h in history]
    bottom.stairs(caps, edges, baseline=None, linestyle="--", color="red", label="power cap, kW")
    bottom.set_ylabel("kW")
    rigs = bottom.twinx()
    rigs.stairs([h["running"] for h in history], edges, color="gray", alpha=0.6, label="rigs running")
    rigs.set_ylabel("rigs running")
    lines = bottom.get_legend_handles_labels()
    more = rigs.get_legend_handles_labels()
    bottom.legend(lines[0] + more[0], lines[1] + more[1], loc="upper left", fontsize="small")
    figure.autofmt_xdate()
    figure.tight_layout()
    try:
        figure.savefig(path, dpi=100)
    except OSError as exc:
        raise CliError(f"--plot: cannot write {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(figure)


def _seconds(wall: float, speed: float):
    from datetime import timedelta

    return timedelta(seconds=wall * speed)


commands = [farm]
