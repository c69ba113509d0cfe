"""A private mount namespace for a transaction's mounts (the layering overlay).

Mounts made while :func:`private_mounts` is active live in a namespace of their own (a slave of the
host's: the host's mounts are seen, ours do not propagate back), entered by the calling thread and
inherited by the processes it starts (mount, APT, dpkg, bwrap). When the transaction is killed, the
kernel drops the namespace with its last process and the mounts with it: nothing is left mounted on the
host, and no later ``cleanup -b`` can delete a directory under a live mount. On leaving, the thread goes
back to the namespace it came from (setns), so that what follows (apply-live's /usr) mounts on the host.
setns also moves the thread's root and working directory to the namespace's root: both are put back,
or a command run in a chroot would go on outside it after the layer (the thread has its own root since
unshare(CLONE_NEWNS) implies CLONE_FS).
"""

from __future__ import annotations

import ctypes
import errno
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from apt_ostree.errors import LayeringError

CLONE_NEWNS = 0x00020000
MS_REC = 0x4000
MS_SLAVE = 1 << 19

_libc = ctypes.CDLL(None, use_errno=True)
_depth = threading.local()


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        if err == errno.EINVAL and what.startswith("making /"):
            raise LayeringError(f"{what}: / is not a mount point",
                                hint="in a chroot, bind-mount its root onto itself first (mount --bind DIR DIR)")
        raise LayeringError(f"{what}: {os.strerror(err)}",
                            hint="apt-ostree needs root (CAP_SYS_ADMIN) for a change")


@contextmanager
def private_mounts() -> Iterator[None]:
    """Run the block in a private mount namespace (nested uses share the outer one)."""
    if getattr(_depth, "n", 0):
        _depth.n += 1
        try:
            yield
        finally:
            _depth.n -= 1
        return
    home = os.open("/proc/thread-self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    root = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    cwd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
        try:
            _check(_libc.mount(b"none", b"/", None, MS_REC | MS_SLAVE, None), "making / a slave mount")
            _depth.n = 1
            try:
                yield
            finally:
                _depth.n = 0
        finally:
            _check(_libc.setns(home, CLONE_NEWNS), "setns back to the host's mount namespace")
            os.fchdir(root)
            os.chroot(".")
            os.fchdir(cwd)
    finally:
        for fd in (home, root, cwd):
            os.close(fd)
