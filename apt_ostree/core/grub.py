"""GRUB menus from ostree's boot loader entries, for Debian's GRUB (no blscfg).

libostree's grub2 backend writes ``/boot/loader.N/grub.cfg`` by running
``grub2-mkconfig`` (Debian: ``grub-mkconfig`` with ostree-boot's 15_ostree). On a
booted system that is what happens. For a sysroot that is not booted (building a
disk image, or ``--sysroot``) libostree would chroot into the new deployment;
instead we point ``OSTREE_GRUB2_EXEC`` at a small program that writes the menu
from the BLS entries directly (:func:`menu`), with no chroot and no devices.

The static ``/boot/grub/grub.cfg`` sets up the console and sources
``/loader/grub.cfg``; ``/boot/loader`` is the symlink libostree swaps atomically,
so every deploy or rollback changes the menu atomically.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from apt_ostree.errors import ComposeError
from apt_ostree.run import run

EXEC_ENV = "OSTREE_GRUB2_EXEC"
SYSROOT_ENV = "APT_OSTREE_GRUB_SYSROOT"
BOOT_UUID_ENV = "APT_OSTREE_GRUB_BOOT_UUID"

# apt-ostree's menu script, and ostree-boot's (which writes only an entry's first initrd): composed
# trees divert the latter out of /etc/grub.d (dpkg-divert: it stays out when ostree-boot is upgraded)
OURS = "etc/grub.d/15_apt-ostree"
THEIRS = "etc/grub.d/15_ostree"
THEIRS_DIVERTED = "usr/share/apt-ostree/grub.d/15_ostree"

STATIC_CFG = """\
# Written by apt-ostree. The boot menu itself is /loader/grub.cfg, which libostree
# replaces atomically on every deploy, rollback or kernel argument change.
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set timeout=3
function load_video {
  insmod all_video
}
if [ -s /grubenv ]; then
  load_env -f /grubenv
fi
source /loader/grub.cfg
# Automatic fallback (apt-ostree's docs/guarantees.md): a new default deployment gets one boot; the
# booted system clears aot_trial after boot-complete.target. One that never got there is skipped.
if [ "${aot_trial}" = "new" ]; then
  set aot_trial=tried
  save_env -f /grubenv aot_trial
elif [ "${aot_trial}" = "tried" ]; then
  set aot_trial=failed
  save_env -f /grubenv aot_trial
  set default=1
elif [ "${aot_trial}" = "failed" ]; then
  set default=1
fi
"""


GRUB_PC_DIR = Path("/usr/lib/grub/i386-pc")
SECTOR = 512
MBR_CODE = 440           # boot.img bytes that go into the MBR; the rest is the partition table
BLOCKLIST_LEN = 0x1FC    # diskboot.img: length (sectors) of the rest of core.img, patched here


def install_bios(device: Path, boot: Path, gap_sectors: int = 2048) -> None:
    """Install GRUB for BIOS: boot.img in the MBR, core.img in the gap before partition 1.

    This does what grub-install/grub-bios-setup do for an embedded install, without their
    device probing, which cannot map partitions of loop devices set up with partx (as on
    hosts whose kernel does not scan partition tables). /boot is partition 1 (msdos1).
    """
    moddir = boot / "grub/i386-pc"
    moddir.mkdir(parents=True, exist_ok=True)
    for f in GRUB_PC_DIR.iterdir():
        if f.suffix in (".mod", ".lst", ".img"):
            shutil.copyfile(f, moddir / f.name)
    core = moddir / "core.img"
    run(["grub-mkimage", "-O", "i386-pc", "-o", str(core), "-p", "(hd0,msdos1)/grub",
         "biosdisk", "part_msdos", "ext2"], what="grub-mkimage")
    image = bytearray(core.read_bytes())
    sectors = -(-len(image) // SECTOR)
    if sectors >= gap_sectors:
        raise ComposeError(f"GRUB core.img ({sectors} sectors) does not fit before the first partition")
    image += bytes(sectors * SECTOR - len(image))
    image[BLOCKLIST_LEN:BLOCKLIST_LEN + 2] = (sectors - 1).to_bytes(2, "little")
    boot_img = (moddir / "boot.img").read_bytes()
    with open(device, "r+b") as dev:
        mbr = dev.read(SECTOR)
        dev.seek(0)
        dev.write(boot_img[:MBR_CODE] + mbr[MBR_CODE:])
        dev.seek(SECTOR)
        dev.write(image)
        dev.flush()
        os.fsync(dev.fileno())


GRUB_EFI_DIR = Path("/usr/lib/grub/x86_64-efi")
EFI_MODULES = ("part_gpt", "part_msdos", "fat", "ext2", "search", "search_fs_uuid", "configfile", "normal", "linux",
               "echo", "test", "all_video", "efi_gop", "gzio", "serial", "terminal", "loadenv", "boot")


def install_uefi(esp: Path, boot: Path, boot_uuid: str, workdir: Path) -> None:
    """GRUB for UEFI on the removable path EFI/BOOT/BOOTX64.EFI, written with mtools.

    The ESP is never mounted (this host's kernel may have no vfat driver): grub-mkimage
    builds the EFI binary, a stub grub.cfg next to it finds /boot by UUID and hands over to
    /boot/grub/grub.cfg, and mtools copies both into the FAT file system. Later deploys
    only change /boot, never the ESP.
    """
    moddir = boot / "grub/x86_64-efi"
    moddir.mkdir(parents=True, exist_ok=True)
    for f in GRUB_EFI_DIR.iterdir():
        if f.suffix in (".mod", ".lst"):
            shutil.copyfile(f, moddir / f.name)
    image = workdir / "BOOTX64.EFI"
    run(["grub-mkimage", "-O", "x86_64-efi", "-p", "/EFI/BOOT", "-o", str(image), *EFI_MODULES],
        what="grub-mkimage (x86_64-efi)")
    stub = workdir / "grub.cfg"
    stub.write_text(f"search --no-floppy --fs-uuid --set=root {boot_uuid}\nset prefix=($root)/grub\n"
                    "configfile ($root)/grub/grub.cfg\n")
    run(["mmd", "-i", str(esp), "::/EFI", "::/EFI/BOOT"], what="mmd")
    run(["mcopy", "-i", str(esp), str(image), str(stub), "::/EFI/BOOT/"], what="mcopy")


def parse_bls(text: str) -> dict[str, str]:
    """A BLS entry's keys; several ``initrd`` lines (the initramfs, then libostree's overlay
    initrds) become one value, in order: GRUB's ``initrd A B`` loads them one after the other."""
    entry: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            if key == "initrd" and key in entry:
                entry[key] += " " + value.strip()
            else:
                entry[key] = value.strip()
    return entry


def entries(boot: Path, bootversion: int) -> list[dict[str, str]]:
    """The BLS entries of ``boot/loader.N``, newest deployment first (the default), as libostree sorts them."""
    found = [parse_bls(conf.read_text()) for conf in (boot / f"loader.{bootversion}" / "entries").glob("*.conf")]
    found.sort(key=lambda e: int(e.get("version", "0")), reverse=True)
    return found


def menu_entries(found: list[dict[str, str]], prepare: str, device_id: str) -> str:
    """GRUB menu entries (what ostree's grub2-generate writes, with every initrd of an entry);
    ``prepare`` finds the boot file system (grub-mkconfig's prepare_grub_to_access_device)."""
    out = []
    for i, e in enumerate(found):
        title = e.get("title", "Debian GNU/Linux").replace("'", "")
        out.append(f"menuentry '{title}' --class gnu-linux --class gnu --class os --unrestricted "
                   f"'ostree-{i}-{device_id}' {{")
        out += ["load_video", "set gfxpayload=keep", "insmod gzio", *prepare.strip("\n").splitlines()]
        if "linux" not in e:
            raise ComposeError(f"boot entry {i} ({title}) has no linux line")
        out.append(f"linux {e['linux']} {e.get('options', '')}".rstrip())
        if "initrd" in e:
            out.append(f"initrd {e['initrd']}")
        if "devicetree" in e:
            out.append(f"devicetree {e['devicetree']}")
        out.append("}")
    return "\n".join(out) + "\n"


def menu(boot: Path, bootversion: int, boot_uuid: str) -> str:
    """The GRUB menu for ``boot/loader.N/entries`` of a sysroot that is not booted (no grub-mkconfig)."""
    prepare = "\n".join(["insmod part_msdos", "insmod part_gpt", "insmod ext2",
                         f"search --no-floppy --fs-uuid --set=root {boot_uuid}"])
    return menu_entries(entries(boot, bootversion), prepare, boot_uuid)


def generate_main(boot: Path = Path("/boot")) -> int:
    """/etc/grub.d/15_apt-ostree (data/15_apt-ostree): the menu entries on a booted system, run by
    grub-mkconfig (libostree's grub2 backend, ostree-finalize-staged, update-grub), which exports
    the boot device's id and GRUB commands to reach it, as ostree's 15_ostree does."""
    device_id, prepare = os.environ.get("GRUB2_BOOT_DEVICE_ID"), os.environ.get("GRUB2_PREPARE_ROOT_CACHE")
    if device_id is None or prepare is None:
        print("15_apt-ostree: run by grub-mkconfig (GRUB2_BOOT_DEVICE_ID is not set)", file=sys.stderr)
        return 1
    version = os.environ.get("_OSTREE_GRUB2_BOOTVERSION")  # set by libostree; update-grub: the current one
    bootversion = int(version) if version else int(os.readlink(boot / "loader").removeprefix("loader."))
    sys.stdout.write(menu_entries(entries(boot, bootversion), prepare, device_id))
    return 0


def exec_main(argv: list[str]) -> int:
    """Entry point for OSTREE_GRUB2_EXEC: ``PROG -o OUTPUT`` (called by libostree)."""
    if len(argv) != 3 or argv[1] != "-o":
        print(f"usage: {argv[0]} -o OUTPUT", file=sys.stderr)
        return 2
    bootversion = int(os.environ["_OSTREE_GRUB2_BOOTVERSION"])
    sysroot = Path(os.environ[SYSROOT_ENV])
    text = menu(sysroot / "boot", bootversion, os.environ[BOOT_UUID_ENV])
    Path(argv[2]).write_text(text)
    return 0


def write_exec_helper(path: Path) -> Path:
    """Write the OSTREE_GRUB2_EXEC program to ``path`` (it imports this package from where it is now)."""
    package_root = Path(__file__).resolve().parents[2]
    path.write_text(f"#!/usr/bin/python3\nimport sys\nsys.path.insert(0, {str(package_root)!r})\n"
                    "from apt_ostree.core.grub import exec_main\nsys.exit(exec_main(sys.argv))\n")
    path.chmod(0o755)
    return path


if __name__ == "__main__":
    sys.exit(generate_main())
