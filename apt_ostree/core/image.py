"""Bootable container images as deployable commits: check, pull and import (ostree-ext's store).

An image's layers up to the ``ostree.final-diffid`` label are ostree layers (core/ostree_tar.py):
their objects are written with their own checksums, so the commit named by ``ostree.commit`` is
deployed unchanged. Only the layers whose objects are not here already are fetched: none when the
commit is complete in the repository, else those not listed by an image pulled before. Layers
after the label were added by other tools (``FROM`` our image): each is applied to the commit as
an overlay (core/image_derived.py: ``/etc`` to ``/usr/etc``, ``/var`` to tmpfiles.d) and the result is
a new commit whose parent is the image's.

The pulled commit is kept by the ref ``ostree/container/image/ESCAPED-IMAGE``; the manifest, its
digest and the configuration are recorded in it (ostree-ext's keys), in the commit's metadata
when apt-ostree made the commit, in its detached metadata when the commit is the image's own.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from apt_ostree.core.image_derived import extract_layer, var_as_tmpfiles
from apt_ostree.core.imgref import OstreeImageRef, image_ref_name
from apt_ostree.core.oci import LAYER_COMPRESSION, VERSION, Descriptor
from apt_ostree.core.ostree import Repo, variant_metadata
from apt_ostree.core.ostree_objects import Objects
from apt_ostree.core.ostree_overlay import commit_delta
from apt_ostree.core.ostree_tar import Importer
from apt_ostree.core.skopeo import Fetched, Proxy
from apt_ostree.errors import ImageError
from apt_ostree.progress import Progress
from apt_ostree.run import reap, spawn

KEY_DIGEST = "ostree.manifest-digest"
KEY_MANIFEST = "ostree.manifest"
KEY_CONFIG = "ostree.container.image-config"
KEY_BASE = "apt-ostree.image.base-commit"  # (a derived image's commit: the image's own ostree commit)
DROPPED_METADATA = ("apt-ostree.packages", "apt-ostree.inputhash")  # (no longer true of a derived tree)
IMAGE_REFS = "ostree/container/image"
HOST_ARCH = "amd64"


@dataclass(frozen=True)
class ImageState:
    """What a commit records of the image it came from."""

    digest: str
    manifest: Mapping[str, Any]
    config: Mapping[str, Any]

    @property
    def layer_digests(self) -> tuple[str, ...]:
        return tuple(str(layer.get("digest")) for layer in self.manifest.get("layers") or ())


@dataclass(frozen=True)
class Pulled:
    commit: str  # the commit to deploy
    digest: str  # the manifest's
    version: str | None
    changed: bool  # not the image the ref held already
    layers: int
    fetched_layers: int
    fetched_bytes: int
    total_bytes: int


def state_of(repo: Repo, rev: str) -> ImageState | None:
    info = repo.commit(rev)
    meta: Mapping[str, Any] = info.metadata
    if KEY_DIGEST not in meta:
        meta = Objects(repo).commitmeta_values(info.checksum)
    if KEY_DIGEST not in meta:
        return None
    try:
        return ImageState(str(meta[KEY_DIGEST]), json.loads(meta.get(KEY_MANIFEST) or "{}"),
                          json.loads(meta.get(KEY_CONFIG) or "{}"))
    except ValueError:
        return None


def check(ref: OstreeImageRef) -> Fetched:
    """The image's manifest and configuration, fetched (nothing else is)."""
    _check_verification(ref)
    with Proxy() as proxy:
        _handle, fetched = proxy.fetch(ref.image)
    _validate(ref, fetched)
    return fetched


def _check_verification(ref: OstreeImageRef) -> None:
    if ref.verify == "signed":
        raise ImageError(f"{ref}: containers-policy.json signatures cannot be checked here",
                         hint="this skopeo's image proxy does not apply policy.json; sign the OSTree commit "
                              "(ostree gpg-sign) and use ostree-remote-image:REMOTE:..., or "
                              "ostree-unverified-image:... for an image you trust by other means")


def _validate(ref: OstreeImageRef, fetched: Fetched) -> tuple[str, int]:
    """(ostree commit, number of ostree layers) of a bootable image; ImageError otherwise."""
    labels, config = fetched.config.labels, fetched.config
    if labels.get("containers.bootc") != "1" and labels.get("ostree.bootable") not in ("true", "1"):
        raise ImageError(f"{ref.image}: not a bootable image (no containers.bootc or ostree.bootable label)")
    if config.architecture and config.architecture != HOST_ARCH:
        raise ImageError(f"{ref.image}: an image for {config.architecture}, this system is {HOST_ARCH}")
    commit = labels.get("ostree.commit", "")
    if len(commit) != 64 or any(c not in "0123456789abcdef" for c in commit):
        raise ImageError(f"{ref.image}: no ostree.commit label",
                         hint="apt-ostree deploys images made by container-encapsulate or ostree-ext, "
                              "and images built FROM them")
    if len(config.diff_ids) != len(fetched.manifest.layers):
        raise ImageError(f"{ref.image}: {len(fetched.manifest.layers)} layers but {len(config.diff_ids)} diff IDs")
    final = labels.get("ostree.final-diffid")
    if final is None:
        if len(config.diff_ids) != 1:
            raise ImageError(f"{ref.image}: no ostree.final-diffid label")
        return commit, 1
    if final not in config.diff_ids:
        raise ImageError(f"{ref.image}: ostree.final-diffid {final} is not one of its layers")
    return commit, config.diff_ids.index(final) + 1


def known_layers(repo: Repo) -> set[str]:
    """The layer digests of the images pulled before (their objects are all here)."""
    out: set[str] = set()
    for ref in repo.refs():
        if ref.startswith(IMAGE_REFS + "/"):
            state = state_of(repo, ref)
            if state is not None:
                out.update(state.layer_digests)
    return out


def pull(repo: Repo, ref: OstreeImageRef, progress: Progress) -> Pulled:
    """Fetch and import ``ref``; its commit is then kept by :func:`image_ref_name`. With an
    ``ostree-remote-image:REMOTE:`` reference the commit must be signed by a key of REMOTE: checked
    before anything is committed (and on a commit that is here already)."""
    _check_verification(ref)
    objects = Objects(repo)
    with Proxy() as proxy:
        handle, fetched = proxy.fetch(ref.image)
        base, n_ostree = _validate(ref, fetched)
        layers = fetched.manifest.layers
        total = sum(layer.size for layer in layers)
        held = repo.resolve_ref(image_ref_name(ref))
        if held is not None:
            state = state_of(repo, held)
            if state is not None and state.digest == fetched.manifest_digest:
                return Pulled(held, fetched.manifest_digest, fetched.config.labels.get(VERSION), False,
                              len(layers), 0, 0, total)
        if ref.verify == "remote" and len(layers) > n_ostree:
            raise ImageError(f"{ref.image}: {len(layers) - n_ostree} layers were added after the signed commit",
                             hint=f"their content is not covered by the signature remote {ref.remote} checks")
        have_base = objects.has("commit", base) and not objects.missing(base)
        known = set() if have_base else known_layers(repo)
        if have_base and ref.verify == "remote" and ref.remote is not None and objects.verify_for_remote(
                base, ref.remote) is not None:
            # here without the signature (from another source): it travels in the commit layer
            have_base, known = False, {layer.digest for layer in layers[1:n_ostree]}
        fetched_layers, fetched_bytes = 0, 0
        if not have_base:
            objects.begin()
            try:
                importer = Importer(objects)
                for i, layer in enumerate(layers[:n_ostree]):
                    if layer.digest in known:
                        continue
                    progress.step(f"Fetching layer {i + 1}/{len(layers)} ({layer.size / 1e6:.1f} MB)")
                    with proxy.blob(handle, layer.digest, layer.size) as blob, \
                            _decompressed(blob, layer, fetched.config.diff_ids[i], str(ref.image)) as tar:
                        importer.layer(tar, f"{ref.image} layer {i + 1}")
                    fetched_layers, fetched_bytes = fetched_layers + 1, fetched_bytes + layer.size
                if base not in importer.stats.commits and not objects.has("commit", base):
                    raise ImageError(f"{ref.image}: its layers do not hold commit {base}")
                missing = objects.missing(base)
                if missing:
                    raise ImageError(f"{ref.image}: commit {base[:12]} is incomplete: {len(missing)} objects "
                                     f"missing ({missing[0]})")
                _check_signature(objects, ref, base)
                objects.commit_transaction()
            except BaseException:
                objects.abort()
                raise
        commit = base
        image_keys = {KEY_DIGEST: fetched.manifest_digest, KEY_MANIFEST: fetched.manifest_bytes.decode(),
                      KEY_CONFIG: fetched.config_bytes.decode()}
        derived = layers[n_ostree:]
        if derived:
            commit = _apply_derived(repo, proxy, handle, base, derived, fetched, n_ostree, image_keys, progress,
                                    str(ref.image))
            fetched_layers += len(derived)
            fetched_bytes += sum(layer.size for layer in derived)
        else:
            objects.update_commitmeta(base, image_keys)
    repo.set_ref(None, image_ref_name(ref), commit)
    return Pulled(commit, fetched.manifest_digest, fetched.config.labels.get(VERSION),
                  True, len(layers), fetched_layers, fetched_bytes, total)


def _check_signature(objects: Objects, ref: OstreeImageRef, commit: str) -> None:
    if ref.verify != "remote" or ref.remote is None:
        return
    why = objects.verify_for_remote(commit, ref.remote)
    if why is not None:
        raise ImageError(f"{ref.image}: commit {commit[:12]} is not signed for remote {ref.remote}: {why}",
                         hint=f"the keys of remote {ref.remote} (ostree remote gpg-import) must have signed it")


@contextlib.contextmanager
def _decompressed(blob: IO[bytes], layer: Descriptor, diff_id: str, what: str) -> Iterator[IO[bytes]]:
    """The layer's tar stream, its diff ID checked once it has been read to the end."""
    compression = LAYER_COMPRESSION.get(layer.media_type)
    if compression is None:
        raise ImageError(f"{what}: unsupported layer type {layer.media_type!r}")
    if compression == "zstd":
        with _unzstd(blob, layer, what) as unzstd:
            yield from _checked(unzstd, layer, diff_id, what)
        return
    raw: IO[bytes] = gzip.GzipFile(fileobj=blob, mode="rb") if compression == "gzip" else blob  # type: ignore[assignment]
    yield from _checked(raw, layer, diff_id, what)


def _checked(raw: IO[bytes], layer: Descriptor, diff_id: str, what: str) -> Iterator[IO[bytes]]:
    hashing = _HashingReader(raw)
    yield hashing  # type: ignore[misc]
    while hashing.read(1 << 20):  # (tar's end-of-archive padding)
        pass
    if hashing.digest != diff_id:
        raise ImageError(f"{what}: layer {layer.digest[:19]} does not match its diff ID")


@contextlib.contextmanager
def _unzstd(blob: IO[bytes], layer: Descriptor, what: str) -> Iterator[IO[bytes]]:
    """A zstd layer decompressed by zstd(1) reading the blob's pipe (no zstd module in Python < 3.14)."""
    try:
        proc = spawn(["zstd", "-dc"], stdin=blob.fileno())
    except FileNotFoundError:
        raise ImageError(f"{what}: layer {layer.digest[:19]} is zstd-compressed and zstd is not installed",
                         hint="apt install zstd") from None
    assert proc.stdout is not None and proc.stderr is not None
    try:
        yield proc.stdout
        err = proc.stderr.read().decode("utf-8", "replace").strip()
        if proc.wait() != 0:
            last = err.splitlines()[-1] if err else f"zstd exited {proc.returncode}"
            raise ImageError(f"{what}: layer {layer.digest[:19]} is not valid zstd data: {last}")
    finally:
        if proc.poll() is None:
            proc.kill()
        reap(proc)


class _HashingReader:
    def __init__(self, inner: IO[bytes]) -> None:
        self.inner = inner
        self.hash = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.inner.read(size)
        self.hash.update(data)
        return data

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


def _apply_derived(repo: Repo, proxy: Proxy, handle: int, base: str, layers: tuple[Descriptor, ...],
                   fetched: Fetched, first: int, image_keys: Mapping[str, str], progress: Progress,
                   what: str) -> str:
    info = repo.commit(base)
    metadata = {k: v for k, v in Objects(repo).metadata_variants(base).items() if k not in DROPPED_METADATA}
    metadata.update(variant_metadata({**image_keys, KEY_BASE: base}))
    commit = base
    tmp_root = repo.path / "tmp"
    for i, layer in enumerate(layers):
        progress.step(f"Fetching derived layer {first + i + 1}/{first + len(layers)} ({layer.size / 1e6:.1f} MB)")
        with tempfile.TemporaryDirectory(dir=tmp_root, prefix="apt-ostree-derived-") as tmp:
            upper = Path(tmp) / "upper"
            upper.mkdir()
            with proxy.blob(handle, layer.digest, layer.size) as blob, \
                    _decompressed(blob, layer, fetched.config.diff_ids[first + i], what) as stream:
                extract_layer(stream, upper, f"{what} layer {first + i + 1}")
            last = i == len(layers) - 1
            commit = commit_delta(repo, commit, upper,
                                  metadata=metadata if last else variant_metadata({KEY_BASE: base}),
                                  timestamp=info.timestamp, subject=info.subject, parent=base)
    with tempfile.TemporaryDirectory(dir=tmp_root, prefix="apt-ostree-derived-var-") as tmp:
        upper = Path(tmp) / "upper"
        converted = var_as_tmpfiles(repo, commit, Path(tmp), upper)
        if converted is not None:
            lines, dropped = converted
            progress.message(f"/var of the derived layers: {lines} tmpfiles.d entries"
                             + (f", {len(dropped)} files dropped (logs and caches)" if dropped else ""))
            commit = commit_delta(repo, commit, upper, metadata=metadata, timestamp=info.timestamp,
                                  subject=info.subject, parent=base)
    return commit
