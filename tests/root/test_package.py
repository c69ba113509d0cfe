"""apt-ostree is a Debian package: it builds, lintian finds no errors, it ships what it should.

(Installing it with its real dependencies into a scratch root and running `apt-ostree --version`
there is done by examples/trixie.yaml: see test_compose_minimal.test_dpkg_and_apt_work_on_the_tree.)
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.root


def test_lintian_has_no_errors(deb: Path) -> None:
    proc = subprocess.run(["lintian", "--no-tag-display-limit", str(deb)], capture_output=True, text=True)
    errors = [ln for ln in proc.stdout.splitlines() if ln.startswith("E:")]
    assert errors == [], proc.stdout


def test_contents(deb: Path) -> None:
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
    for path in ("./usr/bin/apt-ostree", "./usr/lib/python3/dist-packages/apt_ostree/cli/main.py",
                 "./usr/share/man/man8/apt-ostree.8.gz", "./usr/share/bash-completion/completions/apt-ostree",
                 # apt-ostreed (docs/dbus-api.md)
                 "./usr/share/dbus-1/system.d/org.projectatomic.aptostree1.conf",
                 "./usr/share/dbus-1/system-services/org.projectatomic.aptostree1.service",
                 "./usr/share/dbus-1/interfaces/org.projectatomic.aptostree1.xml",
                 "./usr/share/polkit-1/actions/org.projectatomic.aptostree1.policy",
                 "./etc/apt-ostreed.conf", "./lib/systemd/system/apt-ostreed.service",
                 "./lib/systemd/system/apt-ostreed-automatic.service",
                 "./lib/systemd/system/apt-ostreed-automatic.timer",
                 # the automatic fallback's confirmation (apt_ostree/core/boot_trial.py)
                 "./lib/systemd/system/apt-ostree-boot-complete.service"):
        assert path in listing
    postinst = subprocess.run(["dpkg-deb", "-I", str(deb), "postinst"], capture_output=True, text=True,
                              check=True).stdout
    assert "apt-ostreed-automatic.timer" in postinst  # enabled by the package
    assert "apt-ostree-boot-complete.service" in postinst
    assert "__pycache__" not in listing
    fields = subprocess.run(["dpkg-deb", "-f", str(deb), "Depends"], capture_output=True, text=True,
                            check=True).stdout
    for dep in ("python3-gi", "gir1.2-ostree-1.0", "python3-apt", "bubblewrap", "ostree", "dbus"):
        assert dep in fields


def test_extracted_package_runs(deb: Path, tmp_path: Path) -> None:
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp_path)], check=True)
    proc = subprocess.run(["/usr/bin/python3", str(tmp_path / "usr/bin/apt-ostree"), "--version"],
                          env={"PYTHONPATH": str(tmp_path / "usr/lib/python3/dist-packages")},
                          capture_output=True, text=True, check=True)
    assert proc.stdout.strip().startswith("apt-ostree ")
