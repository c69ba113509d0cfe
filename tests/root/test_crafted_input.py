"""Issue 15: crafted input to every verb, one table. Each bad treefile, package name, .deb, revision,
refspec, kernel argument or sysroot gives one `error:` line naming the culprit, a non-zero exit (not
77), no traceback, and nothing changed: the deployments, the refs, the repository's objects, the boot
entries, layering's kept .debs and local package list, and no file outside the tree (the crafted .debs
and treefiles aim at /tmp/aot-crafted-TAG-*).

The cases that must change nothing share one sysroot (that is the property under test); when a case
did change it (a product bug), the case fails and the next case gets a fresh sysroot."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import random
import subprocess
import tarfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.cleanup import remove_tree
from tests.conftest import Composed, apt_ostree, error_lines
from tests.root.conftest import make_sysroot
from tests.root.test_deployments import status
from tests.root.test_hardening import crafted_deb, deploy_dirs

pytestmark = pytest.mark.root

# Names the crafted inputs aim at outside the tree: none of them may exist after a case.
TAG = f"aot-crafted-{uuid.uuid4().hex[:12]}"
OUTSIDE = (Path("/tmp"), Path("/"), Path("/var/tmp"), Path("/run"))
CONTROL = ("Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: t <t@example.invalid>\n"
           "Description: crafted\n")


# --- crafted .debs: ar and tar by hand, so the members can be what dpkg-deb would never build -----------

def ar_archive(members: list[tuple[str, bytes]]) -> bytes:
    out = bytearray(b"!<arch>\n")
    for name, data in members:
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n".encode()
        out += data + (b"\n" if len(data) % 2 else b"")
    return bytes(out)


Member = tuple[tarfile.TarInfo, bytes | None]


def member_file(name: str, data: bytes = b"crafted\n") -> Member:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    return info, data


def member_dir(name: str) -> Member:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    return info, None


def member_symlink(name: str, target: str) -> Member:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info, None


def tar_gz(members: list[Member]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def raw_deb(path: Path, data: list[Member], control: str) -> Path:
    path.write_bytes(ar_archive([
        ("debian-binary", b"2.0\n"),
        ("control.tar.gz", tar_gz([member_dir("./"), member_file("./control", control.encode())])),
        ("data.tar.gz", tar_gz(data)),
    ]))
    return path


def deb_with(members: list[Member], name: str = "aot-crafted", version: str = "1.0") -> Callable[[Path], Path]:
    def build(path: Path) -> Path:
        return raw_deb(path, [member_dir("./"), *members], CONTROL.format(name=name, version=version))
    return build


def truncated(path: Path) -> Path:
    valid = crafted_deb(path.parent, "valid", {})
    path.write_bytes(valid.read_bytes()[:300])
    return path


def not_ar(path: Path) -> Path:
    path.write_bytes(random.Random(15).randbytes(4096))
    return path


def with_fields(fields: dict[str, str]) -> Callable[[Path], Path]:
    def build(path: Path) -> Path:
        out = crafted_deb(path.parent, path.stem, fields)
        assert out == path
        return path
    return build


def with_script(which: str, script: str) -> Callable[[Path], Path]:
    """A sound .deb whose ``which`` script fails: refused by dpkg, after the .deb was kept and indexed."""
    def build(path: Path) -> Path:
        pkg = path.parent / f"pkg-{path.stem}"
        (pkg / "DEBIAN").mkdir(parents=True)
        (pkg / "DEBIAN/control").write_text(CONTROL.format(name=f"aot-crafted-{which}", version="1.0"))
        (pkg / f"DEBIAN/{which}").write_text(script)
        (pkg / f"DEBIAN/{which}").chmod(0o755)
        subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(pkg), str(path)], check=True, capture_output=True)
        return path
    return build


UP = "../" * 12
DEBS: dict[str, Callable[[Path], Path]] = {
    "truncated.deb": truncated,
    "not-ar.deb": not_ar,
    "traversal.deb": deb_with([member_dir("./usr/"), member_file(f"./usr/{UP}tmp/{TAG}-traversal")]),
    "absolute.deb": deb_with([member_file(f"/tmp/{TAG}-absolute")]),
    "symlink-then-file.deb": deb_with([member_dir("./usr/"), member_dir("./usr/share/"),
                                       member_symlink(f"./usr/share/{TAG}", "/tmp"),
                                       member_file(f"./usr/share/{TAG}/{TAG}-through-symlink")]),
    "less-traversal.deb": deb_with([member_dir("./usr/"), member_file(f"./usr/{UP}tmp/{TAG}-override")],
                                   name="less", version="999"),
    "bad-version.deb": with_fields({"Version": "1.0 beta"}),
    "foreign-arch.deb": with_fields({"Architecture": "s390x"}),
    "bad-depends.deb": with_fields({"Depends": "((( libc6"}),
    "unmet-depends.deb": with_fields({"Depends": "aot-no-such-dependency-crafted"}),
    "failing-postinst.deb": with_script("postinst", "#!/bin/sh\necho aot-crafted-postinst-says-no >&2\nexit 3\n"),
    "failing-preinst.deb": with_script("preinst", "#!/bin/sh\necho aot-crafted-preinst-says-no >&2\nexit 4\n"),
}


# --- crafted treefiles -------------------------------------------------------------------------------

def deep_nesting() -> bytes:
    return b"ref: a/b\npackages: " + b"[" * 200_000 + b"]" * 200_000 + b"\n"


TREEFILES: dict[str, Callable[[], bytes]] = {
    "unknown-key.yaml": lambda: b"ref: a/b\npackages: [bash]\npackagez: [vim]\n",
    "wrong-type.yaml": lambda: b"ref: a/b\npackages: bash\n",
    "loop-a.yaml": lambda: b"include: loop-b.yaml\nref: a/b\n",
    "loop-b.yaml": lambda: b"include: loop-a.yaml\n",
    "junk.yaml": lambda: random.Random(5).randbytes(5 * 1024 * 1024),
    "non-utf8.yaml": lambda: b"ref: a/b\npackages: [\xff\xfe]\n",
    "duplicate-key.yaml": lambda: b"ref: a/b\nref: c/d\npackages: [bash]\n",
    "bad-ref.yaml": lambda: b"ref: ../x\npackages: [bash]\n",
    "bad-package.yaml": lambda: b"ref: a/b\npackages: [bash, -rf]\n",
    "python-tag.yaml": lambda: f'ref: !!python/object/apply:os.system ["touch /tmp/{TAG}-yaml"]\n'.encode(),
    "deep-nesting.yaml": deep_nesting,
    "unknown-package.yaml": lambda: b"ref: a/b\npackages: [linux-image-amd64, aot-no-such-package-crafted]\n",
    "local-truncated.yaml": lambda: b"ref: a/b\npackages: [linux-image-amd64]\npackages-local: [truncated.deb]\n",
    "plain.yaml": lambda: b"ref: a/b\npackages: [linux-image-amd64]\n",
}
# what a treefile includes or names beside it
COMPANIONS = {"loop-a.yaml": ("loop-b.yaml",), "local-truncated.yaml": ("truncated.deb",)}


# --- the state that must not change -------------------------------------------------------------------

def object_names(repo: Path) -> set[str]:
    objects = repo / "objects"
    return {str(Path(d, f).relative_to(objects)) for d, _, files in os.walk(objects) for f in files}


def refs(repo: Path) -> str:
    return subprocess.run(["ostree", "refs", f"--repo={repo}"], check=True, capture_output=True, text=True).stdout


def local_state(path: Path) -> dict[str, object]:
    """What layering keeps in the stateroot between commands: local .debs (by hash) and the package
    list of the local .debs. A refused .deb must leave neither (a stale list breaks the next install)."""
    var = path / "ostree/deploy/debian/var"
    lists = var / "lib/apt-ostree/lists"
    return {"kept .debs": {str(p.relative_to(var)) for p in (var / "cache/apt-ostree").rglob("*.deb")},
            "local package lists": {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:16]
                                    for p in lists.glob("*local-repo*")}}


def snapshot(path: Path) -> dict[str, object]:
    """A sysroot: its deployments, deployment directories, boot entries, refs, remotes, objects and
    layering's kept state; a repository: its refs, config and objects; anything else: what is there."""
    if (path / "ostree/deploy").is_dir():
        repo = path / "ostree/repo"
        return {"deployments": [(d["checksum"], d["serial"]) for d in status(path)],
                "deployment directories": deploy_dirs(path),
                "boot entries": sorted(p.read_text() for p in (path / "boot/loader/entries").glob("*.conf")),
                "refs": refs(repo), "repo config": (repo / "config").read_text(), "objects": object_names(repo),
                **local_state(path)}
    if (path / "objects").is_dir():
        return {"refs": refs(path), "repo config": (path / "config").read_text(), "objects": object_names(path)}
    if path.is_file():
        return {"file": hashlib.sha256(path.read_bytes()).hexdigest(), "mode": path.stat().st_mode}
    if path.is_dir():
        return {"tree": sorted(str(p.relative_to(path)) for p in path.rglob("*"))}
    return {"exists": False}


def changes(before: dict[str, object], after: dict[str, object]) -> list[str]:
    found = []
    for key in sorted(before.keys() | after.keys()):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if isinstance(old, set) and isinstance(new, set):
            found.append(f"{key}: +{sorted(new - old)[:5]} -{sorted(old - new)[:5]}")
        else:
            found.append(f"{key}: {str(old)[:300]!r} -> {str(new)[:300]!r}")
    return found


def escaped(trees: list[Path]) -> list[str]:
    """Files with this run's TAG outside the tree: in /tmp, /, /var/tmp, /run, or anywhere in the sysroot."""
    found = [str(p) for top in OUTSIDE for p in top.glob(f"{TAG}*")]
    for tree in trees:
        out = subprocess.run(["find", str(tree), "-name", f"*{TAG}*"], capture_output=True, text=True).stdout
        found += out.split()
    return found


# --- the shared sysroot ------------------------------------------------------------------------------

class Shared:
    """One sysroot for every case; made again when a case changed it (that case has failed already)."""

    def __init__(self, top: Path, make: Callable[[Path], Path]) -> None:
        self.top, self.make, self.count = top, make, 0
        self.root = make(top / "sysroot0")

    def renew(self) -> None:
        remove_tree(self.root)
        self.count += 1
        self.root = self.make(self.top / f"sysroot{self.count}")


@pytest.fixture(scope="module")
def shared(updates_template: Path, minimal: Composed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    top = tmp_path_factory.mktemp("crafted")
    yield Shared(top, lambda root: make_sysroot(root, updates_template, minimal))
    remove_tree(top)


@contextlib.contextmanager
def read_only_view(root: Path, view: Path) -> Iterator[Path]:
    """ROOT bind-mounted read-only on VIEW (`mount --bind` then `remount,ro,bind`), unmounted after."""
    view.mkdir(exist_ok=True)
    subprocess.run(["mount", "--bind", str(root), str(view)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(view)], check=True)
        yield view
    finally:
        subprocess.run(["umount", str(view)], check=True)
        view.rmdir()


# --- the table -----------------------------------------------------------------------------------------
# target: shared (the shared sysroot), ro (it, read-only), dir (an empty directory), file (a regular
# file), missing (no such path), repo (a fresh bare repository), none (a repository path that must stay
# absent). "{S}" is the target's path, "{C}" the compose cache, "{deb:NAME}" a crafted .deb, "{tf:NAME}"
# a crafted treefile. Verbs other than compose get --sysroot {S}. The culprit: a substring of the error line.

HEX65 = "0123456789abcdef" * 4 + "0"
LONG = "x=" + "y" * 3000


def tree(name: str, *more: str) -> tuple[str, ...]:
    return ("compose", "tree", f"{{tf:{name}}}", "--repo", "{S}", *more)


CASES = [
    # treefiles: parsed only (--print-only); the repository must not appear
    pytest.param("none", tree("unknown-key.yaml", "--print-only"), "packagez", id="treefile-unknown-key"),
    pytest.param("none", tree("wrong-type.yaml", "--print-only"), "packages", id="treefile-wrong-type"),
    pytest.param("none", tree("loop-a.yaml", "--print-only"), "loop-b.yaml", id="treefile-include-loop"),
    pytest.param("none", tree("junk.yaml", "--print-only"), "junk.yaml", id="treefile-5mb-of-junk"),
    pytest.param("none", tree("non-utf8.yaml", "--print-only"), "UTF-8", id="treefile-not-utf8"),
    pytest.param("none", tree("duplicate-key.yaml", "--print-only"), "ref", id="treefile-duplicate-key"),
    pytest.param("none", tree("bad-ref.yaml", "--print-only"), "'../x'", id="treefile-bad-ref"),
    pytest.param("none", tree("bad-package.yaml", "--print-only"), "packages[1]", id="treefile-bad-package-name"),
    pytest.param("none", tree("python-tag.yaml", "--print-only"), "python/object", id="treefile-python-tag"),
    pytest.param("none", tree("deep-nesting.yaml", "--print-only"), "deep-nesting.yaml",
                 id="treefile-deep-nesting"),
    # compose into a real repository: the failure comes later; refs and objects must stay as they were
    pytest.param("repo", tree("plain.yaml", "--cachedir", "{C}", "--parent", "zzz"), "'zzz'",
                 id="compose-parent-not-a-revision"),
    pytest.param("repo", tree("unknown-package.yaml", "--cachedir", "{C}"), "aot-no-such-package-crafted",
                 id="compose-unknown-package"),
    pytest.param("repo", tree("local-truncated.yaml", "--cachedir", "{C}"), "truncated.deb",
                 id="compose-packages-local-truncated-deb"),
    pytest.param("file", tree("plain.yaml", "--cachedir", "{C}", "--dry-run"), "{S}", id="compose-repo-is-a-file"),
    # package names
    pytest.param("shared", ("install", "../x"), "'../x'", id="install-dotdot-name"),
    pytest.param("shared", ("install", "aot-no-such-package-crafted"), "aot-no-such-package-crafted",
                 id="install-unknown-package"),
    pytest.param("shared", ("uninstall", ""), "''", id="uninstall-empty-name"),
    pytest.param("shared", ("override", "replace", "../x"), "../x", id="override-replace-dotdot"),
    pytest.param("shared", ("override", "remove", "a b"), "'a b'", id="override-remove-name-with-space"),
    pytest.param("shared", ("override", "reset", "../x"), "../x", id="override-reset-dotdot"),
    # crafted .debs
    pytest.param("shared", ("install", "{deb:truncated.deb}"), "truncated.deb", id="deb-truncated"),
    pytest.param("shared", ("install", "{deb:not-ar.deb}"), "not-ar.deb", id="deb-not-an-ar-archive"),
    pytest.param("shared", ("install", "{deb:traversal.deb}"), "traversal.deb", id="deb-path-traversal"),
    pytest.param("shared", ("install", "{deb:absolute.deb}"), "absolute.deb", id="deb-absolute-member"),
    pytest.param("shared", ("install", "{deb:symlink-then-file.deb}"), "symlink-then-file.deb",
                 id="deb-symlink-then-file"),
    pytest.param("shared", ("install", "{deb:bad-version.deb}"), "bad-version.deb", id="deb-bad-version"),
    pytest.param("shared", ("install", "{deb:foreign-arch.deb}"), "foreign-arch.deb", id="deb-foreign-arch"),
    pytest.param("shared", ("install", "{deb:bad-depends.deb}"), "bad-depends.deb", id="deb-bad-depends"),
    pytest.param("shared", ("override", "replace", "{deb:less-traversal.deb}"), "less-traversal.deb",
                 id="override-replace-deb-path-traversal"),
    # sound .debs that fail later (kept and indexed by then): the kept .debs and local list as before
    pytest.param("shared", ("install", "{deb:unmet-depends.deb}"), "aot-no-such-dependency-crafted",
                 id="deb-unmet-depends"),
    pytest.param("shared", ("install", "{deb:failing-postinst.deb}"), "aot-crafted-postinst",
                 id="deb-failing-postinst"),
    pytest.param("shared", ("upgrade", "--install", "{deb:failing-postinst.deb}"), "aot-crafted-postinst",
                 id="upgrade-install-deb-failing-postinst"),
    pytest.param("shared", ("install", "{deb:failing-preinst.deb}"),
                 "dpkg failed: aot-crafted-preinst (--unpack): new aot-crafted-preinst package pre-installation script",
                 id="deb-failing-preinst"),
    # revisions
    pytest.param("shared", ("deploy", "zzz"), "'zzz'", id="deploy-zzz"),
    pytest.param("shared", ("deploy", HEX65), HEX65, id="deploy-65-hex"),
    pytest.param("shared", ("deploy", "../"), "'../'", id="deploy-dotdot"),
    pytest.param("shared", ("deploy", ""), "''", id="deploy-empty"),
    pytest.param("shared", ("deploy", "version=aot-no-such-version"), "aot-no-such-version",
                 id="deploy-unknown-version"),
    # refspecs
    pytest.param("shared", ("rebase", "::"), "'::'", id="rebase-colons"),
    pytest.param("shared", ("rebase", "remote:"), "'remote:'", id="rebase-no-ref"),
    pytest.param("shared", ("rebase", ":ref"), "':ref'", id="rebase-no-remote"),
    pytest.param("shared", ("rebase", "a b"), "'a b'", id="rebase-space"),
    pytest.param("shared", ("rebase", "../x"), "'../x'", id="rebase-dotdot"),
    pytest.param("shared", ("rebase", "nosuchremote:test/os"), "nosuchremote", id="rebase-unknown-remote"),
    # kernel arguments
    pytest.param("shared", ("kargs", '--append=a="x'), 'a="x', id="kargs-unbalanced-quote"),
    pytest.param("shared", ("kargs", "--append=a\x01b"), "control character", id="kargs-control-character"),
    pytest.param("shared", ("kargs", "--append=ostree=/evil"), "ostree=/evil", id="kargs-ostree"),
    pytest.param("shared", ("kargs", f"--append={LONG}"), "bytes long", id="kargs-3000-bytes"),
    pytest.param("shared", ("kargs", "--delete=aot-not-present"), "aot-not-present", id="kargs-delete-absent"),
    pytest.param("shared", ("kargs", "--replace=x"), "--replace=x", id="kargs-replace-no-value"),
    # sysroots that are not sysroots, or are read-only
    pytest.param("dir", ("status",), "{S}", id="sysroot-empty-dir"),
    pytest.param("file", ("kargs", "--append=x"), "{S}", id="sysroot-regular-file"),
    pytest.param("missing", ("upgrade",), "{S}", id="sysroot-nonexistent"),
    pytest.param("ro", ("kargs", "--append=x"), "read-only file system", id="sysroot-read-only-kargs"),
    pytest.param("ro", ("install", "htop"), "read-only file system", id="sysroot-read-only-install"),
    # one deployment, initramfs-etc paths, the command line itself
    pytest.param("shared", ("rollback",), "rollback", id="rollback-one-deployment"),
    pytest.param("shared", ("initramfs-etc", "--track", "etc/hostname"), "'etc/hostname'",
                 id="initramfs-etc-relative-path"),
    pytest.param("shared", ("initramfs-etc", "--track", "/usr/bin/env"), "'/usr/bin/env'",
                 id="initramfs-etc-outside-etc"),
    pytest.param("shared", ("frobnicate",), "frobnicate", id="unknown-verb"),
    pytest.param("shared", ("status", "--frobnicate"), "--frobnicate", id="unknown-flag"),
]


def expand(arg: str, target: Path, tmp: Path, cachedir: Path) -> str:
    if arg.startswith("{deb:"):
        name = arg[len("{deb:"):-1]
        return str(DEBS[name](tmp / name))
    if arg.startswith("{tf:"):
        name = arg[len("{tf:"):-1]
        for other in COMPANIONS.get(name, ()):
            if other.endswith(".deb"):
                DEBS[other](tmp / other)
            else:
                (tmp / other).write_bytes(TREEFILES[other]())
        (tmp / name).write_bytes(TREEFILES[name]())
        return str(tmp / name)
    return arg.replace("{S}", str(target)).replace("{C}", str(cachedir))


def make_target(kind: str, shared: Shared, tmp: Path) -> Path:
    if kind in ("shared", "ro"):
        return shared.root
    path = tmp / f"target-{kind}"
    if kind == "dir":
        path.mkdir()
    elif kind == "file":
        path.write_text("not a sysroot\n")
    elif kind == "repo":
        subprocess.run(["ostree", "init", f"--repo={path}", "--mode=bare"], check=True)
    return path


@pytest.mark.parametrize(("kind", "args", "culprit"), CASES)
def test_crafted_input_is_refused_and_changes_nothing(shared: Shared, cachedir: Path, tmp_path: Path, kind: str,
                                                     args: tuple[str, ...], culprit: str) -> None:
    target = make_target(kind, shared, tmp_path)
    argv = [expand(a, target, tmp_path, cachedir) for a in args]
    if args[0] != "compose":
        argv += ["--sysroot", "{S}"]
    before, outside = snapshot(target), escaped([])
    assert not outside, f"left by an earlier run: {outside}"
    with contextlib.ExitStack() as stack:
        where = stack.enter_context(read_only_view(target, shared.top / "ro")) if kind == "ro" else target
        argv = [a.replace("{S}", str(where)) for a in argv]
        cli = apt_ostree(*argv, check=False)
    changed = changes(before, snapshot(target))
    left = escaped([target, tmp_path] if kind in ("shared", "ro") else [tmp_path])
    if changed and kind in ("shared", "ro"):
        shared.renew()
    lines = error_lines(cli)
    named = culprit.replace("{S}", str(where))
    problems = [
        *([f"exit {cli.returncode}"] if cli.returncode in (0, 77) else []),
        *(["a traceback"] if "Traceback" in cli.stderr else []),
        *([f"{len(lines)} error lines"] if len(lines) != 1 else []),
        *([f"an error line of {len(ln)} characters" for ln in lines if len(ln) >= 4096]),
        *([f"{lines[0][:300]!r} does not name {named!r}"] if len(lines) == 1 and named.lower() not in lines[0].lower()
          else []),
        *(f"changed: {c}" for c in changed),
        # (APT's "Ign:" of a flat local repository's compressed forms is no warning)
        *([f"a warning about the local .debs: {w.strip()}" for w in cli.stderr.splitlines()
           if "warning:" in w and "local-repo" in w][:1]),
        *(f"written outside the tree: {p}" for p in left),
    ]
    command = "apt-ostree " + " ".join(repr(a) if len(a) < 200 else repr(a[:40] + "...") for a in argv)
    assert not problems, (f"{'; '.join(problems)}\n{command}\nexit {cli.returncode}\n"
                          f"stderr (the end):\n{cli.stderr[-1500:]}")
