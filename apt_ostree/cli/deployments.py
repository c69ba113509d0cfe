"""What upgrade and kargs do in the user's terminal before their request runs (cli/table.py)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import subprocess
import tempfile

from apt_ostree.cli import client
from apt_ostree.cli.common import out
from apt_ostree.cli.render import run_op
from apt_ostree.core import deploy, execute, ops
from apt_ostree.core.sysroot import Sysroot
from apt_ostree.errors import UsageError
from apt_ostree.verbs import BY_PATH


def _open(args: argparse.Namespace) -> Sysroot:
    return Sysroot.open(args.sysroot)


def upgrade(args: argparse.Namespace, op: ops.Op) -> ops.Op | int:
    """--trigger-automatic-update-policy: the request AutomaticUpdatePolicy makes (apt-ostreed's
    policy decides when it serves the sysroot)."""
    if not args.trigger_automatic_update_policy:
        return op
    if client.wants_daemon(args):
        return run_op(args, BY_PATH["upgrade"], ops.Upgrade(), automatic=True)
    automatic = execute.automatic_upgrade(args.sysroot)
    if automatic is None:
        out("Automatic updates are not enabled.")
        return 0
    return automatic


def kargs(args: argparse.Namespace, op: ops.Op) -> ops.Op | int:
    """No change asked: the arguments are shown. --editor runs here, in the user's terminal: its
    edit becomes deletions and additions."""
    assert isinstance(op, ops.Kargs)
    if not (op.append or op.delete or op.append_if_missing or op.delete_if_present or op.replace or args.editor
            or op.import_proc_cmdline):
        out(" ".join(execute.kargs_start(_open(args), op.deploy_index, False)))
        return 0
    if not args.editor:
        return op
    if op.append or op.delete or op.append_if_missing or op.delete_if_present or op.replace:
        raise UsageError("kargs: --editor or --append/--delete/--replace, not both",
                         hint="the editor starts from the current arguments: make every change there")
    current = execute.kargs_start(_open(args), op.deploy_index, op.import_proc_cmdline)
    new = _edit(current)
    if new == current:
        out("Kernel arguments unchanged.")
        return 77 if op.unchanged_exit_77 else 0
    return dataclasses.replace(op, delete_if_present=tuple(a for a in current if a not in new),
                               append_if_missing=tuple(a for a in new if a not in current))


def _edit(kargs: list[str]) -> list[str]:
    editor = os.environ.get("EDITOR") or os.environ.get("VISUAL") or "editor"
    with tempfile.NamedTemporaryFile("w+", suffix=".kargs", delete=False) as f:
        f.write(" ".join(kargs) + "\n# Kernel arguments for the new deployment; lines starting with # are ignored.\n")
        path = f.name
    try:
        try:
            code = subprocess.run([*shlex.split(editor), path]).returncode  # interactive: the user's terminal
        except (FileNotFoundError, PermissionError, ValueError) as e:
            raise UsageError(f"kargs --editor: cannot run the editor {editor!r}: {e}",
                             hint="set $EDITOR to an editor") from None
        if code != 0:
            raise UsageError(f"kargs --editor: the editor {editor!r} exited {code}; nothing changed")
        with open(path, errors="replace") as f:
            text = " ".join(line for line in f.read().splitlines() if not line.startswith("#"))
    finally:
        os.unlink(path)
    new = text.split()
    deploy.check_kargs(new)
    return new


def initramfs(args: argparse.Namespace, op: ops.Op) -> ops.Op | int:
    """Neither --enable nor --disable: the state of the deployment changes build on."""
    assert isinstance(op, ops.Initramfs)
    if op.regenerate and args.disable:
        raise UsageError("initramfs: --enable or --disable, not both")
    if op.regenerate or args.disable:
        return op
    if op.args:
        raise UsageError("initramfs: --arg needs --enable")
    origin = _open(args).origin_deployment().origin
    out(f"Initramfs regeneration: {'enabled' if origin and origin.regenerate_initramfs else 'disabled'}")
    if origin and origin.initramfs_args:
        out(f"Initramfs args: {' '.join(origin.initramfs_args)}")
    if origin and origin.initramfs_etc:
        out(f"Tracked in the initramfs (initramfs-etc): {' '.join(origin.initramfs_etc)}")
    return 0
