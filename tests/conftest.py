import json
from pathlib import Path

import pytest

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors" / "headers.json"


def load_vectors() -> list[dict]:
    if not VECTORS.exists():
        pytest.skip(f"real header vectors not found at {VECTORS}")
    return json.loads(VECTORS.read_text())["headers"]


@pytest.fixture(scope="session")
def header_vectors() -> list[dict]:
    return load_vectors()
