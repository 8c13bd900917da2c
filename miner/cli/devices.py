"""`miner devices`: what this machine can mine with, CPU cores and every OpenCL device."""

from __future__ import annotations

import json
import platform as platform_module

import click

from kernels import BackendUnavailable

#: /proc/cpuinfo flags that matter to the CPU kernel, widest first
SIMD_FLAGS = ("avx512f", "avx2", "sse4_1", "sha_ni")


def cpu_info(cpuinfo_path: str = "/proc/cpuinfo") -> dict:
    """Cores, model and SIMD features, as the OS reports them (the kernel is :func:`kernel_info`'s)."""
    from miner.engine import default_threads

    model = platform_module.processor() or platform_module.machine()
    flags: set[str] = set()
    try:
        with open(cpuinfo_path) as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name":
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    simd = [flag for flag in SIMD_FLAGS if flag in flags]
    return {"backend": "cpu", "model": model, "cores": default_threads(), "simd": simd}


def kernel_info() -> tuple[dict, str]:
    """The CPU kernel ``--lanes auto`` runs, as JSON and as one line: the chooser's verdict.

    The first start on a machine times the kernels (seconds, compiling included); later ones read the cache.
    """
    from kernels import chooser
    from miner.throughput import format_rate

    try:
        choice = chooser.choose()
    except BackendUnavailable as exc:
        return {"available": False, "reason": str(exc)}, f"no CPU kernel runs here: {exc}"
    rates = ", ".join(f"{name} {format_rate(rate)}" for name, rate in choice.ranked())
    where = f"cached in {choice.path}" if choice.path else "not cached: the cache directory is not writable"
    line = f"{choice.summary()} ({rates} on {choice.threads} threads; {where})"
    return {"available": True, **choice.to_json()}, line


def opencl_info() -> dict:
    """Every OpenCL platform and device, or the one-line reason there are none."""
    try:
        from kernels.opencl import list_devices

        devices = list_devices()
    except BackendUnavailable as exc:
        return {"backend": "opencl", "available": False, "reason": str(exc), "devices": []}
    return {
        "backend": "opencl",
        "available": bool(devices),
        "reason": None if devices else "OpenCL platforms found but no devices",
        "devices": [vars(dev) for dev in devices],
    }


def _mib(n: int) -> str:
    return f"{n / (1 << 20):,.0f} MiB"


@click.command()
@click.option("--json", "as_json", is_flag=True, help="print one JSON object instead of a table")
def devices(as_json: bool) -> None:
    """List the CPU backend and every OpenCL platform and device (for --device)."""
    cpu = cpu_info()
    cpu["kernel"], kernel_line = kernel_info()
    ocl = opencl_info()
    if as_json:
        click.echo(json.dumps({"cpu": cpu, "opencl": ocl}))
        return
    simd = ", ".join(cpu["simd"]) or "none detected"
    click.echo(f"CPU     --backend cpu      {cpu['model']}: {cpu['cores']} cores, SIMD {simd}")
    click.echo(f"        --lanes auto       {kernel_line}")
    if not ocl["available"]:
        click.echo(f"OpenCL  unavailable: {ocl['reason']}")
        return
    for dev in ocl["devices"]:
        click.echo(
            f"OpenCL  --device {dev['spec']:<6} {dev['name']} [{dev['kind']}, {dev['platform']}]: "
            f"{dev['compute_units']} compute units, work group <= {dev['max_work_group_size']}, "
            f"{_mib(dev['global_mem_bytes'])}, {dev['max_clock_mhz']} MHz"
        )


commands = [devices]
