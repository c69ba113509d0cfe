"""The host side on the other supported release (issue 11, item 6): on a Debian 12 machine, the
unit tier and the root tier's layering, deployment and rebase tests run once more inside a
Debian 13 root made with mmdebstrap (on a Debian 13 machine, inside a Debian 12 root): apt-ostree
on that release's Python, python3-apt, PyGObject, dpkg, bubblewrap and libostree, with real
mounts. They use this session's Debian 13 commit (passed in, not composed again)."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from apt_ostree.compose.tree import release_sources
from apt_ostree.core.apt import sources_list_text
from apt_ostree.core.sources import host_release
from tests.conftest import BUILD, IMAGES_ENV, TOP, Composed, images_env

pytestmark = pytest.mark.root

OTHER = {"bookworm": "trixie", "trixie": "bookworm"}
# what `make check` installs that these tests use (make deps' list, less the image and VM tools)
PACKAGES = ("python3 python3-gi gir1.2-ostree-1.0 python3-apt python3-yaml python3-pytest ostree bubblewrap "
            "dpkg-dev gpg gpg-agent systemd util-linux mount e2fsprogs make ca-certificates procps grub-common "
            "nginx").split()
TESTS = ("tests/unit", "tests/root/test_layering.py", "tests/root/test_deployments.py",
         "tests/root/test_rebase_sources.py", "tests/root/test_publish.py")


def make_root(release: str, cachedir: Path) -> Path:
    """The other release's root, kept in _build across runs (rebuilt when the package list changes)."""
    root = BUILD / f"host-{release}"
    stamp = root / ".apt-ostree-packages"
    if stamp.is_file() and stamp.read_text() == " ".join(PACKAGES):
        return root
    subprocess.run(["rm", "-rf", str(root)], check=True)
    sources = BUILD / f"host-{release}.sources"
    sources.write_text(sources_list_text(release_sources(release)))
    debs = cachedir / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mmdebstrap", "--mode=root", "--variant=apt", "--include=" + ",".join(PACKAGES),
                    "--aptopt=APT::Install-Recommends \"false\"", "--skip=check/qemu",
                    "--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives",
                    f"--setup-hook=sync-in {shlex.quote(str(debs))} /var/cache/apt/archives/",
                    f"--customize-hook=sync-out /var/cache/apt/archives {shlex.quote(str(debs))}",
                    release, str(root), str(sources)], check=True, capture_output=True)
    stamp.write_text(" ".join(PACKAGES))
    return root


def test_root_and_unit_tiers_on_the_other_release(minimal: Composed, cachedir: Path) -> None:
    host = host_release()
    assert host in OTHER, host
    root = make_root(OTHER[host], cachedir)
    inner = (f"cd /src && exec python3 -m pytest -q -p no:cacheprovider --basetemp=/var/tmp/pytest "
             f"--deselect tests/unit/test_lint.py {' '.join(TESTS)}")
    # the root is a mount point of its own (bwrap makes / a slave mount, which needs one)
    mounts = [f"mount --bind {root} {root}", f"mount --rbind /dev {root}/dev", f"mount -t proc proc {root}/proc",
              f"mount --rbind /sys {root}/sys",
              f"mount -t tmpfs tmpfs {root}/run", f"mkdir -p {root}/src {root}/{minimal.repo}",
              f"mount --bind {TOP} {root}/src", f"mount --bind {minimal.repo} {root}/{minimal.repo}",
              f"rm -rf {root}/var/tmp/pytest"]
    env = (f"env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 HOME=/root "
           f"{IMAGES_ENV}={shlex.quote(images_env({'minimal': minimal}))}")
    script = " && ".join(mounts) + f" && exec chroot {root} {env} sh -c {shlex.quote(inner)}"
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "--pid", "--fork", "sh", "-c", script],
                          capture_output=True, text=True, env={**os.environ, "LC_ALL": "C.UTF-8"})
    summary = proc.stdout.strip().splitlines()[-1:] or [proc.stderr[-2000:]]
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert " passed" in summary[0] and "failed" not in summary[0], summary
