"""--config, --write-config and MINER_<OPTION> variables: precedence, round trips, bad files, passwords."""

from __future__ import annotations

import json
import os
import stat

import pytest
from click.testing import CliRunner
from commands import backend, run_until

from miner.cli import main
from miner.pool import EmbeddedChain, EmbeddedPool

PASSWORD = "s3cret-Pa55"
CGMINER_FILE = {
    "pools": [
        {"url": "stratum+tcp://127.0.0.1:3333", "user": "alice.1", "pass": PASSWORD},
        {"url": "stratum+tcp://127.0.0.1:3334", "user": "alice.2", "pass": "x"},
    ],
    "threads": 1,
    "api-listen": True,
    "api-port": 4099,
    "api-allow": "W:127.0.0.1",
    "failover-only": True,
    "intensity": 8,
}


def run(*args: str, env: dict | None = None):
    return CliRunner().invoke(main, list(args), env=env)


def written(tmp_path, *args: str, env: dict | None = None, name: str = "out.json") -> dict:
    """The options a command line resolves, as --write-config saves them."""
    target = tmp_path / name
    result = run(*args, "--write-config", str(target), env=env)
    assert result.exit_code == 0, result.output
    assert "wrote" in result.stderr
    text = target.read_text()
    if name.endswith(".toml"):
        import tomllib

        return tomllib.loads(text)
    return json.loads(text)


def test_a_cgminer_file_sets_pools_threads_and_api(tmp_path):
    path = tmp_path / "cgminer.conf.json"
    path.write_text(json.dumps(CGMINER_FILE, indent=2))
    result = run("mine", "--config", str(path), "--write-config", str(tmp_path / "out.json"))
    assert result.exit_code == 0, result.output
    # cgminer's own GPU key is a warning that names the file and its line; failover-only is what we do
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if '"intensity"' in text)
    assert warnings == [
        f"miner: warning: {path}:{line}: ignoring 'intensity', a setting of another miner that changes nothing here"
    ]
    record = json.loads((tmp_path / "out.json").read_text())
    assert record["pools"] == CGMINER_FILE["pools"]
    assert record["threads"] == 1 and record["api-listen"] == "127.0.0.1:4099" and record["api-allow"] == "W:127.0.0.1"


@pytest.mark.parametrize("name", ["saved.json", "saved.toml"])
def test_write_config_then_config_reproduces_the_options(tmp_path, name):
    args = ["mine", "-o", "stratum+tcp://127.0.0.1:3333", "-o", "stratum+ssl://127.0.0.1:3334", "-u", "bob.7",
            "-p", PASSWORD, "-t", "1", "--pool-timeout", "30", "--suggest-difficulty", "0.5", "--version-rolling",
            "--api-listen", "127.0.0.1:4111"]  # fmt: skip
    first = written(tmp_path, *args, name=name)
    saved = tmp_path / name
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600  # a new file is private, so it keeps the password
    again = written(tmp_path, "mine", "--config", str(saved), name="again" + saved.suffix)
    assert again == first
    assert first["pools"][0] == {"url": "stratum+tcp://127.0.0.1:3333", "user": "bob.7", "pass": PASSWORD}
    assert first["version-rolling"] is True and first["suggest-difficulty"] == 0.5


def test_command_line_beats_environment_beats_file_beats_default(tmp_path):
    path = tmp_path / "rig.json"
    path.write_text(json.dumps({"threads": 1, "pool-timeout": 30}))
    base = ["mine", "--config", str(path)]
    assert written(tmp_path, "mine")["pool-timeout"] == 90.0  # the default
    assert written(tmp_path, *base)["threads"] == 1  # the file
    env = {"MINER_THREADS": "2", "MINER_URL": "stratum+tcp://127.0.0.1:1 stratum+tcp://127.0.0.1:2"}
    record = written(tmp_path, *base, env=env)
    assert record["threads"] == 2 and record["pool-timeout"] == 30  # the variable, then the file
    assert [pool["url"] for pool in record["pools"]] == ["stratum+tcp://127.0.0.1:1", "stratum+tcp://127.0.0.1:2"]
    assert written(tmp_path, *base, "-t", "3", env=env)["threads"] == 3  # the flag
    assert "MINER_<OPTION>" in run("mine", "--help").output  # the order is stated where users look


@pytest.mark.parametrize(
    "text, where, words",
    [
        ('{\n  "threads": 1,\n  "treads": 2\n}', ":3:", ["unknown key 'treads'", "did you mean 'threads'"]),
        ('{\n  "threads": "many"\n}', ":2:", ["threads", "'many' is not a valid integer"]),
        ('{\n  "threads": 1,\n  "pools": [{"url": "stratum+tcp://h:1", "worker": "w"}]\n}', ":3:", ["'worker'"]),
        ('{\n  "pool-timeout": "nan"\n}', ":2:", ["pool-timeout", "finite"]),
        ('{\n  "threads": 1\n  "quiet": true\n}', ":3:", ["not valid JSON"]),
        ('{\n  "algo": "scrypt"\n}', ":2:", ["algo", "not something this miner does"]),
        ("[1, 2]", "", ["expected an object of options"]),
    ],
)
def test_a_bad_file_is_one_line_naming_the_file_the_line_and_the_key(tmp_path, text, where, words):
    path = tmp_path / "rig.json"
    path.write_text(text)
    result = run("mine", "--config", str(path))
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"miner: error: {path}{where}"), lines
    assert all(word in lines[0] for word in words), lines


def test_a_bad_toml_file_and_a_binary_file_are_one_line(tmp_path):
    toml = tmp_path / "rig.toml"
    toml.write_text("threads = 1\nquiet = yes\n")
    result = run("mine", "--config", str(toml))
    assert result.exit_code == 2 and "not valid TOML" in result.stderr and "line 2" in result.stderr
    binary = tmp_path / "rig.json"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    result = run("mine", "--config", str(binary))
    assert result.exit_code == 2 and result.stderr.strip() == (
        f"miner: error: {binary}: not a text file (expected JSON or TOML in UTF-8)"
    )
    toml.write_text('threads = 1\n\n[[pools]]\nurl = "stratum+tcp://127.0.0.1:1"\nuser = "w"\nquota = 2\n')
    result = run("mine", "--config", str(toml))
    assert result.exit_code == 2 and f"{toml}:6: unknown key 'quota' in a pool" in result.stderr


def test_passwords_are_written_only_to_a_private_file(tmp_path):
    shared = tmp_path / "shared.json"
    shared.write_text("{}")
    os.chmod(shared, 0o644)
    url = f"stratum+tcp://carol:{PASSWORD}@127.0.0.1:3333"
    result = run("mine", "-o", url, "-o", "stratum+tcp://127.0.0.1:1", "-p", PASSWORD, "--write-config", str(shared))
    assert result.exit_code == 0 and "without passwords" in result.stderr
    text = shared.read_text()
    assert PASSWORD not in text and PASSWORD not in result.output
    record = json.loads(text)
    assert record["pools"][0]["url"] == "stratum+tcp://carol:***@127.0.0.1:3333"
    assert all("pass" not in pool for pool in record["pools"])


def test_pool_and_solo_take_a_config_file_too(tmp_path):
    path = tmp_path / "pool.toml"
    path.write_text('listen = "127.0.0.1:0"\ndifficulty = 0.5\nduration = 0\njson = true\n')
    result = run("pool", "--config", str(path))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["accepted"] == 0
    assert "fixed difficulty from 0.5" in result.stderr
    path.write_text('listen = "127.0.0.1:0"\nthreads = 2\n')
    result = run("pool", "--config", str(path))
    assert result.exit_code == 2 and "unknown key 'threads' for 'miner pool'" in result.stderr
    solo = tmp_path / "solo.json"
    solo.write_text(json.dumps({"rpc-url": "http://u:p@127.0.0.1:18443", "address": "x", "blocks": 0}))
    result = run("solo", "--config", str(solo))
    assert result.exit_code == 2 and f"{solo}:1: blocks:" in result.stderr


def test_a_run_from_a_config_file_mines_with_its_pool_and_worker(tmp_path):
    authorized: list[str] = []
    pool = EmbeddedPool(
        difficulty=2.0**-12,
        vardiff=False,
        job_source=EmbeddedChain(nbits=0x1D00FFFF),
        credentials={"dave.9": PASSWORD},
        on_event=authorized.append,
    )
    pool.start()
    try:
        path = tmp_path / "rig.json"
        path.write_text(json.dumps({"pools": [{"url": pool.url, "user": "dave.9", "pass": PASSWORD}], "json": True}))
        code, out, err = run_until(
            ["mine", "--config", str(path), "-b", backend(), "-t", "1"], lambda: pool.summary()["accepted"] >= 1
        )
    finally:
        pool.stop()
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["accepted"] >= 1
    assert any("dave.9" in event for event in authorized), authorized
    assert PASSWORD not in out + err
