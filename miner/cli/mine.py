"""``miner mine``: mine on Stratum pools (or, with no ``-o``, on an embedded pool in this process)."""

from __future__ import annotations

import json
import logging
import signal
import threading
import time

import click

from miner.cli.common import CliError, Interrupted, Number, Positive, backend_options, make_engine, parse_listen
from miner.cli.config import config_options
from miner.cli.output import console, fan_out, log_options, status_due_every
from miner.stats import Stats

logger = logging.getLogger(__name__)


def format_rate(hps: float) -> str:
    for unit, scale in (("GH/s", 1e9), ("MH/s", 1e6), ("kH/s", 1e3)):
        if hps >= scale:
            return f"{hps / scale:.2f} {unit}"
    return f"{hps:.0f} H/s"


def status_line(stats: Stats, pool: str, difficulty: float, per_device: bool = False) -> str:
    """Rates on live work only: while the pool is down the miner keeps scanning, but that is not the rate."""
    snap = stats.snapshot()
    devices = ""
    if per_device:  # -v: each thread's and device's own rate, to spot a slow core or a throttled GPU
        devices = " | " + " ".join(f"{name} {format_rate(stats.device_hashrate(name))}" for name in stats.devices)
    return (
        f"{format_rate(snap['live_hashrate_5s'])} (5s) {format_rate(snap['live_hashrate'])} (avg) | "
        f"A:{snap['accepted']} R:{snap['rejected']} S:{snap['stale']} HW:{snap['hw_errors']} "
        f"blocks:{snap['blocks']} | diff {difficulty:g} | {pool}{devices}"
    )


class _Output:
    """Log lines through the ``logging`` tree (stderr, a file, syslog: see miner.cli.output), and the status
    line: redrawn in place on a terminal, a timestamped line otherwise; none with --quiet."""

    def __init__(self, quiet: bool, verbose: int = 0) -> None:
        self.tty = console.tty
        self.quiet = quiet
        self.verbose = verbose

    def log(self, line: str) -> None:
        logger.info(line)

    def status(self, line: str) -> None:
        if not self.quiet:
            console.status(line, time.strftime("%H:%M:%S"))

    def end(self) -> None:
        console.end()


@click.command()
@click.option(
    "-o",
    "--url",
    "urls",
    multiple=True,
    metavar="URL",
    help="pool stratum+tcp://HOST:PORT, stratum+ssl://HOST:PORT or Stratum V2 stratum2+tcp://HOST:PORT/AUTHORITY_KEY; "
    "repeat for backups (priority order, V1 and V2 mixed). "
    "Without -o, mine on an embedded pool in this process.",
)
@click.option("-u", "--user", "users", multiple=True, metavar="USER", help="worker name, one per -o (last one repeats)")
@click.option("-p", "--pass", "passwords", multiple=True, metavar="PASS", help="password, one per -o")
@click.option(
    "--proxy",
    "proxies",
    multiple=True,
    metavar="URL",
    help="reach the pool through socks5://HOST:PORT (socks4://, http:// CONNECT too), one per -o (the last "
    "repeats; 'direct' for none)",
)
@backend_options
@click.option("--version-rolling", is_flag=True, help="ask pools for BIP 310 version rolling")
@click.option(
    "--sv2-channel",
    type=click.Choice(["standard", "extended"]),
    default="standard",
    show_default=True,
    help="channel to open on stratum2+tcp:// pools: standard (header-only jobs) or extended (the miner builds "
    "the coinbase and rolls its extranonce)",
)
@click.option("--duration", type=Positive, default=None, metavar="S", help="stop after S seconds")
@click.option("--json", "as_json", is_flag=True, help="print the final counts as one JSON line on stdout")
@click.option(
    "--capture",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="FILE",
    help="append every Stratum V1 message in and out to FILE as JSON lines (time, direction, the line as on the "
    "wire; the password as ***), for `miner explain job FILE`",
)
@click.option("--no-verify-tls", is_flag=True, help="accept any TLS certificate (self-signed regtest pools)")
@click.option(
    "--tls-ca",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="trust this CA/certificate file for stratum+ssl pools",
)
@click.option(
    "--api-listen",
    default=None,
    is_flag=False,
    flag_value="127.0.0.1:4028",
    metavar="[HOST:]PORT",
    help="serve the cgminer-compatible API (alone: 127.0.0.1:4028; host 127.0.0.1 unless given)",
)
@click.option("--api-allow", default=None, metavar="LIST", help="cgminer-style allow list, e.g. W:127.0.0.1,10.0.0.0/8")
@click.option(
    "--pool-timeout",
    type=Number(min=0.1),
    default=90.0,
    show_default=True,
    metavar="S",
    help="a pool silent this long counts as dead",
)
@click.option(
    "--suggest-difficulty",
    type=Positive,
    default=None,
    metavar="D",
    help="ask pools for this share difficulty (mining.suggest_difficulty)",
)
@click.option(
    "--load-balance",
    "strategy",
    flag_value="load-balance",
    default=None,
    help="mine on every live pool at once, the work split by --quota (cgminer's --load-balance)",
)
@click.option(
    "--round-robin",
    "strategy",
    flag_value="round-robin",
    help="stay on a pool while it works, then move to the next one (cgminer's); default: failover by -o order",
)
@click.option(
    "--quota",
    "quotas",
    multiple=True,
    type=click.IntRange(min=1),
    metavar="N",
    help="with --load-balance: this pool's share of the work, one per -o (the last repeats; default 1)",
)
@click.option(
    "--retries",
    type=click.IntRange(min=-1),
    default=None,
    metavar="N",
    help="give a pool up after N failed tries in a row (-1 or unset: keep trying, with backoff, as cgminer does)",
)
@click.option(
    "--retry-pause", type=Positive, default=None, metavar="S", help="wait S seconds between tries, not backing off"
)
@click.option(
    "--status-interval",
    type=Positive,
    default=None,
    metavar="S",
    help="a status line every S seconds (default: 1 on a terminal, 10 in a log)",
)
@click.option(
    "--metrics-listen",
    default=None,
    is_flag=False,
    flag_value="127.0.0.1:9100",
    metavar="[HOST:]PORT",
    help="serve Prometheus metrics at /metrics (alone: 127.0.0.1:9100; needs the 'farm' extra)",
)
@click.option("--quiet", "-q", is_flag=True, help="no log or status lines")
@log_options
@config_options
def mine(
    urls,
    users,
    passwords,
    proxies,
    backend,
    threads,
    device,
    lanes,
    version_rolling,
    sv2_channel,
    duration,
    as_json,
    capture,
    no_verify_tls,
    tls_ca,
    api_listen,
    api_allow,
    pool_timeout,
    suggest_difficulty,
    strategy,
    quotas,
    retries,
    retry_pause,
    status_interval,
    metrics_listen,
    quiet,
) -> None:
    """Mine on Stratum V1 and V2 pools with failover; with no -o, on an embedded regtest-like pool."""
    from miner.mining import Miner, PoolConfig

    out = _Output(quiet, click.get_current_context().meta.get("log", {}).get("verbose", 0))
    if api_allow is not None and api_listen is None:
        api_listen = "4028"
    api_addr = parse_listen(api_listen, "--api-listen") if api_listen is not None else None
    metrics_addr = parse_listen(metrics_listen, "--metrics-listen") if metrics_listen is not None else None
    ctx = click.get_current_context()

    capture_writer = _open_capture(capture, out, urls)
    embedded = None
    if urls:
        try:
            pools = [
                PoolConfig(url, _nth(users, i), _nth(passwords, i), _proxy(_nth(proxies, i)))
                for i, url in enumerate(urls)
            ]
        except ValueError as exc:
            raise CliError(str(exc), 2) from None
    else:
        embedded = _start_embedded(out)
        pools = [PoolConfig(embedded.url, _nth(users, 0), _nth(passwords, 0))]

    wires = []  # who sees every Stratum line: --protocol-dump, --capture
    if ctx.meta.get("log", {}).get("protocol_dump"):
        wires.append(_dump_line)
    if capture_writer is not None:
        wires.append(capture_writer)
    stats = Stats()
    api = None
    metrics = None
    miner = None
    interrupted = False
    try:
        engine = make_engine(backend, threads, device, lanes, stats=stats)
        try:
            miner = Miner(
                pools,
                engine,
                stats,
                version_rolling=version_rolling,
                verify_tls=not no_verify_tls,
                ca_file=tls_ca,
                silence_timeout=pool_timeout,
                suggest_difficulty=suggest_difficulty,
                sv2_channel=sv2_channel,
                strategy=strategy or "failover",
                quotas=[int(_nth(quotas, i)) for i in range(len(pools))] if quotas else None,
                retries=None if retries in (None, -1) else retries,
                retry_pause=retry_pause,
                wire=fan_out(wires),
            )
        except ValueError as exc:
            raise CliError(str(exc), 2) from None
        if api_addr is not None:
            api = _start_api(miner, api_addr, api_allow)
            out.log(f"cgminer API listening on {api_addr[0]}:{api.port}")
        if metrics_addr is not None:
            metrics = _start_metrics(miner, metrics_addr)
            out.log(f"Prometheus metrics on http://{metrics_addr[0]}:{metrics.port}/metrics")
        reply_wait = 0.5

        def reload() -> None:
            _reload(ctx, miner, api)

        try:
            reply_wait, interrupted = _run(miner, out, duration, status_interval, reload)
        finally:
            miner.stop(reply_wait)
    except KeyboardInterrupt:  # Ctrl-C while setting up (compiling, connecting): still a summary
        out.log("interrupted; stopping")
        interrupted = True
    finally:
        if api is not None:
            api.stop()
        if metrics is not None:
            metrics.stop()
        if embedded is not None:
            embedded.stop()
        if capture_writer is not None:
            capture_writer.close()
    out.end()
    snap = stats.snapshot()
    if miner is not None and miner.fatal and not interrupted:
        raise CliError(miner.fatal)
    if miner is not None and not miner.got_job and not interrupted:
        last = "; ".join(miner.last_errors())
        raise CliError("mined nothing: no pool ever sent a job" + (f" ({last})" if last else ""))
    if as_json:
        keys = ("accepted", "rejected", "stale", "hw_errors", "hashes", "live_hashes", "blocks")
        result = {k: snap[k] for k in keys}
        result["seconds"] = round(snap["elapsed"], 3)
        result["live_seconds"] = round(snap["live_seconds"], 3)
        result["hashrate"] = snap["live_hashrate"]
        click.echo(json.dumps(result))
    else:
        click.echo(summary_line(snap))
    if interrupted:
        raise Interrupted()


def summary_line(snap: dict) -> str:
    """The run in one line: the rate is hashes on live work over the time work was live.

    Hashes scanned while no pool held the job (it was down, or none had answered yet) are
    named apart, so a benchmark read off this line is the rate on work a pool would take.
    """
    elapsed, live = round(snap["elapsed"], 1), round(snap["live_seconds"], 1)
    idle = max(0.0, elapsed - live)  # from the rounded figures, so that the three shown add up
    offline_hashes = snap["hashes"] - snap["live_hashes"]
    text = (
        f"mined {elapsed:.1f} s ({live:.1f} s with a live job, {idle:.1f} s without): "
        f"{snap['live_hashes']} hashes on live work ({format_rate(snap['live_hashrate'])}), "
    )
    if offline_hashes:
        text += f"{offline_hashes} more on work no pool held, "
    return text + (
        f"accepted {snap['accepted']}, rejected {snap['rejected']}, stale {snap['stale']}, "
        f"hardware errors {snap['hw_errors']}, blocks {snap['blocks']}"
    )


def _proxy(value: str | None) -> str | None:
    return None if value in (None, "", "direct", "none") else value


def _nth(values: tuple[str, ...], i: int) -> str | None:
    """The i-th -u or -p (the last one repeats); None where none was given, so a URL's own credentials count."""
    if not values:
        return None
    return values[i] if i < len(values) else values[-1]


def _start_embedded(out: _Output):
    try:
        from miner.pool import EmbeddedPool
    except ImportError as exc:
        raise CliError(f"the embedded pool is not available ({exc}); give a pool with -o URL") from None
    pool = EmbeddedPool(vardiff=True)
    try:
        pool.start()
    except OSError as exc:
        raise CliError(f"cannot start the embedded pool: {exc.strerror or exc}") from None
    out.log(f"embedded pool listening on {pool.url} (no -o given)")
    return pool


def _start_api(miner, addr: tuple[str, int], allow: str | None):
    try:
        from miner.asic.server import ApiServer
    except ImportError as exc:
        raise CliError(f"the cgminer API is not available ({exc})") from None
    try:
        api = ApiServer(miner, host=addr[0], port=addr[1], allow=allow)
        api.start()
    except ValueError as exc:
        raise CliError(f"--api-allow: {exc}", 2) from None
    except OSError as exc:
        raise CliError(f"cannot listen on {addr[0]}:{addr[1]} for the API: {exc.strerror or exc}") from None
    return api


def _open_capture(path: str | None, out: _Output, urls):
    """--capture: the wire hook that appends the session to ``path``, or None without it."""
    if path is None:
        return None
    from miner.mining_v2 import is_v2_url
    from miner.teach import CaptureWriter

    try:
        writer = CaptureWriter(path)
    except OSError as exc:
        raise CliError(f"--capture: cannot write {path}: {exc.strerror or exc}") from None
    if any(is_v2_url(url) for url in urls):
        out.log("--capture records the Stratum V1 pools only: a stratum2 pool's frames are not in it")
    out.log(f"recording the Stratum session to {path}")
    return writer


def _dump_line(direction: str, line: str) -> None:
    """--protocol-dump: a Stratum line as it went over the wire, its passwords replaced by ***."""
    from miner.logs import protocol_logger, redact

    protocol_logger("stratum").info(f"{'>' if direction == 'out' else '<'} {redact(line)}")


def _start_metrics(miner, addr: tuple[str, int]):
    try:
        from miner.asic.metrics import serve_miner_metrics
    except ImportError as exc:
        raise CliError(f"--metrics-listen needs the 'farm' extra: pip install 'sha256d-miner[farm]' ({exc})") from None
    try:
        return serve_miner_metrics(miner, addr[0], addr[1])
    except OSError as exc:
        raise CliError(f"cannot listen on {addr[0]}:{addr[1]} for metrics: {exc.strerror or exc}") from None


def _reload(ctx: click.Context, miner, api) -> None:
    """SIGHUP: pools and the API allow list again from --config, keeping every connection still wanted."""
    from miner.cli.config import ConfigFile
    from miner.mining import PoolConfig

    path = ctx.meta.get("config_file")
    if path is None:
        logger.warning("SIGHUP: nothing to reload (no --config FILE)")
        return
    try:
        settings = ConfigFile(path).defaults_for(ctx, logger.warning)
        urls = settings.get("urls") or ctx.params["urls"]
        users, passwords = settings.get("users", ()), settings.get("passwords", ())
        if urls:
            miner.reload_pools(
                [PoolConfig(u, _nth(tuple(users), i), _nth(tuple(passwords), i)) for i, u in enumerate(urls)]
            )
        if api is not None and "api_allow" in settings:
            from miner.asic.access import parse_allow

            api.allow = parse_allow(settings["api_allow"])
            logger.info(f"API allow list reloaded: {settings['api_allow']}")
    except (CliError, ValueError) as exc:
        message = exc.format_message() if isinstance(exc, CliError) else str(exc)
        logger.warning(f"SIGHUP: {path} not reloaded, the run goes on as it was: {message}")


def _run(
    miner, out: _Output, duration: float | None, status_interval: float | None = None, reload=None
) -> tuple[float, bool]:
    """Mine until --duration, quit (API), a fatal error, Ctrl-C or SIGTERM; SIGHUP calls ``reload``.

    Returns how long to await the pools' replies, and whether Ctrl-C ended it.
    """
    stopping = threading.Event()
    reload_wanted = threading.Event()

    def on_term(signum, frame) -> None:
        stopping.set()
        miner.quit()

    previous = previous_hup = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, on_term)
        if reload is not None and hasattr(signal, "SIGHUP"):
            previous_hup = signal.signal(signal.SIGHUP, lambda signum, frame: reload_wanted.set())
    miner.start()
    start = time.monotonic()
    every = status_due_every(status_interval, out.tty)
    next_status = start + every
    try:
        while True:
            now = time.monotonic()
            wake = next_status if duration is None else min(next_status, start + duration)
            if miner.wait(max(0.0, min(0.25, wake - now))):
                return (0.5 if stopping.is_set() else 2.0), False
            now = time.monotonic()
            if reload_wanted.is_set():
                reload_wanted.clear()
                reload()
            if duration is not None and now - start >= duration:
                return 2.0, False
            if now >= next_status:
                next_status = now + every
                pool, diff = miner.pool_summary()
                out.status(status_line(miner.stats, pool, diff, per_device=out.verbose > 0))
    except KeyboardInterrupt:
        out.log("interrupted; stopping")
        return 0.5, True
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if previous_hup is not None:
            signal.signal(signal.SIGHUP, previous_hup)


commands = [mine]
