"""``apt-ostree compose tree``: build an OSTree commit from a treefile."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from apt_ostree.cli.common import key_value, out, progress_for, write_atomically
from apt_ostree.compose.tree import ComposeOptions, compose_tree
from apt_ostree.core.treefile import dumps, load_treefile
from apt_ostree.errors import UsageError

EXIT_UNCHANGED = 77


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    compose = sub.add_parser("compose", help="build OSTree commits from treefiles")
    csub = compose.add_subparsers(dest="compose_command", metavar="COMMAND")
    csub.required = True
    tree = csub.add_parser("tree", help="compose a treefile into an OSTree commit",
                           description="Build a Debian root file system from TREEFILE and commit it to REPO.")
    tree.add_argument("treefile", type=Path, metavar="TREEFILE")
    tree.add_argument("--repo", type=Path, required=True, help="OSTree repository (created as bare if missing)")
    tree.add_argument("--cachedir", type=Path, help="keep package lists and .debs here across composes")
    tree.add_argument("--dry-run", action="store_true", help="resolve and print the packages, commit nothing")
    tree.add_argument("--print-only", action="store_true", help="print the expanded treefile as JSON and exit")
    tree.add_argument("--source-date-epoch", type=int, metavar="N",
                      help="timestamp for the build and commit (default: $SOURCE_DATE_EPOCH, else now)")
    tree.add_argument("--add-metadata-string", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                      help="add a string to the commit metadata (repeatable)")
    tree.add_argument("--write-commitid-to", type=Path, metavar="FILE", help="write the commit checksum to FILE")
    parent = tree.add_mutually_exclusive_group()
    parent.add_argument("--parent", metavar="REV", help="commit parent (default: the ref's current commit)")
    parent.add_argument("--no-parent", action="store_true", help="commit with no parent")
    tree.add_argument("--force-nocache", action="store_true", help="build even if the inputs are unchanged")
    tree.add_argument("--cache-only", action="store_true", help="use only cached package lists and .debs")
    tree.add_argument("--unchanged-exit-77", action="store_true", help="exit 77 when the inputs are unchanged")
    tree.set_defaults(func=run_tree)


def run_tree(args: argparse.Namespace) -> int:
    treefile = load_treefile(args.treefile)
    if args.print_only:
        out(dumps(treefile))
        return 0
    epoch = args.source_date_epoch
    if epoch is None and os.environ.get("SOURCE_DATE_EPOCH", "").isdigit():
        epoch = int(os.environ["SOURCE_DATE_EPOCH"])
    if epoch is not None and epoch < 0:
        raise UsageError("--source-date-epoch must not be negative")
    opts = ComposeOptions(
        repo=args.repo,
        cachedir=args.cachedir,
        dry_run=args.dry_run,
        source_date_epoch=epoch,
        metadata_strings=dict(args.add_metadata_string),
        parent=args.parent,
        no_parent=args.no_parent,
        force_nocache=args.force_nocache,
        cache_only=args.cache_only,
    )
    result = compose_tree(treefile, opts, progress_for(args))
    if args.dry_run:
        for line in result.transaction:
            out(line)
        out(f"# dry run: {len(result.transaction)} packages would be installed; nothing was written")
        return 0
    if not result.changed:
        out(f"No apt-ostree changes: {result.ref} unchanged at {result.checksum}")
        if args.write_commitid_to and result.checksum:
            write_atomically(args.write_commitid_to, result.checksum)
        return EXIT_UNCHANGED if args.unchanged_exit_77 else 0
    assert result.checksum is not None
    out(f"Wrote commit: {result.checksum}")
    out(f"Ref: {result.ref}")
    if result.version:
        out(f"Version: {result.version}")
    out(f"Packages: {len(result.packages)}")
    if args.write_commitid_to:
        write_atomically(args.write_commitid_to, result.checksum)
    return 0
