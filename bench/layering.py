#!/usr/bin/python3
"""Benchmark: `apt-ostree install` end to end vs plain `apt-get install` in a mutable chroot.

For a small (minbase) and a large (~700 MB) base composed from bench/base-*.yaml, and for htop
and openssh-server: the wall time of `apt-ostree install -C PKG --sysroot S` (resolve, dpkg in the
sandbox, delta commit, new deployment written) against `apt-get install --no-download PKG` in a
writable copy of the same base, from the same lists and .debs. Also the peak RSS of the apt-ostree
process tree and the repository's growth against the new packages' unpacked size.

Sysroots, chroot copies and repositories live on a fresh ext4 file system made with mkfs.ext4's
defaults (journal on), as on the root partition of `compose disk-image` and of a Debian install,
in a loop-mounted image file. --host-fs runs in /var/tmp instead (see docs/benchmarks.md for why
that can differ: ext4 without a journal makes directory creation slow after mass deletions).

--release trixie composes both bases for Debian 13 instead (the same package sets; the host's
mirrors with the suites mapped, as compose does for a treefile without `repos`).

    make deb && /usr/bin/python3 bench/layering.py [--rounds N] [--host-fs] [--release R] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TOP))

from apt_ostree.core.layering import state_dirs  # noqa: E402
from apt_ostree.core.ostree import Repo  # noqa: E402
from apt_ostree.core.sysroot import Sysroot  # noqa: E402
from apt_ostree.run import unmount_below  # noqa: E402
from apt_ostree.sandbox import Bind, Sandbox  # noqa: E402
from bench.results import add_rows  # noqa: E402

CACHE = TOP / "_build/bench-cache"
BASES = {"small": TOP / "bench/base-small.yaml", "large": TOP / "bench/base-large.yaml"}
RELEASES = {"bookworm": "Debian 12", "trixie": "Debian 13"}  # base-*.yaml are bookworm's
PACKAGES = ("htop", "openssh-server")
FS_SIZE = 24 << 30  # sparse
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(TOP), "LC_ALL": "C.UTF-8"}


def cli(*args: str | Path) -> tuple[float, int]:
    """Run apt-ostree; return (wall seconds, peak RSS in MiB of it and its children)."""
    _sync()  # neither side pays for the writeback of what ran before it
    start = time.monotonic()
    proc = subprocess.Popen(["/usr/bin/python3", "-m", "apt_ostree.cli.main", *map(str, args)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    took = time.monotonic() - start
    assert proc.stderr is not None
    err = proc.stderr.read().decode(errors="replace")
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"apt-ostree {' '.join(map(str, args))} failed:\n{err[-2000:]}")
    # (wait4's ru_maxrss covers the process and the descendants it waited for: bwrap, dpkg, scripts)
    return took, usage.ru_maxrss // 1024


def _sync() -> None:
    """Twice: the first sync of the loop-mounted file system leaves the image file's pages dirty."""
    os.sync()
    os.sync()


def objects_size(repo: Path) -> int:
    return sum(f.stat().st_size for f in (repo / "objects").rglob("*") if f.is_file())


@dataclass
class Base:
    name: str
    sysroot: Path
    chroot: Path  # a plain Debian tree of the same commit (the baseline's template)
    size_mb: float


def treefile(name: str, release: str, work: Path) -> Path:
    if release == "bookworm":
        return BASES[name]
    path = work / f"base-{name}-{release}.yaml"
    path.write_text(f"include: {BASES[name]}\nreleasever: {release}\n")
    return path


def prepare(name: str, release: str, work: Path) -> Base:
    repo = work / "repo"
    cache = CACHE if release == "bookworm" else CACHE.with_name(f"{CACHE.name}-{release}")
    cli("compose", "tree", treefile(name, release, work), "--repo", repo, "--cachedir", cache)
    src = Repo.open(repo)
    checksum = src.resolve(f"bench/{name}")
    root = work / f"sysroot-{name}"
    s = Sysroot(root)
    root.mkdir()
    s.initialize("debian")
    s.repo().pull_local(src, checksum)
    s.repo().set_ref(None, f"bench/{name}", checksum)
    s.deploy_first("debian", checksum, f"bench/{name}", ["rw"])
    chroot = work / f"chroot-{name}"
    subprocess.run(["ostree", "checkout", f"--repo={repo}", "--force-copy", checksum, str(chroot)], check=True)
    shutil.move(str(chroot / "usr/etc"), chroot / "etc")  # a normal Debian root again
    # /var as the booted system has it (composed trees ship it as tmpfiles.d lines)
    subprocess.run(Sandbox(rootfs=chroot, capabilities=("ALL",)).argv(
        ["systemd-tmpfiles", "--create", "--prefix=/var"]), check=False, capture_output=True)
    size = sum(f.lstat().st_size for f in chroot.rglob("*") if f.is_file() and not f.is_symlink()) / 1e6
    return Base(name, root, chroot, size)


def baseline(base: Base, pkg: str, work: Path) -> float:
    """apt-get install in a writable copy of the base, from apt-ostree's lists and .debs (no network)."""
    state, cache = state_dirs(base.sysroot, "debian")
    copy = work / "chroot-copy"
    shutil.rmtree(copy, ignore_errors=True)
    subprocess.run(["cp", "-a", str(base.chroot), str(copy)], check=True)
    (copy / "usr/sbin/policy-rc.d").write_text("#!/bin/sh\nexit 101\n")
    (copy / "usr/sbin/policy-rc.d").chmod(0o755)
    sandbox = Sandbox(rootfs=copy, capabilities=("ALL",),  # (/run is a tmpfs in the sandbox)
                      binds=(Bind(state / "lists", "/run/bench/lists"),
                             Bind(cache / "archives", "/run/bench/archives")),
                      env={"DEBIAN_FRONTEND": "noninteractive"})
    argv = sandbox.argv(["apt-get", "install", "-y", "-q", "--no-download", "-o", "Dir::State::Lists=/run/bench/lists",
                         "-o", "Dir::Cache::archives=/run/bench/archives", "-o", "APT::Install-Recommends=false",
                         "-o", "APT::Sandbox::User=root", pkg])
    _sync()  # the copy's writeback is not part of apt-get's time
    start = time.monotonic()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    took = time.monotonic() - start
    shutil.rmtree(copy)
    return took


def unpacked_kb(sysroot: Path, checksum: str) -> int:
    """Installed-Size of the packages the layered commit added."""
    repo = Repo.open(sysroot / "ostree/repo")
    added = {n for n, _, _ in repo.commit(checksum).metadata["apt-ostree.layer.packages"]}
    status = (repo.read_file(checksum, "usr/share/dpkg/database/status") or b"").decode()
    total = 0
    for para in status.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in para.splitlines() if ": " in line and not line.startswith(" "))
        if fields.get("Package") in added:
            total += int(fields.get("Installed-Size", "0"))
    return total


@contextmanager
def bench_fs(host_fs: bool) -> Iterator[Path]:
    """A work directory: on a fresh journaled ext4 in an image file, or (``host_fs``) in /var/tmp."""
    work = Path(tempfile.mkdtemp(prefix="apt-ostree-bench-", dir="/var/tmp"))
    mnt = work / "fs"
    mounted = False
    try:
        if host_fs:
            yield work
            return
        image = work / "fs.img"
        with open(image, "wb") as f:
            f.truncate(FS_SIZE)
        subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
        mnt.mkdir()
        subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
        mounted = True
        yield mnt
    finally:
        if mounted:
            _unfreeze(mnt)
            unmount_below(mnt)
            mounted = subprocess.run(["umount", str(mnt)], check=False).returncode != 0
        if mounted:  # never delete through a mount
            print(f"cannot unmount {mnt}: left in place with {work}", file=sys.stderr)
        else:
            _unfreeze(work)
            shutil.rmtree(work, ignore_errors=True)


def _unfreeze(work: Path) -> None:
    # deployment directories are immutable (chattr +i), as on a real system
    for d in work.glob("sysroot-*/ostree/deploy/*/deploy/*"):
        subprocess.run(["chattr", "-i", str(d)], check=False, capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    parser.add_argument("--host-fs", action="store_true",
                        help="work in /var/tmp instead of a fresh journaled ext4 file system")
    parser.add_argument("--release", choices=RELEASES, default="bookworm", help="the Debian release of the bases")
    args = parser.parse_args()
    debian = RELEASES[args.release]
    rows = []
    overhead: dict[tuple[str, str], float] = {}
    fs = "/var/tmp (host fs)" if args.host_fs else "journaled ext4"
    with bench_fs(args.host_fs) as work:
        bases = [prepare(name, args.release, work) for name in BASES]
        for base in bases:
            cli("install", "--download-only", "--sysroot", base.sysroot, *PACKAGES)  # lists and .debs
            for pkg in PACKAGES:
                ours, theirs, rss = [], [], []
                growth = None
                for _ in range(args.rounds):
                    theirs.append(baseline(base, pkg, work))
                    repo = base.sysroot / "ostree/repo"
                    before = objects_size(repo)
                    t, r = cli("install", "-C", "--sysroot", base.sysroot, pkg)
                    ours.append(t)
                    rss.append(r)
                    if growth is None:
                        new = Sysroot.open(base.sysroot).deployments()[0].checksum
                        growth = (objects_size(repo) - before) / 1024 / max(unpacked_kb(base.sysroot, new), 1)
                    cli("uninstall", "--sysroot", base.sysroot, pkg)
                    cli("cleanup", "-r", "--sysroot", base.sysroot)
                    print(f"{base.name} {pkg}: apt-ostree {t:.2f}s ({r} MiB), apt-get {theirs[-1]:.2f}s",
                          file=sys.stderr)
                o, b = statistics.median(ours), statistics.median(theirs)
                overhead[(base.name, pkg)] = o - b
                rows.append(f"| {datetime.date.today()} | install {pkg} on the {base.name} {debian} base "
                            f"({base.size_mb:.0f} MB), resolve to deployment written | {o:.2f} s, "
                            f"peak RSS {max(rss)} MiB, repo growth "
                            f"{growth:.2f}x unpacked size | apt-get install in a chroot copy: {b:.2f} s | "
                            f"**{o / b:.2f}x** | {args.rounds} rounds, median, {fs} |")
    for pkg in PACKAGES:
        small, large = overhead[("small", pkg)], overhead[("large", pkg)]
        growth_ratio = f"**{large / small:.2f}x**" if small > 0 else "n/a (not slower than apt-get on the small base)"
        rows.append(f"| {datetime.date.today()} | time above apt-get, {pkg}: large vs small {debian} base | "
                    f"{large:+.2f} s | {small:+.2f} s | {growth_ratio} | {args.rounds} rounds, median, {fs} |")
    print("\n".join(rows))
    if not args.no_write:
        add_rows("<!-- bench/layering.py -->", "## Layering", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
