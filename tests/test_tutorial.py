"""The tutorial and the README state only what the code does: their deterministic commands, run as pasted.

Every ``$ miner ...`` line of a ``console`` block in docs/how-mining-works.md and README.md whose output
cannot depend on the clock, the machine or a node (``explain``, ``grind``, ``scan``, ``--version``; not
``explain odds --measure``, which times this machine) is run in a shell from the repository root, and its
output must match the block byte for byte. A command whose shown output is cut with a ``...`` line must
still run as pasted. The tutorial's hashlib snippet, run as pasted, must print the hash ``explain job``
finds for the same captured share.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "docs" / "how-mining-works.md", ROOT / "README.md"]
DETERMINISTIC = re.compile(r"^miner (explain|grind|scan|--version)\b")
ELIDED = "..."


@dataclass(frozen=True)
class Example:
    doc: str
    line: int
    command: str
    output: str

    @property
    def elided(self) -> bool:
        return any(line.strip() == ELIDED for line in self.output.splitlines())

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}"


def examples() -> list[Example]:
    """Each ``$ command`` in a console block with the lines shown under it."""
    found = []
    for path in DOCS:
        block: list[tuple[int, str]] | None = None
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if block is None:
                if line.strip() == "```console":
                    block = []
                continue
            if line.strip() == "```":
                found += _split(path.relative_to(ROOT).as_posix(), block)
                block = None
            else:
                block.append((number, line))
    return found


def _split(doc: str, block: list[tuple[int, str]]) -> list[Example]:
    out: list[Example] = []
    current: tuple[int, str] | None = None
    lines: list[str] = []
    for number, line in block:
        if line.startswith("$ "):
            if current is not None:
                out.append(Example(doc, current[0], current[1], "\n".join(lines)))
            current, lines = (number, line[2:]), []
        elif current is not None:
            lines.append(line)
    if current is not None:
        out.append(Example(doc, current[0], current[1], "\n".join(lines)))
    return out


def _runnable(example: Example) -> bool:
    command = example.command.split("#", 1)[0].strip()
    clocked = "--measure" in command.split()
    return bool(DETERMINISTIC.match(command)) and "$" not in command and "/tmp/" not in command and not clocked


RUNNABLE = [e for e in examples() if _runnable(e)]


def run_as_pasted(command: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("COLUMNS", None)
    return subprocess.run(
        ["bash", "-c", command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


def test_the_docs_have_examples_to_check() -> None:
    shown = {e.command.split()[1] for e in RUNNABLE}
    assert {"explain", "grind", "scan"} <= shown, shown


@pytest.mark.parametrize("example", RUNNABLE, ids=str)
def test_example_runs_as_pasted_and_prints_what_the_doc_shows(example: Example) -> None:
    result = run_as_pasted(example.command)
    assert result.returncode == 0, (example.command, result.stderr)
    if example.elided:
        return
    assert result.stdout.rstrip("\n") == example.output, f"{example} differs:\n{result.stdout}"


def python_blocks(path: Path) -> list[str]:
    """The ``python`` code blocks of a document, in order."""
    return re.findall(r"^```python\n(.*?)^```$", path.read_text(), flags=re.S | re.M)


def test_the_hashlib_snippet_recomputes_the_captured_share() -> None:
    from miner import teach

    snippets = [code for code in python_blocks(DOCS[0]) if "hashlib" in code and ".jsonl" in code]
    assert len(snippets) == 1, "the tutorial has one hashlib snippet over a capture"
    capture = re.search(r'open\("([^"]+\.jsonl)"\)', snippets[0]).group(1)
    result = subprocess.run([sys.executable, "-c", snippets[0]], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    walked = teach.job_from_capture(str(ROOT / capture))
    assert walked["verdict"]["accepted"] is True
    assert result.stdout.strip() == walked["hash_display_hex"]
    assert f"It prints `{walked['hash_display_hex']}`" in DOCS[0].read_text()
    assert re.findall(r"^(?:import|from) .*$", snippets[0], flags=re.M) == ["import hashlib, json"]  # nothing else


def test_the_recorded_capture_came_from_miner_mine_against_the_pool_the_tutorial_starts() -> None:
    """`miner pool --nbits 1d00ffff --difficulty 0.001 --no-vardiff` and `miner mine ... -p hunter2 --capture`."""
    import json

    from miner.pool import EmbeddedChain

    path = ROOT / "tests" / "data" / "explain_mine_capture.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    messages = [(r["direction"], json.loads(r["line"])) for r in records]
    assert "hunter2" not in path.read_text()
    assert next(m for _, m in messages if m.get("method") == "mining.authorize")["params"] == ["student.laptop", "***"]
    assert next(m for _, m in messages if m.get("method") == "mining.set_difficulty")["params"] == [0.001]
    notify = next(m for _, m in messages if m.get("method") == "mining.notify")["params"]
    first = EmbeddedChain(nbits=0x1D00FFFF).current().stratum_job(clean=True).to_params()
    assert [notify[i] for i in (1, 2, 3, 4, 5, 6)] == [first[i] for i in (1, 2, 3, 4, 5, 6)]
    assert messages[0] == ("out", {"id": 1, "method": "mining.subscribe", "params": ["sha256d-miner"]})
    text = DOCS[0].read_text()
    assert "miner pool --nbits 1d00ffff --difficulty 0.001 --no-vardiff" in text
    assert "-p hunter2 -t 1 --capture" in text


def test_the_readme_python_examples_run_from_the_repository_root() -> None:
    blocks = python_blocks(ROOT / "README.md")
    assert blocks, "the README's teaching API section shows Python"
    for code in blocks:
        result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, (code, result.stderr)
        for line in code.splitlines():  # a printed value the comment states must be what prints
            shown = re.search(r"print\(.*\)\s+# ([0-9a-f]{64}|\d+)$", line)
            if shown:
                assert shown.group(1) in result.stdout.split(), (line, result.stdout)
