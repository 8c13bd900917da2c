import json
from pathlib import Path

import pytest

# Real block headers (public data), kept in the repo so every clone runs every test.
VECTORS = Path(__file__).resolve().parent / "data" / "vectors" / "headers.json"


def load_vectors() -> list[dict]:
    return json.loads(VECTORS.read_text())["headers"]


@pytest.fixture(scope="session")
def header_vectors() -> list[dict]:
    return load_vectors()
