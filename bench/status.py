#!/usr/bin/python3
"""Benchmark: `apt-ostree status` vs `ostree admin status` on the same sysroot (goal: <= 0.15 s).

A sysroot directory with one deployment is made from a commit of an existing repository
(default: `make demo`'s _build/repo), then both commands run N times each, alternating.

    /usr/bin/python3 bench/status.py [--repo _build/repo] [--ref REF] [--runs 20]
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TOP))

from apt_ostree.core.ostree import Repo  # noqa: E402
from apt_ostree.core.sysroot import Sysroot  # noqa: E402
from bench.results import add_rows  # noqa: E402

MARKER = "<!-- bench/status.py -->"


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.monotonic()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.monotonic() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=TOP / "_build/repo")
    parser.add_argument("--ref", default="debian/bookworm/x86_64/minimal")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="apt-ostree-bench-", dir="/var/tmp") as tmp:
        root = Path(tmp) / "sysroot"
        root.mkdir()
        source = Repo.open(args.repo)
        checksum = source.resolve(args.ref)
        sysroot = Sysroot(root)
        sysroot.initialize("debian")
        sysroot.repo().pull_local(source, checksum)
        sysroot.deploy_first("debian", checksum, args.ref, ["rw"])
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(TOP)}
        ours_argv = ["/usr/bin/python3", "-m", "apt_ostree.cli.main", "status", "--sysroot", str(root)]
        theirs_argv = ["ostree", "admin", "status", f"--sysroot={root}"]
        ours, theirs = [], []
        for _ in range(args.runs):
            ours.append(timed(ours_argv, env))
            theirs.append(timed(theirs_argv, env))
        for d in (root / "ostree/deploy/debian/deploy").iterdir():  # libostree makes deployments immutable
            if d.is_dir():
                subprocess.run(["chattr", "-i", str(d)], check=False)
    o, t = statistics.median(ours), statistics.median(theirs)
    line = (f"| {datetime.date.today()} | status, 1 deployment, --sysroot | {o:.3f} s | "
            f"ostree admin status: {t:.3f} s | {o / t:.1f}x | {args.runs} runs, median; goal <= 0.15 s |")
    print(line)
    if not args.no_write:
        add_rows(MARKER, "## Status\n\n`bench/status.py`: wall time of a whole `apt-ostree status` process (Python "
                 "start-up included) against `ostree admin status` on the same sysroot.", [line])
    os.sync()
    return 0


if __name__ == "__main__":
    sys.exit(main())
