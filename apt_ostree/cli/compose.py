"""``apt-ostree compose tree``: build an OSTree commit from a treefile."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from apt_ostree.cli.common import key_value, out, progress_for, write_atomically
from apt_ostree.errors import EXIT_UNCHANGED, ImageError, UsageError

if TYPE_CHECKING:
    from apt_ostree.compose.container import EncapsulateOptions, EncapsulateResult


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
    disk.add_argument("--remote-gpg-key", type=Path, metavar="FILE",
                      help="the remote's GPG public key: its commits and summary are verified")
    disk.set_defaults(func=run_disk_image)

    enc = csub.add_parser("container-encapsulate", help="write a commit as a chunked, bootable OCI image",
                          description="Write REV of REPO as a bootc-compatible container image to IMGREF "
                                      "(oci:DIR[:TAG], oci-archive:FILE[:TAG] or docker://HOST/NAME:TAG).")
    enc.add_argument("--repo", type=Path, required=True, help="OSTree repository holding the commit")
    enc.add_argument("rev", metavar="REV", help="ref or commit checksum")
    enc.add_argument("imgref", metavar="IMGREF")
    _image_options(enc)
    enc.set_defaults(func=run_encapsulate)

    image = csub.add_parser("image", help="compose a treefile and write it as a bootable OCI image",
                            description="compose tree TREEFILE, then container-encapsulate the commit to IMGREF.")
    image.add_argument("treefile", type=Path, metavar="TREEFILE")
    image.add_argument("imgref", metavar="IMGREF")
    image.add_argument("--repo", type=Path, help="OSTree repository (default: CACHEDIR/repo)")
    image.add_argument("--cachedir", type=Path, help="keep package lists, .debs and the repository here")
    image.add_argument("--source-date-epoch", type=int, metavar="N",
                       help="timestamp for the build and commit (default: $SOURCE_DATE_EPOCH, else now)")
    image.add_argument("--cache-only", action="store_true", help="use only cached package lists and .debs")
    _image_options(image)
    image.set_defaults(func=run_image)

    publish = csub.add_parser(
        "publish", help="make commits ready for a fleet: an archive repository with deltas and a signed summary",
        description="Pull REFs (default: every ref) from REPO into ARCHIVE_REPO (an archive repository any "
                    "web server can serve; created if missing), generate static deltas to each new commit from "
                    "its previous commits and from empty, sign the commits and the summary with GPG, prune the "
                    "history, and regenerate the summary.")
    publish.add_argument("--repo", type=Path, required=True, help="the repository the commits were composed in")
    publish.add_argument("archive", type=Path, metavar="ARCHIVE_REPO")
    publish.add_argument("refs", nargs="*", metavar="REF")
    publish.add_argument("--deltas-from", type=int, default=2, metavar="N",
                         help="deltas from the N commits before each new one (default 2), and from empty")
    publish.add_argument("--no-empty-delta", action="store_true",
                         help="no delta from empty (a first install's: the whole tree, the slow one to make)")
    publish.add_argument("--keep", type=int, metavar="N", help="keep N commits of each ref's history (default: all)")
    publish.add_argument("--gpg-sign", metavar="KEYID", help="sign the commits and the summary with this GPG key")
    publish.add_argument("--gpg-homedir", type=Path, metavar="DIR", help="GPG home directory holding the key")
    publish.add_argument("--unchanged-exit-77", action="store_true", help="exit 77 when there was nothing new")
    publish.set_defaults(func=run_publish)

    lint = csub.add_parser("lint", help="check a commit against bootc's base-image rules",
                           description="Check REV of REPO: one kernel with its initramfs, an empty /boot, /sysroot "
                                       "and the /ostree link, not both /etc and /usr/etc, empty /run and /tmp, "
                                       "UTF-8 names, /var made by tmpfiles.d.")
    lint.add_argument("--repo", type=Path, required=True)
    lint.add_argument("rev", metavar="REV")
    lint.set_defaults(func=run_lint)


def _image_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--label", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                   help="add a label to the image (repeatable)")
    p.add_argument("--copymeta", action="append", default=[], metavar="KEY",
                   help="copy this commit metadata string to a label (it must exist; repeatable)")
    p.add_argument("--copymeta-opt", action="append", default=[], metavar="KEY",
                   help="copy this commit metadata string to a label if it exists (repeatable)")
    p.add_argument("--cmd", action="append", metavar="ARG", help="the image's CMD, one argument per --cmd")
    p.add_argument("--max-layers", type=int, default=64, metavar="N", help="at most N layers (default 64)")
    p.add_argument("--previous-build-manifest", type=Path, metavar="FILE",
                   help="keep the package layers of this earlier manifest (default: of the image at IMGREF)")
    p.add_argument("--compression-fast", action="store_true", help="gzip level 1 instead of 6")


def _encapsulate_options(args: argparse.Namespace) -> EncapsulateOptions:
    from apt_ostree.compose.container import EncapsulateOptions

    return EncapsulateOptions(labels=tuple(args.label), copymeta=tuple(args.copymeta),
                              copymeta_opt=tuple(args.copymeta_opt), cmd=tuple(args.cmd) if args.cmd else None,
                              max_layers=args.max_layers, previous_build_manifest=args.previous_build_manifest,
                              compression_fast=args.compression_fast)


def _report_image(result: EncapsulateResult) -> None:
    out(f"Wrote image: {result.image}")
    out(f"Commit: {result.commit}")
    out(f"Digest: {result.manifest_digest}")
    out(f"Layers: {len(result.layers)} ({result.size / 1e6:.1f} MB compressed)")


def run_encapsulate(args: argparse.Namespace) -> int:
    from apt_ostree.compose.container import encapsulate
    from apt_ostree.core.imgref import ImageRef
    from apt_ostree.core.ostree import Repo

    target = ImageRef.parse(args.imgref)
    opts = _encapsulate_options(args)
    _report_image(encapsulate(Repo.open(args.repo), args.rev, target, opts, progress_for(args)))
    return 0


def run_image(args: argparse.Namespace) -> int:
    from apt_ostree.compose.container import encapsulate
    from apt_ostree.compose.tree import ComposeOptions, compose_tree
    from apt_ostree.core.imgref import ImageRef
    from apt_ostree.core.ostree import Repo
    from apt_ostree.core.treefile import load_treefile

    target = ImageRef.parse(args.imgref)
    opts = _encapsulate_options(args)
    treefile = load_treefile(args.treefile)
    if args.repo is None and args.cachedir is None:
        raise UsageError("compose image needs --repo or --cachedir", hint="the commit is kept there")
    repo = args.repo or args.cachedir / "repo"
    epoch = args.source_date_epoch
    if epoch is None and os.environ.get("SOURCE_DATE_EPOCH", "").isdigit():
        epoch = int(os.environ["SOURCE_DATE_EPOCH"])
    result = compose_tree(treefile, ComposeOptions(repo=repo, cachedir=args.cachedir, source_date_epoch=epoch,
                                                   cache_only=args.cache_only), progress_for(args))
    assert result.checksum is not None
    out(f"{'Wrote' if result.changed else 'Unchanged'} commit: {result.checksum}")
    _report_image(encapsulate(Repo.open(repo), result.checksum, target, opts, progress_for(args)))
    return 0


def run_publish(args: argparse.Namespace) -> int:
    from apt_ostree.compose.publish import PublishOptions, publish

    opts = PublishOptions(refs=tuple(args.refs), deltas_from=args.deltas_from, empty_delta=not args.no_empty_delta,
                          keep=args.keep, gpg_key=args.gpg_sign, gpg_homedir=args.gpg_homedir)
    result = publish(args.repo, args.archive, opts, progress_for(args))
    for ref, checksum in result.refs.items():
        out(f"{ref}: {checksum}" + (" (new)" if ref in result.pulled else ""))
    if result.deltas:
        out(f"Static deltas: {len(result.deltas)} new ({', '.join(_delta_label(d) for d in result.deltas)})")
    if result.signed:
        out(f"Signed: {len(result.signed)} commit(s) with {args.gpg_sign}")
    if result.pruned:
        out(f"Pruned: {result.pruned} objects")
    if not result.changed:
        out(f"{args.archive}: nothing new")
        return EXIT_UNCHANGED if args.unchanged_exit_77 else 0
    out(f"Summary: {args.archive / 'summary'}" + (" (signed)" if args.gpg_sign else ""))
    return 0


def _delta_label(name: str) -> str:
    from_, _, to = name.rpartition("-")
    return f"{from_[:12] if from_ else 'empty'} -> {to[:12]}"


def run_lint(args: argparse.Namespace) -> int:
    from apt_ostree.compose.lint import lint
    from apt_ostree.core.ostree import Repo

    repo = Repo.open(args.repo)
    checksum = repo.resolve(args.rev)
    problems = lint(repo, checksum)
    for p in problems:
        out(str(p))
    if problems:
        raise ImageError(f"{args.rev} ({checksum[:12]}): {len(problems)} lint problem(s)")
    out(f"{args.rev} ({checksum[:12]}): no lint problems")
    return 0


def run_disk_image(args: argparse.Namespace) -> int:
    from apt_ostree.compose.diskimage import DiskImageOptions, build_disk_image

    opts = DiskImageOptions(
        repo=args.repo, ref=args.ref, output=args.output.absolute(), size=args.size, format=args.format,
        bootloader=args.bootloader, kargs=tuple(args.karg), root_ssh_key=args.root_ssh_key,
        root_password_hash=args.root_password_hash, hostname=args.hostname, remote=args.remote,
        remote_gpg_key=args.remote_gpg_key,
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
