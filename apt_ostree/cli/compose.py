"""``apt-ostree compose tree``: build an OSTree commit from a treefile."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from apt_ostree.cli.common import key_value, out, progress_for, write_atomically
from apt_ostree.errors import EXIT_UNCHANGED, UsageError


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

    disk = csub.add_parser("disk-image", help="build a bootable disk image from a commit",
                           description="Partition and format OUTPUT (a file or a block device), deploy REF "
                                       "from REPO into it and install GRUB.")
    disk.add_argument("output", type=Path, metavar="OUTPUT")
    disk.add_argument("--repo", type=Path, required=True, help="OSTree repository holding the commit")
    disk.add_argument("--ref", required=True, help="ref (or commit checksum) to deploy")
    disk.add_argument("--size", default="8G", help="disk size for a file OUTPUT (default 8G)")
    disk.add_argument("--format", choices=("raw", "qcow2"), default="raw")
    disk.add_argument("--bootloader", choices=("bios", "uefi"), default="bios",
                      help="bios: GRUB in the MBR (default); uefi: GPT with an EFI system partition")
    disk.add_argument("--karg", action="append", default=[], metavar="KARG",
                      help="extra kernel argument, e.g. quiet or console=ttyS0 (repeatable)")
    disk.add_argument("--root-ssh-key", type=Path, metavar="FILE", help="authorized_keys for root")
    disk.add_argument("--root-password-hash", metavar="HASH", help="crypt(3) hash of root's password")
    disk.add_argument("--hostname", metavar="NAME")
    disk.add_argument("--remote", type=key_value, metavar="NAME=URL",
                      help="add this remote to the image; the deployment's origin becomes NAME:REF")
    disk.set_defaults(func=run_disk_image)


def run_disk_image(args: argparse.Namespace) -> int:
    from apt_ostree.compose.diskimage import DiskImageOptions, build_disk_image

    opts = DiskImageOptions(
        repo=args.repo, ref=args.ref, output=args.output.absolute(), size=args.size, format=args.format,
        bootloader=args.bootloader, kargs=tuple(args.karg), root_ssh_key=args.root_ssh_key,
        root_password_hash=args.root_password_hash, hostname=args.hostname, remote=args.remote,
    )
    checksum = build_disk_image(opts, progress_for(args))
    out(f"Wrote disk image: {args.output}")
    out(f"Deployed: {args.ref} ({checksum})")
    return 0


def run_tree(args: argparse.Namespace) -> int:
    from apt_ostree.compose.tree import ComposeOptions, compose_tree
    from apt_ostree.core.treefile import dumps, load_treefile

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
