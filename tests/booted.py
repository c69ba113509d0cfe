"""A sysroot directory booted without a virtual machine, for the root and dbus tiers.

libostree 2022.7 takes a sysroot as the booted one when /run/ostree-booted exists, the sysroot
path is "/" and "/" is one of its deployment directories (ostree-sysroot.c compares device and
inode). So each command runs in a private mount namespace (and PID namespace: `ostree admin`
compares its mount namespace with PID 1's), chrooted into the booted deployment
as a real boot arranges it: the sysroot on /sysroot (its /ostree symlink resolves there), the
boot directory on /boot, the stateroot's /var on /var, and a /run that lasts until the next
"reboot". The host's /usr and /etc are bound over the deployment's, so that the host's Python,
libostree, APT, dpkg and bwrap run (apt-ostree reaches the deployment's own /etc through
/sysroot, as on a booted system). Changes made there are really staged (stage_tree,
/run/ostree/staged-deployment); :meth:`BootedSysroot.reboot` finalizes them with
`ostree admin finalize-staged`, which ostree-finalize-staged.service runs at shutdown, and then
boots the new default deployment.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from apt_ostree.core.sysroot import Sysroot
from tests.conftest import TOP, Cli

SRC = "/run/apt-ostree-src"
# $1 sysroot, $2 deployment, $3 run directory, $4 stateroot /var; then the command
ENTER = r"""
set -eu
S=$1 D=$2 RUN=$3 VAR=$4
shift 4
mount --bind "$D" "$D"  # / is a mount point (bwrap makes it a slave mount)
mount --rbind "$S" "$D/sysroot"
mount --bind "$S/boot" "$D/boot"
mount --bind "$VAR" "$D/var"
mkdir -p "$VAR/tmp"
mount --bind /var/tmp "$D/var/tmp"
mount --bind /usr "$D/usr"
mount --bind /etc "$D/etc"
mount --bind "$RUN" "$D/run"
mount --bind "$TOP" "$D/run/apt-ostree-src"
mount -t proc proc "$D/proc"
mount --rbind /dev "$D/dev"
mount --rbind /sys "$D/sys"
mount --bind /tmp "$D/tmp"
exec chroot "$D" "$@"
"""


class BootedSysroot:
    """The sysroot at ``path``, booted into its default deployment."""

    def __init__(self, path: Path, osname: str = "debian") -> None:
        self.path = path
        self.osname = osname
        self.boots = 0
        self.run_dir = path.parent / f"{path.name}-run"
        self.boot()

    def boot(self) -> None:
        """A fresh /run and the default deployment as /."""
        self.boots += 1
        shutil.rmtree(self.run_dir, ignore_errors=True)
        (self.run_dir / "apt-ostree-src").mkdir(parents=True)
        (self.run_dir / "ostree-booted").touch()
        self.deployment = Sysroot.open(self.path).deployments()[0]

    def run(self, *argv: str | Path, check: bool = True) -> Cli:
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": SRC, "LC_ALL": "C.UTF-8",
               "APT_OSTREE_NO_DAEMON": "1", "TOP": str(TOP)}
        var = self.path / "ostree/deploy" / self.osname / "var"
        proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "--pid", "--fork",
                               "sh", "-c", ENTER, "enter",
                               str(self.path), str(self.deployment.path), str(self.run_dir), str(var),
                               *map(str, argv)], env=env, capture_output=True, text=True)
        if check and proc.returncode != 0:
            sys.stderr.write(proc.stderr[-3000:])
            raise AssertionError(f"{' '.join(map(str, argv))} (booted) exited {proc.returncode}")
        return Cli(proc.returncode, proc.stdout, proc.stderr)

    def apt_ostree(self, *args: str | Path, check: bool = True) -> Cli:
        return self.run("/usr/bin/python3", "-m", "apt_ostree.cli.main", *args, check=check)

    def reboot(self) -> None:
        """Shut down (finalize the staged deployment, with its /etc merge) and boot the new default."""
        self.run("ostree", "admin", "finalize-staged")
        self.boot()
