"""Flags that ask for different things are refused with one line (issue 15), before anything is read."""

from __future__ import annotations

import pytest

from tests.conftest import apt_ostree, error_lines

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("args", "words"), [
    (["upgrade", "--check", "--preview"], "--check and --preview ask for different things"),
    (["upgrade", "--preview", "--download-only"], "--preview and --download-only"),
    (["install", "--dry-run", "--download-only", "htop"], "--dry-run downloads nothing"),
    (["kargs", "--editor", "--append=quiet"], "--editor or --append/--delete/--replace, not both"),
])
def test_conflicting_flags(args: list[str], words: str) -> None:
    cli = apt_ostree(*args, "--sysroot", "/nonexistent", check=False)
    assert cli.returncode != 0 and "Traceback" not in cli.stderr, cli.stderr
    [line] = error_lines(cli)
    assert words in line, line
