#!/usr/bin/python3
"""Benchmark: container images. `compose container-encapsulate` of a Debian 13 commit against
`ostree export` of the same commit piped to `gzip -6` (the commit as one gzip'd tar, at ostree's
speed), in the same run; the image's size and layers; and the bytes an upgrade fetches when the next
compose differs by one package (htop), against the whole image.

Both commits are composed here unless --repo names a repository with both refs:

    make deb && /usr/bin/python3 bench/image.py [--rounds N] [--repo REPO --ref REF --ref2 REF2] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TOP))

from apt_ostree.core import image as images  # noqa: E402
from apt_ostree.core.imgref import OstreeImageRef  # noqa: E402
from apt_ostree.core.ostree import Repo  # noqa: E402
from apt_ostree.progress import Progress  # noqa: E402
from bench.results import add_rows  # noqa: E402

CACHE = TOP / "_build/bench-cache"
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(TOP), "LC_ALL": "C.UTF-8"}


def apt_ostree(*args: str | Path) -> str:
    return subprocess.run(["/usr/bin/python3", "-m", "apt_ostree.cli.main", *map(str, args)], env=ENV, check=True,
                          capture_output=True, text=True).stdout


def composed(repo: Path | None, ref: str | None, ref2: str | None) -> tuple[Path, str, str]:
    if repo is not None and ref is not None and ref2 is not None:
        return repo, ref, ref2
    repo = CACHE / "image-repo"
    work = CACHE / "image-work"
    work.mkdir(parents=True, exist_ok=True)
    apt_ostree("compose", "tree", TOP / "examples/trixie.yaml", "--repo", repo, "--cachedir", CACHE / "compose",
               "--source-date-epoch", "1700000000")
    (work / "extra.yaml").write_text(f"include: {TOP / 'examples/trixie.yaml'}\nref: bench/extra\npackages: [htop]\n")
    apt_ostree("compose", "tree", work / "extra.yaml", "--repo", repo, "--cachedir", CACHE / "compose",
               "--source-date-epoch", "1700000000")
    return repo, "debian/trixie/x86_64/minimal", "bench/extra"


def timed(argv: list[str] | str, shell: bool = False) -> float:
    start = time.monotonic()
    subprocess.run(argv, shell=shell, check=True, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repo", type=Path)
    ap.add_argument("--ref")
    ap.add_argument("--ref2")
    ap.add_argument("--no-write", action="store_true", help="print the rows; leave docs/benchmarks.md alone")
    args = ap.parse_args()
    repo, ref, ref2 = composed(args.repo, args.ref, args.ref2)
    with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="bench-image-") as tmp:
        work = Path(tmp)
        ours, theirs = [], []
        for i in range(args.rounds):
            ours.append(timed(["/usr/bin/python3", "-m", "apt_ostree.cli.main", "compose", "container-encapsulate",
                               "--repo", str(repo), ref, f"oci:{work}/round{i}:1"]))
            theirs.append(timed(f"ostree export --repo={repo} {ref} | gzip -6 > {work}/export{i}.tar.gz", shell=True))
            if i:
                shutil.rmtree(work / f"round{i}")
        export_size = (work / "export0.tar.gz").stat().st_size
        first = f"oci:{work}/round0:1"
        manifest = json.loads(subprocess.run(["skopeo", "inspect", "--raw", first], check=True, capture_output=True,
                                             text=True).stdout)
        size = sum(layer["size"] for layer in manifest["layers"])
        # what an upgrade fetches: a repository that pulled the image pulls the next build under the same tag
        pulls = work / "pulls"
        subprocess.run(["ostree", "init", f"--repo={pulls}", "--mode=bare"], check=True)
        image = OstreeImageRef.parse(f"ostree-unverified-image:{first}")
        first_pull = images.pull(Repo.open(pulls), image, Progress())
        apt_ostree("compose", "container-encapsulate", "--repo", repo, ref2, first)
        second_pull = images.pull(Repo.open(pulls), image, Progress())
    a, b = statistics.median(ours), statistics.median(theirs)
    today = datetime.date.today()
    rows = [
        f"| {today} | compose container-encapsulate, Debian 13 minimal ({len(manifest['layers'])} layers, "
        f"{size / 1e6:.0f} MB) | {a:.1f} s | ostree export \\| gzip -6 of the same commit: {b:.1f} s "
        f"({export_size / 1e6:.0f} MB) | **{a / b:.2f}x** | {args.rounds} rounds, median |",
        f"| {today} | upgrade to the next compose (+htop): bytes fetched | {second_pull.fetched_bytes / 1e6:.1f} MB "
        f"in {second_pull.fetched_layers} of {second_pull.layers} layers | the whole image: "
        f"{first_pull.fetched_bytes / 1e6:.1f} MB | **{second_pull.fetched_bytes / first_pull.fetched_bytes:.2f}x** "
        f"| 1 |",
    ]
    for row in rows:
        print(row)
    print("encapsulate rounds:", ", ".join(f"{x:.1f}" for x in ours), "; export|gzip:",
          ", ".join(f"{x:.1f}" for x in theirs))
    if not args.no_write:
        add_rows("<!-- bench/image.py -->", "## Container images (container-encapsulate, upgrade)", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
