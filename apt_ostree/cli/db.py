"""``apt-ostree db``: the package database of commits (list, diff, version)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from apt_ostree.cli.common import diff_lines, out
from apt_ostree.core.ostree import Repo
from apt_ostree.core.pkgdb import commit_packages, db_version, diff_packages, filter_prefixes
from apt_ostree.core.sysroot import Sysroot
from apt_ostree.errors import RepoError

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

    dif = dsub.add_parser("diff", help="show package changes between two commits "
                                       "(default: the booted and the pending deployment)")
    repo_arg(dif)
    dif.add_argument("--sysroot", type=Path, default=Path("/"), help="sysroot whose deployments to compare")
    dif.add_argument("from_rev", metavar="FROM", nargs="?")
    dif.add_argument("to_rev", metavar="TO", nargs="?")
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


def _deployment_revs(args: argparse.Namespace) -> tuple[Repo, str, str]:
    """FROM/TO defaulting like rpm-ostree: FROM = booted, TO = pending. On a sysroot that is not
    booted: the previous deployment and the default one (what the last change did)."""
    sysroot = Sysroot.open(args.sysroot)
    repo = Repo.open(args.repo) if args.repo != DEFAULT_REPO else sysroot.repo()
    deployments = sysroot.deployments()
    if sysroot.is_booted:
        current = sysroot.merge_deployment()
        pending = next((d for d in deployments if d.index < current.index or d.staged), None)
    else:
        current = deployments[1] if len(deployments) > 1 else deployments[0]
        pending = deployments[0] if len(deployments) > 1 else None
    if args.from_rev is None:
        if pending is None:
            raise RepoError("no pending deployment to compare with", hint="name two commits: db diff FROM TO")
        return repo, current.checksum, pending.checksum
    return repo, args.from_rev, current.checksum


def run_diff(args: argparse.Namespace) -> int:
    if args.to_rev is None:
        repo, args.from_rev, args.to_rev = _deployment_revs(args)
    else:
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
