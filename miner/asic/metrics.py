"""Prometheus metrics, in the format farms already graph: this miner's own (``miner mine --metrics-listen``)
and a fleet's, from its latest sweep (``miner farm exporter``).

``prometheus_client`` writes the exposition format; it is imported only when metrics are asked for, so the
rest of the package runs without it. Each collector builds its series from current state at scrape time,
so a rig that leaves the hosts file, or a device that goes away, leaves no stale series behind.

Names follow Prometheus practice (units in the name, ``_total`` on counters) with one prefix each:
``sha256d_`` for this miner, ``asic_`` for fleet rigs, labelled ``host`` and ``model`` as the fleet
exporters farms run do (``instance`` is Prometheus's own label, set from the scrape target).
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from miner import __version__
from miner.asic.models import model_for
from stratum.client import redact_url

STATES = ("up", "paused", "faulty", "down")


class MetricsUnavailable(RuntimeError):
    """prometheus_client is not installed."""


def _client():
    try:
        import prometheus_client
        from prometheus_client import core
    except ImportError:
        raise MetricsUnavailable(
            "Prometheus metrics need the prometheus_client package (pip install prometheus_client)"
        ) from None
    return prometheus_client, core


# --- this miner ---------------------------------------------------------------------------------------------


class MinerCollector:
    """This miner's hash rate per device, shares by result, hardware errors, pool state and kernel, read from
    the running miner (anything with ``stats``, ``backend_name`` and ``current_pool()``, as the API reads)."""

    def __init__(self, control) -> None:
        self.control = control

    def collect(self):
        _, core = _client()
        control, stats = self.control, self.control.stats
        info = core.InfoMetricFamily("sha256d_miner", "this miner: its version and the kernel it runs")
        info.add_metric([], {"version": __version__, "kernel": str(control.backend_name)})
        yield info
        rate = core.GaugeMetricFamily(
            "sha256d_hashrate_hashes_per_second", "hash rate per device over a window", labels=["device", "window"]
        )
        hashes = core.CounterMetricFamily("sha256d_hashes", "hashes done per device", labels=["device"])
        hw = core.CounterMetricFamily(
            "sha256d_hardware_errors", "candidates the host re-check refused, per device", labels=["device"]
        )
        enabled = core.GaugeMetricFamily("sha256d_device_enabled", "1 while a device hashes", labels=["device"])
        for name, dev in list(stats.devices.items()):
            for window in ("5s", "1m", "15m"):
                rate.add_metric([name, window], stats.device_hashrate(name, window))
            hashes.add_metric([name], float(dev.meter.total))
            hw.add_metric([name], float(dev.hw_errors))
            enabled.add_metric([name], 1.0 if dev.enabled else 0.0)
        yield from (rate, hashes, hw, enabled)
        shares = core.CounterMetricFamily("sha256d_shares", "shares by pool and result", labels=["pool", "result"])
        diff = core.CounterMetricFamily(
            "sha256d_share_difficulty", "difficulty of shares by pool and result", labels=["pool", "result"]
        )
        up = core.GaugeMetricFamily("sha256d_pool_up", "1 while the pool's session is up", labels=["pool", "url"])
        active = core.GaugeMetricFamily("sha256d_pool_active", "1 for the pool being mined", labels=["pool"])
        difficulty = core.GaugeMetricFamily("sha256d_pool_difficulty", "the pool's share difficulty", labels=["pool"])
        current = control.current_pool()
        for index, pool in enumerate(list(stats.pools)):
            label = str(index)
            for result in ("accepted", "rejected", "stale"):
                shares.add_metric([label, result], float(getattr(pool.shares, result)))
                diff.add_metric([label, result], float(getattr(pool.shares, f"diff_{result}")))
            up.add_metric([label, redact_url(pool.url)], 1.0 if pool.enabled and pool.status == "Alive" else 0.0)
            active.add_metric([label], 1.0 if index == current and pool.status == "Alive" else 0.0)
            difficulty.add_metric([label], float(pool.difficulty))
        yield from (shares, diff, up, active, difficulty)
        blocks = core.CounterMetricFamily("sha256d_blocks_found", "blocks found")
        blocks.add_metric([], float(stats.found_blocks))
        yield blocks
        best = core.GaugeMetricFamily("sha256d_best_share_difficulty", "the best share's own difficulty")
        best.add_metric([], float(stats.best_share))
        yield best


# --- a fleet ------------------------------------------------------------------------------------------------


class FleetCollector:
    """Per-rig series from the latest sweep (see miner.asic.fleet): hash rate, temperatures, fans, power,
    state and share counters, labelled by host and model."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.rows: list = []
        self.sweep_seconds: float | None = None
        self.swept_at: float | None = None
        self.sweeps = 0
        self.curtail: dict = {}

    def update(self, rows: list, seconds: float, curtail: dict | None = None) -> None:
        """The latest sweep, and the curtailment controller's state file (``farm curtail --state``), if any."""
        with self._lock:
            self.rows, self.sweep_seconds, self.swept_at = list(rows), seconds, time.time()
            self.curtail = curtail or {}
            self.sweeps += 1

    def collect(self):
        _, core = _client()
        with self._lock:
            rows, seconds, swept_at, sweeps = self.rows, self.sweep_seconds, self.swept_at, self.sweeps
            curtail = self.curtail
        base = ["host", "model"]

        def family(kind, name: str, doc: str, extra: tuple[str, ...] = ()):
            cls = core.CounterMetricFamily if kind == "counter" else core.GaugeMetricFamily
            return cls(name, doc, labels=[*base, *extra])

        up = family("gauge", "asic_up", "1 when the rig answered the last sweep")
        state = family("gauge", "asic_state", "1 for the rig's state in the last sweep", ("state",))
        info = core.InfoMetricFamily("asic_rig", "what the rig says it is", labels=base)
        rate = family("gauge", "asic_hashrate_ghs", "hash rate, GH/s (the firmware's short window)")
        power = family("gauge", "asic_power_watts", "power drawn: reported by the firmware or estimated", ("source",))
        chip = family("gauge", "asic_chip_temperature_celsius", "the hottest chip")
        board = family("gauge", "asic_board_temperature_celsius", "the hottest board sensor")
        fan = family("gauge", "asic_fan_rpm", "fan speed", ("fan",))
        boards = family("gauge", "asic_hashboards", "hash boards the firmware reports")
        problems = family("gauge", "asic_problems", "problems seen in the last sweep, by kind", ("problem",))
        accepted = family("counter", "asic_shares_accepted", "shares the pool accepted (the rig's own count)")
        rejected = family("counter", "asic_shares_rejected", "shares the pool rejected (the rig's own count)")
        hw = family("counter", "asic_hardware_errors", "hardware errors (the rig's own count)")
        latency = family("gauge", "asic_scrape_duration_seconds", "how long the rig took to answer")
        nominal = family("gauge", "asic_nominal_hashrate_ghs", "the model's nominal hash rate, GH/s")
        expected = family("gauge", "asic_expected_hashrate_ghs", "the hash rate at the power target commanded")
        commanded = family("gauge", "asic_power_commanded_watts", "the power target the controller commanded")
        measured = family("gauge", "asic_power_measured_watts", "the power the rig draws, as the sweep read it")
        reason = family("gauge", "asic_curtail_reason", "1 for the reason of the rig's state", ("reason",))
        compliant = family("gauge", "asic_command_compliant", "1 when the last command's read-back matched")
        ack = family("gauge", "asic_command_latency_seconds", "how long the rig took to acknowledge a command")
        steered = curtail.get("rigs", {}) if isinstance(curtail.get("rigs"), dict) else {}
        for r in rows:
            labels = [f"{r.host}:{r.port}", r.model or r.miner_type or ""]
            up.add_metric(labels, 1.0 if r.reachable else 0.0)
            for s in STATES:
                state.add_metric([*labels, s], 1.0 if r.state == s else 0.0)
            if not r.reachable:
                continue
            info.add_metric(labels, {"family": r.family, "firmware": r.miner_type, "pool": r.pool})
            if r.ghs is not None:
                rate.add_metric(labels, r.ghs)
            if r.power_w is not None:
                power.add_metric([*labels, "estimated" if r.power_estimated else "reported"], r.power_w)
            if r.chip_temp is not None:
                chip.add_metric(labels, r.chip_temp)
            if r.board_temp is not None:
                board.add_metric(labels, r.board_temp)
            for n, rpm in enumerate(r.fans):
                fan.add_metric([*labels, str(n)], float(rpm))
            if r.boards is not None:
                boards.add_metric(labels, float(r.boards))
            for kind in sorted({p.split(" ")[0] for p in r.problems}):
                problems.add_metric([*labels, kind], 1.0)
            for metric, value in ((accepted, r.accepted), (rejected, r.rejected), (hw, r.hw_errors)):
                if value is not None:
                    metric.add_metric(labels, float(value))
            if r.latency_s is not None:
                latency.add_metric(labels, r.latency_s)
            model = model_for(r.model, r.family) if r.model else None
            if model is not None:
                nominal.add_metric(labels, model.ths * 1e3)
            if r.power_w is not None:
                measured.add_metric(labels, r.power_w)
            own = steered.get(labels[0])
            if isinstance(own, dict):
                if own.get("commanded_w") is not None:
                    commanded.add_metric(labels, float(own["commanded_w"]))
                if own.get("expected_ths") is not None:
                    expected.add_metric(labels, float(own["expected_ths"]) * 1e3)
                reason.add_metric([*labels, str(own.get("reason", "running"))], 1.0)
                compliant.add_metric(labels, 1.0 if own.get("compliant", True) else 0.0)
                if own.get("latency_s") is not None:
                    ack.add_metric(labels, float(own["latency_s"]))
        yield from (up, state, info, rate, power, chip, board, fan, boards, problems, accepted, rejected, hw, latency)
        yield from (nominal, expected, commanded, measured, reason, compliant, ack)
        site = curtail.get("site", {}) if isinstance(curtail.get("site"), dict) else {}
        price = core.GaugeMetricFamily("asic_site_price_per_kwh", "the power price of the current slot")
        cap = core.GaugeMetricFamily("asic_site_power_cap_watts", "the site's power cap in the current slot")
        drawn = core.GaugeMetricFamily("asic_site_power_watts", "the site's draw: every rig's measured watts")
        if site.get("price_per_kwh") is not None:
            price.add_metric([], float(site["price_per_kwh"]))
        if site.get("cap_kw") is not None:
            cap.add_metric([], float(site["cap_kw"]) * 1000)
        drawn.add_metric([], float(sum(r.power_w or 0.0 for r in rows if r.reachable)))
        yield from (price, cap, drawn)
        sweep = core.GaugeMetricFamily("asic_sweep_duration_seconds", "how long the last sweep of the fleet took")
        if seconds is not None:
            sweep.add_metric([], seconds)
        yield sweep
        count = core.GaugeMetricFamily("asic_sweep_rigs", "rigs in each state in the last sweep", labels=["state"])
        for s in STATES:
            count.add_metric([s], float(sum(1 for r in rows if r.state == s)))
        yield count
        done = core.CounterMetricFamily("asic_sweeps", "sweeps of the fleet done")
        done.add_metric([], float(sweeps))
        yield done
        if swept_at is not None:
            last = core.GaugeMetricFamily("asic_last_sweep_timestamp_seconds", "when the last sweep ended")
            last.add_metric([], swept_at)
            yield last


# --- serving ------------------------------------------------------------------------------------------------


class MetricsServer:
    """``/metrics`` over HTTP on a background thread, from the collectors given."""

    def __init__(self, collectors, host: str = "127.0.0.1", port: int = 9100) -> None:
        prometheus_client, _ = _client()
        self.registry = prometheus_client.CollectorRegistry()
        for collector in collectors:
            self.registry.register(collector)
        self.host, self.port = host, port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.scrapes = 0

    def render(self) -> bytes:
        prometheus_client, _ = _client()
        return prometheus_client.generate_latest(self.registry)

    def start(self) -> None:
        """Bind and serve; OSError if the address is taken."""
        prometheus_client, _ = _client()
        outer = self
        content_type = prometheus_client.CONTENT_TYPE_LATEST

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if self.path.split("?", 1)[0] not in ("/metrics", "/"):
                    self.send_error(404, "only /metrics here")
                    return
                body = outer.render()
                outer.scrapes += 1
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format, *args) -> None:  # scrapes every few seconds: no log line each
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> MetricsServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def serve_miner_metrics(control, host: str, port: int) -> MetricsServer:
    """What ``miner mine --metrics-listen`` starts: this miner's metrics on ``host:port``."""
    server = MetricsServer([MinerCollector(control)], host, port)
    server.start()
    return server
