"""``miner pool``: run a Stratum V1 pool on the embedded chain or a node's templates."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import ssl
import threading
import time

import click

from miner.block import parse_nbits_hex
from miner.cli.common import CliError, Interrupted, NonNegative, Number, Positive, parse_listen
from miner.cli.config import config_options
from miner.cli.output import log_options
from miner.cli.solo import address_script, node_chain
from miner.pool import DEFAULT_DIFFICULTY, REGTEST_NBITS, EmbeddedChain, EmbeddedPool, JobSource
from stratum.client import redact_url

logger = logging.getLogger(__name__)


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


def node_job_source(rpc_url: str, rpc_cookie: str | None, address: str | None, log) -> tuple[JobSource, bytes]:
    """Templates from the node, paying an address the node's own chain can spend (as ``solo`` checks)."""
    if address is None:
        raise CliError("--rpc-url needs --address (where the pool's blocks pay)", 2)
    address_script(address, None, prefix="--address: ")  # a mistyped address is the first thing to hear about
    try:
        from miner.gbt import GbtJobSource
        from miner.rpc import RpcClient
    except ImportError as exc:
        raise CliError(f"a pool backed by a node is not available: {exc}") from None
    try:
        rpc = RpcClient(rpc_url, cookie_file=rpc_cookie)
    except ValueError as exc:
        raise CliError(f"--rpc-url: {exc}", 2) from None
    script = address_script(address, node_chain(rpc), prefix="--address: ")
    return GbtJobSource(rpc_url, script, rpc_cookie, on_event=log, rpc=rpc), script


EMBEDDED = "the embedded chain"


def _sv2_identity(listen: str | None, key_file: str | None):
    """The V2 keys (and where they came from), read before anything starts so a bad key file costs nothing."""
    if listen is None:
        if key_file is not None:
            raise CliError("--sv2-key-file needs --sv2-listen", 2)
        return None
    parse_listen(listen, "--sv2-listen")
    from miner.pool_v2 import identity_from

    try:
        return identity_from(key_file)
    except (OSError, ValueError) as exc:
        detail = f"{exc.filename}: {exc.strerror}" if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CliError(f"--sv2-key-file: {detail}") from None


def _start_sv2(server: EmbeddedPool, listen: str | None, identity):
    """The V2 listener on the V1 pool's own Pool: one job source, one set of counts."""
    if listen is None:
        return None
    from miner.pool_v2 import V2Listener

    host, port = parse_listen(listen, "--sv2-listen")
    sv2 = V2Listener(server.pool, identity[0], host, port)
    try:
        sv2.start()
    except OSError as exc:
        server.stop()
        raise CliError(f"cannot listen on {listen} for Stratum V2: {exc.strerror or exc}") from None
    return sv2


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
@click.option(
    "--address",
    default=None,
    help="payout address for found blocks: a regtest one on the embedded chain, one of the node's chain with --rpc-url",
)
@click.option("--tls-cert", default=None, type=click.Path(dir_okay=False), help="serve stratum+ssl with this cert")
@click.option("--tls-key", default=None, type=click.Path(dir_okay=False), help="private key for --tls-cert")
@click.option(
    "--sv2-listen",
    default=None,
    metavar="[HOST:]PORT",
    help="also serve Stratum V2 miners (encrypted and authenticated) here, host 127.0.0.1 unless given; "
    "the authority key they need is logged at start",
)
@click.option(
    "--sv2-key-file",
    default=None,
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="the V2 authority and static keys: loaded, or generated and written mode 0600 when FILE is absent "
    "(default: new keys every run)",
)
@log_options
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
    sv2_listen,
    sv2_key_file,
) -> None:
    """Run a Stratum V1 pool (and V2, with --sv2-listen) that cpuminer, cgminer and `miner mine` can mine against.

    Jobs come from an embedded regtest-like chain (every block found extends it)
    or, with --rpc-url, from a node; shares meeting the network target are
    submitted as blocks.
    """
    host, port = parse_listen(listen, "--listen")
    context = tls_context(tls_cert, tls_key)
    sv2_identity = _sv2_identity(sv2_listen, sv2_key_file)
    use_vardiff = vardiff if vardiff is not None else difficulty is None
    lock = threading.Lock()

    def log(text: str) -> None:
        with lock:
            logger.info(text)  # stderr, a --log-file, syslog: stdout is for results

    if rpc_url is not None:
        source, _ = node_job_source(rpc_url, rpc_cookie, address, log)
        pays = f", blocks pay {address}"
    else:
        if rpc_cookie is not None:
            raise CliError("--rpc-cookie needs --rpc-url", 2)
        bits = _network_nbits(nbits)
        # The embedded chain is regtest-like: its coinbase pays --address, which must be a regtest one.
        script = None if address is None else address_script(address, "regtest", EMBEDDED, "--address: ")
        pays = f", blocks pay {address}" if address is not None else ", blocks pay OP_TRUE (anyone can spend)"
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
    sv2 = _start_sv2(server, sv2_listen, sv2_identity)
    source_name = f"node {redact_url(rpc_url)}" if rpc_url else "embedded chain"
    mode = "vardiff" if use_vardiff else "fixed difficulty"
    interrupted = False
    try:  # from here on a signal, however early, still ends with the summary
        with contextlib.suppress(ValueError):  # not the main thread (e.g. a test runner): Ctrl-C only
            signal.signal(signal.SIGTERM, _terminate)
        log(f"listening on {server.url} ({mode} from {server.pool.difficulty:g}; {source_name}{pays})")
        if sv2 is not None:
            log(f"Stratum V2 listening on {sv2.url}")
            log(f"Stratum V2 authority key {sv2.authority_key} ({sv2_identity[1]})")
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
        if sv2 is not None:
            sv2.stop()
        server.stop()
    summary = server.summary()
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo("stopped: " + ", ".join(f"{k} {v}" for k, v in summary.items()))
    if interrupted:
        raise Interrupted()


commands = [pool]
