"""`compose publish`: a composed commit made ready for a fleet, in an archive repository a web server serves.

For each ref: the new commit (with up to ``deltas_from`` of its parents, for the deltas) pulled into the
archive repository, the commits signed with GPG (first: a delta carries the signatures its commit had
when it was made), static deltas to it from those parents and from empty, the history pruned to
``keep`` commits, then the summary (refs, commits, deltas) regenerated and signed. Everything is
checked before the first write: the source repository and its refs, the archive repository's mode,
the signing key. A run with nothing new writes nothing (``changed``
False: exit 77 with --unchanged-exit-77). libostree's own atomicity does the rest: objects and
deltas are written before the refs and the summary that name them, so a client never sees a ref
whose objects are missing.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from apt_ostree.core import ostree_publish as pub
from apt_ostree.core.ostree import Repo
from apt_ostree.errors import RepoError, UsageError
from apt_ostree.progress import Progress


@dataclass(frozen=True)
class PublishOptions:
    refs: tuple[str, ...] = ()  # none: every ref of the source
    deltas_from: int = 2  # deltas from this many earlier commits of each ref (and from empty)
    empty_delta: bool = True  # a delta from empty too (a first install's; the slow one: the whole tree)
    keep: int | None = None  # commits kept per ref (None: all)
    gpg_key: str | None = None
    gpg_homedir: Path | None = None


@dataclass(frozen=True)
class PublishResult:
    refs: dict[str, str]  # ref -> its commit in the archive repository
    pulled: tuple[str, ...] = ()  # refs that moved
    deltas: tuple[str, ...] = ()  # deltas written ("FROM-TO", "TO" from empty)
    signed: tuple[str, ...] = ()  # commits signed now
    pruned: int = 0  # objects deleted
    summary: bool = False  # the summary was written

    @property
    def changed(self) -> bool:
        return bool(self.pulled or self.deltas or self.signed or self.pruned or self.summary)


def publish(source_path: Path, archive_path: Path, opts: PublishOptions, progress: Progress) -> PublishResult:
    if opts.deltas_from < 0:
        raise UsageError(f"--deltas-from={opts.deltas_from}: a number of parent commits, 0 or more")
    if opts.keep is not None and opts.keep < 1:
        raise UsageError(f"--keep={opts.keep}: at least 1 (the commit a ref names)")
    if opts.gpg_homedir is not None and not opts.gpg_key:
        raise UsageError("--gpg-homedir needs --gpg-sign=KEYID")
    source = Repo.open(source_path)
    refs = list(opts.refs) or [r for r in source.refs() if ":" not in r]
    if not refs:
        raise RepoError(f"{source_path} has no refs to publish")
    heads = {}
    for ref in refs:
        head = source.resolve_ref(ref)
        if head is None:
            raise RepoError(f"no ref {ref!r} in {source_path}", hint=f"its refs: {', '.join(source.refs()) or 'none'}")
        heads[ref] = head
    with tempfile.TemporaryDirectory(prefix="apt-ostree-publish-") as tmp:
        keyring = Path(tmp) / "key.gpg"
        if opts.gpg_key:
            pub.export_key(opts.gpg_key, opts.gpg_homedir, keyring)
        return _publish(source, archive_path, heads, opts, keyring, progress)


def _publish(source: Repo, archive_path: Path, heads: dict[str, str], opts: PublishOptions, keyring: Path,
             progress: Progress) -> PublishResult:
    archive = Repo.open_or_create(archive_path, mode="archive")
    if archive.mode != "archive":
        raise RepoError(f"{archive_path} is a {archive.mode} repository: a web server needs an archive one",
                        hint="publish into a new directory")

    pulled, deltas, signed = [], [], []
    known = pub.delta_names(archive)
    for ref, head in heads.items():
        previous = archive.resolve_ref(ref)
        if previous != head:
            progress.step(f"Pulling {ref} ({head[:12]})")
            archive.pull_local(source, head, depth=opts.deltas_from)
            archive.set_ref(None, ref, head)
            pulled.append(ref)
        # deltas from what machines have: the commits before it, and the ref's previous commit here
        # (when the new one is no child of it: a rebuild from scratch)
        earlier = [c.checksum for c in archive.history(head)[1:]]
        if previous is not None and previous != head and previous not in earlier:
            earlier.insert(0, previous)
        sources = ([None] if opts.empty_delta else []) + earlier[:opts.deltas_from]
        # signed before its deltas are made: a delta carries the commit's signatures as they were then
        if opts.gpg_key:
            for info in archive.history(head)[:opts.keep or None]:
                if not pub.is_signed_by(archive, info.checksum, opts.gpg_key, keyring):
                    pub.sign_commit(archive, info.checksum, opts.gpg_key, opts.gpg_homedir)
                    signed.append(info.checksum)
        for from_ in sources:
            name = pub.delta_name(from_, head)
            if name not in known or head in signed:
                progress.step(f"Generating the static delta {from_[:12] if from_ else pub.EMPTY} -> {head[:12]}")
                pub.generate_delta(archive, from_, head)
                known.add(name)
                deltas.append(name)
    pruned = 0
    if opts.keep is not None and any(len(archive.history(h)) > opts.keep for h in heads.values()):
        progress.step(f"Pruning to {opts.keep} commits a ref")
        pruned = pub.prune(archive, opts.keep - 1)
    summary = bool(pulled or deltas or signed or pruned) or not (archive_path / "summary").exists() or (
        opts.gpg_key is not None and not pub.summary_signed_by(archive, opts.gpg_key, keyring))
    if summary:
        progress.step("Writing the summary" + (f" (signed with {opts.gpg_key})" if opts.gpg_key else ""))
        pub.regenerate_summary(archive, opts.gpg_key, opts.gpg_homedir)
    return PublishResult({ref: archive.resolve(ref) for ref in heads}, tuple(pulled), tuple(deltas),
                         tuple(signed), pruned, summary)
