"""ruff and mypy run as tests (from the dev venv that `make check` creates)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

TOP = Path(__file__).resolve().parents[2]
VENV = TOP / "_build/venv/bin"


def tool(name: str) -> str:
    path = VENV / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make check` (it creates the dev venv)")
    return str(path)


def test_ruff() -> None:
    proc = subprocess.run([tool("ruff"), "check", "apt_ostree", "tests", "bench", "examples"], cwd=TOP,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy() -> None:
    proc = subprocess.run([tool("mypy")], cwd=TOP, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
