"""Issue 15's fixes, each with its regression test: state read under the sysroot's lock, crafted
package fields, kernel arguments that would break the boot entry, treefile refs."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from apt_ostree.core import deploy
from apt_ostree.core.sysroot import Sysroot
from apt_ostree.progress import Progress
from tests.conftest import TOP, apt_ostree
from tests.root.test_deployments import status

pytestmark = pytest.mark.root


def deploy_dirs(root: Path) -> set[str]:
    return {p.name for p in (root / "ostree/deploy/debian/deploy").iterdir() if p.is_dir()}


def listed(root: Path) -> set[str]:
    return {f"{d['checksum']}.{d['serial']}" for d in status(root)}


def test_a_change_read_before_the_lock_keeps_what_another_command_deployed(sysroot: Path) -> None:
    """A Sysroot loaded before another command deployed: under the lock it reads the list again, so
    the other deployment is neither dropped from the list nor left as an orphan directory."""
    early = Sysroot.open(sysroot)
    apt_ostree("kargs", "--sysroot", sysroot, "--append=between")
    between = status(sysroot)[0]
    with early.locked():
        d = deploy.set_kargs(early, ["root=LABEL=ostree-root", "rw", "between", "late"], Progress())
    now = status(sysroot)
    assert deploy_dirs(sysroot) == listed(sysroot)
    assert [x["serial"] for x in now] == [d.serial, between["serial"]]  # (the new one, then the one between)


def test_kargs_editor_beside_another_change(sysroot: Path, tmp_path: Path) -> None:
    """kargs --editor that takes seconds while another kargs change lands: both changes are in the
    newest deployment, no deployment is lost."""
    editor = tmp_path / "slow-editor"
    editor.write_text("#!/bin/sh\nsleep 5\nsed -i '1s/$/ from-editor/' \"$1\"\n")
    editor.chmod(0o755)
    env = {**os.environ, "EDITOR": str(editor), "PYTHONPATH": str(TOP)}
    slow = subprocess.Popen(["/usr/bin/python3", "-m", "apt_ostree.cli.main", "kargs", "--sysroot", str(sysroot),
                             "--editor"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    apt_ostree("kargs", "--sysroot", sysroot, "--append=between")
    out, err = slow.communicate(timeout=120)
    assert slow.returncode == 0, err
    newest = status(sysroot)[0]
    kargs = apt_ostree("kargs", "--sysroot", sysroot).stdout.split()
    assert "between" in kargs and "from-editor" in kargs, (kargs, newest)
    assert deploy_dirs(sysroot) == listed(sysroot)
