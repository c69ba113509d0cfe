"""Deployment verbs: upgrade, deploy, rebase, rollback, cleanup, kargs, finalize-deployment."""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
from collections.abc import Callable

from apt_ostree.cli.common import (
    add_sysroot_arg,
    check_finalize_args,
    diff_lines,
    finish,
    out,
    plan_lines,
    progress_for,
    unchanged,
)
from apt_ostree.core import config, deploy, layering, packages
from apt_ostree.core.layer_apt import read_local_deb
from apt_ostree.core.origin import Origin
from apt_ostree.core.pkgdb import PackageDiff, commit_packages
from apt_ostree.core.sysroot import Sysroot
from apt_ostree.errors import RepoError, UsageError
from apt_ostree.run import run


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = sub.add_parser("upgrade", help="pull the origin's newest commit and deploy it")
    add_sysroot_arg(up)
    up.add_argument("--check", action="store_true", help="only tell whether an upgrade is available")
    up.add_argument("--preview", action="store_true", help="show the package changes of the upgrade; deploy nothing")
    up.add_argument("--download-only", action="store_true", help="pull the upgrade; deploy nothing")
    up.add_argument("--trigger-automatic-update-policy", action="store_true",
                    help="do what AutomaticUpdatePolicy in apt-ostreed.conf says (the automatic timer)")
    _common(up, downgrade=True)
    up.set_defaults(func=run_upgrade)

    dp = sub.add_parser("deploy", help="deploy a specific commit of the origin")
    add_sysroot_arg(dp)
    dp.add_argument("revision", metavar="REVISION", help="commit checksum or version=VERSION")
    _common(dp)
    dp.set_defaults(func=run_deploy)

    rb = sub.add_parser("rebase", help="switch to another ref (REMOTE:REF or REF), keeping /etc changes")
    add_sysroot_arg(rb)
    rb.add_argument("refspec", metavar="REFSPEC")
    rb.add_argument("--preview", action="store_true",
                    help="pull the new base and resolve the layered packages on it; show the changes, deploy nothing")
    _common(rb)
    rb.set_defaults(func=run_rebase)

    rl = sub.add_parser("rollback", help="make the previous deployment the default")
    add_sysroot_arg(rl)
    rl.add_argument("-r", "--reboot", action="store_true", help="reboot afterwards")
    rl.set_defaults(func=run_rollback)

    cl = sub.add_parser("cleanup", help="remove pending or rollback deployments; prune the repository")
    add_sysroot_arg(cl)
    cl.add_argument("-p", "--pending", action="store_true", help="remove the pending deployment")
    cl.add_argument("-r", "--rollback", action="store_true", help="remove the rollback deployment")
    cl.add_argument("-b", "--base", action="store_true", help="clean up temporary files and prune the repository")
    cl.set_defaults(func=run_cleanup)

    ka = sub.add_parser("kargs", help="show or change the kernel arguments (a new deployment)")
    add_sysroot_arg(ka)
    for flag, text in (("append", "add KEY=VALUE"), ("append-if-missing", "add unless present"),
                       ("delete", "remove (error if absent)"), ("delete-if-present", "remove if present"),
                       ("replace", "KEY=VALUE or KEY=OLD=NEW")):
        ka.add_argument(f"--{flag}", action="append", default=[], metavar="KARG", help=text)
    ka.add_argument("--editor", action="store_true", help="edit the arguments in $EDITOR")
    ka.add_argument("--deploy-index", type=int, metavar="N",
                    help="start from deployment N's arguments (default: the pending one's, else the booted one's)")
    ka.add_argument("--import-proc-cmdline", action="store_true", help="start from /proc/cmdline")
    ka.add_argument("--unchanged-exit-77", action="store_true")
    ka.add_argument("--lock-finalization", action="store_true")
    ka.add_argument("-r", "--reboot", action="store_true")
    ka.set_defaults(func=run_kargs)

    fd = sub.add_parser("finalize-deployment", help="unlock a finalization-locked staged deployment and reboot")
    add_sysroot_arg(fd)
    fd.add_argument("checksum", metavar="CHECKSUM", nargs="?", help="the staged deployment's commit (or a prefix)")
    fd.add_argument("--allow-missing-checksum", action="store_true",
                    help="finalize whatever is staged when no CHECKSUM is given")
    fd.set_defaults(func=run_finalize)


def _common(p: argparse.ArgumentParser, downgrade: bool = False) -> None:
    p.add_argument("-C", "--cache-only", action="store_true", help="do not pull; use the local repository")
    p.add_argument("-r", "--reboot", action="store_true", help="reboot into the new deployment")
    p.add_argument("--lock-finalization", action="store_true",
                   help="the staged deployment is finalized only by finalize-deployment")
    p.add_argument("--unchanged-exit-77", action="store_true", help="exit 77 when nothing changed")
    if downgrade:
        p.add_argument("--allow-downgrade", action="store_true", help="allow an older commit")
    p.add_argument("--install", action="append", default=[], metavar="PACKAGE",
                   help="also layer PACKAGE on the new deployment")
    p.add_argument("--uninstall", action="append", default=[], metavar="PACKAGE",
                   help="also remove the layered PACKAGE")


def _changed_origin(args: argparse.Namespace, sysroot: Sysroot) -> Origin | None:
    """The origin with upgrade/rebase's --install/--uninstall applied (None: unchanged)."""
    if not (args.install or args.uninstall):
        return None
    current, merge = sysroot.origin_deployment(), sysroot.merge_deployment()
    repo = sysroot.repo()
    base_names = {p.name for p in commit_packages(repo, layering.base_of(repo, current.checksum))}
    origin, files = packages.new_origin(current, base_names, packages.Request(install=tuple(args.install),
                                                                              uninstall=tuple(args.uninstall)))
    if files:
        layering.open_apt(sysroot.path, merge.osname, merge.path).keep_local([read_local_deb(f) for f in files])
    return origin


def _open(args: argparse.Namespace) -> Sysroot:
    return Sysroot.open(args.sysroot)


def _print_diff(diff: PackageDiff | None) -> None:
    if diff is not None:
        for line in diff_lines(diff):
            out(line)


def run_upgrade(args: argparse.Namespace) -> int:
    sysroot = _open(args)
    if args.trigger_automatic_update_policy:
        policy = config.of_deployment(sysroot.merge_deployment().path).automatic_update_policy
        if policy == "none":
            out("Automatic updates are not enabled.")
            return 0
        args.check, args.reboot = args.check or policy == "check", args.reboot or policy == "apply"
    with sysroot.locked():
        change = deploy.upgrade(sysroot, progress_for(args), check=args.check, preview=args.preview,
                                download_only=args.download_only, cache_only=args.cache_only,
                                allow_downgrade=args.allow_downgrade, lock_finalization=args.lock_finalization,
                                origin=_changed_origin(args, sysroot))
    if not change.changed:
        return unchanged(args, "No upgrade available.")
    out(f"{'Available' if args.check or args.preview else 'New'} commit: {change.checksum}"
        + (f" (version {change.version})" if change.version else ""))
    if args.preview or not (args.check or args.download_only):
        _print_diff(change.diff)
    if args.check or args.preview or args.download_only:
        return 0
    return finish(args, sysroot, change.deployment)


def run_deploy(args: argparse.Namespace) -> int:
    return _deploy_verb(args, lambda s: deploy.deploy_revision(
        s, args.revision, progress_for(args), cache_only=args.cache_only, lock_finalization=args.lock_finalization,
        origin=_changed_origin(args, s)),
        "Already deployed")


def run_rebase(args: argparse.Namespace) -> int:
    if not args.preview:
        return _deploy_verb(args, lambda s: deploy.rebase(
            s, args.refspec, progress_for(args), cache_only=args.cache_only, lock_finalization=args.lock_finalization,
            origin=_changed_origin(args, s)), f"Already on {args.refspec}")
    sysroot = _open(args)
    with sysroot.locked():
        change = deploy.rebase(sysroot, args.refspec, progress_for(args), cache_only=args.cache_only, preview=True,
                               origin=_changed_origin(args, sysroot))
    if not change.changed:
        return unchanged(args, f"Already on {args.refspec}: {change.checksum}")
    out(f"Available commit: {change.checksum}" + (f" (version {change.version})" if change.version else ""))
    _print_diff(change.diff)
    if change.plan is not None:
        out("Layered packages on the new base:")
        for line in plan_lines(change.plan):
            out(f"  {line}")
    return 0


def _deploy_verb(args: argparse.Namespace, operation: Callable[[Sysroot], deploy.Change], message: str) -> int:
    sysroot = _open(args)
    with sysroot.locked():
        change = operation(sysroot)
    if not change.changed:
        return unchanged(args, f"{message}: {change.checksum}")
    _print_diff(change.diff)
    return finish(args, sysroot, change.deployment)


def run_rollback(args: argparse.Namespace) -> int:
    sysroot = _open(args)
    with sysroot.locked():
        target = deploy.rollback(sysroot)
    out(f"Moving '{target.id}' to be first deployment")
    return finish(args, sysroot, None)


def run_cleanup(args: argparse.Namespace) -> int:
    if not (args.pending or args.rollback or args.base):
        raise UsageError("cleanup: say what to remove: -p/--pending, -r/--rollback, -b/--base")
    sysroot = _open(args)
    with sysroot.locked():
        removed = deploy.cleanup(sysroot, pending=args.pending, rollback_=args.rollback, base=args.base)
    for d in removed:
        out(f"Deployment removed: {d.id}")
    if not removed:
        out("No deployments removed.")
    return 0


def kargs_base(args: argparse.Namespace) -> list[str]:
    """The kernel arguments kargs starts from: the deployment's (--deploy-index, else the one
    changes build on), or /proc/cmdline's."""
    current = deploy.kargs_source(_open(args), args.deploy_index).kargs.split()
    if args.import_proc_cmdline:
        with open("/proc/cmdline") as f:
            current = [a for a in f.read().split() if not a.startswith(("BOOT_IMAGE=", "ostree="))]
    return current


def run_kargs(args: argparse.Namespace) -> int:
    sysroot = _open(args)
    current = kargs_base(args)
    edits = (args.append, args.append_if_missing, args.delete, args.delete_if_present, args.replace)
    if not any(edits) and not args.editor and not args.import_proc_cmdline:
        out(" ".join(current))
        return 0
    new = deploy.edit_kargs(current, append=args.append, append_if_missing=args.append_if_missing,
                            delete=args.delete, delete_if_present=args.delete_if_present, replace=args.replace)
    if args.editor:
        new = _edit(new)
    if new == sysroot.origin_deployment().kargs.split():
        return unchanged(args, "Kernel arguments unchanged.")
    with sysroot.locked():
        deployment = deploy.set_kargs(sysroot, new, progress_for(args), args.lock_finalization)
    out("Kernel arguments updated.")
    return finish(args, sysroot, deployment)


def _edit(kargs: list[str]) -> list[str]:
    editor = os.environ.get("EDITOR") or os.environ.get("VISUAL") or "editor"
    with tempfile.NamedTemporaryFile("w+", suffix=".kargs", delete=False) as f:
        f.write(" ".join(kargs) + "\n# Kernel arguments for the new deployment; lines starting with # are ignored.\n")
        path = f.name
    try:
        subprocess.run([editor, path], check=True)  # interactive: the user's terminal, not run()
        with open(path) as f:
            text = " ".join(line for line in f.read().splitlines() if not line.startswith("#"))
    finally:
        os.unlink(path)
    new = text.split()
    deploy.edit_kargs(new)  # validate
    return new


def run_finalize(args: argparse.Namespace) -> int:
    check_finalize_args(args)
    sysroot = _open(args)
    if not sysroot.is_booted:
        raise UsageError("finalize-deployment: only on the booted system")
    staged = next((d for d in sysroot.deployments() if d.staged), None)
    if staged is None:
        raise RepoError("no staged deployment to finalize")
    if args.checksum is not None and not staged.checksum.startswith(args.checksum):
        raise UsageError(f"the staged deployment is {staged.checksum}, not {args.checksum}")
    with sysroot.locked():
        sysroot.unlock_finalization(staged)
    out(f"Finalizing {staged.id} and rebooting.")
    run(["systemctl", "reboot"], what="systemctl reboot")
    return 0
