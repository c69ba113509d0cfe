"""compose disk-image: bad input is refused before anything is written; a good image has the layout."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import Composed, apt_ostree, error_lines
from tests.root.test_publish import forget_key, make_key

pytestmark = pytest.mark.root


def disk_image(tmp_path: Path, *args: str | Path) -> tuple[int, list[str], Path]:
    out = tmp_path / "disk.img"
    cli = apt_ostree("compose", "disk-image", *args, out, check=False)
    return cli.returncode, error_lines(cli), out


def test_unknown_ref(minimal: Composed, tmp_path: Path) -> None:
    rc, errors, out = disk_image(tmp_path, "--repo", minimal.repo, "--ref", "no/such/ref")
    assert rc == 1 and len(errors) == 1 and "no/such/ref" in errors[0]
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments(minimal: Composed, tmp_path: Path) -> None:
    junk = tmp_path.parent / f"{tmp_path.name}-junk.asc"
    junk.write_text("not a key\n")
    for args, needle in ((("--size", "1G"), "--size"), (("--size", "lots"), "--size"),
                         (("--hostname", "bad host"), "--hostname"), (("--karg", "a b"), "--karg"),
                         (("--root-ssh-key", str(tmp_path / "missing.pub")), "--root-ssh-key"),
                         (("--root-password-hash", "plain"), "--root-password-hash"),
                         (("--remote", "o=http://x", "--remote-gpg-key", str(tmp_path / "missing.asc")),
                          "--remote-gpg-key"),
                         (("--remote", "o=http://x", "--remote-gpg-key", str(junk)), "holds no OpenPGP public key"),
                         (("--remote-gpg-key", str(junk)), "needs --remote")):
        rc, errors, out = disk_image(tmp_path, "--repo", minimal.repo, "--ref", minimal.ref, *args)
        assert rc != 0 and len(errors) == 1 and needle in errors[0], (args, errors)
        assert list(tmp_path.iterdir()) == []


def test_container_commit_is_not_bootable(tmp_path: Path, cachedir: Path) -> None:
    treefile = tmp_path / "c.yaml"
    treefile.write_text("ref: test/container\nvariant: essential\ncontainer: true\n")
    repo = tmp_path / "repo"
    apt_ostree("compose", "tree", treefile, "--repo", repo, "--cachedir", cachedir)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    rc, errors, out = disk_image(out_dir, "--repo", repo, "--ref", "test/container")
    assert rc == 1 and len(errors) == 1 and "not bootable" in errors[0]
    assert list(out_dir.iterdir()) == []


def test_disk_layout(minimal: Composed, tmp_path: Path) -> None:
    out = tmp_path / "disk.qcow2"
    key = make_key(tmp_path / "gnupg")
    apt_ostree("compose", "disk-image", "--repo", minimal.repo, "--ref", minimal.ref, "--format", "qcow2",
               "--remote", "origin=http://127.0.0.1:8000/repo", "--remote-gpg-key", key.public, "--karg", "quiet",
               out)
    forget_key(key)
    info = subprocess.run(["qemu-img", "info", str(out)], capture_output=True, text=True, check=True).stdout
    assert "file format: qcow2" in info
    raw = tmp_path / "disk.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(out), str(raw)], check=True)
    out.unlink()
    mbr = raw.read_bytes()[:512]
    assert mbr[510:512] == b"\x55\xaa" and b"GRUB" in mbr
    dev = subprocess.run(["losetup", "--find", "--show", str(raw)], capture_output=True, text=True,
                         check=True).stdout.strip()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    try:
        subprocess.run(["partx", "-a", dev], check=True)
        subprocess.run(["mount", "-o", "ro", f"{dev}p2", str(mnt)], check=True)
        subprocess.run(["mount", "-o", "ro", f"{dev}p1", str(mnt / "boot")], check=True)
        entries = list((mnt / "boot/loader/entries").glob("*.conf"))
        assert len(entries) == 1
        entry = entries[0].read_text()
        assert "root=LABEL=ostree-root" in entry and " quiet" in entry
        assert "source /loader/grub.cfg" in (mnt / "boot/grub/grub.cfg").read_text()
        assert "menuentry" in (mnt / "boot/loader/grub.cfg").read_text()
        origin = next((mnt / "ostree/deploy/debian/deploy").glob("*.origin")).read_text()
        assert f"refspec=origin:{minimal.ref}" in origin
        config = (mnt / "ostree/repo/config").read_text()
        assert "bootloader=grub2" in config and "http://127.0.0.1:8000/repo" in config
        # the remote's key: commits and summary verified (docs/fleet.md)
        assert "gpg-verify=true" in config and "gpg-verify-summary=true" in config
        assert (mnt / "ostree/repo/origin.trustedkeys.gpg").stat().st_size > 0
        # the automatic fallback (docs/guarantees.md): GRUB's environment block, a kernel that reboots on panic
        assert (mnt / "boot/grubenv").stat().st_size == 1024
        assert "panic=10" in entry and 'if [ "${aot_trial}" = "new" ]' in (mnt / "boot/grub/grub.cfg").read_text()
    finally:
        subprocess.run(["umount", "-R", str(mnt)], check=False)
        subprocess.run(["partx", "-d", dev], check=False)
        subprocess.run(["losetup", "-d", dev], check=False)
