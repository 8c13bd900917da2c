"""``miner mine``: mine on Stratum pools (or, with no ``-o``, on an embedded pool in this process)."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time

import click

from miner.cli.common import CliError, Interrupted, Number, Positive, backend_options, make_engine, parse_listen
from miner.cli.config import config_options
from miner.stats import Stats

STATUS_EVERY_TTY = 1.0
STATUS_EVERY_LOG = 10.0


def format_rate(hps: float) -> str:
    for unit, scale in (("GH/s", 1e9), ("MH/s", 1e6), ("kH/s", 1e3)):
        if hps >= scale:
            return f"{hps / scale:.2f} {unit}"
    return f"{hps:.0f} H/s"


def status_line(stats: Stats, pool: str, difficulty: float) -> str:
    snap = stats.snapshot()
    return (
        f"{format_rate(snap['hashrate_5s'])} (5s) {format_rate(snap['hashrate_av'])} (avg) | "
        f"A:{snap['accepted']} R:{snap['rejected']} S:{snap['stale']} HW:{snap['hw_errors']} "
        f"blocks:{snap['blocks']} | diff {difficulty:g} | {pool}"
    )


class _Output:
    """A live status line on a terminal; plain timestamped lines otherwise."""

    def __init__(self, quiet: bool) -> None:
        self.tty = sys.stderr.isatty()
        self.quiet = quiet
        self._lock = threading.Lock()
        self._status_shown = False

    def log(self, line: str) -> None:
        if self.quiet:
            return
        with self._lock:
            if self.tty and self._status_shown:
                click.echo("\r\033[K", nl=False, err=True)
                self._status_shown = False
            click.echo(f"[{time.strftime('%H:%M:%S')}] {line}", err=True)

    def status(self, line: str) -> None:
        if self.quiet:
            return
        with self._lock:
            if self.tty:
                click.echo(f"\r\033[K{line}", nl=False, err=True)
                self._status_shown = True
            else:
                click.echo(f"[{time.strftime('%H:%M:%S')}] {line}", err=True)

    def end(self) -> None:
        with self._lock:
            if self.tty and self._status_shown:
                click.echo("", err=True)
                self._status_shown = False


@click.command()
@click.option(
    "-o",
    "--url",
    "urls",
    multiple=True,
    metavar="URL",
    help="pool stratum+tcp://HOST:PORT or stratum+ssl://HOST:PORT; repeat for backups (priority order). "
    "Without -o, mine on an embedded pool in this process.",
)
@click.option("-u", "--user", "users", multiple=True, metavar="USER", help="worker name, one per -o (last one repeats)")
@click.option("-p", "--pass", "passwords", multiple=True, metavar="PASS", help="password, one per -o")
@backend_options
@click.option("--version-rolling", is_flag=True, help="ask pools for BIP 310 version rolling")
@click.option("--duration", type=Positive, default=None, metavar="S", help="stop after S seconds")
@click.option("--json", "as_json", is_flag=True, help="print the final counts as one JSON line on stdout")
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
@click.option("--quiet", "-q", is_flag=True, help="no log or status lines")
@config_options
def mine(
    urls,
    users,
    passwords,
    backend,
    threads,
    device,
    lanes,
    version_rolling,
    duration,
    as_json,
    no_verify_tls,
    tls_ca,
    api_listen,
    api_allow,
    pool_timeout,
    suggest_difficulty,
    quiet,
) -> None:
    """Mine on Stratum V1 pools with failover; with no -o, on an embedded regtest-like pool."""
    from miner.mining import Miner, PoolConfig

    out = _Output(quiet)
    if api_allow is not None and api_listen is None:
        api_listen = "4028"
    api_addr = parse_listen(api_listen, "--api-listen") if api_listen is not None else None

    embedded = None
    if urls:
        try:
            pools = [PoolConfig(url, _nth(users, i), _nth(passwords, i)) for i, url in enumerate(urls)]
        except ValueError as exc:
            raise CliError(str(exc), 2) from None
    else:
        embedded = _start_embedded(out)
        pools = [PoolConfig(embedded.url, _nth(users, 0), _nth(passwords, 0))]

    stats = Stats()
    api = None
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
                log=out.log,
            )
        except ValueError as exc:
            raise CliError(str(exc), 2) from None
        if api_addr is not None:
            api = _start_api(miner, api_addr, api_allow)
            out.log(f"cgminer API listening on {api_addr[0]}:{api.port}")
        reply_wait = 0.5
        try:
            reply_wait, interrupted = _run(miner, out, duration)
        finally:
            miner.stop(reply_wait)
    except KeyboardInterrupt:  # Ctrl-C while setting up (compiling, connecting): still a summary
        out.log("interrupted; stopping")
        interrupted = True
    finally:
        if api is not None:
            api.stop()
        if embedded is not None:
            embedded.stop()
    out.end()
    snap = stats.snapshot()
    if miner is not None and miner.fatal and not interrupted:
        raise CliError(miner.fatal)
    if miner is not None and not miner.got_job and not interrupted:
        last = "; ".join(miner.last_errors())
        raise CliError("mined nothing: no pool ever sent a job" + (f" ({last})" if last else ""))
    if as_json:
        keys = ("accepted", "rejected", "stale", "hw_errors", "hashes", "blocks")
        result = {k: snap[k] for k in keys}
        result["seconds"] = round(snap["elapsed"], 3)
        click.echo(json.dumps(result))
    else:
        click.echo(
            f"mined {snap['elapsed']:.1f} s: {snap['hashes']} hashes ({format_rate(snap['hashrate_av'])}), "
            f"accepted {snap['accepted']}, rejected {snap['rejected']}, stale {snap['stale']}, "
            f"hardware errors {snap['hw_errors']}, blocks {snap['blocks']}"
        )
    if interrupted:
        raise Interrupted()


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
        from miner.api import ApiServer
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


def _run(miner, out: _Output, duration: float | None) -> tuple[float, bool]:
    """Mine until --duration, quit (API), a fatal error, Ctrl-C or SIGTERM.

    Returns how long to await the pools' replies, and whether Ctrl-C ended it.
    """
    stopping = threading.Event()

    def on_term(signum, frame) -> None:
        stopping.set()
        miner.quit()

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, on_term)
    miner.start()
    start = time.monotonic()
    every = STATUS_EVERY_TTY if out.tty else STATUS_EVERY_LOG
    next_status = start + every
    try:
        while True:
            now = time.monotonic()
            wake = next_status if duration is None else min(next_status, start + duration)
            if miner.wait(max(0.0, min(0.25, wake - now))):
                return (0.5 if stopping.is_set() else 2.0), False
            now = time.monotonic()
            if duration is not None and now - start >= duration:
                return 2.0, False
            if now >= next_status:
                next_status = now + every
                pool, diff = miner.pool_summary()
                out.status(status_line(miner.stats, pool, diff))
    except KeyboardInterrupt:
        out.log("interrupted; stopping")
        return 0.5, True
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


commands = [mine]
