"""A passed test's temporary directory is removed when it ends, or a run's sysroots and repositories fill
the disk (about 400 MB each: the suite's temporary trees came to 11 GB, beside _build's 20). A failed
test's stays, for looking into. Deployment directories are immutable (libostree's chattr +i): that flag is
dropped where it stops the removal. Nothing below a mount point is touched: a tree with a mount left in it
stays where it is (a test that leaks a mount is a bug of its own, not something to delete through)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any


def mounts_below(path: Path) -> list[str]:
    prefix = str(path.resolve()).rstrip("/") + "/"
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as info:
        for line in info:
            point = line.split()[4].encode().decode("unicode_escape")
            if point.startswith(prefix) or point == prefix[:-1]:
                found.append(point)
    return found


def _unfreeze(func: Callable[..., Any], path: str, _exc: Any) -> None:
    """rmtree's onerror: a deployment directory (or its parent) is immutable: clear the flag, try again."""
    for target in (path, os.path.dirname(path)):
        subprocess.run(["chattr", "-i", target], check=False, capture_output=True)
    func(path)


def remove_tree(path: Path) -> bool:
    """Remove PATH unless something is mounted below it; False when it stays."""
    if not path.exists() or mounts_below(path):
        return False
    try:
        shutil.rmtree(path, onerror=_unfreeze)
    except OSError:
        return False
    return True
