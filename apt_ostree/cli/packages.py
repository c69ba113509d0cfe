"""Package layering verbs: install, uninstall, override, reset, refresh-md, search."""

from __future__ import annotations

import argparse
import json
import shutil

from apt_ostree.cli.common import add_sysroot_arg, diff_lines, finish, out, plan_lines, progress_for, unchanged
from apt_ostree.core import layering, packages
from apt_ostree.core.deploy import Change, LayerOptions
from apt_ostree.core.sysroot import Sysroot
from apt_ostree.errors import UsageError


def add_layer_args(p: argparse.ArgumentParser, *, reboot: bool = True) -> None:
    p.add_argument("-n", "--dry-run", action="store_true", help="show the transaction; change nothing")
    p.add_argument("-y", "--assumeyes", action="store_true", help="do not ask (accepted; apt-ostree never asks)")
    p.add_argument("-C", "--cache-only", action="store_true", help="do not refresh the package lists")
    p.add_argument("--download-only", action="store_true", help="download the packages; deploy nothing")
    p.add_argument("--lock-finalization", action="store_true",
                   help="the staged deployment is finalized only by finalize-deployment")
    p.add_argument("--unchanged-exit-77", action="store_true", help="exit 77 when nothing changed")
    if reboot:
        p.add_argument("-r", "--reboot", action="store_true", help="reboot into the new deployment")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ins = sub.add_parser("install", help="layer packages (names, NAME=VERSION or ./file.deb) on a new deployment")
    add_sysroot_arg(ins)
    ins.add_argument("packages", nargs="+", metavar="PACKAGE")
    ins.add_argument("--uninstall", action="append", default=[], metavar="PACKAGE", help="also uninstall PACKAGE")
    ins.add_argument("--idempotent", action="store_true", help="no error for packages already requested")
    ins.add_argument("--allow-inactive", action="store_true", help="allow requests for packages of the base")
    ins.add_argument("--debconf", action="append", default=[], metavar="'OWNER QUESTION TYPE VALUE'",
                     help="answer a debconf question (kept in the origin, replayed on every rebuild)")
    add_layer_args(ins)
    ins.set_defaults(func=run_install)

    un = sub.add_parser("uninstall", aliases=["remove"], help="remove layered packages (a new deployment)")
    add_sysroot_arg(un)
    un.add_argument("packages", nargs="*", metavar="PACKAGE")
    un.add_argument("--all", action="store_true", help="remove every layered package")
    un.add_argument("--install", action="append", default=[], metavar="PACKAGE", help="also install PACKAGE")
    un.add_argument("--idempotent", action="store_true", help="no error for packages that are not layered")
    un.add_argument("--allow-inactive", action="store_true", help=argparse.SUPPRESS)
    add_layer_args(un)
    un.set_defaults(func=run_uninstall)

    ov = sub.add_parser("override", help="remove or replace packages of the base")
    ov_sub = ov.add_subparsers(dest="override_command", metavar="COMMAND")
    ov_sub.required = True
    rm = ov_sub.add_parser("remove", help="remove base packages from the deployment")
    add_sysroot_arg(rm)
    rm.add_argument("packages", nargs="+", metavar="PACKAGE")
    rm.add_argument("--replace", action="append", default=[], metavar="DEB", help="also replace with ./x.deb")
    add_layer_args(rm)
    rm.set_defaults(func=run_override, action="remove")
    rp = ov_sub.add_parser("replace", help="replace base packages with local .deb files")
    add_sysroot_arg(rp)
    rp.add_argument("packages", nargs="+", metavar="DEB")
    rp.add_argument("--remove", action="append", default=[], metavar="PACKAGE", help="also remove PACKAGE")
    add_layer_args(rp)
    rp.set_defaults(func=run_override, action="replace")
    rs = ov_sub.add_parser("reset", help="drop overrides (the base's package again)")
    add_sysroot_arg(rs)
    rs.add_argument("packages", nargs="*", metavar="PACKAGE")
    rs.add_argument("-a", "--all", action="store_true", help="drop every override")
    add_layer_args(rs)
    rs.set_defaults(func=run_override, action="reset")

    rt = sub.add_parser("reset", help="remove layered packages and overrides: the pure base again")
    add_sysroot_arg(rt)
    rt.add_argument("-l", "--overlays", action="store_true", help="remove only the layered packages")
    rt.add_argument("-o", "--overrides", action="store_true", help="remove only the overrides")
    add_layer_args(rt)
    rt.set_defaults(func=run_reset)

    rf = sub.add_parser("refresh-md", help="download the package lists layering uses")
    add_sysroot_arg(rf)
    rf.add_argument("-f", "--force", action="store_true", help="download even if the lists are current")
    rf.set_defaults(func=run_refresh)

    se = sub.add_parser("search", help="search the packages available for layering")
    add_sysroot_arg(se)
    se.add_argument("query", nargs="+", metavar="QUERY", help="words in the name or summary; name:GLOB for names")
    se.add_argument("-C", "--cache-only", action="store_true", help="do not refresh the package lists")
    se.add_argument("--json", action="store_true", help="a JSON list of {name, version, summary}")
    se.set_defaults(func=run_search)


def _options(args: argparse.Namespace) -> LayerOptions:
    return LayerOptions(cache_only=args.cache_only, allow_inactive=getattr(args, "allow_inactive", False),
                        dry_run=args.dry_run, download_only=args.download_only,
                        lock_finalization=args.lock_finalization)


def _run(args: argparse.Namespace, req: packages.Request) -> int:
    sysroot = Sysroot.open(args.sysroot)
    progress = progress_for(args)
    with sysroot.locked():
        change = packages.change(sysroot, req, progress, _options(args))
    progress.done()
    return report(args, sysroot, change)


def report(args: argparse.Namespace, sysroot: Sysroot, change: Change) -> int:
    if not change.changed:
        return unchanged(args, "No change.")
    if change.plan is not None and (args.dry_run or args.download_only):
        for line in plan_lines(change.plan):
            out(line)
        out("Exiting because of '--dry-run' option" if args.dry_run else "Downloaded; nothing deployed.")
        return 0
    if change.diff is not None:
        for line in diff_lines(change.diff):
            out(line)
    return finish(args, sysroot, change.deployment)


def run_install(args: argparse.Namespace) -> int:
    return _run(args, packages.Request(install=tuple(args.packages), uninstall=tuple(args.uninstall),
                                       idempotent=args.idempotent, debconf=tuple(args.debconf)))


def run_uninstall(args: argparse.Namespace) -> int:
    if not args.packages and not args.all:
        raise UsageError("uninstall: name the packages to remove, or --all")
    return _run(args, packages.Request(install=tuple(args.install), uninstall=tuple(args.packages),
                                       uninstall_all=args.all, idempotent=args.idempotent))


def run_override(args: argparse.Namespace) -> int:
    if args.action == "remove":
        req = packages.Request(override_remove=tuple(args.packages), override_replace=tuple(args.replace))
    elif args.action == "replace":
        req = packages.Request(override_replace=tuple(args.packages), override_remove=tuple(args.remove))
    else:
        if not args.packages and not args.all:
            raise UsageError("override reset: name the packages, or --all")
        req = packages.Request(override_reset=tuple(args.packages), override_reset_all=args.all)
    return _run(args, req)


def run_reset(args: argparse.Namespace) -> int:
    both = not (args.overlays or args.overrides)
    return _run(args, packages.Request(reset_layers=both or args.overlays, override_reset_all=both or args.overrides))


def run_refresh(args: argparse.Namespace) -> int:
    sysroot = Sysroot.open(args.sysroot)
    merge = sysroot.merge_deployment()
    apt = layering.open_apt(sysroot.path, merge.osname, merge.path)
    if args.force:  # download everything again, not only what changed
        shutil.rmtree(apt.lists, ignore_errors=True)
    apt.configure()
    apt.refresh(progress_for(args))
    out("Package lists updated.")
    return 0


def run_search(args: argparse.Namespace) -> int:
    sysroot = Sysroot.open(args.sysroot)
    merge = sysroot.merge_deployment()
    apt = layering.open_apt(sysroot.path, merge.osname, merge.path)
    apt.configure()
    if not args.cache_only or not apt.has_lists():
        apt.refresh(progress_for(args))
    found = apt.search(args.query)
    if args.json:
        out(json.dumps([{"name": n, "version": v, "summary": s} for n, v, s in found], indent=2))
        return 0 if found else 1
    for name, version, summary in found:
        out(f"{name} {version}: {summary}")
    if not found:
        out("No matches.")
        return 1
    return 0
