"""Container images, the pure parts: references, the chunking's stability, OCI documents, paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from apt_ostree.compose import chunking
from apt_ostree.core.image_derived import target as _target
from apt_ostree.core.imgref import ImageRef, OstreeImageRef, escape_ref, image_ref_name
from apt_ostree.core.oci import Config, Manifest, canonical
from apt_ostree.core.ostree_tar import OBJECT_RE, tar_path
from apt_ostree.errors import ImageError, UsageError

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("text", "canonical_form"), [
    ("ostree-unverified-registry:127.0.0.1:5000/debian:13", "ostree-unverified-registry:127.0.0.1:5000/debian:13"),
    ("ostree-unverified-image:docker://quay.io/a/b:1", "ostree-unverified-registry:quay.io/a/b:1"),
    ("ostree-unverified-registry:quay.io/a/b", "ostree-unverified-registry:quay.io/a/b:latest"),
    ("ostree-unverified-image:oci:/srv/img:13", "ostree-unverified-image:oci:/srv/img:13"),
    ("ostree-unverified-image:oci-archive:/srv/img.tar", "ostree-unverified-image:oci-archive:/srv/img.tar"),
    ("ostree-image-signed:docker://quay.io/a/b:1", "ostree-image-signed:docker://quay.io/a/b:1"),
    ("ostree-remote-image:fleet:oci:/srv/img:1", "ostree-remote-image:fleet:oci:/srv/img:1"),
    ("ostree-remote-registry:fleet:quay.io/a/b:1", "ostree-remote-registry:fleet:quay.io/a/b:1"),
])
def test_image_references_round_trip(text: str, canonical_form: str) -> None:
    ref = OstreeImageRef.parse(text)
    assert str(ref) == canonical_form and str(OstreeImageRef.parse(str(ref))) == canonical_form


@pytest.mark.parametrize("text", ["ostree-unverified-image:foo:/x", "ostree-unverified-registry:UPPER/x:1",
                                  "ostree-unverified-image:oci:", "ostree-remote-image::oci:/x",
                                  "ostree-unverified-image:docker://nohost", "debian:13", "oci:/x:bad tag"])
def test_bad_image_references_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError):
        OstreeImageRef.parse(text) if text.startswith("ostree-") else ImageRef.parse(text)


def test_the_ref_of_a_pulled_image_is_one_valid_ref() -> None:
    ref = OstreeImageRef.parse("ostree-unverified-image:oci:/var/images/oci:derived")
    name = image_ref_name(ref)
    assert name == "ostree/container/image/oci_3A__2F_var_2F_images_2F_oci_3A_derived"
    assert escape_ref("a-b.c") == "a-b.c"


def _pkg(name: str, source: str, files: tuple[str, ...], priority: str = "optional") -> chunking.PackageInfo:
    return chunking.PackageInfo(name, source, priority, files)


def test_chunking_groups_by_source_and_keeps_a_previous_layout() -> None:
    packages = [_pkg("libfoo1", "foo", ("/usr/lib/libfoo.so.1",)), _pkg("foo-bin", "foo", ("/bin/foo",)),
                _pkg("big", "big", ("/usr/share/big",)), _pkg("tiny", "tiny", ("/etc/tiny.conf",), "required")]
    files = [("usr/lib/libfoo.so.1", "a" * 64, 10), ("usr/bin/foo", "b" * 64, 10),
             ("usr/share/big", "c" * 64, 1000), ("usr/etc/tiny.conf", "d" * 64, 1),
             ("usr/share/dpkg/status", "e" * 64, 5)]
    plan = chunking.plan(files, packages, {"bin": "usr/bin"}, max_layers=8)
    assert [c.packages for c in plan.chunks] == [("big",), ("foo-bin", "libfoo1"), ("tiny",)]
    assert [o.checksum for o in plan.remainder] == ["e" * 64]  # (no package owns it: the commit layer)
    # a previous build's layers win, and a new package gets a layer of its own
    new = [*packages, _pkg("htop", "htop", ("/usr/bin/htop",))]
    plan2 = chunking.plan([*files, ("usr/bin/htop", "f" * 64, 50)], new, {"bin": "usr/bin"}, max_layers=8,
                          previous=[["tiny", "big"], ["foo-bin", "libfoo1"]])
    assert [c.packages for c in plan2.chunks] == [("big", "tiny"), ("foo-bin", "libfoo1"), ("htop",)]
    assert chunking.plan(files, packages, {}, max_layers=2).chunks == ()  # (below 4 layers: one)


def test_chunking_puts_the_kernels_generated_files_with_its_package() -> None:
    kdir = "usr/lib/modules/6.12-amd64"
    packages = [_pkg("linux-image-6.12-amd64", "linux-signed-amd64", ("/lib/modules/6.12-amd64/modules.order",))]
    files = [(f"{kdir}/modules.order", "a" * 64, 1), (f"{kdir}/initramfs.img", "b" * 64, 100),
             (f"{kdir}/vmlinuz", "c" * 64, 100)]
    plan = chunking.plan(files, packages, {"lib": "usr/lib"}, max_layers=8)
    assert len(plan.chunks[0].objects) == 3 and plan.remainder == ()


def test_manifests_and_configs_are_read_strictly() -> None:
    config = {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + "0" * 64, "size": 2}
    good = canonical({"schemaVersion": 2, "config": config, "layers": [config]})
    assert Manifest.parse(good, "x").to_bytes() == canonical({"schemaVersion": 2, "mediaType":
                                                              "application/vnd.oci.image.manifest.v1+json",
                                                              "config": config, "layers": [config]})
    for bad in (b"[]", b"{", canonical({"manifests": []}), canonical({"config": {**config, "digest": "md5:1"},
                                                                        "layers": []})):
        with pytest.raises(ImageError):
            Manifest.parse(bad, "x")
    parsed = Config.parse(json.dumps({"architecture": "amd64", "config": {"Labels": {"a": "b"}},
                                      "rootfs": {"diff_ids": ["sha256:1"]}}).encode(), "x")
    assert parsed.labels == {"a": "b"} and parsed.diff_ids == ("sha256:1",)


def test_paths_in_the_stream() -> None:
    assert tar_path("usr/etc/os-release") == "etc/os-release" and tar_path("usr/etcetera") == "usr/etcetera"
    m = OBJECT_RE.match(f"sysroot/ostree/repo/objects/ab/{'c' * 62}.file-xattrs-link")
    assert m is not None and m.group(3) == "file-xattrs-link"
    assert _target("./etc/hosts") == "usr/etc/hosts" and _target("var/lib/x") == "var/lib/x" and _target("var") == "var"
    assert _target("run/x") is None and _target("usr/bin/x") == "usr/bin/x"
    with pytest.raises(ImageError):
        _target("usr/../../etc/shadow")


def test_a_previous_build_manifest_from_a_file(tmp_path: Path) -> None:
    from apt_ostree.compose.container import previous_manifest

    layer = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:" + "1" * 64, "size": 1,
             "annotations": {"ostree.components": "bash,coreutils"}}
    config = {**layer, "annotations": {}}
    (tmp_path / "m.json").write_bytes(canonical({"schemaVersion": 2, "config": config, "layers": [config, layer]}))
    found = previous_manifest(ImageRef.parse("oci:/nonexistent"), tmp_path / "m.json")
    assert found is not None
    assert chunking.previous_layers(x.annotations for x in found.layers) == [["bash", "coreutils"]]
    with pytest.raises(UsageError):
        previous_manifest(ImageRef.parse("oci:/nonexistent"), tmp_path / "missing.json")
