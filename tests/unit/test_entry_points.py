"""The ways to run apt-ostree from a checkout: `python3 -m apt_ostree` and bin/apt-ostree (no PYTHONPATH)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from apt_ostree import __version__

pytestmark = pytest.mark.unit

TOP = Path(__file__).resolve().parents[2]
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


@pytest.mark.parametrize("argv, cwd", [(["/usr/bin/python3", "-m", "apt_ostree"], TOP),
                                       ([str(TOP / "bin/apt-ostree")], Path("/"))])
def test_runs_from_a_checkout(argv: list[str], cwd: Path) -> None:
    done = subprocess.run([*argv, "--version"], cwd=cwd, env=ENV, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == f"apt-ostree {__version__}", done.stderr
    usage = subprocess.run([*argv, "finalize-deployment"], cwd=cwd, env=ENV, capture_output=True, text=True)
    assert usage.returncode == 2 and usage.stderr.splitlines()[0] == (
        "error: finalize-deployment: give the staged deployment's checksum, or --allow-missing-checksum")
