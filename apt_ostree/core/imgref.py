"""Container image references: the containers transports (containers-transports(5)) apt-ostree
reads and writes, and ostree-ext's signature-policy prefixes that name a bootable image.

    oci:DIR[:TAG]                 an OCI image layout directory
    oci-archive:FILE[:TAG]        the same as a tar file
    docker://HOST[:PORT]/NAME[:TAG|@sha256:DIGEST]   a registry (skopeo's transport)

    ostree-unverified-image:TRANSPORT:REF     no signature check
    ostree-unverified-registry:HOST/NAME:TAG  (= ostree-unverified-image:docker://HOST/NAME:TAG)
    ostree-image-signed:TRANSPORT:REF         containers-policy.json(5) must accept the image
    ostree-remote-image:REMOTE:TRANSPORT:REF  the OSTree commit must be signed for REMOTE
    ostree-remote-registry:REMOTE:HOST/NAME:TAG
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from apt_ostree.errors import UsageError

TRANSPORTS = ("oci", "oci-archive", "docker")
IMAGE_PREFIXES = ("ostree-unverified-image:", "ostree-unverified-registry:", "ostree-image-signed:",
                  "ostree-remote-image:", "ostree-remote-registry:")
DOCKER_RE = re.compile(r"^(?P<repo>[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)+)"
                       r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
REMOTE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class ImageRef:
    """An image in a containers transport."""

    transport: str  # oci, oci-archive, docker
    name: str  # a path, or HOST[:PORT]/NAME
    tag: str | None = None  # oci: the ref.name in the layout; docker: the tag
    digest: str | None = None  # docker only: @sha256:…

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        if text.startswith("docker://"):
            rest = text.removeprefix("docker://")
            m = DOCKER_RE.match(rest)
            if m is None or "/" not in rest:
                raise UsageError(f"not a registry image reference: {text!r}",
                                 hint="expected docker://HOST[:PORT]/NAME[:TAG], e.g. docker://127.0.0.1:5000/debian:13")
            tag = m.group("tag") or (None if m.group("digest") else "latest")
            return cls("docker", m.group("repo"), tag, m.group("digest"))
        transport, sep, rest = text.partition(":")
        if not sep or transport not in ("oci", "oci-archive"):
            raise UsageError(f"not a container image reference: {text!r}",
                             hint="expected oci:DIR[:TAG], oci-archive:FILE[:TAG] or docker://HOST/NAME:TAG")
        path, _, tag = rest.partition(":")
        if not path:
            raise UsageError(f"{text!r}: no path")
        if tag and not TAG_RE.match(tag):
            raise UsageError(f"{text!r}: not a tag: {tag!r}")
        return cls(transport, path, tag or None)

    def __str__(self) -> str:
        if self.transport == "docker":
            return f"docker://{self.name}" + (f":{self.tag}" if self.tag else "") + \
                (f"@{self.digest}" if self.digest else "")
        return f"{self.transport}:{self.name}" + (f":{self.tag}" if self.tag else "")


@dataclass(frozen=True)
class OstreeImageRef:
    """A bootable image and how it is verified: "unverified", "signed" (containers' policy) or
    "remote" (the commit's OSTree signature, with ``remote``'s keys)."""

    verify: str
    image: ImageRef
    remote: str | None = None

    @classmethod
    def parse(cls, text: str) -> OstreeImageRef:
        prefix, _, rest = text.partition(":")
        try:
            if prefix == "ostree-unverified-image":
                return cls("unverified", ImageRef.parse(rest))
            if prefix == "ostree-unverified-registry":
                return cls("unverified", ImageRef.parse("docker://" + rest))
            if prefix == "ostree-image-signed":
                return cls("signed", ImageRef.parse(rest))
            if prefix in ("ostree-remote-image", "ostree-remote-registry"):
                remote, _, image = rest.partition(":")
                if not REMOTE_RE.match(remote) or not image:
                    raise UsageError(f"no remote in {text!r}")
                image = image if prefix == "ostree-remote-image" else "docker://" + image
                return cls("remote", ImageRef.parse(image), remote)
        except UsageError as e:
            raise UsageError(f"not an image reference: {text!r}: {e.message}", hint=e.hint) from None
        raise UsageError(f"not an image reference: {text!r}",
                         hint="expected ostree-unverified-registry:HOST/NAME:TAG, ostree-unverified-image:oci:DIR, "
                              "ostree-image-signed:docker://HOST/NAME:TAG or ostree-remote-image:REMOTE:…")

    def __str__(self) -> str:
        if self.verify == "unverified":
            if self.image.transport == "docker":
                return f"ostree-unverified-registry:{str(self.image).removeprefix('docker://')}"
            return f"ostree-unverified-image:{self.image}"
        if self.verify == "signed":
            return f"ostree-image-signed:{self.image}"
        if self.image.transport == "docker":
            return f"ostree-remote-registry:{self.remote}:{str(self.image).removeprefix('docker://')}"
        return f"ostree-remote-image:{self.remote}:{self.image}"


def is_image_reference(text: str) -> bool:
    return text.startswith(IMAGE_PREFIXES)


def escape_ref(text: str) -> str:
    """``text`` as one OSTree ref component: anything but letters, digits, - and . as _XX_."""
    return "".join(c if c.isascii() and (c.isalnum() or c in "-.") else f"_{ord(c):02X}_" for c in text)


def image_ref_name(ref: OstreeImageRef) -> str:
    """The ref under which a pulled image's commit is kept (ostree-ext's namespace)."""
    return f"ostree/container/image/{escape_ref(str(ref.image))}"
