"""The part of apply-live that writes the running /usr and /etc, in a mount namespace of its own.

apt_ostree.core.live starts it as ``unshare --mount --propagation slave /usr/bin/python3 -m
apt_ostree.core.live_apply`` (SPEC on stdin) after libostree's transient unlock put a read-only overlay on
/usr. Here, and only here, that overlay is remounted read-write: every other process keeps
seeing a read-only /usr, whose files change under it (the overlay is one file system).
SPEC is JSON: ``repo`` (the sysroot's repository), ``target`` (the commit), ``paths`` (every
path below /usr that may differ from the target), ``remount`` (false when /usr is already
writable: a development unlock), ``delay`` (seconds after each path: tests interrupt it there).

Each path becomes what it is in the target: checked out as new files over what is there
(libostree's union checkout, a rename per file; never hard links into the repository), or
removed when the target has none. /etc follows /usr/etc as libostree's 3-way merge would:
a file the admin left as the old default is updated (or removed); one they changed is kept,
and listed. A summary goes to stdout as JSON: {"files": N, "etc_kept": [...]}.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import time
from pathlib import Path

from apt_ostree.core.ostree import Repo
from apt_ostree.run import run

USR_ETC = "/usr/etc"


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def same(a: Path, b: Path) -> bool:
    """``a`` and ``b`` are the same entry: both absent, or of one type, mode and owner, with one
    content (a file's bytes, a link's target)."""
    sa, sb = _lstat(a), _lstat(b)
    if sa is None or sb is None:
        return sa is None and sb is None
    if (sa.st_mode, sa.st_uid, sa.st_gid) != (sb.st_mode, sb.st_uid, sb.st_gid):
        return False
    if stat.S_ISLNK(sa.st_mode):
        return os.readlink(a) == os.readlink(b)
    if stat.S_ISREG(sa.st_mode):
        if sa.st_size != sb.st_size:
            return False
        with open(a, "rb") as fa, open(b, "rb") as fb:
            while True:
                ca, cb = fa.read(1 << 16), fb.read(1 << 16)
                if ca != cb:
                    return False
                if not ca:
                    return True
    return True


def remove(path: Path) -> None:
    st = _lstat(path)
    if st is None:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        path.unlink()


def copy_entry(src: Path, dst: Path) -> None:
    """``dst`` made a copy of ``src`` (a directory: itself, not its content), owner and mode kept;
    a file replaced by a rename."""
    st = os.lstat(src)
    if stat.S_ISDIR(st.st_mode):
        if not dst.is_dir() or dst.is_symlink():
            remove(dst)
            dst.mkdir()
        os.chown(dst, st.st_uid, st.st_gid)
        os.chmod(dst, stat.S_IMODE(st.st_mode))
        return
    tmp = dst.with_name(f".{dst.name}.apt-ostree-live")
    remove(tmp)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), tmp)
    else:
        shutil.copy2(src, tmp, follow_symlinks=False)
    os.lchown(tmp, st.st_uid, st.st_gid)
    if _lstat(dst) is not None and stat.S_ISDIR(os.lstat(dst).st_mode):
        shutil.rmtree(dst)
    os.rename(tmp, dst)


def _under(path: str, tops: set[str]) -> bool:
    parent = os.path.dirname(path)
    while parent not in ("/", ""):
        if parent in tops:
            return True
        parent = os.path.dirname(parent)
    return False


def apply_usr(repo: Repo, target: str, paths: list[str], delay: float) -> int:
    """Make each of ``paths`` what it is in ``target``; the number of paths written or removed."""
    written, covered = 0, set[str]()
    gone: list[Path] = []
    for path in sorted(paths):
        if _under(path, covered):
            continue  # (inside a directory checked out whole)
        kind = repo.kind(target, path)
        dest = Path(path)
        existing = _lstat(dest)
        if kind is None:
            gone.append(dest)
            continue
        if kind == "dir":
            if existing is not None and stat.S_ISDIR(existing.st_mode):
                continue  # (its entries are paths of their own)
            remove(dest)
            repo.checkout_copy(target, path, dest)
            covered.add(path)
        else:
            if existing is not None and stat.S_ISDIR(existing.st_mode):
                shutil.rmtree(dest)
            repo.checkout_copy(target, path, dest.parent)
        written += 1
        if delay:
            time.sleep(delay)
    for dest in sorted(gone, reverse=True):
        remove(dest)
        written += 1
    return written


def locally_changed(paths: list[str]) -> list[str]:
    """The /etc counterparts of the /usr/etc ``paths`` that differ from the default they came from
    (read before /usr changes)."""
    return [path for path in paths if not same(Path("/etc" + path[len(USR_ETC):]), Path(path))]


def apply_etc(paths: list[str], kept: list[str]) -> None:
    """/etc follows /usr/etc (already the target's) for ``paths``, except ``kept`` and what is below them."""
    skip = set(kept)
    gone = []
    for path in sorted(paths):
        if path in skip or _under(path, skip):
            continue
        src, dst = Path(path), Path("/etc" + path[len(USR_ETC):])
        if _lstat(src) is None:
            gone.append(dst)
        elif dst.parent.is_dir():
            copy_entry(src, dst)
    for dst in sorted(gone, reverse=True):
        remove(dst)


def main(argv: list[str]) -> int:
    spec = json.load(sys.stdin)
    if spec["remount"]:
        run(["mount", "--options-source=disable", "-o", "remount,rw", "/usr"], what="remount /usr read-write")
    repo = Repo.open(Path(spec["repo"]))
    paths: list[str] = spec["paths"]
    etc = [p for p in paths if p.startswith(USR_ETC + "/")]
    kept = locally_changed(etc)
    files = apply_usr(repo, spec["target"], paths, float(spec.get("delay", 0)))
    apply_etc(etc, kept)
    json.dump({"files": files, "etc_kept": ["/etc" + p[len(USR_ETC):] for p in kept]}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
