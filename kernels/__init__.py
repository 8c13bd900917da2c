"""Scanning backends: numbers in, candidate nonces out; no I/O, no globals."""

from __future__ import annotations

from kernels.base import Backend, BackendUnavailable, Prepared, prepare

__all__ = ["Backend", "BackendUnavailable", "Prepared", "prepare", "BACKENDS", "get_backend"]

#: name -> "module:Class"; imported on demand so optional extras stay optional
BACKENDS = {
    "cpu": "kernels.cpu:CpuBackend",
    "reference": "kernels.reference_backend:ReferenceBackend",
    "opencl": "kernels.opencl:OpenCLBackend",
}


def get_backend(name: str, **options) -> Backend:
    """Build a backend by name; BackendUnavailable says why one cannot run.

    ``cpu`` without ``lanes`` (or with ``lanes="auto"``) runs the kernel :mod:`kernels.chooser`
    measured fastest on this machine, timed on its first start and cached on disk after that.
    """
    try:
        target = BACKENDS[name]
    except KeyError:
        raise BackendUnavailable(f"unknown backend {name!r} (choose from {', '.join(BACKENDS)})") from None
    module_name, class_name = target.split(":")
    import importlib

    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendUnavailable(f"backend {name!r} is not available: {exc}") from None
    return getattr(module, class_name)(**options)
