"""The cgminer-compatible API server, driven over loopback sockets by a fake miner with real Stats."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from miner.asic.access import client_access, parse_allow
from miner.asic.client import parse_reply, query, send_raw
from miner.asic.commands import handle_request
from miner.asic.server import ApiServer
from miner.stats import Stats


class FakeControl:
    """A MinerControl whose pool actions only record what was asked, over a real Stats."""

    backend_name = "reference"

    def __init__(self) -> None:
        self.stats = Stats()
        self.started_wall = self.stats.started_wall
        for url, user in (("stratum+tcp://127.0.0.1:3333", "alice.w1"), ("stratum+tcp://127.0.0.1:3334", "bob")):
            pool = self.stats.add_pool(url, user)
            pool.status = "Alive"
        self.stats.pools[0].stratum_active = True
        self.stats.pools[0].difficulty = 0.5
        self.stats.pools[0].has_version_rolling = True
        self.stats.device("CPU 0")
        self.stats.device("CPU 1")
        self.current = 0
        self.calls: list[tuple] = []
        self.quit_event = threading.Event()

    def current_pool(self) -> int:
        return self.current

    def _check(self, index: int) -> None:
        if not 0 <= index < len(self.stats.pools):
            raise ValueError(f"no pool {index}")

    def switch_pool(self, index: int) -> None:
        self._check(index)
        self.calls.append(("switch", index))
        self.current = index

    def add_pool(self, url: str, user: str, password: str) -> int:
        if "://" not in url:
            raise ValueError("bad url")
        self.calls.append(("add", url, user, password))
        self.stats.add_pool(url, user)
        return len(self.stats.pools) - 1

    def remove_pool(self, index: int) -> None:
        self._check(index)
        if index == self.current:
            raise ValueError("cannot remove the active pool")
        self.calls.append(("remove", index))
        del self.stats.pools[index]

    def enable_pool(self, index: int) -> None:
        self._check(index)
        self.calls.append(("enable", index))
        self.stats.pools[index].enabled = True

    def disable_pool(self, index: int) -> None:
        self._check(index)
        self.calls.append(("disable", index))
        self.stats.pools[index].enabled = False

    def set_pool_priority(self, order: list[int]) -> None:
        self.calls.append(("priority", list(order)))
        for prio, index in enumerate(order):
            self.stats.pools[index].priority = prio

    def restart(self) -> None:
        self.calls.append(("restart",))

    def quit(self) -> None:
        self.calls.append(("quit",))
        self.quit_event.set()


@pytest.fixture
def control():
    ctl = FakeControl()
    ctl.stats.add_hashes("CPU 0", 3_000_000)
    ctl.stats.add_hashes("CPU 1", 1_000_000)
    ctl.stats.share_result("accepted", 2.0, ctl.stats.pools[0], "CPU 0")
    ctl.stats.share_result("accepted", 1.0, ctl.stats.pools[0], "CPU 0")
    ctl.stats.share_result("rejected", 1.0, ctl.stats.pools[0], "CPU 1", reason="low difficulty")
    ctl.stats.share_result("stale", 4.0, ctl.stats.pools[0], "CPU 1")
    ctl.stats.hardware_error("CPU 1")
    ctl.stats.share_found(123.7)
    return ctl


def serve(control, **kwargs) -> ApiServer:
    kwargs.setdefault("read_timeout", 1.0)
    server = ApiServer(control, "127.0.0.1", 0, **kwargs)
    server.start()
    return server


@pytest.fixture
def server(control):
    srv = serve(control)
    yield srv
    srv.stop()


@pytest.fixture
def wserver(control):
    srv = serve(control, allow="W:127.0.0.1")
    yield srv
    srv.stop()


def raw(srv: ApiServer, payload: bytes, timeout: float = 3.0) -> bytes:
    return send_raw("127.0.0.1", srv.port, payload, timeout)


def ask(srv: ApiServer, command: str, parameter=None) -> dict:
    return query("127.0.0.1", srv.port, command, parameter, timeout=3.0)


def status(reply: dict) -> dict:
    return reply["STATUS"][0]


# --- wire format -----------------------------------------------------------------------------------------


def test_json_reply_ends_with_one_nul_and_connection_closes(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=3) as sock:
        sock.sendall(b'{"command":"summary","parameter":""}')
        data = b""
        while chunk := sock.recv(65536):  # the server closes after the reply
            data += chunk
    assert data.endswith(b"\0") and data.count(b"\0") == 1
    reply = json.loads(data[:-1])
    assert reply["id"] == 1
    assert status(reply)["STATUS"] == "S" and status(reply)["Code"] == 11 and status(reply)["Msg"] == "Summary"
    assert abs(status(reply)["When"] - time.time()) < 10
    assert "sha256d-miner" in status(reply)["Description"]


def test_summary_fields_carry_real_values(server, control):
    s = ask(server, "summary")["SUMMARY"][0]
    for key in (
        "Elapsed",
        "MHS av",
        "MHS 5s",
        "MHS 1m",
        "MHS 5m",
        "MHS 15m",
        "GHS 5s",
        "GHS av",
        "Found Blocks",
        "Difficulty Stale",
        "Pool Rejected%",
        "Pool Stale%",
        "Best Share",
        "Utility",
        "Total MH",
    ):
        assert key in s
    assert (s["Accepted"], s["Rejected"], s["Stale"], s["Hardware Errors"]) == (2, 1, 1, 1)
    assert s["Difficulty Accepted"] == pytest.approx(3.0)
    assert s["Difficulty Rejected"] == pytest.approx(1.0)
    assert s["Difficulty Stale"] == pytest.approx(4.0)
    assert s["Pool Rejected%"] == pytest.approx(100 * 1 / 8, abs=1e-3)
    assert s["Pool Stale%"] == pytest.approx(100 * 4 / 8, abs=1e-3)
    assert s["Best Share"] == 123
    assert s["Total MH"] == pytest.approx(4.0)
    assert s["MHS av"] > 0 and s["GHS av"] == pytest.approx(s["MHS av"] / 1000, abs=0.01)


def test_number_formats_follow_api_c(server):
    data = raw(server, b'{"command":"summary"}').decode()
    assert '"Difficulty Accepted":3.00000000' in data
    assert '"Total MH":4.0000' in data
    assert '"Pool Stale%":50.0000' in data


def test_text_form_and_its_escaping(server, control):
    control.stats.pools[1].user = "we,ird|us=er"
    text = raw(server, b"pools").decode()
    assert text.endswith("|\0")
    assert text.startswith("STATUS=S,When=")
    assert ",Code=7,Msg=2 Pool(s)," in text
    assert "POOL=0,URL=stratum+tcp://127.0.0.1:3333,Status=Alive," in text
    assert "User=we\\,ird\\|us\\=er" in text
    reply = parse_reply(text.encode())  # our client reads the text form back
    assert reply["POOLS"][1]["User"] == "we,ird|us=er"
    assert reply["POOLS"][0]["POOL"] == 0


def test_text_summary_has_section_prefix(server):
    text = raw(server, b"summary").decode()
    assert "|SUMMARY,Elapsed=" in text


def test_joined_commands_json(server, control):
    reply = ask(server, "summary+devs+pools+version")
    assert set(reply) == {"summary", "devs", "pools", "version", "id"}
    for name in ("summary", "devs", "pools", "version"):
        assert isinstance(reply[name], list) and len(reply[name]) == 1
        assert reply[name][0]["id"] == 1
    assert len(reply["devs"][0]["DEVS"]) == len(control.stats.devices)
    assert reply["pools"][0]["POOLS"][1]["URL"] == "stratum+tcp://127.0.0.1:3334"
    assert reply["version"][0]["VERSION"][0]["API"] == "3.7"


def test_joined_refuses_non_joinable_and_text_form(wserver):
    reply = ask(wserver, "summary+switchpool+bogus")
    assert status(reply["switchpool"][0])["Code"] == 45
    assert status(reply["bogus"][0])["Code"] == 14
    assert status(reply["summary"][0])["Code"] == 11
    text = raw(wserver, b"version+config").decode()
    assert text.startswith("CMD=version|STATUS=S,") and "|CMD=config|STATUS=S," in text


def test_devs_one_entry_per_device(server, control):
    reply = ask(server, "devs")
    assert status(reply)["Msg"] == "2 CPU(s)"
    devs = reply["DEVS"]
    assert [d["CPU"] for d in devs] == [0, 1]
    assert [(d["Name"], d["ID"]) for d in devs] == [("CPU", 0), ("CPU", 1)]
    assert devs[0]["Accepted"] == 2 and devs[1]["Rejected"] == 1 and devs[1]["Hardware Errors"] == 1
    assert devs[0]["Total MH"] == pytest.approx(3.0)
    assert [d["Name"] for d in ask(server, "edevs")["DEVS"]] == ["CPU", "CPU"]


def test_pools_fields(server, control):
    pools = ask(server, "pools")["POOLS"]
    p0, p1 = pools
    assert p0["Stratum Active"] is True and p0["Stratum URL"] == "127.0.0.1:3333"
    assert p0["Stratum Difficulty"] == pytest.approx(0.5) and p0["Has Vmask"] is True
    assert (p0["Accepted"], p0["Rejected"], p0["Stale"], p0["User"]) == (2, 1, 1, "alice.w1")
    assert p1["Stratum Active"] is False and p1["Priority"] == 1 and p1["Status"] == "Alive"


def test_pools_marks_only_the_pool_being_mined_active(wserver, control):
    control.stats.pools[1].stratum_active = True  # both sessions open, as the miner keeps its backups
    pools = ask(wserver, "pools")["POOLS"]
    assert [p["Stratum Active"] for p in pools] == [True, False] and pools[1]["Stratum URL"] == ""
    assert status(ask(wserver, "switchpool", "1"))["Code"] == 27
    pools = ask(wserver, "pools")["POOLS"]
    assert [p["Stratum Active"] for p in pools] == [False, True]
    assert pools[1]["Stratum URL"] == "127.0.0.1:3334" and pools[0]["Stratum URL"] == ""
    control.stats.pools[1].enabled = False
    assert not any(p["Stratum Active"] for p in ask(wserver, "pools")["POOLS"])


def test_stats_version_config_and_others(server, control):
    stats = ask(server, "stats")["STATS"]
    assert len(stats) >= 2
    assert "Type" in stats[0] and stats[1]["ID"] == "CPU0" and "GHS 5s" in stats[1]
    version = ask(server, "version")["VERSION"][0]
    from miner import __version__

    assert version["Miner"] == f"sha256d-miner {__version__}" and "CGMiner" not in version
    config = ask(server, "config")["CONFIG"][0]
    assert config["Pool Count"] == 2 and config["CPU Count"] == 2
    assert ask(server, "coin")["COIN"][0]["Hash Method"] == "sha256"
    assert len(ask(server, "devdetails")["DEVDETAILS"]) == 2
    assert len(ask(server, "notify")["NOTIFY"]) == 2
    check = ask(server, "check", "switchpool")["CHECK"][0]
    assert check == {"Exists": "Y", "Access": "N"}
    assert ask(server, "check", "nosuch")["CHECK"][0]["Exists"] == "N"
    assert status(ask(server, "check"))["Code"] == 71


# --- errors and bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"bogus", 14),
        (b'{"command":"bogus"}', 14),
        (b'{"command":', 23),
        (b"[1,2]", 14),  # not starting with '{': a text command, and not a known one
        (b'{"parameter":"x"}', 24),
        (b'{"command":5}', 14),
        (b'"just a string"', 14),
        (b"\xff\xfe\x00garbage", 14),
    ],
)
def test_bad_requests_get_error_status(server, payload, code):
    reply = parse_reply(raw(server, payload))
    assert status(reply)["STATUS"] == "E" and status(reply)["Code"] == code


def test_wrong_parameter_types(wserver, control):
    assert status(ask(wserver, "switchpool", ["1"]))["Code"] == 25  # ignored like api.c: missing pool id
    reply = json.loads(raw(wserver, b'{"command":"switchpool","parameter":1}')[:-1])
    assert status(reply)["Code"] == 27 and control.current == 1
    assert status(ask(wserver, "switchpool", "one"))["Code"] == 26
    assert status(ask(wserver, "switchpool", "7"))["Code"] == 26


def test_huge_request_gets_error_and_server_survives(server):
    payload = b'{"command":"' + b"a" * 200_000 + b'"}'
    reply = parse_reply(raw(server, payload))
    assert status(reply)["STATUS"] == "E" and status(reply)["Code"] == 23  # cut at 8 KiB: not valid JSON
    assert status(parse_reply(raw(server, b"x" * 100_000)))["Code"] == 14
    assert status(ask(server, "summary"))["Code"] == 11


def test_slow_client_times_out_without_blocking_others(control):
    srv = serve(control, read_timeout=0.5, max_connections=2)
    try:
        idle = [socket.create_connection(("127.0.0.1", srv.port), timeout=3) for _ in range(3)]
        assert status(ask(srv, "summary"))["Code"] == 11  # served once the idle ones time out
        for sock in idle:
            sock.settimeout(3)
            assert sock.recv(100) == b""  # closed by the server, no reply
            sock.close()
    finally:
        srv.stop()


def test_many_concurrent_clients(server):
    results = []

    def one():
        results.append(status(ask(server, "summary+pools")["summary"][0])["Code"])

    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == [11] * 20


# --- access control and privileged commands -----------------------------------------------------------------


def test_default_is_read_only_on_loopback(server, control):
    reply = ask(server, "switchpool", "1")
    assert status(reply)["Code"] == 45 and status(reply)["Msg"] == "Access denied to 'switchpool' command"
    assert control.calls == []
    assert status(ask(server, "privileged"))["Code"] == 45
    assert status(ask(server, "quit"))["Code"] == 45 and not control.quit_event.is_set()


def test_allow_without_w_is_read_only(control):
    srv = serve(control, allow="127.0.0.1")
    try:
        assert status(ask(srv, "addpool", "stratum+tcp://x:1,u,p"))["Code"] == 45
        assert status(ask(srv, "summary"))["Code"] == 11
    finally:
        srv.stop()


def test_allow_elsewhere_refuses_connection(control):
    srv = serve(control, allow="W:10.0.0.0/8")
    try:
        with pytest.raises(Exception, match="closed without a reply|reset"):
            raw(srv, b"summary")
    finally:
        srv.stop()


def test_parse_allow_rules():
    entries = parse_allow("W:127.0.0.1,192.168.0/24,R:10.1.2.3")
    assert client_access("127.0.0.1", entries) is True
    assert client_access("192.168.0.77", entries) is False
    assert client_access("10.1.2.3", entries) is False
    assert client_access("10.1.2.4", entries) is None
    assert client_access("::ffff:127.0.0.1", entries) is True
    everyone = parse_allow("W:0/0")
    assert client_access("8.8.8.8", everyone) is True and client_access("::1", everyone) is True
    assert client_access("8.8.8.8", None) is None and client_access("127.0.0.1", None) is False
    with pytest.raises(ValueError, match="invalid entry 'nonsense'"):
        parse_allow("nonsense")


def test_privileged_commands_act_for_real(wserver, control):
    assert status(ask(wserver, "privileged"))["Code"] == 46
    reply = ask(wserver, "switchpool", "1")
    assert status(reply)["Code"] == 27 and status(reply)["Msg"] == "Switching to pool 1:'stratum+tcp://127.0.0.1:3334'"
    assert control.current == 1
    reply = ask(wserver, "addpool", "stratum+tcp://127.0.0.1:5555,carol,pa\\,ss")
    assert status(reply)["Code"] == 55 and control.calls[-1] == (
        "add",
        "stratum+tcp://127.0.0.1:5555",
        "carol",
        "pa,ss",
    )
    assert len(ask(wserver, "pools")["POOLS"]) == 3
    assert status(ask(wserver, "addpool", "nourl,u,p"))["Code"] == 53
    assert status(ask(wserver, "addpool", "onlyurl"))["Code"] == 53
    assert status(ask(wserver, "addpool"))["Code"] == 52
    assert status(ask(wserver, "disablepool", "0"))["Code"] == 48 and not control.stats.pools[0].enabled
    assert status(ask(wserver, "disablepool", "0"))["Code"] == 50
    assert status(ask(wserver, "enablepool", "0"))["Code"] == 47 and control.stats.pools[0].enabled
    assert status(ask(wserver, "enablepool", "0"))["Code"] == 49
    assert status(ask(wserver, "poolpriority", "2,0"))["Code"] == 73
    assert control.calls[-1] == ("priority", [2, 0, 1])
    assert status(ask(wserver, "poolpriority", "1,1"))["Code"] == 74
    assert status(ask(wserver, "removepool", "1"))["Code"] == 67  # the active pool: the miner refuses
    assert status(ask(wserver, "removepool", "2"))["Code"] == 68 and len(control.stats.pools) == 2


def test_disable_last_enabled_pool_refused(wserver, control):
    control.stats.pools[1].enabled = False
    assert status(ask(wserver, "disablepool", "0"))["Code"] == 51
    assert control.stats.pools[0].enabled


def test_zero_resets_counters(wserver, control):
    assert status(ask(wserver, "zero"))["Code"] == 94
    assert status(ask(wserver, "zero", "all"))["Code"] == 75
    assert status(ask(wserver, "zero", "some,true"))["Code"] == 95
    assert status(ask(wserver, "zero", "all,maybe"))["Code"] == 76
    assert status(ask(wserver, "zero", "bestshare,false"))["Code"] == 97
    assert ask(wserver, "summary")["SUMMARY"][0]["Best Share"] == 0
    assert ask(wserver, "summary")["SUMMARY"][0]["Accepted"] == 2
    assert status(ask(wserver, "zero", "all,true"))["Code"] == 96
    assert ask(wserver, "summary")["SUMMARY"][0]["Accepted"] == 0


def test_quit_and_restart_replies_then_act(wserver, control):
    assert raw(wserver, b'{"command":"restart"}') == b'{"STATUS":"RESTART","id":1}\0'
    assert raw(wserver, b"quit") == b"BYE\0"
    assert control.quit_event.wait(3)
    deadline = time.monotonic() + 3  # each action runs after its reply is sent
    while ("restart",) not in control.calls and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ("restart",) in control.calls


def test_handle_request_without_sockets(control):
    reply, after = handle_request(b"quit", control, privileged=True)
    assert reply == b"BYE\0" and len(after) == 1 and control.calls == []
    after[0]()
    assert control.calls == [("quit",)]


def test_stop_releases_the_port(control):
    srv = serve(control)
    port = srv.port
    srv.stop()
    with pytest.raises(Exception, match="refused"):
        send_raw("127.0.0.1", port, b"summary", timeout=1)


def test_imports_point_one_way() -> None:
    """The core (block, work, engine, stats) never imports the ASIC side; the ASIC side never imports the CLI
    or the modes. Checked in a fresh interpreter, from what each import actually loads."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "import miner.block, miner.work, miner.engine, miner.stats\n"
        "core = sorted(m for m in sys.modules if m.startswith('miner.asic'))\n"
        "import miner.asic.server, miner.asic.client, miner.asic.fleet, miner.asic.simulator\n"
        "modes = ('miner.cli', 'miner.mining', 'miner.pool', 'miner.solo')\n"
        "side = sorted(m for m in sys.modules if m.startswith(modes))\n"
        "print(core, side)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[] []", out.stdout + out.stderr


class PausableControl(FakeControl):
    """A FakeControl that also pauses and stops single workers, as the miner offers for curtailment."""

    def __init__(self) -> None:
        super().__init__()
        self.paused = False

    def pause(self) -> None:
        self.calls.append(("pause",))
        self.paused = True

    def resume(self) -> None:
        self.calls.append(("resume",))
        self.paused = False

    def set_device_enabled(self, index: int, enabled: bool) -> None:
        self.calls.append(("device", index, enabled))
        list(self.stats.devices.values())[index].enabled = enabled


def test_pause_resume_and_pga_verbs_act_on_the_miner():
    control = PausableControl()
    srv = serve(control, allow="W:127.0.0.1")
    try:
        reply = ask(srv, "pause")
        assert status(reply)["STATUS"] == "S" and reply["PAUSE"][0]["PAUSE"] is True and control.paused
        assert ask(srv, "resume")["RESUME"][0]["RESUME"] is True and not control.paused
        assert ask(srv, "pgacount")["PGAS"][0]["Count"] == 2
        assert status(ask(srv, "pgadisable", "1"))["Msg"] == "PGA1 set disable flag"
        assert ask(srv, "devs")["DEVS"][1]["Enabled"] == "N"
        assert status(ask(srv, "pgadisable", "1"))["STATUS"] == "I"  # already disabled
        assert status(ask(srv, "pgadisable", "5"))["Msg"] == "Invalid PGA id 5 - range is 0 - 1"
        assert status(ask(srv, "pgadisable"))["Code"] == 15
        assert status(ask(srv, "pgaenable", "1"))["Msg"] == "PGA1 sent enable message"
        assert control.calls == [("pause",), ("resume",), ("device", 1, False), ("device", 1, True)]
    finally:
        srv.stop()


def test_pause_needs_write_access_and_a_miner_that_can(server, wserver, control):
    assert status(ask(server, "pause"))["Code"] == 45  # read-only client
    assert status(ask(wserver, "pause"))["Msg"] == "pause is not supported by this miner"
    assert status(ask(wserver, "pgadisable", "0"))["STATUS"] == "E" and control.calls == []
    assert ask(wserver, "pgacount")["PGAS"][0]["Count"] == 0
