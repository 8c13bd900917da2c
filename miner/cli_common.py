"""Shared pieces of the command line: errors, backend options, engine set-up."""

from __future__ import annotations

import functools

import click

from kernels import BACKENDS, BackendUnavailable


class CliError(click.ClickException):
    """One clear line on stderr and a chosen exit code; never a traceback."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file=None) -> None:
        click.echo(f"miner: error: {self.format_message()}", err=True)


def backend_options(func):
    """--backend, --threads, --device, --lanes: how and where to scan."""

    @click.option(
        "--backend",
        "-b",
        default="cpu",
        show_default=True,
        type=click.Choice(sorted(BACKENDS)),
        help="scanning backend",
    )
    @click.option(
        "--threads", "-t", type=click.IntRange(min=1), default=None, help="CPU worker threads (default: one per core)"
    )
    @click.option(
        "--device", "device", default=None, metavar="PLATFORM:DEVICE", help="OpenCL device (see `miner devices`)"
    )
    @click.option(
        "--lanes",
        type=click.Choice(["4", "8", "16", "sha"]),
        default=None,
        help="CPU kernel: 4/8/16 SIMD lanes, or 'sha' for SHA-NI (default: lanes from the CPU's features)",
    )
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)

    return wrapper


def backend_kwargs(backend: str, device: str | None, lanes: str | None) -> dict:
    options: dict = {}
    if device is not None:
        if backend != "opencl":
            raise CliError("--device applies to --backend opencl", 2)
        options["device"] = device
    if lanes is not None:
        if backend != "cpu":
            raise CliError("--lanes applies to --backend cpu", 2)
        options["lanes"] = lanes
    return options


def make_backend(backend: str, device: str | None = None, lanes: str | None = None):
    from kernels import get_backend

    try:
        return get_backend(backend, **backend_kwargs(backend, device, lanes))
    except (BackendUnavailable, ValueError) as exc:
        raise CliError(str(exc)) from None


def make_engine(
    backend: str, threads: int | None, device: str | None = None, lanes: str | None = None, **engine_kwargs
):
    """An Engine over the chosen backend; a one-line error if it cannot run."""
    from miner.engine import Engine

    be = make_backend(backend, device, lanes)
    return Engine.for_backend(be, threads=threads, **engine_kwargs)
