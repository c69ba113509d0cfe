"""OCI image layouts with the standard library: blobs, layers, configs, manifests and index.

Debian packages no Python library for OCI layouts; the format is small (image-spec v1.1):
``oci-layout``, ``index.json`` and content-addressed ``blobs/sha256/DIGEST``. Everything written
here is deterministic (sorted JSON keys, gzip without a time stamp or a name), so the same
input gives the same manifest digest.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from apt_ostree.core.atomic import write_atomic
from apt_ostree.errors import ImageError

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
MEDIA_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
LAYER_COMPRESSION = {MEDIA_LAYER_GZIP: "gzip", DOCKER_LAYER_GZIP: "gzip", MEDIA_LAYER_TAR: "none",
                     "application/vnd.docker.image.rootfs.diff.tar": "none", MEDIA_LAYER_ZSTD: "zstd"}
REF_NAME = "org.opencontainers.image.ref.name"
VERSION = "org.opencontainers.image.version"


def canonical(obj: object) -> bytes:
    """JSON as written to a blob: sorted keys, no spaces (equal objects, equal digests)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            out["annotations"] = dict(sorted(self.annotations.items()))
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], what: str) -> Descriptor:
        try:
            digest, size, media = str(obj["digest"]), int(obj["size"]), str(obj.get("mediaType", ""))
        except (KeyError, TypeError, ValueError):
            raise ImageError(f"{what}: not a descriptor (digest, size)") from None
        if not digest.startswith("sha256:") or len(digest) != 71:
            raise ImageError(f"{what}: unsupported digest {digest!r}", hint="expected sha256:<64 hex digits>")
        return cls(media, digest, size, {str(k): str(v) for k, v in (obj.get("annotations") or {}).items()})


@dataclass(frozen=True)
class Manifest:
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: Mapping[str, str]
    media_type: str = MEDIA_MANIFEST

    def to_bytes(self) -> bytes:
        out: dict[str, Any] = {"schemaVersion": 2, "mediaType": self.media_type, "config": self.config.to_json(),
                               "layers": [layer.to_json() for layer in self.layers]}
        if self.annotations:
            out["annotations"] = dict(sorted(self.annotations.items()))
        return canonical(out)

    @classmethod
    def parse(cls, data: bytes, what: str) -> Manifest:
        try:
            obj = json.loads(data)
        except ValueError as e:
            raise ImageError(f"{what}: the manifest is not JSON: {e}") from None
        if not isinstance(obj, dict):
            raise ImageError(f"{what}: the manifest is not a JSON object")
        media = str(obj.get("mediaType", MEDIA_MANIFEST))
        if media in (MEDIA_INDEX, DOCKER_LIST) or "manifests" in obj:
            raise ImageError(f"{what}: an image index, not an image manifest")
        if media not in (MEDIA_MANIFEST, DOCKER_MANIFEST):
            raise ImageError(f"{what}: unsupported manifest type {media!r}")
        layers = obj.get("layers")
        if not isinstance(layers, list) or "config" not in obj:
            raise ImageError(f"{what}: the manifest has no config or layers")
        return cls(Descriptor.from_json(obj["config"], f"{what}: config"),
                   tuple(Descriptor.from_json(x, f"{what}: layers[{i}]") for i, x in enumerate(layers)),
                   {str(k): str(v) for k, v in (obj.get("annotations") or {}).items()}, media)


@dataclass(frozen=True)
class Config:
    """The parts of an image configuration apt-ostree reads."""

    architecture: str
    os: str
    labels: Mapping[str, str]
    diff_ids: tuple[str, ...]
    created: str

    @classmethod
    def parse(cls, data: bytes, what: str) -> Config:
        try:
            obj = json.loads(data)
            inner = obj.get("config") or {}
            labels = {str(k): str(v) for k, v in (inner.get("Labels") or {}).items()}
            diff_ids = tuple(str(d) for d in (obj.get("rootfs") or {}).get("diff_ids") or ())
            return cls(str(obj.get("architecture", "")), str(obj.get("os", "")), labels, diff_ids,
                       str(obj.get("created", "")))
        except (ValueError, AttributeError, TypeError) as e:
            raise ImageError(f"{what}: not an image configuration: {e}") from None


class _HashingWriter:
    """Counts and hashes what passes through to ``out``."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        return self.out.write(data)

    def flush(self) -> None:
        self.out.flush()

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


@dataclass(frozen=True)
class Layer:
    descriptor: Descriptor
    diff_id: str  # sha256 of the uncompressed tar


class LayerStream:
    """A writable tar stream that becomes a gzip-compressed layer blob (see Layout.layer)."""

    def __init__(self, compressed: _HashingWriter, level: int) -> None:
        self._compressed = compressed
        self._gzip = gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0,  # type: ignore[arg-type]
                                   compresslevel=level)
        self._plain = _HashingWriter(self._gzip)  # type: ignore[arg-type]

    def write(self, data: bytes) -> int:
        return self._plain.write(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self._gzip.close()

    @property
    def diff_id(self) -> str:
        return self._plain.digest


class Layout:
    """An OCI image layout directory, created if it is absent."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.blobs = self.path / "blobs" / "sha256"

    def create(self) -> Layout:
        if self.path.exists() and not (self.path / "oci-layout").exists() and any(self.path.iterdir()):
            raise ImageError(f"{self.path}: not an OCI image layout (and not empty)")
        self.blobs.mkdir(parents=True, exist_ok=True)
        if not (self.path / "oci-layout").exists():
            write_atomic(self.path / "oci-layout", canonical({"imageLayoutVersion": "1.0.0"}))
        if not (self.path / "index.json").exists():
            write_atomic(self.path / "index.json", canonical({"schemaVersion": 2, "manifests": []}))
        return self

    def blob_path(self, digest: str) -> Path:
        return self.blobs / digest.removeprefix("sha256:")

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).exists()

    def add_blob(self, data: bytes, media_type: str, annotations: Mapping[str, str] | None = None) -> Descriptor:
        digest = sha256(data)
        if not self.has_blob(digest):
            write_atomic(self.blob_path(digest), data)
        return Descriptor(media_type, digest, len(data), dict(annotations or {}))

    def write_layer(self, write: Callable[[IO[bytes]], None], annotations: Mapping[str, str] | None = None,
                    level: int = 6) -> Layer:
        """A gzip-compressed layer blob of the tar stream ``write`` writes to the file it is given."""
        fd, tmp = tempfile.mkstemp(dir=self.blobs, prefix=".layer-")
        try:
            with os.fdopen(fd, "wb") as f:
                compressed = _HashingWriter(f)
                stream = LayerStream(compressed, level)
                write(stream)  # type: ignore[arg-type]
                stream.close()
            os.chmod(tmp, 0o644)
            os.rename(tmp, self.blob_path(compressed.digest))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return Layer(Descriptor(MEDIA_LAYER_GZIP, compressed.digest, compressed.size, dict(annotations or {})),
                     stream.diff_id)

    def read_blob(self, digest: str) -> bytes:
        try:
            return self.blob_path(digest).read_bytes()
        except FileNotFoundError:
            raise ImageError(f"{self.path}: blob {digest} is missing") from None

    # ----------------------------------------------------------- index
    def index(self) -> list[dict[str, Any]]:
        try:
            obj = json.loads((self.path / "index.json").read_bytes())
        except FileNotFoundError:
            return []
        except ValueError as e:
            raise ImageError(f"{self.path}/index.json: not JSON: {e}") from None
        return list(obj.get("manifests") or [])

    def find(self, tag: str | None) -> Descriptor | None:
        """The manifest tagged ``tag`` (None: the only one)."""
        entries = self.index()
        if tag is None:
            if len(entries) > 1:
                raise ImageError(f"{self.path}: {len(entries)} images in the layout", hint="name one with :TAG")
            return Descriptor.from_json(entries[0], f"{self.path}/index.json") if entries else None
        for entry in entries:
            if (entry.get("annotations") or {}).get(REF_NAME) == tag:
                return Descriptor.from_json(entry, f"{self.path}/index.json")
        return None

    def set_manifest(self, manifest: Descriptor, tag: str | None, architecture: str = "amd64") -> None:
        """Point ``tag`` (None: the layout's only image) at ``manifest``."""
        entry = manifest.to_json()
        entry["platform"] = {"architecture": architecture, "os": "linux"}
        if tag is None:
            entries = [entry]
        else:
            entry["annotations"] = {REF_NAME: tag}
            entries = [e for e in self.index() if (e.get("annotations") or {}).get(REF_NAME) != tag] + [entry]
        write_atomic(self.path / "index.json", canonical({"schemaVersion": 2, "manifests": entries}))
