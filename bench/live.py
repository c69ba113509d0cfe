#!/usr/bin/python3
"""Benchmark: `apt-ostree install -A htop` end to end in a booted guest vs plain `apt-get install htop`
in a chroot of the same base, in the same guest.

A Debian 13 image (examples/trixie.yaml, composed here unless --repo/--ref name one) is written
to a BIOS disk and booted in QEMU (TCG: this machine's /dev/kvm cannot boot Debian's kernels, so
both sides run emulated, in the same guest, and only their ratio means something). In the guest,
each round times:

- apt-ostree: the whole `apt-ostree install -A -C htop` (through apt-ostreed): resolution against
  the base's dpkg database, dpkg in the sandbox, the layer's commit, the staged deployment, then the
  live part: the diff, the transient unlock (first round only), the files written into /usr, the
  /etc update. Between rounds (untimed): `apt-ostree apply-live --reset` and `cleanup -p`.
- baseline: `apt-get install -y --no-download htop` in a fresh `ostree checkout` of the booted
  commit (/usr/etc copied to /etc), with apt-ostree's package lists and .debs copied in (the same
  lists and the same .deb), in `chroot`.

    make deb && /usr/bin/python3 bench/live.py [--rounds N] [--repo REPO --ref REF] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TOP))

from bench.results import add_rows  # noqa: E402
from tests.vm.qemu import Guest, make_ssh_key  # noqa: E402

CACHE = TOP / "_build/bench-cache"
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(TOP), "LC_ALL": "C.UTF-8"}
PACKAGE = "htop"
CHROOT = "/var/tmp/bench-chroot"
APT_GET = (f"DEBIAN_FRONTEND=noninteractive chroot {CHROOT} apt-get install -y -q --no-download "
           "-o APT::Install-Recommends=false -o APT::Sandbox::User=root")


def apt_ostree(*args: str | Path) -> None:
    subprocess.run(["/usr/bin/python3", "-m", "apt_ostree.cli.main", *map(str, args)], env=ENV, check=True,
                   stdout=subprocess.DEVNULL)


def image(repo: Path | None, ref: str | None) -> tuple[Path, str]:
    if repo is not None and ref is not None:
        return repo, ref
    repo, ref = CACHE / "live-repo", "bench/trixie/live"
    subprocess.run(["ostree", "init", f"--repo={repo}", "--mode=bare"], check=True)
    apt_ostree("compose", "tree", TOP / "examples/trixie.yaml", "--repo", repo, "--cachedir", CACHE / "compose",
               "--no-parent")
    out = subprocess.run(["ostree", "refs", f"--repo={repo}"], capture_output=True, text=True, check=True).stdout
    return repo, next(r for r in out.split() if "trixie" in r)


def timed(g: Guest, cmd: str) -> float:
    start = time.monotonic()
    g.run(cmd, timeout=1800)
    return time.monotonic() - start


def baseline_setup(g: Guest) -> None:
    """A plain Debian root of the booted commit, with apt-ostree's lists and .debs."""
    g.run(f"(umount -R {CHROOT}/proc {CHROOT}/dev 2>/dev/null; rm -rf --one-file-system {CHROOT}) && "
          f"ostree checkout --repo=/ostree/repo --force-copy "
          f"$(apt-ostree status --json | python3 -c 'import json,sys; print(next(d[\"checksum\"] for d in "
          f"json.load(sys.stdin)[\"deployments\"] if d[\"booted\"]))') {CHROOT} && "
          f"cp -a {CHROOT}/usr/etc/. {CHROOT}/etc/ && "
          f"mkdir -p {CHROOT}/var/lib {CHROOT}/var/cache && /usr/bin/python3 -c 'import pathlib, sys; "
          f"from apt_ostree.core import layout; layout.make_state_links(pathlib.Path(sys.argv[1]))' {CHROOT} && "
          f"printf '#!/bin/sh\\nexit 101\\n' > {CHROOT}/usr/sbin/policy-rc.d && "
          f"chmod 755 {CHROOT}/usr/sbin/policy-rc.d && "
          f"mkdir -p {CHROOT}/var/log/apt {CHROOT}/var/tmp && mount -t proc proc {CHROOT}/proc && "
          f"mount --bind /dev {CHROOT}/dev && mount --bind /dev/pts {CHROOT}/dev/pts && "
          f"mkdir -p {CHROOT}/var/lib/apt/lists {CHROOT}/var/cache/apt/archives/partial && "
          f"cp /var/lib/apt-ostree/lists/*_Packages* /var/lib/apt-ostree/lists/*Release* {CHROOT}/var/lib/apt/lists/ "
          f"&& cp /var/cache/apt-ostree/archives/{PACKAGE}_*.deb {CHROOT}/var/cache/apt/archives/ && sync",
          timeout=900)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repo", type=Path)
    ap.add_argument("--ref")
    ap.add_argument("--no-write", action="store_true", help="print the rows; leave docs/benchmarks.md alone")
    args = ap.parse_args()
    repo, ref = image(args.repo, args.ref)
    with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="bench-live-") as tmp:
        work = Path(tmp)
        key, pub = make_ssh_key(work)
        disk = work / "disk.img"
        apt_ostree("compose", "disk-image", "--repo", repo, "--ref", ref, "--root-ssh-key", pub, "--hostname",
                   "bench", disk)
        with Guest(disk, ssh_key=key, serial_log=work / "serial.log", network=True) as g:
            g.wait_for_ssh(timeout=600)
            g.run("test -s /etc/resolv.conf || echo 'nameserver 10.0.2.3' > /etc/resolv.conf")
            # warm-up (untimed): the lists, the .deb, apt-ostreed started; then back to the base
            g.run(f"apt-ostree install -A {PACKAGE} && apt-ostree apply-live --reset && apt-ostree cleanup -p",
                  timeout=1800)
            ours, theirs = [], []
            for _ in range(args.rounds):
                baseline_setup(g)
                theirs.append(timed(g, f"{APT_GET} {PACKAGE} >/dev/null"))
                g.run(f"umount -R {CHROOT}/proc {CHROOT}/dev; rm -rf --one-file-system {CHROOT} && sync", timeout=900)
                ours.append(timed(g, f"apt-ostree install -A -C {PACKAGE} >/dev/null"))
                g.run("apt-ostree apply-live --reset >/dev/null && apt-ostree cleanup -p >/dev/null && sync",
                      timeout=900)
    a, b = statistics.median(ours), statistics.median(theirs)
    row = (f"| {datetime.date.today()} | install -A {PACKAGE}, booted Debian 13 guest (TCG) | {a:.1f} s | "
           f"apt-get install in a chroot of the base, same guest: {b:.1f} s | **{a / b:.2f}x** | "
           f"{args.rounds} rounds, median |")
    print(row)
    print("apt-ostree rounds:", ", ".join(f"{x:.1f}" for x in ours),
          "; baseline:", ", ".join(f"{x:.1f}" for x in theirs))
    if not args.no_write:
        add_rows("<!-- bench/live.py -->", "## Live install (install -A)", [row])
    return 0


if __name__ == "__main__":
    sys.exit(main())
