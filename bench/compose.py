#!/usr/bin/python3
"""Benchmark: `apt-ostree compose tree` vs plain `mmdebstrap` + `ostree commit` of the same packages.

Both run in this process's run, against the same warm .deb cache, one after the other
(compose first once to warm the cache, then baseline and compose alternately).
The ratio compose/baseline goes to docs/benchmarks.md.

    make deb && /usr/bin/python3 bench/compose.py [--rounds N]
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
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TOP))

from apt_ostree.core.apt import host_sources, sources_list_text  # noqa: E402
from apt_ostree.core.treefile import load_treefile  # noqa: E402
from bench.results import add_rows  # noqa: E402

TREEFILE = TOP / "examples/bookworm.yaml"
CACHE = TOP / "_build/bench-cache"


def timed(argv: list[str], **kw: object) -> float:
    start = time.monotonic()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)  # type: ignore[call-overload]
    return time.monotonic() - start


def compose_once(work: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(TOP)}
    return timed(["/usr/bin/python3", "-m", "apt_ostree.cli.main", "compose", "tree", str(TREEFILE),
                  "--repo", str(work / "repo-compose"), "--cachedir", str(CACHE), "--force-nocache",
                  "--no-parent"], env=env)


def baseline_once(work: Path, initramfs: bool = True) -> float:
    """What an admin would do by hand: mmdebstrap the same packages, then `ostree commit` the tree.

    ``initramfs=False`` diverts dracut during the build, so no initramfs is made at all: a lower
    bound for "install the packages and commit them" that shows what the initramfs costs.
    """
    tf = load_treefile(TREEFILE)
    sources = work / "apt-ostree.sources"
    sources.write_text(sources_list_text(host_sources()))
    rootfs = work / "rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    argv = ["mmdebstrap", "--mode=root", f"--variant={tf.variant}", "--skip=essential/unlink",
            "--include=" + ",".join(tf.packages_for("amd64")),
            *[f"--include={d}" for d in tf.packages_local],
            "--hook-dir=/usr/share/mmdebstrap/hooks/file-mirror-automount",
            '--aptopt=Acquire::Check-Valid-Until "false"',
            '--setup-hook=mkdir -p "$1"/var/cache/apt/archives',
            f"--setup-hook=sync-in {CACHE}/debs /var/cache/apt/archives/",
            tf.releasever or "bookworm", str(rootfs), str(sources)]
    if not initramfs:
        argv.insert(1, '--essential-hook=chroot "$1" dpkg-divert --quiet --local --rename --add /usr/bin/dracut')
    repo = work / "repo-baseline"
    shutil.rmtree(repo, ignore_errors=True)
    start = time.monotonic()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for node in (rootfs / "dev").iterdir():  # device nodes cannot be committed
        if node.is_dir() and not node.is_symlink():
            shutil.rmtree(node)
        else:
            node.unlink()
    subprocess.run(["ostree", "init", f"--repo={repo}", "--mode=bare"], check=True)
    subprocess.run(["ostree", "commit", f"--repo={repo}", "--branch=baseline", f"--tree=dir={rootfs}"],
                   check=True, stdout=subprocess.DEVNULL)
    took = time.monotonic() - start
    shutil.rmtree(rootfs, ignore_errors=True)
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="apt-ostree-bench-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        print("warm-up compose (fills the cache)...", file=sys.stderr)
        compose_once(work)
        compose_t: list[float] = []
        base_t: list[float] = []
        bare_t: list[float] = []
        for i in range(args.rounds):
            b = baseline_once(work)
            n = baseline_once(work, initramfs=False)
            c = compose_once(work)
            base_t.append(b)
            bare_t.append(n)
            compose_t.append(c)
            print(f"round {i + 1}: baseline {b:.1f}s, baseline without initramfs {n:.1f}s, compose {c:.1f}s",
                  file=sys.stderr)
    c_med, b_med, n_med = statistics.median(compose_t), statistics.median(base_t), statistics.median(bare_t)
    day = datetime.date.today()
    lines = [
        f"| {day} | compose tree examples/bookworm.yaml (warm cache) | {c_med:.1f} s | "
        f"mmdebstrap + ostree commit: {b_med:.1f} s | **{c_med / b_med:.2f}x** | {args.rounds} rounds, median |",
        f"| {day} | same, against a baseline that builds no initramfs at all | {c_med:.1f} s | "
        f"mmdebstrap (dracut diverted) + ostree commit: {n_med:.1f} s | {c_med / n_med:.2f}x | "
        f"{args.rounds} rounds, median |",
    ]
    print("\n".join(lines))
    if not args.no_write:
        add_rows("<!-- bench/compose.py -->", "## Compose", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
