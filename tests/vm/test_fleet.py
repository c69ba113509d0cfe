"""Issue 16 in a guest of its own (Debian 13): a machine updates from `compose publish`'s archive repository
over HTTP, served by Debian's nginx on 127.0.0.1 and reached through a QEMU guestfwd (10.0.2.100:80, a
relay process for each connection: tests/vm/relay.py; the guest has no other route out), with GPG
verification of commits and summary from the key that `compose disk-image --remote-gpg-key` installed.

The build repository holds the Debian 13 image's commit on its ref; the update is the same image plus
htop (a one-package change). Checked: nothing to do while the archive has nothing new (77); a tampered
summary and a tampered delta are each refused with one line and nothing staged; the update through
apt-ostreed fetches the delta (nginx's log: the delta's parts, and the bytes) and boots; the bytes
against those of the same update without deltas are printed for docs/benchmarks.md.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Composed, apt_ostree
from tests.nginx import Nginx, serving
from tests.root.test_publish import Key, forget_key, make_key
from tests.vm.qemu import Guest, make_ssh_key

pytestmark = pytest.mark.vm

SERVER = "10.0.2.100"


def ostree(*args: str | Path) -> str:
    return subprocess.run(["ostree", *map(str, args)], check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def fleet(minimal: Composed, minimal_extra: Composed, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[Path, Path, Key, Nginx]]:
    work = tmp_path_factory.mktemp("fleet")
    build = work / "build"  # (bare, like the compose repository: pull-local links the objects)
    ostree("init", f"--repo={build}", "--mode=bare")
    ostree("pull-local", f"--repo={build}", minimal.repo, minimal.checksum, minimal_extra.checksum)
    ostree("refs", f"--repo={build}", f"--create={minimal.ref}", minimal.checksum)
    key = make_key(work / "gnupg")
    archive = work / "archive"
    with serving(archive, work / "nginx") as server:
        apt_ostree("compose", "publish", "--repo", build, archive, minimal.ref, "--no-empty-delta",
                   "--gpg-sign", key.fingerprint, "--gpg-homedir", key.homedir)
        yield build, archive, key, server
    forget_key(key)


def status(g: Guest) -> dict[str, Any]:
    return dict(json.loads(g.run("apt-ostree status --json").stdout))


def test_upgrade_over_http_through_a_delta(fleet: tuple[Path, Path, Key, Nginx], minimal: Composed,
                                           minimal_extra: Composed, tmp_path: Path) -> None:
    build, archive, key, nginx = fleet
    ssh_key, pub = make_ssh_key(tmp_path)
    disk = tmp_path / "disk.img"
    apt_ostree("compose", "disk-image", "--repo", minimal.repo, "--ref", minimal.ref, "--root-ssh-key", pub,
               "--hostname", "aotfleet", "--remote", f"fleet=http://{SERVER}/", "--remote-gpg-key", key.public, disk)
    forward = f"tcp:{SERVER}:80-cmd:/usr/bin/python3 {Path(__file__).with_name('relay.py')} {nginx.port}"
    with Guest(disk, ssh_key=ssh_key, serial_log=tmp_path / "serial.log", guestfwd=[forward]) as g:
        g.wait_for_ssh(timeout=420)
        assert g.run("apt-ostree upgrade --unchanged-exit-77", check=False).returncode == 77
        before = [d["id"] for d in status(g)["deployments"]]

        # the update: the image plus htop, published (a delta from the commit machines have)
        ostree("refs", f"--repo={build}", "--force", f"--create={minimal.ref}", minimal_extra.checksum)
        out = apt_ostree("compose", "publish", "--repo", build, archive, minimal.ref, "--no-empty-delta",
                         "--gpg-sign", key.fingerprint, "--gpg-homedir", key.homedir).stdout
        assert f"Static deltas: 1 new ({minimal.checksum[:12]} -> {minimal_extra.checksum[:12]})" in out, out

        # tampered on the server: one line each, nothing staged
        summary = (archive / "summary").read_bytes()
        (archive / "summary").write_bytes(summary[:-1] + bytes([summary[-1] ^ 1]))
        refused = g.run("apt-ostree upgrade", check=False)
        [line] = error_lines_of(refused.stderr)
        assert refused.returncode == 1 and ("GPG" in line or "signature" in line.lower()), refused.stderr
        (archive / "summary").write_bytes(summary)
        superblock = next((archive / "deltas").rglob("superblock"))
        delta = superblock.read_bytes()
        superblock.write_bytes(delta[:-64] + bytes(64))
        refused = g.run("apt-ostree upgrade", check=False)
        assert refused.returncode == 1 and len(error_lines_of(refused.stderr)) == 1, refused.stderr
        superblock.write_bytes(delta)
        assert [d["id"] for d in status(g)["deployments"]] == before

        # the update through the daemon, by the delta
        nginx.forget()
        g.run("apt-ostree upgrade", timeout=900)
        fetched = nginx.requests()
        assert any(uri.startswith("/deltas/") for uri, _ in fetched), fetched
        with_delta = sum(n for _, n in fetched)
        staged = [d for d in status(g)["deployments"] if d["staged"]]
        assert [d["checksum"] for d in staged] == [minimal_extra.checksum]
        g.reboot(timeout=600)
        assert next(d for d in status(g)["deployments"] if d["booted"])["checksum"] == minimal_extra.checksum
        assert g.run("htop --version").returncode == 0

    # the same update without deltas (libostree's client on this host, from the image's commit)
    plain = tmp_path / "plain"
    ostree("init", f"--repo={plain}", "--mode=bare-user")
    ostree("pull-local", f"--repo={plain}", minimal.repo, minimal.checksum)
    ostree("remote", "add", f"--repo={plain}", "--no-gpg-verify", "fleet", nginx.url)
    nginx.forget()
    ostree("pull", f"--repo={plain}", "--disable-static-deltas", "fleet", minimal_extra.checksum)
    without = nginx.bytes_sent()
    print(f"the one-package update: {with_delta} bytes with the delta, {without} without "
          f"({100 * with_delta / without:.0f}%)")
    assert with_delta < without


def error_lines_of(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("error:")]
