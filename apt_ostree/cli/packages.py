"""What package verbs check or fill in before their request runs (cli/table.py)."""

from __future__ import annotations

import argparse
import dataclasses

from apt_ostree.core import ops
from apt_ostree.errors import UsageError


def _change(op: ops.Op) -> ops.PackageChange:
    assert isinstance(op, ops.PackageChange)
    return op


def uninstall(args: argparse.Namespace, op: ops.Op) -> ops.Op:
    r = _change(op).request
    if not r.uninstall and not r.uninstall_all:
        raise UsageError("uninstall: name the packages to remove, or --all")
    return op


def override_reset(args: argparse.Namespace, op: ops.Op) -> ops.Op:
    r = _change(op).request
    if not r.override_reset and not r.override_reset_all:
        raise UsageError("override reset: name the packages, or --all")
    return op


def reset(args: argparse.Namespace, op: ops.Op) -> ops.Op:
    """Without -l, -o or -i: all three (the pure base)."""
    change = _change(op)
    r = change.request
    if r.reset_layers or r.override_reset_all or r.reset_initramfs:
        return op
    return dataclasses.replace(change, request=dataclasses.replace(r, reset_layers=True, override_reset_all=True,
                                                                   reset_initramfs=True))
