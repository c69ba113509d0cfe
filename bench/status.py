#!/usr/bin/python3
"""Benchmark: `apt-ostree status` vs `ostree admin status` on the same sysroot (goal: <= 0.15 s),
and apt-ostreed's start-up (spawned to owning its bus name) vs the floor of any Python program
that uses libostree (the interpreter importing gi's OSTree).

A sysroot directory with one deployment is made from a commit of an existing repository
(default: `make demo`'s _build/repo), then both commands run N times each, alternating. The
daemon runs on a private bus configured like the system bus (the dbus tier's configuration).

    /usr/bin/python3 bench/status.py [--repo _build/repo] [--ref REF] [--runs 20]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
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


FLOOR = "import gi; gi.require_version('OSTree', '1.0'); from gi.repository import OSTree"


@contextlib.contextmanager
def private_bus(tmp: Path) -> Iterator[str]:
    from tests.dbus.conftest import BUS_CONF

    socket, conf = tmp / "bus_socket", tmp / "bus.conf"
    conf.write_text(BUS_CONF.format(socket=socket, policy=TOP / "data/org.projectatomic.aptostree1.conf"))
    proc = subprocess.Popen(["dbus-daemon", f"--config-file={conf}", "--nofork", "--nopidfile"])
    while not socket.exists():
        time.sleep(0.01)
    try:
        yield f"unix:path={socket}"
    finally:
        proc.terminate()
        proc.wait()


def daemon_start(root: Path, address: str, tmp: Path) -> float:
    """Seconds from spawning apt-ostreed to its name being owned on the bus."""
    conf = tmp / "apt-ostreed.conf"
    conf.write_text("[Daemon]\nIdleExitTimeout=0\n")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(TOP), "DBUS_SYSTEM_BUS_ADDRESS": address}
    start = time.monotonic()
    proc = subprocess.Popen(["/usr/bin/python3", "-m", "apt_ostree.daemon", "--sysroot", str(root),  # as systemd
                             "--config", str(conf)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while subprocess.run(["busctl", f"--address={address}", "status", "org.projectatomic.aptostree1"],
                             capture_output=True).returncode != 0:
            if proc.poll() is not None:
                raise SystemExit("apt-ostreed exited before owning its name")
            time.sleep(0.005)
        return time.monotonic() - start
    finally:
        proc.terminate()
        proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=TOP / "_build/repo")
    parser.add_argument("--ref", default="debian/trixie/x86_64/minimal")
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
        floor_argv = ["/usr/bin/python3", "-c", FLOOR]
        floor = [timed(floor_argv, env) for _ in range(args.runs)]
        with private_bus(Path(tmp)) as address:
            daemon = [daemon_start(root, address, Path(tmp)) for _ in range(max(3, args.runs // 4))]
        for d in (root / "ostree/deploy/debian/deploy").iterdir():  # libostree makes deployments immutable
            if d.is_dir():
                subprocess.run(["chattr", "-i", str(d)], check=False)
    o, t = statistics.median(ours), statistics.median(theirs)
    line = (f"| {datetime.date.today()} | status, 1 deployment, --sysroot | {o:.3f} s | "
            f"ostree admin status: {t:.3f} s | {o / t:.1f}x | {args.runs} runs, median; goal <= 0.15 s |")
    f, dm = statistics.median(floor), statistics.median(daemon)
    rows = [line,
            f"| {datetime.date.today()} | status, 1 deployment, --sysroot | {o:.3f} s | "
            f"python3 importing gi's OSTree: {f:.3f} s | {o / f:.1f}x | {args.runs} runs, median |",
            f"| {datetime.date.today()} | apt-ostreed start-up (spawn to bus name) | {dm:.3f} s | "
            f"python3 importing gi's OSTree: {f:.3f} s | {dm / f:.1f}x | {len(daemon)} runs, median |"]
    print("\n".join(rows))
    if not args.no_write:
        add_rows(MARKER, "## Status\n\n`bench/status.py`: wall time of a whole `apt-ostree status` process (Python "
                 "start-up included) against `ostree admin status` on the same sysroot.", rows)
    os.sync()
    return 0


if __name__ == "__main__":
    sys.exit(main())
