"""``miner pool``: run a Stratum V1 pool on the embedded chain or a node's templates."""

from __future__ import annotations

import contextlib
import json
import signal
import ssl
import threading
import time

import click

from miner.block import parse_nbits_hex
from miner.cli.common import CliError, Interrupted, NonNegative, Number, Positive, parse_listen
from miner.cli.config import config_options
from miner.pool import DEFAULT_DIFFICULTY, REGTEST_NBITS, EmbeddedChain, EmbeddedPool, JobSource
from stratum.client import redact_url


class _Terminated(Exception):
    """SIGTERM: stop as Ctrl-C does, summary included, but exit 0 (a service manager's stop)."""


def _terminate(signum, frame) -> None:
    raise _Terminated


def tls_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    if cert is None:
        if key is not None:
            raise CliError("--tls-key needs --tls-cert", 2)
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise CliError(f"cannot load the TLS certificate: {exc}") from None
    return context


def payout_script(address: str | None) -> bytes | None:
    if address is None:
        return None
    from miner.address import address_to_script

    try:
        return address_to_script(address)
    except ValueError as exc:
        raise CliError(f"--address: {exc}", 2) from None


def node_job_source(rpc_url: str, rpc_cookie: str | None, script: bytes | None, log) -> JobSource:
    if script is None:
        raise CliError("--rpc-url needs --address (where the pool's blocks pay)", 2)
    try:
        from miner.gbt import GbtJobSource
    except ImportError as exc:
        raise CliError(f"a pool backed by a node is not available: {exc}") from None
    try:
        return GbtJobSource(rpc_url, script, rpc_cookie, on_event=log)
    except TypeError:  # an older job source without on_event
        return GbtJobSource(rpc_url, script, rpc_cookie)
    except (ValueError, OSError) as exc:
        raise CliError(f"--rpc-url: {exc}", 2) from None


def _network_nbits(text: str) -> int:
    """--nbits: 8 hex digits (as ``scan --bits``) that encode a target some hash can meet."""
    try:
        return parse_nbits_hex(text)
    except ValueError as exc:
        raise CliError(f"--nbits: {exc}", 2) from None


@click.command("pool")
@click.option(
    "--listen",
    default="127.0.0.1:3333",
    show_default=True,
    metavar="[HOST:]PORT",
    help="address to accept miners on (loopback unless a host is given)",
)
@click.option(
    "--difficulty",
    type=Positive,
    default=None,
    help=f"share difficulty (fixed unless --vardiff; default {DEFAULT_DIFFICULTY} with vardiff)",
)
@click.option(
    "--vardiff/--no-vardiff",
    default=None,
    help="retarget each miner's difficulty toward --share-interval (default: on unless --difficulty)",
)
@click.option(
    "--share-interval",
    type=Number(min=0.1),
    default=5.0,
    show_default=True,
    help="vardiff aims at one share per this many seconds per connection",
)
@click.option(
    "--nbits",
    default=f"{REGTEST_NBITS:08x}",
    show_default=True,
    help="network target of the embedded chain, as compact nBits hex",
)
@click.option("--duration", type=NonNegative, default=None, help="stop after S seconds (0: set up, then stop)")
@click.option("--json", "as_json", is_flag=True, help="print a JSON summary as the last line (with --duration)")
@click.option(
    "--rpc-url", default=None, help="take jobs from this node's getblocktemplate (http://USER:PASS@HOST:PORT)"
)
@click.option("--rpc-cookie", default=None, type=click.Path(dir_okay=False), help="the node's .cookie file")
@click.option("--address", default=None, help="payout address for found blocks")
@click.option("--tls-cert", default=None, type=click.Path(dir_okay=False), help="serve stratum+ssl with this cert")
@click.option("--tls-key", default=None, type=click.Path(dir_okay=False), help="private key for --tls-cert")
@config_options
def pool(
    listen,
    difficulty,
    vardiff,
    share_interval,
    nbits,
    duration,
    as_json,
    rpc_url,
    rpc_cookie,
    address,
    tls_cert,
    tls_key,
) -> None:
    """Run a Stratum V1 pool that cpuminer, cgminer and `miner mine` can mine against.

    Jobs come from an embedded regtest-like chain (every block found extends it)
    or, with --rpc-url, from a node; shares meeting the network target are
    submitted as blocks.
    """
    host, port = parse_listen(listen, "--listen")
    context = tls_context(tls_cert, tls_key)
    script = payout_script(address)
    use_vardiff = vardiff if vardiff is not None else difficulty is None
    lock = threading.Lock()

    def log(text: str) -> None:
        with lock:
            click.echo(f"{time.strftime('%H:%M:%S')} {text}", err=True)  # logs on stderr; stdout is results

    if rpc_url is not None:
        source = node_job_source(rpc_url, rpc_cookie, script, log)
    else:
        if rpc_cookie is not None:
            raise CliError("--rpc-cookie needs --rpc-url", 2)
        bits = _network_nbits(nbits)
        try:
            source = EmbeddedChain(**({"payout_script": script} if script is not None else {}), nbits=bits)
        except ValueError as exc:
            raise CliError(f"--nbits: {exc}", 2) from None
    server = EmbeddedPool(
        host,
        port,
        difficulty=difficulty,
        vardiff=use_vardiff,
        job_source=source,
        tls_context=context,
        share_interval=share_interval,
        on_event=log,
    )
    try:
        server.start()
    except OSError as exc:
        raise CliError(f"cannot listen on {listen}: {exc.strerror or exc}") from None
    except Exception as exc:  # the node's first template: down, bad credentials, not synced ...
        raise CliError(f"cannot start the pool: {exc}") from None
    source_name = f"node {redact_url(rpc_url)}" if rpc_url else "embedded chain"
    mode = "vardiff" if use_vardiff else "fixed difficulty"
    interrupted = False
    try:  # from here on a signal, however early, still ends with the summary
        with contextlib.suppress(ValueError):  # not the main thread (e.g. a test runner): Ctrl-C only
            signal.signal(signal.SIGTERM, _terminate)
        log(f"listening on {server.url} ({mode} from {server.pool.difficulty:g}; {source_name})")
        if duration is None:
            while True:
                time.sleep(3600)
        else:
            time.sleep(duration)
    except KeyboardInterrupt:
        interrupted = True
    except _Terminated:
        pass
    finally:
        server.stop()
    summary = server.summary()
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo("stopped: " + ", ".join(f"{k} {v}" for k, v in summary.items()))
    if interrupted:
        raise Interrupted()


commands = [pool]
