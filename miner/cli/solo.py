"""`miner solo`: mine blocks straight to a node over getblocktemplate."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import sys

import click

from miner.cli.common import CliError, Interrupted, Positive, backend_options, make_engine
from miner.cli.config import config_options
from miner.cli.output import fan_out, log_options

logger = logging.getLogger(__name__)

#: getblockchaininfo's chain name -> the network names an address may carry
CHAIN_NETWORKS = {"main": "mainnet", "test": "testnet", "testnet4": "testnet", "signet": "signet", "regtest": "regtest"}


class _Terminated(Exception):
    """SIGTERM: stop as Ctrl-C does, summary included, but exit 0 (a service manager's stop)."""


def _terminate(signum, frame) -> None:
    raise _Terminated


def address_script(address: str, chain: str | None, where: str = "the node", prefix: str = "") -> bytes:
    """The output script an address pays, refused (one line, exit 2) unless it belongs to ``chain``.

    ``chain`` is getblockchaininfo's name (main, test, regtest, ...); None skips the network check.
    Coins paid to another network's address are paid to nobody, so ``solo`` and ``pool`` both ask.
    """
    from miner.address import decode_address

    try:
        decoded = decode_address(address)
    except ValueError as exc:
        raise CliError(f"{prefix}{exc}", 2) from None
    network = CHAIN_NETWORKS.get(chain or "")
    if network is not None and network not in decoded.network.split("/"):
        raise CliError(f"{prefix}address {address} is a {decoded.network} address but {where} is on {chain}", 2)
    return decoded.script


def _dump_rpc(direction: str, body: str) -> None:
    """--protocol-dump: each RPC call's body as sent, and the node's reply (credentials never reach a body)."""
    from miner.logs import protocol_logger, redact

    protocol_logger("rpc").info(f"{'>' if direction == 'out' else '<'} {redact(body)}")


def node_chain(rpc) -> str | None:
    """The node's chain (getblockchaininfo), None where the node does not say; CliError if it cannot be asked."""
    from miner.rpc import RpcError, RpcFailure

    try:
        info = rpc.call("getblockchaininfo")
    except RpcError:
        return None  # an old or unusual node: skip the network check
    except RpcFailure as exc:
        raise CliError(str(exc)) from None
    chain = info.get("chain") if isinstance(info, dict) else None
    return chain if isinstance(chain, str) else None


@click.command()
@click.option("--rpc-url", required=True, metavar="URL", help="node RPC, e.g. http://USER:PASS@127.0.0.1:18443")
@click.option("--rpc-cookie", default=None, metavar="FILE", help="node's .cookie file instead of USER:PASS")
@click.option("--address", "-a", required=True, metavar="ADDR", help="payout address for the coinbase")
@backend_options
@click.option("--blocks", type=click.IntRange(min=1), default=None, help="stop after N accepted blocks")
@click.option("--duration", type=Positive, default=None, metavar="S", help="stop after S seconds")
@click.option("--json", "as_json", is_flag=True, help="print a JSON summary line at the end")
@click.option("--no-longpoll", is_flag=True, help="poll for new templates instead of long polling")
@click.option(
    "--capture",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="FILE",
    help="append every RPC call to the node and its reply to FILE as JSON lines (time, direction, the body)",
)
@log_options
@config_options
def solo(
    rpc_url, rpc_cookie, address, backend, threads, device, lanes, blocks, duration, as_json, no_longpoll, capture
):
    """Solo-mine on a node: getblocktemplate, mine, submitblock, print the node's verdict."""
    from miner.gbt import GbtJobSource, TemplateError
    from miner.rpc import RpcClient, RpcError, RpcFailure
    from miner.solo import EXTRANONCE_SIZE, SoloMiner
    from miner.stats import Stats

    address_script(address, None)  # a mistyped address is the first thing to hear about
    writer = None
    if capture is not None:
        from miner.teach import CaptureWriter

        try:
            writer = CaptureWriter(capture)
        except OSError as exc:
            raise CliError(f"--capture: cannot write {capture}: {exc.strerror or exc}") from None
    wires = [writer] if writer is not None else []
    if click.get_current_context().meta.get("log", {}).get("protocol_dump"):
        wires.append(_dump_rpc)
    try:
        rpc = RpcClient(rpc_url, cookie_file=rpc_cookie, wire=fan_out(wires))
    except ValueError as exc:
        raise CliError(str(exc), 2) from None
    chain = node_chain(rpc)
    script = address_script(address, chain)

    def note(text: str) -> None:
        logger.info(text)  # stderr, a --log-file, syslog: stdout is for the verdicts and results

    source = GbtJobSource(
        rpc_url, script, rpc_cookie, extranonce_size=EXTRANONCE_SIZE, longpoll=not no_longpoll, on_event=note, rpc=rpc
    )
    try:
        source.current()
    except RpcError as exc:
        raise CliError(f"node refused getblocktemplate: {exc.message} (code {exc.code})") from None
    except (RpcFailure, TemplateError) as exc:
        raise CliError(str(exc)) from None

    stats = Stats()
    engine = make_engine(backend, threads, device, lanes, stats=stats)
    verdict_out = sys.stderr if as_json else sys.stdout
    miner = SoloMiner(source, engine, blocks_wanted=blocks, echo=lambda line: click.echo(line, file=verdict_out))
    job = source.current()
    interrupted = False
    try:  # from here on a signal, however early, still ends with the summary
        with contextlib.suppress(ValueError):  # not the main thread (tests): keep the default
            signal.signal(signal.SIGTERM, _terminate)
        note(f"solo mining at height {job.height} on {chain or 'the node'} with {backend}, paying {address}")
        miner.run(duration)
    except KeyboardInterrupt:
        interrupted = True
        miner.stop()
    except _Terminated:
        miner.stop()
    except RpcFailure as exc:
        miner.stop()
        raise CliError(str(exc)) from None
    summary = miner.summary()
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(
            f"{summary['accepted']} block(s) accepted, {summary['rejected']} rejected in {summary['seconds']:.1f} s"
        )
    if interrupted:
        raise Interrupted()
    if blocks is not None and summary["accepted"] < blocks:
        raise CliError(f"only {summary['accepted']} of {blocks} block(s) accepted before stopping")


commands = [solo]
