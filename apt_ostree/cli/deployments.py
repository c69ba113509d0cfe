"""Deployment verbs: upgrade, deploy, rebase, rollback, cleanup, kargs, finalize-deployment."""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
from typing import Any

from apt_ostree.cli import client
from apt_ostree.cli.common import add_sysroot_arg, out
from apt_ostree.cli.render import run_op
from apt_ostree.core import deploy, execute, ops
from apt_ostree.core.sysroot import Sysroot


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
    dp.set_defaults(func=run_deployment_op)

    rb = sub.add_parser("rebase", help="switch to another ref (REMOTE:REF or REF), keeping /etc changes")
    add_sysroot_arg(rb)
    rb.add_argument("refspec", metavar="REFSPEC")
    rb.add_argument("--preview", action="store_true",
                    help="pull the new base and resolve the layered packages on it; show the changes, deploy nothing")
    _common(rb)
    rb.set_defaults(func=run_deployment_op)

    rl = sub.add_parser("rollback", help="make the previous deployment the default")
    add_sysroot_arg(rl)
    rl.add_argument("-r", "--reboot", action="store_true", help="reboot afterwards")
    rl.set_defaults(func=run_deployment_op)

    cl = sub.add_parser("cleanup", help="remove pending or rollback deployments; prune the repository")
    add_sysroot_arg(cl)
    cl.add_argument("-p", "--pending", action="store_true", help="remove the pending deployment")
    cl.add_argument("-r", "--rollback", action="store_true", help="remove the rollback deployment")
    cl.add_argument("-b", "--base", action="store_true", help="clean up temporary files and prune the repository")
    cl.set_defaults(func=run_deployment_op)

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
    fd.set_defaults(func=run_deployment_op)


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


def _open(args: argparse.Namespace) -> Sysroot:
    return Sysroot.open(args.sysroot)


def _deploying(args: argparse.Namespace) -> dict[str, Any]:
    return {"cache_only": args.cache_only, "lock_finalization": args.lock_finalization, "reboot": args.reboot,
            "unchanged_exit_77": args.unchanged_exit_77, "install": tuple(args.install),
            "uninstall": tuple(args.uninstall)}


def upgrade_op(args: argparse.Namespace) -> ops.Upgrade | None:
    """The request for ``upgrade`` (None: --trigger-automatic-update-policy and the policy is none)."""
    if args.trigger_automatic_update_policy:
        return execute.automatic_upgrade(args.sysroot)
    return ops.Upgrade(check=args.check, preview=args.preview, download_only=args.download_only,
                       allow_downgrade=args.allow_downgrade, **_deploying(args))


def run_upgrade(args: argparse.Namespace) -> int:
    if args.trigger_automatic_update_policy and client.wants_daemon(args):  # (apt-ostreed's policy decides)
        return run_op(args, ops.Upgrade(), automatic=True)
    op = upgrade_op(args)
    if op is None:
        out("Automatic updates are not enabled.")
        return 0
    return run_op(args, op)


def deployment_op(args: argparse.Namespace) -> ops.Op:
    """The request for deploy, rebase, rollback, cleanup and finalize-deployment."""
    if args.command == "deploy":
        return ops.Deploy(args.revision, **_deploying(args))
    if args.command == "rebase":
        return ops.Rebase(args.refspec, preview=args.preview, **_deploying(args))
    if args.command == "rollback":
        return ops.Rollback(reboot=args.reboot)
    if args.command == "cleanup":
        return ops.Cleanup(pending=args.pending, rollback=args.rollback, base=args.base)
    return ops.FinalizeDeployment(args.checksum, args.allow_missing_checksum)


def run_deployment_op(args: argparse.Namespace) -> int:
    return run_op(args, deployment_op(args))


def kargs_op(args: argparse.Namespace) -> ops.Kargs | None:
    """The request for ``kargs`` (None: no change asked, the arguments are shown). --editor runs here,
    in the user's terminal: its edit becomes deletions and additions."""
    append, delete = tuple(args.append), tuple(args.delete)
    append_if_missing, delete_if_present = tuple(args.append_if_missing), tuple(args.delete_if_present)
    replace = tuple(args.replace)
    if not (append or delete or append_if_missing or delete_if_present or replace or args.editor
            or args.import_proc_cmdline):
        return None
    if args.editor:
        current = execute.kargs_start(_open(args), args.deploy_index, args.import_proc_cmdline)
        new = _edit(deploy.edit_kargs(current, append=append, append_if_missing=append_if_missing, delete=delete,
                                      delete_if_present=delete_if_present, replace=replace))
        append, delete, replace = (), (), ()
        delete_if_present = tuple(a for a in current if a not in new)
        append_if_missing = tuple(a for a in new if a not in current)
    return ops.Kargs(append=append, append_if_missing=append_if_missing, delete=delete,
                     delete_if_present=delete_if_present, replace=replace, deploy_index=args.deploy_index,
                     import_proc_cmdline=args.import_proc_cmdline, lock_finalization=args.lock_finalization,
                     reboot=args.reboot, unchanged_exit_77=args.unchanged_exit_77)


def run_kargs(args: argparse.Namespace) -> int:
    op = kargs_op(args)
    if op is None:
        out(" ".join(execute.kargs_start(_open(args), args.deploy_index, False)))
        return 0
    return run_op(args, op)


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
