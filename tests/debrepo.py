"""Synthetic .debs (built with dpkg-deb) in a local APT repository signed with a fresh key.

The packages cover what layering must get right: a Depends chain, a dependency
on a virtual package, a failing postinst, a Conflicts with a base package, a
conffile, a system user made in postinst, update-alternatives, dpkg-divert of a
base file, a file trigger, content in /var and in /opt.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Deb:
    name: str
    version: str = "1.0"
    control: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # path -> content
    scripts: dict[str, str] = field(default_factory=dict)  # preinst/postinst/prerm/postrm/triggers/conffiles


SH = "#!/bin/sh\nset -e\n"

PACKAGES = (
    Deb("aot-hello", control={"Depends": "aot-lib"},
        files={"/usr/share/aot-hello/README": "hello from a layered package\n"}),
    Deb("aot-lib", control={"Depends": "aot-base-lib"}, files={"/usr/share/aot-lib/lib": "lib\n"}),
    Deb("aot-base-lib", files={"/usr/share/aot-base-lib/lib": "base lib\n"}),
    Deb("aot-fail", files={"/usr/share/aot-fail/README": "never configured\n"},
        scripts={"postinst": SH + "echo 'aot-fail: this postinst fails on purpose' >&2\nexit 3\n"}),
    Deb("aot-virtual-user", control={"Depends": "aot-virtual"}, files={"/usr/share/aot-virtual-user/x": "x\n"}),
    Deb("aot-provider", control={"Provides": "aot-virtual"}, files={"/usr/share/aot-provider/x": "x\n"}),
    Deb("aot-conflict", control={"Conflicts": "less"}, files={"/usr/share/aot-conflict/README": "x\n"}),
    Deb("aot-needs-newer", control={"Depends": "libc6 (>= 99)"}, files={"/usr/share/aot-needs-newer/x": "x\n"}),
    Deb("aot-conffile", files={"/etc/aot-conffile.conf": "setting = 1\n"},
        scripts={"conffiles": "/etc/aot-conffile.conf\n"}),
    Deb("aot-user", control={"Depends": "passwd"}, files={"/usr/share/aot-user/README": "x\n"},
        scripts={"postinst": SH + "getent passwd aotuser >/dev/null || "
                 "useradd --system --user-group --no-create-home --home-dir /nonexistent "
                 "--shell /usr/sbin/nologin aotuser\n"}),
    Deb("aot-alt", files={"/usr/bin/aot-alt-real": "#!/bin/sh\necho alt\n"},
        scripts={"postinst": SH + "update-alternatives --install /usr/bin/aot-alt aot-alt /usr/bin/aot-alt-real 50\n",
                 "prerm": SH + "update-alternatives --remove aot-alt /usr/bin/aot-alt-real\n"}),
    Deb("aot-divert", files={"/usr/bin/lesskey": "#!/bin/sh\necho diverted\n"},
        scripts={"preinst": SH + "dpkg-divert --package aot-divert --rename "
                 "--divert /usr/bin/lesskey.real --add /usr/bin/lesskey\n",
                 "postrm": SH + "dpkg-divert --package aot-divert --rename --remove /usr/bin/lesskey\n"}),
    Deb("aot-trigger", files={"/usr/share/aot-trigger/README": "x\n"},
        scripts={"triggers": "interest /usr/share/aot-trigger-dir\n",
                 "postinst": SH + 'if [ "$1" = triggered ]; then echo "$2" > /usr/share/aot-trigger/triggered; fi\n'}),
    Deb("aot-activator", control={"Depends": "aot-trigger"},
        files={"/usr/share/aot-trigger-dir/activator": "activates aot-trigger's file trigger\n"}),
    Deb("aot-var", files={"/var/lib/aot-var/shipped": "shipped in /var\n", "/usr/share/aot-var/README": "x\n"},
        scripts={"postinst": SH + "mkdir -p /var/lib/aot-var/made && echo made > /var/lib/aot-var/made/by-postinst\n"}),
    Deb("aot-opt", files={"/opt/aot-opt/bin/tool": "#!/bin/sh\necho opt tool\n"}),
    Deb("aot-replace-less", files={"/usr/share/aot-replace/README": "x\n"}),
    Deb("aot-debconf", control={"Depends": "debconf"}, files={"/usr/share/aot-debconf/README": "x\n"},
        scripts={"templates": "Template: aot-debconf/color\nType: string\nDefault: blue\n"
                              "Description: favourite colour\n",
                 "config": SH + ". /usr/share/debconf/confmodule\ndb_input high aot-debconf/color || true\n"
                           "db_go || true\n",
                 "postinst": SH + ". /usr/share/debconf/confmodule\ndb_get aot-debconf/color\n"
                             'echo "$RET" > /usr/share/aot-debconf/color\n'}),
)


def build_deb(deb: Deb, build: Path, pool: Path) -> Path:
    pkg = build / deb.name
    (pkg / "DEBIAN").mkdir(parents=True)
    for path, content in deb.files.items():
        target = pkg / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        target.chmod(0o755 if content.startswith("#!") else 0o644)
    for name, content in deb.scripts.items():
        script = pkg / "DEBIAN" / name
        script.write_text(content)
        script.chmod(0o755 if name not in ("triggers", "conffiles", "templates") else 0o644)
    fields = {"Package": deb.name, "Version": deb.version, "Architecture": "all",
              "Maintainer": "apt-ostree tests <t@example.invalid>", **deb.control,
              "Description": f"apt-ostree test package {deb.name}"}
    (pkg / "DEBIAN/control").write_text("".join(f"{k}: {v}\n" for k, v in fields.items()))
    out = pool / f"{deb.name}_{deb.version}_all.deb"
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-b", str(pkg), str(out)], check=True,
                   capture_output=True)
    return out


@dataclass(frozen=True)
class SignedRepo:
    path: Path  # serve as file://path, suite "test", component main
    keyring: Path
    debs: dict[str, Path]
    flat: Path  # the same packages as a flat repository (unsigned)
    armored: str = ""  # the signing key, ASCII-armored (for a deb822 inline Signed-By)

    def sources(self, keyring_in_tree: str = "/etc/apt/keyrings/aot-test.gpg") -> str:
        return (f"Types: deb\nURIs: file://{self.path}\nSuites: test\nComponents: main\n"
                f"Signed-By: {keyring_in_tree}\n")


def make_repo(root: Path, packages: tuple[Deb, ...] = PACKAGES, sign: bool = True,
              suites: tuple[str, ...] = ("test",), components: tuple[str, ...] = ("main",)) -> SignedRepo:
    """Build ``packages`` into a repository under ``root`` (which must be readable by APT): every
    suite and component holds them all. Also a flat copy (``flat``: ``deb URI ./``), unsigned."""
    repo = root / "repo"
    debs = {d.name: build_deb(d, root / "build", repo / "pool") for d in packages}
    scanned = subprocess.run(["dpkg-scanpackages", "pool"], cwd=repo, check=True, capture_output=True).stdout
    gnupg = root / "gnupg"
    env = {**os.environ, "GNUPGHOME": str(gnupg)}
    if sign:
        gnupg.mkdir(mode=0o700)
        subprocess.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key", "apt-ostree test <t@example.invalid>",
                        "ed25519", "sign", "never"], env=env, check=True, capture_output=True)
    for suite in suites:
        sums = ""
        for component in components:
            binary = repo / f"dists/{suite}/{component}/binary-amd64"
            binary.mkdir(parents=True)
            (binary / "Packages").write_bytes(scanned)
            (binary / "Packages.gz").write_bytes(gzip.compress(scanned))
            sums += "".join(f" {hashlib.sha256(f.read_bytes()).hexdigest()} {f.stat().st_size} "
                            f"{component}/binary-amd64/{f.name}\n" for f in sorted(binary.iterdir()))
        release = repo / f"dists/{suite}/Release"
        release.write_text(f"Suite: {suite}\nCodename: {suite}\nDate: Sat, 01 Jan 2000 00:00:00 UTC\n"
                           "Architectures: amd64 all\n"
                           f"Components: {' '.join(components)}\nSHA256:\n{sums}")
        if sign:
            subprocess.run(["gpg", "--batch", "--yes", "--clearsign", "-o", str(repo / f"dists/{suite}/InRelease"),
                            str(release)], env=env, check=True, capture_output=True)
    flat = root / "flat"
    flat.mkdir()
    for deb in debs.values():
        os.link(deb, flat / deb.name)
    (flat / "Packages").write_bytes(subprocess.run(["dpkg-scanpackages", "."], cwd=flat, check=True,
                                                   capture_output=True).stdout)
    keyring = root / "aot-test.gpg"
    armored = ""
    if sign:
        keyring.write_bytes(subprocess.run(["gpg", "--export"], env=env, check=True, capture_output=True).stdout)
        armored = subprocess.run(["gpg", "--export", "--armor"], env=env, check=True, capture_output=True,
                                 text=True).stdout
        subprocess.run(["gpgconf", "--kill", "all"], env=env, check=False, capture_output=True)
    else:
        keyring.write_bytes(b"")
    for path in [root, *root.rglob("*")]:
        if "gnupg" not in path.parts:
            path.chmod(0o755 if path.is_dir() else 0o644)
    return SignedRepo(repo, keyring, debs, flat, armored)
