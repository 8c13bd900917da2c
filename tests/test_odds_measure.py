"""`miner explain odds --measure`: real hashing held to the theory of a memoryless lottery.

The bounds are ones a correct kernel passes at any speed: each count within 5 sigma of N x 2^-k
(where the normal law is fair, a Poisson tail of one in a million where it is not), and the gaps'
Kolmogorov-Smirnov p-value above 0.001. A kernel that missed hits, invented them or found them in
clumps fails them.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from click.testing import CliRunner
from commands import MINER, backend

from miner import teach
from miner.block import DIFF1_TARGET, hash_to_int, leading_zero_bits, sha256d
from miner.cli.explain import explain

needs_numba = pytest.mark.skipif(backend() != "cpu", reason="the numba CPU kernel does not run here")


def poisson_tail(mean: float, at_least: int) -> float:
    """P(X >= at_least) for X ~ Poisson(mean)."""
    term, below = math.exp(-mean), 0.0
    for k in range(at_least):
        below += term
        term *= mean / (k + 1)
    return max(0.0, 1.0 - below)


def hold_to_theory(d: dict) -> None:
    n = d["hashes"]
    rows = d["counts"]
    assert d["hardware_errors"] == 0
    assert rows[0]["zero_bits"] == d["target_zero_bits"] and rows[0]["hits"] == d["hits"]
    assert [r["zero_bits"] for r in rows] == list(range(rows[0]["zero_bits"], rows[-1]["zero_bits"] + 1))
    assert rows[-1]["hits"] >= 1  # the table runs as far as there are hits
    target = DIFF1_TARGET // 2 ** (d["target_zero_bits"] - 32)
    for row in rows:
        k = row["zero_bits"]
        p = min(target + 1, 2 ** (256 - k)) / 2**256
        if k > d["target_zero_bits"]:
            assert p == 2.0**-k
        expected, sigma = n * p, math.sqrt(n * p * (1 - p))
        assert row["expected"] == pytest.approx(expected) and row["sigma"] == pytest.approx(sigma)
        if expected >= 10:
            assert abs(row["hits"] - expected) <= 5 * sigma, row
        else:
            assert poisson_tail(expected, row["hits"]) >= 1e-6, row
    g = d["gaps"]
    assert g["count"] == d["hits"] - 1
    mean = 2**32 * d["difficulty"]
    assert g["mean_hashes_theory"] == pytest.approx(mean, rel=1e-4)
    assert g["mean_seconds_theory"] == pytest.approx(mean / d["hashrate"], rel=1e-4)
    assert 0 < g["ks_statistic"] < 1
    assert g["ks_p_value"] > 0.001, g
    assert g["mean_hashes"] == pytest.approx(mean, rel=5 / math.sqrt(g["count"]))


@needs_numba
def test_measure_5_seconds_as_json_matches_the_theory() -> None:
    result = subprocess.run(
        [*MINER, "explain", "odds", "--measure", "5", "--json"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    d = json.loads(result.stdout)
    assert d["hits"] >= 1000, "a share difficulty low enough for thousands of hits"
    assert d["seconds"] >= 5 or d["hashes"] == 2**32
    hold_to_theory(d)


@needs_numba
def test_every_hit_is_a_real_hash_of_the_fixed_work_unit() -> None:
    d = teach.measure_odds(1.0, threads=1)
    hold_to_theory(d)
    header = bytes.fromhex(d["header_hex"])
    target = int(d["target_hex"], 16)
    assert d["nonces"] == sorted(set(d["nonces"])) and len(d["nonces"]) == d["hits"]
    assert d["nonces"][-1] < d["hashes"]
    zeros = []
    for nonce in d["nonces"]:
        value = hash_to_int(sha256d(header[:76] + nonce.to_bytes(4, "little")))
        assert value <= target
        zeros.append(leading_zero_bits(value))
    for row in d["counts"]:
        assert row["hits"] == sum(z >= row["zero_bits"] for z in zeros)
    assert d["gaps"]["gaps"] == [b - a for a, b in zip(d["nonces"], d["nonces"][1:], strict=False)]


@needs_numba
def test_text_and_plot(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    plot = tmp_path / "odds.png"
    result = CliRunner().invoke(explain, ["odds", "--measure", "1", "-t", "1", "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    for shown in ("Hits with at least k leading zero bits", "Kolmogorov-Smirnov", "memoryless"):
        assert shown in result.output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    result = CliRunner().invoke(explain, ["odds", "--measure", "1", "--plot", "odds.png"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "miner: error: --plot: plotting needs matplotlib: pip install 'sha256d-miner[teach]'"
    ]


@pytest.mark.parametrize(
    "args",
    [["--measure", "2", "--hashrate", "1M"], ["--measure", "2", "-d", "1"], ["--plot", "x.png", "-r", "1M", "-d", "1"]],
)
def test_measure_does_not_mix_with_given_odds(args: list[str]) -> None:
    result = CliRunner().invoke(explain, ["odds", *args])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output


def test_odds_still_need_a_rate_and_a_difficulty_without_measure() -> None:
    result = subprocess.run([*MINER, "explain", "odds", "-r", "1M"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--difficulty" in result.stderr and len(result.stderr.splitlines()) == 1


def test_kolmogorov_smirnov_by_hand() -> None:
    n = 2000
    quantiles = [-math.log(1 - (i - 0.5) / n) for i in range(1, n + 1)]  # the law's own quantiles: D = 1/(2n)
    statistic, p = teach.ks_exponential(quantiles, 1.0)
    assert statistic == pytest.approx(0.5 / n) and p == 1.0
    statistic, p = teach.ks_exponential([q * 1.2 for q in quantiles], 1.0)  # a mean 20 % too long
    cdf = [1 - (1 - (i - 0.5) / n) ** 1.2 for i in range(1, n + 1)]  # F(1.2 q) = 1 - (1 - u)^1.2
    by_hand = max(max(i / n - f, f - (i - 1) / n) for i, f in enumerate(cdf, 1))
    assert statistic == pytest.approx(by_hand, rel=1e-9)
    assert p < 1e-6
    # Kolmogorov's law: P(sqrt(n) D > 1.358) = 0.05 in the limit, and P(> 1.628) = 0.01
    for lam, expected in ((1.358, 0.05), (1.628, 0.01)):
        d = lam / (math.sqrt(n) + 0.12 + 0.11 / math.sqrt(n))
        shifted = [-math.log(1 - min(1 - 1e-12, (i - 0.5) / n + d - 0.5 / n)) for i in range(1, n + 1)]
        statistic, p = teach.ks_exponential(shifted, 1.0)
        assert statistic == pytest.approx(d, rel=1e-6)
        assert p == pytest.approx(expected, rel=0.01)
