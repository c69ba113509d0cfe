"""The verbs of apt_ostree.verbs as argparse subcommands, and the request each command line makes.

Every row becomes a subcommand with its options; running it makes the row's request from the
parsed arguments (:func:`request_of`) and hands it to cli/render.py, in-process or to apt-ostreed.
A few verbs do something of their own first, in the user's terminal (``kargs --editor``, ``kargs``
with nothing to change shows the arguments, ``upgrade --trigger-automatic-update-policy``,
``reset`` without -l/-o): :data:`PREPARE` has them, by path.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from apt_ostree import verbs
from apt_ostree.cli import client, deployments
from apt_ostree.cli import packages as package_checks
from apt_ostree.cli.common import add_sysroot_arg
from apt_ostree.cli.render import run_op
from apt_ostree.core import ops, packages
from apt_ostree.verbs import CLI, Opt, Verb

# path -> (args, request) -> the request to run, or an exit code (done here)
PREPARE: dict[str, Callable[[argparse.Namespace, ops.Op], ops.Op | int]] = {
    "upgrade": deployments.upgrade, "kargs": deployments.kargs, "uninstall": package_checks.uninstall,
    "override reset": package_checks.override_reset, "reset": package_checks.reset,
    "initramfs": deployments.initramfs,
}


def _add(p: argparse.ArgumentParser, o: Opt) -> None:
    help_ = argparse.SUPPRESS if o.hidden else (o.help or None)
    if o.positional:
        p.add_argument(o.dest, nargs=o.nargs, metavar=o.metavar, help=help_)
        return
    kw: dict[str, Any] = {"dest": o.dest, "help": help_}
    if o.kind == "bool":
        kw["action"] = "store_true"
    elif o.kind in ("list", "args"):
        kw.update(action="append", default=[], metavar=o.metavar)
    else:
        kw.update(type=int if o.kind == "int" else str, metavar=o.metavar)
    p.add_argument(*o.flags, **kw)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    groups: dict[str, argparse._SubParsersAction[argparse.ArgumentParser]] = {}
    for verb in verbs.VERBS:
        words = verb.path.split()
        parent = sub
        if len(words) > 1:
            if words[0] not in groups:
                g = sub.add_parser(words[0], help=verbs.GROUPS[words[0]])
                groups[words[0]] = g.add_subparsers(dest=f"{words[0]}_command", metavar="COMMAND")
                groups[words[0]].required = True
            parent = groups[words[0]]
        p = parent.add_parser(words[-1], aliases=list(verb.aliases), help=verb.help)
        add_sysroot_arg(p)
        for o in verb.opts:
            _add(p, o)
        if verb.changes:
            client.add_args(p)
        p.set_defaults(func=run_verb, verb=verb)


def _local(items: list[str]) -> list[str]:
    """Paths of local .debs made absolute (apt-ostreed does not share our working directory)."""
    return [str(Path(i).resolve()) if packages.is_local(i) else i for i in items]


def request_of(verb: Verb, args: argparse.Namespace) -> ops.Op:
    """The row's request for the parsed command line."""
    fields: dict[str, Any] = {}
    for o in verb.opts:
        if o.into == CLI:
            continue
        value = getattr(args, o.dest)
        if o.paths:
            value = _local(value)
        if value is not None:
            fields[o.dest] = value
    return ops.build(verb.request, fields)


def run_verb(args: argparse.Namespace) -> int:
    verb: Verb = args.verb
    op = request_of(verb, args)
    prepare = PREPARE.get(verb.path)
    prepared = op if prepare is None else prepare(args, op)
    if isinstance(prepared, int):
        return prepared
    return run_op(args, verb, prepared)
