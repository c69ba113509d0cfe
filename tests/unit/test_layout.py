"""The OSTree layout conversion on synthetic trees, and compose metadata helpers."""

from __future__ import annotations

import os
import shutil
import stat
import textwrap
from pathlib import Path

import pytest

from apt_ostree.compose.metadata import input_hash, next_version
from apt_ostree.core import layout
from apt_ostree.core.treefile import load_treefile
from apt_ostree.errors import ComposeError

pytestmark = pytest.mark.unit


def mkdir(root: Path, rel: str, mode: int = 0o755) -> Path:
    path = root / rel
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(mode)
    return path


def touch(root: Path, rel: str, text: str = "x\n") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


# ---------------------------------------------------------------- package state


def test_move_package_state(tmp_path: Path) -> None:
    touch(tmp_path, "var/lib/dpkg/status", "Package: a\n")
    touch(tmp_path, "var/lib/dpkg/info/a.list")
    touch(tmp_path, "var/cache/debconf/config.dat")
    lines = layout.move_package_state(tmp_path)
    assert lines == [
        "L /var/lib/dpkg - - - - ../../usr/share/dpkg/database",
        "L /var/cache/debconf - - - - ../../usr/share/debconf/database",
    ]
    link = tmp_path / "var/lib/dpkg"
    assert link.is_symlink() and os.readlink(link) == "../../usr/share/dpkg/database"
    assert link.resolve() == (tmp_path / layout.DPKG_DATABASE).resolve()
    assert (tmp_path / layout.DPKG_DATABASE / "status").read_text() == "Package: a\n"
    assert (link / "info/a.list").is_file()
    # Idempotent: already moved state is left alone.
    assert layout.move_package_state(tmp_path) == []


def test_move_package_state_refuses_existing_destination(tmp_path: Path) -> None:
    touch(tmp_path, "var/lib/dpkg/status")
    mkdir(tmp_path, layout.DPKG_DATABASE)
    with pytest.raises(ComposeError, match="already exists"):
        layout.move_package_state(tmp_path)


# ---------------------------------------------------------------- /var


@pytest.fixture
def var_tree(tmp_path: Path) -> Path:
    touch(tmp_path, "etc/passwd", "root:x:0:0:root:/root:/bin/sh\n_apt:x:42:65534::/nonexistent:/bin/false\n")
    touch(tmp_path, "etc/group", "root:x:0:\nmail:x:8:\n")
    touch(tmp_path, "var/lib/dpkg/status")
    layout.move_package_state(tmp_path)
    mkdir(tmp_path, "var/lib")
    mkdir(tmp_path, "var/mail", 0o2775)
    os.chown(tmp_path / "var/mail", 0, 8)
    mkdir(tmp_path, "var/cache/apt/archives/partial", 0o700)
    os.chown(tmp_path / "var/cache/apt/archives/partial", 42, 4242)
    (tmp_path / "var/run").symlink_to("/run")
    touch(tmp_path, "var/log/dpkg.log")
    mkdir(tmp_path, "var/log/journal", 0o2755)
    touch(tmp_path, "usr/lib/tmpfiles.d/journal.conf", "# comment\nd /var/log/journal 2755 root root -\n")
    return tmp_path


def test_convert_var(var_tree: Path) -> None:
    lines, dropped = layout.convert_var(var_tree)
    assert "d /var/mail 2775 root mail -" in lines
    assert "d /var/cache/apt/archives/partial 0700 _apt 4242 -" in lines
    assert "d /var/cache 0755 root root -" in lines
    assert "L /var/run - - - - /run" in lines
    assert "d /var/lib 0755 root root -" in lines
    assert dropped == ["/var/log/dpkg.log"]
    # Described elsewhere (by a package's tmpfiles.d) or a state symlink: no line.
    assert not any(" /var/log/journal " in ln for ln in lines)
    assert not any(ln.startswith("L /var/lib/dpkg ") for ln in lines)
    # Parents come before their children.
    assert lines.index("d /var/cache 0755 root root -") < lines.index("d /var/cache/apt 0755 root root -")
    # /var is empty: tmpfiles.d makes it at boot, state links included.
    assert list((var_tree / "var").iterdir()) == []
    layout.make_state_links(var_tree)
    assert (var_tree / "var/lib/dpkg/status").is_file()
    assert os.readlink(var_tree / "var/lib/dpkg") == "../../usr/share/dpkg/database"


def test_convert_var_empty(tmp_path: Path) -> None:
    mkdir(tmp_path, "var")
    assert layout.convert_var(tmp_path) == ([], [])


# ---------------------------------------------------------------- top level


def test_make_toplevel_links(tmp_path: Path) -> None:
    for d in ("home", "opt", "srv", "mnt", "media", "usr/local/bin", "usr/local/share/man", "ostree/repo"):
        mkdir(tmp_path, d)
    touch(tmp_path, "root/.bashrc")  # /root may have content: it is dropped
    touch(tmp_path, "sysroot/leftover")
    lines = layout.make_toplevel_links(tmp_path)
    expected = {"home": "var/home", "root": "var/roothome", "opt": "var/opt", "srv": "var/srv",
                "mnt": "var/mnt", "media": "run/media", "usr/local": "../var/usrlocal",
                "ostree": "sysroot/ostree"}
    for name, target in expected.items():
        assert (tmp_path / name).is_symlink() and os.readlink(tmp_path / name) == target, name
    assert (tmp_path / "sysroot").is_dir() and not any((tmp_path / "sysroot").iterdir())
    assert "d /var/home 0755 root root -" in lines
    assert "d /var/roothome 0700 root root -" in lines
    assert "d /var/usrlocal 0755 root root -" in lines
    assert "d /var/usrlocal/bin 0755 root root -" in lines
    # Running again on the converted tree changes nothing.
    assert layout.make_toplevel_links(tmp_path) == lines


@pytest.mark.parametrize(("rel", "words"), [("opt/google/chrome", "/opt is not empty (google)"),
                                            ("usr/local/bin/tool", "/usr/local is not empty")])
def test_make_toplevel_links_refuses_content(tmp_path: Path, rel: str, words: str) -> None:
    touch(tmp_path, rel)
    with pytest.raises(ComposeError) as info:
        layout.make_toplevel_links(tmp_path)
    assert words in info.value.message


def test_empty_api_dirs(tmp_path: Path) -> None:
    touch(tmp_path, "dev/null")
    touch(tmp_path, "proc/cpuinfo")
    touch(tmp_path, "run/lock/x")
    (tmp_path / "tmp").mkdir()
    (tmp_path / "tmp/link").symlink_to("/etc")
    layout.empty_api_dirs(tmp_path)
    for name in layout.API_DIRS:
        assert (tmp_path / name).is_dir() and not any((tmp_path / name).iterdir()), name
    assert mode(tmp_path / "tmp") == 0o1777
    assert Path("/etc").is_dir()  # a symlink is removed, not followed


def test_move_etc(tmp_path: Path) -> None:
    touch(tmp_path, "etc/os-release", "ID=debian\n")
    mkdir(tmp_path, "usr")
    layout.move_etc(tmp_path)
    assert not (tmp_path / "etc").exists()
    assert (tmp_path / "usr/etc/os-release").read_text() == "ID=debian\n"


def test_move_etc_refuses_existing_usr_etc(tmp_path: Path) -> None:
    touch(tmp_path, "etc/os-release")
    mkdir(tmp_path, "usr/etc")
    with pytest.raises(ComposeError, match="already has /usr/etc"):
        layout.move_etc(tmp_path)
    assert (tmp_path / "etc/os-release").exists()


# ---------------------------------------------------------------- check_layout


@pytest.fixture
def good_tree(tmp_path: Path) -> Path:
    mkdir(tmp_path, "usr/etc")
    touch(tmp_path, f"{layout.DPKG_DATABASE}/status")
    touch(tmp_path, "usr/lib/modules/6.1.0-18-amd64/vmlinuz")
    touch(tmp_path, "usr/lib/modules/6.1.0-18-amd64/initramfs.img")
    for d in layout.API_DIRS:
        mkdir(tmp_path, d)
    mkdir(tmp_path, "boot")
    return tmp_path


def test_check_layout_good(good_tree: Path) -> None:
    layout.check_layout(good_tree, container=False)


@pytest.mark.parametrize(("change", "words"), [
    (lambda r: mkdir(r, "etc"), "/etc still exists"),
    (lambda r: touch(r, "boot/vmlinuz-6.1.0"), "/boot is not empty"),
    (lambda r: touch(r, "tmp/junk"), "/tmp is not empty"),
    (lambda r: (r / layout.DPKG_DATABASE / "status").unlink(), f"/{layout.DPKG_DATABASE}/status is missing"),
    (lambda r: shutil.rmtree(r / "usr/lib/modules"), "expected exactly one kernel in /usr/lib/modules, found 0"),
    (lambda r: touch(r, "usr/lib/modules/6.2/vmlinuz"), "found 2"),
    (lambda r: (r / "usr/lib/modules/6.1.0-18-amd64/initramfs.img").unlink(), "no initramfs.img next to"),
    (lambda r: touch(r, "usr/etc/ssh/ssh_host_rsa_key"), "ssh host keys left behind"),
    (lambda r: touch(r, "usr/sbin/policy-rc.d"), "policy-rc.d left behind"),
])
def test_check_layout_problems(good_tree: Path, change, words: str) -> None:  # type: ignore[no-untyped-def]
    change(good_tree)
    with pytest.raises(ComposeError) as info:
        layout.check_layout(good_tree, container=False)
    assert info.value.message.startswith("composed tree is not OSTree-ready: ")
    assert words in info.value.message


def test_check_layout_reports_all_problems(good_tree: Path) -> None:
    mkdir(good_tree, "etc")
    touch(good_tree, "boot/x")
    with pytest.raises(ComposeError, match="/etc still exists; .*/boot is not empty"):
        layout.check_layout(good_tree, container=False)


def test_check_layout_container_needs_no_kernel(good_tree: Path) -> None:
    shutil.rmtree(good_tree / "usr/lib/modules")
    layout.check_layout(good_tree, container=True)


# ---------------------------------------------------------------- leftovers


@pytest.mark.parametrize("compat", [True, False])
def test_clean_host_leftovers(tmp_path: Path, compat: bool) -> None:
    touch(tmp_path, "etc/machine-id", "0123456789abcdef0123456789abcdef\n")
    touch(tmp_path, "etc/hostname", "buildhost\n")
    touch(tmp_path, "etc/ssh/ssh_host_ed25519_key")
    touch(tmp_path, "etc/ssh/ssh_host_ed25519_key.pub")
    touch(tmp_path, "etc/ssh/sshd_config")
    touch(tmp_path, "usr/sbin/policy-rc.d")
    touch(tmp_path, "etc/resolv.conf", "nameserver 10.0.0.1\n")
    layout.clean_host_leftovers(tmp_path, machineid_compat=compat)
    assert sorted(p.name for p in (tmp_path / "etc/ssh").iterdir()) == ["sshd_config"]
    for rel in ("etc/hostname", "etc/resolv.conf", "usr/sbin/policy-rc.d"):
        assert not os.path.lexists(tmp_path / rel), rel
    machine_id = tmp_path / "etc/machine-id"
    if compat:
        assert machine_id.read_text() == "" and mode(machine_id) == 0o444
    else:
        assert not machine_id.exists()


def test_clean_host_leftovers_dangling_symlink(tmp_path: Path) -> None:
    # The usual /etc/resolv.conf of a systemd-resolved image points into /run, which is empty at build time.
    mkdir(tmp_path, "etc")
    (tmp_path / "etc/resolv.conf").symlink_to("/nonexistent/apt-ostree-test/stub-resolv.conf")
    layout.clean_host_leftovers(tmp_path, machineid_compat=False)
    assert not os.path.lexists(tmp_path / "etc/resolv.conf")


# ---------------------------------------------------------------- metadata


@pytest.mark.parametrize(("prefix", "previous", "expected"), [
    ("12", None, "12"),
    ("12", "12", "12.1"),
    ("12", "12.1", "12.2"),
    ("12", "12.9", "12.10"),
    ("13", "12.4", "13"),
    ("12", "120", "12"),
    ("2024.05", "2024.05.3", "2024.05.4"),
])
def test_next_version(prefix: str, previous: str | None, expected: str) -> None:
    assert next_version(prefix, previous) == expected


def make_tree_dir(base: Path) -> Path:
    touch(base, "debs/tool_1.0_all.deb", "deb v1")
    touch(base, "post.sh", "#!/bin/sh\necho post\n")
    touch(base, "files/etc/motd", "hello\n")
    touch(base, "keys/k.gpg", "key")
    return touch(base, "tree.yaml", textwrap.dedent("""\
        ref: debian/test
        repos: [{uris: [http://deb.example/debian], suites: [bookworm], signed-by: keys/k.gpg}]
        packages: [systemd]
        packages-local: [debs/*.deb]
        postprocess-script: post.sh
        add-files: [[files/etc, /etc/extra]]
        """))


def hash_of(treefile: Path, **overrides: object) -> str:
    args: dict = {"arch": "amd64", "sources": "deb http://deb.example/debian bookworm main\n",
                  "release_digest": "r1", "extra_metadata": {"a": "1"}}
    args.update(overrides)
    return input_hash(load_treefile(treefile), **args)


def test_input_hash_stable_and_location_independent(tmp_path: Path) -> None:
    one = make_tree_dir(tmp_path / "one")
    two = tmp_path / "somewhere/else/two"
    shutil.copytree(one.parent, two)
    h = hash_of(one)
    assert len(h) == 64
    assert h == hash_of(one) == hash_of(two / "tree.yaml")


def test_input_hash_changes_with_inputs(tmp_path: Path) -> None:
    tree = make_tree_dir(tmp_path)
    h = hash_of(tree)
    assert hash_of(tree, arch="arm64") != h
    assert hash_of(tree, release_digest="r2") != h
    assert hash_of(tree, extra_metadata={"a": "2"}) != h
    (tmp_path / "debs/tool_1.0_all.deb").write_text("deb v2")
    h2 = hash_of(tree)
    assert h2 != h
    (tmp_path / "files/etc/motd").write_text("changed\n")
    assert hash_of(tree) != h2
