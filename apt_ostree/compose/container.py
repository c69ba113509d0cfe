"""``compose container-encapsulate``: an OSTree commit as a chunked, bootc-compatible OCI image.

The layers are ostree-ext's tar format (core/ostree_tar.py): the commit layer first, then one
layer per chunk of packages (compose/chunking.py), each annotated ``ostree.components``. Labels
(in the config, and as manifest annotations) are bootc's and ostree-ext's: ``containers.bootc``,
``ostree.bootable``, ``ostree.commit``, ``ostree.final-diffid`` (the last layer's diff ID: every
layer up to it is ostree content), ``ostree.linux`` and ``org.opencontainers.image.version``.
The same commit and options give the same manifest digest: layers, config and manifest are
deterministic, and ``created`` is the commit's time stamp.

Targets: ``oci:DIR[:TAG]`` (written in place), ``oci-archive:FILE[:TAG]`` (a tar of a layout,
renamed into place when complete), ``docker://…`` (a layout in a temporary directory, pushed
with skopeo, which applies registries.conf(5) and auth.json).
"""

from __future__ import annotations

import concurrent.futures
import datetime
import json
import os
import posixpath
import shutil
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from apt_ostree.compose import chunking
from apt_ostree.compose.lint import lint
from apt_ostree.core.imgref import ImageRef
from apt_ostree.core.layout import DPKG_DATABASE
from apt_ostree.core.oci import (
    MEDIA_CONFIG,
    MEDIA_MANIFEST,
    VERSION,
    Descriptor,
    Layer,
    Layout,
    Manifest,
    canonical,
)
from apt_ostree.core.ostree import Repo
from apt_ostree.core.ostree_objects import Objects
from apt_ostree.core.ostree_tar import ChunkObject, LayerWriter
from apt_ostree.core.skopeo import containers_env, skopeo_argv
from apt_ostree.errors import CommandError, ImageError, UsageError
from apt_ostree.progress import Progress
from apt_ostree.run import run

BOOTC_LABEL = "containers.bootc"
COMMIT_LABEL = "ostree.commit"
DIFFID_LABEL = "ostree.final-diffid"
COMPONENTS = "ostree.components"
MAX_LAYERS = 64


@dataclass(frozen=True)
class EncapsulateOptions:
    labels: tuple[tuple[str, str], ...] = ()
    copymeta: tuple[str, ...] = ()
    copymeta_opt: tuple[str, ...] = ()
    cmd: tuple[str, ...] | None = None
    max_layers: int = MAX_LAYERS
    previous_build_manifest: Path | None = None
    compression_fast: bool = False

    def __post_init__(self) -> None:
        if self.max_layers < 1:
            raise UsageError(f"--max-layers must be at least 1, not {self.max_layers}")
        for key, _ in self.labels:
            if not key or "=" in key:
                raise UsageError(f"not a label: {key!r}", hint="expected --label KEY=VALUE")


@dataclass(frozen=True)
class EncapsulateResult:
    image: str
    commit: str
    manifest_digest: str
    layers: tuple[Descriptor, ...] = field(default=())

    @property
    def size(self) -> int:
        return sum(layer.size for layer in self.layers)


def labels_for(repo: Repo, commit: str, opts: EncapsulateOptions) -> dict[str, str]:
    meta = repo.commit(commit).metadata
    labels: dict[str, str] = {}
    for key in opts.copymeta:
        if not isinstance(meta.get(key), str):
            raise ImageError(f"--copymeta {key}: commit {commit[:12]} has no string metadata {key!r}")
        labels[key] = meta[key]
    for key in opts.copymeta_opt:
        if isinstance(meta.get(key), str):
            labels[key] = meta[key]
    if meta.get("ostree.bootable"):
        labels["ostree.bootable"] = "true"
        labels[BOOTC_LABEL] = "1"
    if isinstance(meta.get("ostree.linux"), str):
        labels["ostree.linux"] = meta["ostree.linux"]
    if isinstance(meta.get("version"), str):
        labels[VERSION] = meta["version"]
    labels[COMMIT_LABEL] = commit
    labels.update(dict(opts.labels))
    return labels


def read_packages(repo: Repo, objects: Objects, commit: str) -> list[chunking.PackageInfo]:
    status = repo.read_file(commit, f"{DPKG_DATABASE}/status")
    if status is None:
        return []
    info = objects.tree_at(commit, f"{DPKG_DATABASE}/info")
    lists = {}
    for name, _checksum in info.files if info else ():
        if name.endswith(".list"):
            data = repo.read_file(commit, f"{DPKG_DATABASE}/info/{name}") or b""
            lists[name.removesuffix(".list")] = data.decode("utf-8", "surrogateescape")
    return chunking.parse_status(status.decode("utf-8", "replace"), lists)


def plan_chunks(repo: Repo, commit: str, max_layers: int, previous: Sequence[Sequence[str]] | None) \
        -> chunking.Chunking:
    objects = Objects(repo)
    files, links = [], {}
    for path, kind, checksum in objects.walk(commit):
        if kind != "file" or checksum is None:
            continue
        meta = objects.content(checksum)
        files.append((path, checksum, meta.size))
        if "/" not in path and meta.symlink is not None and not meta.symlink.startswith("/"):
            links[path] = posixpath.normpath(meta.symlink)
    return chunking.plan(files, read_packages(repo, objects, commit), links, max_layers, previous)


def previous_manifest(target: ImageRef, explicit: Path | None) -> Manifest | None:
    """The manifest the new image's layout follows: ``explicit``, else the image now at ``target``."""
    if explicit is not None:
        try:
            return Manifest.parse(explicit.read_bytes(), str(explicit))
        except OSError as e:
            raise UsageError(f"--previous-build-manifest {explicit}: {e.strerror}") from None
    if target.transport == "oci":
        layout = Layout(Path(target.name))
        if not (layout.path / "index.json").exists():
            return None
        found = layout.find(target.tag)
        return Manifest.parse(layout.read_blob(found.digest), str(target)) if found else None
    if target.transport == "oci-archive":
        return _archive_manifest(Path(target.name), target.tag)
    try:
        raw = run(skopeo_argv("inspect", "--raw", str(target)), capture=True, env=containers_env(),
                  what="skopeo inspect").stdout
    except CommandError:
        return None  # (no image there yet)
    try:
        return Manifest.parse(raw.encode(), str(target))
    except ImageError:
        return None


def _archive_manifest(path: Path, tag: str | None) -> Manifest | None:
    if not path.is_file():
        return None
    try:
        with tarfile.open(path) as tar:
            index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
            entries = index.get("manifests") or []
            entry = next((e for e in entries if tag is None or (e.get("annotations") or {}).get(
                "org.opencontainers.image.ref.name") == tag), None)
            if entry is None:
                return None
            blob = tar.extractfile(f"blobs/sha256/{entry['digest'].removeprefix('sha256:')}")
            return Manifest.parse(blob.read(), str(path)) if blob else None  # type: ignore[union-attr]
    except (tarfile.TarError, KeyError, ValueError, OSError):
        return None


def encapsulate(repo: Repo, rev: str, target: ImageRef, opts: EncapsulateOptions, progress: Progress) \
        -> EncapsulateResult:
    commit = repo.resolve(rev)
    problems = lint(repo, commit)
    if problems:
        raise ImageError(f"commit {commit[:12]} is not a bootable base image: {problems[0]}",
                         hint="\n".join(str(p) for p in problems))
    labels = labels_for(repo, commit, opts)
    previous = previous_manifest(target, opts.previous_build_manifest)
    progress.step("Grouping the content by package")
    plan = plan_chunks(repo, commit, opts.max_layers,
                       chunking.previous_layers(layer.annotations for layer in previous.layers) if previous else None)
    info = repo.commit(commit)
    created = datetime.datetime.fromtimestamp(info.timestamp, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    with tempfile.TemporaryDirectory(prefix="apt-ostree-image-", dir=_tmp_near(target)) as tmp:
        layout = Layout(Path(target.name) if target.transport == "oci" else Path(tmp) / "layout").create()
        progress.step(f"Writing {1 + len(plan.chunks)} layers")
        layers = _write_layers(repo, commit, layout, plan, 1 if opts.compression_fast else 6)
        labels[DIFFID_LABEL] = layers[-1].diff_id
        config: dict[str, object] = {
            "architecture": "amd64", "os": "linux", "created": created,
            "config": {"Labels": dict(sorted(labels.items())), **({"Cmd": list(opts.cmd)} if opts.cmd else {})},
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
            "history": [{"created": created, "created_by": "apt-ostree compose container-encapsulate",
                         "comment": (layer.descriptor.annotations.get(COMPONENTS) or f"ostree commit {commit}")[:200]}
                        for layer in layers],
        }
        config_desc = layout.add_blob(canonical(config), MEDIA_CONFIG)
        manifest = Manifest(config_desc, tuple(layer.descriptor for layer in layers), labels)
        manifest_desc = layout.add_blob(manifest.to_bytes(), MEDIA_MANIFEST)
        layout.set_manifest(manifest_desc, target.tag)
        if target.transport == "oci-archive":
            _write_archive(layout, Path(target.name))
        elif target.transport == "docker":
            progress.step(f"Pushing to {target}")
            run(skopeo_argv("copy", "--quiet", "--preserve-digests", f"oci:{layout.path}" + (
                f":{target.tag}" if target.tag else ""), str(target)), progress=progress, env=containers_env(),
                what="skopeo copy")
    return EncapsulateResult(str(target), commit, manifest_desc.digest, manifest.layers)


def _tmp_near(target: ImageRef) -> str | None:
    """A temporary directory on the target's file system (an archive is renamed into place)."""
    if target.transport == "oci-archive":
        parent = Path(target.name).absolute().parent
        if not parent.is_dir():
            raise UsageError(f"{target}: no directory {parent}")
        return str(parent)
    return os.environ.get("TMPDIR") or "/var/tmp"


def _write_layers(repo: Repo, commit: str, layout: Layout, plan: chunking.Chunking, level: int) -> list[Layer]:
    def commit_layer(out: object) -> None:
        w = LayerWriter(Objects(Repo.open(repo.path)), commit, out)  # type: ignore[arg-type]
        w.commit_layer(plan.remainder)
        w.close()

    def chunk_writer(items: Sequence[ChunkObject]):  # type: ignore[no-untyped-def]
        def write(out: object) -> None:
            w = LayerWriter(Objects(Repo.open(repo.path)), commit, out)  # type: ignore[arg-type]
            w.chunk_layer(items)
            w.close()
        return write

    jobs: list[tuple[object, Mapping[str, str]]] = [(commit_layer, {})]
    jobs += [(chunk_writer(c.objects), {COMPONENTS: ",".join(c.packages)}) for c in plan.chunks]
    workers = max(1, min(len(jobs), os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:  # (zlib works outside the GIL)
        futures = [pool.submit(layout.write_layer, fn, ann, level) for fn, ann in jobs]  # type: ignore[arg-type]
        return [f.result() for f in futures]


def _write_archive(layout: Layout, dest: Path) -> None:
    """The layout as a tar file at ``dest``, renamed into place once complete."""
    fd, tmp = tempfile.mkstemp(dir=dest.absolute().parent, prefix=f".{dest.name}.")
    try:
        with os.fdopen(fd, "wb") as f, tarfile.open(fileobj=f, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for name in ("oci-layout", "index.json"):
                tar.add(layout.path / name, name, filter=_plain)
            tar.add(layout.path / "blobs", "blobs", recursive=False, filter=_plain)
            tar.add(layout.blobs, "blobs/sha256", recursive=False, filter=_plain)
            for blob in sorted(layout.blobs.iterdir()):
                if not blob.name.startswith("."):
                    tar.add(blob, f"blobs/sha256/{blob.name}", filter=_plain)
        os.chmod(tmp, 0o644)
        os.rename(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    shutil.rmtree(layout.path, ignore_errors=True)


def _plain(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    return info
