"""apt_ostree/core/mountns.py: the layering overlay's private mount namespace, from inside a chroot.

setns(CLONE_NEWNS) moves the calling thread's root and working directory to the namespace's root; a
command run in a chroot (the booted-sysroot helper, the other-release tier, an admin's rescue chroot)
went on outside it after the layer, so its deployment was written to the host's path (found by CI:
"Unable to find expected deployment root"). Here a process chroots into a directory, mounts a tmpfs in
the private namespace, and after leaving it checks its root, its working directory and that the mount
stayed behind."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import TOP

pytestmark = pytest.mark.root

SCRIPT = r"""
import os, sys
from apt_ostree.core.mountns import private_mounts
jail = sys.argv[1]
os.makedirs(jail + "/proc", exist_ok=True)
os.makedirs(jail + "/work/mnt", exist_ok=True)
os.system(f"mount -t proc proc {jail}/proc")
with open(jail + "/marker", "w") as f:
    f.write("jail\n")
os.chroot(jail)
os.chdir("/work")
root, cwd = os.stat("/"), os.stat(".")
with private_mounts():
    with private_mounts():  # nested: the outer namespace
        assert os.system("mount -t tmpfs tmpfs /work/mnt") == 0
        open("/work/mnt/inside", "w").close()
assert (os.stat("/").st_dev, os.stat("/").st_ino) == (root.st_dev, root.st_ino), "root moved"
assert (os.stat(".").st_dev, os.stat(".").st_ino) == (cwd.st_dev, cwd.st_ino), "cwd moved"
assert open("/marker").read() == "jail\n"
assert not os.path.exists("/work/mnt/inside"), "the private mount leaked"
print("ok")
"""


def _in_jail(jail: Path, bind_itself: bool) -> subprocess.CompletedProcess[str]:
    """SCRIPT in a chroot at ``jail`` (the host's /usr and /etc bound in), in a mount namespace of its own."""
    jail.mkdir()
    for d in ("usr", "lib", "lib64", "bin", "sbin", "etc"):
        if (Path("/") / d).is_symlink():
            os.symlink(os.readlink(f"/{d}"), jail / d)
        else:
            (jail / d).mkdir()
    script = (f"mount --bind {jail} {jail} && " if bind_itself else "") + \
        f"mount --bind /usr {jail}/usr && mount --bind /etc {jail}/etc && exec /usr/bin/python3 -c \"$0\" {jail}"
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(TOP), "LC_ALL": "C.UTF-8"}
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, SCRIPT],
                          capture_output=True, text=True, env=env)


def test_private_mounts_keep_the_chroot(tmp_path: Path) -> None:
    proc = _in_jail(tmp_path / "jail", bind_itself=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]


def test_a_chroot_that_is_no_mount_point_is_named(tmp_path: Path) -> None:
    """bwrap needs / to be a mount point too: the error says so, with the fix."""
    proc = _in_jail(tmp_path / "jail", bind_itself=False)
    assert proc.returncode != 0
    assert "making / a slave mount: / is not a mount point" in proc.stderr, proc.stderr[-3000:]
