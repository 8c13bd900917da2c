"""The CPU kernel is chosen by measurement, cached on disk, and built once; the benchmark scripts' inputs."""

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from kernels import Backend, BackendUnavailable, chooser, get_backend
from kernels.chooser import KernelChoice
from kernels.cpu import KERNEL_CHOICES, CpuBackend, host_cpu_features
from miner.cli import main
from miner.engine import Engine

REPO = Path(__file__).resolve().parent.parent
BENCHMARKS = REPO / "benchmarks"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private, empty kernel-choice cache, and no verdict remembered in this process."""
    monkeypatch.setenv(chooser.CACHE_ENV, str(tmp_path / "cache"))
    chooser.forget()
    yield tmp_path / "cache"
    chooser.forget()


def fake_rates(monkeypatch, rates: dict[str, float], calls: list | None = None) -> None:
    """Every timing slice of kernel ``k`` measures ``rates[k]`` (1.0 for kernels not named)."""

    def time_slice(backend, threads, seconds, headers):
        if calls is not None:
            calls.append(backend.choice)
        return rates.get(backend.choice, 1.0)

    monkeypatch.setattr(chooser, "_time_slice", time_slice)


def brute_force(header76: bytes, target_top: int, start: int, count: int) -> list[int]:
    hits = []
    for nonce in range(start, start + count):
        digest = hashlib.sha256(hashlib.sha256(header76 + nonce.to_bytes(4, "little")).digest()).digest()
        if int.from_bytes(digest[28:32], "little") <= target_top:
            hits.append(nonce)
    return hits


class FakeKernel(Backend):
    """A correct (or, with ``wrong``, a subtly wrong) scanner standing in for a compiled kernel."""

    name = "cpu"

    def __init__(self, choice: str, wrong: bool = False) -> None:
        self.choice, self.wrong, self.auto = choice, wrong, False

    def scan(self, prepared, start, count):
        hits = brute_force(prepared.header76, prepared.target_top, start, count)
        return hits[1:] if self.wrong else hits

    def describe(self) -> str:
        return f"fake {self.choice}"


def fakes(**special):
    """A factory: FakeKernel for every choice, or what ``special[choice]`` says (an exception to raise, 'wrong')."""

    def factory(choice: str) -> Backend:
        how = special.get(f"k{choice}")
        if isinstance(how, Exception):
            raise how
        return FakeKernel(choice, wrong=how == "wrong")

    return factory


def test_the_fastest_kernel_wins_and_later_starts_read_it_from_disk(cache, monkeypatch):
    fake_rates(monkeypatch, {"8": 30e6, "sha": 20e6, "16": 10e6})
    choice = chooser.choose(factory=fakes())
    assert choice.winner == "8" and not choice.cached
    assert set(choice.rates) == set(KERNEL_CHOICES)
    assert choice.runner_up == "sha" and choice.margin("sha") == pytest.approx(1.5)
    record = json.loads(Path(choice.path).read_text())
    assert Path(choice.path).parent == cache
    assert record["winner"] == "8" and record["key"] == chooser.machine_key()

    chooser.forget()
    monkeypatch.setattr(chooser, "measure", lambda *a, **k: pytest.fail("a cached start must not time anything"))
    again = chooser.choose()
    assert again.cached and again.winner == "8" and again.rates == choice.rates
    assert chooser.cached_choice().winner == "8"


@pytest.mark.parametrize("field", ["cpu", "features", "numba", "kernel", "sources", "choices"])
def test_a_change_to_anything_the_verdict_depends_on_times_again(cache, monkeypatch, field):
    fake_rates(monkeypatch, {"8": 30e6})
    chooser.choose(factory=fakes())
    chooser.forget()
    key = chooser.machine_key()
    changed = {**key, field: ["changed"] if isinstance(key[field], list) else "changed"}
    if field == "choices":
        changed["choices"] = [*key["choices"], "new"]
    monkeypatch.setattr(chooser, "machine_key", lambda: changed)
    calls: list[str] = []
    fake_rates(monkeypatch, {"16": 30e6}, calls)
    choice = chooser.choose(factory=fakes(knew=BackendUnavailable("not built")))
    assert calls and not choice.cached and choice.winner == "16"
    assert chooser.cache_path(changed) != chooser.cache_path(key)


@pytest.mark.parametrize(
    "content", ["not json", "{}", '{"key": {}, "winner": "8", "rates": {"8": 1}}', "\x00\xff binary"]
)
def test_a_damaged_or_foreign_cache_file_is_timed_again_and_rewritten(cache, monkeypatch, content):
    path = chooser.cache_path()
    path.parent.mkdir(parents=True)
    path.write_text(content, errors="surrogateescape")
    fake_rates(monkeypatch, {"4": 30e6})
    choice = chooser.choose(factory=fakes())
    assert choice.winner == "4" and not choice.cached
    assert json.loads(path.read_text())["winner"] == "4"


def test_a_cached_winner_outside_the_kernel_list_is_not_trusted(cache, monkeypatch):
    fake_rates(monkeypatch, {"8": 30e6})
    path = Path(chooser.choose(factory=fakes()).path)
    record = json.loads(path.read_text())
    record["winner"], record["rates"] = "gone", {"gone": 1e9}
    path.write_text(json.dumps(record))
    chooser.forget()
    assert chooser.cached_choice() is None
    assert chooser.choose(factory=fakes()).winner == "8"


def test_an_unwritable_cache_still_chooses(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(chooser.CACHE_ENV, str(blocker / "sub"))
    chooser.forget()
    try:
        fake_rates(monkeypatch, {"16": 30e6})
        choice = chooser.choose(factory=fakes())
        assert choice.winner == "16" and choice.path is None
    finally:
        chooser.forget()


def test_kernels_that_cannot_build_or_get_hits_wrong_never_win(cache, monkeypatch):
    fake_rates(monkeypatch, {"16": 90e6, "8": 80e6, "4": 70e6, "sha": 10e6})
    factory = fakes(k16="wrong", k8=BackendUnavailable("no such unit"), k4=RuntimeError("LLVM said no"))
    choice = chooser.choose(factory=factory)
    assert choice.winner not in ("16", "8", "4")
    assert "hashlib check" in choice.unavailable["16"]
    assert choice.unavailable["8"] == "no such unit"
    assert "RuntimeError: LLVM said no" in choice.unavailable["4"]
    assert not {"16", "8", "4"} & set(choice.rates)


def test_no_kernel_at_all_is_one_clear_error(cache, monkeypatch):
    fake_rates(monkeypatch, {})
    factory = fakes(**{f"k{c}": BackendUnavailable(f"{c} missing") for c in KERNEL_CHOICES})
    with pytest.raises(BackendUnavailable, match="no CPU kernel runs here"):
        chooser.choose(factory=factory)


def test_close_contenders_are_timed_again_and_the_best_slice_counts(cache, monkeypatch):
    slices = {"8": iter([10.0, 10.0, 10.0, 12.0, 11.0]), "16": iter([9.8, 9.9, 9.7, 9.0, 9.0])}
    monkeypatch.setattr(chooser, "_time_slice", lambda b, *_: next(slices[b.choice]) if b.choice in slices else 1.0)
    rates, unavailable, _ = chooser.measure(["8", "16", "4"], threads=1, factory=fakes())
    assert rates == {"8": 12.0, "16": 9.9, "4": 1.0} and not unavailable
    with pytest.raises(StopIteration):  # 8 and 16 were within 5%: two more slices each, no more
        next(slices["8"])


def test_the_summary_names_the_runner_up_and_the_feature_flag_default():
    choice = KernelChoice(
        winner="sha",
        rates={"sha": 30e6, "16": 20e6, "8": 10e6},
        labels={"sha": "cpu (numba, SHA-NI x4)"},
        unavailable={},
        feature_default="8",
        threads=2,
        seconds=1.0,
        measured_at="2026-01-01T00:00:00+00:00",
    )
    assert choice.summary() == "sha (cpu (numba, SHA-NI x4)) timed fastest, 1.50x the runner-up 16, " + (
        "3.00x the feature-flag default 8"
    )
    as_json = choice.to_json()
    assert as_json["vs_runner_up"] == pytest.approx(1.5) and as_json["vs_feature_default"] == pytest.approx(3.0)
    alone = KernelChoice("8", {"8": 1.0}, {}, {}, "8", 1, 0.1, "")
    assert alone.runner_up is None and alone.summary() == "8 (8) timed fastest, the feature-flag default too"


def test_every_real_kernel_is_checked_and_timed_or_says_why_not():
    rates, unavailable, labels = chooser.measure(threads=1, slice_seconds=0.01, rounds=1)
    assert set(rates) | set(unavailable) == set(KERNEL_CHOICES)
    assert all(rate > 0 for rate in rates.values())
    assert "4" in rates and "8" in rates and "16" in rates  # LLVM lowers any vector width on any CPU
    assert ("sha" in rates) == ("sha" in host_cpu_features())
    assert all(labels[choice].startswith("cpu (numba") for choice in rates)


def test_auto_builds_the_chosen_kernel_everywhere_a_backend_is_made(cache, monkeypatch):
    fake_rates(monkeypatch, {"4": 30e6})
    chooser.choose(factory=fakes())
    chooser.forget()
    from miner.cli.common import make_backend

    for backend in (
        CpuBackend(),
        CpuBackend("auto"),
        get_backend("cpu"),
        get_backend("cpu", lanes="auto"),
        make_backend("cpu"),
        make_backend("cpu", lanes="auto"),
        Engine.for_backend("cpu", threads=1).devices[0].backend,
    ):
        assert backend.choice == "4" and backend.auto and backend.lanes == 4
    forced = CpuBackend("8")
    assert forced.choice == "8" and not forced.auto


def test_a_cached_winner_that_no_longer_builds_is_timed_again(cache, monkeypatch):
    fake_rates(monkeypatch, {"16": 30e6, "4": 20e6})
    chooser.choose(factory=fakes())
    chooser.forget()
    real_build = CpuBackend._build

    def build(self, choice):
        if choice == "16":
            raise BackendUnavailable("16 lanes went away")
        real_build(self, choice)

    monkeypatch.setattr(CpuBackend, "_build", build)
    backend = CpuBackend()
    assert backend.choice == "4" and backend.auto
    assert chooser.cached_choice().winner == "4"


def test_a_cached_start_builds_only_the_winner(cache, monkeypatch):
    fake_rates(monkeypatch, {"8": 30e6})
    chooser.choose(factory=fakes())
    code = (
        "from kernels.cpu import CpuBackend, scan_range\n"
        "from kernels import chooser\n"
        "b = CpuBackend()\n"
        "print(b.choice, len(scan_range.overloads), chooser.choose().cached)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=dict(os.environ), check=True
    )
    assert out.stdout.split() == ["8", "1", "True"]


def test_devices_names_the_chosen_kernel_and_its_margins(cache, monkeypatch):
    fake_rates(monkeypatch, {"sha": 40e6, "16": 20e6, "8": 10e6, "4": 5e6})
    chooser.choose(factory=fakes(ksha=BackendUnavailable("no SHA-NI")))
    listing = CliRunner().invoke(main, ["devices", "--json"])
    assert listing.exit_code == 0, listing.output
    kernel = json.loads(listing.output)["cpu"]["kernel"]
    assert kernel["winner"] == "16" and kernel["runner_up"] == "8" and kernel["vs_runner_up"] == pytest.approx(2.0)
    assert kernel["unavailable"] == {"sha": "no SHA-NI"}
    text = CliRunner().invoke(main, ["devices"]).output
    line = next(line for line in text.splitlines() if "--lanes auto" in line)
    assert "16 (fake 16) timed fastest, 2.00x the runner-up 8" in line and str(chooser.cache_path()) in line


# --- the benchmark scripts ------------------------------------------------------------------------


def load_script(path: Path):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location(f"bench_script_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))


SCRIPTS = sorted(p for p in BENCHMARKS.glob("*.py") if p.name != "argtypes.py")


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_every_float_option_of_every_benchmark_refuses_non_finite_numbers(path):
    parser = load_script(path).build_parser()
    parser.parse_args([])  # the defaults are valid
    numeric = [a for a in parser._actions if a.type is not None and a.type not in (int, str)]
    assert all(a.type is not float for a in parser._actions), "a bare type=float lets nan and inf through"
    for action in numeric:
        option = action.option_strings[0]
        for bad in ("nan", "inf", "-inf", "1e400", "zz"):
            with pytest.raises(SystemExit) as exited:
                parser.parse_args([option, bad])
            assert exited.value.code == 2, (option, bad)
        assert parser.parse_args([option, repr(action.default)]).__dict__[action.dest] == action.default


def test_the_script_sweep_covers_the_float_options():
    names = {p.stem for p in SCRIPTS}
    assert {"bench_throughput", "bench_peers", "bench_opencl", "bench_pool_load", "soak"} <= names
    argtypes = load_script(BENCHMARKS / "argtypes.py")
    assert argtypes.non_negative_float("0") == 0.0
    with pytest.raises(Exception, match="finite number > 0"):
        argtypes.positive_float("0")


SAMPLE_CPUMINER = """
         **********  cpuminer-opt 26.1  **********
[2026-12-02 16:17:06] 2 of 2 miner threads started using 'sha256d' algorithm
[2026-12-02 16:17:06] Thread 0, CPU 0: 750.00 kh/s
[2026-12-02 16:17:06] Thread 1, CPU 1: 3600.00 kh/s
[2026-12-02 16:17:07] \x1b[01;37mThread 0, CPU 0: 17.20 Mh/s\x1b[0m
[2026-12-02 16:17:07] Thread 1, CPU 1: 9366.24 kh/s
[2026-12-02 16:17:08] Total: 20.58 MH/s, Temp: 0C, Freq: 0.000/0.000 GHz
[2026-12-02 16:17:08] Thread 0, CPU 0: 16.80 Mh/s
[2026-12-02 16:17:08] Thread 1, CPU -1: 10.63 Mh/s
"""


def test_cpuminer_output_is_parsed_and_calibration_scans_are_dropped():
    peers = load_script(BENCHMARKS / "bench_peers.py")
    lines = SAMPLE_CPUMINER.strip().splitlines()
    scans = [(float(i), *scan) for i, line in enumerate(lines) if (scan := peers.parse_scan_line(line))]
    assert [(t, rate) for _, t, rate in scans] == [(0, 750e3), (1, 3600e3), (0, 17.2e6), (1, 9366.24e3)] + [
        (0, 16.8e6),
        (1, 10.63e6),
    ]
    assert [peers.parse_total_line(line) for line in lines if "Total" in line] == [20.58e6]
    rate = peers.round_rate(scans, 2, opened=-1.0, closed=100.0)
    assert rate == pytest.approx((17.2e6 + 16.8e6) / 2 + (9366.24e3 + 10.63e6) / 2)
    assert peers.round_rate(scans, 3, -1.0, 100.0) is None  # a thread never reported in the window
    assert peers.round_rate(scans, 2, opened=7.5, closed=100.0) is None  # only thread 1 has a scan inside
    assert peers.cpuminer_command("cpuminer", 1, pin=False)[-2:] == ["--cpu-affinity", "0"]


def test_bench_peers_without_cpuminer_is_skipped_in_one_line(tmp_path, capsys, monkeypatch):
    peers = load_script(BENCHMARKS / "bench_peers.py")
    monkeypatch.delenv("CPUMINER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert peers.main(["--cpuminer", str(tmp_path / "missing")]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("bench_peers: skipped: cpuminer-opt not found")
    assert peers.main([]) == 0
    assert "no cpuminer on PATH" in capsys.readouterr().out


STAND_IN = """#!{python}
import signal, sys, time
print("     **********  cpuminer-opt 99.1  ********** ", flush=True)
if "--version" in sys.argv:
    sys.exit(0)
threads = int(sys.argv[sys.argv.index("-t") + 1])
signal.signal(signal.SIGINT, lambda *a: sys.exit(0))
for t in range(threads):
    print(f"[2026-12-02 16:17:06] Thread {{t}}, CPU {{t}}: 750.00 kh/s", flush=True)
while True:
    time.sleep(0.05)
    for t in range(threads):
        print(f"[2026-12-02 16:17:07] Thread {{t}}, CPU {{t}}: {{12 + t}}.00 Mh/s", flush=True)
"""


def test_bench_peers_alternates_with_a_stand_in_cpuminer(tmp_path, capsys, cache, monkeypatch):
    fake_rates(monkeypatch, {"4": 30e6})
    chooser.choose(factory=fakes())
    stand_in = tmp_path / "cpuminer"
    stand_in.write_text(STAND_IN.format(python=sys.executable))
    stand_in.chmod(0o755)
    monkeypatch.setenv("CPUMINER", str(stand_in))
    peers = load_script(BENCHMARKS / "bench_peers.py")
    assert peers.main(["--rounds", "2", "--seconds", "0.4", "--threads", "1,2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["cpuminer"] == {"path": str(stand_in), "version": "99.1"}
    assert report["ours"]["kernel"] == "4" and report["ours"]["auto"]
    assert report["quick_check"] and report["cpu"] == chooser.cpu_model()
    one, two = report["results"]
    assert one["threads"] == 1 and one["peer"]["median"] == pytest.approx(12e6)
    assert two["threads"] == 2 and two["peer"]["median"] == pytest.approx(25e6)
    for result in (one, two):
        assert len(result["ours"]["runs"]) == 2 and result["ours"]["median"] > 0
        assert result["ratio"] == pytest.approx(result["ours"]["median"] / result["peer"]["median"])
