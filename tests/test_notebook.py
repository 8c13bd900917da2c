"""docs/how-mining-works.ipynb runs, cell by cell, in the interpreter running the tests, and ships its plots.

The notebook is executed with nbclient (Jupyter's own runner) on a kernel of this very interpreter, so
it imports the checkout under test and nothing installed elsewhere; a cell that raises fails the test.
``python tests/test_notebook.py --write`` executes it the same way and saves the outputs into the file.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "docs" / "how-mining-works.ipynb"
KERNEL = "sha256d-miner-tests"  # a name no user kernel has: the kernel is this interpreter, whatever else is set up
CELL_TIMEOUT = 600


def execute(kernel_dir: Path):
    """The notebook, executed in docs/ (as Jupyter runs it), on a kernel of ``sys.executable``."""
    import nbformat
    from nbclient import NotebookClient

    spec = kernel_dir / "kernels" / KERNEL
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "sha256d-miner (tests)",
                "language": "python",
            }
        )
    )
    previous = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(kernel_dir), previous]))
    try:
        nb = nbformat.read(NOTEBOOK, as_version=4)
        client = NotebookClient(
            nb,
            kernel_name=KERNEL,
            timeout=CELL_TIMEOUT,
            resources={"metadata": {"path": str(NOTEBOOK.parent)}},
        )
        client.execute()  # CellExecutionError on the first cell that raises
    finally:
        if previous is None:
            os.environ.pop("JUPYTER_PATH", None)
        else:
            os.environ["JUPYTER_PATH"] = previous
    return nb


def _errors(nb) -> list[str]:
    return [
        f"{output.get('ename')}: {output.get('evalue')}"
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]


def test_the_notebook_runs_green(tmp_path: Path) -> None:
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("matplotlib")
    nb = execute(tmp_path)
    assert _errors(nb) == []
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert images, "the odds plot is drawn inline"
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f" in text  # the genesis hash
    assert "nonce=46714" in text  # the lowest nonce meeting 1f00ffff, as the markdown tour finds it


def test_the_committed_notebook_shows_its_outputs_and_plots() -> None:
    nb = json.loads(NOTEBOOK.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(c.get("outputs") for c in code), "every code cell's output is committed"
    assert all(c.get("execution_count") for c in code)
    assert [c["execution_count"] for c in code] == list(range(1, len(code) + 1)), "run top to bottom, once"
    assert not [o for c in code for o in c["outputs"] if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for c in code for o in c["outputs"]), "the plots show on GitHub"


if __name__ == "__main__":  # refresh the committed outputs
    import tempfile

    import nbformat

    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/test_notebook.py --write")
    with tempfile.TemporaryDirectory() as scratch:
        executed = execute(Path(scratch))
    nbformat.write(executed, NOTEBOOK)
    print(f"wrote {NOTEBOOK.relative_to(ROOT)}")
