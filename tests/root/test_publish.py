"""Issue 16: `compose publish` makes an archive repository for a fleet, served by Debian's nginx on
127.0.0.1 and pulled by libostree's own client with GPG verification of commits and summary.

The commits are small synthetic trees (the publishing is the same for an OS tree, only slower): 300
files, one of them 6 MB (above libostree's 4 MB fallback size: fetched on its own), a 2 MB library,
and a second commit that patches 100 bytes of the library. Checked: what the first run writes (ref,
delta from empty, signatures, summary); that a second run with nothing new writes nothing (exit 77);
that the next commit gets deltas from its parent and from empty and a new signed summary; that a
client pulls the update through the delta (with libostree 2023.7 or later, a twentieth of the bytes
without deltas, from nginx's access log: the Debian 13 root of tests/root/test_other_host.py runs this
test too); that a tampered summary or commit is refused by the client; that --keep prunes the history
without breaking the ref; and that bad input (an unknown ref, an unknown key) is one line and writes
nothing."""

from __future__ import annotations

import os
import random
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from apt_ostree.core.ostree import libostree_at_least
from tests.conftest import apt_ostree, error_lines
from tests.nginx import Nginx, serving

pytestmark = pytest.mark.root

REF = "test/fleet/x86_64"


@dataclass(frozen=True)
class Key:
    homedir: Path
    fingerprint: str
    public: Path  # armored


def make_key(home: Path) -> Key:
    """A signing key without a passphrase in the GnuPG home ``home`` (made), its public key exported."""
    home.mkdir(mode=0o700, exist_ok=True)
    env = {**os.environ, "GNUPGHOME": str(home)}
    subprocess.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key",
                    "apt-ostree fleet test <f@example.invalid>", "rsa3072", "sign", "never"],
                   env=env, check=True, capture_output=True)
    listing = subprocess.run(["gpg", "--batch", "--with-colons", "--list-secret-keys"], env=env, check=True,
                             capture_output=True, text=True).stdout
    fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    public = home / "public.asc"
    public.write_text(subprocess.run(["gpg", "--batch", "--export", "--armor", fingerprint], env=env, check=True,
                                     capture_output=True, text=True).stdout)
    return Key(home, fingerprint, public)


def forget_key(key: Key) -> None:
    subprocess.run(["gpgconf", "--kill", "all"], env={**os.environ, "GNUPGHOME": str(key.homedir)}, check=False,
                   capture_output=True)


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Key]:
    made = make_key(tmp_path_factory.mktemp("gnupg") / "home")
    yield made
    forget_key(made)


def commit(repo: Path, tree: Path, version: str, *more: str) -> str:
    return subprocess.run(["ostree", "commit", f"--repo={repo}", "-b", REF, f"--tree=dir={tree}",
                           f"--add-metadata-string=version={version}", *more], check=True, capture_output=True,
                          text=True).stdout.strip()


def synthetic_tree(tree: Path) -> None:
    rnd = random.Random(16)
    for i in range(300):
        path = tree / f"usr/share/fleet/{i % 10}/file-{i}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rnd.randbytes(rnd.randrange(200, 20000)))
    (tree / "usr/lib/fleet").mkdir(parents=True)
    (tree / "usr/lib/fleet/big.bin").write_bytes(rnd.randbytes(6 << 20))
    (tree / "usr/lib/fleet/libfleet.so.1").write_bytes(rnd.randbytes(2 << 20))


def patch(path: Path) -> None:
    """An update of a library: 100 bytes of its 2 MB changed (bsdiff's case)."""
    data = bytearray(path.read_bytes())
    data[4096:4196] = b"\x90" * 100
    path.write_bytes(bytes(data))


def ostree(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ostree", *map(str, args)], check=check, capture_output=True, text=True)


@pytest.fixture()
def nginx(tmp_path: Path) -> Iterator[Nginx]:
    with serving(tmp_path / "archive", tmp_path / "nginx") as server:
        yield server


def client(tmp: Path, name: str, url: str, key: Key) -> Path:
    repo = tmp / name
    ostree("init", f"--repo={repo}", "--mode=bare-user")
    ostree("remote", "add", f"--repo={repo}", "--set=gpg-verify=true", "--set=gpg-verify-summary=true",
           f"--gpg-import={key.public}", "fleet", url)
    return repo


def files(path: Path) -> dict[str, int]:
    return {str(p.relative_to(path)): p.stat().st_mtime_ns for p in path.rglob("*") if p.is_file()}


def test_publish_serve_pull_tamper_prune(tmp_path: Path, key: Key, nginx: Nginx) -> None:
    source = tmp_path / "composed"
    ostree("init", f"--repo={source}", "--mode=bare-user")
    tree = tmp_path / "tree"
    synthetic_tree(tree)
    first = commit(source, tree, "1")
    archive = nginx.root
    sign: list[str | Path] = ["--gpg-sign", key.fingerprint, "--gpg-homedir", key.homedir]

    # bad input: one line, nothing written (the archive repository is not even created)
    for args, culprit in ((["no/such/ref"], "'no/such/ref'"), (["--gpg-sign", "0" * 40], "0" * 40)):
        cli = apt_ostree("compose", "publish", "--repo", source, archive, *args, check=False)
        assert cli.returncode == 1 and "Traceback" not in cli.stderr, cli.stderr
        [line] = error_lines(cli)
        assert culprit in line, line
        assert not archive.exists()
    a_file = tmp_path / "a-file"
    a_file.write_text("not a repository\n")
    cli = apt_ostree("compose", "publish", "--repo", source, a_file, check=False)
    assert cli.returncode == 1 and "Traceback" not in cli.stderr, cli.stderr
    assert f"a file, not a directory): {a_file}" in error_lines(cli)[0] and a_file.read_text() == "not a repository\n"

    out = apt_ostree("compose", "publish", "--repo", source, archive, *sign).stdout
    assert f"{REF}: {first} (new)" in out and "Static deltas: 1 new (empty ->" in out and "Signed: 1" in out
    assert ostree("rev-parse", f"--repo={archive}", REF).stdout.strip() == first
    assert "mode=archive" in (archive / "config").read_text().replace(" ", "")
    assert ostree("static-delta", "list", f"--repo={archive}").stdout.split() == [first]
    assert (archive / "summary.sig").exists()

    # nothing new: nothing written, exit 77
    before = files(archive)
    again = apt_ostree("compose", "publish", "--repo", source, archive, *sign, "--unchanged-exit-77", check=False)
    assert again.returncode == 77 and "nothing new" in again.stdout, again.stderr
    assert files(archive) == before

    # a client: the first commit, verified (commit and summary)
    repo = client(tmp_path, "client", nginx.url, key)
    ostree("pull", f"--repo={repo}", "fleet", REF)
    assert ostree("rev-parse", f"--repo={repo}", f"fleet:{REF}").stdout.strip() == first

    # a library patched: deltas from the parent and from empty, a new signed summary
    patch(tree / "usr/lib/fleet/libfleet.so.1")
    second = commit(source, tree, "2")
    out = apt_ostree("compose", "publish", "--repo", source, archive, *sign).stdout
    assert f"{REF}: {second} (new)" in out and "Static deltas: 2 new" in out
    assert set(ostree("static-delta", "list", f"--repo={archive}").stdout.split()) == \
        {first, second, f"{first}-{second}"}

    # the update through the delta, against the same update from objects only
    nginx.forget()
    pulled = ostree("pull", f"--repo={repo}", "fleet", REF).stdout
    with_delta = nginx.bytes_sent()
    assert ostree("rev-parse", f"--repo={repo}", f"fleet:{REF}").stdout.strip() == second
    assert "delta parts" in pulled, pulled
    plain = client(tmp_path, "plain", nginx.url, key)
    ostree("pull", f"--repo={plain}", "--disable-static-deltas", "fleet", first)
    nginx.forget()
    ostree("pull", f"--repo={plain}", "--disable-static-deltas", "fleet", REF)
    without = nginx.bytes_sent()
    print(f"update of a 2 MB library: {with_delta} bytes through the delta, {without} from objects")
    if libostree_at_least(2023, 7):
        assert 0 < with_delta < without / 20, (with_delta, without)
    # (before 2023.7 the client also fetched the delta's objects loose while it applied the delta: ostree
    # commit fc5aef6f, "Don't scan commit objects we fetch via deltas"; bookworm's 2022.7 does)

    # tampering on the server: the client refuses, and keeps what it had
    summary = (archive / "summary").read_bytes()
    (archive / "summary").write_bytes(summary[:-1] + bytes([summary[-1] ^ 1]))
    bad = ostree("pull", f"--repo={client(tmp_path, 'c2', nginx.url, key)}", "fleet", REF, check=False)
    assert bad.returncode != 0 and re.search(r"(?i)gpg|signature", bad.stderr), bad.stderr
    (archive / "summary").write_bytes(summary)
    commit_object = archive / "objects" / second[:2] / f"{second[2:]}.commit"
    data = commit_object.read_bytes()
    commit_object.write_bytes(data.replace(b"2", b"3", 1))
    c3 = client(tmp_path, "c3", nginx.url, key)
    bad = ostree("pull", f"--repo={c3}", "--disable-static-deltas", "fleet", REF, check=False)
    assert bad.returncode != 0, bad.stdout
    assert ostree("rev-parse", f"--repo={c3}", f"fleet:{REF}", check=False).returncode != 0
    commit_object.write_bytes(data)

    # --keep 1: the older commit goes, with the delta to it; the ref, its deltas and the summary stay good
    (tree / "usr/share/fleet/4/file-4").write_bytes(b"third\n")
    third = commit(source, tree, "3")
    apt_ostree("compose", "publish", "--repo", source, archive, *sign, "--keep", "2")
    assert ostree("show", f"--repo={archive}", first, check=False).returncode != 0
    assert ostree("rev-parse", f"--repo={archive}", REF).stdout.strip() == third
    assert first not in ostree("static-delta", "list", f"--repo={archive}").stdout.split()
    ostree("fsck", f"--repo={archive}")
    ostree("pull", f"--repo={repo}", "fleet", REF)
    assert ostree("rev-parse", f"--repo={repo}", f"fleet:{REF}").stdout.strip() == third

    # a rebuild from scratch (no parent): its delta is from the ref's previous commit, what machines have
    (tree / "usr/share/fleet/5/file-5").write_bytes(b"rebuilt\n")
    fourth = commit(source, tree, "4", "--parent=none")
    # (the last summary as if written later in this second: CI once published twice within one)
    stamp = int(time.time()) + 5
    for name in ("summary", "summary.sig"):
        os.utime(archive / name, (stamp, stamp))
    out = apt_ostree("compose", "publish", "--repo", source, archive, *sign, "--no-empty-delta").stdout
    # later than the last one even so: a web server's ETag and Last-Modified (seconds, size) must change,
    # or the client's cached summary.sig, and with it its cached summary, stays
    assert all(int((archive / name).stat().st_mtime) > stamp for name in ("summary", "summary.sig"))
    assert f"Static deltas: 1 new ({third[:12]} -> {fourth[:12]})" in out, out
    ostree("pull", f"--repo={repo}", "fleet", REF)
    assert ostree("rev-parse", f"--repo={repo}", f"fleet:{REF}").stdout.strip() == fourth
