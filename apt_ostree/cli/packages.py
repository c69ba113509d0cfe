"""Package layering verbs: install, uninstall, override, reset, refresh-md, search."""

from __future__ import annotations

import argparse
from pathlib import Path

from apt_ostree.cli.common import add_sysroot_arg
from apt_ostree.cli.render import run_op
from apt_ostree.core import ops, packages
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
    ins.set_defaults(func=run_package_change)

    un = sub.add_parser("uninstall", aliases=["remove"], help="remove layered packages (a new deployment)")
    add_sysroot_arg(un)
    un.add_argument("packages", nargs="*", metavar="PACKAGE")
    un.add_argument("--all", action="store_true", help="remove every layered package")
    un.add_argument("--install", action="append", default=[], metavar="PACKAGE", help="also install PACKAGE")
    un.add_argument("--idempotent", action="store_true", help="no error for packages that are not layered")
    un.add_argument("--allow-inactive", action="store_true", help=argparse.SUPPRESS)
    add_layer_args(un)
    un.set_defaults(func=run_package_change)

    ov = sub.add_parser("override", help="remove or replace packages of the base")
    ov_sub = ov.add_subparsers(dest="override_command", metavar="COMMAND")
    ov_sub.required = True
    rm = ov_sub.add_parser("remove", help="remove base packages from the deployment")
    add_sysroot_arg(rm)
    rm.add_argument("packages", nargs="+", metavar="PACKAGE")
    rm.add_argument("--replace", action="append", default=[], metavar="DEB", help="also replace with ./x.deb")
    add_layer_args(rm)
    rm.set_defaults(func=run_package_change, action="remove")
    rp = ov_sub.add_parser("replace", help="replace base packages with local .deb files")
    add_sysroot_arg(rp)
    rp.add_argument("packages", nargs="+", metavar="DEB")
    rp.add_argument("--remove", action="append", default=[], metavar="PACKAGE", help="also remove PACKAGE")
    add_layer_args(rp)
    rp.set_defaults(func=run_package_change, action="replace")
    rs = ov_sub.add_parser("reset", help="drop overrides (the base's package again)")
    add_sysroot_arg(rs)
    rs.add_argument("packages", nargs="*", metavar="PACKAGE")
    rs.add_argument("-a", "--all", action="store_true", help="drop every override")
    add_layer_args(rs)
    rs.set_defaults(func=run_package_change, action="reset")

    rt = sub.add_parser("reset", help="remove layered packages and overrides: the pure base again")
    add_sysroot_arg(rt)
    rt.add_argument("-l", "--overlays", action="store_true", help="remove only the layered packages")
    rt.add_argument("-o", "--overrides", action="store_true", help="remove only the overrides")
    add_layer_args(rt)
    rt.set_defaults(func=run_package_change)

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


def _op(args: argparse.Namespace, req: ops.Request) -> ops.PackageChange:
    return ops.PackageChange(req, dry_run=args.dry_run, cache_only=args.cache_only, download_only=args.download_only,
                             allow_inactive=getattr(args, "allow_inactive", False),
                             lock_finalization=args.lock_finalization, reboot=getattr(args, "reboot", False),
                             unchanged_exit_77=args.unchanged_exit_77)


def package_op(args: argparse.Namespace) -> ops.PackageChange:
    """The request for install, uninstall, override and reset."""
    if args.command == "install":
        return _op(args, ops.Request(install=tuple(_local(args.packages)), uninstall=tuple(args.uninstall),
                                          idempotent=args.idempotent, debconf=tuple(args.debconf)))
    if args.command in ("uninstall", "remove"):
        if not args.packages and not args.all:
            raise UsageError("uninstall: name the packages to remove, or --all")
        return _op(args, ops.Request(install=tuple(_local(args.install)), uninstall=tuple(args.packages),
                                          uninstall_all=args.all, idempotent=args.idempotent))
    if args.command == "reset":
        both = not (args.overlays or args.overrides)
        return _op(args, ops.Request(reset_layers=both or args.overlays,
                                          override_reset_all=both or args.overrides))
    if args.action == "remove":
        return _op(args, ops.Request(override_remove=tuple(args.packages),
                                          override_replace=tuple(_local(args.replace))))
    if args.action == "replace":
        return _op(args, ops.Request(override_replace=tuple(_local(args.packages)),
                                          override_remove=tuple(args.remove)))
    if not args.packages and not args.all:
        raise UsageError("override reset: name the packages, or --all")
    return _op(args, ops.Request(override_reset=tuple(args.packages), override_reset_all=args.all))


def _local(items: list[str]) -> list[str]:
    """Paths of local .debs made absolute (apt-ostreed does not share our working directory)."""
    return [str(Path(i).resolve()) if packages.is_local(i) else i for i in items]


def run_package_change(args: argparse.Namespace) -> int:
    return run_op(args, package_op(args))


def run_refresh(args: argparse.Namespace) -> int:
    return run_op(args, ops.RefreshMd(force=args.force))


def run_search(args: argparse.Namespace) -> int:
    return run_op(args, ops.Search(tuple(args.query), cache_only=args.cache_only))
