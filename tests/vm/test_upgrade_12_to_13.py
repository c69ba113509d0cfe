"""A Debian 12 guest upgraded to Debian 13 by one `apt-ostree rebase`, and rolled back (issue 11,
item 5): a package layered on 12 is re-resolved from 13's own sources (the new base's /etc/apt
merged with the admin's /etc), /etc edits survive both ways, each step proven by a reboot.
Issue 13 on Debian 12, on the same reboots: the package is layered with ``install -A`` (it runs at
once), an /etc file tracked by ``initramfs-etc`` reaches the initrd through the overlay initrd and
GRUB's menu, and ``usroverlay`` lets ``dpkg -i`` through at the end.
Issue 14 on the same guest, then: the Debian 12 system rebases to a bootable Debian 13 container image
built FROM ours by buildah (``RUN apt-ostree install hello``), upgrades to the next build of it (one more
package: only the new layer is fetched), keeps its layered htop on both, and rolls back.
(A BIOS guest: under UEFI the rollback from 13 to 12 did not boot again, 2026-12-03; see the session
note. Runs after the test_updates* files: the Debian 13 guest idles meanwhile.)"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Composed, apt_ostree
from tests.debrepo import Deb, build_deb
from tests.images import VAR_RUN, build_derived
from tests.vm import conftest as vm
from tests.vm.conftest import publish
from tests.vm.qemu import Guest
from tests.vm.test_updates import booted, reboot
from tests.vm.test_updates_zlive import DROPIN, INITRD_MARK, boot_entry, initrds, status, write_dropin

pytestmark = pytest.mark.vm


@pytest.fixture(scope="module")
def images(minimal: Composed, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """OCI layouts: the Debian 13 commit as an image (oci:DIR/oci:base), and FROM it, with hello
    installed by apt-ostree in the build (oci:DIR/oci:derived)."""
    top = tmp_path_factory.mktemp("images")
    apt_ostree("compose", "container-encapsulate", "--repo", minimal.repo, minimal.checksum, f"oci:{top}/oci:base")
    build_derived(f"oci:{top}/oci:base", ["hello"], f"oci:{top}/oci:derived", top / "buildah", run=VAR_RUN)
    return top


@pytest.fixture(scope="module")
def guest12(bookworm: Composed, minimal: Composed, updates: Path, images: Path,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guest]:
    publish(updates, bookworm.repo, bookworm.ref, bookworm.checksum)
    publish(updates, minimal.repo, minimal.ref, minimal.checksum)  # Debian 13 as composed (other tests moved it)
    with vm.booted_guest(bookworm, updates, tmp_path_factory.mktemp("vm12"), "aotest12", images=images) as g:
        yield g


def version(g: Guest, package: str) -> str:
    return g.run(f"dpkg-query -W -f='${{db:Status-Abbrev}}${{Version}}' {package}").stdout.strip()


def test_rebase_from_12_to_13_and_back(guest12: Guest, bookworm: Composed, minimal: Composed, images: Path,
                                       tmp_path: Path) -> None:
    g = guest12
    assert g.run("cat /etc/debian_version").stdout.startswith("12.")
    assert g.run("systemctl is-active multi-user.target").stdout.strip() == "active"
    g.run("echo kept-across-releases > /etc/apt-ostree-test-edit")
    write_dropin(g)
    g.run(f"apt-ostree initramfs-etc --track={DROPIN}", timeout=900)
    live = g.run("apt-ostree install -A htop", timeout=900).stdout
    assert "Successfully updated running filesystem tree" in live, live
    assert g.run("htop --version").returncode == 0  # at once, before the reboot
    st = status(g)
    [staged] = [d for d in st["deployments"] if d["staged"]]
    assert next(d for d in st["deployments"] if d["booted"])["live-replaced"] == staged["checksum"]
    reboot(g)
    v12 = version(g, "htop")
    me = booted(g)
    assert v12.startswith("ii ") and me["packages"] == ["htop"] and "live-replaced" not in me
    assert me["initramfs-etc"] == [DROPIN]
    main, overlay = initrds(boot_entry(g))
    assert DROPIN.lstrip("/") in g.run(f"lsinitrd /boot{overlay}", timeout=300).stdout
    grub = g.run("cat /boot/loader/grub.cfg").stdout
    assert any(line.split()[1:] == [main, overlay] for line in grub.splitlines() if line.strip().startswith("initrd")
               ), grub
    assert INITRD_MARK in g.run("journalctl -b -k -o cat --no-pager").stdout

    # --preview: Debian 13's packages and htop resolved from Debian 13's sources; nothing staged
    preview = g.run(f"apt-ostree rebase --preview updates:{minimal.ref}", timeout=1500).stdout
    assert "base-files" in preview and "Layered packages on the new base:" in preview, preview
    planned = preview.partition("Layered packages on the new base:")[2]
    assert "htop " in planned and v12.removeprefix("ii ") not in planned, preview
    assert not any(d["staged"] for d in json.loads(g.run("apt-ostree status --json").stdout)["deployments"])

    # staged with a finalization lock (Debian 12's libostree: the lock file), applied by finalize-deployment
    cli = g.run(f"apt-ostree rebase --lock-finalization updates:{minimal.ref}", timeout=1500)
    assert "htop" in cli.stdout  # the package diff names the layered package's new version
    staged = next(d for d in json.loads(g.run("apt-ostree status --json").stdout)["deployments"] if d["staged"])
    assert staged["origin"] == f"updates:{minimal.ref}" and staged["requested-packages"] == ["htop"]
    assert staged["finalization-locked"] is True
    diff = g.run("apt-ostree db diff").stdout
    assert "base-files" in diff and "htop" in diff
    reboot(g, command=f"apt-ostree finalize-deployment {staged['checksum'][:12]}")
    d = booted(g)
    assert d["base-checksum"] == minimal.checksum and d["packages"] == ["htop"]
    assert g.run("cat /etc/debian_version").stdout.startswith("13.")
    v13 = version(g, "htop")
    assert v13.startswith("ii ") and v13 != v12 and f"htop {v13.removeprefix('ii ')}" in planned
    assert g.run("cat /etc/apt-ostree-test-edit").stdout.strip() == "kept-across-releases"
    assert g.run("systemctl --failed --no-legend").stdout.strip() == ""
    assert g.run("htop --version").returncode == 0

    g.run("apt-ostree rollback")
    reboot(g)
    assert g.run("cat /etc/debian_version").stdout.startswith("12.")
    assert version(g, "htop") == v12
    assert booted(g)["origin"] == f"updates:{bookworm.ref}"
    assert g.run("cat /etc/apt-ostree-test-edit").stdout.strip() == "kept-across-releases"

    # usroverlay on Debian 12: dpkg works again, with the guard's warning
    assert "Unlocked: development" in g.run("apt-ostree usroverlay").stdout
    deb = build_deb(Deb("aot-hello", files={"usr/share/aot-hello/hello": "hello\n"}), tmp_path / "b", tmp_path / "p")
    g.run("base64 -d > /tmp/aot-hello.deb", input=base64.b64encode(deb.read_bytes()).decode())
    installed = g.run("dpkg -i /tmp/aot-hello.deb")
    assert "lost at the next reboot" in installed.stderr + installed.stdout, installed.stderr
    assert g.run("cat /usr/share/aot-hello/hello").stdout == "hello\n"
    assert "Unlocked: development" in g.run("apt-ostree status").stdout

    # issue 14: to a bootable Debian 13 image built FROM ours; its commit is here (the 13 deployment's
    # base), so only the layer the Containerfile added is fetched
    imgref = f"ostree-unverified-image:oci:{vm.GUEST_IMAGES}/oci:derived"
    out = g.run(f"apt-ostree rebase {imgref}", timeout=1800).stdout
    assert "Fetched 1 of " in out, out
    reboot(g)
    d = booted(g)
    assert d["container-image-reference"] == imgref and d["origin"] is None
    first = d["container-image-reference-digest"]
    assert [p.split()[0] for p in d["image-derived-packages"]] == ["hello"] and d["packages"] == ["htop"]
    assert g.run("hello").stdout.startswith("Hello, world!")
    assert g.run("cat /var/lib/aot-state/file").stdout == "kept\n"  # (the image's /var, made at boot)
    assert g.run("cat /etc/debian_version").stdout.startswith("13.") and g.run("htop --version").returncode == 0
    assert g.run("cat /etc/apt-ostree-test-edit").stdout.strip() == "kept-across-releases"
    human = g.run("apt-ostree status").stdout
    assert f"● {imgref}" in human and "ImagePackages: hello" in human and f"Digest: {first}" in human
    assert g.run("systemctl --failed --no-legend").stdout.strip() == ""

    # the next build of the image, under the same tag: upgrade fetches its new layer only
    build_derived(f"oci:{images}/oci:base", ["hello", "sl"], f"oci:{images}/oci:derived", images / "buildah",
                  run=VAR_RUN)
    assert "Available" in g.run("apt-ostree upgrade --check", timeout=600).stdout
    out = g.run("apt-ostree upgrade", timeout=1800).stdout
    assert "Fetched 1 of " in out, out
    reboot(g)
    d = booted(g)
    assert d["container-image-reference-digest"] != first and d["packages"] == ["htop"]
    assert {"hello", "sl"} <= {p.split()[0] for p in d["image-derived-packages"]}  # (with sl's dependencies)
    assert g.run("test -x /usr/games/sl").returncode == 0 and g.run("htop --version").returncode == 0

    g.run("apt-ostree rollback")
    reboot(g)
    d = booted(g)
    assert d["container-image-reference-digest"] == first
    assert g.run("test -e /usr/games/sl", check=False).returncode != 0 and g.run("hello").returncode == 0
