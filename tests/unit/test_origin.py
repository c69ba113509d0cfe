"""The origin model: rpm-ostree's keyfile keys in and out, request edits, validation."""

from __future__ import annotations

import pytest
from gi.repository import GLib

from apt_ostree.core.origin import LocalPackage, Origin
from apt_ostree.errors import UsageError

pytestmark = pytest.mark.unit

SHA = "a" * 64


def load(text: str) -> Origin:
    kf = GLib.KeyFile()
    kf.load_from_data(text, len(text.encode()), GLib.KeyFileFlags.NONE)
    return Origin.from_keyfile(kf)


def test_plain_origin_round_trip() -> None:
    o = load("[origin]\nrefspec=updates:debian/bookworm\n")
    assert o == Origin("updates:debian/bookworm") and not o.layered
    assert o.to_text() == "[origin]\nrefspec=updates:debian/bookworm\n"


def test_layered_origin_uses_baserefspec_and_keeps_other_keys() -> None:
    o = load("[origin]\nrefspec=r:x\nunlocked=none\n[packages]\nrequested=vim;htop;\n")
    assert o.requested == ("htop", "vim") and o.layered
    text = o.to_text()
    assert "baserefspec=r:x" in text and "\nrefspec=" not in text and "unlocked=none" in text
    assert "requested=htop;vim;" in text
    assert load(text) == o


def test_changes() -> None:
    o = Origin("r:x", requested=("htop", "vim=2:9.0"))
    o2 = o.with_changes(install=["vim=2:9.1", "nano"], uninstall=["htop"],
                        install_local=[LocalPackage(SHA, "foo")], remove=["less"],
                        debconf=["tzdata tzdata/Areas select Europe"])
    assert o2.requested == ("nano", "vim=2:9.1")
    assert o2.requested_local == (LocalPackage(SHA, "foo"),)
    assert o2.override_remove == ("less",)
    assert load(o2.to_text()) == o2
    o3 = o2.with_changes(uninstall=["foo", "vim"], reset=["less"],
                         debconf=["tzdata tzdata/Areas select Asia"])
    assert o3.requested == ("nano",) and not o3.requested_local and not o3.override_remove
    assert o3.debconf == ("tzdata tzdata/Areas select Asia",)


@pytest.mark.parametrize("text", [
    "[origin]\nrefspec=r:x\n[packages]\nrequested=Bad_Name;\n",
    "[origin]\nrefspec=r:x\n[packages]\nrequested-local=notahash:foo;\n",
    "[origin]\nrefspec=r:x\n[debconf]\nselections=just-one-field;\n",
])
def test_invalid_origin(text: str) -> None:
    with pytest.raises(UsageError, match="invalid origin file"):
        load(text)


def test_initramfs_keys_are_rpm_ostrees() -> None:
    o = load("[origin]\nrefspec=r:x\nunlocked=hotfix\n[rpmostree]\nregenerate-initramfs=true\n"
             "initramfs-args=-I;/etc/foobar.conf;\ninitramfs-etc=/etc/cmdline.d/foobar.conf;\n")
    assert o.regenerate_initramfs and o.initramfs_args == ("-I", "/etc/foobar.conf")
    assert o.initramfs_etc == ("/etc/cmdline.d/foobar.conf",) and o.layered and not o.packages_layered
    text = o.to_text()
    assert "regenerate-initramfs=true" in text and "initramfs-args=-I;/etc/foobar.conf;" in text
    assert "baserefspec=r:x" in text and load(text) == o
    # libostree's hotfix state belongs to the deployment it was made on, never to a new one
    assert o.unlocked == "hotfix" and "unlocked" in text
    assert "unlocked" not in o.for_new_deployment().to_text() and o.for_new_deployment() == o
    tracked_only = Origin("r:x", initramfs_etc=("/etc/crypttab",))
    assert not tracked_only.layered and "refspec=r:x" in tracked_only.to_text()


@pytest.mark.parametrize("path", ["/etc", "etc/x", "/etc/../root/x", "/etc/a//b", "/usr/etc/x", "/etc/a;b",
                                  "/etc/a\nb"])
def test_initramfs_etc_paths_must_be_canonical_below_etc(path: str) -> None:
    with pytest.raises(UsageError, match="canonical path below /etc"):
        Origin("r:x", initramfs_etc=(path,))
