"""Shared pieces of the command line: errors, backend options, engine set-up."""

from __future__ import annotations

import contextlib
import functools
import math
import signal
import threading

import click

from kernels import BACKENDS, BackendUnavailable


class CliError(click.ClickException):
    """One clear line on stderr and a chosen exit code; never a traceback."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file=None) -> None:
        click.echo(f"miner: error: {self.format_message()}", err=True)


class Number(click.ParamType):
    """A finite float within bounds, for every float option of every command.

    Click's ``FloatRange`` lets ``nan`` through, and ``inf`` where no upper bound is set; either one
    then ends in a traceback or a run that never stops, so this type refuses both (and ``1e400``).
    """

    name = "number"

    def __init__(
        self, min: float | None = None, max: float | None = None, min_open: bool = False, max_open: bool = False
    ) -> None:
        self.min, self.max, self.min_open, self.max_open = min, max, min_open, max_open

    def describe(self) -> str:
        parts = []
        if self.min is not None:
            parts.append(f"{'>' if self.min_open else '>='} {self.min:g}")
        if self.max is not None:
            parts.append(f"{'<' if self.max_open else '<='} {self.max:g}")
        return "a finite number" + (" " + " and ".join(parts) if parts else "")

    def convert(self, value, param, ctx) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number (expected {self.describe()})", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not {self.describe()}", param, ctx)
        low_ok = self.min is None or (number > self.min if self.min_open else number >= self.min)
        high_ok = self.max is None or (number < self.max if self.max_open else number <= self.max)
        if not (low_ok and high_ok):
            self.fail(f"{value!r} is not {self.describe()}", param, ctx)
        return number


#: the usual kinds: a positive quantity (seconds, difficulty, watts) and one that may be zero (a price)
Positive = Number(min=0, min_open=True)
NonNegative = Number(min=0)


class Interrupted(click.ClickException):
    """Ctrl-C, whenever it lands: one line and exit 130, as shells expect (after any summary)."""

    exit_code = 130

    def __init__(self) -> None:
        super().__init__("interrupted")

    def show(self, file=None) -> None:
        click.echo("miner: interrupted", err=True)


def parse_listen(text: str, option: str) -> tuple[str, int]:
    """'[HOST:]PORT' (IPv6 as '[::1]:PORT') -> (host, port); host defaults to loopback."""
    host, _, port_text = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        raise CliError(f"{option}: port must be a number, got {port_text!r} (expected [HOST:]PORT)", 2) from None
    if not 0 <= port < 65536:
        raise CliError(f"{option}: port {port} is out of range", 2)
    return host, port


def _backend_list(ctx, param, value: str) -> str:
    """'cpu', 'opencl', or several at once, comma-separated: 'cpu,opencl'."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names or len(set(names)) != len(names) or any(name not in BACKENDS for name in names):
        raise click.BadParameter(f"{value!r}: name one or more of {', '.join(sorted(BACKENDS))}, comma-separated")
    return ",".join(names)


class KernelName(click.ParamType):
    """``auto`` or an entry of ``kernels.cpu.KERNEL_CHOICES``.

    The list is read from the kernel module only when a name other than ``auto`` is given (or
    help is shown), so commands that never scan on the CPU start without importing numba, and a
    kernel added there is accepted here without a second list to keep in step.
    """

    name = "kernel"

    @staticmethod
    def choices() -> tuple[str, ...]:
        from kernels.cpu import KERNEL_CHOICES

        return ("auto", *KERNEL_CHOICES)

    def get_metavar(self, param, ctx=None) -> str:
        return "[" + "|".join(self.choices()) + "]"

    def convert(self, value, param, ctx) -> str:
        text = str(value).strip()
        if text == "auto":
            return text
        choices = self.choices()
        if text not in choices:
            self.fail(f"{value!r} is not one of {', '.join(choices)}", param, ctx)
        return text


def backend_options(func):
    """--backend, --threads, --device, --lanes: how and where to scan."""

    @click.option(
        "--backend",
        "-b",
        default="cpu",
        show_default=True,
        callback=_backend_list,
        metavar="NAME[,NAME]",
        help="scanning backend(s): cpu, opencl, reference; cpu,opencl runs both at once",
    )
    @click.option(
        "--threads", "-t", type=click.IntRange(min=1), default=None, help="CPU worker threads (default: one per core)"
    )
    @click.option(
        "--device",
        "device",
        default=None,
        metavar="P:D[,P:D]",
        help="OpenCL device(s) (see `miner devices`); default: the first GPU, else the first device",
    )
    @click.option(
        "--lanes",
        type=KernelName(),
        default="auto",
        show_default=True,
        help="CPU kernel: 4/8/16 SIMD lanes, 'sha' for SHA-NI, ...; 'auto' runs the one timed fastest here "
        "(timed once, cached; `miner bench --all-kernels` compares them all)",
    )
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)

    return wrapper


def _forced(lanes: str | None) -> bool:
    return lanes not in (None, "auto")


def backend_kwargs(backend: str, device: str | None, lanes: str | None) -> dict:
    options: dict = {}
    if device is not None:
        if backend != "opencl":
            raise CliError("--device applies to --backend opencl", 2)
        options["device"] = device
    if _forced(lanes) and backend != "cpu":
        raise CliError("--lanes applies to --backend cpu", 2)
    if backend == "cpu":
        options["lanes"] = lanes or "auto"
    return options


def make_backend(backend: str, device: str | None = None, lanes: str | None = None):
    """One backend by name, the one place the CLI resolves one; a one-line error if it cannot run here.

    For ``cpu`` the kernel is ``lanes``, or with ``auto`` the one :mod:`kernels.chooser` timed
    fastest on this machine (read from its cache after the first start).
    """
    from kernels import get_backend

    if "," in backend:
        raise CliError("this command scans with one backend at a time", 2)
    try:
        with ctrl_c_held():  # numba and llvmlite import and load the kernel here
            return get_backend(backend, **backend_kwargs(backend, device, lanes))
    except (BackendUnavailable, ValueError) as exc:
        raise CliError(str(exc)) from None


@contextlib.contextmanager
def ctrl_c_held():
    """Hold Ctrl-C while library code runs that can swallow a KeyboardInterrupt (numba's and llvmlite's
    imports and kernel loading), then act on it: otherwise a Ctrl-C landing there leaves a miner that
    ignores it. Outside the main thread (a test runner) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pending:
        raise KeyboardInterrupt


def make_devices(backend: str, threads: int | None, device: str | None = None, lanes: str | None = None) -> list:
    """The engine's workers for one or more backends: a worker per CPU thread, one per OpenCL device.

    Each backend is built once, by :func:`make_backend`; its CPU threads share that instance.
    """
    from miner.engine import Device, cpu_devices, default_threads

    names = backend.split(",")
    if device is not None and "opencl" not in names:
        raise CliError("--device applies to --backend opencl", 2)
    if _forced(lanes) and "cpu" not in names:
        raise CliError("--lanes applies to --backend cpu", 2)
    devices: list[Device] = []
    if "opencl" in names:
        for spec in device.split(",") if device else [None]:
            be = make_backend("opencl", spec)
            devices.append(Device(f"OPENCL {be.spec}", be, be.kind))
    # A GPU's feeding thread waits in the driver (some drivers spin): leave it a core.
    gpus = sum(1 for dev in devices if dev.kind == "GPU")
    for name in names:
        if name != "opencl":
            be = make_backend(name, None, lanes if name == "cpu" else None)
            devices += cpu_devices(be, threads or max(1, default_threads() - gpus))
    return devices


def make_engine(
    backend: str, threads: int | None, device: str | None = None, lanes: str | None = None, **engine_kwargs
):
    """An Engine over one or more backends (see :func:`make_devices`)."""
    from miner.engine import Engine

    return Engine(make_devices(backend, threads, device, lanes), **engine_kwargs)
