"""The running system changed without a reboot, and the initramfs owned by the client (issue 13), in
the booted Debian 13 guest, after the other test_updates* files (it adds to what they layered):

- boot 1: ``install -A vnstat`` (a program, a service, a system user) works at once; an upgrade whose
  new base changes a package, with ``initramfs --enable -I FILE`` and ``initramfs-etc --track`` of a
  drop-in that the initrd's systemd runs; ``apply-live`` refuses it by the package's name, one
  SIGKILLed in the middle is reported and completed, ``ostree fsck`` is clean;
- boot 2: the plain deployment has all of it; the initramfs has FILE, the boot entry and GRUB's menu
  load the overlay initrd, the initrd ran the tracked drop-in (kernel log); then ``initramfs
  --disable`` and ``usroverlay`` (``dpkg -i`` of a local .deb works, with the guard's warning);
- boot 3: the .deb is gone, the base's initramfs is back; ``usroverlay --hotfix``;
- boot 4: the hotfix stays, status says so.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Composed
from tests.debrepo import Deb, build_deb
from tests.vm.qemu import Guest
from tests.vm.test_updates import booted, reboot

pytestmark = pytest.mark.vm

DROPIN = "/etc/systemd/system/initrd-parse-etc.service.d/aot-initrd.conf"
INITRD_MARK = "aot-initrd-etc-seen"
LIVE_COUNT = "ls -d /usr/share/aot-live-* 2>/dev/null | wc -l"
LIVE_FILES = 40  # files the new base adds: an apply-live slowed down to be killed while it writes them


def status(g: Guest) -> dict[str, Any]:
    return dict(json.loads(g.run("apt-ostree status --json").stdout))


def write_dropin(g: Guest) -> None:
    """DROPIN: a drop-in for the initrd's initrd-parse-etc.service that writes INITRD_MARK to the kernel log."""
    g.run(f"mkdir -p {Path(DROPIN).parent} && printf '[Service]\\nExecStartPre=-/bin/sh -c \"echo {INITRD_MARK}"
          f" > /dev/kmsg\"\\n' > {DROPIN}")


def boot_entry(g: Guest) -> str:
    """The BLS entry the guest booted (the one with /proc/cmdline's ostree= path)."""
    return g.run("grep -l \"ostree=$(sed -n 's/.*ostree=\\([^ ]*\\).*/\\1/p' /proc/cmdline)\\( \\|$\\)\" "
                 "/boot/loader/entries/*.conf | head -1 | xargs cat").stdout


def initrds(entry: str) -> list[str]:
    return [p for line in entry.splitlines() if line.startswith("initrd ") for p in line.split()[1:]]


def new_base(updates: Path, ref: str, base: str, tmp: Path) -> tuple[str, str]:
    """A base on the update server's ``ref`` that changes base-files' version (in the dpkg database
    only) and adds LIVE_FILES files; (its checksum, base-files' new version)."""
    status_path = "usr/share/dpkg/database/status"
    text = subprocess.run(["ostree", "cat", f"--repo={updates}", base, "/" + status_path], capture_output=True,
                          text=True, check=True).stdout
    stanzas = text.split("\n\n")
    i = next(n for n, s in enumerate(stanzas) if s.startswith("Package: base-files\n"))
    old = next(line for line in stanzas[i].splitlines() if line.startswith("Version: "))
    version = old.removeprefix("Version: ") + "+aotlive1"
    stanzas[i] = stanzas[i].replace(old, f"Version: {version}")
    tree = tmp / "live-base"
    (tree / status_path).parent.mkdir(parents=True)
    (tree / status_path).write_text("\n\n".join(stanzas))
    (tree / "usr/share").mkdir(parents=True, exist_ok=True)
    for n in range(LIVE_FILES):  # (in a directory the running system has: a new directory is checked out whole)
        (tree / f"usr/share/aot-live-{n:02}").write_text(f"{n}\n")
    # (without apt-ostree.packages: the package list is read from the dpkg database)
    out = subprocess.run(["ostree", "commit", f"--repo={updates}", "-b", ref, f"--parent={base}",
                          f"--tree=ref={base}", f"--tree=dir={tree}", "--add-metadata-string=version=13.98",
                          "--keep-metadata=ostree.bootable", "--keep-metadata=ostree.linux"],
                         check=True, capture_output=True, text=True).stdout
    return out.strip(), version


def test_live_initramfs_usroverlay(guest: Guest, minimal: Composed, updates: Path, tmp_path: Path) -> None:
    g = guest
    start = booted(g)
    layered = sorted(start["packages"])

    # --- boot 1: install -A: program, service and system user at once
    out = g.run("apt-ostree install -A vnstat", timeout=1500).stdout
    assert "Successfully updated running filesystem tree" in out, out
    assert g.run("vnstat --version").returncode == 0
    assert g.run("getent passwd vnstat").stdout.startswith("vnstat:")
    g.run("systemctl start vnstat && systemctl is-active vnstat")
    st = status(g)
    [staged] = [d for d in st["deployments"] if d["staged"]]
    me = next(d for d in st["deployments"] if d["booted"])
    assert me["live-replaced"] == staged["checksum"] and "live-inprogress" not in me
    assert me["unlocked"] == "transient"
    human = g.run("apt-ostree status").stdout
    assert f"LiveCommit: {staged['checksum']}" in human and "LiveDiff: " in human and "added" in human, human
    assert g.run("touch /usr/aot-rw", check=False).returncode != 0  # read-only for everyone else

    # --- an upgrade whose base changes base-files, with the initramfs regenerated and a tracked /etc file
    base, version = new_base(updates, minimal.ref, str(start.get("base-checksum") or start["checksum"]), tmp_path)
    write_dropin(g)
    g.run("echo aot-dracut-file > /etc/aot-initramfs-file")
    g.run("apt-ostree upgrade", timeout=1500)
    g.run(f"apt-ostree initramfs-etc --track={DROPIN}", timeout=900)
    g.run("apt-ostree initramfs --enable --arg=-I --arg=/etc/aot-initramfs-file", timeout=2400)
    [pending] = [d for d in status(g)["deployments"] if d["staged"]]
    assert pending["regenerate-initramfs"] and pending["initramfs-etc"] == [DROPIN]
    assert pending["base-checksum"] == base

    refused = g.run("apt-ostree apply-live", check=False)
    assert refused.returncode != 0 and "base-files" in refused.stderr, refused.stderr
    assert status(g)["deployments"][0]["staged"] and booted(g)["live-replaced"] == staged["checksum"]

    # SIGKILL while it writes (in-process, slowed down), then the next apply-live completes it
    g.run("(APT_OSTREE_NO_DAEMON=1 APT_OSTREE_LIVE_DELAY=0.5 setsid apt-ostree apply-live --allow-replacement "
          ">/tmp/live.log 2>&1 </dev/null &)")
    # (the patterns are written so that they do not match this command's own shell)
    g.run("for i in $(seq 600); do n=$(ls -d /usr/share/aot-live-* 2>/dev/null | wc -l); "
          "[ \"$n\" -ge 3 ] && break; sleep 0.2; done; pkill -9 -f '[a]pt_ostree.core.live_apply'; "
          "pkill -9 -f '[a]pply-live --allow'; sleep 1", timeout=600)
    written = int(g.run(LIVE_COUNT).stdout)
    assert 3 <= written < LIVE_FILES
    me = booted(g)
    assert me["live-inprogress"] == pending["checksum"], me
    assert "InterruptedLiveCommit:" in g.run("apt-ostree status").stdout
    done = g.run("apt-ostree apply-live --allow-replacement", timeout=900).stdout
    assert "Completed the interrupted apply-live" in done and "base-files" in done, done
    assert int(g.run(LIVE_COUNT).stdout) == LIVE_FILES
    me = booted(g)
    assert me["live-replaced"] == pending["checksum"] and "live-inprogress" not in me
    assert version in g.run("dpkg-query -W -f='${Version}' base-files").stdout
    g.run("ostree fsck --repo=/ostree/repo", timeout=1200)
    assert g.run("systemctl --failed --no-legend").stdout.strip() == ""

    # --- boot 2: the plain deployment; the initramfs and the overlay initrd
    reboot(g)
    me = booted(g)
    assert me["checksum"] == pending["checksum"] and "live-replaced" not in me and me["unlocked"] == "none"
    assert sorted(me["packages"]) == sorted([*layered, "vnstat"])
    assert g.run("getent passwd vnstat").stdout.startswith("vnstat:")
    assert g.run("systemctl is-active vnstat").stdout.strip() == "active"
    assert int(g.run(LIVE_COUNT).stdout) == LIVE_FILES
    entry = boot_entry(g)
    main, overlay = initrds(entry)
    assert "etc/aot-initramfs-file" in g.run(f"lsinitrd /boot{main}", timeout=300).stdout
    assert DROPIN.lstrip("/") in g.run(f"lsinitrd /boot{overlay}", timeout=300).stdout
    grub = g.run("cat /boot/loader/grub.cfg").stdout
    assert any(line.split()[1:] == [main, overlay] for line in grub.splitlines() if line.strip().startswith("initrd")
               ), grub
    assert INITRD_MARK in g.run("journalctl -b -k -o cat --no-pager").stdout
    assert "Initramfs: regenerate -I /etc/aot-initramfs-file" in g.run("apt-ostree status").stdout

    g.run("apt-ostree initramfs --disable", timeout=1500)
    out = g.run("apt-ostree usroverlay").stdout
    assert "Unlocked: development" in out, out
    assert booted(g)["unlocked"] == "development"
    deb = build_deb(Deb("aot-hello", files={"usr/share/aot-hello/hello": "hello\n"}), tmp_path / "b", tmp_path / "p")
    g.run("base64 -d > /tmp/aot-hello.deb", input=base64.b64encode(deb.read_bytes()).decode())
    installed = g.run("dpkg -i /tmp/aot-hello.deb")
    assert "lost at the next reboot" in installed.stderr + installed.stdout, installed.stderr
    assert g.run("cat /usr/share/aot-hello/hello").stdout == "hello\n"

    # --- boot 3: the overlay is gone, the base's initramfs is back
    reboot(g)
    me = booted(g)
    assert me["unlocked"] == "none" and not me["regenerate-initramfs"]
    assert g.run("test -e /usr/share/aot-hello", check=False).returncode != 0
    main, _overlay = initrds(boot_entry(g))
    kver = g.run("uname -r").stdout.strip()
    ours = g.run(f"sha256sum < /boot{main}").stdout.split()[0]
    theirs = g.run(f"ostree cat --repo=/ostree/repo {base} /usr/lib/modules/{kver}/initramfs.img | sha256sum"
                   ).stdout.split()[0]
    assert ours == theirs
    out = g.run("apt-ostree usroverlay --hotfix", timeout=600).stdout
    assert "Unlocked: hotfix" in out, out
    g.run("echo hotfix > /usr/share/aot-hotfix")

    # --- boot 4: the hotfix stays
    reboot(g)
    me = booted(g)
    assert me["unlocked"] == "hotfix" and "Unlocked: hotfix" in g.run("apt-ostree status").stdout
    assert g.run("cat /usr/share/aot-hotfix").stdout == "hotfix\n"
    assert g.run("systemctl --failed --no-legend").stdout.strip() == ""
