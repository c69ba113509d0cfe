"""The overlay initrd of initramfs-etc: a newc cpio (read back here field by field, as the kernel
reads it), gzip'd, reproducible; and GRUB menus that load every initrd of a boot entry."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from apt_ostree.core import grub
from apt_ostree.core.initramfs_etc import overlay_initrd
from apt_ostree.errors import UsageError

pytestmark = pytest.mark.unit


def read_newc(data: bytes) -> dict[str, tuple[int, bytes]]:
    """name -> (mode, data) of a newc archive, checking the 4-byte alignment the kernel requires."""
    out, pos = {}, 0
    while True:
        head = data[pos:pos + 110]
        assert head[:6] == b"070701", head
        fields = [int(head[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name = data[pos + 110:pos + 110 + namesize - 1].decode()
        pos += 110 + namesize
        pos += -pos % 4
        body = data[pos:pos + size]
        pos += size + (-size % 4)
        if name == "TRAILER!!!":
            assert pos == len(data)
            return out
        out[name] = (mode, body)


def test_overlay_holds_the_tracked_files_with_their_parents(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    (etc / "cmdline.d").mkdir(parents=True)
    (etc / "cmdline.d/50-x.conf").write_text("rd.info\n")
    (etc / "dir/sub").mkdir(parents=True)
    (etc / "dir/sub/f").write_text("f\n")
    os.symlink("sub/f", etc / "dir/link")
    (etc / "untracked").write_text("no\n")
    data = overlay_initrd(etc, ["/etc/cmdline.d/50-x.conf", "/etc/dir"])
    archive = read_newc(gzip.decompress(data))
    assert sorted(archive) == ["etc", "etc/cmdline.d", "etc/cmdline.d/50-x.conf", "etc/dir", "etc/dir/link",
                               "etc/dir/sub", "etc/dir/sub/f"]
    assert archive["etc/cmdline.d/50-x.conf"][1] == b"rd.info\n"
    assert archive["etc/dir/link"] == (0o120777, b"sub/f")
    assert archive["etc/dir"][0] & 0o170000 == 0o040000
    assert overlay_initrd(etc, ["/etc/cmdline.d/50-x.conf", "/etc/dir"]) == data  # reproducible


def test_a_missing_tracked_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    with pytest.raises(UsageError, match="/etc/crypttab does not exist"):
        overlay_initrd(tmp_path / "etc", ["/etc/crypttab"])


ENTRY = """title Debian GNU/Linux 13 (trixie) (ostree:0)
version 2
options root=LABEL=ostree-root rw ostree=/ostree/boot.1/debian/abc/0
linux /ostree/debian-abc/vmlinuz-6.12
initrd /ostree/debian-abc/initramfs-6.12.img
initrd /ostree/initramfs-overlays/0123.img
"""


def test_menus_load_every_initrd_of_an_entry(tmp_path: Path) -> None:
    entries = tmp_path / "loader.1/entries"
    entries.mkdir(parents=True)
    (entries / "ostree-2-debian.conf").write_text(ENTRY)
    (entries / "ostree-1-debian.conf").write_text(ENTRY.replace("version 2", "version 1").replace(
        "initrd /ostree/initramfs-overlays/0123.img\n", ""))
    offline = grub.menu(tmp_path, 1, "UUID-1")
    assert "initrd /ostree/debian-abc/initramfs-6.12.img /ostree/initramfs-overlays/0123.img\n" in offline
    assert offline.index("/initramfs-overlays/") < offline.index("ostree-1-UUID-1")  # the newest first
    os.symlink("loader.1", tmp_path / "loader")
    os.environ.update(GRUB2_BOOT_DEVICE_ID="UUID-1", GRUB2_PREPARE_ROOT_CACHE="search --fs-uuid --set=root UUID-1\n")
    try:
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()) as booted:
            assert grub.generate_main(tmp_path) == 0
    finally:
        for key in ("GRUB2_BOOT_DEVICE_ID", "GRUB2_PREPARE_ROOT_CACHE"):
            del os.environ[key]
    assert "initrd /ostree/debian-abc/initramfs-6.12.img /ostree/initramfs-overlays/0123.img\n" in booted.getvalue()
    assert "search --fs-uuid --set=root UUID-1\nlinux /ostree/debian-abc/vmlinuz-6.12 root=" in booted.getvalue()
