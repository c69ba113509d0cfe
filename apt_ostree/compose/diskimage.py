"""``compose disk-image``: a bootable disk (GRUB for BIOS or UEFI) from a commit.

Layout, BIOS (MBR): partition 1 is /boot (ext4, label ``ostree-boot``), partition 2
the physical root (ext4, label ``ostree-root``) holding ``/ostree``. UEFI (GPT): an
EFI system partition first (FAT32, GRUB on the removable path), then the same two. The commit is
pulled into the sysroot's repository (with a remote when ``--remote`` is given,
so that ``upgrade`` can pull from it later), deployed with libostree, and GRUB
is installed in the MBR with a static grub.cfg that sources ostree's menu.

The image is built in ``OUTPUT.partial`` and renamed at the end, so a failure
leaves no half-written file (for a block device, the device is simply not usable).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from apt_ostree.core import boot_trial, grub
from apt_ostree.core.ostree import Repo
from apt_ostree.core.sysroot import Sysroot
from apt_ostree.errors import AptOstreeError, CommandError, ComposeError, UsageError
from apt_ostree.progress import Progress
from apt_ostree.run import run

OSNAME = "debian"
BOOT_LABEL = "ostree-boot"
ROOT_LABEL = "ostree-root"
# panic=10: a kernel that panics reboots, and GRUB's automatic fallback boots the previous deployment
DEFAULT_KARGS = (f"root=LABEL={ROOT_LABEL}", "rw", "console=tty0", "console=ttyS0,115200", "panic=10")
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
ROOT_TYPE = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"  # root-x86-64 (discoverable partitions)
SIZE_RE = re.compile(r"^(\d+)([KMGT]?)$")


@dataclass(frozen=True)
class DiskImageOptions:
    repo: Path
    ref: str
    output: Path
    size: str = "8G"
    format: str = "raw"
    bootloader: str = "bios"
    kargs: Sequence[str] = ()
    root_ssh_key: Path | None = None
    root_password_hash: str | None = None
    hostname: str | None = None
    remote: tuple[str, str] | None = None
    remote_gpg_key: Path | None = None  # the remote's public key: commits and summary verified
    extra: dict[str, str] = field(default_factory=dict)


def parse_size(text: str) -> int:
    m = SIZE_RE.match(text.strip().upper())
    if not m:
        raise UsageError(f"--size: not a size: {text!r}", hint="e.g. 8G, 4096M")
    return int(m.group(1)) * int(1024 ** " KMGT".index(m.group(2) or " "))


def check_public_key(path: Path) -> None:
    """``path`` holds an OpenPGP public key (gpg reads it without importing it): UsageError otherwise."""
    if not path.is_file():
        raise UsageError(f"--remote-gpg-key: file not found: {path}")
    shown = run(["gpg", "--batch", "--show-keys", "--with-colons", str(path)], capture=True, check=False)
    if shown.returncode != 0 or not any(line.startswith("pub:") for line in shown.stdout.splitlines()):
        raise UsageError(f"--remote-gpg-key: {path} holds no OpenPGP public key",
                         hint="export one with: gpg --export --armor KEYID > FILE")


def validate(opts: DiskImageOptions) -> tuple[Repo, str]:
    """Check every input before anything is written; return the source repo and commit."""
    if opts.bootloader not in ("bios", "uefi"):
        raise UsageError(f"--bootloader {opts.bootloader}: expected bios or uefi")
    if opts.format not in ("raw", "qcow2"):
        raise UsageError(f"--format {opts.format}: expected raw or qcow2")
    size = parse_size(opts.size)
    if size < 2 * 1024 ** 3:
        raise UsageError(f"--size {opts.size}: a disk image needs at least 2G")
    repo = Repo.open(opts.repo)
    checksum = repo.resolve(opts.ref)
    meta = repo.commit(checksum).metadata
    if not meta.get("ostree.bootable"):
        raise ComposeError(f"commit {checksum[:12]} ({opts.ref}) is not bootable (no ostree.bootable metadata)",
                           hint="compose it from a treefile without container: true")
    if opts.root_ssh_key is not None and not opts.root_ssh_key.is_file():
        raise UsageError(f"--root-ssh-key: file not found: {opts.root_ssh_key}")
    if opts.hostname is not None and not re.match(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$", opts.hostname):
        raise UsageError(f"--hostname: not a valid host name: {opts.hostname!r}")
    if opts.root_password_hash is not None and not opts.root_password_hash.startswith("$"):
        raise UsageError("--root-password-hash: expected a crypt(3) hash such as $y$... (see mkpasswd)")
    for karg in opts.kargs:
        if not karg or any(c.isspace() for c in karg):
            raise UsageError(f"--karg: not a kernel argument: {karg!r}")
    if opts.remote_gpg_key is not None:
        if opts.remote is None:
            raise UsageError("--remote-gpg-key needs --remote=NAME=URL")
        check_public_key(opts.remote_gpg_key)
    out = opts.output
    if out.exists() and stat.S_ISBLK(out.stat().st_mode):
        if opts.format != "raw":
            raise UsageError("--format qcow2 needs a file as OUTPUT, not a block device")
    elif not out.parent.is_dir():
        raise UsageError(f"OUTPUT: directory {out.parent} does not exist")
    return repo, checksum


def build_disk_image(opts: DiskImageOptions, progress: Progress) -> str:
    """Build the disk; return the deployed commit checksum."""
    source, checksum = validate(opts)
    out = opts.output
    is_block = out.exists() and stat.S_ISBLK(out.stat().st_mode)
    partial = out if is_block else out.with_name(out.name + ".partial")
    raw = partial if opts.format == "raw" or is_block else out.with_name(out.name + ".raw.partial")
    try:
        if not is_block:
            with open(raw, "wb") as f:
                f.truncate(parse_size(opts.size))
        with _attached(raw, is_block) as dev:
            progress.step(f"Partitioning {out} ({opts.bootloader})")
            if opts.bootloader == "uefi":
                run(["sfdisk", "--quiet", "--label", "gpt", str(dev)], what="sfdisk",
                    stdin_text=f",200M,{ESP_TYPE}\n,512M,L\n,,{ROOT_TYPE}\n")
                esp, boot_part, root_part = _partitions(dev, 3)
                run(["mkfs.vfat", "-F", "32", "-n", "ESP", esp], what="mkfs.vfat (ESP)")
            else:
                run(["sfdisk", "--quiet", "--label", "dos", str(dev)], stdin_text=",512M,L,*\n,,L\n", what="sfdisk")
                esp = None
                boot_part, root_part = _partitions(dev, 2)
            run(["mkfs.ext4", "-q", "-F", "-L", BOOT_LABEL, boot_part], what="mkfs.ext4 (boot)")
            run(["mkfs.ext4", "-q", "-F", "-L", ROOT_LABEL, root_part], what="mkfs.ext4 (root)")
            boot_uuid = run(["blkid", "-s", "UUID", "-o", "value", boot_part], capture=True).stdout.strip()
            with _mounted(root_part, boot_part) as mnt:
                _populate(mnt, dev, esp, boot_uuid, source, checksum, opts, progress)
        if opts.format == "qcow2" and not is_block:
            progress.step("Converting to qcow2")
            run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(partial)], what="qemu-img convert")
            raw.unlink()
        if not is_block:
            os.replace(partial, out)
    except BaseException:
        if not is_block:
            for p in (partial, raw):
                with suppress(FileNotFoundError):
                    p.unlink()
        raise
    progress.done()
    return checksum


def _populate(mnt: Path, dev: Path, esp: str | None, boot_uuid: str, source: Repo, checksum: str,
              opts: DiskImageOptions, progress: Progress) -> None:
    progress.step("Initialising the OSTree sysroot")
    sysroot = Sysroot(mnt)
    sysroot.initialize(OSNAME)
    repo = sysroot.repo()
    repo.disable_fsync()  # a fresh image: one flush at unmount instead of one per object
    repo.set_config("sysroot", "bootloader", "grub2")  # not detected before the first deploy
    (mnt / "boot/grub2").mkdir(parents=True, exist_ok=True)
    (mnt / "boot/grub2/grub.cfg").symlink_to("../loader/grub.cfg")

    progress.step(f"Pulling {checksum[:12]} into the sysroot")
    repo.pull_local(source, checksum)
    if opts.remote:
        name, url = opts.remote
        key = opts.remote_gpg_key.read_bytes() if opts.remote_gpg_key is not None else None
        repo.add_remote(name, url, gpg_verify=False, gpg_key=key)
        repo.set_ref(name, opts.ref, checksum)
        refspec = f"{name}:{opts.ref}"
    else:
        repo.set_ref(None, opts.ref, checksum)
        refspec = opts.ref

    progress.step(f"Installing GRUB ({opts.bootloader})")
    if esp is not None:
        with tempfile.TemporaryDirectory(prefix="apt-ostree-efi-") as tmp:
            grub.install_uefi(Path(esp), mnt / "boot", boot_uuid, Path(tmp))
    else:
        grub.install_bios(dev, mnt / "boot")
    (mnt / "boot/grub/grub.cfg").write_text(grub.STATIC_CFG)

    progress.step("Deploying")
    deployment = sysroot.deploy_first(OSNAME, checksum, refspec, [*DEFAULT_KARGS, *opts.kargs])
    boot_trial.create(mnt / "boot/grubenv")  # (after the first deployment: it boots without a trial)
    _configure(deployment.path, mnt / "ostree/deploy" / OSNAME / "var", opts)


def _configure(deploy: Path, var: Path, opts: DiskImageOptions) -> None:
    """The deployment's own /etc and the stateroot's /var: fstab, host name, root access."""
    etc = deploy / "etc"
    (etc / "fstab").write_text(f"LABEL={BOOT_LABEL} /boot ext4 defaults 1 2\n")
    if opts.hostname:
        (etc / "hostname").write_text(opts.hostname + "\n")
    if opts.root_password_hash:
        shadow = etc / "shadow"
        lines = shadow.read_text().splitlines()
        lines = [f"root:{opts.root_password_hash}:" + ":".join(ln.split(":")[2:]) if ln.startswith("root:") else ln
                 for ln in lines]
        shadow.write_text("\n".join(lines) + "\n")
    if opts.root_ssh_key:
        home = var / "roothome"
        (home / ".ssh").mkdir(parents=True, exist_ok=True)
        home.chmod(0o700)
        (home / ".ssh").chmod(0o700)
        keys = home / ".ssh/authorized_keys"
        shutil.copyfile(opts.root_ssh_key, keys)
        keys.chmod(0o600)


@contextmanager
def _attached(path: Path, is_block: bool) -> Iterator[Path]:
    if is_block:
        yield path
        return
    dev = Path(run(["losetup", "--find", "--show", str(path)], capture=True, what="losetup").stdout.strip())
    try:
        yield dev
    finally:
        with suppress(AptOstreeError):
            run(["partx", "-d", str(dev)], check=False)
        run(["losetup", "-d", str(dev)], check=False)


def _partitions(dev: Path, count: int) -> list[str]:
    """Partition nodes of ``dev``; this host kernel may not scan partition tables, so ask partx."""
    run(["partx", "-a", str(dev)], check=False, what="partx")
    sep = "p" if dev.name[-1].isdigit() else ""
    parts = [f"{dev}{sep}{i}" for i in range(1, count + 1)]
    for p in parts:
        if not Path(p).exists():
            raise CommandError(f"partition {p} did not appear after partx -a {dev}")
    return parts


def _umount(path: Path) -> None:
    """Unmount; lazily if something (e.g. an error traceback holding a repo) still has it open."""
    if run(["umount", str(path)], check=False).returncode != 0:
        run(["umount", "--lazy", str(path)], check=False)


@contextmanager
def _mounted(root_part: str, boot_part: str) -> Iterator[Path]:
    mnt = Path(tempfile.mkdtemp(prefix="apt-ostree-disk-"))
    run(["mount", root_part, str(mnt)], what="mount root")
    try:
        (mnt / "boot").mkdir(exist_ok=True)
        run(["mount", boot_part, str(mnt / "boot")], what="mount boot")
        try:
            yield mnt
        finally:
            _umount(mnt / "boot")
    finally:
        _umount(mnt)
        with suppress(OSError):
            mnt.rmdir()
