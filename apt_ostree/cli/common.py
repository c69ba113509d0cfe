"""Helpers shared by the CLI verb modules."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from apt_ostree.core.atomic import write_atomic
from apt_ostree.core.pkgdb import PackageDiff
from apt_ostree.errors import UsageError
from apt_ostree.progress import Progress, TerminalProgress

if TYPE_CHECKING:
    from apt_ostree.core.plan import Plan


def _terminal(verbose: bool) -> Progress:
    return TerminalProgress(verbose=verbose)


_progress_factory: list[Callable[[bool], Progress]] = [_terminal]


def set_progress_factory(factory: Callable[[bool], Progress]) -> None:
    """How commands report progress: the terminal (default), or the daemon worker's events."""
    _progress_factory[0] = factory


def progress_for(args: argparse.Namespace) -> Progress:
    return _progress_factory[0](bool(getattr(args, "verbose", False)))


def key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the whole new one."""
    path = Path(path)
    if not path.parent.is_dir():
        raise UsageError(f"cannot write {path}: directory {path.parent} does not exist")
    write_atomic(path, text.encode())


def diff_lines(diff: PackageDiff) -> list[str]:
    """rpm-ostree's block format of a package diff (Upgraded/Downgraded/Removed/Added)."""
    lines = ["No package changes."] if diff.empty else []
    for title, changes in (("Upgraded", diff.upgraded), ("Downgraded", diff.downgraded)):
        if changes:
            lines.append(f"{title}:")
            lines += [f"  {c.name} {c.old} -> {c.new}" for c in changes]
    for title, pkgs in (("Removed", diff.removed), ("Added", diff.added)):
        if pkgs:
            lines.append(f"{title}:")
            lines += [f"  {p.name} {p.version}" for p in pkgs]
    return lines


def plan_lines(plan: Plan) -> list[str]:
    lines = []
    if plan.install:
        lines.append(f"Installing {len(plan.install)} packages:")
        lines += [f"  {p}" for p in plan.install]
    if plan.replace:
        lines.append(f"Replacing {len(plan.replace)} base packages:")
        lines += [f"  {n} {old} -> {p.version}" for n, old, p in plan.replace]
    if plan.remove:
        lines.append(f"Removing {len(plan.remove)} base packages:")
        lines += [f"  {p}" for p in plan.remove]
    if plan.inactive:
        lines.append(f"Inactive requests (in the base): {' '.join(plan.inactive)}")
    if plan.empty:
        lines.append("No packages to install or remove.")
    lines.append(f"Download size: {plan.download_size / 1e6:.1f} MB")
    return lines


def out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def add_sysroot_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sysroot", type=Path, default=Path("/"), metavar="PATH", help="sysroot to operate on (default /)")
