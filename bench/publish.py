#!/usr/bin/python3
"""Benchmark: `apt-ostree compose publish` vs the same steps by hand with ostree's CLI (issue 16).

Two commits of one ref (default: the test images' Debian 13 commit, then it plus htop) are published
into a new archive repository, GPG-signed, with a static delta from the first to the second and no
delta from empty: once by `compose publish` (two runs: the first commit, then the update), once by
hand (`ostree init --mode=archive`, `pull-local`, `gpg-sign`, `static-delta generate --from --to`,
`summary -u --gpg-sign`, the same for the update). Both in the same run, alternating, on the same
machine. A third `compose publish` with nothing new is timed on its own (what a cron job costs).

    /usr/bin/python3 bench/publish.py [--repo _build/test-images/repo] [--first REV] [--second REV] [--runs 3]
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

from bench.results import add_rows  # noqa: E402
from tests.root.test_publish import forget_key, make_key  # noqa: E402

MARKER = "<!-- bench/publish.py -->"
REF = "bench/fleet"


def sh(*argv: str | Path, env: dict[str, str] | None = None) -> None:
    subprocess.run([str(a) for a in argv], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env=env)


def timed(steps: list[list[str | Path]], env: dict[str, str] | None = None) -> float:
    start = time.monotonic()
    for argv in steps:
        sh(*argv, env=env)
    return time.monotonic() - start


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repo", type=Path, default=TOP / "_build/test-images/repo")
    parser.add_argument("--first", default=None, help="default: the Debian 13 test image's commit")
    parser.add_argument("--second", default=None, help="default: the Debian 13 + htop test image's commit")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    images = args.repo.parent
    first = args.first or (images / "commitid-debian_trixie_x86_64_minimal").read_text().strip()
    second = args.second or (images / "commitid").read_text().strip()  # (tests/conftest.py's compose_extra)
    ours: list[float] = []
    theirs: list[float] = []
    idle: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-publish-", dir="/var/tmp") as tmp:
        key = make_key(Path(tmp) / "gnupg")
        gpg_env = {**os.environ, "GNUPGHOME": str(key.homedir)}
        build = Path(tmp) / "build"
        sh("ostree", "init", f"--repo={build}", "--mode=bare")
        sh("ostree", "pull-local", f"--repo={build}", args.repo, first, second)
        apt_ostree = ["/usr/bin/python3", "-m", "apt_ostree.cli.main"]
        env = {**os.environ, "PYTHONPATH": str(TOP)}
        for run in range(args.runs):
            for which in ("ours", "theirs") if run % 2 == 0 else ("theirs", "ours"):
                archive = Path(tmp) / f"archive-{which}-{run}"
                total = 0.0
                for rev in (first, second):
                    sh("ostree", "refs", f"--repo={build}", "--force", f"--create={REF}", rev)
                    if which == "ours":
                        total += timed([[*apt_ostree, "compose", "publish", "--repo", build, archive, REF,
                                         "--no-empty-delta", "--gpg-sign", key.fingerprint,
                                         "--gpg-homedir", key.homedir]], env)
                    else:
                        steps: list[list[str | Path]] = []
                        if rev == first:
                            steps.append(["ostree", "init", f"--repo={archive}", "--mode=archive"])
                        steps += [["ostree", "pull-local", f"--repo={archive}", build, REF],
                                  ["ostree", "gpg-sign", f"--repo={archive}", f"--gpg-homedir={key.homedir}", rev,
                                   key.fingerprint]]
                        if rev == second:
                            steps.append(["ostree", "static-delta", "generate", f"--repo={archive}",
                                          f"--from={first}", f"--to={second}"])
                        steps.append(["ostree", "summary", "-u", f"--repo={archive}",
                                      f"--gpg-sign={key.fingerprint}", f"--gpg-homedir={key.homedir}"])
                        total += timed(steps, gpg_env)
                (ours if which == "ours" else theirs).append(total)
                if which == "ours":
                    idle.append(timed([[*apt_ostree, "compose", "publish", "--repo", build, archive, REF,
                                        "--no-empty-delta", "--gpg-sign", key.fingerprint, "--gpg-homedir",
                                        key.homedir]], env))
                subprocess.run(["rm", "-rf", str(archive)], check=True)
        forget_key(key)
    a, b = statistics.median(ours), statistics.median(theirs)
    today = datetime.date.today().isoformat()
    rows = [f"| {today} | publish two commits (the Debian 13 image, then + htop; signed, one delta) | "
            f"{a:.1f} s | {b:.1f} s (ostree CLI by hand) | {a / b:.2f} | {args.runs} |",
            f"| {today} | publish again, nothing new | {statistics.median(idle):.2f} s | - | - | {args.runs} |"]
    for row in rows:
        print(row)
    add_rows(MARKER, "## Publishing (compose publish)", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
