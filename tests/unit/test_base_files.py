"""The usr-merge names of paths (core/base_files.py)."""

from __future__ import annotations

import pytest

from apt_ostree.core.base_files import usr_name

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("path", "name"), [
    ("/bin/bash", "/usr/bin/bash"), ("/usr/bin/bash", "/usr/bin/bash"), ("/sbin/init", "/usr/sbin/init"),
    ("/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6"), ("/lib64", "/usr/lib64"),
    ("/etc/passwd", "/etc/passwd"), ("/binary/x", "/binary/x"), ("/libexec/x", "/libexec/x"), ("/", "/"),
])
def test_usr_name(path: str, name: str) -> None:
    assert usr_name(path) == name
