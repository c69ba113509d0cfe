"""load_treefile: validation, error messages, include merging, the frozen model."""

from __future__ import annotations

import dataclasses
import json
import textwrap
from pathlib import Path

import pytest

from apt_ostree.core.treefile import AptRepo, Treefile, load_treefile
from apt_ostree.errors import TreefileError

pytestmark = pytest.mark.unit


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def minimal(tmp_path: Path, extra: str = "", name: str = "tree.yaml") -> Path:
    return write(tmp_path / name, "ref: debian/test\n" + textwrap.dedent(extra))


def load_error(path: Path) -> str:
    with pytest.raises(TreefileError) as info:
        load_treefile(path)
    return str(info.value)


FULL = """\
ref: debian/bookworm/x86_64/full
releasever: bookworm
repos:
  - uris: [http://deb.debian.org/debian, https://mirror.example/debian]
    suites: [bookworm, bookworm-updates]
    components: [main, contrib]
    signed-by: keys/debian.gpg
packages: [linux-image-amd64, systemd-sysv, "ostree=2022.7-2"]
packages-amd64: [grub-pc-bin, systemd-sysv]
packages-arm64: [grub-efi-arm64-bin]
packages-local: [debs/*.deb]
exclude-packages: [nano]
recommends: true
variant: standard
postprocess: ["echo hi"]
postprocess-script: scripts/post.sh
add-files:
  - [files/20-wired.network, /etc/systemd/network/20-wired.network]
remove-files: [usr/share/doc/foo]
units: [ssh.service, getty@tty1.service]
default-target: multi-user.target
machineid-compat: false
initramfs-args: [--no-hostonly]
add-commit-metadata: {org.example.key: value, org.example.n: 3, org.example.b: true}
automatic-version-prefix: 12
container: true
"""


@pytest.fixture
def full(tmp_path: Path) -> Path:
    for rel in ("keys/debian.gpg", "debs/b_1.0_all.deb", "debs/a_1.0_all.deb",
                "scripts/post.sh", "files/20-wired.network"):
        write(tmp_path / rel, f"content of {rel}\n")
    return write(tmp_path / "full.yaml", FULL)


# ---------------------------------------------------------------- valid input


def test_full_treefile(full: Path) -> None:
    base = full.parent.resolve()
    t = load_treefile(full)
    assert t.path == full.resolve()
    assert t.ref == "debian/bookworm/x86_64/full"
    assert t.releasever == "bookworm"
    assert t.repos == (AptRepo(
        uris=("http://deb.debian.org/debian", "https://mirror.example/debian"),
        suites=("bookworm", "bookworm-updates"),
        components=("main", "contrib"),
        signed_by=base / "keys/debian.gpg",
    ),)
    assert t.packages == ("linux-image-amd64", "systemd-sysv", "ostree=2022.7-2")
    assert t.packages_arch == {"amd64": ("grub-pc-bin", "systemd-sysv"), "arm64": ("grub-efi-arm64-bin",)}
    assert t.packages_local == (base / "debs/a_1.0_all.deb", base / "debs/b_1.0_all.deb")
    assert t.exclude_packages == ("nano",)
    assert t.recommends is True
    assert t.variant == "standard"
    assert t.postprocess == ("echo hi",)
    assert t.postprocess_script == base / "scripts/post.sh"
    assert t.add_files == ((base / "files/20-wired.network", "/etc/systemd/network/20-wired.network"),)
    assert t.remove_files == ("usr/share/doc/foo",)
    assert t.units == ("ssh.service", "getty@tty1.service")
    assert t.default_target == "multi-user.target"
    assert t.machineid_compat is False
    assert t.initramfs_args == ("--no-hostonly",)
    assert t.add_commit_metadata == {"org.example.key": "value", "org.example.n": 3, "org.example.b": True}
    assert t.automatic_version_prefix == "12"
    assert t.container is True
    assert t.included == ()


def test_packages_for_arch(full: Path) -> None:
    t = load_treefile(full)
    # Arch packages are appended, duplicates dropped, order kept.
    assert t.packages_for("amd64") == ("linux-image-amd64", "systemd-sysv", "ostree=2022.7-2", "grub-pc-bin")
    assert t.packages_for("arm64")[-1] == "grub-efi-arm64-bin"
    assert t.packages_for("riscv64") == t.packages


def test_to_json_round_trip(full: Path, tmp_path: Path) -> None:
    t = load_treefile(full)
    data = t.to_json()
    assert data["packages-amd64"] == ["grub-pc-bin", "systemd-sysv"]
    assert data["repos"][0]["signed-by"] == str(full.parent.resolve() / "keys/debian.gpg")
    # JSON is YAML: the expanded treefile loads back to the same model.
    again = load_treefile(write(tmp_path / "elsewhere/expanded.json", json.dumps(data)))
    assert again.to_json() == data
    assert dataclasses.replace(again, path=t.path) == t


def test_defaults(tmp_path: Path) -> None:
    t = load_treefile(minimal(tmp_path))
    assert t == Treefile(path=(tmp_path / "tree.yaml").resolve(), ref="debian/test")
    assert t.repos is None and t.variant == "minbase" and t.machineid_compat is True


def test_frozen(tmp_path: Path) -> None:
    t = load_treefile(minimal(tmp_path))
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.ref = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.packages = ("x",)  # type: ignore[misc]


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(("extra", "key", "words"), [
    ("colour: blue\n", "colour", "unknown key"),
    ("repos:\n  - {uris: [http://x/debian], suites: [s], mirror: yes}\n", "repos[0].mirror", "unknown key"),
    ("packages: vim\n", "packages", "single string"),
    ("recommends: \"yes\"\n", "recommends", "expected true or false"),
    ("packages: [vim, less, 3]\n", "packages[2]", "an integer"),
    ("packages: [vim, Bad_Name]\n", "packages[1]", "not a Debian package name"),
    ("variant: huge\n", "variant", "unknown variant"),
    ("add-files: [[nothere.txt, /etc/x]]\n", "add-files[0][0]", "file not found"),
    ("packages-local: [debs/*.deb]\n", "packages-local[0]", "no .deb file matches"),
    ("postprocess-script: post.sh\n", "postprocess-script", "file not found"),
    ("include: missing.yaml\n", "include", "included file not found"),
])
def test_errors_name_file_and_key(tmp_path: Path, extra: str, key: str, words: str) -> None:
    path = minimal(tmp_path, extra)
    message = load_error(path)
    assert str(path.resolve()) in message
    assert f": {key}: " in message
    assert words in message


@pytest.mark.parametrize("ref", ["debian//bad ref", "../x", "-x", "a/../b", "a/.hidden", "a/"])
def test_bad_ref(tmp_path: Path, ref: str) -> None:
    path = write(tmp_path / "t.yaml", f"ref: '{ref}'\n")
    message = load_error(path)
    assert str(path.resolve()) in message and "ref: not a valid OSTree ref" in message


@pytest.mark.parametrize(("data", "words"), [
    (b"\x9f\x00junk" * 100, "not UTF-8 text"),
    (b"# " + b"x" * (2 << 20), "larger than 1 MB"),
])
def test_junk_is_no_treefile(tmp_path: Path, data: bytes, words: str) -> None:
    path = tmp_path / "t.yaml"
    path.write_bytes(data)
    assert words in load_error(path)


def test_include_of_a_device(tmp_path: Path) -> None:
    path = write(tmp_path / "t.yaml", "ref: a/b\ninclude: /dev/zero\n")
    assert "/dev/zero: not a regular file" in load_error(path)


def test_missing_ref(tmp_path: Path) -> None:
    path = write(tmp_path / "t.yaml", "packages: [vim]\n")
    message = load_error(path)
    assert str(path.resolve()) in message and "ref: missing" in message


def test_missing_treefile(tmp_path: Path) -> None:
    assert "not found" in load_error(tmp_path / "nope.yaml")


def test_include_cycle(tmp_path: Path) -> None:
    a = write(tmp_path / "a.yaml", "include: b.yaml\nref: debian/a\n")
    write(tmp_path / "b.yaml", "include: a.yaml\n")
    message = load_error(a)
    assert "include cycle" in message
    assert str(a.resolve()) in message and str((tmp_path / "b.yaml").resolve()) in message


def test_invalid_yaml_has_line_number(tmp_path: Path) -> None:
    path = write(tmp_path / "t.yaml", "ref: debian/test\npackages: [vim\nunits: []\n")
    message = load_error(path)
    assert str(path.resolve()) in message
    assert "invalid YAML" in message
    assert "line " in message


@pytest.mark.parametrize("text", ["- just\n- a list\n", "a string\n", ""])
def test_top_level_not_a_mapping(tmp_path: Path, text: str) -> None:
    path = write(tmp_path / "t.yaml", text)
    message = load_error(path)
    assert str(path.resolve()) in message and "expected a mapping at the top level" in message


def test_error_in_included_file_names_that_file(tmp_path: Path) -> None:
    inc = write(tmp_path / "common/base.yaml", "packages: [BAD]\n")
    path = minimal(tmp_path, "include: common/base.yaml\n")
    message = load_error(path)
    assert str(inc.resolve()) in message and "packages[0]" in message


# ---------------------------------------------------------------- include merging


def test_include_merge(tmp_path: Path) -> None:
    write(tmp_path / "inc/base.yaml", """\
        ref: debian/base
        releasever: bookworm
        variant: minbase
        packages: [systemd, udev]
        postprocess: ["echo base"]
        add-commit-metadata: {a: base, b: base}
        """)
    write(tmp_path / "inc/extra.yaml", "packages: [less]\n")
    main = write(tmp_path / "main.yaml", """\
        include: [inc/base.yaml, inc/extra.yaml]
        ref: debian/main
        variant: standard
        packages: [vim, udev]
        postprocess: ["echo main"]
        add-commit-metadata: {b: main, c: main}
        """)
    t = load_treefile(main)
    assert t.ref == "debian/main"
    assert t.variant == "standard"
    assert t.releasever == "bookworm"  # not overridden: kept from the include
    assert t.packages == ("systemd", "udev", "less", "vim")
    assert t.postprocess == ("echo base", "echo main")
    assert t.add_commit_metadata == {"a": "base", "b": "main", "c": "main"}
    assert t.included == ((tmp_path / "inc/base.yaml").resolve(), (tmp_path / "inc/extra.yaml").resolve())


def test_include_paths_relative_to_including_file(tmp_path: Path) -> None:
    write(tmp_path / "inc/files/motd", "hello\n")
    write(tmp_path / "inc/base.yaml", "add-files: [[files/motd, /etc/motd]]\n")
    t = load_treefile(minimal(tmp_path, "include: inc/base.yaml\n"))
    assert t.add_files == (((tmp_path / "inc/files/motd").resolve(), "/etc/motd"),)
