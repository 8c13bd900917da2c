"""``miner asic`` and its client: against our own API server and scripted firmware-shaped servers."""

from __future__ import annotations

import json
import socket
import threading

import pytest
from click.testing import CliRunner

from miner.asic.client import ApiError, parse_reply, parse_target, query, reply_status, split_joined
from miner.asic.fleet import SWEEP_COMMANDS, expand_targets, fleet_row, fleet_summary, hashrate_ghs
from miner.asic.server import ApiServer
from miner.cli import main
from tests.test_api import FakeControl

# --- replies in the shapes real firmware sends ------------------------------------------------------------

BMMINER_STATUS = '"STATUS":[{"STATUS":"S","When":1612345678,"Code":%d,"Msg":"%s","Description":"bmminer 1.0.0"}]'
BMMINER_SUMMARY = (
    "{" + BMMINER_STATUS % (11, "Summary") + ',"SUMMARY":[{"Elapsed":86400,"GHS 5s":"13842.27","GHS av":13912.55,'
    '"Found Blocks":0,"Getworks":5000,"Accepted":12345,"Rejected":12,"Hardware Errors":321,"Utility":8.57,'
    '"Discarded":9999,"Stale":0,"Get Failures":0,"Local Work":123456,"Remote Failures":0,"Network Blocks":150,'
    '"Total MH":1202812345678.0,"Work Utility":193000.51,"Difficulty Accepted":262144000.0,'
    '"Difficulty Rejected":250000.0,"Difficulty Stale":0.0,"Best Share":4294967296,"Device Hardware%":0.0001,'
    '"Device Rejected%":0.0952,"Pool Rejected%":0.0952,"Pool Stale%":0.0,"Last getwork":1612345678}],"id":1}'
)
BMMINER_POOLS = (
    "{" + BMMINER_STATUS % (7, "3 Pool(s)") + ',"POOLS":['
    '{"POOL":0,"URL":"stratum+tcp://btc.example.org:3333","Status":"Alive","Priority":0,"Quota":1,'
    '"Accepted":12345,"Rejected":12,"User":"farm.s9-01","Stratum Active":true,"Stratum URL":"btc.example.org",'
    '"Has Vmask":true},'
    '{"POOL":1,"URL":"stratum+tcp://backup.example.org:3333","Status":"Alive","Priority":1,"Quota":1,'
    '"Accepted":0,"Rejected":0,"User":"farm.s9-01","Stratum Active":false,"Stratum URL":""},'
    '{"POOL":2,"URL":"","Status":"Dead","Priority":2,"Quota":1,"Accepted":0,"Rejected":0,"User":"",'
    '"Stratum Active":false,"Stratum URL":""}],"id":1}'
)
BMMINER_VERSION = (
    "{" + BMMINER_STATUS % (22, "BMMiner versions") + ',"VERSION":[{"BMMiner":"2.0.0","API":"3.1",'
    '"Miner":"16.8.1.3","CompileTime":"Fri Nov 17 17:37:49 CST 2017","Type":"Antminer S9"}],"id":1}'
)
# old bmminer glues the STATS entries together without a comma
BMMINER_STATS = (
    "{" + BMMINER_STATUS % (70, "CGMiner stats") + ',"STATS":[{"BMMiner":"2.0.0","Miner":"16.8.1.3",'
    '"CompileTime":"Fri Nov 17 17:37:49 CST 2017","Type":"Antminer S9"}{"STATS":0,"ID":"BC50","Elapsed":86400,'
    '"Calls":0,"Wait":0.000000,"Max":0.000000,"Min":99999999.000000,"GHS 5s":"13842.27","GHS av":13912.55,'
    '"miner_count":3,"frequency":"650","fan_num":2,"fan1":5880,"fan2":5760,"temp1":62,"temp2":65,"temp3":64,'
    '"temp2_1":77,"temp2_2":80,"temp2_3":79,"temp_max":80,"Device Hardware%":0.0001,"no_matching_work":321,'
    '"chain_acn1":63,"chain_acn2":63,"chain_acn3":63,"chain_acs1":" oooooooo oooooooo oooooooo oooooooo ",'
    '"chain_hw1":101,"chain_hw2":110,"chain_hw3":110,"chain_rate1":"4620.53","chain_rate2":"4598.12",'
    '"chain_rate3":"4623.62"}],"id":1}'
)

AVALON_STATUS = '"STATUS":[{"STATUS":"S","When":1700000000,"Code":%d,"Msg":"%s","Description":"cgminer 4.11.1"}]'
AVALON_SUMMARY = (
    "{" + AVALON_STATUS % (11, "Summary") + ',"SUMMARY":[{"Elapsed":3600,"MHS av":81234567.89,'
    '"MHS 30s":81000000.12,"MHS 1m":81100000.00,"MHS 5m":81200000.00,"MHS 15m":81200000.00,"Found Blocks":0,'
    '"Getworks":200,"Accepted":777,"Rejected":3,"Hardware Errors":0,"Utility":12.95,"Discarded":400,"Stale":1,'
    '"Get Failures":0,"Local Work":50000,"Remote Failures":0,"Network Blocks":6,"Total MH":292444444444.0,'
    '"Work Utility":1.05e6,"Difficulty Accepted":6.3e7,"Difficulty Rejected":2.0e5,"Difficulty Stale":65536.0,'
    '"Best Share":123456789,"Device Hardware%":0.0,"Device Rejected%":0.31,"Pool Rejected%":0.31,'
    '"Pool Stale%":0.1,"Last getwork":1700000000},],"id":1}'  # note the trailing comma in SUMMARY
)
AVALON_VERSION = (
    "{" + AVALON_STATUS % (22, "CGMiner versions") + ',"VERSION":[{"CGMiner":"4.11.1","API":"3.7",'
    '"STM8":"20.08.01","PROD":"AvalonMiner 1246","MODEL":"1246","HWTYPE":"MM3v2_X3","SWTYPE":"MM315",'
    '"VERSION":"21042001_4ec6bb0_61407fa","LOADER":"d0d779de.00","DNA":"020100008c316a08","MAC":"b4a2eb3fcd5e",'
    '"UPAPI":"2"}],"id":1}'
)
AVALON_POOLS = (
    "{" + AVALON_STATUS % (7, "1 Pool(s)") + ',"POOLS":[{"POOL":0,"URL":"stratum+tcp://avalon.example.org:3333",'
    '"Status":"Alive","Priority":0,"Accepted":777,"Rejected":3,"User":"farm.a1246","Stratum Active":true}],"id":1}'
)
INVALID_COMMAND = '{"STATUS":[{"STATUS":"E","When":1700000000,"Code":14,"Msg":"Invalid command"}],"id":1}'


class ScriptedFirmware:
    """A loopback server that answers each command with canned bytes, quirks included."""

    def __init__(self, replies: dict[str, str], nul: bool = True, glue_joined: bool = False, host="127.0.0.1"):
        self.replies = replies
        self.nul = nul
        self.glue_joined = glue_joined
        self.requests: list[str] = []
        self.sock = socket.create_server((host, 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _reply(self, command: str) -> str:
        if "+" in command:
            if not self.glue_joined:
                return INVALID_COMMAND
            return "".join(self.replies.get(c, INVALID_COMMAND) for c in command.split("+"))
        return self.replies.get(command, INVALID_COMMAND)

    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    data = conn.recv(8192).decode()
                    command = json.loads(data)["command"] if data.startswith("{") else data.split("|")[0]
                    self.requests.append(command)
                    conn.sendall(self._reply(command).encode() + (b"\0" if self.nul else b""))
                except (OSError, ValueError):
                    pass

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def antminer():
    fw = ScriptedFirmware(
        {"summary": BMMINER_SUMMARY, "pools": BMMINER_POOLS, "version": BMMINER_VERSION, "stats": BMMINER_STATS},
        glue_joined=True,
    )
    yield fw
    fw.close()


@pytest.fixture
def avalon():
    fw = ScriptedFirmware({"summary": AVALON_SUMMARY, "pools": AVALON_POOLS, "version": AVALON_VERSION}, nul=False)
    yield fw
    fw.close()


@pytest.fixture
def control():
    return FakeControl()


@pytest.fixture
def ours(control):
    srv = ApiServer(control, "127.0.0.1", 0, allow="W:127.0.0.1", read_timeout=1.0)
    srv.start()
    yield srv
    srv.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- parsing --------------------------------------------------------------------------------------------


def test_parse_reply_quirks():
    stats = parse_reply(BMMINER_STATS.encode())  # }{ inside a list, no NUL
    assert [s.get("Type") for s in stats["STATS"]][0] == "Antminer S9" and stats["STATS"][1]["ID"] == "BC50"
    summary = parse_reply(AVALON_SUMMARY.encode() + b"\0")  # trailing comma
    assert summary["SUMMARY"][0]["Accepted"] == 777
    glued = parse_reply((BMMINER_SUMMARY + BMMINER_POOLS).encode() + b"\0")
    parts = split_joined(glued, ["summary", "pools", "version"])
    assert set(parts) == {"summary", "pools"} and parts["pools"]["POOLS"][0]["User"] == "farm.s9-01"
    assert parse_reply(b"BYE\0") == {"STATUS": "BYE"}
    assert reply_status(parse_reply(b"BYE")) == ("S", None, "BYE")
    text = parse_reply(b"STATUS=S,When=1,Code=11,Msg=Summary,Description=x|SUMMARY,Elapsed=5,GHS 5s=1.5|\0")
    assert text["SUMMARY"][0] == {"Elapsed": 5, "GHS 5s": 1.5} and text["STATUS"][0]["Code"] == 11
    for bad in (b"", b"\0", b"\x00\x00", b"<html>nope</html>", b'{"STATUS":[{"STATUS":'):
        with pytest.raises(ApiError):
            parse_reply(bad)


def test_hashrate_units():
    assert hashrate_ghs({"GHS 5s": "13842.27"}) == pytest.approx(13842.27)
    assert hashrate_ghs({"MHS av": 1.0, "MHS 30s": 81000000.12}) == pytest.approx(81000.00012)  # short window first
    assert hashrate_ghs({"KHS av": 2000.0}) == pytest.approx(0.002)
    assert hashrate_ghs({}) is None


def test_targets():
    assert parse_target("10.0.0.5") == ("10.0.0.5", 4028)
    assert parse_target("10.0.0.5:4029") == ("10.0.0.5", 4029)
    assert parse_target("[::1]:4030") == ("::1", 4030)
    assert parse_target("::1") == ("::1", 4028)
    with pytest.raises(ValueError):
        parse_target("host:99999")
    targets = expand_targets(["127.0.0.9:1"], subnet="127.0.0.0/30", port=7)
    assert targets == [("127.0.0.9", 1), ("127.0.0.1", 7), ("127.0.0.2", 7)]
    with pytest.raises(ValueError, match="invalid subnet"):
        expand_targets(subnet="10.0.0.0/33")
    with pytest.raises(ValueError, match="more than"):
        expand_targets(subnet="10.0.0.0/8")


# --- fleet rows -----------------------------------------------------------------------------------------


def test_fleet_row_antminer(antminer):
    row = fleet_row("127.0.0.1", antminer.port, timeout=2)
    assert row.reachable and row.status == "ok"
    assert row.miner_type == "Antminer S9"
    assert row.ghs == pytest.approx(13842.27)
    assert (row.accepted, row.rejected, row.hw_errors) == (12345, 12, 321)
    assert row.pool == "stratum+tcp://btc.example.org:3333"
    assert antminer.requests == ["+".join(SWEEP_COMMANDS)]
    assert (row.family, row.model, row.state, row.boards) == ("bmminer", "Antminer S9", "up", 3)
    assert (row.chip_temp, row.board_temp, row.fans) == (80, 65, [5880, 5760])
    assert row.power_estimated and row.power_w == pytest.approx(13.84227 * 98, rel=1e-3)  # S9: 98 J/TH


def test_fleet_row_avalon_without_nul_or_joins(avalon):
    row = fleet_row("127.0.0.1", avalon.port, timeout=2)
    assert row.reachable and row.status == "ok"
    assert row.miner_type == "CGMiner 4.11.1"
    assert row.ghs == pytest.approx(81000.00012)  # its short window is "MHS 30s"
    assert (row.accepted, row.rejected, row.hw_errors) == (777, 3, 0)
    assert row.pool == "stratum+tcp://avalon.example.org:3333"
    assert avalon.requests == ["+".join(SWEEP_COMMANDS), "summary", "pools", "version", "stats"]


def test_fleet_row_ours_and_unreachable(ours, control):
    control.stats.add_hashes("CPU 0", 5_000_000)
    control.stats.share_result("accepted", 1.0, control.stats.pools[0], "CPU 0")
    dead = free_port()
    rows = fleet_summary([("127.0.0.1", ours.port), ("127.0.0.1", dead)], timeout=2)
    assert rows[0].reachable and rows[0].miner_type == "sha256d-miner" and rows[0].accepted == 1
    assert rows[0].pool == "stratum+tcp://127.0.0.1:3333" and rows[0].ghs is not None and rows[0].ghs > 0
    assert not rows[1].reachable and "refused" in rows[1].status


def test_query_ours_joined(ours):
    reply = query("127.0.0.1", ours.port, "summary+stats", timeout=2)
    assert reply_status(reply["summary"][0])[1] == 11 and len(reply["stats"][0]["STATS"]) >= 2


# --- the command line -----------------------------------------------------------------------------------


def run(*args):
    return CliRunner().invoke(main, ["asic", *args], catch_exceptions=False)


def test_cli_single_host_pretty_and_json(ours):
    result = run(f"127.0.0.1:{ours.port}", "summary")
    assert result.exit_code == 0, result.output
    assert "STATUS S code 11: Summary" in result.output and "Accepted" in result.output
    result = run("query", f"127.0.0.1:{ours.port}", "pools", "--json")
    assert json.loads(result.output)["POOLS"][0]["URL"] == "stratum+tcp://127.0.0.1:3333"
    result = run(f"127.0.0.1:{ours.port}", "version", "--text")
    assert result.output.startswith("STATUS=S,") and "VERSION,Miner=sha256d-miner" in result.output
    result = run(f"127.0.0.1:{ours.port}", "bogus")
    assert result.exit_code == 1 and "code 14: Invalid command" in result.output


def test_cli_single_host_unreachable_is_one_line():
    port = free_port()
    result = CliRunner().invoke(main, ["asic", f"127.0.0.1:{port}", "summary", "--timeout", "1"])
    assert result.exit_code == 1
    assert result.output.strip() == f"miner: error: 127.0.0.1:{port}: connection refused"


def test_cli_fleet_table_over_subnet(control):
    a = ApiServer(control, "127.0.0.2", 0, read_timeout=1.0)
    a.start()
    b = ApiServer(FakeControl(), "127.0.0.3", a.port, read_timeout=1.0)
    try:
        b.start()
        result = run("summary", "--subnet", "127.0.0.0/29", "--port", str(a.port), "--timeout", "2")
        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        assert lines[0].split()[:3] == ["HOST", "TYPE", "HASHRATE"]
        assert sum(1 for line in lines if "sha256d-miner" in line) == 2
        assert f"127.0.0.2:{a.port}" in result.output and f"127.0.0.3:{a.port}" in result.output
        assert result.output.count("unreachable (") == 4  # .1 .4 .5 .6
        assert "6 host(s), 2 reachable, 4 unreachable" in result.output
        assert "up 0, paused 2, faulty 0, down 4" in result.output  # FakeControl hashes nothing
        result = run("summary", "--subnet", "127.0.0.0/29", "--port", str(a.port), "--json", "--timeout", "2")
        rows = json.loads(result.output)
        assert [r["reachable"] for r in rows] == [False, True, True, False, False, False]
    finally:
        b.stop()
        a.stop()


def test_cli_fleet_mixed_hosts_file(tmp_path, antminer, avalon, ours):
    hosts = tmp_path / "farm.txt"
    hosts.write_text(f"# farm\n127.0.0.1:{antminer.port}\n\n127.0.0.1:{avalon.port}  # rack 2\n")
    result = run("summary", f"127.0.0.1:{ours.port}", "--hosts-file", str(hosts), "--timeout", "2")
    assert result.exit_code == 0, result.output
    assert "Antminer S9" in result.output and "13.84 TH/s" in result.output
    assert "CGMiner 4.11.1" in result.output and "81.00 TH/s" in result.output
    assert "3 host(s), 3 reachable, 0 unreachable" in result.output


def test_cli_fleet_needs_hosts_and_valid_subnet():
    result = CliRunner().invoke(main, ["asic", "summary"])
    assert result.exit_code == 2 and "miner: error: no hosts" in result.output
    result = CliRunner().invoke(main, ["asic", "summary", "--subnet", "10.0.0.0/99"])
    assert result.exit_code == 2 and result.output.strip() == "miner: error: invalid subnet '10.0.0.0/99'"
    result = CliRunner().invoke(main, ["asic", "summary", "--hosts-file", "/nonexistent/farm.txt"])
    assert result.exit_code == 2 and "cannot read hosts file" in result.output


def test_cli_control_verbs(ours, control):
    result = run("switchpool", "1", f"127.0.0.1:{ours.port}")
    assert result.exit_code == 0, result.output
    assert "ok" in result.output and "Switching to pool 1" in result.output and control.current == 1
    result = run("addpool", "stratum+tcp://127.0.0.1:9999", "dave", "p,w", f"127.0.0.1:{ours.port}", "--json")
    assert json.loads(result.output)[0]["ok"] is True
    assert control.calls[-1] == ("add", "stratum+tcp://127.0.0.1:9999", "dave", "p,w")
    assert run("disablepool", "0", f"127.0.0.1:{ours.port}").exit_code == 0 and not control.stats.pools[0].enabled
    assert run("enablepool", "0", f"127.0.0.1:{ours.port}").exit_code == 0 and control.stats.pools[0].enabled
    assert run("restart", f"127.0.0.1:{ours.port}").exit_code == 0
    result = run("quit", f"127.0.0.1:{ours.port}")
    assert result.exit_code == 0 and "BYE" in result.output
    assert control.quit_event.wait(3) and ("restart",) in control.calls


def test_cli_control_reports_each_host(control):
    readonly = ApiServer(control, "127.0.0.1", 0, read_timeout=1.0)
    readonly.start()
    dead = free_port()
    try:
        result = CliRunner().invoke(
            main, ["asic", "switchpool", "1", f"127.0.0.1:{readonly.port}", f"127.0.0.1:{dead}", "--timeout", "2"]
        )
        assert result.exit_code == 1
        lines = result.output.splitlines()
        assert "FAILED" in lines[0] and "Access denied to 'switchpool' command (code 45)" in lines[0]
        assert "FAILED" in lines[1] and "connection refused" in lines[1]
        assert lines[-1] == "miner: error: switchpool failed on 2 of 2 host(s)"
        assert control.calls == []
    finally:
        readonly.stop()


# --- exit status and hosts files ------------------------------------------------------------------------


def test_cli_fleet_summary_fails_only_when_no_host_answered(ours):
    dead_a, dead_b = free_port(), free_port()
    for dead in ([f"127.0.0.1:{dead_a}"], [f"127.0.0.1:{dead_a}", f"127.0.0.1:{dead_b}"]):
        result = CliRunner().invoke(main, ["asic", "summary", *dead, "--timeout", "1"])
        assert result.exit_code == 1, result.output
        assert result.stdout.count("unreachable (connection refused, 2 tries)") == len(dead)  # the table still shows
        assert result.stderr.strip() == f"miner: error: no host answered ({len(dead)} unreachable)"
    result = CliRunner().invoke(main, ["asic", "summary", f"127.0.0.1:{dead_a}", "--json", "--timeout", "1"])
    assert result.exit_code == 1 and json.loads(result.stdout)[0]["reachable"] is False
    result = CliRunner().invoke(main, ["asic", "summary", f"127.0.0.1:{ours.port}", f"127.0.0.1:{dead_a}"])
    assert result.exit_code == 0 and result.stderr == "", result.output
    assert "2 host(s), 1 reachable, 1 unreachable" in result.stdout


def test_exit_rule_is_in_the_help():
    text = CliRunner().invoke(main, ["asic", "summary", "--help"]).output
    assert "1 when none did" in " ".join(text.split())
    text = " ".join(CliRunner().invoke(main, ["asic", "--help"]).output.split())
    assert "a fleet summary is 1 when no host answered" in text


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"127.0.0.1:4028\n# rack 2\n\n10.0.0.5:99999\n", "line 4: invalid port in '10.0.0.5:99999'"),
        (b"10.0.0.5\n10.0.0.6 10.0.0.7\n", "line 2: invalid host '10.0.0.6 10.0.0.7'"),
        (b"10.0.0.5\r\n10.0.0.0/99\r\n", "line 2: invalid subnet '10.0.0.0/99'"),
        (b"10.0.0.5\n\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "is not a text file (a NUL byte on line 4)"),
        (b"10.0.0.5\nrig-\xe9t\xe9\n", "is not UTF-8 text (line 2, byte 13)"),
    ],
)
def test_hosts_file_errors_name_the_file_and_line(tmp_path, content, expected):
    hosts = tmp_path / "farm.txt"
    hosts.write_bytes(content)
    result = CliRunner().invoke(main, ["asic", "summary", "--hosts-file", str(hosts)])
    assert result.exit_code == 2
    (line,) = result.output.splitlines()
    assert line.startswith(f"miner: error: hosts file '{hosts}'") and expected in line, line


def test_hosts_file_reads_entries_in_order(tmp_path):
    hosts = tmp_path / "farm.txt"
    hosts.write_text("\ufeff10.0.0.5  # the first\n[::1]:4030\n127.0.0.0/30\nrig-7.farm.example:4029\n10.0.0.5\n")
    assert expand_targets(hosts_file=str(hosts), port=4028) == [
        ("10.0.0.5", 4028),
        ("::1", 4030),
        ("127.0.0.1", 4028),
        ("127.0.0.2", 4028),
        ("rig-7.farm.example", 4029),
    ]


# --- the pool being mined -------------------------------------------------------------------------------

BACKUP_FIRST_POOLS = (
    "{" + BMMINER_STATUS % (7, "2 Pool(s)") + ',"POOLS":['
    '{"POOL":0,"URL":"stratum+tcp://old.example.org:3333","Status":"Alive","Priority":1,"Stratum Active":true},'
    '{"POOL":1,"URL":"stratum+tcp://new.example.org:3333","Status":"Alive","Priority":0,"Stratum Active":true}'
    '],"id":1}'
)


def test_fleet_row_picks_the_first_priority_among_active_pools():
    fw = ScriptedFirmware({"summary": BMMINER_SUMMARY, "pools": BACKUP_FIRST_POOLS, "version": BMMINER_VERSION})
    try:
        assert fleet_row("127.0.0.1", fw.port, timeout=2).pool == "stratum+tcp://new.example.org:3333"
    finally:
        fw.close()


def test_summary_follows_switchpool(ours, control):
    control.stats.pools[1].stratum_active = True  # the miner holds both sessions open
    target = f"127.0.0.1:{ours.port}"
    rows = json.loads(run("summary", target, "--json").stdout)
    assert rows[0]["pool"] == "stratum+tcp://127.0.0.1:3333"
    assert run("switchpool", "1", target).exit_code == 0
    rows = json.loads(run("summary", target, "--json").stdout)
    assert rows[0]["pool"] == "stratum+tcp://127.0.0.1:3334"
