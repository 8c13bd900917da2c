"""The OpenCL backend: the same scan on any OpenCL device (GPUs, or CPUs through PoCL).

The host precomputes every nonce-independent step (see the comment at the top
of ``sha256d.cl``), the device hashes one nonce per work item and appends
candidates to a small buffer behind an atomic counter. A count above the
buffer's size means some were not stored: the host grows the buffer (or
splits the range) and scans that range again, so no candidate is ever lost.
"""

from __future__ import annotations

import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from kernels import reference
from kernels.base import Backend, BackendUnavailable, Prepared, check_range

MASK32 = 0xFFFFFFFF
KERNEL_PATH = Path(__file__).with_name("sha256d.cl")
CALL_SECONDS = 0.1  # one scan call of default_chunk nonces should take about this long
MIN_CHUNK = 1 << 14
MAX_CHUNK = 1 << 28
SEGMENT_LIMIT = 1 << 31  # nonces per counter read: the 32-bit counter cannot wrap
MAX_CAPACITY = 1 << 24  # candidates the result buffer may grow to (64 MiB); past that, split the range
INITIAL_CAPACITY = 1 << 12
VECTOR_WIDTHS = (1, 2, 4, 8, 16)
INSTALL_HINT = "run tools/install_opencl.sh or pip install -e '.[opencl]'"


def import_pyopencl():
    """pyopencl, or BackendUnavailable naming why it cannot be used."""
    try:
        import pyopencl
    except ImportError as exc:
        raise BackendUnavailable(f"OpenCL backend needs pyopencl ({exc}); {INSTALL_HINT}") from None
    return pyopencl


def get_platforms(cl) -> list:
    """All OpenCL platforms; none at all is BackendUnavailable, not an empty list."""
    try:
        platforms = cl.get_platforms()
    except cl.Error as exc:  # PLATFORM_NOT_FOUND_KHR when no ICD is installed
        raise BackendUnavailable(f"no OpenCL platform found ({_first_line(str(exc))}); {INSTALL_HINT}") from None
    if not platforms:
        raise BackendUnavailable(f"no OpenCL platform found; {INSTALL_HINT}")
    return platforms


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return "no details"


def _devices(platform) -> list:
    try:
        return platform.get_devices()
    except Exception:  # a platform with no devices raises DEVICE_NOT_FOUND
        return []


@dataclass(frozen=True)
class DeviceInfo:
    """One OpenCL device as `miner devices` shows it."""

    spec: str  # "PLATFORM:DEVICE", the form --device takes
    platform: str
    name: str
    kind: str  # CPU, GPU, ACCELERATOR
    vendor: str
    version: str
    compute_units: int
    max_work_group_size: int
    global_mem_bytes: int
    max_clock_mhz: int


def _kind(cl, type_bits: int) -> str:
    for flag in ("GPU", "CPU", "ACCELERATOR", "CUSTOM"):
        if type_bits & getattr(cl.device_type, flag, 0):
            return flag
    return "OTHER"


def list_devices() -> list[DeviceInfo]:
    """Every device of every OpenCL platform; BackendUnavailable if there is no platform."""
    cl = import_pyopencl()
    found = []
    for p_index, platform in enumerate(get_platforms(cl)):
        for d_index, dev in enumerate(_devices(platform)):
            found.append(
                DeviceInfo(
                    spec=f"{p_index}:{d_index}",
                    platform=platform.name.strip(),
                    name=dev.name.strip(),
                    kind=_kind(cl, dev.type),
                    vendor=dev.vendor.strip(),
                    version=dev.version.strip(),
                    compute_units=int(dev.max_compute_units),
                    max_work_group_size=int(dev.max_work_group_size),
                    global_mem_bytes=int(dev.global_mem_size),
                    max_clock_mhz=int(dev.max_clock_frequency),
                )
            )
    return found


def parse_device_spec(spec: str) -> tuple[int, int]:
    """'P:D' (or just 'P', meaning its device 0) as two indices."""
    parts = spec.strip().split(":")
    try:
        if len(parts) == 1:
            return int(parts[0]), 0
        if len(parts) == 2:
            return int(parts[0]), int(parts[1])
    except ValueError:
        pass
    raise BackendUnavailable(f"bad OpenCL device {spec!r}: expected PLATFORM:DEVICE such as 0:0 (see `miner devices`)")


def select_device(cl, spec: str | None):
    """The device --device names; by default the first GPU, else the first device of any kind."""
    platforms = get_platforms(cl)
    if spec is not None:
        p_index, d_index = parse_device_spec(spec)
        if not 0 <= p_index < len(platforms):
            raise BackendUnavailable(f"no OpenCL platform {p_index} (there are {len(platforms)}; see `miner devices`)")
        devices = _devices(platforms[p_index])
        if not 0 <= d_index < len(devices):
            raise BackendUnavailable(
                f"no OpenCL device {p_index}:{d_index} (platform {p_index} has {len(devices)}; see `miner devices`)"
            )
        return devices[d_index], f"{p_index}:{d_index}"
    every = [(dev, f"{p}:{d}") for p, plat in enumerate(platforms) for d, dev in enumerate(_devices(plat))]
    if not every:
        raise BackendUnavailable(f"OpenCL platforms found but no devices; {INSTALL_HINT}")
    gpus = [pair for pair in every if pair[0].type & cl.device_type.GPU]
    return (gpus or every)[0]


def _lanes_for(cl, device) -> int:
    """Nonces per work item: 1 on GPUs, the preferred int vector width (a full SIMD register) elsewhere."""
    if device.type & cl.device_type.GPU:
        return 1
    preferred = int(getattr(device, "preferred_vector_width_int", 1) or 1)
    return max(w for w in VECTOR_WIDTHS if w <= preferred)


# --- host-side precomputation -------------------------------------------------------------------


def precompute(prepared: Prepared) -> list[int]:
    """The 24 nonce-independent words the kernel reads (layout in sha256d.cl)."""
    k = reference.K
    w0, w1, w2 = prepared.tail_be
    a, b, c, d, e, f, g, h = prepared.midstate
    for t, w in enumerate((w0, w1, w2)):
        t1 = (h + reference.big_sigma1(e) + reference.ch(e, f, g) + k[t] + w) & MASK32
        t2 = (reference.big_sigma0(a) + reference.maj(a, b, c)) & MASK32
        a, b, c, d, e, f, g, h = (t1 + t2) & MASK32, a, b, c, (d + t1) & MASK32, e, f, g
    t1_round3 = (h + reference.big_sigma1(e) + reference.ch(e, f, g) + k[3]) & MASK32
    # W16..W19 with the zero padding words dropped; W4 = 0x80000000, W15 = 640 bits
    w16 = (reference.small_sigma0(w1) + w0) & MASK32
    w17 = (reference.small_sigma1(640) + reference.small_sigma0(w2) + w1) & MASK32
    w18_part = (reference.small_sigma1(w16) + w2) & MASK32
    w19_part = (reference.small_sigma1(w17) + reference.small_sigma0(0x80000000)) & MASK32
    return [*prepared.midstate, a, b, c, d, e, f, g, h, t1_round3, w0, w1, w2, w16, w17, w18_part, w19_part]


class OpenCLBackend(Backend):
    """Scans on one OpenCL device. Calls from several threads are serialised."""

    name = "opencl"

    def __init__(self, device: str | None = None, chunk: int | None = None, vector_width: int | None = None) -> None:
        cl = import_pyopencl()
        import numpy as np

        self._cl = cl
        self._np = np
        self.device, self.spec = select_device(cl, device)
        self.device_name = self.device.name.strip()
        self.kind = _kind(cl, self.device.type)  # GPU, CPU, ACCELERATOR: for the engine's device list
        try:
            self._ctx = cl.Context([self.device])
            self._queue = cl.CommandQueue(self._ctx)
        except cl.Error as exc:
            raise BackendUnavailable(f"cannot open OpenCL device {self.spec} ({self.device_name}): {exc}") from None
        self.vector_width = vector_width or _lanes_for(cl, self.device)
        if self.vector_width not in VECTOR_WIDTHS:
            raise ValueError(f"vector_width must be one of {VECTOR_WIDTHS}")
        self._kernel = self._build()
        wg = int(self._kernel.get_work_group_info(cl.kernel_work_group_info.WORK_GROUP_SIZE, self.device))
        self.local_size = max(1, min(256, wg, int(self.device.max_work_group_size)))
        mf = cl.mem_flags
        self._pre_host = np.zeros(24, dtype=np.uint32)
        self._pre_buf = cl.Buffer(self._ctx, mf.READ_ONLY, self._pre_host.nbytes)
        self._zero = np.zeros(1, dtype=np.uint32)
        self._count_host = np.zeros(1, dtype=np.uint32)
        self._capacity = 0
        self._out_buf = None
        self._ensure_capacity(INITIAL_CAPACITY)
        self._lock = threading.Lock()
        self.launch_size = MAX_CHUNK
        self.default_chunk = chunk if chunk is not None else self._tune()
        self.launch_size = max(self.local_size, min(MAX_CHUNK, self.default_chunk))

    # --- set-up ----------------------------------------------------------------------------------

    def _build(self):
        cl = self._cl
        try:
            source = KERNEL_PATH.read_text()
        except OSError as exc:
            raise BackendUnavailable(f"OpenCL kernel source missing: {exc}") from None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pyopencl warns on any non-empty build log
                program = cl.Program(self._ctx, source).build(options=[f"-DVW={self.vector_width}"])
        except cl.Error as exc:
            raise BackendUnavailable(
                f"OpenCL kernel build failed on {self.spec} ({self.device_name}): {_build_error(exc)}"
            ) from None
        return program.sha256d_scan

    def _ensure_capacity(self, capacity: int) -> None:
        if capacity <= self._capacity:
            return
        self._out_buf = self._cl.Buffer(self._ctx, self._cl.mem_flags.READ_WRITE, 4 * (capacity + 1))
        self._capacity = capacity

    def _tune(self) -> int:
        """Nonces per call that take about CALL_SECONDS on this device, a power of two."""
        prepared = self.prepare(bytes(76), 0)
        count = 1 << 12
        self.scan(prepared, 0, count)  # first launch pays for lazy set-up in the driver
        elapsed = 0.0
        while count < MAX_CHUNK:
            t0 = time.perf_counter()
            self.scan(prepared, 0, count)
            elapsed = time.perf_counter() - t0
            if elapsed >= 0.02:
                break
            count <<= 2
        per_call = int(count / max(elapsed, 1e-6) * CALL_SECONDS)
        chunk = 1 << (per_call.bit_length() - 1) if per_call > 0 else MIN_CHUNK
        return min(MAX_CHUNK, max(MIN_CHUNK, chunk))

    def describe(self) -> str:
        lanes = f", {self.vector_width} lanes" if self.vector_width > 1 else ""
        return f"opencl {self.spec} ({self.device_name}{lanes})"

    # --- scanning --------------------------------------------------------------------------------

    def scan(self, prepared: Prepared, start: int, count: int) -> list[int]:
        check_range(start, count)
        if count == 0:
            return []
        if prepared.target_top >= MASK32:  # every nonce passes the one-word filter
            return list(range(start, start + count))
        pre = precompute(prepared)
        found: list[int] = []
        with self._lock:
            self._pre_host[:] = pre
            self._cl.enqueue_copy(self._queue, self._pre_buf, self._pre_host)
            pos, end = start, start + count
            while pos < end:
                seg = min(SEGMENT_LIMIT, end - pos)
                found.extend(self._scan_segment(prepared.target_top, pos, seg))
                pos += seg
        found.sort()
        return found

    def _scan_segment(self, target_top: int, start: int, count: int) -> list[int]:
        """Candidates of one range; rescans with a larger buffer, or in halves, on overflow."""
        n = self._run(target_top, start, count)
        if n > self._capacity:
            if n <= MAX_CAPACITY:
                self._ensure_capacity(1 << (n - 1).bit_length())
                n = self._run(target_top, start, count)
            else:
                half = count // 2
                return self._scan_segment(target_top, start, half) + self._scan_segment(
                    target_top, start + half, count - half
                )
        if n == 0:
            return []
        got = self._np.empty(n, dtype=self._np.uint32)
        self._cl.enqueue_copy(self._queue, got, self._out_buf, src_offset=4, is_blocking=True)
        return got.tolist()

    def _run(self, target_top: int, start: int, count: int) -> int:
        """Launch the kernel over [start, start+count) and return the candidate count."""
        cl, np = self._cl, self._np
        cl.enqueue_copy(self._queue, self._out_buf, self._zero)
        pos, end = start, start + count
        while pos < end:
            n = min(self.launch_size, end - pos)
            items = -(-n // self.vector_width)
            global_size = -(-items // self.local_size) * self.local_size
            self._kernel(
                self._queue,
                (global_size,),
                (self.local_size,),
                self._pre_buf,
                np.uint32(pos),
                np.uint32(n),
                np.uint32(target_top),
                self._out_buf,
                np.uint32(self._capacity),
            )
            pos += n
        cl.enqueue_copy(self._queue, self._count_host, self._out_buf, is_blocking=True)
        return int(self._count_host[0])


def _build_error(exc: Exception) -> str:
    """The first useful line of a build failure (the compiler's error, not pyopencl's banner)."""
    text = str(exc)
    for line in text.splitlines():
        if "error" in line.lower() and "clbuildprogram" not in line.lower():
            return line.strip()
    return _first_line(text)
