"""initramfs-etc: tracked files of /etc as an overlay initrd (rpm-ostree's initramfs-etc).

The archive is a cpio "newc" (the kernel's initramfs format), gzip-compressed, with the tracked
files under ``etc/`` and every parent directory; a tracked directory brings what is in it. The
kernel unpacks it after the initramfs, so its files replace the initramfs's own. It is written by
this module (the format is a 110-byte header per entry), so the host needs no cpio, and it is
reproducible: the same files give the same bytes (inode numbers are positions, gzip's time is 0),
and so the same sha256, which names it in /boot/ostree/initramfs-overlays/.
"""

from __future__ import annotations

import gzip
import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from apt_ostree.errors import UsageError

MAX_SIZE = 64 * 1024 * 1024  # an overlay is a few configuration files; more is a mistake (it is in RAM at boot)


def _entries(etc: Path, tracked: Sequence[str]) -> Iterator[tuple[str, Path]]:
    """(archive name, source path) of every tracked file, its parents first."""
    for path in tracked:
        rel = path.removeprefix("/etc/")
        source = etc / rel
        if not source.is_symlink() and not source.exists():
            raise UsageError(f"initramfs-etc: tracked file {path} does not exist",
                             hint=f"create it, or: apt-ostree initramfs-etc --untrack={path}")
        parts = Path("etc", rel).parts
        for i in range(1, len(parts)):
            yield "/".join(parts[:i]), etc.joinpath(*parts[1:i]) if i > 1 else etc
        yield "/".join(parts), source
        if source.is_dir() and not source.is_symlink():
            for root, dirs, files in os.walk(source):
                dirs.sort()
                for name in sorted(dirs + files):
                    full = Path(root) / name
                    yield f"etc/{full.relative_to(etc)}", full


def _header(ino: int, st: os.stat_result, size: int, name: bytes) -> bytes:
    fields = (ino, st.st_mode, st.st_uid, st.st_gid, 1, int(st.st_mtime), size, 0, 0, 0, 0, len(name) + 1, 0)
    return b"070701" + b"".join(b"%08X" % f for f in fields)


def _pad(n: int) -> bytes:
    return b"\0" * (-n % 4)


def cpio(entries: Iterable[tuple[str, Path]]) -> bytes:
    """A newc archive of ``entries`` (name, path): directories, regular files and symbolic links."""
    out = bytearray()
    seen: set[str] = set()
    for ino, (name, path) in enumerate(entries, start=1):
        if name in seen:
            continue
        seen.add(name)
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            data = os.readlink(path).encode()
        elif stat.S_ISREG(st.st_mode):
            data = path.read_bytes()
        elif stat.S_ISDIR(st.st_mode):
            data = b""
        else:
            raise UsageError(f"initramfs-etc: /{name} is not a file, directory or symbolic link")
        encoded = name.encode()
        head = _header(ino, st, len(data), encoded) + encoded + b"\0"
        out += head + _pad(len(head)) + data + _pad(len(data))
        if len(out) > MAX_SIZE:
            raise UsageError(f"initramfs-etc: the tracked files are larger than {MAX_SIZE // 2**20} MB",
                             hint="track configuration files, not data")
    trailer = b"TRAILER!!!"
    head = b"070701" + b"".join(b"%08X" % f for f in (0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, len(trailer) + 1, 0))
    head += trailer + b"\0"
    out += head + _pad(len(head))
    return bytes(out)


def overlay_initrd(etc: Path, tracked: Sequence[str]) -> bytes:
    """The gzip'd cpio of the ``tracked`` paths (below /etc), read from ``etc``."""
    return gzip.compress(cpio(_entries(etc, tracked)), compresslevel=6, mtime=0)
