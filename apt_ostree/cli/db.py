"""``apt-ostree db``: the package database of commits (list, diff, version)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from apt_ostree.cli.common import diff_lines, out
from apt_ostree.core.ostree import Repo
from apt_ostree.core.pkgdb import commit_packages, db_version, diff_packages, filter_prefixes

DEFAULT_REPO = Path("/sysroot/ostree/repo")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = sub.add_parser("db", help="query the package database of commits")
    dsub = db.add_subparsers(dest="db_command", metavar="COMMAND")
    dsub.required = True

    def repo_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--repo", type=Path, default=DEFAULT_REPO, help=f"OSTree repository (default {DEFAULT_REPO})")

    lst = dsub.add_parser("list", help="list the packages of a commit")
    repo_arg(lst)
    lst.add_argument("rev", metavar="REV")
    lst.add_argument("prefixes", nargs="*", metavar="PREFIX", help="only packages whose name starts with PREFIX")
    lst.set_defaults(func=run_list)

    dif = dsub.add_parser("diff", help="show package changes between two commits")
    repo_arg(dif)
    dif.add_argument("from_rev", metavar="FROM")
    dif.add_argument("to_rev", metavar="TO")
    dif.add_argument("--format", choices=("block", "diff", "json"), default="block")
    dif.set_defaults(func=run_diff)

    ver = dsub.add_parser("version", help="show the package database version of commits")
    repo_arg(ver)
    ver.add_argument("revs", nargs="+", metavar="REV")
    ver.set_defaults(func=run_version)


def run_list(args: argparse.Namespace) -> int:
    repo = Repo.open(args.repo)
    checksum = repo.resolve(args.rev)
    packages = filter_prefixes(commit_packages(repo, checksum), args.prefixes)
    out(f"ostree commit: {args.rev} ({checksum})")
    for p in packages:
        out(f" {p.name} {p.version} {p.arch}")
    return 0


def run_diff(args: argparse.Namespace) -> int:
    repo = Repo.open(args.repo)
    a, b = repo.resolve(args.from_rev), repo.resolve(args.to_rev)
    d = diff_packages(commit_packages(repo, a), commit_packages(repo, b))
    if args.format == "json":
        out(json.dumps({
            "from": a, "to": b,
            "added": [{"name": p.name, "version": p.version, "arch": p.arch} for p in d.added],
            "removed": [{"name": p.name, "version": p.version, "arch": p.arch} for p in d.removed],
            "upgraded": [{"name": c.name, "arch": c.arch, "from": c.old, "to": c.new} for c in d.upgraded],
            "downgraded": [{"name": c.name, "arch": c.arch, "from": c.old, "to": c.new} for c in d.downgraded],
        }, indent=2))
        return 0
    out(f"ostree diff commit from: {args.from_rev} ({a})")
    out(f"ostree diff commit to:   {args.to_rev} ({b})")
    if args.format == "diff":
        for c in d.upgraded + d.downgraded:
            out(f"!{c.name} {c.old} -> {c.new}")
        for p in d.removed:
            out(f"-{p.name} {p.version}")
        for p in d.added:
            out(f"+{p.name} {p.version}")
        return 0
    for line in diff_lines(d):
        out(line)
    return 0


def run_version(args: argparse.Namespace) -> int:
    repo = Repo.open(args.repo)
    for rev in args.revs:
        checksum = repo.resolve(rev)
        out(f"ostree commit: {rev} ({checksum})")
        out(f"  dpkg database version: {db_version(commit_packages(repo, checksum))}")
    return 0
